"""The hybrid gradient-descent run: float64 until its precision floor, then high precision.

A high-precision run spends most of its steps where float64 would have done as
well: far above float64's rounding level.  ``run_hybrid`` runs the same
gradient descent (same instance, step, schedule and stop rules) in float64
until ``checker.dynamics.gd.run_gd`` detects the float64 precision floor, then reads the
float64 iterate exactly into the high-precision engine (a double is an exact
binary number) and continues there from that step: the same trajectory up to
the rounding of the float64 steps, with one step counter, one history, one
list of lambda changes and one monitor list.

The switch goes through the checkpoint format of ``checker.gd``: the state at
the switch is written as a high-precision checkpoint of the original problem
and resumed, so a checkpoint written after the switch is an ordinary checkpoint
of the high-precision run, and ``resume`` accepts either kind (a float64 one
written before the switch continues the float64 phase).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from checker.dynamics import gd
from checker.core.engines import Float64Engine
from checker.core.errors import CheckerError
from checker.core.io import read_json, seal, write_json_atomic
from checker.core.problem import Problem

#: Smallest gap float64 resolves: 100 ulps of an O(1) objective.
FLOAT64_GAP_RESOLUTION = 100 * Float64Engine.eps


def float64_twin(problem: Problem) -> Problem:
    """The same problem in float64 (every number rounded to the nearest double)."""
    e = Float64Engine()

    def f(x: Any) -> np.ndarray:
        return e.array(np.vectorize(float, otypes=[float])(np.asarray(x, dtype=object)))

    return Problem(engine=e, activation=problem.activation, a=f(problem.a), W=f(problem.W),
                   a_star=f(problem.a_star), W_star=f(problem.W_star), lam=float(problem.lam),
                   eta=None if problem.eta is None else float(problem.eta))


def validate_checkpoint(data: Any, problem: Problem, source: str) -> None:
    """``checker.dynamics.gd.validate_checkpoint`` for a hybrid run of ``problem``: a float64 checkpoint
    (written before the switch) is checked against the float64 twin, any other against ``problem``."""
    engine = data.get("engine") if isinstance(data, dict) else None
    if isinstance(engine, dict) and engine.get("name") == "float64" and problem.engine.name != "float64":
        gd.validate_checkpoint(data, float64_twin(problem), source)
    else:
        gd.validate_checkpoint(data, problem, source)


def load_checkpoint(path: str | Path, problem: Problem) -> dict:
    """A checkpoint of a hybrid run: float64 (before the switch) or of ``problem``'s engine (after)."""
    data = read_json(path, "checkpoint")
    validate_checkpoint(data, problem, f"checkpoint {path}")
    return data


def _switch_state(problem: Problem, eta: Any, schedule: gd.Schedule, stop: gd.StopRules,
                  first: gd.GDResult, monitor: list[Any] | None, instance_dict: dict | None) -> dict:
    """The float64 end state as a high-precision checkpoint of ``problem`` (not written to disk)."""
    e = problem.engine
    with e.context():
        a = e.array([float(x) for x in first.a])
        W = e.array([[float(x) for x in row] for row in first.W])
        # lambda after k schedule changes, computed in the high-precision engine
        lam = problem.lam
        factor = e.scalar(repr(schedule.factor))
        for _ in first.lam_changes:
            lam = lam * factor
        ev = problem.evaluate(a, W, lam=lam)
        eta_e = e.scalar(eta)
    rows = first.history[:-1]  # the last row is the stopping step: the continuation records it
    n_monitor = len(monitor) if monitor is not None else 0
    state = gd._State(
        step=first.steps, a=a, W=W, lam=lam, ev=ev, n_rows=len(rows), n_monitor=n_monitor,
        lam_changes=tuple((int(k), float(v)) for k, v in first.lam_changes), increases=0,
        max_increase=0.0, max_residual=0.0, pending_increase=0.0,
        pending_residual=0.0, window_step=first.steps, window_reg_loss=ev.reg_loss, best_gap=None)
    return gd._checkpoint_dict(problem, eta_e, schedule, stop, state, rows, monitor, instance_dict,
                               first.elapsed, "running")


def run_hybrid(problem: Problem, eta: Any, *, schedule: gd.Schedule = gd.Schedule(),
               stop: gd.StopRules = gd.StopRules(),
               gap_fn: Callable[[Problem, np.ndarray, np.ndarray, Any], float] | None = None,
               checkpoint: str | Path | None = None, checkpoint_every: float = 30.0,
               resume: dict | None = None, progress: bool = True,
               monitor: list[Any] | None = None, instance_dict: dict | None = None,
               on_checkpoint: Callable[[dict], None] | None = None) -> gd.GDResult:
    """``checker.dynamics.gd.run_gd`` with float64 steps until the float64 precision floor.

    Same arguments and result as ``run_gd``; ``problem`` is the high-precision
    problem.  ``GDResult.lam_changes`` and the history carry one step counter.
    For a float64 ``problem`` this is ``run_gd`` itself.
    """
    if problem.engine.name == "float64":
        return gd.run_gd(problem, eta, schedule=schedule, stop=stop, gap_fn=gap_fn, checkpoint=checkpoint,
                         checkpoint_every=checkpoint_every, resume=resume, progress=progress,
                         monitor=monitor, instance_dict=instance_dict, on_checkpoint=on_checkpoint)
    if eta is None:
        raise CheckerError("no step size: give eta in the instance (\"eta\": \"0.05\") or on the command line")
    common = dict(schedule=schedule, gap_fn=gap_fn, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                  progress=progress, monitor=monitor, instance_dict=instance_dict, on_checkpoint=on_checkpoint)
    def carrying(record: dict[str, Any] | None) -> dict[str, Any]:
        """The high-precision phase's arguments, its checkpoints carrying the float64 phase's record
        (so that a run resumed after the switch reports it as the uninterrupted run does)."""
        if record is None:
            return common
        sink = on_checkpoint

        def save(data: dict) -> None:
            data = seal({**data, "float64_phase": record})
            if sink is not None:
                sink(data)
            elif checkpoint is not None:
                write_json_atomic(checkpoint, data)

        return {**common, "on_checkpoint": save if (sink is not None or checkpoint is not None) else None}

    engine_name = resume.get("engine", {}).get("name") if isinstance(resume, dict) else None
    if resume is not None and engine_name != "float64":  # written after the switch
        record = resume.get("float64_phase")
        res = gd.run_gd(problem, eta, stop=stop, resume=resume, **carrying(record))
        return dataclasses.replace(res, float64_phase=record) if record is not None else res
    fast = float64_twin(problem)
    eta_f = float(eta)
    if not (eta_f > 0 and math.isfinite(eta_f)):
        raise CheckerError(f"eta must be a finite positive number, got {eta!r}")
    # A gap target below float64's resolution (the gap is a difference of O(L_lambda)
    # numbers: ~100 ulps, as checker.theorem1 states) is for the high-precision phase only.
    fast_stop = stop
    if stop.gap_target is not None and stop.gap_target < FLOAT64_GAP_RESOLUTION:
        fast_stop = dataclasses.replace(stop, gap_target=None)
    first = gd.run_gd(fast, eta_f, stop=fast_stop, resume=resume, **common)
    if first.stop_reason != "precision-floor":
        # done in float64 (target, budget, interrupt or divergence): the end point in
        # the high-precision engine's numbers (exactly: a double is a binary number)
        e = problem.engine
        with e.context():
            a = e.array([float(x) for x in first.a])
            W = e.array([[float(x) for x in row] for row in first.W])
            lam = e.scalar(float(first.lam))
        return dataclasses.replace(first, a=a, W=W, lam=lam)
    record = _phase_record(first)
    switch = seal({**_switch_state(problem, eta, schedule, stop, first, monitor, instance_dict),
                   "float64_phase": record})
    second = gd.run_gd(problem, eta, stop=stop, resume=switch, **carrying(record))
    return dataclasses.replace(second, float64_phase=record)


def _phase_record(first: gd.GDResult) -> dict[str, Any]:
    """What the float64 steps did: their count, increases of L_lambda and rounding level.

    The continuation counts increases and balance residuals of its own steps only,
    against its own (far smaller) rounding level; the float64 steps keep theirs here.
    """
    return {"steps": first.steps, "increases": first.increases, "max_increase": first.max_increase,
            "max_balance_residual": first.max_balance_residual, "rounding_scale": first.rounding_scale}
