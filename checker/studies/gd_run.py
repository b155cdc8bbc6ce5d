"""Gradient descent alone, outside T1, for studies: the library of ``python -m checker.gd INSTANCE``
(the command is ``checker.commands.gd``).

Runs ``checker.dynamics.gd.run_gd`` on an instance with the options a study needs:
any lambda >= 0 (0 included: plain GD without weight decay), the trained blocks
(``--train both|first|second``), either engine, a step budget, a history at
geometric steps (``--history geometric``, about 20 rows a decade, so a
million-step run stays small) or every N steps (``every:N``), checkpoints,
and a continuation from the final point of a previous result (``--start``)
in another engine, e.g. with ``--engine mp`` below the float64 floor.

Every history row has step, loss L, reg_loss L_lambda, grad_norm (of L_lambda
in the trained blocks: ``GRAD_NORM``), far_mass, max_angle (and
redundant_mass, see ``neuron_geometry``), with the T1 conventions (``checker.theorem1``): radius r = Delta/3
(pi/3 for one teacher), far mass = sum of mu_j = |a_j| ||w_j|| over neurons
farther than r from every teacher, max angle = the largest angle to the nearest
teacher over neurons of mass >= 1e-2 a_min (``NEGLIGIBLE_MASS``).

Exit status (as ``checker.theorem1``): 0 the step budget was run; 1 the run
diverged (a reproducible file is written); 2 bad input; 3 inconclusive (the
engine's precision floor or the time budget stopped the run before its step
budget: continue with ``--start RESULT --engine mp``, or run past the floor
with ``--no-floor-stop``); 130 interrupted (the
partial result is written).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Callable, Mapping

import numpy as np

from .. import __version__
from checker.core.engines import Engine, make_engine
from checker.core.errors import CheckerError
from ..geometry.certificate import nearest_teacher
from checker.core.io import engine_to_json, read_json
from checker.core.model import Instance
from checker.core.problem import Problem
from checker.core.constants import NEGLIGIBLE_MASS

PROG = "python -m checker.gd"
RESULT_FORMAT = "zhou-ge-checker/gd-run"
RESULT_VERSION = "1.0"
#: History rows per decade of steps with ``--history geometric`` (steps 0..10 are all recorded).
ROWS_PER_DECADE = 20
#: grad_norm is the norm of the gradient of L_lambda in the trained blocks only: the
#: gradient of the function the run descends (a fixed block's gradient need not vanish).
GRAD_NORM = "||grad L_lambda|| in the trained blocks (a and W for both, W for first, a for second)"
#: Steps over which run_gd tests the precision floor (its default) ...
FLOOR_WINDOW = 200
#: ... and a window no run reaches (--no-floor-stop).
NO_FLOOR_WINDOW = 2 ** 62
HISTORY_KEYS = ("step", "loss", "reg_loss", "grad_norm", "far_mass", "max_angle")


# --------------------------------------------------------------------------- geometry of a point
def neuron_geometry(activation: str, a_star: Any, W_star: Any, a: Any, W: Any,
                    radius: float) -> dict[str, float]:
    """Far mass, largest angle of non-negligible neurons and redundant mass, T1's conventions.

    far_mass = sum of mu_j over neurons with angle to the nearest teacher > radius;
    max_angle = max angle over neurons with mu_j >= NEGLIGIBLE_MASS a_min (0 if none);
    redundant_mass = over the neurons within radius of teacher i, their mass minus
    the mass of the heaviest one, summed over i (this checker's measure of the mass
    carried by the extra students beyond one per teacher).  Zero neurons count in
    no set.  Computed in float64 (a measurement, not part of the iterate).
    """
    As = np.abs(np.asarray([float(x) for x in np.ravel(a_star)]))
    Ws = np.asarray([[float(x) for x in r] for r in W_star])
    av = np.asarray([float(x) for x in np.ravel(a)])
    Wm = np.asarray([[float(x) for x in r] for r in W])
    norms = np.linalg.norm(Wm, axis=1)
    mu = np.abs(av) * norms
    nz = norms > 0
    if not np.any(nz):
        return {"far_mass": 0.0, "max_angle": 0.0, "redundant_mass": 0.0}
    idx, ang = nearest_teacher(Ws, Wm[nz], activation)
    mu_nz = mu[nz]
    near = ang <= radius
    far_mass = float(mu_nz[~near].sum())
    heavy = mu_nz >= NEGLIGIBLE_MASS * float(As.min())
    max_angle = float(ang[heavy].max()) if np.any(heavy) else 0.0
    redundant = 0.0
    for i in range(len(Ws)):
        sel = mu_nz[near & (idx == i)]
        if len(sel):
            redundant += float(sel.sum() - sel.max())
    return {"far_mass": far_mass, "max_angle": max_angle, "redundant_mass": redundant}


def default_radius(instance: Instance) -> float:
    """r = Delta/3 as in ``checker.theorem1`` (Delta = pi for a single teacher)."""
    return instance.separation / 3


def exact_strings(engine: Engine, arr: Any) -> Any:
    """Decimal strings that are the engine's numbers exactly.

    float64: the full binary expansion (``Decimal(x)``), so that a continuation in
    the mp engine starts at the very float64 iterate; mp: ``engine_to_json``.
    """
    if engine.name != "float64":
        return engine_to_json(engine, arr)
    v = np.asarray(arr, dtype=float)
    if v.ndim == 1:
        return [str(Decimal(float(x))) for x in v]
    return [[str(Decimal(float(x))) for x in r] for r in v]


def _num(engine: Engine, x: Any) -> str:
    """One engine number as text (float64 repr, mp at its round-trip digits)."""
    return engine_to_json(engine, np.asarray(x, dtype=object))


# --------------------------------------------------------------------------- history steps
def parse_history(text: str) -> str:
    """``geometric`` or ``every:N`` (N >= 1), canonicalized; anything else a one-line error."""
    t = text.strip() if isinstance(text, str) else ""
    if t == "geometric":
        return t
    m = re.fullmatch(r"every:(\d+)", t)
    if m and int(m.group(1)) >= 1:
        return f"every:{int(m.group(1))}"
    raise CheckerError(f"--history: expected 'geometric' or 'every:N' with N >= 1, got {text!r}")


def geometric_steps(last: int) -> set[int]:
    """Steps 0..10 and round(10^(k/ROWS_PER_DECADE)) up to ``last`` (about 20 rows a decade)."""
    out = set(range(min(last, 10) + 1))
    k = ROWS_PER_DECADE
    while True:
        s = int(round(10 ** (k / ROWS_PER_DECADE)))
        if s > last:
            break
        out.add(s)
        k += 1
    return out


def record_predicate(history: str, offset: int, total: int) -> Callable[[int], bool]:
    """Local step k -> record?  Decided on the global step offset + k; local step 0 always."""
    if history == "geometric":
        steps = geometric_steps(offset + total)
        return lambda k: k == 0 or (offset + k) in steps
    n = int(history.split(":")[1])
    return lambda k: k == 0 or (offset + k) % n == 0


# --------------------------------------------------------------------------- options and result
@dataclass
class Options:
    engine: str = "float64"
    dps: int | None = None
    lam: str | None = None
    eta: str | None = None
    train: str = "both"
    steps: int = 10_000
    history: str = "geometric"
    time_budget: float | None = None
    start: str | None = None
    floor_stop: bool = True
    progress: bool = True


@dataclass
class GDRunResult:
    """What ``python -m checker.gd`` writes (JSON, versioned)."""

    instance: dict[str, Any]
    options: dict[str, Any]
    engine: dict[str, Any]
    step_offset: int
    steps: int
    stop_reason: str
    radius: float
    negligible_mass: float
    history: list[dict[str, Any]]
    final: dict[str, Any]
    monitoring: dict[str, Any]
    elapsed: float
    start_from: str | None = None
    version: str = RESULT_VERSION
    format: str = RESULT_FORMAT
    checker_version: str = __version__
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(problem: Problem, a: np.ndarray, W: np.ndarray, lam: Any, step: int, radius: float,
         train: str) -> dict[str, Any]:
    """One history row (HISTORY_KEYS and redundant_mass) at the point (a, W), engine numbers as text."""
    e = problem.engine
    with e.context():
        ev = problem.evaluate(a, W, lam=lam)
        geo = neuron_geometry(problem.activation, problem.a_star, problem.W_star, a, W, radius)
        row: dict[str, Any] = {"step": step, "loss": _num(e, ev.loss), "reg_loss": _num(e, ev.reg_loss)}
        g2 = (0 if train == "first" else (ev.grad_a * ev.grad_a).sum()) \
            + (0 if train == "second" else (ev.grad_W * ev.grad_W).sum())
        row["grad_norm"] = _num(e, e.sqrt(g2))
    row["far_mass"] = repr(geo["far_mass"])
    row["max_angle"] = repr(geo["max_angle"])
    row["redundant_mass"] = repr(geo["redundant_mass"])
    return row


def start_from_result(data: Any, instance: Instance, path: str = "the result") -> tuple[Instance, int]:
    """The instance with its student replaced by the final a, W of a previous result, and its step."""
    if not isinstance(data, Mapping) or data.get("format") != RESULT_FORMAT:
        raise CheckerError(f"--start {path}: not a result of {PROG}")
    if data.get("version") != RESULT_VERSION:
        raise CheckerError(f"--start {path}: result version {data.get('version')!r} is not supported "
                           f"(this program reads {RESULT_VERSION})")
    try:
        prev = Instance.from_dict(data["instance"])
        final = data["final"]
        a, W, steps = final["a"], final["W"], int(data["steps"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckerError(f"--start {path}: malformed result ({exc})") from None
    if (prev.activation, prev.teacher_a, prev.teacher_W, prev.normalize_teacher) != \
            (instance.activation, instance.teacher_a, instance.teacher_W, instance.normalize_teacher):
        raise CheckerError(f"--start {path}: the result is for another teacher than this instance's")
    if len(a) != instance.m:
        raise CheckerError(f"--start {path}: the result has {len(a)} students, this instance {instance.m}")
    return instance.replace(student_a=a, student_W=W), steps


def run(instance: Instance, opts: Options, *, checkpoint: str | None = None, resume: bool = False,
        start_data: Mapping[str, Any] | None = None) -> GDRunResult:
    """The descent of ``opts`` on ``instance`` (lambda and eta already applied) as a result.

    The start is the instance's student, or the final point of a previous result:
    ``start_data`` (its dict) or the file ``opts.start``; steps then continue from
    that result's step count.
    """
    from checker.dynamics import gd

    engine = make_engine(opts.engine, opts.dps)
    if instance.eta is None:
        raise CheckerError("no step size: give \"eta\" in the instance or --eta")
    offset = 0
    start_note = None
    if start_data is not None:
        instance, offset = start_from_result(start_data, instance, opts.start or "the start result")
        start_note = opts.start or "a previous result"
    elif opts.start is not None:
        instance, offset = start_from_result(read_json(opts.start, "--start"), instance, opts.start)
        start_note = opts.start
    problem = Problem.from_instance(instance, engine)
    radius = default_radius(instance)
    a_min = min(abs(float(x)) for x in instance.teacher_a)
    monitor: list[dict[str, Any]] = []
    stored = {"instance": instance.to_dict(), "history": opts.history, "step_offset": offset}
    saved = None
    if resume:
        assert checkpoint is not None
        saved = gd.load_checkpoint(checkpoint, problem)
        theirs = saved.get("instance")
        if not isinstance(theirs, Mapping) or theirs.get("history") != opts.history \
                or theirs.get("step_offset") != offset:
            raise CheckerError(f"--resume: the checkpoint {checkpoint} was made with another --history or "
                               "--start; resume with the same options")
        monitor = [dict(m) for m in saved.get("monitor", [])]

    def on_record(p: Problem, a: np.ndarray, W: np.ndarray, lam: Any, k: int) -> None:
        monitor.append(_row(p, a, W, lam, offset + k, radius, opts.train))

    # run_gd tests the precision floor every gap_every steps (window FLOOR_WINDOW); a window
    # longer than any run disables the test (the step at 0 is never tested).
    stop = gd.StopRules(max_steps=opts.steps, time_budget=opts.time_budget,
                        gap_every=FLOOR_WINDOW if opts.floor_stop else NO_FLOOR_WINDOW)
    res = gd.run_gd(problem, instance.eta, stop=stop, checkpoint=checkpoint, resume=saved,
                    progress=opts.progress, monitor=monitor, instance_dict=stored, train=opts.train,
                    record_at=record_predicate(opts.history, offset, opts.steps), on_record=on_record)
    # Rows of the committed history, joined with the geometry recorded at the same steps.
    by_step = {m["step"]: m for m in monitor}
    history = []
    for rec in res.history[:-1]:
        m = by_step.get(offset + rec.step)
        if m is None:  # a row without geometry cannot happen; guard against silent gaps
            raise RuntimeError(f"history row at step {rec.step} has no geometry")
        history.append(m)
    try:
        final = _row(problem, res.a, res.W, res.lam, offset + res.steps, radius, opts.train)
    except KeyboardInterrupt:
        # Ctrl-C after the descent: the result is still written (a second Ctrl-C stops at once;
        # the checkpoint, if any, holds the run).
        res.stop_reason = "interrupted"
        final = _row(problem, res.a, res.W, res.lam, offset + res.steps, radius, opts.train)
    with engine.context():
        final["a"] = exact_strings(engine, res.a)
        final["W"] = exact_strings(engine, res.W)
    if not history or history[-1]["step"] != final["step"]:
        history.append({k: v for k, v in final.items() if k not in ("a", "W")})
    rd = res.to_dict(engine)
    monitoring = {k: rd[k] for k in ("increases", "max_increase", "max_balance_residual", "balance_identity",
                                     "rounding_scale", "precision_floor", "train")}
    notes = [f"far_mass and max_angle: radius r = Delta/3 = {radius:.6g}, non-negligible mass >= "
             f"{NEGLIGIBLE_MASS:g} a_min (the conventions of checker.theorem1, this checker's choices)",
             f"grad_norm: {GRAD_NORM}"]
    if float(instance.lam) == 0:
        notes.append("lambda = 0: plain gradient descent on L, no weight decay (outside T1's hypotheses)")
    if res.stop_reason == "precision-floor":
        notes.append(f"stopped at the precision floor of {engine.describe()}: continue with "
                     f"--start RESULT.json --engine mp --dps 40")
    return GDRunResult(
        instance=instance.to_dict(),
        options={k: v for k, v in asdict(opts).items() if k != "progress"},
        engine={"name": engine.name, "dps": engine.dps if engine.name == "mp" else None},
        step_offset=offset, steps=offset + res.steps, stop_reason=res.stop_reason, radius=radius,
        negligible_mass=NEGLIGIBLE_MASS * a_min, history=history, final=final, monitoring=monitoring,
        elapsed=res.elapsed, start_from=start_note, notes=notes)
