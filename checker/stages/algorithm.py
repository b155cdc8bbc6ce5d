"""The whole algorithm from a small random start: stage 1, stage 2, stage 3, per seed.

* Stage 1 (``stage1.py``): large steps on W alone, exact population gradient; by
  default the one-step variant (one large centred step, Damian, Lee and
  Soltanolkotabi 2022 style), its step from the teacher's gradient at the start.
  Its frozen-feature floor is compared with that of the start's random unit
  directions (same width); when stage 1 is worse, the run says so and, by
  default, stage 2 uses the random directions instead (``fallback``).
* Stage 2 (``stage2.py``): rows of W normalized to unit norm (the features are
  directions; this checker's choice), the second layer solved exactly by ridge
  regression with weight lambda2 (default: the stage-3 lambda), then the
  network rebalanced (|a_j| = ||w_j||, same function, least weight decay).
* Stage 3 (``stage3.py``): gradient descent on L_lambda from the stage-2 student,
  always, with the lambda schedule and a step the start allows (min(0.5,
  1/beta_0) unless given).  T1 (``checker.theorem1``) is asked separately whether
  it covers that start (``t1_covered``, or the first unmet hypothesis); when it
  does, its own descent (the same step and schedule) is stage 3 and its
  conclusions are checked, which gives the old reading ``t1_success`` (T1's
  verdict "holds" and a heavy student within the angle bound of every teacher).

"Recovered" is measured on the final state by ``stage3.measure_recovery``
(angle bound, near mass, far mass and loss criteria scaling with lambda).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from checker.core.engines import Engine, make_engine, to_strings
from checker.core.errors import CheckerError, InstanceError
from ..geometry.certificate import nearest_teacher
from checker.core.model import Instance
from checker.core.runfile import RunFile
from . import stage1, stage2, stage3

SCHEMA_VERSION = "1.1"
#: Default stage-3 weight decay (this checker's choice; the recovery criteria scale with it).
DEFAULT_LAMBDA = "0.005"
#: Default stage-3 step budget: STEP_EFOLDS / (eta lambda) steps (mass that no teacher
#: feeds decays like (1 - eta lambda)^(2t) under weight decay), at most MAX_DEFAULT_STEPS.
STEP_EFOLDS = 6.0
MAX_DEFAULT_STEPS = 30_000
#: Default number of multi-step (centred, plain) stage-1 steps and their step size.
MULTI_STEPS, MULTI_ETA = 20, 300.0
#: Default stage-1 variant (docs/algorithm.md: measured against centred and none).
DEFAULT_VARIANT = "one-step"


def default_steps(eta: float, lam: float) -> int:
    """ceil(STEP_EFOLDS / (eta lambda)), between 1000 and MAX_DEFAULT_STEPS."""
    if not (eta > 0 and lam > 0):
        return MAX_DEFAULT_STEPS
    return int(min(MAX_DEFAULT_STEPS, max(1000, math.ceil(STEP_EFOLDS / (eta * lam)))))


@dataclass(frozen=True)
class AlgorithmOptions:
    """Every setting of the three stages (defaults are this checker's choices; None: derived)."""

    width: int = 40
    scale: float = 1e-3
    stage1_eta: float | None = None
    stage1_steps: int | None = None
    variant: str | None = None
    a_value: float = 1e-3
    orient: bool = True
    fallback: bool = True
    lam: str = DEFAULT_LAMBDA
    lam2: str | None = None
    eta: str | None = None  # the stage-3 step, forced (command line --eta)
    eta_cap: float = stage3.ETA_CAP  # otherwise min(eta_cap, 1/beta_0) (a run file's "eta" sets the cap)
    engine: str = "float64"
    dps: int | None = None
    schedule: str = "fixed"
    steps: int | None = None
    gap_target: float | None = None
    time_budget: float | None = None
    angle_bound: float | None = None
    #: seconds for each of T1's Arb gap certifications (None: to their tolerance); see theorem1.Options
    gap_seconds: float | None = None
    progress: bool = True

    def stage1_options(self) -> stage1.Stage1Options:
        variant = self.variant or DEFAULT_VARIANT
        if variant == "one-step":
            if self.stage1_steps not in (None, 1):
                raise CheckerError(f"--stage1-steps {self.stage1_steps}: the one-step variant takes one step")
            steps, eta = 1, self.stage1_eta
        elif variant == "none":
            steps, eta = 1, None
        else:
            steps = self.stage1_steps if self.stage1_steps is not None else MULTI_STEPS
            eta = self.stage1_eta if self.stage1_eta is not None else MULTI_ETA
        return stage1.Stage1Options(self.width, self.scale, eta, steps, variant, self.a_value).validate()

    def validate(self) -> "AlgorithmOptions":
        self.stage1_options()
        for name in ("lam",) + tuple(n for n in ("lam2", "eta") if getattr(self, n) is not None):
            text = getattr(self, name)
            try:
                v = float(text)
            except (TypeError, ValueError):
                raise CheckerError(f"{name} must be a number, got {text!r}") from None
            if not (math.isfinite(v) and v > 0):
                raise CheckerError(f"{name} must be a positive number, got {text!r}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int)
                                       or self.steps < 1):
            raise CheckerError(f"--steps must be a positive whole number, got {self.steps!r}")
        for name in ("gap_target", "time_budget", "angle_bound", "eta_cap", "gap_seconds"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise CheckerError(f"--{name.replace('_', '-')} must be a positive number, got {v!r}")
        make_engine(self.engine, self.dps)
        return self


TEACHER_KEYS = {"activation", "teacher", "name", "normalize_teacher"}


def teacher_instance(data: Any, source: str) -> Instance:
    """A validated teacher (an Instance with a placeholder zero student), errors naming the field."""
    if not isinstance(data, Mapping):
        raise InstanceError(source, "expected a JSON object with keys \"activation\" and \"teacher\"")
    unknown = sorted(set(data) - TEACHER_KEYS)
    if unknown:
        raise InstanceError(f"{source}: {unknown[0]}", "unknown key",
                            f"expected keys: {', '.join(sorted(TEACHER_KEYS))}")
    if "teacher" not in data:
        raise InstanceError(f"{source}: teacher", "is missing", "give {\"a\": [...], \"W\": [[...], ...]}")
    part = data["teacher"]
    if not isinstance(part, Mapping):
        raise InstanceError(f"{source}: teacher", "expected an object with keys \"a\" and \"W\"")
    extra = sorted(set(part) - {"a", "W"})
    if extra:
        raise InstanceError(f"{source}: teacher.{extra[0]}", "unknown key", "expected \"a\" and \"W\"")
    for sub in ("a", "W"):
        if sub not in part:
            raise InstanceError(f"{source}: teacher.{sub}", "is missing")
    W = part["W"]
    d = len(W[0]) if isinstance(W, list) and W and isinstance(W[0], list) else 2
    return Instance.create(activation=data.get("activation", "relu"), teacher_a=part["a"], teacher_W=W,
                           student_a=["0"], student_W=[["0"] * d], lam="0",
                           name=data.get("name", ""), normalize_teacher=data.get("normalize_teacher", False))


# --------------------------------------------------------------------------- results
@dataclass
class Stage1Result:
    span_fraction_min: float
    span_fraction_median: float
    angle_histogram: dict[str, Any]
    floor: float
    random_floor: float
    floor_ratio: float
    losses: list[float]
    variant: str
    eta: float | None = None
    steps: int = 0
    #: stage 1's features have a higher frozen-feature floor than the start's random unit directions
    worse_than_random: bool = False
    #: the features stage 2 used: "stage 1", or "random (fallback: stage 1 worse than random features)"
    features_used: str = "stage 1"


@dataclass
class Stage2Result:
    loss: float
    reg_loss: float
    lambda2: str
    gap: float | None
    threshold: float | None
    below_threshold: bool | None
    max_angle: float | None
    gap_rigorous: bool


@dataclass
class Stage3Result:
    #: "recovered", "not-recovered", "diverged" or "interrupted" (T1's verdict is under ``t1``)
    verdict: str
    final_loss: float | None
    max_angle: float | None
    far_mass: float | None
    message: str
    eta: str = ""
    eta_rule: str = ""
    beta_0: float | None = None
    steps: int = 0
    steps_budget: int = 0
    stop_reason: str = ""
    final_lambda: float | None = None
    run_by: str = ""
    recovery: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SeedResult:
    seed: int
    stage1: Stage1Result
    stage2: Stage2Result
    stage3: Stage3Result
    recovered: bool
    fell_short: str | None
    feature_learning_end: dict[str, Any]
    t1_covered: bool = False
    t1_reason: str | None = None
    t1_success: bool = False
    t1: dict[str, Any] = field(default_factory=dict)
    directions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _floats(x: Any) -> np.ndarray:
    return np.array([[float(v) for v in r] for r in x]) if np.ndim(x) == 2 else np.array([float(v) for v in x])


def heavy_angles(a: np.ndarray, W: np.ndarray, W_star: np.ndarray, a_star: np.ndarray,
                 activation: str, negligible: float) -> tuple[float | None, list[float | None]]:
    """Largest angle to the nearest teacher among neurons of mass >= negligible * a_min, and,
    per teacher, the smallest angle of such a neuron to it (None: no such neuron)."""
    af, Wf = _floats(a), _floats(W)
    mu = np.abs(af) * np.linalg.norm(Wf, axis=1)
    heavy = mu >= negligible * float(np.min(np.abs(a_star)))
    if not np.any(heavy):
        return None, [None] * len(W_star)
    idx, ang = nearest_teacher(W_star, Wf[heavy], activation)
    per = []
    for i in range(len(W_star)):
        sel = ang[idx == i]
        per.append(float(sel.min()) if sel.size else None)
    return float(ang.max()), per


def _number_or_none(text: str) -> float | None:
    """A check's value as a number; None when T1 did not evaluate it (an earlier hypothesis failed)."""
    try:
        return float(text)
    except ValueError:
        return None


def _stage1(engine: Engine, act: str, s1: stage1.Stage1Options, a1: np.ndarray, W: np.ndarray,
            a_star: np.ndarray, W_star: np.ndarray, orient: bool) -> tuple[np.ndarray, list[float], float | None]:
    """W after stage 1, the loss L after each step, the step size used."""
    from checker.core import objective

    zero = engine.scalar(0)

    def loss(Wc: np.ndarray) -> float:
        return float(objective.evaluate(engine, act, a1, Wc, a_star, W_star, zero, with_gradient=False).loss)

    with engine.context():
        losses = [loss(W)]
        if s1.variant == "none":
            return W, losses, None
        if s1.variant == "one-step":
            eta = s1.eta if s1.eta is not None else stage1.one_step_eta(engine, act, a1, W, a_star, W_star)
            W = stage1.run_stage1(engine, act, a1, W, a_star, W_star, eta=engine.scalar(repr(float(eta))),
                                  steps=1, variant="centred")
            losses.append(loss(W))
        else:
            eta = s1.eta
            eta_e = engine.scalar(repr(float(eta)))
            for _ in range(s1.steps):
                W = stage1.run_stage1(engine, act, a1, W, a_star, W_star, eta=eta_e, steps=1, variant=s1.variant)
                losses.append(loss(W))
    if orient and s1.variant in ("centred", "one-step"):
        W = stage1.orient(engine, act, a1, W, a_star, W_star)
    return W, losses, float(eta)


def _t1_reason(report: Any) -> str | None:
    unmet = [h for h in report.hypotheses if h.holds is False]
    if not unmet:
        return None
    h = unmet[0]
    return f"{h.id} fails ({h.value} vs {h.bound})" + (f": {h.detail}" if h.detail else "")


def run_seed(teacher: Instance, opts: AlgorithmOptions, seed: int, *,
             say: Callable[[str], None] = lambda s: None) -> SeedResult:
    """The three stages on one seed (results as data)."""
    from checker.core.constants import NEGLIGIBLE_MASS
    from checker.theorem.check import Options, TheoremCheck
    from checker.core import objective
    from checker.core.problem import Problem

    engine: Engine = make_engine(opts.engine, opts.dps)
    s1 = opts.stage1_options()
    act = teacher.activation
    check_width(teacher, s1.width)
    with engine.context():
        W_star = engine.array(teacher.teacher_W)
        if teacher.normalize_teacher:
            W_star = stage2.unit_rows(engine, W_star)
        a_star = engine.array(teacher.teacher_a)
    Wsf, asf = _floats(W_star), _floats(a_star)
    rng = np.random.default_rng(seed)
    a_f, W0_f = stage1.initial_student(rng, s1.width, teacher.d, s1.scale, s1.a_value)
    a1, W0 = engine.array(a_f.tolist()), engine.array(W0_f.tolist())

    # ---- stage 1
    say(f"seed {seed}: stage 1 ({s1.variant}" + (f", {s1.steps} step(s) on W)" if s1.variant != "none" else ")"))
    W1, losses, eta1 = _stage1(engine, act, s1, a1, W0, a_star, W_star, opts.orient)
    fr = stage1.span_fractions(_floats(W1), Wsf)
    U0 = stage2.unit_rows(engine, W0)
    U1 = stage2.unit_rows(engine, W1)
    f1 = float(stage2.frozen_floor(engine, act, U1, a_star, W_star).loss)
    f0 = float(stage2.frozen_floor(engine, act, U0, a_star, W_star).loss)
    worse = s1.variant != "none" and f1 > f0
    features, used = U1, "stage 1"
    if worse and opts.fallback:
        features, used = U0, "random (fallback: stage 1 worse than random features)"
    st1 = Stage1Result(float(fr.min()), float(np.median(fr)), stage1.angle_histogram(_floats(W1), Wsf, act),
                       f1, f0, f1 / f0 if f0 > 0 else math.inf, losses, s1.variant, eta1,
                       0 if s1.variant == "none" else s1.steps, bool(worse), used)

    # ---- stage 2
    say(f"seed {seed}: stage 2 (ridge regression on the frozen features)")
    lam2_text = opts.lam2 if opts.lam2 is not None else opts.lam
    with engine.context():
        lam2 = engine.scalar(lam2_text)
        lam = engine.scalar(opts.lam)
    a2 = stage2.ridge(engine, act, features, a_star, W_star, lam2)
    ar, Wr = stage2.rebalance(engine, a2, features)
    with engine.context():
        ev2 = objective.evaluate(engine, act, ar, Wr, a_star, W_star, lam, with_gradient=False)
    max2, _ = heavy_angles(ar, Wr, Wsf, asf, act, NEGLIGIBLE_MASS)

    # ---- stage 3: the step the start allows, T1's verdict on the start, the descent
    inst = teacher.replace(student_a=to_strings(engine, ar), student_W=to_strings(engine, Wr),
                           lam=opts.lam, eta=None, name=f"{teacher.name or 'teacher'}-seed{seed}")
    eta_text, beta0, eta_rule = stage3.safe_step(inst, opts.eta, cap=opts.eta_cap, seed=seed)
    inst = inst.replace(eta=eta_text)
    steps = opts.steps if opts.steps is not None else default_steps(float(eta_text), float(opts.lam))
    say(f"seed {seed}: stage 3 (eta {float(eta_text):.4g}, {steps} steps); T1's hypotheses on the start")
    t_opts = Options(engine=opts.engine, dps=opts.dps, schedule=opts.schedule, steps=steps,
                     gap_target=opts.gap_target, time_budget=opts.time_budget, seed=seed,
                     progress=opts.progress, gap_seconds=opts.gap_seconds)
    check = TheoremCheck(RunFile(inst, {}, "stage 2 output", f"seed {seed}"), t_opts)
    check.say = say
    report = check.run()
    hyps = {h.id: h for h in report.hypotheses}
    h4 = hyps.get("H4")
    eps0 = report.constants.get("eps_0")
    h4_done = h4 is not None and h4.holds is not None
    st2 = Stage2Result(float(ev2.loss), float(ev2.reg_loss), lam2_text,
                       _number_or_none(h4.value) if h4_done else None, eps0,
                       h4.holds if h4_done else None, max2, bool(h4.rigorous) if h4_done else False)
    covered = report.verdict != "hypotheses-unmet"
    t1_reason = _t1_reason(report)
    a3 = W3 = None
    history: list[dict[str, Any]] = []
    interrupted = report.verdict == "interrupted"
    if report.run:
        a3, W3 = report.run["a"], report.run["W"]
        lam_f = float(report.run["lambda"])
        stop_reason, steps_done, run_by = report.run.get("stop_reason", ""), report.run.get("steps", 0), "T1"
        history = [{"step": r["step"], "loss": r["loss"], "lam": r["lam"]} for r in report.run.get("history", [])]
    elif not covered:
        say(f"seed {seed}: T1 does not cover the start ({t1_reason}); stage 3 runs anyway")
        problem = Problem.from_instance(inst, engine)
        result = stage3.run_stage3(problem, eta_text, schedule=opts.schedule, steps=steps,
                                   time_budget=opts.time_budget, gap_target=opts.gap_target,
                                   progress=opts.progress)
        a3 = [float(x) for x in result.a]
        W3 = [[float(x) for x in r] for r in result.W]
        lam_f, stop_reason, steps_done, run_by = float(result.lam), result.stop_reason, result.steps, "stage 3"
        history = [{"step": r.step, "loss": r.loss, "lam": r.lam} for r in result.history]
        interrupted = result.stop_reason == "interrupted"
    final_loss = max3 = far3 = None
    per_teacher: list[float | None] = [None] * len(Wsf)
    recovery = None
    if a3 is not None:
        fp = Problem.from_instance(teacher.replace(student_a=[repr(float(x)) for x in a3],
                                                   student_W=[[repr(float(x)) for x in r] for r in W3],
                                                   lam=repr(lam_f)), make_engine("float64", None))
        final_loss = float(fp.evaluate(with_gradient=False).loss)
        max3, per_teacher = heavy_angles(a3, W3, Wsf, asf, act, NEGLIGIBLE_MASS)
        recovery = stage3.measure_recovery(act, asf, Wsf, a3, W3, lam_f, final_loss, teacher.separation)
        far3 = recovery.far_mass
    recovered = bool(recovery is not None and recovery.recovered and not interrupted)
    radius = opts.angle_bound if opts.angle_bound is not None else check.radius
    t1_success = (covered and report.verdict == "holds"
                  and all(x is not None and x <= radius for x in per_teacher))
    if interrupted:
        verdict3 = "interrupted"
    elif a3 is None:
        verdict3 = "not-recovered"
    elif stop_reason == "diverged":
        verdict3 = "diverged"
    else:
        verdict3 = "recovered" if recovered else "not-recovered"
    message = ("recovered" if recovered else
               (recovery.reason() if recovery is not None else report.message))
    st3 = Stage3Result(verdict3, final_loss, max3, far3, message, eta_text if a3 is not None else "", eta_rule,
                       beta0, steps_done if a3 is not None else 0, steps,
                       stop_reason if a3 is not None else "", lam_f if a3 is not None else None,
                       run_by if a3 is not None else "", recovery.to_dict() if recovery else {}, history)
    short: list[str] = []
    if worse:
        short.append(f"stage 1: its features are worse than random unit features (frozen floor {f1:.3g} vs "
                     f"{f0:.3g}, x{f1 / f0:.3g})"
                     + ("; stage 2 used the random features instead" if opts.fallback else ""))
    if not recovered and not interrupted:
        short.append(f"stage 3: not recovered ({message})" if a3 is not None else
                     f"stage 3: no final state ({report.message})")
    fell_short = "; ".join(short) if short else None
    fle = {"frozen_floor": f1, "stage3_loss": final_loss,
           "stage3_below_floor": (final_loss < f1) if final_loss is not None else None,
           "max_angle_stage2": max2, "max_angle_stage3": max3, "angle_bound": radius,
           "recovery_angle_bound": recovery.angle_bound if recovery is not None else None}
    t1 = {"covered": covered, "reason": t1_reason, "verdict": report.verdict, "message": report.message,
          "hypotheses": [h.to_dict() for h in report.hypotheses],
          "conclusions": [c.to_dict() for c in report.conclusions]}
    dirs = {"W0": _floats(W0_f).tolist(), "W1": _floats(W1).tolist(), "a2": _floats(ar).tolist(),
            "W2": _floats(Wr).tolist(),
            "a3": [float(x) for x in a3] if a3 is not None else None,
            "W3": [[float(x) for x in r] for r in W3] if W3 is not None else None}
    res = SeedResult(seed, st1, st2, st3, recovered, fell_short, fle, covered, t1_reason, bool(t1_success), t1, dirs)
    res._report = report  # type: ignore[attr-defined]  # for a counterexample file, not serialized
    res._run_file = check.run_file  # type: ignore[attr-defined]
    res._options = t_opts  # type: ignore[attr-defined]
    return res


def overall_verdict(results: list[dict[str, Any]], interrupted: bool) -> str:
    """'recovered' (every seed), 'fails' (a T1 conclusion failed on a covered start), 'not-recovered',
    'interrupted'."""
    if interrupted:
        return "interrupted"
    if any(r.get("t1", {}).get("verdict") == "fails" for r in results):
        return "fails"
    if results and all(r["recovered"] for r in results):
        return "recovered"
    return "not-recovered"


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Success rate (recoveries), the old T1-gated rate, T1's coverage and stage 1's harm, over seeds."""
    n = len(results)
    ok = sum(1 for r in results if r["recovered"])
    t1 = sum(1 for r in results if r.get("t1_success"))
    cov = sum(1 for r in results if r.get("t1_covered"))
    worse = sum(1 for r in results if r["stage1"].get("worse_than_random"))
    lo, hi = wilson_interval(ok, n)
    return {"success_rate": ok / n if n else 0.0, "recovered": ok, "seeds_run": n,
            "success_interval_95": [lo, hi], "t1_success_rate": t1 / n if n else 0.0, "t1_successes": t1,
            "t1_covered": cov, "stage1_worse_than_random": worse}


def check_width(teacher: Instance, width: int) -> None:
    """A width below m* is bad input (no student of that width can recover the teacher)."""
    if width < teacher.m_star:
        raise CheckerError(f"--width {width} is below the number of teacher neurons m* = {teacher.m_star} "
                           f"of {teacher.name or 'the teacher'}: give --width >= {teacher.m_star}")


def describe_stage1(opts: AlgorithmOptions) -> str:
    s1 = opts.stage1_options()
    if s1.variant == "none":
        return "no stage 1"
    if s1.variant == "one-step":
        return "stage 1 one-step (" + (f"eta {s1.eta:g})" if s1.eta is not None else "eta from the teacher's gradient)")
    return f"stage 1 {s1.variant} x{s1.steps} (eta {s1.eta:g})"


def verdict_line(out: Mapping[str, Any]) -> str:
    """The closing line: recoveries with the Wilson interval, T1's reading, stage 1's harm, the verdict."""
    lo, hi = out["success_interval_95"]
    n = out["seeds_run"]
    text = (f"success rate {out['recovered']}/{n} = {out['success_rate']:.2f} (Wilson 95% [{lo:.2f}, {hi:.2f}]); "
            f"T1 covered {out['t1_covered']}/{n}, T1-gated success {out['t1_successes']}/{n}")
    if out["stage1_worse_than_random"]:
        text += (f"; stage 1 WORSE than random features on {out['stage1_worse_than_random']}/{n} seed(s) "
                 "(stage 1 fell short)")
    if out["recovered"] < n:
        text += f"; stage 3 did not recover {n - out['recovered']}/{n}"
    if "verdict" in out:
        text += f"; verdict: {out['verdict']}"
    return text


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval for k successes in n trials (95% for the default z); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)
