"""Gradient descent on L_lambda, with a fixed or decreasing lambda, checkpoints and resume.

One GD step, the same code in every engine:

    (a, W) <- (a, W) - eta * grad L_lambda(a, W)

with the exact population gradient of ``checker.core.objective``, or on one block
only (``train``): "first" trains W with the output weights a fixed, "second"
trains a with W fixed; the fixed block is never touched (bit for bit).  Each
step is monitored for what the local-convergence theorem says about it:

* descent of L_lambda (C1): the number of steps where L_lambda went up and the
  largest one-step increase (increases at the rounding level of L_lambda count
  too; ``GDResult.rounding_scale`` tells the caller how large that level is);
* the balance b_j = a_j^2 - ||w_j||^2 and the residual of the exact one-step
  identity  b_j' = (1 - eta lambda)^2 b_j + eta^2 (g_a^2 - ||g_w||^2),  with g
  the gradient of the unregularized L, relative to max(1, |b_j|).  The identity
  follows from the balance law a_j dL/da_j = <w_j, grad_{w_j} L>, so its residual
  stays at the rounding level of the engine exactly when the gradients obey it.
  That identity holds only when both layers train.  With one trained block it
  is not applicable; the residual monitored instead is that of the one-block
  identity (derivations/balance.py, ``balance_gd_step_one_block``), with
  c = 1 - eta lambda and the balance law used for the fixed block's term:
    first only:  b_j' = a_j^2 - c^2 ||w_j||^2 + 2 eta c a_j g_a - eta^2 ||g_w||^2,
    second only: b_j' = c^2 a_j^2 - ||w_j||^2 - 2 eta c <w_j, g_w> + eta^2 g_a^2.
  ``GDResult.balance_identity`` says which identity the residual refers to.

Stop rules: a step budget, a wall-time budget, a gap target (at the final lambda
of the schedule only), a gradient-norm tolerance, divergence, and the precision
floor of the engine (see ``run_gd``).  Ctrl-C ends the run cleanly with the partial result.

``python -m checker.gd INSTANCE`` runs this descent alone, outside T1, for
studies (``checker/studies/gd_run.py``).

A run is a deterministic function of (problem, eta, schedule, gap_every, gap_fn)
up to the step where it stops, so a run resumed from a checkpoint reaches the
very same iterate (bit for bit) as an uninterrupted run.  The loop is written
as transactions: every iteration computes its new state aside and commits it in
one assignment, so an interrupt anywhere leaves the last completed step as the
state that is returned and checkpointed.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from checker.core import objective
from checker.core.engines import Engine
from checker.core.errors import CheckerError
from checker.core.io import check_sealed_format, engine_from_json, engine_to_json, read_json, seal, write_json_atomic
from checker.core.problem import Problem

CHECKPOINT_FORMAT = "zhou-ge-checker/gd-checkpoint"
#: 2: every checkpoint carries a SHA-256 digest of its other top-level keys (``checker.core.io.seal``).
CHECKPOINT_VERSION = 2

#: Which parameter blocks a run trains: both layers, the first layer W only, the output weights a only.
TRAIN_CHOICES = ("both", "first", "second")

#: The balance identity whose residual a run monitors, per trained block (see the module docstring).
BALANCE_IDENTITY = {
    "both": "two-layer identity b' = (1 - eta lambda)^2 b + eta^2 (g_a^2 - ||g_w||^2)",
    "first": "not applicable (first layer only); monitored instead: the one-block identity "
             "b' = a^2 - c^2 ||w||^2 + 2 eta c a g_a - eta^2 ||g_w||^2, c = 1 - eta lambda",
    "second": "not applicable (second layer only); monitored instead: the one-block identity "
              "b' = c^2 a^2 - ||w||^2 - 2 eta c <w, g_w> + eta^2 g_a^2, c = 1 - eta lambda",
}

STOP_REASONS = ("gap-target", "max-steps", "time-budget", "interrupted", "precision-floor", "diverged", "grad-tol")

#: Rounding allowance per evaluation of L_lambda and per iterate update, in ulps
#: of the scale S = |L_lambda| + ||f*||^2.  L is a sum of O((m + m*)^2) kernel
#: terms of size up to S that cancel to L (which may be far smaller than S), so
#: a computed L_lambda is off by a few ulps of S, not of L_lambda.
FLOOR_ULPS = 4
#: The gap estimate counts as "stopped improving" when it is above (1 - this)
#: times the best estimate seen at the current lambda.
GAP_STALL_FRACTION = 0.1
#: L_lambda beyond this multiple of (L_lambda(start) + ||f*||^2): divergence
#: (GD with a descent step never goes there).
DIVERGENCE_FACTOR = 1e8

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Schedule:
    """How lambda evolves along the run.

    ``fixed``: lambda stays at the instance's value.

    ``geometric``: after each gap evaluation (every ``StopRules.gap_every``
    steps), if gap <= switch_rel_gap * lambda^2 and factor * lambda >= lam_min,
    then lambda <- factor * lambda (recorded in ``GDResult.lam_changes``).  The
    final lambda of the schedule is reached once factor * lambda < lam_min; only
    there does ``StopRules.gap_target`` apply.  With lam_min = 0 lambda keeps
    decreasing and the run ends on its step or time budget.
    """

    kind: str = "fixed"
    factor: float = 0.5
    switch_rel_gap: float = 1e-2
    lam_min: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "geometric"):
            raise CheckerError(f"schedule: unknown kind {self.kind!r} (expected 'fixed' or 'geometric')")
        for name in ("factor", "switch_rel_gap", "lam_min"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise CheckerError(f"schedule: {name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not 0 < self.factor < 1:
            raise CheckerError(f"schedule: factor must be in (0, 1), got {self.factor!r}")
        if self.switch_rel_gap <= 0:
            raise CheckerError(f"schedule: switch must be positive, got {self.switch_rel_gap!r}")
        if self.lam_min < 0:
            raise CheckerError(f"schedule: min must be >= 0, got {self.lam_min!r}")

    def is_final(self, lam: float) -> bool:
        """True when lambda will not change any more."""
        return self.kind == "fixed" or lam * self.factor < self.lam_min

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Schedule":
        if not isinstance(data, Mapping):
            raise CheckerError("schedule: expected an object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise CheckerError(f"schedule: unknown key {unknown[0]!r}")
        return cls(**dict(data))

    @classmethod
    def parse(cls, text: str) -> "Schedule":
        """CLI form: ``fixed``, ``geometric`` or ``geometric:factor=0.5,switch=1e-2,min=1e-4``."""
        example = "e.g. 'fixed' or 'geometric:factor=0.5,switch=1e-2,min=1e-4'"
        if not isinstance(text, str):
            raise CheckerError(f"--schedule: expected text, {example}")
        kind, _, params = text.strip().partition(":")
        kind = kind.strip()
        if kind not in ("fixed", "geometric"):
            raise CheckerError(f"--schedule: unknown kind {kind!r} in {text!r}; {example}")
        if kind == "fixed":
            if params.strip():
                raise CheckerError(f"--schedule: 'fixed' takes no parameters, got {text!r}")
            return cls("fixed")
        keys = {"factor": "factor", "switch": "switch_rel_gap", "min": "lam_min"}
        values: dict[str, float] = {}
        if params.strip():
            for item in params.split(","):
                key, eq, value = item.partition("=")
                key, value = key.strip(), value.strip()
                if not eq or key not in keys:
                    raise CheckerError(f"--schedule: bad parameter {item.strip()!r} in {text!r}; "
                                       f"expected factor=, switch=, min= ({example})")
                if keys[key] in values:
                    raise CheckerError(f"--schedule: {key} given twice in {text!r}")
                if not _NUMBER.match(value) or not math.isfinite(float(value)):
                    raise CheckerError(f"--schedule: {key}={value!r} is not a finite number")
                values[keys[key]] = float(value)
        return cls("geometric", **values)


@dataclass(frozen=True)
class StopRules:
    """When a run ends; ``gap_every`` also sets when gap_fn is evaluated (schedule, floor)."""

    max_steps: int = 20_000
    time_budget: float | None = None
    gap_target: float | None = None
    gap_every: int = 200
    record_every: int = 10
    #: stop ("grad-tol") once the norm of the gradient of L_lambda over the trained blocks is <= this
    grad_tol: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_steps", "gap_every", "record_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise CheckerError(f"stop rules: {name} must be a whole number, got {v!r}")
        if self.max_steps < 0:
            raise CheckerError(f"stop rules: max_steps must be >= 0, got {self.max_steps}")
        if self.gap_every < 1 or self.record_every < 1:
            raise CheckerError("stop rules: gap_every and record_every must be >= 1")
        for name in ("time_budget", "gap_target", "grad_tol"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise CheckerError(f"stop rules: {name} must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, name, float(v))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "StopRules":
        if not isinstance(data, Mapping):
            raise CheckerError("stop rules: expected an object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise CheckerError(f"stop rules: unknown key {unknown[0]!r}")
        return cls(**dict(data))


# --------------------------------------------------------------------------- results
def _float_to_json(x: float | None) -> float | str | None:
    if x is None or math.isfinite(x):
        return x
    return repr(x)  # 'inf', '-inf', 'nan': JSON has no such numbers


def _float_from_json(x: Any, where: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise CheckerError(f"{where}: expected a number, got {type(x).__name__}")
    if isinstance(x, str) and x not in ("inf", "-inf", "nan"):
        raise CheckerError(f"{where}: expected a number, got {x!r}")
    return float(x)


@dataclass
class Record:
    """One history row, observed at ``step`` (before that step's update).

    ``balance_identity_residual`` and ``max_increase`` are the largest values
    over the steps since the previous row; ``gap`` is None where gap_fn was not
    evaluated.  At a step where the schedule lowers lambda, the row shows the
    lambda at which the gap was measured.  ``grad_norm`` is the norm of the whole
    gradient of L_lambda in (a, W), whichever blocks train.
    """

    step: int
    lam: float
    loss: float
    reg_loss: float
    gap: float | None
    grad_norm: float
    max_abs_balance: float
    balance_identity_residual: float
    max_increase: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (v if k == "step" else _float_to_json(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Any) -> "Record":
        names = [f.name for f in fields(cls)]
        if not isinstance(data, Mapping) or sorted(data) != sorted(names):
            raise CheckerError(f"history row: expected keys {', '.join(names)}")
        step = data["step"]
        if isinstance(step, bool) or not isinstance(step, int):
            raise CheckerError("history row: step must be a whole number")
        kw: dict[str, Any] = {"step": step}
        for n in names[1:]:
            v = _float_from_json(data[n], f"history row {n}")
            if v is None and n != "gap":
                raise CheckerError(f"history row: {n} is missing")
            kw[n] = v
        return cls(**kw)


@dataclass
class GDResult:
    """The end state of a run and what was monitored along it."""

    a: np.ndarray
    W: np.ndarray
    lam: Any
    steps: int
    stop_reason: str
    history: list[Record]
    increases: int
    max_increase: float
    precision_floor: bool
    lam_changes: list[tuple[int, float]]
    elapsed: float
    #: largest relative residual of the one-step balance identity over the run
    max_balance_residual: float = 0.0
    #: eps * (|L_lambda| + ||f*||^2) at the end: the rounding level of L_lambda
    rounding_scale: float = 0.0
    #: a hybrid run (``checker.dynamics.hybrid``): the float64 steps before the switch, with their own
    #: increases and rounding level (the fields above then describe the high-precision steps)
    float64_phase: dict[str, Any] | None = None
    #: the trained blocks ("both", "first", "second")
    train: str = "both"

    def to_dict(self, engine: Engine) -> dict[str, Any]:
        """JSON form; a, W and lambda as exact strings of the engine."""
        with engine.context():
            lam = engine_to_json(engine, self.lam)
        return {
            "a": engine_to_json(engine, self.a),
            "W": engine_to_json(engine, self.W),
            "lambda": lam,
            "steps": self.steps,
            "stop_reason": self.stop_reason,
            "increases": self.increases,
            "max_increase": _float_to_json(self.max_increase),
            "max_balance_residual": _float_to_json(self.max_balance_residual),
            "rounding_scale": _float_to_json(self.rounding_scale),
            "precision_floor": self.precision_floor,
            "train": self.train,
            "balance_identity": BALANCE_IDENTITY[self.train],
            "lam_changes": [[k, lam_k] for k, lam_k in self.lam_changes],
            "elapsed": self.elapsed,
            "history": [r.to_dict() for r in self.history],
            **({"float64_phase": self.float64_phase} if self.float64_phase is not None else {}),
        }


# --------------------------------------------------------------------------- state
@dataclass(frozen=True)
class _State:
    """Everything a run needs to continue from step ``step`` (committed as one value)."""

    step: int
    a: np.ndarray
    W: np.ndarray
    lam: Any
    ev: objective.Evaluation  # at (a, W, lam)
    n_rows: int  # committed length of the (append-only) history list
    n_monitor: int  # committed length of the caller's monitor list
    lam_changes: tuple[tuple[int, float], ...]
    increases: int
    max_increase: float
    max_residual: float
    pending_increase: float  # maxima since the last history row
    pending_residual: float
    window_step: int  # precision-floor window: start step and L_lambda there
    window_reg_loss: Any
    best_gap: float | None  # best gap estimate at the current lambda


def step_update(train: str, a: np.ndarray, W: np.ndarray, grad_a: np.ndarray, grad_W: np.ndarray,
                eta: Any) -> tuple[np.ndarray, np.ndarray]:
    """One GD step on the trained blocks: (a - eta g_a, W - eta g_W); a fixed block is returned as is.

    Elementwise, so the same code steps one student (a (m,), W (m, d)) or a batch
    (a (B, m), W (B, m, d); ``checker.dynamics.batch``) with the same roundings.
    """
    # Array on the left: mpf * ndarray formats the whole array inside mpmath first.
    a2 = a if train == "first" else a - grad_a * eta
    W2 = W if train == "second" else W - grad_W * eta
    return a2, W2


def grad_norm_sq(train: str, grad_a: np.ndarray, grad_W: np.ndarray) -> Any:
    """Squared norm of the gradient over the trained blocks (over the trailing axes: one student or a batch)."""
    if train == "first":
        return (grad_W * grad_W).sum(axis=(-2, -1))
    if train == "second":
        return (grad_a * grad_a).sum(axis=-1)
    return (grad_a * grad_a).sum(axis=-1) + (grad_W * grad_W).sum(axis=(-2, -1))


def precision_floor(n: int, eps: float, scale: Any) -> Any:
    """The precision-floor threshold of ``run_gd`` for a window of n steps: 4 (n + 2) eps S.

    2 end-point evaluations + n iterate updates, each a few ulps of S = |L_lambda| + ||f*||^2
    (``scale``: a number, or an array of them for a batch).
    """
    return FLOOR_ULPS * (n + 2) * eps * scale


def _to_float(x: Any) -> float:
    try:
        return float(x)
    except (OverflowError, ValueError):
        return math.inf


def _balance(a: np.ndarray, W: np.ndarray) -> np.ndarray:
    return a * a - (W * W).sum(axis=1)


def _all_finite(*arrays: Any) -> bool:
    if all(isinstance(x, (float, np.floating)) or (isinstance(x, np.ndarray) and x.dtype == float)
           for x in arrays):
        # float64: a sum is NaN or infinite when any term is; it can also overflow when
        # every term is finite, but only for terms near 1e308, far past divergence.
        with np.errstate(all="ignore"):
            return math.isfinite(sum(float(np.sum(x)) for x in arrays))
    return all(math.isfinite(_to_float(x)) for arr in arrays for x in np.ravel(np.asarray(arr, dtype=object)))


def _teacher_energy(problem: Problem) -> Any:
    """||f*||^2 = a*^T K(W*, W*) a*: the size of the terms that cancel in L."""
    e = problem.engine
    with e.context():
        K = objective.gram(e, problem.W_star, problem.W_star, problem.activation)
        return problem.a_star.dot(K.dot(problem.a_star))


def _row(state: _State, gap: float | None) -> Record:
    ev = state.ev
    grad_sq = _to_float((ev.grad_a * ev.grad_a).sum() + (ev.grad_W * ev.grad_W).sum())
    b = _balance(state.a, state.W)
    return Record(
        step=state.step, lam=_to_float(state.lam), loss=_to_float(ev.loss), reg_loss=_to_float(ev.reg_loss),
        gap=gap, grad_norm=math.sqrt(grad_sq) if math.isfinite(grad_sq) else math.inf,
        max_abs_balance=max((_to_float(abs(x)) for x in b), default=0.0),
        balance_identity_residual=state.pending_residual, max_increase=state.pending_increase)


def _max_relative_residual(b2: np.ndarray, predicted: np.ndarray, b: np.ndarray) -> float:
    """max_j |b2_j - predicted_j| / max(1, |b_j|) as a float (vectorized in float64)."""
    if b2.dtype == float:  # (run_gd's loop runs under np.errstate(all="ignore"))
        r = np.abs(b2 - predicted) / np.maximum(1.0, np.abs(b))
        return float(r.max()) if not np.isnan(r).any() else math.nan
    return max(_to_float(abs(x - y) / max(1, abs(z))) for x, y, z in zip(b2, predicted, b))


def _predicted_balance(train: str, a: np.ndarray, W: np.ndarray, ev: objective.Evaluation, eta: Any,
                       lam: Any) -> np.ndarray:
    """b' after one step from the identity for the trained blocks (module docstring), g = grad L."""
    c = 1 - eta * lam
    ga, gW = ev.loss_grad_a, ev.loss_grad_W
    if train == "both":
        return c * c * _balance(a, W) + eta * eta * (ga * ga - (gW * gW).sum(axis=1))
    if train == "first":
        return a * a - c * c * (W * W).sum(axis=1) + 2 * eta * c * a * ga - eta * eta * (gW * gW).sum(axis=1)
    return c * c * a * a - (W * W).sum(axis=1) - 2 * eta * c * (W * gW).sum(axis=1) + eta * eta * ga * ga


# --------------------------------------------------------------------------- checkpoints
def _fingerprint(problem: Problem) -> dict[str, Any]:
    e = problem.engine
    with e.context():
        return {
            "activation": problem.activation,
            "teacher_a": engine_to_json(e, problem.a_star),
            "teacher_W": engine_to_json(e, problem.W_star),
            "initial_a": engine_to_json(e, problem.a),
            "initial_W": engine_to_json(e, problem.W),
            "initial_lambda": engine_to_json(e, problem.lam),
        }


def _engine_dict(engine: Engine) -> dict[str, Any]:
    return {"name": engine.name, "dps": engine.dps if engine.name == "mp" else None}


def _checkpoint_dict(problem: Problem, eta: Any, schedule: Schedule, stop: StopRules, s: _State,
                     rows: list[Record], monitor: list[Any] | None, instance_dict: dict | None,
                     elapsed: float, status: str, train: str = "both") -> dict[str, Any]:
    e = problem.engine
    with e.context():
        state = {
            "step": s.step,
            "a": engine_to_json(e, s.a),
            "W": engine_to_json(e, s.W),
            "lambda": engine_to_json(e, s.lam),
            "lam_changes": [[k, lam] for k, lam in s.lam_changes],
            "increases": s.increases,
            "max_increase": _float_to_json(s.max_increase),
            "max_balance_residual": _float_to_json(s.max_residual),
            "pending_increase": _float_to_json(s.pending_increase),
            "pending_residual": _float_to_json(s.pending_residual),
            "window_step": s.window_step,
            "window_reg_loss": engine_to_json(e, s.window_reg_loss),
            "best_gap": _float_to_json(s.best_gap),
        }
        out: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "status": status,
            "engine": _engine_dict(e),
            "problem": _fingerprint(problem),
            "eta": engine_to_json(e, eta),
            "schedule": schedule.to_dict(),
            "stop": stop.to_dict(),
            "train": train,
            "state": state,
            "history": [r.to_dict() for r in rows[:s.n_rows]],
            "elapsed": elapsed,
        }
    if monitor is not None:
        out["monitor"] = list(monitor[:s.n_monitor])
    if instance_dict is not None:
        out["instance"] = instance_dict
    return seal(out)


def validate_checkpoint(data: Any, problem: Problem, source: str) -> None:
    """One-line CheckerError naming ``source`` unless ``data`` is a checkpoint of this problem and engine.

    Checked in this order, all before any long work: format and version; the
    digest (``checker.core.io.check_seal``: a hand-edited or corrupted file is
    refused); the engine and the instance fingerprint; the shape and
    finiteness of the state (an objective that overflows the engine at the
    stored point is refused); the history rows.  Top-level keys this reader
    does not know are covered by the digest and otherwise ignored.
    """
    check_sealed_format(data, source, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "GD checkpoint", "start a new run")
    try:
        _validate_checkpoint(data, problem, source)
    except CheckerError as exc:
        text = str(exc)
        raise CheckerError(text if text.startswith(source) else f"{source}: {text}") from None


def _validate_checkpoint(data: Any, problem: Problem, source: str) -> None:
    """The content checks of ``validate_checkpoint`` (format, version and digest already checked)."""
    for key in ("engine", "problem", "eta", "schedule", "stop", "state", "history", "elapsed"):
        if key not in data:
            raise CheckerError(f"{source}: checkpoint is missing {key!r}; start a new run")
    e = problem.engine
    want, got = _engine_dict(e), data["engine"]
    if got != want:
        def say(d: Any) -> str:
            if not isinstance(d, Mapping):
                return repr(d)
            return f"mp with {d.get('dps')} digits" if d.get("name") == "mp" else str(d.get("name"))
        hint = "--engine float64" if isinstance(got, Mapping) and got.get("name") == "float64" else \
            f"--engine mp --dps {got.get('dps') if isinstance(got, Mapping) else '?'}"
        raise CheckerError(f"{source}: checkpoint was written by engine {say(got)}, this run uses {say(want)} "
                           f"(resume with {hint})")
    mine, theirs = _fingerprint(problem), data["problem"]
    if not isinstance(theirs, Mapping):
        raise CheckerError(f"{source}: checkpoint has no instance description; start a new run")
    for key, label in (("activation", "activation"), ("teacher_a", "teacher output weights"),
                       ("teacher_W", "teacher neurons"), ("initial_a", "initial student output weights"),
                       ("initial_W", "initial student neurons"), ("initial_lambda", "lambda")):
        if theirs.get(key) != mine[key]:
            raise CheckerError(f"{source}: checkpoint belongs to another instance (its {label} differ "
                               f"from this instance's); resume with the instance it was made from")
    state = data["state"]
    if not isinstance(state, Mapping):
        raise CheckerError(f"{source}: checkpoint state is malformed; start a new run")
    for key in ("step", "a", "W", "lambda", "lam_changes", "increases", "max_increase", "max_balance_residual",
                "pending_increase", "pending_residual", "window_step", "window_reg_loss", "best_gap"):
        if key not in state:
            raise CheckerError(f"{source}: checkpoint state is missing {key!r}; start a new run")
    for key in ("step", "increases", "window_step"):
        v = state[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CheckerError(f"{source}: checkpoint state {key} must be a whole number >= 0")
    a = engine_from_json(e, state["a"], f"{source}: state.a")
    W = engine_from_json(e, state["W"], f"{source}: state.W")
    if a.shape != problem.a.shape or W.shape != problem.W.shape:
        raise CheckerError(f"{source}: checkpoint student has shape {a.shape}/{W.shape}, "
                           f"this instance {problem.a.shape}/{problem.W.shape}")
    lam = engine_from_json(e, state["lambda"], f"{source}: state.lambda")
    wrl = engine_from_json(e, state["window_reg_loss"], f"{source}: state.window_reg_loss")
    if lam.shape != () or wrl.shape != ():
        raise CheckerError(f"{source}: checkpoint state lambda and window_reg_loss must be numbers")
    with e.context(), np.errstate(all="ignore"):
        ev = problem.evaluate(a, W, lam=lam[()], with_gradient=False)
        finite = _all_finite(a, W, lam, wrl, ev.loss, ev.reg_loss)
    if not finite:
        raise CheckerError(f"{source}: the checkpoint state is not finite in {e.describe()} "
                           "(an entry or the objective at it overflows); start again without --resume")
    engine_from_json(e, data["eta"], f"{source}: eta")
    Schedule.from_dict(data["schedule"])
    StopRules.from_dict(data["stop"])
    if data.get("train", "both") not in TRAIN_CHOICES:  # checkpoints without the key trained both layers
        raise CheckerError(f"{source}: checkpoint train must be one of {', '.join(TRAIN_CHOICES)}")
    if not isinstance(data["history"], list):
        raise CheckerError(f"{source}: checkpoint history must be a list")
    for row in data["history"]:
        Record.from_dict(row)
    changes = state["lam_changes"]
    if not isinstance(changes, list) or not all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], int) for c in changes):
        raise CheckerError(f"{source}: checkpoint lam_changes is malformed")
    for key in ("max_increase", "max_balance_residual", "pending_increase", "pending_residual", "best_gap"):
        _float_from_json(state[key], f"{source}: state.{key}")
    if not isinstance(data["elapsed"], (int, float)) or isinstance(data["elapsed"], bool):
        raise CheckerError(f"{source}: checkpoint elapsed must be a number")
    if "monitor" in data and not isinstance(data["monitor"], list):
        raise CheckerError(f"{source}: checkpoint monitor must be a list")


def load_checkpoint(path: str | Path, problem: Problem) -> dict:
    """Read a checkpoint and check that it belongs to this instance and engine.

    Returns the checkpoint as a dict to pass to ``run_gd(..., resume=...)``;
    the caller's monitor list, if one was checkpointed, is under ``"monitor"``.
    """
    data = read_json(path, "checkpoint")
    validate_checkpoint(data, problem, f"checkpoint {path}")
    return data


def _state_from_checkpoint(data: Mapping[str, Any], problem: Problem, rows: list[Record],
                           monitor: list[Any] | None) -> _State:
    e = problem.engine
    st = data["state"]
    with e.context():
        a = engine_from_json(e, st["a"])
        W = engine_from_json(e, st["W"])
        lam = engine_from_json(e, st["lambda"])[()]
        window_reg_loss = engine_from_json(e, st["window_reg_loss"])[()]
        ev = problem.evaluate(a, W, lam=lam)
    rows.extend(Record.from_dict(r) for r in data["history"])
    n_monitor = len(monitor) if monitor is not None else 0
    return _State(
        step=st["step"], a=a, W=W, lam=lam, ev=ev, n_rows=len(rows), n_monitor=n_monitor,
        lam_changes=tuple((int(k), float(v)) for k, v in st["lam_changes"]),
        increases=st["increases"],
        max_increase=_float_from_json(st["max_increase"], "max_increase") or 0.0,
        max_residual=_float_from_json(st["max_balance_residual"], "max_balance_residual") or 0.0,
        pending_increase=_float_from_json(st["pending_increase"], "pending_increase") or 0.0,
        pending_residual=_float_from_json(st["pending_residual"], "pending_residual") or 0.0,
        window_step=st["window_step"], window_reg_loss=window_reg_loss,
        best_gap=_float_from_json(st["best_gap"], "best_gap"))


# --------------------------------------------------------------------------- the run
def _progress_bar(stop: StopRules, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    show = enabled and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(total=stop.max_steps, initial=initial, file=sys.stderr, disable=not show,
                desc="GD", unit="step", dynamic_ncols=True, leave=True)


def run_gd(problem: Problem, eta: Any, *, schedule: Schedule = Schedule(), stop: StopRules = StopRules(),
           gap_fn: Callable[[Problem, np.ndarray, np.ndarray, Any], float] | None = None,
           checkpoint: str | Path | None = None, checkpoint_every: float = 30.0,
           resume: dict | None = None, progress: bool = True,
           monitor: list[Any] | None = None, instance_dict: dict | None = None,
           on_checkpoint: Callable[[dict], None] | None = None,
           train: str = "both", record_at: Callable[[int], bool] | None = None,
           on_record: Callable[[Problem, np.ndarray, np.ndarray, Any, int], None] | None = None) -> GDResult:
    """Gradient descent on L_lambda from the problem's student (or from ``resume``).

    ``train``: "both" (default), "first" (W trains, a fixed) or "second" (a
    trains, W fixed).  The fixed block keeps its very numbers; the gradient of
    the fixed block is still computed (the one-block balance identity uses it).

    Each iteration at step k: stop on the step budget or the time budget; stop
    ("grad-tol") when ``stop.grad_tol`` is set and the norm of the gradient of
    L_lambda over the trained blocks is at most it; every ``stop.gap_every``
    steps evaluate ``gap_fn(problem, a, W, lam)``, then

    * at the final lambda of the schedule, stop when gap <= ``stop.gap_target``;
    * precision floor: stop when L_lambda decreased over the steps since the
      previous evaluation by at most 4 (n + 2) ulps of S = |L_lambda| + ||f*||^2
      (n the window length) and the gap estimate, if any, did not improve by
      10% on its best at this lambda;
    * apply the schedule (``Schedule``);

    record a history row every ``stop.record_every`` steps and at gap
    evaluations; take the step.  A non-finite iterate or L_lambda above
    1e8 (L_lambda(start) + ||f*||^2) stops with "diverged" and returns the last
    iterate before it.  At the end (except on Ctrl-C or divergence) the gap is
    evaluated once more for the last row.

    ``monitor``: an append-only list of JSON items the caller fills (e.g. in
    gap_fn); the checkpoint stores the items present at the last completed step
    and ``load_checkpoint`` returns them under ``"monitor"``, for the caller to
    pass back (restored) when resuming.  ``instance_dict`` is stored in the
    checkpoint for reference.  ``on_checkpoint``: instead of writing the
    checkpoint file, hand each (sealed) checkpoint dict to this function, for
    a caller that embeds it in its own checkpoint (``checker.theorem1``).

    ``record_at(step)``: when given, a history row is recorded at the steps where
    it is true (instead of every ``stop.record_every`` steps; rows at gap
    evaluations stay).  ``on_record(problem, a, W, lam, step)`` is called at each
    recorded row with the iterate of that row (e.g. to append geometry to
    ``monitor``, which is checkpointed with the run).

    Resuming needs the same eta, schedule, ``gap_every`` and ``train`` as the run
    that wrote the checkpoint (anything else would be a different run); the other
    stop rules may differ.  Wall time accumulates across resumes.
    """
    e = problem.engine
    if eta is None:
        raise CheckerError("no step size: give eta in the instance (\"eta\": \"0.05\") or on the command line")
    if isinstance(schedule, str) or not isinstance(schedule, Schedule):
        raise CheckerError("schedule must be a Schedule (use Schedule.parse for the text form)")
    if not isinstance(stop, StopRules):
        raise CheckerError("stop must be StopRules")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, float)) \
            or not checkpoint_every >= 0:
        raise CheckerError(f"checkpoint_every must be a number of seconds >= 0, got {checkpoint_every!r}")
    if train not in TRAIN_CHOICES:
        raise CheckerError(f"train must be one of {', '.join(TRAIN_CHOICES)}, got {train!r}")
    if gap_fn is None and (schedule.kind != "fixed" or stop.gap_target is not None):
        raise CheckerError("a geometric schedule or a gap target needs a gap estimate (gap_fn)")
    with e.context():
        eta_e = engine_from_json(e, eta, "eta")[()] if isinstance(eta, str) else e.scalar(eta)
        if not _to_float(eta_e) > 0 or not math.isfinite(_to_float(eta_e)):
            raise CheckerError(f"eta must be a finite positive number, got {eta!r}")
        factor_e = e.scalar(repr(schedule.factor))
        fstar_sq = _teacher_energy(problem)
        start_ev = problem.evaluate(with_gradient=False)
    diverge_at = DIVERGENCE_FACTOR * (abs(_to_float(start_ev.reg_loss)) + _to_float(fstar_sq))

    rows: list[Record] = []
    if resume is not None:
        validate_checkpoint(resume, problem, "resume")
        with e.context():
            if resume["eta"] != engine_to_json(e, eta_e):
                raise CheckerError(f"resume: the checkpoint was made with eta = {resume['eta']}, this run uses "
                                   f"{engine_to_json(e, eta_e)}; resume with the same step size")
        if Schedule.from_dict(resume["schedule"]) != schedule:
            raise CheckerError(f"resume: the checkpoint was made with schedule {resume['schedule']}, this run "
                               f"uses {schedule.to_dict()}; resume with the same schedule")
        if resume["stop"].get("gap_every") != stop.gap_every:
            raise CheckerError(f"resume: the checkpoint evaluated the gap every {resume['stop'].get('gap_every')} steps, "
                               f"this run every {stop.gap_every}; resume with the same step budget (--steps)")
        if resume.get("train", "both") != train:
            raise CheckerError(f"resume: the checkpoint was made with train = {resume.get('train', 'both')}, "
                               f"this run uses {train}; resume with the same trained blocks")
        s = _state_from_checkpoint(resume, problem, rows, monitor)
        elapsed_before = float(resume["elapsed"])
    else:
        with e.context():
            ev0 = problem.evaluate(problem.a, problem.W, lam=problem.lam)
        s = _State(step=0, a=problem.a, W=problem.W, lam=problem.lam, ev=ev0, n_rows=0,
                   n_monitor=len(monitor) if monitor is not None else 0, lam_changes=(), increases=0,
                   max_increase=0.0, max_residual=0.0, pending_increase=0.0, pending_residual=0.0,
                   window_step=0, window_reg_loss=ev0.reg_loss, best_gap=None)
        elapsed_before = 0.0

    t0 = time.perf_counter()
    last_ckpt = t0

    def elapsed() -> float:
        return elapsed_before + (time.perf_counter() - t0)

    saving = checkpoint is not None or on_checkpoint is not None

    def save(state: _State, status: str) -> None:
        if not saving:
            return
        data = _checkpoint_dict(problem, eta_e, schedule, stop, state, rows, monitor, instance_dict,
                                elapsed(), status, train)
        if on_checkpoint is not None:
            on_checkpoint(data)
        else:
            write_json_atomic(checkpoint, data)

    reason: str | None = None
    final_gap: float | None = None
    gap_done = False  # the final gap of the stopping step is known
    bar = _progress_bar(stop, s.step, progress)
    try:
        with e.context(), np.errstate(all="ignore"):
            while True:
                k = s.step
                if k >= stop.max_steps:
                    reason = "max-steps"
                    break
                if stop.time_budget is not None and elapsed() >= stop.time_budget:
                    reason = "time-budget"
                    break
                if stop.grad_tol is not None and \
                        math.sqrt(_to_float(grad_norm_sq(train, s.ev.grad_a, s.ev.grad_W))) <= stop.grad_tol:
                    reason = "grad-tol"
                    break
                lam, ev = s.lam, s.ev
                window_step, window_reg_loss, best_gap = s.window_step, s.window_reg_loss, s.best_gap
                lam_changes = s.lam_changes
                gap: float | None = None
                if k % stop.gap_every == 0:
                    if gap_fn is not None:
                        gap = float(gap_fn(problem, s.a, s.W, lam))
                        if math.isnan(gap):
                            raise CheckerError(f"the gap estimate is not a number at step {k}")
                    lam_f = _to_float(lam)
                    final = schedule.is_final(lam_f)
                    if final and stop.gap_target is not None and gap is not None and gap <= stop.gap_target:
                        reason, final_gap, gap_done = "gap-target", gap, True
                        break
                    if k > window_step:
                        n = k - window_step
                        decrease = _to_float(window_reg_loss - ev.reg_loss)
                        scale = abs(_to_float(ev.reg_loss)) + _to_float(fstar_sq)
                        floor = precision_floor(n, e.eps, scale)
                        # ">=": a gap estimate stuck at 0 (clamped at the rounding floor) has stalled too
                        stalled = gap is None or (best_gap is not None and gap >= (1 - GAP_STALL_FRACTION) * best_gap)
                        if decrease <= floor and stalled:
                            reason, final_gap, gap_done = "precision-floor", gap, True
                            break
                    window_step, window_reg_loss = k, ev.reg_loss
                    if gap is not None:
                        best_gap = gap if best_gap is None else min(best_gap, gap)
                row = None
                if (k % stop.record_every == 0 if record_at is None else record_at(k)) or gap is not None:
                    row = _row(s, gap)
                    if on_record is not None:
                        on_record(problem, s.a, s.W, s.lam, k)
                if gap is not None and not schedule.is_final(_to_float(lam)) \
                        and gap <= schedule.switch_rel_gap * _to_float(lam) ** 2:
                    lam = lam * factor_e
                    ev = problem.evaluate(s.a, s.W, lam=lam)
                    lam_changes = lam_changes + ((k, _to_float(lam)),)
                    window_step, window_reg_loss, best_gap = k, ev.reg_loss, None

                a2, W2 = step_update(train, s.a, s.W, ev.grad_a, ev.grad_W, eta_e)
                try:
                    ev2 = problem.evaluate(a2, W2, lam=lam)
                except objective.NonFiniteResult:  # the trial step overflows the engine: diverged
                    reason = "diverged"
                    break
                if not _all_finite(a2, W2, ev2.reg_loss, ev2.loss) or _to_float(ev2.reg_loss) > diverge_at:
                    reason = "diverged"
                    break
                increase = _to_float(ev2.reg_loss - ev.reg_loss)
                b, b2 = _balance(s.a, s.W), _balance(a2, W2)
                predicted = _predicted_balance(train, s.a, s.W, ev, eta_e, lam)
                residual = _max_relative_residual(b2, predicted, b)
                inc = max(increase, 0.0)
                pend_inc = inc if row is not None else max(s.pending_increase, inc)
                pend_res = residual if row is not None else max(s.pending_residual, residual)
                if row is not None:
                    rows.append(row)
                s = _State(
                    step=k + 1, a=a2, W=W2, lam=lam, ev=ev2, n_rows=len(rows),
                    n_monitor=len(monitor) if monitor is not None else 0, lam_changes=lam_changes,
                    increases=s.increases + (increase > 0), max_increase=max(s.max_increase, inc),
                    max_residual=max(s.max_residual, residual), pending_increase=pend_inc,
                    pending_residual=pend_res, window_step=window_step, window_reg_loss=window_reg_loss,
                    best_gap=best_gap)
                bar.update(1)
                if row is not None and not bar.disable:
                    bar.set_postfix_str(f"L_lambda={row.reg_loss:.4g} lambda={row.lam:.3g}"
                                        + (f" gap={row.gap:.3g}" if row.gap is not None else ""), refresh=False)
                if saving and time.perf_counter() - last_ckpt >= checkpoint_every:
                    save(s, "running")
                    last_ckpt = time.perf_counter()
            if reason in ("max-steps", "time-budget", "grad-tol") and gap_fn is not None and not gap_done:
                final_gap = float(gap_fn(problem, s.a, s.W, s.lam))
                gap_done = True
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        bar.close()

    assert reason is not None
    try:
        save(s, reason)
    except KeyboardInterrupt:
        # A second Ctrl-C during the (atomic) write: the previous checkpoint is intact.
        reason = "interrupted"
    history = rows[:s.n_rows] + [_row(s, final_gap if gap_done else None)]
    with e.context():
        rounding = e.eps * (abs(_to_float(s.ev.reg_loss)) + _to_float(fstar_sq))
    return GDResult(
        a=s.a, W=s.W, lam=s.lam, steps=s.step, stop_reason=reason, history=history,
        increases=s.increases, max_increase=s.max_increase, precision_floor=reason == "precision-floor",
        lam_changes=list(s.lam_changes), elapsed=elapsed(), max_balance_residual=s.max_residual,
        rounding_scale=rounding, train=train)

