"""The empirical threshold of the local phase along a family: the library of ``python -m checker.threshold``
(the command is ``checker.commands.threshold``).

From a reference student near the lambda-optimum, a perturbation family
(``checker.studies.families``) moves the start by a size s.  A *trial* at s runs
the T1 check (``checker.theorem.check.TheoremCheck``, fixed lambda, forced, with its
own threshold set large enough that H4 never stops it) and is classified:

* ``converges``: GD reached the gap target and no conclusion of T1 failed;
* ``non-monotone``: GD reached the gap target but L_lambda rose on some steps
  (C1 failed, and only C1): descent is not monotone at this step from this
  start.  That is a limit of the step, not the end of the basin: for the
  bracket it counts as converging, and the smallest such size is reported
  separately (``ThresholdResult.non_monotone``);
* ``fails``: GD did not converge: it stopped on a stationary point (the
  precision floor of the engine: L_lambda no longer decreases) or diverged with
  a gap bound above ``STALL_FACTOR`` times the gap target, i.e. not the
  lambda-optimum, or a conclusion other than C1 failed;
* ``inconclusive``: the trial's step or time budget ran out before the gap
  target (counts neither way).

Bisection on s brackets the change from converging to failing trials (failures
to converge only).  The ratio of the bracket's lower end to eps_0 is given only
where H1-H3 hold at the reference (elsewhere T1 does not apply: "outside T1"),
and not when the lower end is the unperturbed reference start itself (the
bracket then says nothing about the basin).  The
threshold is reported on the scale of the initial gap zeta_0 (the checker's
upper bound of L_lambda(theta_0) - L*_lambda, rigorous when marked) and of the
initial loss L(theta_0): the largest seen to converge and the smallest seen to
fail.  A failing start whose gap is at or below the checker's eps_0, with H1-H3
holding, is a counterexample to T1 as this project formalizes it (exit 1).

Classification thresholds (STALL_FACTOR, NEGLIGIBLE mass in the diagnosis) are
this checker's choices.  Exit status: 0 measured (or nothing failed in the
range); 1 counterexample to T1; 2 bad input; 3 the reference itself does not
converge (nothing to measure); 130 interrupted (partial result written).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from .. import __version__
from checker.core.engines import Float64Engine
from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.core.runfile import RunFile
from checker.core.problem import Problem
from . import families as fam

SCHEMA_VERSION = "1.0"
#: A run stopped at the precision floor with a gap above this many gap targets
#: stalled on a stationary point other than the lambda-optimum (a failure).
STALL_FACTOR = 1e3
#: Mass (times a_min) below which a neuron is ignored by the diagnosis.
NEGLIGIBLE = 1e-2
OUTCOMES = ("converges", "non-monotone", "fails", "inconclusive")
#: Outcomes on the converging side of the bracket (GD reached the gap target).
CONVERGED = ("converges", "non-monotone")
#: Step policies of a trial: the reference instance's eta for every start, or a step
#: that the start's own smoothness allows (``safe_eta``).
STEP_POLICIES = ("instance", "safe")
#: The "safe" policy's eta * beta_0 (H3 asks for < 2; half of it leaves room for the
#: smoothness to grow along the path, since beta_0 is measured at the start only).
SAFE_ETA_BETA = 1.0


# --------------------------------------------------------------------------- bisection
@dataclass
class Bracket:
    """Result of ``bisect``: the largest size seen to converge, the smallest seen to fail."""

    good: float | None
    bad: float | None
    status: str  # "bracketed", "nothing-fails", "no-failure-decided", "reference-fails", "reference-inconclusive"
    trials: list[tuple[float, str]] = field(default_factory=list)

    @property
    def inconclusive_inside(self) -> list[float]:
        """Inconclusive sizes between good and bad (the bracket is only as sharp as they allow)."""
        lo = self.good if self.good is not None else -math.inf
        hi = self.bad if self.bad is not None else math.inf
        return sorted(s for s, o in self.trials if o == "inconclusive" and lo < s < hi)


def bisect(oracle: Callable[[float], str], lo: float, hi: float, *, tol: float, max_trials: int) -> Bracket:
    """Bisection for the change from converging (small s) to "fails" (large s).

    "non-monotone" (the gap target reached with L_lambda rising on some steps)
    counts as converging: only failures to converge bound the bracket.

    ``oracle(s)`` returns one of OUTCOMES.  The reference ``lo`` must converge.
    An inconclusive trial at mid moves the search below it (it stays inside the
    bracket and is listed by ``Bracket.inconclusive_inside``).  Stops when the
    searched interval is at most ``tol`` wide or after ``max_trials`` trials.
    """
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise CheckerError(f"the size range must satisfy lo < hi, got [{lo}, {hi}]")
    if not tol > 0 or max_trials < 2:
        raise CheckerError("bisection needs tol > 0 and at least 2 trials")
    trials: list[tuple[float, str]] = []

    def ask(s: float) -> str:
        out = oracle(s)
        if out not in OUTCOMES:
            raise ValueError(f"oracle returned {out!r}")
        trials.append((s, out))
        return out

    first = ask(lo)
    if first not in CONVERGED:
        return Bracket(None, lo if first == "fails" else None, f"reference-{first}", trials)
    good, bad, upper = lo, None, hi
    last = ask(hi)
    if last in CONVERGED:
        return Bracket(hi, None, "nothing-fails", trials)
    if last == "fails":
        bad = hi
    while len(trials) < max_trials and upper - good > tol:
        mid = (good + upper) / 2
        out = ask(mid)
        if out in CONVERGED:
            good = mid
        else:
            upper = mid
            if out == "fails":
                bad = mid
    return Bracket(good, bad, "bracketed" if bad is not None else "no-failure-decided", trials)


# --------------------------------------------------------------------------- trials
@dataclass
class TrialConfig:
    """Budget and tolerances of one trial (a fixed-lambda T1 run)."""

    engine: str = "float64"
    dps: int | None = None
    steps: int = 20_000
    time_budget: float = 60.0
    gap_target: float = 1e-9
    seed: int = 0
    step: str = "instance"  # one of STEP_POLICIES

    def validate(self) -> None:
        if self.engine not in ("float64", "mp"):
            raise CheckerError(f"--engine must be float64 or mp, got {self.engine!r}")
        if self.step not in STEP_POLICIES:
            raise CheckerError(f"--step must be one of {', '.join(STEP_POLICIES)}, got {self.step!r}")
        if self.steps <= 0:
            raise CheckerError(f"--steps must be positive, got {self.steps}")
        if not (self.time_budget > 0 and math.isfinite(self.time_budget)):
            raise CheckerError(f"--trial-time must be a positive number of seconds, got {self.time_budget}")
        if not (self.gap_target > 0 and math.isfinite(self.gap_target)):
            raise CheckerError(f"--gap-target must be positive, got {self.gap_target}")


@dataclass
class Trial:
    size: float
    outcome: str
    gap0: float  # upper bound of the initial gap zeta_0
    gap0_rigorous: bool
    loss0: float  # L(theta_0), no weight decay
    final_gap: float | None
    stop_reason: str
    steps: int
    seconds: float
    hypotheses_unmet: list[str]  # besides H4 (H4 is what is measured)
    failed: list[str]  # ids of failed conclusions, or "C2-stalled"
    diagnosis: list[str]
    instance: dict[str, Any] = field(repr=False, default_factory=dict)
    eta: float | None = None  # the step of this trial (the instance's, or the "safe" policy's)
    #: GD's final student {"a", "W"} (float64 lists), empty when it diverged or is not finite:
    #: where the threshold's Newton search (``checker.stationary.upper``) starts.
    end: dict[str, Any] = field(repr=False, default_factory=dict)

    def to_dict(self, with_instance: bool = False) -> dict[str, Any]:
        out = asdict(self)
        out.pop("end")
        if not with_instance:
            out.pop("instance")
        return out


def student_of(instance: Instance, radius: float | None = None) -> fam.Student:
    """The float64 view of an instance that the families perturb."""
    W_star = np.array([[float(x) for x in r] for r in instance.teacher_W])
    W_star /= np.linalg.norm(W_star, axis=1)[:, None]
    return fam.Student(instance.activation, np.array([float(x) for x in instance.student_a]),
                       np.array([[float(x) for x in r] for r in instance.student_W]),
                       np.array([float(x) for x in instance.teacher_a]), W_star,
                       radius if radius is not None else instance.separation / 3)


def safe_eta(instance: Instance, seed: int = 0) -> float:
    """min(eta, SAFE_ETA_BETA / beta_0): a step the start's smoothness allows (H3 with room).

    beta_0 is the checker's estimate of the Hessian norm of L_lambda at the start
    (``checker.geometry.smoothness.hessian_norm_estimate``, as H3 uses it).
    """
    from ..geometry.smoothness import hessian_norm_estimate

    beta0 = float(hessian_norm_estimate(instance, seed=seed))
    eta = float(instance.eta)
    return min(eta, SAFE_ETA_BETA / beta0) if beta0 > 0 else eta


def perturbed_instance(instance: Instance, family: str, size: float, seed: int = 0) -> Instance:
    a, W = fam.perturb(student_of(instance), family, size, seed)
    name = f"{instance.name or 'instance'}-{family}-{size:.6g}"
    return instance.replace(student_a=[float(x) for x in a], student_W=[[float(x) for x in r] for r in W],
                            name=name)


@contextlib.contextmanager
def shared_certificate() -> Iterator[None]:
    """Build the teacher's dual certificate once for all trials of a search.

    The certificate depends on the teacher, the radius and the seed only, never on
    the student; ``checker.theorem1`` looks ``build_certificate`` up in its module
    at each call, so a memoized version is installed for the duration of the block.
    """
    from ..geometry import certificate as cm

    original = cm.build_certificate
    cache: dict[str, Any] = {}

    def cached(activation: str, a_star: Any, W_star: Any, **kw: Any) -> Any:
        key = json.dumps([activation, np.asarray(a_star, float).tolist(), np.asarray(W_star, float).tolist(),
                          sorted((k, repr(v)) for k, v in kw.items())])
        if key not in cache:
            cache[key] = original(activation, a_star, W_star, **kw)
        return cache[key]

    cm.build_certificate = cached
    try:
        yield
    finally:
        cm.build_certificate = original


def _reg_loss64(instance: Instance) -> float:
    p = Problem.from_instance(instance, Float64Engine())
    return float(p.evaluate(with_gradient=False).reg_loss)


def _options(cfg: TrialConfig, threshold: float | None) -> Any:
    from checker.theorem.check import Options

    # every hypothesis is evaluated even when one fails early (the probe of the reference
    # instance reads H4's gap; a trial is forced anyway)
    return Options(engine=cfg.engine, dps=cfg.dps, schedule="fixed", steps=cfg.steps,
                   gap_target=cfg.gap_target, time_budget=cfg.time_budget, threshold=threshold,
                   seed=cfg.seed, force=threshold is not None, progress=False, all_hypotheses=True)


def checker_thresholds(rf: RunFile, cfg: TrialConfig) -> dict[str, Any]:
    """eps_0, lambda_max and the certificate constants of the checker for the reference instance."""
    from checker.theorem.check import TheoremCheck

    check = TheoremCheck(rf, _options(cfg, None))
    hyps, constants = check.hypotheses()
    out = {k: constants.get(k) for k in ("eps_0", "lambda_max", "rho", "rho_far", "p_norm", "a_min", "Delta")}
    out["reference_gap0"] = getattr(check, "zeta0", None)
    out["hypotheses"] = {h.id: h.holds for h in hyps}
    return out


def diagnose(check: Any, report: Any) -> list[str]:
    """What went wrong in a failing run, in words (from its final student)."""
    from ..geometry.certificate import certificate_terms
    from checker.core.io import engine_from_json

    notes: list[str] = []
    failed = {c.id: c for c in report.conclusions if c.holds is False}
    if "C1" in failed:
        notes.append(f"L_lambda went up along GD ({failed['C1'].detail}): the step is too large for this start")
    if not report.run or "a" not in report.run:
        return notes
    if report.run.get("stop_reason") == "diverged":
        notes.append(f"GD diverged after {report.run.get('steps')} step(s)")
        return notes
    a = np.array([float(x) for x in np.ravel(engine_from_json(check.engine, report.run["a"]))])
    W = np.array([[float(x) for x in r] for r in engine_from_json(check.engine, report.run["W"])])
    a_star = np.array([float(x) for x in check.instance.teacher_a])
    lam = float(check.instance.lam)
    a_min = float(np.abs(a_star).min())
    terms = certificate_terms(check.cert, check.W_star, a, W)
    captured = np.zeros(len(a_star))
    for j, row in enumerate(terms["students"]):
        if row["region"] != "near" or row["mu"] < NEGLIGIBLE * a_min:
            continue
        i = row["nearest"]
        captured[i] += np.sign(a[j]) * row["mu"]
        if np.sign(a[j]) != np.sign(a_star[i]):
            notes.append(f"neuron {j} (mass {row['mu']:.3g}) captured by teacher {i} of the opposite sign "
                         f"(a_j = {a[j]:.3g}, a*_{i} = {a_star[i]:.3g})")
    for i, ai in enumerate(a_star):
        want = ai - lam * np.sign(ai)
        if abs(captured[i] - want) > 0.5 * abs(want):
            notes.append(f"teacher {i} missed: signed mass {captured[i]:.3g} near it, {want:.3g} at the optimum")
    if terms["far_mass"] >= NEGLIGIBLE * a_min:
        notes.append(f"far neurons of total mass {terms['far_mass']:.3g} do not vanish")
    rate = report.constants.get("gap_rate_per_step")
    if not notes and rate is not None and rate > 1 - 1e-4:
        notes.append(f"slow mode: the gap contracts by only {rate:.6f} per step")
    if not notes:
        notes.append("stationary point other than the lambda-optimum (no single neuron to blame)")
    return notes


def run_trial(rf: RunFile, family: str, size: float, cfg: TrialConfig, *, eps0: float,
              keep: bool = False) -> tuple[Trial, Any]:
    """One forced, fixed-lambda T1 run from the start of ``family`` at ``size``.

    The trial's own H4 threshold is set above its initial gap (so H4 never stops
    it) and close enough to it that the certified initial gap keeps ~1e-3 relative
    accuracy (the branch and bound tolerance of ``checker.theorem1`` follows it).
    Returns the trial and, with ``keep``, the (check, report) pair for figures.
    """
    from checker.theorem.check import TheoremCheck

    inst = perturbed_instance(rf.instance, family, size, cfg.seed)
    if cfg.step == "safe":
        eta = safe_eta(inst, cfg.seed)
        if eta < float(inst.eta):
            inst = inst.replace(eta=repr(eta))
    rise = max(_reg_loss64(inst) - _reg_loss64(rf.instance), 0.0)
    threshold = max(2 * abs(eps0), 0.0) + 4 * rise + 1e-12
    t0 = time.perf_counter()
    check = TheoremCheck(RunFile(inst, {}, "", rf.source), _options(cfg, threshold))
    report = check.run()
    seconds = time.perf_counter() - t0
    stop = report.run.get("stop_reason", "") if report.run else ""
    if stop == "interrupted" or getattr(report, "verdict", None) == "interrupted":
        # Ctrl-C inside the T1 run (any phase, also before the descent, where H4's value is
        # not computed yet): the trial is not recorded, the search returns its partial result
        raise KeyboardInterrupt
    h4 = next(h for h in report.hypotheses if h.id == "H4")
    unmet = [h.id for h in report.hypotheses if h.holds is False and h.id != "H4"]
    concl = {c.id: c for c in report.conclusions}
    failed = [c.id for c in report.conclusions if c.holds is False]
    final_gap = float(report.final["gap_upper"]) if report.final else None
    converged = concl.get("C2") is not None and concl["C2"].holds is True
    if converged:
        outcome = "converges" if not failed else ("non-monotone" if failed == ["C1"] else "fails")
    elif stop in ("precision-floor", "diverged") and final_gap is not None \
            and final_gap > STALL_FACTOR * cfg.gap_target:
        outcome, failed = "fails", [c for c in failed if c != "C2"] + ["C2-stalled"]
    elif [c for c in failed if c != "C1"]:
        outcome = "fails"
    else:
        outcome = "inconclusive"
    hist = report.run.get("history") or [{}]
    trial = Trial(size=size, outcome=outcome, gap0=float(h4.value), gap0_rigorous=bool(h4.rigorous),
                  loss0=float(hist[0].get("loss", math.nan)), final_gap=final_gap, stop_reason=stop,
                  steps=int(report.run.get("steps", 0)), seconds=round(seconds, 3), hypotheses_unmet=unmet,
                  eta=float(inst.eta),
                  failed=failed, diagnosis=diagnose(check, report) if outcome in ("fails", "non-monotone") else [],
                  instance=inst.to_dict(), end=_end_point(check, report, stop))
    return trial, ((check, report) if keep else None)


def _end_point(check: Any, report: Any, stop: str) -> dict[str, Any]:
    """GD's final student of a trial in float64 ({} when it diverged or is not finite)."""
    from checker.core.io import engine_from_json

    if stop == "diverged" or not report.run or "a" not in report.run or "W" not in report.run:
        return {}
    a = np.array([float(x) for x in np.ravel(engine_from_json(check.engine, report.run["a"]))])
    W = np.array([[float(x) for x in r] for r in engine_from_json(check.engine, report.run["W"])])
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(W))):
        return {}
    return {"a": a.tolist(), "W": W.tolist()}


# --------------------------------------------------------------------------- the search
@dataclass
class ThresholdResult:
    version: str
    checker_version: str
    family: str
    parameter: str
    size_range: dict[str, float]
    instance: dict[str, Any]
    engine: str
    trial_config: dict[str, Any]
    status: str
    threshold_size: dict[str, float | None]
    threshold_gap: dict[str, float | None]
    threshold_loss: dict[str, float | None]
    eps0_checker: float | None
    lambda_max_checker: float | None
    lambda_: float
    ratio_to_eps0: float | None
    lambda_over_lambda_max: float | None
    counterexample: bool
    failing_run: str | None
    failure: dict[str, Any]
    trials: list[dict[str, Any]]
    checker_constants: dict[str, Any]
    notes: list[str]
    message: str
    interrupted: bool = False
    #: H1-H3 hold at the reference (T1 applies there); else the ratio to eps_0 is "outside T1".
    t1_at_reference: bool | None = None
    #: The bracket's lower end is the unperturbed reference start (no ratio: it says nothing of the basin).
    lower_is_reference: bool = False
    #: Why ratio_to_eps0 is what it is: "ratio", "outside T1", "lower end is the reference", "no eps_0 > 0",
    #: or "no converging trial".
    ratio_status: str = ""
    #: The smallest size where GD converged with L_lambda rising on some steps (C1): {size, gap0, ...}.
    non_monotone: dict[str, Any] = field(default_factory=dict)
    #: Per trial with a finite final student: {size, outcome, stop_reason, gap0, a, W} (float64 lists);
    #: not written to the JSON (the starts of the Newton search of ``checker.stationary.upper``).
    end_points: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("end_points")
        out["lambda"] = out.pop("lambda_")
        return out


def nothing_fails_message(family: str, lo: float, hi: float, gap_lo: float) -> str:
    """What a bracket with no failing start shows: a lower end along this family only.

    A family is one curve of starts through the reference; that all of them converged up to an
    initial gap X bounds the threshold along that curve, not the threshold of every start with a
    gap below X (a start in another direction, e.g. at a spurious stationary point, may fail at a
    smaller gap).
    """
    return (f"nothing fails within the family's range [{lo:g}, {hi:g}]: the family's starts all converged up "
            f"to initial gap {gap_lo:.4g}, so the threshold along the {family} family is above {gap_lo:.4g}; "
            "starts in other directions may fail at smaller gaps (this bounds the threshold along one curve "
            "of starts, not over every start)")


def _ratio(x: float | None, y: float | None) -> float | None:
    return x / y if x is not None and y is not None and y > 0 else None


def find_threshold(rf: RunFile, family: str, cfg: TrialConfig, *, lo: float | None = None,
                   hi: float | None = None, rel_tol: float = 0.05, max_trials: int = 10,
                   progress: bool = False, keep_failing: bool = False,
                   shared: dict[str, Any] | None = None) -> tuple[ThresholdResult, Any]:
    """Bracket the empirical threshold of ``family`` around the reference ``rf``.

    Returns the result and, with ``keep_failing``, the failing trial's full run
    ``(trial, check, report)`` (for its run file and figures), else None.
    ``shared``: a dict shared by the searches of several families from the same
    reference; the checker's thresholds for the reference and the trial at the
    family's lower end (the reference itself, unperturbed: the same numbers for
    every family) are computed once and reused.
    """
    from tqdm import tqdm

    f = fam.family(family)
    cfg.validate()
    lo = f.lo if lo is None else lo
    hi = f.hi if hi is None else hi
    if not (math.isfinite(lo) and math.isfinite(hi) and f.lo <= lo < hi):
        raise CheckerError(f"--range must satisfy {f.lo} <= lo < hi for family {family}, got [{lo}, {hi}]")
    if not 0 < rel_tol < 1:
        raise CheckerError(f"--rel-tol must be in (0, 1), got {rel_tol}")
    if max_trials < 2:
        raise CheckerError(f"--max-trials must be at least 2, got {max_trials}")
    if rf.instance.eta is None:
        raise CheckerError("the instance has no step size \"eta\"")
    trials: dict[float, Trial] = {}
    kept: dict[float, Any] = {}
    interrupted = False
    bar = tqdm(total=max_trials + 1, file=sys.stderr, disable=not progress, desc=f"threshold {family}",
               unit="trial", leave=False)
    with shared_certificate():
        bar.set_postfix_str("checker's eps_0")
        ckey = json.dumps(["checker_thresholds", rf.instance.to_dict(),
                           {k: v for k, v in asdict(cfg).items() if k != "step"}])  # (the step is the trials')
        if shared is not None and ckey in shared:
            consts = shared[ckey]
        else:
            try:
                consts = checker_thresholds(rf, cfg)
            except KeyboardInterrupt:  # Ctrl-C while probing the reference: a partial result, no trial
                interrupted = True
                consts = {"eps_0": None, "lambda_max": None, "hypotheses": {}}
            if shared is not None and not interrupted:
                shared[ckey] = consts
        bar.update(1)
        eps0, lam_max = consts["eps_0"], consts["lambda_max"]

        def oracle(s: float) -> str:
            key = None  # only the unperturbed start is shared between families
            if s == f.lo and shared is not None:
                start = perturbed_instance(rf.instance, family, s, cfg.seed).to_dict()
                start.pop("name")
                key = json.dumps(["trial", start, asdict(cfg), eps0])  # the start's numbers, not the family
            if key is not None and key in shared:
                t, pair = shared[key], None  # the unperturbed reference, run for another family
            else:
                t, pair = run_trial(rf, family, s, cfg, eps0=eps0 if eps0 is not None else 0.0,
                                    keep=keep_failing)
                if key is not None:
                    shared[key] = t
            trials[s] = t
            if pair is not None and t.outcome == "fails":
                kept[s] = pair
            bar.update(1)
            bar.set_postfix_str(f"s={s:.4g} {t.outcome}")
            return t.outcome

        try:
            if interrupted:
                raise KeyboardInterrupt
            bracket = bisect(oracle, lo, hi, tol=rel_tol * (hi - lo), max_trials=max_trials)
        except KeyboardInterrupt:
            interrupted = True
            done = sorted(trials)
            good = max((s for s in done if trials[s].outcome in CONVERGED), default=None)
            bad = min((s for s in done if trials[s].outcome == "fails"), default=None)
            bracket = Bracket(good, bad, "interrupted", [(s, trials[s].outcome) for s in done])
        finally:
            bar.close()
    conv = [t for t in trials.values() if t.outcome in CONVERGED]
    nonmono = [t for t in trials.values() if t.outcome == "non-monotone"]
    fail = [t for t in trials.values() if t.outcome == "fails"]
    gap_lo = max((t.gap0 for t in conv), default=None)
    gap_hi = min((t.gap0 for t in fail), default=None)
    loss_lo = max((t.loss0 for t in conv), default=None)
    loss_hi = min((t.loss0 for t in fail), default=None)
    notes: list[str] = [
        "eps_0 and lambda_max are this checker's operational thresholds (checker.theorem1), "
        "not the paper's constants; the families and the trial classification are this checker's choices",
        "gaps are upper bounds of zeta_0 = L_lambda(theta_0) - L*_lambda from the duality bound"
        + (" (rigorous)" if all(t.gap0_rigorous for t in trials.values()) else " (some not rigorous)"),
    ]
    if gap_lo is not None and gap_hi is not None and gap_lo > gap_hi:
        notes.append("a converging start has a larger gap than a failing one: along this family the basin is "
                     "not a sublevel set of the gap")
    inside = bracket.inconclusive_inside
    if inside:
        notes.append(f"inconclusive trials inside the bracket at sizes {[round(s, 6) for s in inside]} "
                     "(budget ran out): the bracket is no sharper than they allow")
    lam = float(rf.instance.lam)
    # The counterexample: a failing start at or below eps_0 with H1-H3 holding.
    counter = [t for t in fail + nonmono if eps0 is not None and t.gap0 <= eps0 and not t.hypotheses_unmet]
    below_but_unmet = [t for t in fail + nonmono if eps0 is not None and t.gap0 <= eps0 and t.hypotheses_unmet]
    if below_but_unmet and not counter:
        notes.append("a failing start below eps_0 violates " + ", ".join(sorted({h for t in below_but_unmet
                                                                               for h in t.hypotheses_unmet}))
                     + ": not covered by T1, not a counterexample")
    failing = min(fail, key=lambda t: t.size) if fail else None
    failure: dict[str, Any] = {}
    if failing is not None:
        failure = {"size": failing.size, "gap0": failing.gap0, "conclusions_failed": failing.failed,
                   "diagnosis": failing.diagnosis, "hypotheses_unmet": failing.hypotheses_unmet,
                   "stop_reason": failing.stop_reason, "final_gap": failing.final_gap}
    status = bracket.status
    hyps = consts.get("hypotheses") or {}
    t1_ref = all(hyps.get(h) is True for h in ("H1", "H2", "H3")) if hyps else None
    lower_is_ref = bracket.good is not None and bracket.good == f.lo and bracket.bad is not None
    if gap_lo is None:
        ratio_status = "no converging trial"
    elif not t1_ref:
        ratio_status = "outside T1"
        unmet_ref = sorted(h for h in ("H1", "H2", "H3") if hyps.get(h) is not True)
        notes.append(f"{', '.join(unmet_ref) or 'H1-H3'} unmet at the reference: T1 does not apply there, "
                     "no ratio to eps_0 (outside T1)")
    elif lower_is_ref:
        ratio_status = "lower end is the reference"
    elif eps0 is None or eps0 <= 0:
        ratio_status = "no eps_0 > 0"
    else:
        ratio_status = "ratio"
    non_monotone: dict[str, Any] = {}
    if nonmono:
        first_nm = min(nonmono, key=lambda t: t.size)
        non_monotone = {"size": first_nm.size, "gap0": first_nm.gap0, "eta": first_nm.eta,
                        "final_gap": first_nm.final_gap, "detail": first_nm.diagnosis,
                        "hypotheses_unmet": first_nm.hypotheses_unmet}
        notes.append(f"non-monotone from size {first_nm.size:.5g} (initial gap {first_nm.gap0:.4g}) at eta "
                     f"{first_nm.eta:.3g}: GD reached the gap target but L_lambda rose on some steps (C1); this is "
                     "where descent stops being monotone at that step, not where the basin ends")
    if interrupted:
        message = f"interrupted after {len(trials)} trial(s); partial bracket"
    elif status.startswith("reference"):
        message = (f"the reference start itself {'fails' if status == 'reference-fails' else 'is inconclusive'}: "
                   "nothing to measure (give a student near the lambda-optimum, or a larger budget)")
    elif status == "nothing-fails":
        message = nothing_fails_message(family, lo, hi, gap_lo)
    elif status == "no-failure-decided":
        message = "no trial failed; the trials above the last converging one were inconclusive (budget)"
    elif lower_is_ref:
        message = (f"the bracket's lower end is the unperturbed reference start (size {bracket.good:g}): the first "
                   f"perturbed size tried already fails (initial gap {gap_hi:.4g}); this says nothing about the "
                   "basin (narrow --range or raise --max-trials)")
    else:
        message = (f"empirical threshold: initial gap in [{gap_lo:.4g}, {gap_hi:.4g}] "
                   f"(loss in [{loss_lo:.4g}, {loss_hi:.4g}])")
    if counter:
        message = (f"COUNTEREXAMPLE to T1: GD fails from an initial gap {min(t.gap0 for t in counter):.4g} "
                   f"<= eps_0 = {eps0:.4g} with H1-H3 holding; " + message)
    result = ThresholdResult(
        version=SCHEMA_VERSION, checker_version=__version__, family=family, parameter=f.parameter,
        size_range={"lo": lo, "hi": hi}, instance=rf.instance.to_dict(), engine=cfg.engine,
        trial_config=asdict(cfg), status=status,
        threshold_size={"lower": bracket.good, "upper": bracket.bad},
        threshold_gap={"lower": gap_lo, "upper": gap_hi}, threshold_loss={"lower": loss_lo, "upper": loss_hi},
        eps0_checker=eps0, lambda_max_checker=lam_max, lambda_=lam,
        ratio_to_eps0=_ratio(gap_lo, eps0) if ratio_status == "ratio" else None,
        lambda_over_lambda_max=_ratio(lam, lam_max), counterexample=bool(counter), failing_run=None,
        failure=failure, trials=[trials[s].to_dict() for s in sorted(trials)],
        checker_constants={k: v for k, v in consts.items() if k != "hypotheses"},
        notes=notes, message=message, interrupted=interrupted, t1_at_reference=t1_ref,
        lower_is_reference=lower_is_ref, ratio_status=ratio_status, non_monotone=non_monotone,
        end_points=[{"size": s, "outcome": trials[s].outcome, "stop_reason": trials[s].stop_reason,
                     "gap0": trials[s].gap0, **trials[s].end} for s in sorted(trials) if trials[s].end])
    extra = (failing, *kept[failing.size]) if failing is not None and failing.size in kept else None
    return result, extra


def failing_run_file(trial: Trial, cfg: TrialConfig, result: ThresholdResult) -> dict[str, Any]:
    """A run file that ``python -m checker.theorem1 --instance FILE`` reads to reproduce a failing trial."""
    run = {"engine": cfg.engine, "schedule": "fixed", "steps": cfg.steps, "time_budget": cfg.time_budget,
           "gap_target": cfg.gap_target, "seed": cfg.seed, "force": True}
    if cfg.dps is not None:
        run["dps"] = cfg.dps
    what = "; ".join(trial.diagnosis) or ", ".join(trial.failed)
    return {"description": f"threshold search, family {result.family} at size {trial.size:.6g} "
                           f"(initial gap {trial.gap0:.4g}): fails ({', '.join(trial.failed)}): {what}",
            "instance": trial.instance, "run": run}
