"""The checkpoint of a gradient-descent run: its format (``docs/checkpoints.md``), how it is
written, validated against the problem and read back into the run's state."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from checker.core.engines import Engine
from checker.core.errors import CheckerError
from checker.core.io import check_sealed_format, engine_from_json, engine_to_json, read_json, seal
from checker.core.problem import Problem
from checker.dynamics.monitor import Record, _all_finite, _float_from_json, _float_to_json, _State
from checker.dynamics.schedule import TRAIN_CHOICES, Schedule, StopRules


CHECKPOINT_FORMAT = "zhou-ge-checker/gd-checkpoint"


#: 2: every checkpoint carries a SHA-256 digest of its other top-level keys (``checker.core.io.seal``).
CHECKPOINT_VERSION = 2


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
