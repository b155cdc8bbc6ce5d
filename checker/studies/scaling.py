"""Scaling of the threshold and of the measured constants with lambda, Delta, m*, d, a_min.

The instance family (this checker's choice, grade "reconstructed"):

* teachers: m* unit vectors with every pairwise angle exactly Delta (an
  equiangular cone: u_i = cos(alpha) e_0 + sin(alpha) v_i with v_1..v_m* the
  vertices of a regular simplex orthogonal to e_0, cos^2 alpha = ((m* - 1)
  cos Delta + 1) / m*; needs d >= m* and cos Delta >= -1/(m* - 1)), turned by a
  random rotation drawn from ``seed`` (QR of a Gaussian matrix, numpy PCG64);
  output weights |a*_0| = a_min, the others evenly spaced up to a_max, signs
  alternating +, -, +, ...;
* start: one balanced neuron per teacher on its direction with the single-teacher
  optimal mass |a*_i| - lambda (``derivations/optimum.py``), step eta = 1/beta_0
  (beta_0 the Hessian-norm estimate of ``checker.geometry.smoothness``);
* the T1 check at fixed lambda from that start (gap target ``gap_target``) gives
  the measured constants; its end point is the reference student near the
  lambda-optimum from which the threshold search starts.

Log-log fits: least squares of log y on log x, the standard error of the slope
from the residuals (n - 2 degrees of freedom) and a two-sided t-interval whose
quantile is computed with mpmath from the regularized incomplete beta function
(``t_quantile``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

import mpmath
import numpy as np

from checker.core.errors import CheckerError
from checker.core.model import Instance

#: The axes a grid varies, with the generator parameter each one sets.
AXES = ("lam", "delta", "m_star", "d", "a_min")


@dataclass(frozen=True)
class PointSpec:
    """Parameters of one generated instance (all a grid point can vary)."""

    lam: float = 0.01
    delta: float = math.pi / 2
    m_star: int = 2
    d: int = 3
    a_min: float = 0.8
    a_max: float = 1.0
    seed: int = 0
    activation: str = "relu"

    def __post_init__(self) -> None:
        for name in ("lam", "delta", "a_min", "a_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise CheckerError(f"point: {name} must be a positive number, got {v!r}")
            object.__setattr__(self, name, float(v))
        for name in ("m_star", "d", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise CheckerError(f"point: {name} must be a non-negative integer, got {v!r}")
        if self.m_star < 1 or self.d < 2:
            raise CheckerError(f"point: needs m_star >= 1 and d >= 2, got m_star={self.m_star}, d={self.d}")
        if self.m_star > self.d:
            raise CheckerError(f"point: the equiangular teacher needs d >= m_star, got d={self.d}, "
                               f"m_star={self.m_star}")
        if self.delta > math.pi:  # an angle between unit vectors is at most pi (4.0 would mean 2 pi - 4)
            raise CheckerError(f"point: delta must be an angle in (0, pi], got {self.delta!r}")
        if self.m_star >= 2 and math.cos(self.delta) < -1 / (self.m_star - 1) - 1e-12:
            raise CheckerError(f"point: {self.m_star} unit vectors cannot be pairwise {self.delta:.4g} apart "
                               f"(at most arccos(-1/(m*-1)) = {math.acos(-1 / (self.m_star - 1)):.4g})")
        if self.a_min > self.a_max:
            raise CheckerError(f"point: a_min {self.a_min} > a_max {self.a_max}")
        if self.lam >= self.a_min:
            raise CheckerError(f"point: lambda {self.lam} must be below a_min {self.a_min}")
        if self.activation not in ("relu", "abs"):
            raise CheckerError(f"point: unknown activation {self.activation!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PointSpec":
        if not isinstance(data, Mapping):
            raise CheckerError("point: expected an object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise CheckerError(f"point: unknown key {unknown[0]!r} (expected {', '.join(f.name for f in fields(cls))})")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random orthogonal d x d matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def cone_cos2_alpha(m_star: Any, cos_delta: Any) -> Any:
    """cos^2 alpha of the equiangular cone whose m* rays are pairwise at angle Delta
    (derived in ``derivations/studies.py``); generic over the number type."""
    return ((m_star - 1) * cos_delta + 1) / m_star


def cone_teacher(m_star: int, d: int, delta: float, rng: np.random.Generator) -> np.ndarray:
    """m* unit vectors in R^d with every pairwise angle exactly delta (rows), randomly rotated."""
    E = np.zeros((m_star, d))
    if m_star == 1:
        E[0, 0] = 1.0
    else:
        # regular simplex: centred standard basis of R^m*, in an orthonormal basis of its span
        S = np.eye(m_star) - 1.0 / m_star
        u, _, _ = np.linalg.svd(S)
        V = S @ u[:, :m_star - 1]
        V /= np.linalg.norm(V, axis=1)[:, None]
        cos2 = cone_cos2_alpha(m_star, math.cos(delta))
        ca, sa = math.sqrt(max(cos2, 0.0)), math.sqrt(max(1 - cos2, 0.0))
        E[:, 0] = ca
        E[:, 1:m_star] = sa * V
    return E @ random_rotation(d, rng).T


def teacher_weights(spec: PointSpec) -> np.ndarray:
    mags = np.linspace(spec.a_min, spec.a_max, spec.m_star) if spec.m_star > 1 else np.array([spec.a_min])
    return mags * np.array([1.0 if i % 2 == 0 else -1.0 for i in range(spec.m_star)])


def start_instance(spec: PointSpec) -> Instance:
    """The generated teacher and the start student (one neuron per teacher, optimal single-teacher mass)."""
    from ..geometry.smoothness import hessian_norm_estimate

    rng = np.random.default_rng(spec.seed)
    W_star = cone_teacher(spec.m_star, spec.d, spec.delta, rng)
    a_star = teacher_weights(spec)
    mass = np.abs(a_star) - spec.lam
    a = np.sign(a_star) * np.sqrt(mass)
    W = np.sqrt(mass)[:, None] * W_star
    name = (f"gen-lam{spec.lam:g}-delta{spec.delta:.4g}-m{spec.m_star}-d{spec.d}-amin{spec.a_min:g}"
            f"-s{spec.seed}")
    inst = Instance.create(activation=spec.activation, teacher_a=[float(x) for x in a_star],
                           teacher_W=[[float(x) for x in r] for r in W_star],
                           student_a=[float(x) for x in a], student_W=[[float(x) for x in r] for r in W],
                           lam=spec.lam, eta="1", name=name, normalize_teacher=True)
    beta0 = hessian_norm_estimate(inst, seed=spec.seed)
    return inst.replace(eta=float(f"{1.0 / beta0:.3g}"))


# --------------------------------------------------------------------------- fits
@functools.lru_cache(maxsize=256)
def t_quantile(p: float, dof: int, *, dps: int = 30) -> float:
    """Quantile of Student's t distribution with ``dof`` degrees of freedom (0.5 < p < 1).

    For t > 0, P(T <= t) = 1 - I_x(dof/2, 1/2) / 2 with x = dof / (dof + t^2)
    (I the regularized incomplete beta function); solved for t by bisection in
    mpmath at ``dps`` digits.
    """
    if not 0.5 < p < 1:
        raise ValueError(f"p must be in (0.5, 1), got {p}")
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    with mpmath.workdps(dps):
        nu = mpmath.mpf(dof)
        tail = 2 * (1 - mpmath.mpf(p))

        def f(t: Any) -> Any:
            return mpmath.betainc(nu / 2, mpmath.mpf(1) / 2, 0, nu / (nu + t * t), regularized=True) - tail

        lo, hi = mpmath.mpf(0), mpmath.mpf(1)
        while f(hi) > 0:
            hi *= 2
        for _ in range(200):
            mid = (lo + hi) / 2
            if f(mid) > 0:
                lo = mid
            else:
                hi = mid
        return float((lo + hi) / 2)


@dataclass
class Fit:
    """log y = intercept + slope log x, with a two-sided t-interval on the slope."""

    n: int
    slope: float | None
    intercept: float | None
    stderr: float | None
    ci_low: float | None
    ci_high: float | None
    level: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def loglog_fit(x: Sequence[float], y: Sequence[float], *, level: float = 0.95) -> Fit:
    """Least-squares slope of log y against log x with its standard error and t-interval.

    Points with a non-positive or non-finite x or y are dropped (said in ``note``).
    With n = 2 the slope is exact through the two points and has no interval.
    """
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y)
           if a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0]
    dropped = len(list(zip(x, y))) - len(pts)
    note = f"{dropped} point(s) dropped (missing or non-positive)" if dropped else ""
    n = len(pts)
    if n < 2 or len({p[0] for p in pts}) < 2:
        return Fit(n, None, None, None, None, None, level, (note + "; " if note else "") + "fewer than 2 distinct x")
    X = np.array([p[0] for p in pts])
    Y = np.array([p[1] for p in pts])
    xm, ym = X.mean(), Y.mean()
    sxx = float(((X - xm) ** 2).sum())
    slope = float(((X - xm) * (Y - ym)).sum() / sxx)
    intercept = float(ym - slope * xm)
    if n == 2:
        return Fit(n, slope, intercept, None, None, None, level,
                   (note + "; " if note else "") + "2 points: no interval")
    resid = Y - (intercept + slope * X)
    s2 = float((resid ** 2).sum()) / (n - 2)
    se = math.sqrt(s2 / sxx)
    t = t_quantile(0.5 + level / 2, n - 2)
    return Fit(n, slope, intercept, se, slope - t * se, slope + t * se, level, note)


# --------------------------------------------------------------------------- measuring one point
#: The measured quantities a point reports (keys of ``measure_point(...)["constants"]``).
QUANTITIES = ("rho", "rho_far", "p_norm", "eps_0", "lambda_max", "conv_rate", "C3_worst_ratio",
              "C4_worst_ratio", "angle_over_lambda", "loss_over_lambda2")


@dataclass
class MeasureConfig:
    """What a grid point measures: the constants always, the threshold for the listed families."""

    families: tuple[str, ...] = ()
    gap_target: float = 1e-10
    steps: int = 20_000
    trial_steps: int = 20_000
    trial_time: float = 30.0
    trial_gap_target: float = 1e-9
    max_trials: int = 6
    rel_tol: float = 0.05
    ranges: dict[str, list[float]] = field(default_factory=dict)  # family -> [lo, hi] (default: the family's)
    #: Step policy of the trials (checker.studies.threshold.STEP_POLICIES), or a list of them: every
    #: family is then searched under each; its results are keyed FAMILY ("instance") and FAMILY@POLICY.
    trial_step: str | tuple[str, ...] = "instance"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MeasureConfig":
        if not isinstance(data, Mapping):
            raise CheckerError("measure: expected an object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise CheckerError(f"measure: unknown key {unknown[0]!r}")
        d = dict(data)
        if "families" in d:
            if not isinstance(d["families"], (list, tuple)) or not all(isinstance(x, str) for x in d["families"]):
                raise CheckerError("measure.families: expected a list of family names")
            from .families import family
            for x in d["families"]:
                family(x)
            d["families"] = tuple(d["families"])
        ranges = d.get("ranges", {})
        if not isinstance(ranges, Mapping) or not all(
                isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float))
                                                                     and not isinstance(x, bool) for x in v)
                for v in ranges.values()):
            raise CheckerError("measure.ranges: expected {family: [lo, hi]}")
        from .families import family
        for k, (lo, hi) in ranges.items():
            f = family(k)
            if not (math.isfinite(lo) and math.isfinite(hi) and f.lo <= lo < hi):
                raise CheckerError(f"measure.ranges.{k}: expected [lo, hi] with {f.lo:g} <= lo < hi, got "
                                   f"[{lo!r}, {hi!r}]")
        d["ranges"] = {k: [float(x) for x in v] for k, v in ranges.items()}
        cfg = cls(**d)
        for name in ("gap_target", "trial_time", "trial_gap_target", "rel_tol"):
            v = getattr(cfg, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise CheckerError(f"measure.{name}: expected a positive number, got {v!r}")
        from .threshold import STEP_POLICIES
        steps = [cfg.trial_step] if isinstance(cfg.trial_step, str) else cfg.trial_step
        if not isinstance(steps, (list, tuple)) or not steps or len(set(steps)) != len(steps) \
                or not all(isinstance(x, str) and x in STEP_POLICIES for x in steps):
            raise CheckerError(f"measure.trial_step: expected one of {', '.join(STEP_POLICIES)} or a list of "
                               f"them without repeats, got {cfg.trial_step!r}")
        cfg.trial_step = steps[0] if isinstance(cfg.trial_step, str) else tuple(steps)
        for name in ("steps", "trial_steps", "max_trials"):
            v = getattr(cfg, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise CheckerError(f"measure.{name}: expected an integer >= 2, got {v!r}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["families"] = list(self.families)
        if not isinstance(self.trial_step, str):
            out["trial_step"] = list(self.trial_step)
        return out

    def step_policies(self) -> tuple[str, ...]:
        return (self.trial_step,) if isinstance(self.trial_step, str) else tuple(self.trial_step)


def reference_run(spec: PointSpec, *, steps: int = 20_000, gap_target: float = 1e-10
                  ) -> tuple[Instance, Any, Any, Instance | None]:
    """The T1 check at fixed lambda from the generated start: (start, check, report, reference).

    The reference is the end point of that run (a student near the lambda-optimum)
    when it reached the gap target (C2 holds), else None.
    """
    from checker.core.io import engine_from_json
    from checker.core.runfile import RunFile
    from checker.theorem.check import Options, TheoremCheck

    start = start_instance(spec)
    check = TheoremCheck(RunFile(start, {}, "", start.name),
                         Options(engine="float64", schedule="fixed", steps=steps, gap_target=gap_target,
                                 seed=spec.seed, force=True, progress=False))
    report = check.run()
    ref = None
    if report.run and "a" in report.run and any(x.id == "C2" and x.holds for x in report.conclusions):
        a = [float(x) for x in np.ravel(engine_from_json(check.engine, report.run["a"]))]
        W = [[float(x) for x in r] for r in engine_from_json(check.engine, report.run["W"])]
        ref = start.replace(student_a=a, student_W=W, name=start.name + "-ref")
    return start, check, report, ref


def measure_point(spec: PointSpec, cfg: MeasureConfig) -> dict[str, Any]:
    """The T1 constants of a generated instance and, per family, its empirical threshold (JSON-ready)."""
    import time

    from checker.core.runfile import RunFile
    from . import threshold as thr

    t0 = time.perf_counter()
    with thr.shared_certificate():
        start, check, report, ref = reference_run(spec, steps=cfg.steps, gap_target=cfg.gap_target)
        if getattr(report, "verdict", None) == "interrupted":
            raise KeyboardInterrupt  # Ctrl-C inside the T1 run: the point is not measured, never recorded
        c = report.constants
        concl = {x.id: x.holds for x in report.conclusions}
        rate = c.get("gap_rate_per_step")
        eta = float(start.eta)
        consts = {
            "rho": c.get("rho"), "rho_far": c.get("rho_far"), "p_norm": c.get("p_norm"),
            "eps_0": c.get("eps_0"), "lambda_max": c.get("lambda_max"),
            "gap_rate_per_step": rate,
            "conv_rate": -math.log(rate) / eta if rate is not None and 0 < rate < 1 else None,
            "C3_worst_ratio": c.get("C3_worst_ratio"), "C4_worst_ratio": c.get("C4_worst_ratio"),
            "angle_over_lambda": c.get("final_max_angle_over_lambda"),
            "loss_over_lambda2": c.get("final_loss_over_lambda2"),
            "final_gap": float(report.final["gap_upper"]) if report.final else None,
            "eta": eta,
        }
        out: dict[str, Any] = {"constants": consts, "conclusions": concl,
                               "hypotheses": {h.id: h.holds for h in report.hypotheses},
                               "certificate_degenerate": bool(getattr(check.cert, "degenerate", False)),
                               "threshold": {}}
        if ref is not None:
            shared: dict[str, Any] = {}  # eps_0 and the unperturbed start's trial: once per step policy
            for step in cfg.step_policies():
                tcfg = thr.TrialConfig(steps=cfg.trial_steps, time_budget=cfg.trial_time,
                                       gap_target=cfg.trial_gap_target, seed=spec.seed, step=step)
                for name in cfg.families:
                    lo, hi = cfg.ranges.get(name, (None, None))
                    res, _ = thr.find_threshold(RunFile(ref, {}, "", ref.name), name, tcfg, lo=lo, hi=hi,
                                                rel_tol=cfg.rel_tol, max_trials=cfg.max_trials, shared=shared)
                    if res.interrupted:
                        raise KeyboardInterrupt  # a partial search is not a measurement of the point
                    key = name if step == "instance" else f"{name}@{step}"
                    out["threshold"][key] = {
                        k: getattr(res, k) for k in ("status", "size_range", "threshold_size", "threshold_gap",
                                                     "threshold_loss", "eps0_checker", "ratio_to_eps0",
                                                     "counterexample", "failure", "t1_at_reference",
                                                     "lower_is_reference", "ratio_status", "non_monotone")}
                    out["threshold"][key]["trials"] = len(res.trials)
                    out["threshold"][key]["step"] = step
        elif cfg.families:
            out["threshold_skipped"] = "the constants run did not reach the gap target: no reference student"
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
