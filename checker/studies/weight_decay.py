"""What weight decay buys, measured: the library of ``python -m checker.weight_decay``
(the command is ``checker.commands.weight_decay``).

The same start (more students than teachers, near the teacher; the preset
``default`` unless ``--preset``/``--instance`` says otherwise) is run four times
with ``checker.studies.gd_run``: lambda > 0 and lambda = 0, each with both
layers trained and with the first layer only (output weights fixed).  Each run
is float64 gradient descent for ``--steps`` steps; a run that float64's
precision floor stops is continued from its exact end point by the mp engine
(``--mp-steps``, ``--dps``), so that the fit is not cut by float64's rounding.

Measured per run (every choice below is this checker's, stated in the output):

* the excess e(t): L(t) for lambda = 0 (L* = 0: the student can represent the
  teacher exactly); L_lambda(t) - L_ref for lambda > 0, where L_ref is the last
  L_lambda of the run's most precise phase (the run's own limit, since L*_lambda
  of the restricted or unrestricted problem is not known in closed form);
* which rows resolve e: e > max(100 ulps of S, 10 u_ref), with S = |L_lambda| +
  ||f*||^2 (the size of the terms that cancel in L, as in ``checker.gd``) in the
  row's engine and u_ref the L_lambda decrease over the last recorded interval
  (an estimate of L_ref's own error; 0 for lambda = 0);
* the convergence law over the fit range, the resolved rows with step in
  [t_end / 10, t_end] (t_end the last resolved step: the last decade of
  resolved steps): a linear rate (ln e = c - k t) and a power law
  (ln e = c - p ln t) are both fitted by least squares, and the model with the
  smaller root-mean-square residual in ln e is reported (both have two
  parameters).  Intervals: 95% Student-t intervals of the slope under the
  ordinary least-squares model; the residuals of a trajectory are correlated,
  so they describe the fit, not a sampling uncertainty;
* the far mass, redundant-neuron mass and largest angle over time
  (``gd_run.neuron_geometry``);
* the first recorded step at which e <= each of 1e-4 ... 1e-12 (the geometric
  history resolves steps to about 12%).

Nothing here predicts an exponent: the command measures it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from decimal import Decimal, localcontext
from typing import Any, Sequence

import mpmath
import numpy as np

from .. import __version__
from checker.core.engines import make_engine
from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.core.problem import Problem
from . import gd_run

RESULT_FORMAT = "zhou-ge-checker/weight-decay-study"
RESULT_VERSION = "1.0"
TARGETS = tuple(10.0 ** -k for k in range(4, 13))
#: A row resolves e when e exceeds this many ulps of S (the rounding level of L_lambda) ...
RESOLVE_ULPS = 100
#: ... and this many times the estimated error of the reference L_ref (lambda > 0).
RESOLVE_REF_FACTOR = 10
#: The fit range spans this factor of steps, ending at the last resolved step.
FIT_DECADE = 10.0
MIN_FIT_POINTS = 5


@dataclass(frozen=True)
class RunSpec:
    name: str
    weight_decay: bool
    train: str


RUNS = (RunSpec("weight-decay/both", True, "both"), RunSpec("weight-decay/first", True, "first"),
        RunSpec("no-decay/both", False, "both"), RunSpec("no-decay/first", False, "first"))


# --------------------------------------------------------------------------- fits
def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom (bisection on the regularized beta)."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError("t_quantile needs 0.5 < p < 1 and df >= 1")
    with mpmath.workdps(30):
        def upper(x: Any) -> Any:  # P(T > x) for x >= 0
            return mpmath.betainc(df / mpmath.mpf(2), mpmath.mpf(1) / 2, 0, df / (df + x * x),
                                  regularized=True) / 2
        lo, hi = mpmath.mpf(0), mpmath.mpf(1)
        while upper(hi) > 1 - p:
            hi *= 2
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if upper(mid) > 1 - p else (lo, mid)
        return float((lo + hi) / 2)


@dataclass
class LineFit:
    """y = intercept + slope x by least squares, with the slope's 95% interval and the residual RMS."""

    slope: float
    intercept: float
    slope_low: float
    slope_high: float
    rms: float
    n: int


def fit_line(x: Sequence[float], y: Sequence[float]) -> LineFit:
    xv, yv = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(xv)
    if n < 3:
        raise ValueError("a line fit with an interval needs at least 3 points")
    xm, ym = xv.mean(), yv.mean()
    sxx = float(((xv - xm) ** 2).sum())
    slope = float(((xv - xm) * (yv - ym)).sum() / sxx)
    intercept = float(ym - slope * xm)
    resid = yv - (intercept + slope * xv)
    sse = float((resid ** 2).sum())
    se = math.sqrt(sse / (n - 2) / sxx)
    q = t_quantile(0.975, n - 2)
    return LineFit(slope, intercept, slope - q * se, slope + q * se, math.sqrt(sse / n), n)


@dataclass
class Law:
    """The convergence law of one run over its fit range."""

    model: str  # "linear-rate" or "power-law" (or "none" with a reason)
    criterion: str
    fit_range_steps: list[int] | None
    fit_range_excess: list[float] | None
    points: int
    linear_rate: dict[str, float] | None  # k in e ~ exp(-k t), its interval, rms
    power_law: dict[str, float] | None  # p in e ~ t^-p, its interval, rms
    reason: str = ""


def fit_law(steps: Sequence[int], excess: Sequence[float]) -> Law:
    """Both models on the last decade of the resolved rows; the smaller ln-residual RMS wins."""
    crit = "smaller root-mean-square residual of ln e (both models have two parameters)"
    pts = [(t, e) for t, e in zip(steps, excess) if t >= 10 and e > 0]
    if not pts:
        return Law("none", crit, None, None, 0, None, None, "no resolved row at step >= 10")
    t_end = pts[-1][0]
    rng = [(t, e) for t, e in pts if t >= t_end / FIT_DECADE]
    if len(rng) < MIN_FIT_POINTS:
        return Law("none", crit, [rng[0][0], t_end], None, len(rng), None, None,
                   f"fewer than {MIN_FIT_POINTS} resolved rows in the last decade of steps")
    t = np.array([p[0] for p in rng], dtype=float)
    ln_e = np.log([p[1] for p in rng])
    lin = fit_line(t, ln_e)
    pw = fit_line(np.log(t), ln_e)
    linear = {"rate": -lin.slope, "rate_low": -lin.slope_high, "rate_high": -lin.slope_low,
              "contraction_per_step": math.exp(lin.slope), "rms_ln": lin.rms}
    power = {"exponent": -pw.slope, "exponent_low": -pw.slope_high, "exponent_high": -pw.slope_low,
             "rms_ln": pw.rms}
    model = "linear-rate" if lin.rms < pw.rms else "power-law"
    return Law(model, crit, [int(t[0]), int(t[-1])], [float(rng[0][1]), float(rng[-1][1])], len(rng),
               linear, power)


# --------------------------------------------------------------------------- one run
@dataclass
class RunSummary:
    name: str
    lam: str
    train: str
    phases: list[dict[str, Any]]  # engine, steps, stop_reason, elapsed per phase
    excess_definition: str
    reference: str | None
    law: Law
    steps_to_target: dict[str, int | None]
    geometry: list[dict[str, Any]]  # far/redundant mass and max angle at decade steps and the end
    history: list[dict[str, Any]]  # step, engine, loss, reg_loss, excess, resolved
    final: dict[str, Any]


def _teacher_energy(instance: Instance) -> float:
    from checker.core import objective

    e = make_engine("float64")
    p = Problem.from_instance(instance, e)
    K = objective.gram(e, p.W_star, p.W_star, p.activation)
    return float(p.a_star.dot(K.dot(p.a_star)))


def summarize(spec: RunSpec, instance: Instance, phases: list[gd_run.GDRunResult]) -> RunSummary:
    """Excess, resolution, law, target times and geometry of one run from its phases."""
    fstar = _teacher_energy(instance)
    rows: list[tuple[dict[str, Any], str]] = []
    for i, ph in enumerate(phases):
        nxt = phases[i + 1].step_offset if i + 1 < len(phases) else None
        rows += [(r, ph.engine["name"] if ph.engine["name"] == "float64" else f"mp{ph.engine['dps']}")
                 for r in ph.history if nxt is None or r["step"] < nxt]
    eps = {"float64": make_engine("float64").eps}
    for ph in phases:
        if ph.engine["name"] == "mp":
            eps[f"mp{ph.engine['dps']}"] = make_engine("mp", ph.engine["dps"]).eps
    lam0 = Decimal(instance.lam) == 0
    with localcontext() as ctx:
        ctx.prec = 120
        if lam0:
            ref, u_ref = Decimal(0), Decimal(0)
            definition = "e = L (lambda = 0: L* = 0)"
        else:
            last = phases[-1].history
            ref = Decimal(last[-1]["reg_loss"])
            u_ref = abs(Decimal(last[-2]["reg_loss"]) - ref) if len(last) >= 2 else Decimal(0)
            definition = ("e = L_lambda - L_ref, L_ref = the last L_lambda of the run's most precise phase "
                          f"(estimated error u_ref = {float(u_ref):.3g}, its last recorded decrease)")
        hist = []
        for r, eng in rows:
            e = Decimal(r["loss"]) if lam0 else Decimal(r["reg_loss"]) - ref
            s_scale = abs(float(r["reg_loss"])) + fstar
            floor = max(RESOLVE_ULPS * eps[eng] * s_scale, RESOLVE_REF_FACTOR * float(u_ref))
            hist.append({"step": r["step"], "engine": eng, "loss": r["loss"], "reg_loss": r["reg_loss"],
                         "excess": float(e), "resolved": bool(float(e) > floor),
                         "far_mass": r["far_mass"], "redundant_mass": r["redundant_mass"],
                         "max_angle": r["max_angle"], "grad_norm": r["grad_norm"]})
    resolved = [h for h in hist if h["resolved"]]
    # the last row of a lambda > 0 run is the reference itself: never resolved
    law = fit_law([h["step"] for h in resolved], [h["excess"] for h in resolved])
    targets: dict[str, int | None] = {}
    for tgt in TARGETS:
        hit = next((h["step"] for h in resolved if h["excess"] <= tgt), None)
        targets[f"{tgt:.0e}"] = hit
    decades = {0} | {10 ** k for k in range(0, 12)}
    geometry = [{k: h[k] for k in ("step", "far_mass", "redundant_mass", "max_angle")}
                for h in hist if h["step"] in decades or h is hist[-1]]
    phase_info = [{"engine": ph.engine, "from_step": ph.step_offset, "to_step": ph.steps,
                   "stop_reason": ph.stop_reason, "elapsed": ph.elapsed} for ph in phases]
    final = {k: v for k, v in phases[-1].final.items()}
    return RunSummary(spec.name, instance.lam, spec.train, phase_info, definition,
                      None if lam0 else str(ref), law, targets, geometry, hist, final)


# --------------------------------------------------------------------------- the study
@dataclass
class StudyOptions:
    lam: str | None = None
    eta: str | None = None
    steps: int = 100_000
    mp_steps: int = 1500
    dps: int = 30
    progress: bool = True


@dataclass
class StudyResult:
    instance: dict[str, Any]
    source: str
    options: dict[str, Any]
    runs: list[RunSummary]
    verdict: str  # "complete", "interrupted", "inconclusive"
    notes: list[str] = field(default_factory=list)
    version: str = RESULT_VERSION
    format: str = RESULT_FORMAT
    checker_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_study(instance: Instance, opts: StudyOptions, source: str = "",
              say: Any = lambda text: None) -> StudyResult:
    """The four runs of the module docstring; an interrupted run ends the study with what is done."""
    lam = opts.lam if opts.lam is not None else instance.lam
    if Decimal(lam) <= 0:
        raise CheckerError(f"the weight-decay runs need lambda > 0, got {lam} (--lambda)")
    if opts.eta is not None:
        instance = instance.replace(eta=opts.eta)
    if instance.eta is None:
        raise CheckerError("no step size: give \"eta\" in the instance or --eta")
    runs: list[RunSummary] = []
    verdict = "complete"
    notes = [
        "excess, resolution, fit range, model choice and target times are this checker's definitions "
        "(see docs/weight-decay.md); nothing is compared with a predicted exponent",
        "redundant mass: over the neurons within r = Delta/3 of a teacher, their mass minus the heaviest "
        "one's, summed over teachers",
    ]
    for spec in RUNS:
        inst = instance.replace(lam=lam if spec.weight_decay else "0")
        phases: list[gd_run.GDRunResult] = []
        try:
            say(f"{spec.name}: float64, {opts.steps} steps, lambda = {inst.lam}, train = {spec.train}")
            o64 = gd_run.Options(engine="float64", train=spec.train, steps=opts.steps, progress=opts.progress)
            phases.append(gd_run.run(inst, o64))
            if phases[-1].stop_reason == "precision-floor" and opts.mp_steps > 0:
                say(f"{spec.name}: float64 floor at step {phases[-1].steps}; mp ({opts.dps} digits), "
                    f"{opts.mp_steps} more steps")
                omp = gd_run.Options(engine="mp", dps=opts.dps, train=spec.train, steps=opts.mp_steps,
                                     progress=opts.progress)
                phases.append(gd_run.run(inst, omp, start_data=phases[-1].to_dict()))
            runs.append(summarize(spec, inst, phases))
        except KeyboardInterrupt:  # between or around the descents: keep what is complete
            verdict = "interrupted"
            if phases:
                runs.append(summarize(spec, inst, phases))
            break
        reasons = [p.stop_reason for p in phases]
        if "interrupted" in reasons:
            verdict = "interrupted"
            break
        if "diverged" in reasons or "time-budget" in reasons:
            verdict = "inconclusive"
            notes.append(f"{spec.name}: a phase stopped with {reasons}; its law is not measured to the end")
    return StudyResult(instance.to_dict(), source, asdict(opts) | {"lambda": lam}, runs, verdict, notes)
