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

This module holds the descent loop (``run_gd``); the schedules and stop rules are in
``checker.dynamics.schedule``, the history rows, the result and the monitored balance
identities in ``checker.dynamics.monitor``, the checkpoints in ``checker.dynamics.checkpoint``
(all re-exported here).

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

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from checker.core import objective
from checker.core.errors import CheckerError
from checker.core.io import engine_from_json, engine_to_json, write_json_atomic
from checker.core.problem import Problem
# The pieces of a run, re-exported here: ``checker.dynamics.gd`` is where a caller finds them.
from checker.dynamics.checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, _checkpoint_dict,  # noqa: F401
                                         _state_from_checkpoint, load_checkpoint, validate_checkpoint)
from checker.dynamics.monitor import (BALANCE_IDENTITY, GDResult, Record, _all_finite, _balance,  # noqa: F401
                                      _max_relative_residual, _predicted_balance, _row, _State, _teacher_energy,
                                      _to_float)
from checker.dynamics.schedule import (DIVERGENCE_FACTOR, FLOOR_ULPS, GAP_STALL_FRACTION, STOP_REASONS,  # noqa: F401
                                       TRAIN_CHOICES, Schedule, StopRules)


# --------------------------------------------------------------------------- the run
def _progress_bar(stop: StopRules, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    show = enabled and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(total=stop.max_steps, initial=initial, file=sys.stderr, disable=not show,
                desc="GD", unit="step", dynamic_ncols=True, leave=True)

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


class IterateNumbers:
    """The numbers a run keeps its iterate in, and the conversions at its edges.

    The engine's own numbers (float64, mpf: every conversion the identity), or,
    for the mp engine with ``iterate="arb"``, its working numbers: Arb midpoints,
    the radius dropped after every update (``round``), so the iterate is a
    point at the working precision as an mpf iterate is.  The state of a run
    (iterate, gradients, L_lambda, lambda) stays in these numbers across steps;
    ``back`` converts it (exactly) for everything outside the loop: results,
    history, checkpoints, the gap estimate and ``on_record``.
    """

    def __init__(self, problem: Problem) -> None:
        e = problem.engine
        self.problem = problem
        self.work = getattr(e, "iterate", "mpf") == "arb"
        self._e = e

    def to(self, x: Any) -> Any:
        return self._e.to_work(x) if self.work else x

    def back(self, x: Any) -> Any:
        return self._e.from_work(x) if self.work else x

    def round(self, x: np.ndarray) -> np.ndarray:
        return self._e.work.point(x) if self.work else x

    def evaluate(self, a: np.ndarray, W: np.ndarray, lam: Any) -> objective.Evaluation:
        p = self.problem
        return p.evaluate_work(a, W, lam=lam) if self.work else p.evaluate(a, W, lam=lam)

    def _state(self, s: _State, f: Callable[[Any], Any]) -> _State:
        ev = objective.Evaluation(*(f(getattr(s.ev, x.name)) for x in dataclasses.fields(objective.Evaluation)))
        return dataclasses.replace(s, a=f(s.a), W=f(s.W), lam=f(s.lam), ev=ev, window_reg_loss=f(s.window_reg_loss))

    def state_to(self, s: _State) -> _State:
        return self._state(s, self.to) if self.work else s

    def state_back(self, s: _State) -> _State:
        return self._state(s, self.back) if self.work else s


def precision_floor(n: int, eps: float, scale: Any) -> Any:
    """The precision-floor threshold of ``run_gd`` for a window of n steps: 4 (n + 2) eps S.

    2 end-point evaluations + n iterate updates, each a few ulps of S = |L_lambda| + ||f*||^2
    (``scale``: a number, or an array of them for a batch).
    """
    return FLOOR_ULPS * (n + 2) * eps * scale



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
        nums = IterateNumbers(problem)
        eta_it, factor_it = nums.to(eta_e), nums.to(factor_e)
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
        with e.context():
            s = nums.state_to(_state_from_checkpoint(resume, problem, rows, monitor))
        elapsed_before = float(resume["elapsed"])
    else:
        with e.context():
            a0, W0, lam0 = nums.to(problem.a), nums.to(problem.W), nums.to(problem.lam)
            ev0 = nums.evaluate(a0, W0, lam0)
        s = _State(step=0, a=a0, W=W0, lam=lam0, ev=ev0, n_rows=0,
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
        with e.context():
            back = nums.state_back(state)
        data = _checkpoint_dict(problem, eta_e, schedule, stop, back, rows, monitor, instance_dict,
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
                        gap = float(gap_fn(problem, nums.back(s.a), nums.back(s.W), nums.back(lam)))
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
                        on_record(problem, nums.back(s.a), nums.back(s.W), nums.back(s.lam), k)
                if gap is not None and not schedule.is_final(_to_float(lam)) \
                        and gap <= schedule.switch_rel_gap * _to_float(lam) ** 2:
                    lam = lam * factor_it
                    ev = nums.evaluate(s.a, s.W, lam)
                    lam_changes = lam_changes + ((k, _to_float(lam)),)
                    window_step, window_reg_loss, best_gap = k, ev.reg_loss, None

                a2, W2 = step_update(train, s.a, s.W, ev.grad_a, ev.grad_W, eta_it)
                a2, W2 = nums.round(a2), nums.round(W2)
                try:
                    ev2 = nums.evaluate(a2, W2, lam)
                except objective.NonFiniteResult:  # the trial step overflows the engine: diverged
                    reason = "diverged"
                    break
                if not _all_finite(a2, W2, ev2.reg_loss, ev2.loss) or _to_float(ev2.reg_loss) > diverge_at:
                    reason = "diverged"
                    break
                increase = _to_float(ev2.reg_loss - ev.reg_loss)
                b, b2 = _balance(s.a, s.W), _balance(a2, W2)
                predicted = _predicted_balance(train, s.a, s.W, ev, eta_it, lam)
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
                final_gap = float(gap_fn(problem, nums.back(s.a), nums.back(s.W), nums.back(s.lam)))
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
    with e.context():
        s = nums.state_back(s)
        rounding = e.eps * (abs(_to_float(s.ev.reg_loss)) + _to_float(fstar_sq))
    history = rows[:s.n_rows] + [_row(s, final_gap if gap_done else None)]
    return GDResult(
        a=s.a, W=s.W, lam=s.lam, steps=s.step, stop_reason=reason, history=history,
        increases=s.increases, max_increase=s.max_increase, precision_floor=reason == "precision-floor",
        lam_changes=list(s.lam_changes), elapsed=elapsed(), max_balance_residual=s.max_residual,
        rounding_scale=rounding, train=train)
