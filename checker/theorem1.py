"""``python -m checker.theorem1``: the local-convergence theorem (formalization T1) on one instance.

Checks the hypotheses H1-H4 of T1 (``docs/formalization.md``), runs gradient
descent on L_lambda (fixed lambda or a decreasing schedule) in float64 or in
mpmath, and checks the conclusions C1-C5 with measured constants.  T1 is this
project's formalization: the paper's own statement, constants and numbering are
not available here, so every threshold below is the checker's operational
choice, stated as such in the output (grade "reconstructed").

Operational definitions (ours, not the paper's):

* neighbourhood radius r = Delta/3 (``--radius``); T_i, T_far as in docs/formalization.md;
* certificate bound B(zeta) = zeta + lambda^2 ||p*||^2 / 4 (docs/formalization.md, from the
  dual certificate eta* with constants rho, rho');
* lambda_max = min(a_min/2, rho' a_min / ||p*||^2), the largest lambda for which
  the threshold below is at least lambda rho' a_min / 4 > 0;
* threshold eps_0 = lambda rho' a_min / 2 - lambda^2 ||p*||^2 / 4: at a gap
  below eps_0 the certificate forces the far mass below a_min / 2, so no
  teacher neuron can be missed (``--threshold`` overrides it);
* H3: eta < 2 / beta_0 with beta_0 the Hessian norm of L_lambda at the start
  (an estimate; C1 then checks every step);
* non-negligible mass (C5): mu_j >= 1e-2 a_min.

Exit status: 0 every conclusion held; 1 a conclusion failed (a counterexample
file is written); 2 bad input or unmet hypotheses; 3 inconclusive (a float64
precision floor or a budget stopped the run before the gap target); 4 outside T1
(hypotheses unmet, run anyway with --force: T1 says nothing about the outcome,
so it is neither "holds" nor a counterexample; the conclusions are reported as
measured); 130 interrupted (the partial result is written).

Phases of a run (``PHASES``), cheapest first: the cheap checks (lambda > 0,
the float64 objective finite, H1, lambda <= a_min/2), the certificate, the
smoothness estimate, the initial gap, the preliminary dual, the descent, the
final gap.  Ctrl-C in any phase ends with verdict "interrupted" naming the
phase; with --checkpoint the results of the finished phases (exact JSON,
decimal strings) and the descent state are written to a sealed checkpoint
(SHA-256 digest of its content, ``checker.core.io.seal``) from which --resume
continues without redoing them.

Rigour: a check labelled rigorous compares a decimal upper bound (rounded up)
with its bound exactly (``decimal_at_most``).  The enclosures are about the
instance as read by the engine (each decimal input rounded to float64 or to the
mp working precision): the report says so in ``rigorous_for``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext
from typing import Any, Sequence

import numpy as np

from checker import __version__
from checker.core import objective
from checker.commands.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, UsageParser, run_guarded
from checker.core.engines import MIN_DPS, Engine, make_engine
from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.commands.options import MAX_SEED, MAX_STEPS, OPTIONS, layer_engine, max_dps, parse_option
from checker.commands.presets import DEFAULT_PRESET, RunFile, load_preset, load_run_file, preset_names
from checker.core.problem import Problem, check_float64_range

SCHEMA_VERSION = "1.0"
EXIT_INCONCLUSIVE = 3
#: Hypotheses unmet, run anyway with --force: the verdict "outside-T1".
EXIT_OUTSIDE_T1 = 4
EXIT_INTERRUPTED = 130

#: The phases of a run, in order; an interrupted report names the one it reached.
PHASES = ("cheap-checks", "certificate", "smoothness", "initial-gap", "preliminary-dual", "descent", "final-gap")
CHECKPOINT_FORMAT = "zhou-ge-checker/t1-checkpoint"
CHECKPOINT_VERSION = 1

#: The hypotheses of T1 in report order, with their statements.
HYPOTHESES = {
    "H1": "teacher normalized, separation Delta > 0, a_min <= |a*_i| <= a_max",
    "H1-certificate": "the teacher has a non-degenerate dual certificate (rho > 0, rho' > 0)",
    "H2": "0 < lambda <= lambda_max = min(a_min/2, rho' a_min/||p*||^2) (checker's choice)",
    "H3": "step eta < 2/beta_0, beta_0 = Hessian norm of L_lambda at the start (estimate)",
    "H4": "initial gap zeta_0 <= eps_0 (eps_0 = lambda rho' a_min/2 - lambda^2 ||p*||^2/4, checker's choice)",
}

#: Keys every monitor row (``TheoremCheck._terms``) carries, each a finite number;
#: rows may carry more keys (any JSON with finite numbers).
MONITOR_KEYS = ("lam", "zeta", "reg_loss", "loss", "far_mass", "weighted_sq_angle", "C3_bound", "C4_bound",
                "max_heavy_angle")

#: Relative size of a neuron mass that counts as non-negligible in C5 (times a_min).
NEGLIGIBLE_MASS = 1e-2


@dataclass
class Check:
    """One hypothesis or conclusion: measured value, its bound, and whether it held."""

    id: str
    statement: str
    holds: bool | None  # None: not applicable / undetermined (detail says why)
    value: str
    bound: str
    detail: str = ""
    rigorous: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Options:
    engine: str = "float64"
    dps: int | None = None
    schedule: str = "fixed"
    steps: int = 20_000
    eta: str | None = None
    gap_target: float | None = None
    time_budget: float | None = None
    radius: float | None = None
    threshold: float | None = None
    seed: int = 0
    force: bool = False
    checkpoint: str | None = None
    resume: bool = False
    progress: bool = True
    #: mp engine: float64 steps until float64's precision floor, then mp (checker.dynamics.hybrid)
    hybrid: bool = True
    #: evaluate every hypothesis even after one failed (no descent without --force);
    #: for callers that report which hypothesis a start misses (checker.algorithm)
    all_hypotheses: bool = False


@dataclass
class Report:
    version: str
    checker_version: str
    verdict: str
    instance: dict[str, Any]
    engine: str
    dps: int
    options: dict[str, Any]
    hypotheses: list[Check]
    conclusions: list[Check] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)
    certificate: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    L_star_interval: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    message: str = ""
    #: the phase reached (``PHASES``): where an interrupted or stopped run ended
    phase: str = ""
    #: which instance the rigorous enclosures describe (the engine's reading of the decimals)
    rigorous_for: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hypotheses"] = [c.to_dict() for c in self.hypotheses]
        out["conclusions"] = [c.to_dict() for c in self.conclusions]
        return out


# --------------------------------------------------------------------------- geometry
def _fit_slope(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) < 2:
        return None
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if np.ptp(xs) == 0:
        return None
    return float(np.polyfit(xs, ys, 1)[0])


def decimal_at_most(upper: str | Decimal, bound: float | str | Decimal) -> bool:
    """upper <= bound, exactly: ``upper`` a decimal upper bound (already rounded up), ``bound``
    a float taken at its exact binary value or a decimal string.

    Never ``float(upper)``: rounding a decimal upper bound to the nearest float can move
    it below the bound it exceeds.  A non-finite or unreadable value compares False.
    """
    try:
        u = upper if isinstance(upper, Decimal) else Decimal(upper)
        b = bound if isinstance(bound, Decimal) else Decimal(bound)
    except (InvalidOperation, TypeError, ValueError):
        return False
    if u.is_nan() or b.is_nan():
        return False
    return u <= b


def _finite_json(x: Any) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, list):
        return all(_finite_json(y) for y in x)
    if isinstance(x, dict):
        return all(_finite_json(y) for y in x.values())
    return True


def validate_monitor(rows: Any, source: str) -> None:
    """One-line CheckerError naming ``source`` unless ``rows`` are monitor rows of ``_terms``."""
    if not isinstance(rows, list):
        raise CheckerError(f"{source}: its monitor must be a list; start again without --resume")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise CheckerError(f"{source}: monitor row {i} is not an object; start again without --resume")
        missing = [k for k in MONITOR_KEYS if k not in row]
        if missing:
            raise CheckerError(f"{source}: monitor row {i} lacks {missing[0]!r}; start again without --resume")
        for k in MONITOR_KEYS:
            v = row[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise CheckerError(f"{source}: monitor row {i}: {k} = {str(v)[:40]!r} is not a finite number; "
                                   "start again without --resume")
        if not _finite_json(row):
            raise CheckerError(f"{source}: monitor row {i} holds a non-finite number; start again without --resume")


def _finite_number_text(x: Any, where: str) -> float:
    """A float written by ``repr`` (checkpoint phase results)."""
    v = _finite_decimal(x, where)
    f = float(v)
    if not math.isfinite(f):
        raise CheckerError(f"{where}: {x[:40]!r} overflows float64")
    return f


def _finite_decimal(x: Any, where: str) -> str:
    try:
        ok = isinstance(x, str) and Decimal(x).is_finite()
    except InvalidOperation:
        ok = False
    if not ok:
        raise CheckerError(f"{where}: expected a finite decimal number as text, got {str(x)[:40]!r}")
    return x


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        try:
            return f"{float(x):.4g}"
        except ValueError:
            return x
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


# --------------------------------------------------------------------------- the check
class TheoremCheck:
    """Hypotheses, run and conclusions of T1 for one instance (results as data)."""

    def __init__(self, run_file: RunFile, options: Options) -> None:
        self.run_file = run_file
        self.instance = run_file.instance
        self.options = options
        self.engine: Engine = make_engine(options.engine, options.dps)
        if self.instance.eta is None and options.eta is None:
            raise CheckerError("no step size: give \"eta\" in the instance or --eta")
        eta_text = options.eta if options.eta is not None else self.instance.eta
        self.instance = self.instance.replace(eta=eta_text)
        # The certificate, the step-size estimate (H3) and the preliminary descent run in
        # float64 whatever the engine: an instance that overflows float64 is refused here,
        # before any long phase (the float64 engine's own guard says the same).
        check_float64_range(self.instance, "T1's certificate and step-size estimate run in float64 "
                            "whatever the engine: rescale the instance")
        self.problem = Problem.from_instance(self.instance, self.engine)
        self.a_star = np.array([float(x) for x in self.instance.teacher_a])
        self.W_star = np.array([[float(x) for x in r] for r in self.instance.teacher_W])
        if self.instance.normalize_teacher:
            self.W_star /= np.linalg.norm(self.W_star, axis=1)[:, None]
        self.lam0 = float(self.instance.lam)
        self.radius = options.radius if options.radius is not None else self.instance.separation / 3
        if not (self.radius > 0 and math.isfinite(self.radius)):
            raise CheckerError(f"--radius must be positive, got {self.radius}")
        self._check_precision()
        self.monitor: list[dict[str, Any]] = []
        #: phase reached, results of the finished phases (exact JSON), checks and constants so far
        self.phase = PHASES[0]
        self.phases: dict[str, Any] = {}
        self.checks: dict[str, Check] = {}
        self.constants: dict[str, Any] = {}
        self.cert: Any = None
        #: what --resume restored: phase results (objects) and the descent checkpoint
        self._restored: dict[str, Any] = {}
        self._gd_resume: dict | None = None
        self._gd_checkpoint: dict | None = None
        #: Progress notes for the long phases (the CLI prints them on stderr).
        self.say: Any = lambda text: None

    # ------------------------------------------------------------ precision sanity
    def _check_precision(self) -> None:
        target = self.options.gap_target
        if target is None:
            return
        if not (target > 0 and math.isfinite(target)):
            raise CheckerError(f"--gap-target must be a positive number, got {target}")
        # A gap is a difference of O(L_lambda) quantities: it cannot be resolved below
        # ~100 ulps of the objective in the engine's arithmetic (float64 ~ 2e-14).
        floor = 100 * self.engine.eps
        if target < floor:
            need = int(math.ceil(-math.log10(target))) + 5
            raise CheckerError(
                f"--gap-target {target:g} is below what {self.engine.describe()} can resolve (~{floor:.1g}); "
                f"use --engine mp --dps {max(need, 30)}")

    # ------------------------------------------------------------ hypotheses
    def hypotheses(self) -> tuple[list[Check], dict[str, Any]]:
        """H1-H4, everything cheap before anything expensive; a failure stops early unless --force.

        Order: the refusals of ``_refuse_outside_t1`` (lambda = 0, float64 overflow:
        exit 2 at once), H1 and the part lambda <= a_min/2 of H2 (no certificate
        needed: lambda_max <= a_min/2 always); then the phases certificate (H1-certificate,
        H2), smoothness (H3), initial gap and preliminary dual (H4).  When a hypothesis
        fails and --force is not given, the later phases are skipped and their checks
        say "not evaluated".  A phase restored from a checkpoint is not recomputed.
        """
        inst = self.instance
        self.checks, self.constants = {}, {}
        checks, constants = self.checks, self.constants
        absw = np.abs(self.a_star)
        a_min, a_max = float(absw.min()), float(absw.max())
        self.phase = "cheap-checks"
        self._refuse_outside_t1()
        checks["H1"] = Check(
            "H1", HYPOTHESES["H1"], True, f"Delta={inst.separation:.6g}", "Delta > 0",
            f"m*={inst.m_star}, d={inst.d}, a_min={a_min:.6g}, a_max={a_max:.6g}, radius r={self.radius:.6g}",
            rigorous=True)
        lam = self.lam0
        constants.update({"a_min": a_min, "a_max": a_max, "Delta": inst.separation, "radius": self.radius})
        if not lam <= a_min / 2:
            checks["H2"] = Check("H2", HYPOTHESES["H2"], False, f"{lam:.6g}", f"{a_min / 2:.6g}",
                                 "lambda_max <= a_min/2 whatever the certificate (checked before it)")
        if self._stop_early():
            return self.hypothesis_list(), constants

        cert = self._phase("certificate", self._certificate_phase, lambda c: c.to_json())
        self.cert = cert
        ok_cert = not cert.degenerate
        checks["H1-certificate"] = Check(
            "H1-certificate", HYPOTHESES["H1-certificate"],
            ok_cert, f"rho={cert.rho:.6g}, rho'={cert.rho_far:.6g}", "> 0",
            cert.reason or f"||p*||={cert.p_norm:.6g}, condition={cert.condition:.3g}",
            rigorous=bool(cert.rho_rigorous and cert.rho_far_rigorous))
        p2 = cert.p_norm ** 2
        if ok_cert and p2 > 0:
            lam_max = min(a_min / 2, cert.rho_far * a_min / p2)
        else:
            lam_max = a_min / 2
        checks["H2"] = Check("H2", HYPOTHESES["H2"], 0 < lam <= lam_max, f"{lam:.6g}", f"{lam_max:.6g}")
        constants.update({"rho": cert.rho, "rho_far": cert.rho_far, "p_norm": cert.p_norm, "lambda_max": lam_max})
        if self._stop_early():
            return self.hypothesis_list(), constants

        eta = float(inst.eta)
        beta0 = self._phase("smoothness", self._smoothness_phase, repr)
        checks["H3"] = Check(
            "H3", HYPOTHESES["H3"], eta * beta0 < 2, f"eta*beta_0={eta * beta0:.4g}", "< 2",
            f"eta={eta:.6g}, beta_0={beta0:.6g}; C1 checks the decrease at every step")
        constants["beta_0"] = beta0
        if self._stop_early():
            return self.hypothesis_list(), constants

        eps0 = (self.options.threshold if self.options.threshold is not None
                else lam * cert.rho_far * a_min / 2 - lam ** 2 * p2 / 4)
        constants["eps_0"] = eps0
        # H4 needs the gap only to ~1e-3 of eps_0; U enters the dual value with weight
        # about ||nu|| ~ sum |a*_i|, hence the tolerance on U for the branch and bound.
        tol = 1e-3 * eps0 / float(absw.sum()) if eps0 > 0 else None
        gap0 = self._phase("initial-gap", lambda: self._initial_gap_phase(tol), lambda g: g.to_dict())
        self.gap0 = gap0
        # The duality bound at theta_0 itself is loose away from the optimum; a
        # preliminary float64 descent gives a point whose dual value is a much better
        # (and still rigorous) lower bound on L*_lambda for the same lambda.
        self.pre_dual = self._phase("preliminary-dual", lambda: self._preliminary_dual(tol=tol),
                                    lambda d: None if d is None else [d[0], d[1]])
        duals = [(gap0.dual, gap0.rigorous)] + ([self.pre_dual] if self.pre_dual else [])
        best_dual, dual_rig = max(duals, key=lambda d: Decimal(d[0]))
        with localcontext() as dctx:  # exact difference of two decimal strings, rounded up
            dctx.prec, dctx.rounding = 400, ROUND_CEILING
            z0_dec = Decimal(gap0.reg_loss) - Decimal(best_dual)
        self.zeta0 = float(z0_dec)
        self.zeta0_rigorous = gap0.rigorous and dual_rig
        self.L_star_lower = (best_dual, dual_rig)
        checks["H4"] = Check(
            "H4", HYPOTHESES["H4"], decimal_at_most(z0_dec, eps0), f"{self.zeta0:.6g}", f"{eps0:.6g}",
            ("threshold given by --threshold; " if self.options.threshold is not None else "")
            + "zeta_0 <= L_lambda(theta_0) - D, D the best dual lower bound on L*_lambda "
            + f"(at theta_0: {float(gap0.dual):.6g}"
            + (f"; after a preliminary float64 descent: {float(self.pre_dual[0]):.6g})" if self.pre_dual else ")")
            + "; compared exactly (the decimal upper bound, rounded up, against eps_0)",
            rigorous=self.zeta0_rigorous)
        return self.hypothesis_list(), constants

    def hypothesis_list(self) -> list[Check]:
        """The checks in their fixed order; one not reached is "not evaluated" (holds None)."""
        return [self.checks.get(h) or Check(h, HYPOTHESES[h], None, "-", "-",
                                             "not evaluated: an earlier hypothesis failed (cheap checks "
                                             "come first; --force evaluates all)"
                                             if any(c.holds is False for c in self.checks.values())
                                             else f"not evaluated: the run stopped in phase {self.phase}")
                for h in HYPOTHESES]

    def _stop_early(self) -> bool:
        if self.options.force or self.options.all_hypotheses:
            return False
        return any(c.holds is False for c in self.checks.values())

    def _refuse_outside_t1(self) -> None:
        """Instances T1 says nothing about, refused in seconds (exit 2) before any long work."""
        from checker.core.engines import Float64Engine

        if Decimal(self.instance.lam) == 0:
            raise CheckerError("T1 needs lambda > 0 (weight decay); for lambda = 0 use python -m checker.gd")
        # The smoothness estimate and the preliminary descent run in float64 whatever the
        # engine, so an instance whose float64 objective or gradient overflows is out of reach.
        fp = Problem.from_instance(self.instance, Float64Engine())
        with np.errstate(all="ignore"):
            ev = fp.evaluate(fp.a, fp.W)
            values = np.concatenate([[ev.loss, ev.reg_loss], np.ravel(ev.grad_a), np.ravel(ev.grad_W)])
            f64_ok = bool(np.all(np.isfinite(values.astype(float))))
        if not f64_ok:
            raise CheckerError(
                f"the float64 evaluation of this instance overflows (L_lambda at the start = {float(ev.reg_loss):g}"
                "): the student or teacher entries are too large for float64 arithmetic, which the "
                "smoothness estimate and the preliminary descent use; rescale the instance")
        with self.engine.context():
            ev = self.problem.evaluate(with_gradient=False)
            value = self.engine.to_str(ev.reg_loss)
        try:
            finite = Decimal(value).is_finite()
        except InvalidOperation:
            finite = False
        if not finite:
            raise CheckerError(f"the initial objective L_lambda = {value[:40]} is not finite in "
                               f"{self.engine.describe()}; rescale the instance")

    def _certificate_phase(self) -> Any:
        """The dual certificate of the teacher (branch and bound for rho' and max |eta| on the sphere of the
        teachers' span when it lies in R^k, k <= 4, whatever d: ``build_certificate`` decides)."""
        from .geometry import certificate as cert_mod

        self.say("building the dual certificate of the teacher ...")
        return cert_mod.build_certificate(self.instance.activation, self.a_star, self.W_star, radius=self.radius,
                                          rigorous=True, seed=self.options.seed)

    def _smoothness_phase(self) -> float:
        """beta_0, the Hessian norm of L_lambda at the start (estimate, float64)."""
        from .geometry.smoothness import hessian_norm_estimate

        self.say("estimating the smoothness beta_0 at the start ...")
        return float(hessian_norm_estimate(self.instance, seed=self.options.seed))

    def _initial_gap_phase(self, tol: float | None) -> Any:
        """The certified gap bound at theta_0 (Arb branch and bound over the sphere)."""
        from .rigorous import duality

        self.say("certifying the initial gap (Arb branch and bound over the sphere) ...")
        return duality.gap_bound(self.problem, rigorous=True, seed=self.options.seed, tol=tol)

    def _phase(self, name: str, compute: Any, dump: Any) -> Any:
        """Run one phase, or take its result from the checkpoint being resumed.

        ``dump`` gives the exact JSON form stored in the checkpoint, which is
        written after every phase that was computed (when --checkpoint is given).
        """
        self.phase = name
        if name in self._restored:
            value = self._restored[name]
            self.say(f"{name}: restored from the checkpoint")
            self.phases[name] = dump(value)
            return value
        value = compute()
        self.phases[name] = dump(value)
        self._save_checkpoint("running")
        return value

    def _preliminary_dual(self, max_steps: int = 5000, tol: float | None = None) -> tuple[str, bool] | None:
        """Rigorous lower bound on L*_lambda from a short float64 descent (None if it fails).

        The descent runs in float64 for speed; its end point is then read exactly into
        the run's engine, so the dual value is for the instance's own lambda.
        """
        from .rigorous import duality
        from checker.core.engines import Float64Engine

        self.say("preliminary float64 descent for a better dual bound ...")
        # A plain fixed-length loop: nothing of run_gd (monitoring, checkpoints, stop
        # rules) is needed for a point whose only use is its dual value.
        fp = Problem.from_instance(self.instance, Float64Engine())
        a, W, eta = fp.a.copy(), fp.W.copy(), float(self.instance.eta)
        with np.errstate(all="ignore"):
            for _ in range(max_steps):
                try:
                    ev = fp.evaluate(a, W)
                except objective.NonFiniteResult:  # the descent overflowed float64
                    return None
                a, W = a - eta * ev.grad_a, W - eta * ev.grad_W
                if not (np.all(np.isfinite(a)) and np.all(np.isfinite(W))):
                    return None
        with self.engine.context():
            ae = self.engine.array([float(x) for x in a])
            We = self.engine.array([[float(x) for x in r] for r in W])
        gb = duality.gap_bound(self.problem, ae, We, rigorous=True, seed=self.options.seed, tol=tol)
        return gb.dual, gb.rigorous

    # ------------------------------------------------------------ checkpoints of the phases
    def defining_options(self) -> dict[str, Any]:
        """The options that define a run (with their effective values): a resume must match them."""
        from checker.dynamics import gd

        return {"engine": self.engine.name, "dps": self.engine.dps if self.engine.name == "mp" else None,
                "schedule": gd.Schedule.parse(self.options.schedule).to_dict(), "eta": self.instance.eta,
                "radius": repr(float(self.radius)), "threshold": self.options.threshold,
                "seed": self.options.seed, "gap_every": self._gap_every()}

    def _checkpoint_data(self, status: str) -> dict[str, Any]:
        from checker.core.io import seal

        return seal({
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "status": status, "phase": self.phase,
            "instance": self.instance.to_dict(), "options": self.defining_options(),
            "phases": dict(self.phases), "hypotheses": [c.to_dict() for c in self.checks.values()],
            "gd": self._gd_checkpoint})

    def _save_checkpoint(self, status: str) -> None:
        if self.options.checkpoint:
            from checker.core.io import write_json_atomic
            write_json_atomic(self.options.checkpoint, self._checkpoint_data(status))

    def _on_gd_checkpoint(self, data: dict[str, Any]) -> None:
        self._gd_checkpoint = data
        self._save_checkpoint(data.get("status", "running"))

    def load_resume(self) -> None:
        """Read and validate the --checkpoint to resume, before any long work.

        Refused with a one-line message naming the file: another format or version;
        content that does not match its digest; another instance or other defining
        options; phase results, descent state or monitor rows that do not parse.
        """
        from checker.dynamics import gd
        from .geometry.certificate import Certificate
        from checker.core.io import check_sealed_format, read_json
        from .rigorous.duality import GapBound

        path = self.options.checkpoint
        if not path:
            raise CheckerError("--resume needs --checkpoint FILE")
        src = f"checkpoint {path}"
        data = read_json(path, "checkpoint")
        check_sealed_format(data, src, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "T1 checkpoint",
                            "start again without --resume")
        for key in ("instance", "options", "phases", "gd"):
            if key not in data:
                raise CheckerError(f"{src}: is missing {key!r}; start again without --resume")
        mine = self.instance.to_dict()
        if data["instance"] != mine:
            theirs = data["instance"] if isinstance(data["instance"], dict) else {}
            key = next((k for k in mine if theirs.get(k) != mine[k]), "instance")
            raise CheckerError(f"{src}: belongs to another instance (its {key!r} differs from this run's); "
                               "resume with the instance and options it was made with")
        opts, theirs = self.defining_options(), data["options"]
        if not isinstance(theirs, dict):
            raise CheckerError(f"{src}: its options are malformed; start again without --resume")
        for key, value in opts.items():
            if theirs.get(key) == value:
                continue
            if key == "gap_every":  # derived from --steps, not an option of its own
                raise CheckerError(f"{src}: was made with a --steps giving a gap evaluation every {theirs.get(key)!r} "
                                   f"steps, this run every {value!r}; resume with the same --steps")
            raise CheckerError(f"{src}: was made with --{key} {theirs.get(key)!r}, this run has {value!r}; "
                               "resume with the same options")
        phases = data["phases"]
        if not isinstance(phases, dict):
            raise CheckerError(f"{src}: its phases are malformed; start again without --resume")
        restored: dict[str, Any] = {}
        for name, value in phases.items():
            where = f"{src}: phase {name}"
            if name == "certificate":
                restored[name] = Certificate.from_json(value, where)
            elif name == "smoothness":
                restored[name] = _finite_number_text(value, where)
            elif name == "initial-gap":
                restored[name] = GapBound.from_dict(value, where)
            elif name == "preliminary-dual":
                if value is not None and not (isinstance(value, list) and len(value) == 2
                                              and isinstance(value[1], bool)):
                    raise CheckerError(f"{where}: expected null or [dual, rigorous]")
                restored[name] = None if value is None else (_finite_decimal(value[0], where), value[1])
            else:
                raise CheckerError(f"{src}: unknown phase {name!r}; start again without --resume")
        if data["gd"] is not None:
            self._validate_gd(data["gd"], src)
            validate_monitor(data["gd"].get("monitor", []), src)
            self.monitor = list(data["gd"].get("monitor", []))
        self._restored = restored
        # carried by every checkpoint written from now on, so an interrupt before the
        # restored phases are reached again does not drop them
        self.phases = dict(phases)
        self._gd_resume = self._gd_checkpoint = data["gd"]

    # ------------------------------------------------------------ monitoring along the run
    def observe(self, problem: Problem, a: np.ndarray, W: np.ndarray, lam: Any) -> float:
        """Gap estimate at a point, with the certificate quantities of C3/C4/C5 recorded."""
        from .rigorous import duality

        gb = duality.gap_bound(problem, a, W, lam=lam, rigorous=False, seed=self.options.seed)
        zeta = max(float(gb.gap_upper), 0.0)
        self._descent_state()["lam"][float(lam)] = lam  # the schedule's lambda in engine numbers (C6/C7)
        self.monitor.append(self._terms(a, W, float(lam), zeta, float(gb.reg_loss)))
        return zeta

    def _descent_state(self) -> dict[str, dict[float, Any]]:
        """Per-lambda cache of the C6/C7 construction: engine lambdas and reduced optima."""
        return self.__dict__.setdefault("_descent_cache", {"lam": {}, "reduced": {}})

    def _descent(self, a: np.ndarray, W: np.ndarray, lam: float, zeta: float) -> dict[str, Any]:
        """The C6/C7 terms at a point: <grad L_lambda, D>, ||grad L_lambda||^2 and their ratios to zeta.

        The reduced lambda-optimum (one neuron per teacher) is computed once per lambda, in the
        run's engine at the run's own lambda (``checker.geometry.descent``).
        """
        from .geometry import descent

        state = self._descent_state()
        lam_e = state["lam"].get(lam)
        if lam_e is None:
            lam_e = self.problem.lam if lam == float(self.problem.lam) else self.engine.scalar(lam)
        if lam not in state["reduced"]:
            try:
                state["reduced"][lam] = descent.reduced_optimum(
                    self.engine, self.problem.activation, self.problem.a_star, self.problem.W_star, lam_e)
            except CheckerError as exc:
                state["reduced"][lam] = str(exc)
        red = state["reduced"][lam]
        if isinstance(red, str):
            return {"dir_deriv": None, "grad_sq": None, "c_D_ratio": None, "c_PL_ratio": None,
                    "descent_excluded": red}
        terms, _ = descent.descent_terms(self.engine, self.problem.activation, a, W, self.problem.a_star,
                                         self.problem.W_star, lam_e, zeta, red, self.radius)
        return terms.to_dict()

    def _terms(self, a: np.ndarray, W: np.ndarray, lam: float, zeta: float, reg_loss: float,
               loss: float | None = None) -> dict[str, Any]:
        from .geometry import certificate as cert_mod

        cert = self.cert
        terms = cert_mod.certificate_terms(cert, self.W_star, a, W)
        a_min = float(np.abs(self.a_star).min())
        heavy = [r["angle"] for r in terms["students"]
                 if r["mu"] >= NEGLIGIBLE_MASS * a_min and r["angle"] is not None]
        if loss is None:
            ev = self.problem.evaluate(a, W, lam=lam, with_gradient=False)
            loss = float(ev.loss)
        return {
            "lam": lam, "zeta": zeta, "reg_loss": reg_loss, "loss": loss,
            "far_mass": float(terms["far_mass"]), "weighted_sq_angle": float(terms["weighted_sq_angle"]),
            "C3_bound": cert_mod.c3_bound(cert, lam, zeta) if lam > 0 else math.inf,
            "C4_bound": cert_mod.c4_bound(cert, lam, zeta) if lam > 0 else math.inf,
            "max_heavy_angle": max(heavy) if heavy else 0.0,
            **(self._descent(a, W, lam, zeta) if lam > 0 else {}),
        }

    # ------------------------------------------------------------ the run
    def run(self, on_hypotheses: Any = None) -> Report:
        """The phases of PHASES in order: hypotheses, then (when they hold or --force) the
        descent, the final gap and the conclusions.

        ``on_hypotheses(checks)`` is called before the descent starts (the CLI prints them).
        With --resume the checkpoint is validated first and its finished phases are not
        redone.  Ctrl-C in any phase returns the partial report (verdict "interrupted",
        ``phase`` the phase reached) and writes the checkpoint when --checkpoint is given.
        """
        from checker.dynamics import gd, hybrid
        from .rigorous import duality

        opts = self.options
        report = Report(SCHEMA_VERSION, __version__, "holds", self.instance.to_dict(), self.engine.name,
                        self.engine.dps, {k: v for k, v in asdict(opts).items() if k != "progress"},
                        [], rigorous_for=self.rigorous_for())
        # cheap validation first: the options of the descent, then the checkpoint to resume
        schedule = gd.Schedule.parse(opts.schedule)
        stop = gd.StopRules(max_steps=opts.steps, time_budget=opts.time_budget, gap_target=opts.gap_target,
                            gap_every=self._gap_every())
        if opts.resume:
            self.load_resume()
        try:
            hyps, constants = self.hypotheses()
        except KeyboardInterrupt:
            return self._interrupted(report)
        report.hypotheses = hyps
        report.constants.update(constants)
        report.phase = self.phase
        if self.cert is not None:
            report.certificate = self.cert.to_dict()
        if on_hypotheses is not None:
            on_hypotheses(hyps)
        unmet = [h for h in hyps if h.holds is False]
        if unmet and not opts.force:
            report.verdict = "hypotheses-unmet"
            report.message = "; ".join(f"{h.id} fails ({h.value} vs {h.bound})" for h in unmet) + \
                ". " + _advice(unmet)
            return report
        if unmet:
            report.notes.append("hypotheses unmet but --force given: the conclusions are not covered by T1")

        self.phase = "descent"
        try:
            # the initial point enters the C3/C4 record
            if not self.monitor:
                self.monitor.append(self._terms(self.problem.a, self.problem.W, self.lam0,
                                                max(float(self.gap0.gap_upper), 0.0), float(self.gap0.reg_loss)))
            run = hybrid.run_hybrid if self._hybrid() else gd.run_gd
            result = run(self.problem, self.problem.eta, schedule=schedule, stop=stop,
                         gap_fn=self.observe, resume=self._gd_resume, progress=opts.progress,
                         monitor=self.monitor, instance_dict=self.instance.to_dict(),
                         on_checkpoint=self._on_gd_checkpoint if opts.checkpoint else None)
        except KeyboardInterrupt:
            return self._interrupted(report)
        report.run = result.to_dict(self.engine)
        if result.stop_reason == "interrupted":
            return self._interrupted(report, f" at step {result.steps}")

        self.phase = "final-gap"
        try:
            self.say("certifying the final gap (Arb branch and bound over the sphere) ...")
            final = duality.gap_bound(self.problem, result.a, result.W, lam=result.lam, rigorous=True,
                                      seed=opts.seed)
            with self.engine.context():
                ev = self.problem.evaluate(result.a, result.W, lam=result.lam, with_gradient=False)
            final_terms = self._terms(result.a, result.W, float(result.lam), max(float(final.gap_upper), 0.0),
                                      float(final.reg_loss), loss=float(ev.loss))
        except KeyboardInterrupt:
            return self._interrupted(report)
        report.phase = self.phase
        report.final = {"loss": self.engine.to_str(ev.loss), "reg_loss": self.engine.to_str(ev.reg_loss),
                        "gap_upper": final.gap_upper, "gap_rigorous": final.rigorous,
                        "lambda": self.engine.to_str(result.lam), "gap": final.to_dict()}
        report.L_star_interval = {"lower": final.dual, "upper": final.reg_loss, "rigorous": final.rigorous,
                                  "lambda": self.engine.to_str(result.lam)}
        self.monitor.append(final_terms)
        report.conclusions, measured = self.conclusions(result, final, schedule)
        report.constants.update(measured)
        report.notes.append("all constants are measured on this instance by this checker; "
                            "the paper's own constants are not known here")
        applicable = [c for c in report.conclusions if c.holds is not None]
        if any(c.holds is False for c in applicable):
            report.verdict = "fails"
            report.message = "; ".join(f"{c.id} fails: {c.detail}" for c in applicable if c.holds is False)
        elif any(c.holds is None and c.id == "C2" for c in report.conclusions):
            report.verdict = "inconclusive"
            report.message = next(c.detail for c in report.conclusions if c.id == "C2")
        if unmet:
            # T1 says nothing about this run: neither "holds" nor a counterexample to it.
            forced = ", ".join(h.id for h in unmet)
            report.message = (f"run with --force although {forced} failed: T1 does not cover this run"
                              + (f" (as a plain run: {report.verdict}"
                                 + (f"; {report.message}" if report.message else "") + ")"))
            report.verdict = "outside-T1"
        return report

    def _interrupted(self, report: Report, where: str = "") -> Report:
        """The partial report of a Ctrl-C in the current phase; the checkpoint is written first."""
        report.verdict = "interrupted"
        report.phase = self.phase
        report.hypotheses = self.hypothesis_list()
        report.constants.update(self.constants)
        if self.cert is not None:
            report.certificate = self.cert.to_dict()
        ckpt = self.options.checkpoint
        try:
            self._save_checkpoint("interrupted")
        except KeyboardInterrupt:  # a second Ctrl-C during the atomic write: the previous file is intact
            pass
        report.message = (f"interrupted in phase {self.phase}{where}; partial result written"
                          + (f", resume with --resume --checkpoint {ckpt}" if ckpt else ""))
        return report

    def rigorous_for(self) -> str:
        """Which instance the rigorous enclosures are about (the engine's reading of the decimals)."""
        how = ("rounded to the nearest float64" if self.engine.name == "float64" else
               f"rounded to the mp working precision ({self.engine.describe()})")
        return (f"the instance as read by the engine: each decimal input {how}"
                + (", teacher rows then normalized in that arithmetic" if self.instance.normalize_teacher else "")
                + "; the Arb enclosures are exact for those numbers, not for the decimal strings themselves")

    def _hybrid(self) -> bool:
        """The descent runs as ``checker.dynamics.hybrid.run_hybrid`` (mp engine and hybrid on)."""
        return self.options.hybrid and self.engine.name != "float64"

    def _validate_gd(self, data: Any, source: str) -> None:
        from checker.dynamics import gd, hybrid

        if self._hybrid():
            hybrid.validate_checkpoint(data, self.problem, source)
        else:
            gd.validate_checkpoint(data, self.problem, source)

    def _gap_every(self) -> int:
        return max(20, min(200, self.options.steps // 50 or 20))

    # ------------------------------------------------------------ conclusions
    def conclusions(self, result: Any, final: Any, schedule: Any) -> tuple[list[Check], dict[str, Any]]:
        eng = self.engine
        out: list[Check] = []
        measured: dict[str, Any] = {}
        # C1: every step decreases L_lambda, up to the rounding of the objective itself.
        # L_lambda is a cancelling sum of kernel terms of size up to S = |L_lambda| + ||f*||^2,
        # so a computed value is uncertain by a few ulps of S (GDResult.rounding_scale = eps S);
        # an increase within 16 such ulps is not a failure of descent.
        scale = max(abs(r.reg_loss) for r in result.history) if result.history else 1.0
        tol = 16 * result.rounding_scale
        holds_c1 = result.max_increase <= tol
        detail_c1 = (f"{result.increases} step(s) increased L_lambda, the largest by {result.max_increase:.3g}; "
                     f"tolerance = 16 ulps of |L_lambda| + ||f*||^2")
        f64 = result.float64_phase
        if f64 is not None:  # a hybrid run: the float64 steps against float64's own rounding level
            tol64 = 16 * f64["rounding_scale"]
            holds_c1 = holds_c1 and f64["max_increase"] <= tol64
            detail_c1 = (f"hybrid run: {f64['steps']} float64 steps ({f64['increases']} increase(s), the largest "
                         f"{f64['max_increase']:.3g} <= {tol64:.3g}, 16 float64 ulps), then "
                         f"{result.steps - f64['steps']} steps in {eng.describe()}: " + detail_c1)
        out.append(Check("C1", "L_lambda decreases along GD (per step, up to rounding)",
                         holds_c1, f"{result.max_increase:.3g}", f"{tol:.3g}", detail_c1))
        # C2: the gap goes to zero at the final lambda.
        gaps = [(r.step, r.gap) for r in result.history if r.gap is not None and r.gap > 0
                and r.lam == float(result.lam)]
        slope = _fit_slope([s for s, _ in gaps[-20:]], [math.log(g) for _, g in gaps[-20:]])
        rate = math.exp(slope) if slope is not None else None
        measured["gap_rate_per_step"] = rate
        g_final = float(final.gap_upper)
        target = self.options.gap_target
        # exact comparison of the decimal upper bound (rounded up) with the float bound
        if target is not None:
            holds: bool | None = decimal_at_most(final.gap_upper, target)
            bound = f"{target:.3g}"
        else:
            holds = decimal_at_most(final.gap_upper,
                                    max(1e-3 * float(self.gap0.gap_upper), 1e3 * eng.eps * max(scale, 1.0)))
            bound = "1e-3 x initial gap"
        detail = (f"final gap bound {'rigorous' if final.rigorous else 'estimate'}; "
                  f"fitted rate {rate:.6g} per step" if rate is not None else "no rate fitted")
        if not holds and (result.precision_floor or result.stop_reason in ("max-steps", "time-budget")):
            holds = None
            detail = (f"undetermined: the run stopped ({result.stop_reason}) at gap {g_final:.3g} above the "
                      f"target {bound}" + ("; float64 precision floor reached: rerun with --engine mp"
                                           if result.precision_floor else "; raise --steps or --time-budget"))
        out.append(Check("C2", "zeta_t -> 0 at fixed lambda (final gap at or below the target)", holds,
                         final.gap_upper, bound, detail, rigorous=final.rigorous))
        # C3, C4: certificate inequalities at every monitored point.
        r3 = [m["far_mass"] / m["C3_bound"] for m in self.monitor if m["C3_bound"] > 0]
        r4 = [m["weighted_sq_angle"] / m["C4_bound"] for m in self.monitor if m["C4_bound"] > 0]
        w3, w4 = max(r3, default=0.0), max(r4, default=0.0)
        measured["C3_worst_ratio"], measured["C4_worst_ratio"] = w3, w4
        last = self.monitor[-1]
        out.append(Check("C3", "far mass <= (zeta + lambda^2 ||p*||^2/4)/(lambda rho') along the run",
                         w3 <= 1, f"{w3:.4g}", "1", f"worst ratio over {len(r3)} points; final far mass "
                         f"{last['far_mass']:.3g} <= {last['C3_bound']:.3g}"))
        out.append(Check("C4", "sum_near mu_j angle_j^2 <= (zeta + lambda^2 ||p*||^2/4)/(lambda rho) along the run",
                         w4 <= 1, f"{w4:.4g}", "1", f"worst ratio over {len(r4)} points; final "
                         f"{last['weighted_sq_angle']:.3g} <= {last['C4_bound']:.3g}"))
        # C5: lambda schedule: loss -> 0 and heavy neurons converge to teacher directions.
        stages = self._stage_ends()
        measured["stages"] = stages
        lam_f = float(result.lam)
        measured["final_loss_over_lambda2"] = last["loss"] / lam_f ** 2 if lam_f > 0 else None
        measured["final_max_angle_over_lambda"] = last["max_heavy_angle"] / lam_f if lam_f > 0 else None
        measured["final_far_mass"] = last["far_mass"]
        measured["final_max_angle"] = last["max_heavy_angle"]
        if len(stages) >= 2:
            lams = [s["lam"] for s in stages]
            losses = [s["loss"] for s in stages]
            angles = [s["max_heavy_angle"] for s in stages]
            e_loss = _fit_slope([math.log(x) for x in lams], [math.log(max(x, 1e-300)) for x in losses])
            e_ang = _fit_slope([math.log(x) for x in lams], [math.log(max(x, 1e-300)) for x in angles])
            measured["loss_exponent_in_lambda"], measured["angle_exponent_in_lambda"] = e_loss, e_ang
            dec_loss = all(y < x for x, y in zip(losses, losses[1:]))
            dec_ang = all(y <= x for x, y in zip(angles, angles[1:]))
            out.append(Check("C5", "along the lambda schedule the loss and the largest angle of "
                             "non-negligible neurons decrease to 0",
                             dec_loss and dec_ang and (e_loss or 0) > 0,
                             f"loss ~ lambda^{_fmt(e_loss)}, angle ~ lambda^{_fmt(e_ang)}", "exponents > 0",
                             f"{len(stages)} stages; losses {[f'{x:.3g}' for x in losses]}; "
                             f"max angles {[f'{x:.3g}' for x in angles]}"))
        else:
            out.append(Check("C5", "along the lambda schedule the loss and the largest angle of "
                             "non-negligible neurons decrease to 0", None, "-", "-",
                             "not applicable: one lambda only (use --schedule geometric)"))
        out.extend(self._descent_conclusions(result, measured))
        return out, measured

    def _descent_conclusions(self, result: Any, measured: dict[str, Any]) -> list[Check]:
        """C6 (descent direction) and C7 (gradient domination) from the monitored ratios.

        Measured constants of this checker, not the paper's: the smallest ratio seen along the run.
        A point enters only when the construction of D applies (every teacher covered) and zeta is
        above ZETA_FLOOR_ULPS ulps of |L_lambda| + ||f*||^2 (``checker.geometry.descent``).
        """
        from .geometry import descent
        from .geometry.smoothness import hessian_norm_estimate

        rows = [m for m in self.monitor if "c_D_ratio" in m or "descent_excluded" in m]
        cd = [m["c_D_ratio"] for m in rows if m.get("c_D_ratio") is not None]
        cpl = [m["c_PL_ratio"] for m in rows if m.get("c_PL_ratio") is not None]
        reasons = sorted({m["descent_excluded"].split(" ")[0] == "zeta" and "zeta at the rounding floor"
                          or m["descent_excluded"] for m in rows if m.get("descent_excluded")})
        excluded = f"{len(rows) - len(cd)} point(s) excluded ({'; '.join(reasons)})" if len(rows) > len(cd) else \
            "no point excluded"
        rule = (f"points with zeta <= {descent.ZETA_FLOOR_ULPS} ulps of |L_lambda| + ||f*||^2 are excluded "
                "(both sides at rounding level)")
        c_D = min(cd) if cd else None
        c_PL = min(cpl) if cpl else None
        measured["c_D"], measured["c_PL"] = c_D, c_PL
        measured["c_D_points"], measured["c_PL_points"] = len(cd), len(cpl)
        reduced = {lam: r for lam, r in self._descent_state()["reduced"].items() if not isinstance(r, str)}
        if reduced:
            lam_f = min(reduced)
            r = reduced[lam_f]
            measured["reduced_optimum"] = {"lambda": lam_f, "signed_mass": r.signed_mass,
                                           "angle_to_teacher": r.angle_to_teacher,
                                           "min_hessian_eig": r.min_hessian_eig, "converged": r.converged}
        out: list[Check] = []
        neg = ("a non-positive value means that at some monitored point the gradient does not point along "
               "D = theta - theta-hat by a positive multiple of the gap: the reconstructed direction is not "
               "a descent direction there (against this checker's construction, not a disproof of the paper)")
        out.append(Check(
            "C6", "descent direction: <grad L_lambda(theta), D> >= c_D zeta(theta) with c_D > 0 along the run "
            "(c_D measured by this checker)",
            (c_D > 0) if c_D is not None else None, _fmt(c_D), "> 0",
            (f"smallest ratio over {len(cd)} monitored points; {excluded}; {rule}; " + neg) if cd else
            f"undetermined: no monitored point qualifies ({excluded}; {rule})"))
        # The rate gradient domination implies at the final lambda, next to the C2 fit.
        lam_final = float(result.lam)
        final_cpl = [m["c_PL_ratio"] for m in rows if m.get("c_PL_ratio") is not None and m["lam"] == lam_final]
        eta = float(self.instance.eta)
        betas = [hessian_norm_estimate(self.instance, seed=self.options.seed)]
        try:
            end = self.instance.replace(student_a=[repr(float(x)) for x in result.a],
                                        student_W=[[repr(float(x)) for x in row] for row in result.W],
                                        lam=repr(lam_final))
            betas.append(hessian_norm_estimate(end, seed=self.options.seed))
        except CheckerError:
            pass
        beta = max(betas)
        c_final = min(final_cpl) if final_cpl else None
        implied = descent.implied_rate(c_final, eta, beta) if c_final is not None else None
        observed = measured.get("gap_rate_per_step")
        measured["c_PL_final_lambda"] = c_final
        measured["beta_max_estimate"] = beta
        measured["implied_rate_per_step"] = implied
        measured["observed_rate_per_step"] = observed
        consistent = (implied is not None and observed is not None and observed <= implied * (1 + 1e-9))
        measured["implied_rate_bounds_observed"] = consistent if implied is not None and observed is not None else None
        rate_text = (f"implied rate 1 - eta c_PL (1 - eta beta/2) = {_fmt(implied)} per step (eta = {eta:.4g}, "
                     f"c_PL = {_fmt(c_final)} at the final lambda, beta = {beta:.4g}, the larger Hessian-norm "
                     f"estimate at the start and the end) vs observed {_fmt(observed)} (C2 fit)"
                     + ("; the implied rate bounds the observed one" if consistent else
                        "; the implied rate does NOT bound the observed one (beta or c_PL is only an estimate "
                        "between monitored points)" if implied is not None and observed is not None else ""))
        out.append(Check(
            "C7", "gradient domination: ||grad L_lambda(theta)||^2 >= c_PL zeta(theta) with c_PL > 0 along the run "
            "(c_PL measured by this checker)",
            (c_PL > 0) if c_PL is not None else None, _fmt(c_PL), "> 0",
            (f"smallest ratio over {len(cpl)} monitored points; {excluded}; {rate_text}; a non-positive value "
             "means a monitored point with a positive gap and a vanishing gradient (a stationary point "
             "above the optimum)") if cpl else
            f"undetermined: no monitored point qualifies ({excluded}; {rule})"))
        return out

    def _stage_ends(self) -> list[dict[str, Any]]:
        """The last monitored point of each lambda (stage ends of the schedule)."""
        ends: dict[float, dict[str, Any]] = {}
        for m in self.monitor:
            ends[m["lam"]] = m
        return [ends[k] for k in sorted(ends, reverse=True)]


def _advice(unmet: list[Check]) -> str:
    tips = {
        "H1-certificate": "the teacher's dual certificate is degenerate: separate the teacher directions more",
        "H2": "lower lambda below lambda_max",
        "H3": "lower the step eta (--eta) below 2/beta_0",
        "H4": "start the student closer to the teacher's optimum, or pass --threshold if you know the theorem's",
    }
    return ("To fix: " + "; ".join(tips.get(h.id, h.id) for h in unmet)
            + " (or --force to run anyway: T1 then does not cover the run, verdict outside-T1).")


# --------------------------------------------------------------------------- printing
def print_header(report_instance: Instance, check: TheoremCheck, source: str, out: Any = None) -> None:
    out = out or sys.stdout
    inst = report_instance
    print(f"T1 check — {source}: {inst.activation}, d={inst.d}, m*={inst.m_star}, m={inst.m}, "
          f"lambda={inst.lam}, eta={inst.eta}, engine={check.engine.describe()}", file=out)


def print_checks(title: str, checks: list[Check], out: Any = None) -> None:
    out = out or sys.stdout
    print(f"\n{title}", file=out)
    for c in checks:
        mark = {True: "holds", False: "FAILS", None: "n/a"}[c.holds]
        rig = " [rigorous]" if c.rigorous else ""
        print(f"  {c.id:<15} {mark:<6} {c.value} (bound {c.bound}){rig}", file=out)
        print(f"  {'':<15}        {c.statement}", file=out)
        if c.detail:
            print(f"  {'':<15}        {c.detail}", file=out)


def print_report(report: Report, out: Any = None) -> None:
    out = out or sys.stdout
    if report.conclusions:
        print_checks("Conclusions", report.conclusions, out)
    if report.final:
        f = report.final
        print(f"\nFinal: L = {f['loss']}, L_lambda = {f['reg_loss']}, gap <= {f['gap_upper']} "
              f"({'rigorous' if f['gap_rigorous'] else 'estimate'})", file=out)
        lo, hi = report.L_star_interval["lower"], report.L_star_interval["upper"]
        print(f"L*_lambda in [{lo}, {hi}]", file=out)
    if report.constants:
        print("\nMeasured constants (this checker's measurements, not the paper's constants):", file=out)
        for k, v in report.constants.items():
            if k in ("stages", "reduced_optimum"):
                continue
            print(f"  {k:<30} {_fmt(v)}", file=out)
    red = report.constants.get("reduced_optimum")
    if red:
        print(f"\nReduced lambda-optimum (one neuron per teacher, lambda = {red['lambda']:.4g}; the target of D): "
              f"signed masses {[f'{x:.6g}' for x in red['signed_mass']]}, angles to the teachers "
              f"{[f'{x:.3g}' for x in red['angle_to_teacher']]} rad", file=out)
    for n in report.notes:
        print(f"note: {n}", file=out)
    print(f"\nverdict: {report.verdict}" + (f" — {report.message}" if report.message else ""), file=out)


# --------------------------------------------------------------------------- command line
def build_parser() -> UsageParser:
    p = UsageParser(prog="python -m checker.theorem1",
                    description="Check the local-convergence theorem (T1) on one instance.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help=f"embedded instance (default: {DEFAULT_PRESET}); --list-presets lists them")
    src.add_argument("--instance", help="instance or run file (JSON)")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    # Option values are read as text and validated by the one table of checker.commands.options
    # (the same ranges and messages as the keys of a run file).
    p.add_argument("--engine", help="'float64' (default) or 'mp'")
    p.add_argument("--dps", help=f"digits for --engine mp ({MIN_DPS} to {max_dps()}, default 50)")
    p.add_argument("--schedule", help="'fixed' or 'geometric:factor=0.5,switch=1e-2,min=1e-4'")
    p.add_argument("--steps", help=f"step budget (1 to {MAX_STEPS})")
    p.add_argument("--eta", help="step size (overrides the instance)")
    p.add_argument("--gap-target", help="stop when the gap bound is below this (> 0)")
    p.add_argument("--time-budget", help="seconds of wall time for the descent (> 0)")
    p.add_argument("--radius", help="neighbourhood radius r in radians, 0 < r <= pi (default Delta/3)")
    p.add_argument("--threshold", help="eps_0 of H4, > 0 (default: the checker's choice)")
    p.add_argument("--json", help="write the result (schema in README) to this file")
    p.add_argument("--plots", help="write figures to this directory")
    p.add_argument("--seed", help=f"seed of the randomized searches, 0 to {MAX_SEED} (default 0)")
    p.add_argument("--checkpoint", help="checkpoint file (written periodically, on Ctrl-C and at the end)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--force", action="store_true", help="run even when hypotheses are unmet")
    p.add_argument("--no-hybrid", action="store_true",
                   help="mp engine: every step in mp (default: float64 steps until float64's precision "
                        "floor, then mp from that iterate; checker.dynamics.hybrid)")
    p.add_argument("--counterexample-dir", default=".", help="where a failing instance is saved (default .)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def options_from(args: argparse.Namespace, rf: RunFile) -> Options:
    """The run options: command-line flags over the run file's, each validated by the one table."""
    run = rf.run  # validated when the run file was read (checker.commands.presets)
    cli = {key: parse_option(key, getattr(args, key)) for key in OPTIONS
           if key not in ("force", "hybrid") and getattr(args, key, None) is not None}

    def pick(key: str, default: Any) -> Any:
        return cli.get(key, run.get(key, default))

    engine, dps = layer_engine(cli.get("engine"), cli.get("dps"), run.get("engine"), run.get("dps"))
    return Options(
        engine=engine, dps=dps,
        schedule=pick("schedule", "fixed"),
        steps=pick("steps", 20_000),
        eta=pick("eta", None),
        gap_target=pick("gap_target", None),
        time_budget=pick("time_budget", None),
        radius=pick("radius", None),
        threshold=pick("threshold", None),
        seed=pick("seed", 0),
        force=args.force or run.get("force", False), checkpoint=args.checkpoint, resume=args.resume,
        progress=not args.no_progress,
        hybrid=not args.no_hybrid and run.get("hybrid", True),
    )


def check_outputs(args: argparse.Namespace, d: int) -> None:
    """Probe every file and folder the run will write, before any computation (exit 2).

    The result may not be the instance or the checkpoint; the checkpoint may not be
    the instance; figures and counterexamples follow the same rule (a path that exists
    and is not a regular file is refused, never replaced; symbolic links are written
    through).
    """
    from checker.core.io import check_output_dir, check_output_file

    if args.json:
        check_output_file("--json", args.json,
                          distinct_from={"--instance": args.instance, "--checkpoint": args.checkpoint})
    if args.checkpoint:
        check_output_file("--checkpoint", args.checkpoint, distinct_from={"--instance": args.instance})
    if args.plots:
        from .plots import check_plotting
        check_plotting(args.plots, d, distinct_from={"--instance": args.instance, "--json": args.json,
                                                     "--checkpoint": args.checkpoint})
    check_output_dir("--counterexample-dir", args.counterexample_dir)


def write_counterexample(rf: RunFile, opts: Options, report: Report, folder: str) -> Path:
    from checker.core.io import write_json_atomic

    run = {k: v for k, v in asdict(opts).items()
           if k in ("engine", "dps", "schedule", "steps", "eta", "gap_target", "time_budget", "radius",
                    "seed", "threshold", "force", "hybrid") and v is not None}
    name = (rf.instance.name or "instance").replace("/", "_")
    path = Path(folder) / f"counterexample-{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json_atomic(path, {"description": f"T1 counterexample: {report.message}",
                             "instance": rf.instance.to_dict(), "run": run})
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        if args.list_presets:
            for name in preset_names():
                print(f"{name}: {load_preset(name).description}")
            return EXIT_OK
        if args.instance:
            rf = load_run_file(args.instance)
            source = args.instance
        else:
            rf = load_preset(args.preset or DEFAULT_PRESET)
            source = f"preset {args.preset or DEFAULT_PRESET}"
        opts = options_from(args, rf)
        check_outputs(args, rf.instance.d)
        check = TheoremCheck(rf, opts)
        if opts.progress:
            check.say = lambda text: print(text, file=sys.stderr, flush=True)
        print_header(check.instance, check, source)
        report = check.run(on_hypotheses=lambda hyps: print_checks("Hypotheses", hyps))
        sys.stdout.flush()
        print_report(report)
        if args.json:
            from checker.core.io import write_json_atomic
            write_json_atomic(args.json, report.to_dict())
            print(f"result written to {args.json}")
        if args.plots and report.run:
            from .plots import make_plots
            for p in make_plots(check, report, args.plots):
                print(f"figure: {p}")
        if report.verdict == "fails":
            path = write_counterexample(rf, opts, report, args.counterexample_dir)
            print(f"counterexample written to {path} (reproduce: python -m checker.theorem1 --instance {path})")
            return EXIT_FAILED
        if report.verdict == "hypotheses-unmet":
            print(f"python -m checker.theorem1: error: hypotheses unmet: {report.message}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if report.verdict == "inconclusive":
            return EXIT_INCONCLUSIVE
        if report.verdict == "outside-T1":
            return EXIT_OUTSIDE_T1
        if report.verdict == "interrupted":
            return EXIT_INTERRUPTED
        return EXIT_OK

    return run_guarded(body, "python -m checker.theorem1")


if __name__ == "__main__":
    sys.exit(main())
