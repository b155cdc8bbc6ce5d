"""What a gradient-descent run records: the history rows (``Record``), the result (``GDResult``),
the state committed after each step and the balance identities it monitors (the residual of
the exact one-step identity; ``checker.dynamics.gd``, the module docstring)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

from checker.core import objective
from checker.core.engines import Engine
from checker.core.errors import CheckerError
from checker.core.io import engine_to_json
from checker.core.problem import Problem


#: The balance identity whose residual a run monitors, per trained block (see the module docstring).
BALANCE_IDENTITY = {
    "both": "two-layer identity b' = (1 - eta lambda)^2 b + eta^2 (g_a^2 - ||g_w||^2)",
    "first": "not applicable (first layer only); monitored instead: the one-block identity "
             "b' = a^2 - c^2 ||w||^2 + 2 eta c a g_a - eta^2 ||g_w||^2, c = 1 - eta lambda",
    "second": "not applicable (second layer only); monitored instead: the one-block identity "
              "b' = c^2 a^2 - ||w||^2 - 2 eta c <w, g_w> + eta^2 g_a^2, c = 1 - eta lambda",
}


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
