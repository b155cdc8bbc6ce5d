"""The certified optimum: L*_lambda enclosed in a narrow interval, fast.

L*_lambda = inf over every width and parameter of L_lambda.  Three steps:

1. **Descent into the basin** (float64): gradient descent on L_lambda from the
   instance's student until the float64 precision floor (``checker.dynamics.gd.run_gd``
   detects it).
2. **Reduction and polish** (high precision): neurons whose directions agree to
   ``merge_angle`` and whose output weights have the same sign are merged into one
   balanced neuron carrying their total signed mass (by AM-GM this never raises
   L_lambda at a balanced point, and the optimum of L_lambda is balanced).  Which
   merged neurons to keep is read from the dual residual, not from their mass: the
   optimality (KKT) condition of the convex problem says that the optimum's atoms sit
   where the residual correlation 2 g(u) = 2 E[r(x) sigma(<u,x>)] reaches lambda
   (2 g(u_j) sign(a_j) = lambda) and that 2 |g| <= lambda everywhere; a neuron whose
   ratio 2 g(u_j) sign(a_j) / lambda is below 1 - ``KEEP_TOL`` is decaying and is
   dropped (``select_atoms``), whatever its mass.  Then Newton's method on the reduced
   problem at ``dps`` digits, its Hessian from central differences of the exact
   gradient, in the span that the kept atoms and the teachers need (the teachers'
   span when every kept atom is within ``SPAN_TOL`` of it; it is invariant under the
   descent).  Exchange rounds: where 2 |g| still exceeds lambda (1 + ``ADD_TOL``)
   at the polished point (a local search of the sphere), an atom is added there, a
   short float64 descent settles it, and the reduction and polish are redone (up to
   ``EXCHANGE_ROUNDS`` times).
3. **Certificate**: the polished point theta-hat is feasible at any width, so
   L*_lambda <= L_lambda(theta-hat) (upper end: an Arb enclosure), and the
   duality bound at theta-hat gives D(p) <= L*_lambda (lower end:
   ``checker.rigorous.duality.gap_bound``, rigorous when the sup over the sphere
   is certified).  The interval [D, L_lambda(theta-hat)] contains L*_lambda.

Steps 1 and 2 only choose the point; only step 3 is a proof, so a poor point
gives a wide interval, never a wrong one.  The enclosure is of L*_lambda for the
instance as read by the high-precision engine (each decimal input rounded to its
working precision): ``Enclosure.lam`` is that engine's lambda, written out exactly
(the decimal input is ``lam_input``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any, Callable

import mpmath
import numpy as np

from checker.core.engines import Engine, Float64Engine, MpEngine
from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.core.problem import Problem
from .arb_objective import exact_decimal
from .duality import GapBound, gap_bound

#: Directions closer than this (radians) with the same output sign are merged (the
#: certified optimum uses Delta / 10: such neurons sit near one teacher).
MERGE_ANGLE = 1e-3
#: A neuron whose mass |a_j| ||w_j|| is below this fraction of the largest is dropped.
DROP_MASS = 1e-8
#: A merged neuron is kept when 2 g(u_j) sign(a_j) >= (1 - KEEP_TOL) lambda (KKT: = lambda on the support).
KEEP_TOL = 1e-3
#: Kept atoms within this relative distance of the teachers' span are projected on it.
SPAN_TOL = 1e-3
#: An exchange round adds an atom where 2 |g| exceeds (1 + ADD_TOL) lambda at the polished point.
ADD_TOL = 1e-8
#: Largest number of exchange rounds.
EXCHANGE_ROUNDS = 3


@dataclass
class Enclosure:
    """L*_lambda in [lower, upper] (decimal strings, outward rounded when rigorous)."""

    lower: str
    upper: str
    width: str
    rigorous: bool
    lam: str  # the engine's lambda, the exact decimal of the binary number the enclosure is about
    dps: int
    neurons: int  # K, neurons of the reduced problem
    a: list[str]  # the polished reduced student (exact decimal strings of the engine)
    W: list[list[str]]
    newton_steps: int
    grad_norm: str  # ||grad L_lambda|| at the polished point
    seconds: dict[str, float] = field(default_factory=dict)
    gap: dict[str, Any] = field(default_factory=dict)
    lam_input: str = ""  # lambda as the instance gave it (a decimal string the engine rounded)
    atoms: list[dict[str, Any]] = field(default_factory=list)  # kept atoms: direction, sign, mass, kkt ratio
    dropped: list[dict[str, Any]] = field(default_factory=list)  # merged neurons dropped (mass, kkt ratio)
    exchange_rounds: int = 0  # rounds that added atoms
    polish_span_dim: int = 0  # dimension of the space the polish ran in (d: no reduction)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def descend_float64(instance: Instance, *, max_steps: int = 200_000, time_budget: float | None = 30.0,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Float64 gradient descent on L_lambda from the instance's student to its precision floor."""
    from checker.dynamics.gd import StopRules, run_gd

    if instance.eta is None:
        raise CheckerError("the certified optimum needs a step size: give \"eta\" in the instance")
    fp = Problem.from_instance(instance, Float64Engine())
    res = run_gd(fp, fp.eta, stop=StopRules(max_steps=max_steps, time_budget=time_budget, gap_every=200,
                                            record_every=10_000), progress=progress)
    if res.stop_reason == "diverged":
        raise CheckerError("float64 descent diverged: lower the step size eta")
    return np.asarray(res.a, dtype=float), np.asarray(res.W, dtype=float)


def reduce_student(a: np.ndarray, W: np.ndarray, *, merge_angle: float = MERGE_ANGLE,
                   drop_mass: float = DROP_MASS,
                   teacher_W: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Merge collinear same-sign neurons into balanced neurons; drop negligible ones (float64).

    With ``teacher_W`` of rank below d, each kept neuron is projected on span{w*_i}
    (the objective is invariant under the orthogonal maps that fix that span, and
    the optimum found here lies in it); the sup in the certificate then runs on a
    smaller sphere (``checker.rigorous.duality.certified_sup``).  A projection that
    would move a neuron by more than 1e-6 of its norm is not made.
    """
    W = np.array(W, dtype=float)
    if teacher_W is not None and _in_teacher_span(W, teacher_W):
        Q = _span_of(teacher_W)
        W = W @ Q @ Q.T
    norms = np.linalg.norm(W, axis=1)
    mass = np.abs(a) * norms
    if not np.any(mass > 0):
        raise CheckerError("every student neuron has zero mass: nothing to polish")
    keep = mass > drop_mass * mass.max()
    order = [j for j in np.argsort(-mass) if keep[j]]
    clusters: list[list[int]] = []
    for j in order:
        u = W[j] / norms[j]
        for cl in clusters:
            r = cl[0]
            ur = W[r] / norms[r]
            same_sign = np.sign(a[j]) == np.sign(a[r])
            cos = float(np.clip(u @ ur, -1.0, 1.0))
            if same_sign and math.acos(cos) <= merge_angle:
                cl.append(j)
                break
        else:
            clusters.append([j])
    a_out, W_out = [], []
    for cl in clusters:
        s = float(sum(a[j] * norms[j] for j in cl))  # total signed mass
        direction = sum(mass[j] * W[j] / norms[j] for j in cl)
        direction = direction / np.linalg.norm(direction)
        r = math.sqrt(abs(s))
        a_out.append(math.copysign(r, s))
        W_out.append(r * direction)
    return np.array(a_out), np.array(W_out)


def kkt_ratios(instance: Instance, a: np.ndarray, W: np.ndarray) -> np.ndarray:
    """2 g(u_j) sign(a_j) / lambda per neuron (float64), g(u) = E[(f* - f_theta)(x) sigma(<u, x>)].

    At the lambda-optimum this is 1 on every atom and 2 |g| <= lambda everywhere; a neuron with
    a ratio below 1 is losing mass under gradient descent.  Zero neurons get nan.
    """
    from checker.core import objective

    fp = Problem.from_instance(instance, Float64Engine())
    a = np.asarray(a, dtype=float)
    W = np.asarray(W, dtype=float)
    lam = float(fp.lam)
    if not lam > 0:
        raise CheckerError("the KKT selection needs lambda > 0")
    norms = np.linalg.norm(W, axis=1)
    U = W / np.where(norms > 0, norms, 1.0)[:, None]
    V = np.concatenate([fp.W_star, W])
    c = np.concatenate([fp.a_star, -a])
    g = objective.correlation(fp.engine, fp.activation, U, V, c)
    out = 2 * g * np.sign(a) / lam
    return np.where((norms > 0) & (a != 0), out, np.nan)


def select_atoms(instance: Instance, a: np.ndarray, W: np.ndarray, *, merge_angle: float,
                 keep_tol: float = KEEP_TOL) -> tuple[np.ndarray, np.ndarray, list[dict], list[dict]]:
    """Merge collinear same-sign neurons, then keep those whose KKT ratio reaches 1 - keep_tol.

    Returns the kept (balanced) neurons and records of the kept and dropped ones
    (direction, sign, mass, ratio).  When no neuron reaches the threshold (a start far
    from the optimum), the ones within ``keep_tol`` of the largest ratio are kept.
    """
    am, Wm = reduce_student(np.asarray(a, dtype=float), np.asarray(W, dtype=float), merge_angle=merge_angle,
                            drop_mass=0.0)
    ratio = kkt_ratios(instance, am, Wm)
    top = np.nanmax(ratio) if np.any(np.isfinite(ratio)) else 1.0
    keep = np.isfinite(ratio) & (ratio >= min(1.0, top) - keep_tol)

    def rec(j: int) -> dict[str, Any]:
        n = float(np.linalg.norm(Wm[j]))
        return {"direction": (Wm[j] / n).tolist(), "sign": int(np.sign(am[j])), "mass": float(abs(am[j]) * n),
                "kkt_ratio": float(ratio[j])}

    kept = [rec(j) for j in range(len(am)) if keep[j]]
    dropped = [rec(j) for j in range(len(am)) if not keep[j]]
    return am[keep], Wm[keep], kept, dropped


def _polish_basis(W: np.ndarray, teacher_W: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(W, which span): project on the teachers' span when every row is within SPAN_TOL of it
    ("teachers"), else the span of teachers and atoms ("teachers and atoms"); None when that
    span is all of R^d."""
    Q = _span_of(teacher_W)
    d = W.shape[1]
    norms = np.linalg.norm(W, axis=1)
    moved = np.linalg.norm(W - W @ Q @ Q.T, axis=1)
    if np.all(moved <= SPAN_TOL * norms):
        return W @ Q @ Q.T, ("teachers" if Q.shape[1] < d else None)
    Q2 = _span_of(np.concatenate([teacher_W, W / norms[:, None]]))
    return W, ("teachers and atoms" if Q2.shape[1] < d else None)


def _span_of(teacher_W: np.ndarray) -> np.ndarray:
    """Orthonormal basis (d x s, columns) of span{w*_i} in float64."""
    Q, sv, _ = np.linalg.svd(np.asarray(teacher_W, dtype=float).T, full_matrices=False)
    return Q[:, sv > 1e-12 * sv.max()]


def _in_teacher_span(W: np.ndarray, teacher_W: np.ndarray) -> bool:
    """True when span{w*_i} is a proper subspace and every row of W is within 1e-6 (relative) of it."""
    Q = _span_of(teacher_W)
    if Q.shape[1] == W.shape[1]:
        return False
    moved = np.linalg.norm(W - W @ Q @ Q.T, axis=1)
    return bool(np.all(moved <= 1e-6 * np.linalg.norm(W, axis=1)))


def _flat(a: np.ndarray, W: np.ndarray) -> np.ndarray:
    return np.concatenate([a, W.reshape(-1)])


def _split(x: np.ndarray, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    return x[:k], x[k:].reshape(k, d)


def newton_polish(problem: Problem, a: np.ndarray, W: np.ndarray, *, max_steps: int = 30,
                  grad_tol: Any = None, basis: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, int, Any]:
    """Newton's method on L_lambda at the engine's precision, from (a, W) (engine numbers).

    The Hessian is formed from central differences of the exact gradient with
    step h = 10^(-dps/3): its error O(h^2) = 10^(-2 dps/3) only slows the
    quadratic convergence to a linear one with that factor.  A Newton step that
    lowers neither L_lambda nor the gradient norm is halved (up to 30 times).  ``basis`` (s x d,
    orthonormal rows, engine numbers): the neurons are kept in its span,
    W = X basis, and Newton runs on (a, X); the span of the teachers is invariant
    under the descent, and staying exactly in it lets the certificate search a
    smaller sphere.  Returns the point, the number of steps and the final
    gradient norm.
    """
    e = problem.engine
    if not isinstance(e, MpEngine):
        raise CheckerError("the Newton polish runs in the high-precision engine (--engine mp)")
    k = W.shape[0]
    with e.context():
        B = None if basis is None else np.asarray(basis, dtype=object)
        X0 = W if B is None else W.dot(B.T)
        d = X0.shape[1]
        n = k * (d + 1)
        h = mpmath.mpf(10) ** (-(e.dps // 3))
        tol = mpmath.mpf(10) ** (-(e.dps - 3)) if grad_tol is None else mpmath.mpf(grad_tol)

        def point(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            aa, XX = _split(x, k, d)
            return aa, (XX if B is None else XX.dot(B))

        def grad(x: np.ndarray) -> tuple[Any, np.ndarray]:
            ev = problem.evaluate(*point(x))
            gX = ev.grad_W if B is None else ev.grad_W.dot(B.T)
            return ev.reg_loss, _flat(ev.grad_a, gX)

        x = _flat(a, X0)
        f, g = grad(x)
        steps = 0
        for steps in range(1, max_steps + 1):
            gnorm = mpmath.sqrt(mpmath.fsum(v * v for v in g))
            if gnorm <= tol:
                steps -= 1
                break
            H = mpmath.matrix(n, n)
            for j in range(n):
                xp, xm = x.copy(), x.copy()
                xp[j] += h
                xm[j] -= h
                col = (grad(xp)[1] - grad(xm)[1]) / (2 * h)
                for i in range(n):
                    H[i, j] = col[i]
            H = (H + H.T) / 2
            try:
                dx = mpmath.lu_solve(H, mpmath.matrix([-v for v in g]))
            except ZeroDivisionError:
                raise CheckerError("the Hessian of the reduced problem is singular: "
                                   "the reduction merged or dropped the wrong neurons") from None
            step = np.array([dx[i] for i in range(n)], dtype=object)
            t = mpmath.mpf(1)
            for _ in range(30):
                f2, g2 = grad(x + t * step)
                # Near the optimum a Newton step changes L_lambda by less than its rounding
                # (a cancelling sum of O(1) terms): a smaller gradient also accepts the step.
                if f2 <= f or mpmath.fsum(v * v for v in g2) < gnorm * gnorm:
                    break
                t /= 2
            else:
                break
            x, f, g = x + t * step, f2, g2
        aa, WW = point(x)
        ev = problem.evaluate(aa, WW)
        gnorm = mpmath.sqrt(mpmath.fsum(v * v for v in _flat(ev.grad_a, ev.grad_W)))
        return aa, WW, steps, gnorm


def certified_optimum(instance: Instance, *, dps: int = 50, start: tuple[np.ndarray, np.ndarray] | None = None,
                      descent_steps: int = 200_000, descent_seconds: float | None = 30.0,
                      tol: float | None = None, max_boxes: int = 400_000, seed: int = 0,
                      say: Callable[[str], None] = lambda text: None, selection: str = "kkt",
                      certificate_seconds: float | None = None) -> Enclosure:
    """L*_lambda of the instance enclosed in [lower, upper]; see the module docstring.

    ``start``: a float64 point already in the basin (skips the descent).  ``tol``:
    tolerance on the certified sup (default: from the expected gap at the polished point).
    ``selection``: "kkt" (default: keep the neurons where the residual correlation reaches
    lambda, polish in the span they need, exchange rounds) or "mass" (the earlier reduction:
    drop neurons below ``DROP_MASS`` of the largest mass, project on the teachers' span only
    when every neuron is within 1e-6 of it, no exchange; kept for comparison).
    ``certificate_seconds``: time budget of the branch and bound (the enclosure stays rigorous,
    only wider, when it runs out).
    """
    if selection not in ("kkt", "mass"):
        raise CheckerError(f"selection must be 'kkt' or 'mass', got {selection!r}")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    if start is None:
        say("float64 descent into the basin ...")
        a64, W64 = descend_float64(instance, max_steps=descent_steps, time_budget=descent_seconds)
    else:
        a64, W64 = (np.asarray(x, dtype=float) for x in start)
    times["descent"] = time.perf_counter() - t0
    teacher_W = np.array([[float(x) for x in r] for r in instance.teacher_W])
    teacher_W = teacher_W / np.linalg.norm(teacher_W, axis=1)[:, None]
    engine = MpEngine(dps)
    t1 = time.perf_counter()
    rounds = 0
    while True:
        if selection == "kkt":
            ar, Wr, kept, dropped = select_atoms(instance, a64, W64, merge_angle=instance.separation / 10)
            Wr, basis_f = _polish_basis(Wr, teacher_W)
        else:
            ar, Wr = reduce_student(a64, W64, merge_angle=instance.separation / 10, teacher_W=teacher_W)
            kept, dropped = [{} for _ in ar], []
            basis_f = "teachers" if _in_teacher_span(Wr, teacher_W) else None
        reduced = instance.replace(student_a=[repr(float(x)) for x in ar],
                                   student_W=[[repr(float(x)) for x in row] for row in Wr])
        problem = Problem.from_instance(reduced, engine)
        basis = None
        if basis_f is not None:
            from .duality import _span_basis

            rows = problem.W_star if basis_f == "teachers" else np.concatenate([problem.W_star, problem.W])
            span = _span_basis(engine, rows)
            if len(span) < instance.d:
                basis = np.array(span, dtype=object)
        say(f"Newton polish of the reduced problem ({len(ar)} neurons, dropped {len(dropped)}, span "
            f"{instance.d if basis is None else len(basis)}) at {dps} digits ...")
        a_p, W_p, steps, gnorm = newton_polish(problem, problem.a, problem.W, basis=basis)
        if rounds >= EXCHANGE_ROUNDS or selection == "mass":
            break
        new = _exchange_candidates(problem, a_p, W_p, seed=seed)
        if not new:
            break
        rounds += 1
        say(f"exchange round {rounds}: {len(new)} atom(s) added where 2|g| > lambda ...")
        a64 = np.concatenate([np.array([float(x) for x in a_p]), [s_ for s_, _ in new]])
        W64 = np.concatenate([np.array([[float(x) for x in r] for r in W_p]), [w for _, w in new]])
        a64, W64 = descend_float64(instance.replace(student_a=[repr(float(x)) for x in a64],
                                                    student_W=[[repr(float(x)) for x in r] for r in W64]),
                                   max_steps=descent_steps, time_budget=min(10.0, descent_seconds or 10.0))
    times["polish"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    say("certifying the enclosure (duality bound, Arb branch and bound) ...")
    gb: GapBound = gap_bound(problem, a_p, W_p, rigorous=True, tol=tol, max_boxes=max_boxes, seed=seed,
                             max_seconds=certificate_seconds)
    times["certificate"] = time.perf_counter() - t2
    times["total"] = time.perf_counter() - t0
    with localcontext() as dctx:
        dctx.prec, dctx.rounding = 400, ROUND_CEILING
        width = Decimal(gb.reg_loss) - Decimal(gb.dual)
    from checker.core.io import engine_to_json

    af = np.array([float(x) for x in a_p])
    Wf = np.array([[float(x) for x in r] for r in W_p])
    for rec, aj, wj in zip(kept, af, Wf):  # the polished atoms (the ratio is the one that selected them)
        n = float(np.linalg.norm(wj))
        rec.update(direction=(wj / n).tolist(), sign=int(np.sign(aj)), mass=float(abs(aj) * n),
                   a=float(aj), norm_w=n)
    return Enclosure(lower=gb.dual, upper=gb.reg_loss, width=str(width), rigorous=gb.rigorous,
                     lam=exact_decimal(problem.lam), dps=dps, neurons=len(ar), a=engine_to_json(engine, a_p),
                     W=engine_to_json(engine, W_p), newton_steps=steps, grad_norm=engine.to_str(gnorm),
                     seconds=times, gap=gb.to_dict(), atoms=kept, dropped=dropped, exchange_rounds=rounds,
                     polish_span_dim=instance.d if basis is None else len(basis), lam_input=str(instance.lam))


def _exchange_candidates(problem: Problem, a: np.ndarray, W: np.ndarray, *, seed: int = 0
                         ) -> list[tuple[float, np.ndarray]]:
    """New atoms (signed output weight, w) at the local maxima of 2|g| above (1 + ADD_TOL) lambda.

    Each starts balanced with mass lambda / 10 (small against the atoms of the optimum, large
    enough for the float64 descent to grow it) and the sign of g there; at most one per
    teacher-or-atom neighbourhood (maxima closer than 1e-3 rad to an existing neuron or to each
    other are skipped).
    """
    from .duality import local_maxima
    from checker.core import objective

    lam = float(problem.lam)
    fa = np.array([float(x) for x in a])
    fW = np.array([[float(x) for x in r] for r in W])
    fp = Problem(engine=Float64Engine(), activation=problem.activation, a=fa, W=fW,
                 a_star=np.array([float(x) for x in problem.a_star]),
                 W_star=np.array([[float(x) for x in r] for r in problem.W_star]), lam=lam, eta=None)
    maxima = local_maxima(fp, fa, fW, seed=seed)  # float64: a search for candidates, not a bound
    Wf = np.array([[float(x) for x in r] for r in W])
    units = Wf / np.linalg.norm(Wf, axis=1)[:, None]
    V, c = (np.concatenate([np.array([[float(x) for x in r] for r in problem.W_star]), Wf]),
            np.concatenate([[float(x) for x in problem.a_star], [-float(x) for x in a]]))
    out: list[tuple[float, np.ndarray]] = []
    taken = list(units)
    for val, u in maxima:
        if not 2 * float(val) > lam * (1 + ADD_TOL):
            continue
        uf = np.array([float(x) for x in u])
        uf /= np.linalg.norm(uf)
        if any(float(uf @ t) > math.cos(1e-3) for t in taken):
            continue
        g = float(objective.correlation(Float64Engine(), problem.activation, uf[None, :], V, c)[0])
        r = math.sqrt(lam / 10)
        out.append((math.copysign(r, g), r * uf))
        taken.append(uf)
    return out
