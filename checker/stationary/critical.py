"""Stationary points of L_lambda over the trained blocks: gradient descent, then safeguarded Newton.

``find_stationary(problem, train=..., lam=...)`` starts at the problem's student and

1. runs gradient descent (``checker.dynamics.gd.run_gd``, the one GD loop of the
   checker) on the trained blocks until the gradient norm in those blocks is below
   ``newton_entry`` (checked every ``check_every`` steps), the engine's precision floor,
   or the budget;
2. runs Newton's method on the gradient g(theta) = 0 over the trained block with
   Levenberg-Marquardt damping: the step solves (H^2 + mu I) dx = -H g (H the exact
   Hessian of ``checker.core.hessian``), i.e. a damped Gauss-Newton step on ||g||^2,
   accepted when ||g|| decreases (then mu / 10, else mu * 10).  With mu -> 0 it is
   Newton's step -H^{-1} g, so it converges quadratically to minima and saddles alike;
3. if Newton stalls above the tolerance, descends further (the target divided by
   100) and tries again, within the step and time budgets.

Convergence: ||g|| <= ``grad_tol`` (default ``GRAD_TOL_ULPS`` n eps (1 + ||H|| ||theta||),
the rounding level of the gradient; ``eps`` the engine's).  Any lambda >= 0 (0 included).
With ``train="first"`` and lambda = 0 the parameters are W alone: the fixed-output
setting of Safran and Shamir (2018).

Classification from the Hessian's eigenvalues (ascending) at the end point, with the
rounding level ``level = DEGENERATE_ULPS n eps ||H||_2``: ``degenerate`` when the
smallest |eigenvalue| is at most ``level``; else ``minimum`` when all are positive,
``saddle`` when ``index`` (the number of eigenvalues below -level) is positive (a
maximum is a saddle of index n).  These are float (or mp) estimates;
``checker.rigorous.critical.certify`` proves them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import mpmath
import numpy as np

from checker.core import hessian as hs
from checker.core.engines import Engine, MpEngine
from checker.core.errors import CheckerError
from checker.core.io import engine_to_json
from checker.core.problem import Problem

KINDS = ("minimum", "saddle", "degenerate")
#: The gradient counts as zero at this many ulps of n (1 + ||H|| ||theta||).
GRAD_TOL_ULPS = 100
#: An eigenvalue counts as zero at this many ulps of n ||H||_2.
DEGENERATE_ULPS = 100
#: Default gradient norm at which Newton is tried after gradient descent.
NEWTON_ENTRY = 1e-3
#: A neuron this much smaller than the largest (in norm) is reported as next to a zero neuron.
NEAR_ZERO_NEURON = 1e-6
#: Newton iterations per attempt, and attempts (GD in between).
NEWTON_STEPS = 60
NEWTON_ATTEMPTS = 4


@dataclass
class StationaryPoint:
    """The end point of ``find_stationary`` and what the Hessian says about it (engine numbers)."""

    converged: bool
    a: np.ndarray
    W: np.ndarray
    train: str
    lam: Any
    grad_norm: Any
    grad_tol: Any
    loss: Any
    reg_loss: Any
    eigenvalues: np.ndarray  # of the Hessian of L_lambda in the trained block, ascending
    index: int  # eigenvalues below -rounding_level
    kind: str
    rounding_level: float
    gd_steps: int = 0
    newton_steps: int = 0
    stop_reason: str = ""
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def min_eigenvalue(self) -> Any:
        return self.eigenvalues[0] if len(self.eigenvalues) else None

    def to_dict(self, engine: Engine) -> dict[str, Any]:
        """JSON form: numbers as exact decimal strings of the engine."""
        with engine.context():
            def s(x: Any) -> Any:
                return engine_to_json(engine, np.asarray(x, dtype=object))
            return {
                "converged": self.converged,
                "stationary": {"a": s(self.a), "W": s(self.W)},
                "train": self.train,
                "lambda": s(self.lam),
                "grad_norm": s(self.grad_norm),
                "grad_tol": s(self.grad_tol),
                "loss": s(self.loss),
                "reg_loss": s(self.reg_loss),
                "hessian": {"eigenvalues": s(self.eigenvalues), "index": self.index, "kind": self.kind,
                            "rounding_level": self.rounding_level},
                "gd_steps": self.gd_steps,
                "newton_steps": self.newton_steps,
                "stop_reason": self.stop_reason,
                "elapsed": self.elapsed,
                "notes": list(self.notes),
            }


# --------------------------------------------------------------------------- linear algebra per engine
def _norm(e: Engine, x: np.ndarray) -> Any:
    return e.sqrt((x * x).sum()) if len(x) else e.scalar(0)


def _solve(e: Engine, M: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """M x = b (float64: numpy; mp: Arb midpoints at the working precision); None if singular."""
    if not isinstance(e, MpEngine):
        try:
            x = np.linalg.solve(M, b)
        except np.linalg.LinAlgError:
            return None
        return x if np.all(np.isfinite(x)) else None
    from flint import arb_mat

    w = e.work
    try:
        X = arb_mat(w.to_work(M).tolist()).solve(arb_mat([[v] for v in w.to_work(b)]), nonstop=True)
    except (ZeroDivisionError, ValueError):
        return None
    out = np.array([X[i, 0] for i in range(len(b))], dtype=object)
    if not all(v.mid().is_finite() for v in out):
        return None
    return np.asarray(w.from_work(out), dtype=object)


def eigenvalues(e: Engine, H: np.ndarray) -> np.ndarray:
    """Eigenvalues of the symmetric H, ascending (float64: LAPACK; mp: mpmath.eigsy at the engine's digits)."""
    if not isinstance(e, MpEngine):
        return np.linalg.eigvalsh(H)
    with e.context():
        ev = mpmath.eigsy(mpmath.matrix(H.tolist()), eigvals_only=True)
        return np.array(sorted(ev[i] for i in range(len(H))), dtype=object)


def rounding_level(e: Engine, eig: np.ndarray) -> float:
    """DEGENERATE_ULPS n eps ||H||_2: eigenvalues within it of 0 are at the rounding level."""
    n = len(eig)
    top = max((abs(float(x)) for x in eig), default=0.0)
    return DEGENERATE_ULPS * max(n, 1) * e.eps * max(top, 1e-300)


def classify(e: Engine, eig: np.ndarray) -> tuple[str, int, float]:
    """(kind, index, level) of an ascending spectrum (see the module docstring)."""
    level = rounding_level(e, eig)
    vals = [float(x) for x in eig]
    index = sum(v < -level for v in vals)
    if not vals or min(abs(v) for v in vals) <= level:
        return "degenerate", index, level
    return ("saddle" if index > 0 else "minimum"), index, level


# --------------------------------------------------------------------------- the search
def _gradient(problem: Problem, a: np.ndarray, W: np.ndarray, lam: Any, train: str) -> tuple[Any, np.ndarray]:
    ev = problem.evaluate(a, W, lam=lam)
    return ev, hs.gradient_vector(ev, train)


def default_grad_tol(e: Engine, H: np.ndarray, x: np.ndarray) -> float:
    """GRAD_TOL_ULPS n eps (1 + ||H||_max ||theta||_max): the rounding level of the gradient."""
    n = len(x)
    hmax = max((abs(float(v)) for v in H.ravel()), default=0.0)
    xmax = max((abs(float(v)) for v in x), default=0.0)
    return GRAD_TOL_ULPS * max(n, 1) * e.eps * (1 + hmax * xmax)


def newton(problem: Problem, a: np.ndarray, W: np.ndarray, *, lam: Any, train: str,
           grad_tol: float | None = None, max_steps: int = NEWTON_STEPS,
           deadline: float | None = None) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Levenberg-Marquardt-damped Newton on grad L_lambda = 0 over the trained block.

    Returns (a, W, steps, converged).  A step solves (H^2 + mu I) dx = -H g and is kept
    when ||g|| decreases; mu starts at 0 (a plain Newton step) and is raised tenfold
    (from 1e-12 ||H||^2) on each rejection, lowered tenfold on each acceptance.
    """
    e = problem.engine
    steps = 0
    with e.context():
        ev, g = _gradient(problem, a, W, lam, train)
        gn = _norm(e, g)
        mu = 0.0
        for steps in range(1, max_steps + 1):
            H = hs.hessian(problem, a, W, lam=lam, train=train)
            tol = grad_tol if grad_tol is not None else default_grad_tol(e, H, hs.flatten(a, W, train))
            if float(gn) <= tol:
                return a, W, steps - 1, True
            if deadline is not None and time.perf_counter() > deadline:
                break
            hscale = max(float(abs(v)) for v in H.ravel()) or 1.0
            HH = H.dot(H)
            rhs = -H.dot(g)
            accepted = False
            for _ in range(25):
                M = HH.copy()
                if mu > 0:
                    for i in range(len(M)):
                        M[i, i] = M[i, i] + e.scalar(mu)
                dx = _solve(e, M, rhs) if mu > 0 else _solve(e, H, -g)
                if dx is not None:
                    x2 = hs.flatten(a, W, train) + dx
                    a2, W2 = hs.unflatten(x2, a, W, train)
                    ev2, g2 = _gradient(problem, a2, W2, lam, train)
                    gn2 = _norm(e, g2)
                    if float(gn2) < float(gn):
                        a, W, g, gn, accepted = a2, W2, g2, gn2, True
                        mu = mu / 10 if mu > 1e-12 * hscale ** 2 else 0.0
                        break
                mu = max(mu * 10, 1e-12 * hscale ** 2)
                if mu > 1e6 * hscale ** 2:
                    break
            if not accepted:
                break
        H = hs.hessian(problem, a, W, lam=lam, train=train)
        tol = grad_tol if grad_tol is not None else default_grad_tol(e, H, hs.flatten(a, W, train))
        return a, W, steps, float(gn) <= tol


def float64_problem(problem: Problem) -> Problem:
    """The problem with its arrays rounded to float64 (for a float64 search before an mp polish)."""
    from checker.core.engines import Float64Engine

    def f(x: Any) -> Any:
        return np.array(np.asarray(x, dtype=object).astype(float)) if np.ndim(x) else float(x)

    return Problem(engine=Float64Engine(), activation=problem.activation, a=f(problem.a), W=f(problem.W),
                   a_star=f(problem.a_star), W_star=f(problem.W_star), lam=f(problem.lam),
                   eta=None if problem.eta is None else f(problem.eta))


def find_stationary(problem: Problem, *, train: str = "both", lam: Any = None, eta: Any = None,
                    max_steps: int = 100_000, time_budget: float | None = None,
                    newton_entry: float = NEWTON_ENTRY, grad_tol: float | None = None,
                    check_every: int = 50, progress: bool = False, float64_first: bool = True,
                    say: Callable[[str], None] = lambda text: None) -> StationaryPoint:
    """A stationary point of L_lambda over the trained blocks, from the problem's student.

    ``lam``: lambda >= 0 (default: the problem's); ``eta``: the GD step (default: the
    problem's, else 1 / ||H(start)||_2, a descent step for the local curvature).
    ``max_steps`` bounds the GD steps; ``time_budget`` (seconds) the whole search.
    In the mp engine the search first runs in float64 (``float64_first``) and Newton then
    polishes the trained block at the engine's digits (the fixed block keeps its mp numbers).
    Ctrl-C returns the point reached with ``stop_reason = "interrupted"``.
    A zero student neuron raises ``hessian.NotTwiceDifferentiable`` (unless train="second").
    """
    from checker.dynamics.gd import StopRules, run_gd

    hs.check_train(train)
    e = problem.engine
    t0 = time.perf_counter()
    if isinstance(e, MpEngine) and float64_first:
        lam64 = None if lam is None else float(lam)
        eta64 = None if eta is None else float(eta)
        first = find_stationary(float64_problem(problem), train=train, lam=lam64, eta=eta64,
                                max_steps=max_steps, time_budget=time_budget, newton_entry=newton_entry,
                                check_every=check_every, progress=progress, float64_first=False, say=say)
        with e.context():
            lam_e = problem.lam if lam is None else e.scalar(lam)
            x = e.array(hs.flatten(first.a, first.W, train).tolist())
            a, W = hs.unflatten(x, problem.a, problem.W, train)
            work = dataclasses.replace(problem, lam=lam_e)
        if first.stop_reason == "interrupted":
            return describe(work, a, W, train=train, lam=lam_e, converged=False, grad_tol=grad_tol,
                            gd_steps=first.gd_steps, newton_steps=first.newton_steps, stop_reason="interrupted",
                            elapsed=time.perf_counter() - t0, notes=first.notes)
        say(f"Newton polish at {e.dps} digits ...")
        deadline = None if time_budget is None else t0 + time_budget
        try:
            a, W, k, converged = newton(work, a, W, lam=lam_e, train=train, grad_tol=grad_tol, deadline=deadline)
            reason = "converged" if converged else ("time-budget" if deadline is not None
                                                    and time.perf_counter() > deadline else "stalled")
        except KeyboardInterrupt:
            k, converged, reason = 0, False, "interrupted"
        return describe(work, a, W, train=train, lam=lam_e, converged=converged, grad_tol=grad_tol,
                        gd_steps=first.gd_steps, newton_steps=first.newton_steps + k, stop_reason=reason,
                        elapsed=time.perf_counter() - t0,
                        notes=first.notes + ["float64 search, then Newton at the engine's digits"])
    deadline = None if time_budget is None else t0 + time_budget
    with e.context():
        lam_e = problem.lam if lam is None else (e.scalar(lam) if not isinstance(lam, (np.ndarray,)) else lam)
        if float(lam_e) < 0:
            raise CheckerError(f"lambda must be >= 0, got {lam}")
        work = dataclasses.replace(problem, lam=lam_e)
        a, W = problem.a, problem.W
        H0 = hs.hessian(work, a, W, train=train)
        if eta is None:
            eta = problem.eta
        if eta is None:
            top = float(max(abs(float(x)) for x in eigenvalues(e, H0)))
            eta = e.scalar(repr(1.0 / max(top, 1e-12)))
    notes: list[str] = []
    gd_steps = newton_steps = 0
    reason = ""
    target = newton_entry
    converged = False
    try:
        for attempt in range(NEWTON_ATTEMPTS + 1):
            remaining = max_steps - gd_steps
            with e.context():
                ev, g = _gradient(work, a, W, lam_e, train)
                gn = float(_norm(e, g))
            if gn > target and remaining > 0:
                budget = None if deadline is None else max(0.0, deadline - time.perf_counter())
                start = dataclasses.replace(work, a=a, W=W)

                def gap_fn(p: Problem, aa: np.ndarray, WW: np.ndarray, lm: Any) -> float:
                    return float(_norm(p.engine, hs.gradient_vector(p.evaluate(aa, WW, lam=lm), train)))

                say(f"gradient descent (eta = {float(eta):.4g}) to ||grad|| <= {target:.3g} ...")
                res = run_gd(start, eta, stop=StopRules(max_steps=remaining, time_budget=budget,
                                                        gap_target=target, gap_every=check_every,
                                                        record_every=10 ** 9),
                             gap_fn=gap_fn, progress=progress, train=train)
                a, W = res.a, res.W
                gd_steps += res.steps
                if res.stop_reason == "interrupted":
                    reason = "interrupted"
                    break
                if res.stop_reason == "diverged":
                    reason = "diverged"
                    notes.append("gradient descent diverged: lower the step size eta")
                    break
            say("Newton (Levenberg-Marquardt damped) on the gradient ...")
            a, W, k, converged = newton(work, a, W, lam=lam_e, train=train, grad_tol=grad_tol, deadline=deadline)
            newton_steps += k
            if converged:
                reason = "converged"
                break
            if deadline is not None and time.perf_counter() > deadline:
                reason = "time-budget"
                break
            if gd_steps >= max_steps:
                reason = "max-steps"
                break
            target = min(target, gn) / 100
        else:
            reason = reason or "stalled"
    except KeyboardInterrupt:
        reason = "interrupted"
    return describe(work, a, W, train=train, lam=lam_e, converged=converged, grad_tol=grad_tol,
                    gd_steps=gd_steps, newton_steps=newton_steps, stop_reason=reason or "stalled",
                    elapsed=time.perf_counter() - t0, notes=notes)


def describe(problem: Problem, a: np.ndarray, W: np.ndarray, *, train: str, lam: Any, converged: bool,
             grad_tol: float | None = None, **extra: Any) -> StationaryPoint:
    """The Hessian spectrum, index and kind at (a, W), packed with the search's outcome."""
    e = problem.engine
    with e.context():
        ev, g = _gradient(problem, a, W, lam, train)
        H = hs.hessian(problem, a, W, lam=lam, train=train)
        eig = eigenvalues(e, H)
        kind, index, level = classify(e, eig)
        tol = grad_tol if grad_tol is not None else default_grad_tol(e, H, hs.flatten(a, W, train))
        norms = [math.sqrt(sum(float(x) ** 2 for x in row)) for row in W]
        top = max(norms, default=0.0)
        tiny = [j for j, n in enumerate(norms) if n <= NEAR_ZERO_NEURON * top]
        if tiny and train != "second":
            extra.setdefault("notes", [])
            extra["notes"] = list(extra["notes"]) + [
                f"student neuron(s) {tiny} have norm <= {NEAR_ZERO_NEURON:g} of the largest: the point is next to "
                "a zero neuron, where L is not twice differentiable (the Hessian grows like 1/||w_j||); the "
                "kind is unreliable there"]
        return StationaryPoint(converged=converged, a=a, W=W, train=train, lam=lam, grad_norm=_norm(e, g),
                               grad_tol=e.scalar(repr(float(tol))), loss=ev.loss, reg_loss=ev.reg_loss,
                               eigenvalues=eig, index=index, kind=kind, rounding_level=level, **extra)
