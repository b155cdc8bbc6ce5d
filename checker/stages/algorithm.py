"""The whole algorithm from a small random start: stage 1, stage 2, stage 3 (T1), per seed.

* Stage 1 (``stage1.py``): a few large steps on W alone, exact population gradient.
* Stage 2 (``stage2.py``): rows of W normalized to unit norm (the features are
  directions; this checker's choice), the second layer solved exactly by ridge
  regression with weight lambda2 (default: the stage-3 lambda), then the
  network rebalanced (|a_j| = ||w_j||, same function, least weight decay).
* Stage 3: ``checker.theorem1.TheoremCheck`` on that start (never forced): T1's
  hypotheses on the start, the descent, its conclusions.  A start that fails H4
  means the early stage did not reach the basin.

Per seed the result says which stage fell short.  "Recovered" (this checker's
definition): stage 3's verdict is "holds" and every teacher direction has a
student of non-negligible mass (mu_j >= 1e-2 a_min, T1's C5 convention) within
the angle bound (T1's neighbourhood radius r = Delta/3 unless given).
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
from . import stage1, stage2

SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class AlgorithmOptions:
    """Every setting of the three stages (defaults are this checker's choices)."""

    width: int = 40
    scale: float = 1e-3
    stage1_eta: float = 300.0
    stage1_steps: int = 20
    variant: str = "centred"
    a_value: float = 1e-3
    orient: bool = True
    lam: str = "0.0005"
    lam2: str | None = None
    eta: str = "0.5"
    engine: str = "float64"
    dps: int | None = None
    schedule: str = "fixed"
    steps: int = 4000
    gap_target: float | None = None
    time_budget: float | None = None
    angle_bound: float | None = None
    progress: bool = True

    def stage1_options(self) -> stage1.Stage1Options:
        return stage1.Stage1Options(self.width, self.scale, self.stage1_eta, self.stage1_steps,
                                    self.variant, self.a_value).validate()

    def validate(self) -> "AlgorithmOptions":
        self.stage1_options()
        for name in ("lam", "eta") + (("lam2",) if self.lam2 is not None else ()):
            text = getattr(self, name)
            try:
                v = float(text)
            except (TypeError, ValueError):
                raise CheckerError(f"{name} must be a number, got {text!r}") from None
            if not (math.isfinite(v) and v > 0):
                raise CheckerError(f"{name} must be a positive number, got {text!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise CheckerError(f"--steps must be a positive whole number, got {self.steps!r}")
        for name in ("gap_target", "time_budget", "angle_bound"):
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
    verdict: str
    final_loss: float | None
    max_angle: float | None
    far_mass: float | None
    message: str
    hypotheses: list[dict[str, Any]]
    conclusions: list[dict[str, Any]]
    history: list[dict[str, Any]]


@dataclass
class SeedResult:
    seed: int
    stage1: Stage1Result
    stage2: Stage2Result
    stage3: Stage3Result
    recovered: bool
    fell_short: str | None
    feature_learning_end: dict[str, Any]
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


def run_seed(teacher: Instance, opts: AlgorithmOptions, seed: int, *,
             say: Callable[[str], None] = lambda s: None) -> SeedResult:
    """The three stages on one seed (results as data)."""
    from checker.core.constants import NEGLIGIBLE_MASS
    from checker.theorem.check import Options, TheoremCheck
    from checker.core import objective

    engine: Engine = make_engine(opts.engine, opts.dps)
    s1 = opts.stage1_options()
    act = teacher.activation
    with engine.context():
        W_star = engine.array(teacher.teacher_W)
        if teacher.normalize_teacher:
            W_star = stage2.unit_rows(engine, W_star)
        a_star = engine.array(teacher.teacher_a)
        zero = engine.scalar(0)
    Wsf, asf = _floats(W_star), _floats(a_star)
    rng = np.random.default_rng(seed)
    a_f, W0_f = stage1.initial_student(rng, s1.width, teacher.d, s1.scale, s1.a_value)
    a1, W = engine.array(a_f.tolist()), engine.array(W0_f.tolist())

    # ---- stage 1
    say(f"seed {seed}: stage 1 ({s1.steps} {s1.variant} step(s) on W)")
    losses = []
    eta1 = engine.scalar(repr(s1.eta))
    with engine.context():
        losses.append(float(objective.evaluate(engine, act, a1, W, a_star, W_star, zero,
                                               with_gradient=False).loss))
        for _ in range(s1.steps):
            W = stage1.run_stage1(engine, act, a1, W, a_star, W_star, eta=eta1, steps=1, variant=s1.variant)
            losses.append(float(objective.evaluate(engine, act, a1, W, a_star, W_star, zero,
                                                   with_gradient=False).loss))
    if opts.orient and s1.variant == "centred":
        W = stage1.orient(engine, act, a1, W, a_star, W_star)
    W1 = W
    fr = stage1.span_fractions(_floats(W1), Wsf)
    U0 = stage2.unit_rows(engine, engine.array(W0_f.tolist()))
    U1 = stage2.unit_rows(engine, W1)
    floor1 = stage2.frozen_floor(engine, act, U1, a_star, W_star)
    floor0 = stage2.frozen_floor(engine, act, U0, a_star, W_star)
    f1, f0 = float(floor1.loss), float(floor0.loss)
    st1 = Stage1Result(float(fr.min()), float(np.median(fr)), stage1.angle_histogram(_floats(W1), Wsf, act),
                       f1, f0, f1 / f0 if f0 > 0 else math.inf, losses, s1.variant)

    # ---- stage 2
    say(f"seed {seed}: stage 2 (ridge regression on the frozen features)")
    lam2_text = opts.lam2 if opts.lam2 is not None else opts.lam
    with engine.context():
        lam2 = engine.scalar(lam2_text)
        lam = engine.scalar(opts.lam)
    a2 = stage2.ridge(engine, act, U1, a_star, W_star, lam2)
    ar, Wr = stage2.rebalance(engine, a2, U1)
    with engine.context():
        ev2 = objective.evaluate(engine, act, ar, Wr, a_star, W_star, lam, with_gradient=False)
    max2, _ = heavy_angles(ar, Wr, Wsf, asf, act, NEGLIGIBLE_MASS)

    # ---- stage 3
    say(f"seed {seed}: stage 3 (T1 from the stage-2 student)")
    inst = teacher.replace(student_a=to_strings(engine, ar), student_W=to_strings(engine, Wr),
                           lam=opts.lam, eta=opts.eta, name=f"{teacher.name or 'teacher'}-seed{seed}")
    t_opts = Options(engine=opts.engine, dps=opts.dps, schedule=opts.schedule, steps=opts.steps,
                     gap_target=opts.gap_target, time_budget=opts.time_budget, seed=seed,
                     progress=opts.progress, all_hypotheses=True)
    check = TheoremCheck(RunFile(inst, {}, "stage 2 output", f"seed {seed}"), t_opts)
    check.say = say
    report = check.run()
    hyps = {h.id: h for h in report.hypotheses}
    h4 = hyps.get("H4")
    eps0 = report.constants.get("eps_0")
    st2 = Stage2Result(float(ev2.loss), float(ev2.reg_loss), lam2_text,
                       _number_or_none(h4.value) if h4 is not None else None, eps0,
                       h4.holds if h4 is not None else None, max2,
                       bool(h4.rigorous) if h4 is not None else False)
    final_loss = max3 = far3 = None
    per_teacher: list[float | None] = [None] * len(Wsf)
    if report.run:
        a3, W3 = report.run["a"], report.run["W"]
        final_loss = float(report.final["loss"]) if report.final else None
        max3, per_teacher = heavy_angles(a3, W3, Wsf, asf, act, NEGLIGIBLE_MASS)
        far3 = report.constants.get("final_far_mass")
    history = [{"step": r["step"], "loss": r["loss"], "lam": r["lam"]} for r in report.run.get("history", [])]
    st3 = Stage3Result(report.verdict, final_loss, max3, far3, report.message,
                       [h.to_dict() for h in report.hypotheses], [c.to_dict() for c in report.conclusions],
                       history)
    bound = opts.angle_bound if opts.angle_bound is not None else check.radius
    recovered = (report.verdict == "holds"
                 and all(x is not None and x <= bound for x in per_teacher))
    if recovered:
        short = None
    elif report.verdict == "hypotheses-unmet":
        unmet = [h.id for h in report.hypotheses if h.holds is False]
        if "H4" in unmet:
            short = ("early stage: the stage-2 start fails H4 (gap "
                     f"{st2.gap:.3g} > eps_0 {eps0:.3g}), the early stage did not reach the basin; "
                     + ("stage 1: its frozen-feature floor "
                        f"{f1:.3g} is itself above eps_0" if eps0 is not None and f1 > eps0 else
                        "stage 2: the floor after stage 1 is below eps_0, the ridge fit is not"))
        else:
            short = f"stage 3: T1 hypotheses {', '.join(unmet)} unmet on the start ({report.message})"
    elif report.verdict == "holds":
        short = (f"stage 3: T1 held but some teacher has no heavy student within {bound:.3g} rad "
                 f"(closest per teacher: {per_teacher})")
    else:
        short = f"stage 3: verdict {report.verdict}: {report.message}"
    fle = {"frozen_floor": f1, "stage3_loss": final_loss,
           "stage3_below_floor": (final_loss < f1) if final_loss is not None else None,
           "max_angle_stage2": max2, "max_angle_stage3": max3, "angle_bound": bound}
    dirs = {"W0": _floats(W0_f).tolist(), "W1": _floats(W1).tolist(), "a2": _floats(ar).tolist(),
            "W2": _floats(Wr).tolist(),
            "a3": _floats(report.run["a"]).tolist() if report.run else None,
            "W3": _floats(report.run["W"]).tolist() if report.run else None}
    res = SeedResult(seed, st1, st2, st3, bool(recovered), short, fle, dirs)
    res._report = report  # type: ignore[attr-defined]  # for a counterexample file, not serialized
    res._run_file = check.run_file  # type: ignore[attr-defined]
    res._options = t_opts  # type: ignore[attr-defined]
    return res


def overall_verdict(results: list[dict[str, Any]], interrupted: bool) -> str:
    """'recovered' (every seed), 'fails' (a T1 conclusion failed), 'not-recovered', 'interrupted'."""
    if interrupted:
        return "interrupted"
    if any(r["stage3"]["verdict"] == "fails" for r in results):
        return "fails"
    if results and all(r["recovered"] for r in results):
        return "recovered"
    return "not-recovered"
