"""Gradient descent on a batch of students at once, each start with its own stop.

B starts (a_i, W_i) of the same width, against the problem's teacher, at a
fixed lambda and a fixed step eta, float64 engine.  Each step evaluates the
whole active batch in one call (``checker.core.objective.evaluate_batch``) and
moves it with ``checker.dynamics.gd.step_update``, the one-step update of
``run_gd``.  Every start stops on its own, by the rules of ``run_gd`` for a
fixed schedule and no gap estimate, checked in the same order at each step k:

* ``max-steps``: k = ``stop.max_steps``;
* ``time-budget``: the wall time of the whole batch reached ``stop.time_budget``
  (every start still running stops at once; this rule alone is not per start);
* ``grad-tol``: the norm of the gradient of L_lambda over the trained blocks is
  at most ``stop.grad_tol`` (``gd.grad_norm_sq``);
* ``precision-floor``: at k a multiple of ``stop.gap_every`` (k > 0), L_lambda
  decreased over the last ``gap_every`` steps by at most ``gd.precision_floor``;
* ``diverged``: the trial step is not finite or L_lambda there exceeds
  ``gd.DIVERGENCE_FACTOR`` (L_lambda(start) + ||f*||^2); the start keeps the
  iterate before that step;

and a start whose initial point already overflows float64 stops at step 0 as
``diverged`` (``run_gd`` raises there).  A stopped start is frozen: it leaves
the active batch and is never evaluated again.  Since the batched evaluation is
bit for bit the single one and the update and the rules are ``run_gd``'s, start
i ends bit for bit where ``run_gd`` from (a_i, W_i) with the same ``StopRules``
ends (same iterate, steps, stop reason; tests/test_batch.py).  ``run_gd``'s
monitoring (history rows, balance residuals, checkpoints) is not kept here;
the number of steps where L_lambda went up and the largest increase are.

The precision floor is a rule on L_lambda: near a minimum the decrease per step
is about eta ||g||^2, below the floor's few ulps of ||f*||^2 already at
||g|| ~ 1e-7 for k = 8.  A run to a small gradient tolerance (the landscape
protocol, ||g|| <= 1e-10) therefore sets ``gap_every`` above ``max_steps``,
which switches the floor off (as in ``run_gd``).

Ctrl-C: the starts still running stop with ``interrupted`` at their last
completed step and the partial result is returned (every start's state is
committed as one assignment per step).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from checker.core import objective
from checker.core.errors import CheckerError
from checker.core.problem import Problem
from checker.dynamics import gd
from checker.dynamics.gd import Schedule, StopRules


@dataclass
class BatchResult:
    """Per start i: the final iterate and how the run of that start ended."""

    a: np.ndarray  # (B, m) final output weights
    W: np.ndarray  # (B, m, d) final first layer
    steps: np.ndarray  # (B,) int: steps taken
    stop_reason: list[str]  # per start, one of gd.STOP_REASONS
    loss: np.ndarray  # (B,) L at the final iterate
    reg_loss: np.ndarray  # (B,) L_lambda at the final iterate
    grad_norm: np.ndarray  # (B,) norm of the gradient of L_lambda over the trained blocks there
    increases: np.ndarray  # (B,) int: steps where L_lambda went up
    max_increase: np.ndarray  # (B,) largest one-step increase of L_lambda (0 if none)
    lam: float
    eta: float
    train: str
    elapsed: float
    stop: StopRules = field(default_factory=StopRules)

    def __len__(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (floats as repr strings, so the iterates are exact)."""
        def f(x: float) -> str:
            return repr(float(x))
        return {
            "lambda": f(self.lam), "eta": f(self.eta), "train": self.train, "elapsed": self.elapsed,
            "stop": self.stop.to_dict(),
            "starts": [{
                "a": [f(x) for x in self.a[i]], "W": [[f(x) for x in row] for row in self.W[i]],
                "steps": int(self.steps[i]), "stop_reason": self.stop_reason[i],
                "loss": f(self.loss[i]), "reg_loss": f(self.reg_loss[i]), "grad_norm": f(self.grad_norm[i]),
                "increases": int(self.increases[i]), "max_increase": f(self.max_increase[i]),
            } for i in range(len(self))],
        }


@dataclass(frozen=True)
class _Active:
    """The starts still running at step ``step``, compacted (committed as one value per step)."""

    step: int
    idx: np.ndarray  # positions in the batch
    a: np.ndarray
    W: np.ndarray
    ev: objective.BatchEvaluation  # at (a, W)
    window_reg_loss: np.ndarray  # L_lambda at the start of the precision-floor window
    diverge_at: np.ndarray
    increases: np.ndarray
    max_increase: np.ndarray

    def take(self, keep: np.ndarray) -> "_Active":
        return _Active(self.step, self.idx[keep], self.a[keep], self.W[keep], self.ev.take(keep),
                       self.window_reg_loss[keep], self.diverge_at[keep], self.increases[keep],
                       self.max_increase[keep])


def run_batch(problem: Problem, a0: np.ndarray, W0: np.ndarray, eta: Any, *,
              stop: StopRules = StopRules(), schedule: Schedule = Schedule(), train: str = "both",
              lam: Any = None, progress: bool = False) -> BatchResult:
    """Gradient descent from the B starts (a0[i], W0[i]), each with its own stop (module docstring).

    ``problem``: the teacher, activation and lambda (``lam`` overrides it);
    float64 engine; its own student is not used (the starts are a0, W0).
    ``a0`` (B, m), ``W0`` (B, m, d); ``eta`` a positive step;
    ``stop``: ``gd.StopRules`` (``max_steps``, ``time_budget``, ``grad_tol``,
    ``gap_every`` for the precision floor; ``gap_target`` needs a gap estimate
    and is refused); ``schedule`` must be fixed; ``train`` "both", "first" (W
    only) or "second" (a only).  ``progress``: a tqdm bar of the steps (on a
    terminal only).  Returns a ``BatchResult``.
    """
    e = problem.engine
    if e.name != "float64":
        raise CheckerError(f"run_batch runs in the float64 engine only, not {e.describe()}")
    if not isinstance(stop, StopRules):
        raise CheckerError("stop must be StopRules")
    if not isinstance(schedule, Schedule) or schedule.kind != "fixed":
        raise CheckerError("run_batch runs at a fixed lambda (schedule 'fixed')")
    if stop.gap_target is not None:
        raise CheckerError("run_batch has no gap estimate: a gap target cannot be used")
    if train not in gd.TRAIN_CHOICES:
        raise CheckerError(f"train must be one of {', '.join(gd.TRAIN_CHOICES)}, got {train!r}")
    eta_e = e.scalar(eta)
    if not eta_e > 0:
        raise CheckerError(f"eta must be a finite positive number, got {eta!r}")
    lam_e = e.scalar(problem.lam if lam is None else lam)
    a0 = np.array(a0, dtype=float)
    W0 = np.array(W0, dtype=float)
    d = problem.W_star.shape[1]
    if a0.ndim != 2 or W0.ndim != 3 or W0.shape[:2] != a0.shape or W0.shape[2] != d or a0.shape[1] < 1:
        raise CheckerError(f"run_batch: expected a0 (B, m) and W0 (B, m, {d}) with m >= 1, "
                           f"got {a0.shape} and {W0.shape}")
    Bn = len(a0)

    def evaluate(a: np.ndarray, W: np.ndarray) -> objective.BatchEvaluation:
        return objective.evaluate_batch(e, problem.activation, a, W, problem.a_star, problem.W_star, lam_e)

    with e.context():
        fstar_sq = float(gd._teacher_energy(problem))
        ev0 = evaluate(a0, W0)
    # Outputs: written for a start when it stops (and for the running ones at the end).
    out_a, out_W = a0.copy(), W0.copy()
    steps = np.zeros(Bn, dtype=np.int64)
    reasons = [""] * Bn
    loss, reg_loss = np.full(Bn, math.nan), np.full(Bn, math.nan)
    gnorm = np.full(Bn, math.nan)
    increases, max_increase = np.zeros(Bn, dtype=np.int64), np.zeros(Bn)

    def finish(s: _Active, rows: np.ndarray, k: int, reason: str) -> None:
        """Write the starts s.*[rows] as stopped at step k for ``reason``."""
        if not len(rows):
            return
        i = s.idx[rows]
        ev = s.ev
        out_a[i], out_W[i] = s.a[rows], s.W[rows]
        steps[i] = k
        for j in i:
            reasons[j] = reason
        loss[i], reg_loss[i] = ev.loss[rows], ev.reg_loss[rows]
        gnorm[i] = np.sqrt(gd.grad_norm_sq(train, ev.grad_a[rows], ev.grad_W[rows]))
        increases[i], max_increase[i] = s.increases[rows], s.max_increase[rows]

    ok = ev0.finite
    for j in np.flatnonzero(~ok):
        reasons[j] = "diverged"  # run_gd refuses such a start (NonFiniteResult at its first evaluation)
    keep = np.flatnonzero(ok)
    with np.errstate(all="ignore"):
        s = _Active(step=0, idx=keep, a=a0[keep], W=W0[keep], ev=ev0.take(keep),
                    window_reg_loss=ev0.reg_loss[keep],
                    diverge_at=gd.DIVERGENCE_FACTOR * (np.abs(ev0.reg_loss[keep]) + fstar_sq),
                    increases=np.zeros(len(keep), dtype=np.int64), max_increase=np.zeros(len(keep)))
    t0 = time.perf_counter()
    bar = _progress_bar(stop, progress)
    try:
        with e.context(), np.errstate(all="ignore"):
            while len(s.idx):
                k = s.step
                if k >= stop.max_steps:
                    finish(s, np.arange(len(s.idx)), k, "max-steps")
                    s = s.take(np.zeros(0, dtype=np.intp))
                    break
                if stop.time_budget is not None and time.perf_counter() - t0 >= stop.time_budget:
                    finish(s, np.arange(len(s.idx)), k, "time-budget")
                    s = s.take(np.zeros(0, dtype=np.intp))
                    break
                done = np.zeros(len(s.idx), dtype=bool)
                if stop.grad_tol is not None:
                    g = np.sqrt(gd.grad_norm_sq(train, s.ev.grad_a, s.ev.grad_W))
                    hit = g <= stop.grad_tol
                    finish(s, np.flatnonzero(hit), k, "grad-tol")
                    done |= hit
                window = s.window_reg_loss
                if k % stop.gap_every == 0:
                    if k > 0:  # run_gd: k > window_step, the window started gap_every steps ago
                        decrease = s.window_reg_loss - s.ev.reg_loss
                        scale = np.abs(s.ev.reg_loss) + fstar_sq
                        hit = ~done & (decrease <= gd.precision_floor(stop.gap_every, e.eps, scale))
                        finish(s, np.flatnonzero(hit), k, "precision-floor")
                        done |= hit
                    window = s.ev.reg_loss
                if done.any():
                    keep = np.flatnonzero(~done)
                    s = _Active(k, s.idx, s.a, s.W, s.ev, window, s.diverge_at, s.increases,
                                s.max_increase).take(keep)
                    window = s.window_reg_loss
                if not len(s.idx):
                    break
                a2, W2 = gd.step_update(train, s.a, s.W, s.ev.grad_a, s.ev.grad_W, eta_e)
                ev2 = evaluate(a2, W2)
                # run_gd: NonFiniteResult, then _all_finite(a2, W2, L_lambda, L) and the divergence bound
                total = ((a2.sum(axis=1) + W2.sum(axis=(1, 2))) + ev2.reg_loss) + ev2.loss
                bad = ~ev2.finite | ~np.isfinite(total) | (ev2.reg_loss > s.diverge_at)
                increase = ev2.reg_loss - s.ev.reg_loss
                inc = np.maximum(increase, 0.0)
                new = _Active(k + 1, s.idx, a2, W2, ev2, window, s.diverge_at, s.increases + (increase > 0),
                              np.maximum(s.max_increase, inc))
                if bad.any():
                    finish(s, np.flatnonzero(bad), k, "diverged")
                    new = new.take(np.flatnonzero(~bad))
                s = new
                bar.update(1)
                if not bar.disable and k % 100 == 0:
                    bar.set_postfix_str(f"running={len(s.idx)}", refresh=False)
    except KeyboardInterrupt:
        finish(s, np.arange(len(s.idx)), s.step, "interrupted")
        s = s.take(np.zeros(0, dtype=np.intp))
    finally:
        bar.close()
    return BatchResult(a=out_a, W=out_W, steps=steps, stop_reason=reasons, loss=loss, reg_loss=reg_loss,
                       grad_norm=gnorm, increases=increases, max_increase=max_increase, lam=lam_e, eta=eta_e,
                       train=train, elapsed=time.perf_counter() - t0, stop=stop)


def _progress_bar(stop: StopRules, enabled: bool) -> Any:
    from tqdm import tqdm

    show = enabled and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(total=stop.max_steps, file=sys.stderr, disable=not show, desc="GD batch", unit="step",
                dynamic_ncols=True, leave=True)
