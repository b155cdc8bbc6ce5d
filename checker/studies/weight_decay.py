"""``python -m checker.weight_decay``: what weight decay buys, measured.

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
import sys
from dataclasses import asdict, dataclass, field
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any, Sequence

import mpmath
import numpy as np

from .. import __version__
from checker.commands.options import max_dps
from checker.commands.cli import EXIT_OK, UsageParser, run_guarded
from checker.core.engines import make_engine
from checker.core.errors import CheckerError
from checker.core.io import check_output_dir, check_output_file, write_json_atomic
from checker.core.model import Instance
from checker.commands.presets import load_preset, load_run_file, preset_names
from checker.core.problem import Problem
from checker.core.constants import EXIT_INCONCLUSIVE, EXIT_INTERRUPTED
from . import gd_run

PROG = "python -m checker.weight_decay"
RESULT_FORMAT = "zhou-ge-checker/weight-decay-study"
RESULT_VERSION = "1.0"
DEFAULT_PRESET = "default"
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


# --------------------------------------------------------------------------- output
def _fmt_law(law: Law) -> str:
    if law.model == "none":
        return f"no fit ({law.reason})"
    lo, hi = law.fit_range_steps
    if law.model == "linear-rate":
        r = law.linear_rate
        body = f"linear: rate {r['rate']:.4g} per step [95%: {r['rate_low']:.4g}, {r['rate_high']:.4g}]"
    else:
        r = law.power_law
        body = f"power law: exponent {r['exponent']:.4g} [95%: {r['exponent_low']:.4g}, {r['exponent_high']:.4g}]"
    e0, e1 = law.fit_range_excess
    return f"{body} over steps {lo}..{hi} (e {e0:.2g} -> {e1:.2g}, {law.points} rows)"


def print_study(res: StudyResult, out: Any = None) -> None:
    out = out or sys.stdout
    print(f"weight-decay study — {res.source}: lambda = {res.options['lambda']} vs 0, eta = "
          f"{res.instance.get('eta')}, m = {len(res.instance['student']['a'])} students, "
          f"m* = {len(res.instance['teacher']['a'])} teachers", file=out)
    for r in res.runs:
        print(f"\n{r.name} (lambda = {r.lam}, train = {r.train})", file=out)
        for ph in r.phases:
            eng = ph["engine"]["name"] + (f" {ph['engine']['dps']} digits" if ph["engine"]["dps"] else "")
            print(f"  {eng}: steps {ph['from_step']}..{ph['to_step']} ({ph['stop_reason']}, "
                  f"{ph['elapsed']:.1f} s)", file=out)
        print(f"  final: L = {float(r.final['loss']):.6g}, L_lambda = {float(r.final['reg_loss']):.12g}, "
              f"far mass = {float(r.final['far_mass']):.3g}", file=out)
        print(f"  {r.excess_definition}", file=out)
        print(f"  law: {_fmt_law(r.law)}", file=out)
        hits = ", ".join(f"{k}: {v if v is not None else '-'}" for k, v in r.steps_to_target.items())
        print(f"  steps to e <= target: {hits}", file=out)
        geo = "; ".join(f"t={g['step']}: far {float(g['far_mass']):.2g}, redundant "
                        f"{float(g['redundant_mass']):.3g}, angle {float(g['max_angle']):.2g}"
                        for g in r.geometry)
        print(f"  geometry: {geo}", file=out)
    for n in res.notes:
        print(f"note: {n}", file=out)
    print(f"\nverdict: {res.verdict}", file=out)


def make_figure(res: StudyResult, folder: str | Path) -> Path:
    """One figure: excess against steps, log-log, every run (mp continuation dashed, fit range bold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = ["tab:blue", "tab:cyan", "tab:red", "tab:orange"]
    for r, c in zip(res.runs, colors):
        pts = [h for h in r.history if h["step"] >= 1 and h["resolved"]]
        for eng, style in (("float64", "-"), (None, "--")):
            sel = [h for h in pts if (h["engine"] == "float64") == (eng == "float64")]
            if sel:
                ax.loglog([h["step"] for h in sel], [h["excess"] for h in sel], style, color=c, lw=1.2,
                          label=f"{r.name} (lambda={r.lam})" if eng == "float64" else f"{r.name}, mp")
        if r.law.fit_range_steps:
            lo, hi = r.law.fit_range_steps
            fit = [h for h in pts if lo <= h["step"] <= hi]
            ax.loglog([h["step"] for h in fit], [h["excess"] for h in fit], color=c, lw=3.5, alpha=0.35)
    ax.set_xlabel("step t")
    ax.set_ylabel("excess e(t)  (L for lambda = 0; L_lambda - L_ref for lambda > 0)")
    ax.set_title("Weight decay vs none: GD from the same start (resolved rows; bold: fit range)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "weight-decay-loss.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- command line
def build_parser() -> UsageParser:
    p = UsageParser(prog=PROG, description="What weight decay buys: GD with lambda > 0 and lambda = 0 "
                                            "from the same start, both layers and first layer only.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help=f"embedded start (default: {DEFAULT_PRESET})")
    src.add_argument("--instance", help="instance or run file (JSON)")
    p.add_argument("--lambda", dest="lam", help="the weight decay of the lambda > 0 runs (default: the instance's)")
    p.add_argument("--eta", help="step size (default: the instance's)")
    p.add_argument("--steps", type=int, default=100_000, help="float64 steps per run (default 100000)")
    p.add_argument("--mp-steps", type=int, default=1500,
                   help="mp steps after a float64 precision floor (default 1500; 0: none)")
    p.add_argument("--dps", type=int, default=30, help="digits of the mp continuation (default 30)")
    p.add_argument("--json", help="write the result to this file")
    p.add_argument("--plots", help="write the figure to this folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        if args.steps < 1:
            raise CheckerError(f"--steps must be >= 1, got {args.steps}")
        if args.mp_steps < 0:
            raise CheckerError(f"--mp-steps must be >= 0, got {args.mp_steps}")
        if not 15 <= args.dps <= max_dps():
            raise CheckerError(f"--dps must be between 15 and {max_dps()}, got {args.dps}")
        for flag, value in (("--lambda", args.lam), ("--eta", args.eta)):
            if value is not None:
                try:
                    ok = Decimal(value.strip()).is_finite() and Decimal(value.strip()) > 0
                except ArithmeticError:
                    ok = False
                if not ok:
                    raise CheckerError(f"{flag} must be a positive decimal number, got {value!r}")
        if args.instance:
            instance, source = load_run_file(args.instance).instance, args.instance
        else:
            name = args.preset or DEFAULT_PRESET
            if name not in preset_names():
                raise CheckerError(f"unknown preset {name!r}; available presets: {', '.join(preset_names())}")
            instance, source = load_preset(name).instance, f"preset {name}"
        if instance.m <= instance.m_star:
            raise CheckerError(f"the study needs more students than teachers (m = {instance.m}, "
                               f"m* = {instance.m_star})")
        if args.json:
            check_output_file("--json", args.json, distinct_from={"--instance": args.instance})
        if args.plots:
            from checker.commands.figures import check_plotting
            check_plotting(args.plots)
            check_output_dir("--plots", args.plots)
        opts = StudyOptions(lam=args.lam.strip() if args.lam else None,
                            eta=args.eta.strip() if args.eta else None, steps=args.steps,
                            mp_steps=args.mp_steps, dps=args.dps, progress=not args.no_progress)
        say = (lambda text: print(text, file=sys.stderr, flush=True)) if opts.progress else (lambda text: None)
        res = run_study(instance, opts, source, say)
        print_study(res)
        if args.json:
            write_json_atomic(args.json, res.to_dict())
            print(f"result written to {args.json}")
        if args.plots and res.runs:
            print(f"figure: {make_figure(res, args.plots)}")
        return {"complete": EXIT_OK, "interrupted": EXIT_INTERRUPTED}.get(res.verdict, EXIT_INCONCLUSIVE)

    return run_guarded(body, PROG)
