"""The duality bound on the gap zeta(theta) = L_lambda(theta) - L*_lambda, certified with Arb.

For a student theta with residual r = f* - f_theta and any U >= sup_{||w||=1} |g(w)|,

    g(w) = E[r(x) sigma(<w, x>)] = sum_l c_l k(w, v_l),   c = (a*, -a),  V = (W*, W),

the function p = 2 s r with 0 <= s <= lambda / (2 U) is dual feasible
(sup_w |E[p sigma(<w, x>)]| = 2 s sup |g| <= lambda), so

    D(p) = <p, f*> - ||p||^2 / 4 = 2 s <r, f*> - s^2 ||r||^2  <=  L*_lambda,

with <r, f*> = a*^T K(W*, W*) a* - a^T K(W, W*) a* and ||r||^2 = L(theta); hence
zeta(theta) <= L_lambda(theta) - D(p).  D is a concave parabola in s with its peak at
<r, f*> / L, so the best feasible scale is s = min(lambda / (2 U), max(0, <r, f*> / L))
(``dual_scale``; with the lambda / (2 U) part rounded down in the rigorous bound).  At a
student that overshoots the optimal mass (U < lambda / 2) the peak or lambda / (2 U) exceeds
1: capping s at 1 would leave a gap bound first-order in the distance to the optimum.  The
bound is rigorous exactly when U is a certified upper bound and D and L_lambda are Arb
enclosures: ``gap_bound`` does that by branch and bound on the sphere (``checker.sphere``).
Otherwise (``rigorous=False``, or a dimension the search does not cover) it is an estimate
from a multi-start local search (``sup_estimate``) and says so: a sampled U can miss the
supremum, and then D exceeds L*_lambda.  The estimate is as sensitive to U as the bound
(dD/dU ~ -2 <r, f*> / U near the optimum, both sides of it now): near the optimum the local
maxima of |g| agree to more digits than a float holds, and they are ranked in the engine's
numbers.

g is positively 1-homogeneous.  When the rows of V span a subspace of
dimension s <= 3, g(w) depends on w only through its projection on that span
and the length of the rest, so the supremum is certified on S^s in R^{s+1}
(``certified_sup``), with a rigorous bound for the numerically computed basis.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np
from flint import arb, ctx

from checker.core import kernel, objective
from .arb_objective import (KernelSum, decimal_string, digits_for, dot, loss_enclosure, lower_fraction, norm,
                            to_arb, to_arb_matrix, upper_fraction)
from checker.core.engines import Engine, Float64Engine, MpEngine, as_floats
from checker.core.errors import CheckerError
from checker.core.problem import Problem
from .sphere import SphereMax, certified_max_abs

#: Largest sphere dimension (ambient R^n, n <= 4) the branch and bound is asked to cover.
MAX_SEARCH_DIM = 4


@dataclass(frozen=True)
class GapBound:
    """zeta(theta) <= gap_upper, from the dual point p = 2 s r."""

    reg_loss: str  # L_lambda(theta) (upper end of its Arb enclosure when rigorous)
    dual: str  # D(p), a lower bound on L*_lambda (lower end when rigorous)
    gap_upper: str  # reg_loss - dual, rounded up: zeta(theta) <= gap_upper
    sup_upper: str  # U >= sup_{||w||=1} |E[r(x) sigma(<w,x>)]|
    scale: str  # s = min(lambda / (2 U), max(0, <r, f*> / L)), rounded down (``dual_scale``)
    rigorous: bool
    method: str  # "arb-branch-and-bound" or "estimate"
    detail: str
    boxes: int = 0
    seconds: float = 0.0
    tol: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "gap bound") -> "GapBound":
        """The record written by ``to_dict`` (exact: every number is text or a JSON float that
        round-trips); anything else, or a non-finite bound, is a one-line ``CheckerError``."""
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or sorted(data) != sorted(names):
            raise CheckerError(f"{where}: malformed (expected the keys {', '.join(names)})")
        kinds = {"str": str, "bool": bool, "int": int, "dict[str, Any]": dict}
        out: dict[str, Any] = {}
        for f in fields(cls):
            x = data[f.name]
            if str(f.type) == "float":
                ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                x = float(x) if ok else x
            else:
                want = kinds.get(str(f.type))
                ok = want is not None and type(x) is want
            if not ok:
                raise CheckerError(f"{where}.{f.name}: expected {f.type}, got {type(x).__name__}")
            out[f.name] = x
        for key in ("reg_loss", "dual", "gap_upper"):
            try:
                finite = Decimal(out[key]).is_finite()
            except InvalidOperation:
                finite = False
            if not finite:
                raise CheckerError(f"{where}.{key}: {out[key][:40]!r} is not a finite decimal number")
        return cls(**out)


@dataclass(frozen=True)
class SupCertificate:
    """Certified bounds on sup_{||w||=1} |g(w)| (see ``certified_sup``)."""

    upper: str  # rigorous upper bound when ``rigorous`` (rounded up)
    lower: str  # |g| attains at least this (rounded down)
    argmax: list[float]
    rigorous: bool
    reason: str
    search_dim: int  # dimension n of the sphere S^{n-1} searched (d, or s + 1 after reduction)
    span_dim: int  # dimension s of span{v_l}
    perturbation: str  # bound on |g - g'| from the numerical span basis ("0" without reduction)
    sphere: SphereMax | None

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- the residual correlation g
def _student(problem: Problem, a: Any, W: Any) -> tuple[np.ndarray, np.ndarray]:
    engine = problem.engine
    with engine.context():
        a_ = problem.a if a is None else engine.array(a) if not isinstance(a, np.ndarray) else a
        W_ = problem.W if W is None else engine.array(W) if not isinstance(W, np.ndarray) else W
    return a_, W_


def residual_terms(problem: Problem, a: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, c) with g(w) = sum_l c_l k(w, v_l): V = (W*, W), c = (a*, -a), zero terms dropped."""
    with problem.engine.context():  # negation rounds mp numbers to the working precision
        V = np.concatenate([problem.W_star, W], axis=0)
        c = np.concatenate([problem.a_star, -a])
    keep = [bool(cl != 0) and any(x != 0 for x in row) for row, cl in zip(V, c)]
    return V[keep], c[keep]


def default_prec(engine: Engine) -> int:
    """Arb bits: 128 for float64 problems, the mp engine's working digits plus 32 bits otherwise."""
    if isinstance(engine, MpEngine):
        return max(128, math.ceil(engine.work_dps * math.log2(10)) + 32)
    return 128


# ---------------------------------------------------------------- estimate of the sup
def _tangent_basis(u: np.ndarray) -> np.ndarray:
    """Orthonormal basis (d, d-1) of the tangent space of the sphere at unit u (float)."""
    d = len(u)
    q, _ = np.linalg.qr(np.column_stack([u, np.eye(d)]))
    return q[:, 1:d]


def _sphere_grad(engine: Engine, act: str, V: np.ndarray, c: np.ndarray, w: np.ndarray,
                 T: np.ndarray) -> tuple[Any, np.ndarray]:
    """g(w^) and T^T grad_w (g(w) / ||w||) for one point w (engine numbers)."""
    with engine.context():
        n = engine.sqrt((w * w).sum())
        u = (w / n)[None, :]
        val = objective.correlation(engine, act, u, V, c)[0]
        G = objective.correlation_grad(engine, act, u, V, c)[0]
        return val, T.T.dot((G - val * u[0]) / n)


def _newton_polish(engine: Engine, act: str, V: np.ndarray, c: np.ndarray, u: np.ndarray,
                   sign: float, *, iterations: int, hessian: np.ndarray | None = None,
                   fd_step: float = 1e-5) -> tuple[np.ndarray, np.ndarray | None]:
    """Newton steps for a local maximum of sign * g on the sphere, from unit u.

    The Hessian comes from central differences of the float64 tangent gradient
    (step ~ eps^(1/3)); the gradient from ``engine``.  With an approximate
    Hessian the iteration still converges linearly with a tiny factor, enough
    to bring an mp point to full precision in a few steps.
    """
    f64 = Float64Engine()
    Vf, cf = as_floats(V), as_floats(c)
    for _ in range(iterations):
        uf = np.array([float(x) for x in u])
        uf /= np.linalg.norm(uf)
        T = _tangent_basis(uf)
        if hessian is None or isinstance(engine, Float64Engine):
            k = T.shape[1]
            H = np.empty((k, k))
            for i in range(k):
                gp = _sphere_grad(f64, act, Vf, cf, uf + fd_step * T[:, i], T)[1]
                gm = _sphere_grad(f64, act, Vf, cf, uf - fd_step * T[:, i], T)[1]
                H[:, i] = sign * (gp - gm) / (2 * fd_step)
            hessian = (H + H.T) / 2
        Te = _engine_matrix(engine, T)
        _, grad = _sphere_grad(engine, act, V, c, u, Te)
        gradf = sign * np.array([float(x) for x in grad])
        if not np.all(np.isfinite(gradf)) or np.linalg.norm(gradf) == 0:
            break
        eig = np.linalg.eigvalsh(hessian)
        if eig.max() < 0:
            step = -np.linalg.solve(hessian, gradf)
        else:  # not a maximum's basin: a gradient step of moderate size
            step = gradf / max(1.0, float(np.abs(eig).max()))
        nrm = np.linalg.norm(step)
        if nrm > 0.2:
            step *= 0.2 / nrm
        if nrm < 1e-300:
            break
        with engine.context():
            w = u + Te.dot(_engine_vector(engine, step))
            u = w / engine.sqrt((w * w).sum())
    return u, hessian


def _engine_vector(engine: Engine, x: np.ndarray) -> np.ndarray:
    return x if isinstance(engine, Float64Engine) else engine.array(list(x))


def _engine_matrix(engine: Engine, X: np.ndarray) -> np.ndarray:
    return X if isinstance(engine, Float64Engine) else engine.array(X.tolist())


def local_maxima(problem: Problem, a: Any = None, W: Any = None, *, seed: int = 0,
                 starts: int = 48, iterations: int = 120) -> list[tuple[Any, np.ndarray]]:
    """Local maxima of |g| on the sphere, best first: [(|g| value, unit argmax)] in engine numbers.

    Multi-start Riemannian gradient ascent in float64 (starts: +-v_l/||v_l|| and
    ``starts`` seeded random directions; per-start adaptive step), then Newton
    polishing in float64 and, for the candidates that could be the largest, in
    the problem's engine.  An estimate: nothing guarantees the global maximum.
    """
    engine = problem.engine
    act = problem.activation
    a_, W_ = _student(problem, a, W)
    V, c = residual_terms(problem, a_, W_)
    d = problem.W_star.shape[1]
    if len(c) == 0:
        with engine.context():
            e1 = engine.array([1] + [0] * (d - 1))
            return [(engine.scalar(0), e1)]
    f64 = Float64Engine()
    Vf, cf = as_floats(V), as_floats(c)
    units = Vf / np.linalg.norm(Vf, axis=1)[:, None]
    rng = np.random.default_rng(seed)
    R = rng.standard_normal((starts, d))
    Q = np.concatenate([units, -units, R / np.linalg.norm(R, axis=1)[:, None]])
    val = objective.correlation(f64, act, Q, Vf, cf)
    sign = np.where(val >= 0, 1.0, -1.0)
    step = np.full(len(Q), 1.0 / max(np.abs(cf).dot(np.linalg.norm(Vf, axis=1)), 1e-300))
    for _ in range(iterations):
        G = objective.correlation_grad(f64, act, Q, Vf, cf)
        T = sign[:, None] * (G - val[:, None] * Q)
        Qn = Q + step[:, None] * T
        Qn /= np.linalg.norm(Qn, axis=1)[:, None]
        vn = objective.correlation(f64, act, Qn, Vf, cf)
        better = sign * vn >= sign * val
        Q = np.where(better[:, None], Qn, Q)
        val = np.where(better, vn, val)
        step = np.where(better, step * 1.5, step * 0.3)
    order = np.argsort(-np.abs(val))
    picked: list[int] = []
    for i in order:
        if all(np.dot(Q[i], Q[j]) < 1 - 1e-8 for j in picked):
            picked.append(int(i))
        if len(picked) >= 8:
            break
    best = float(np.abs(val[picked[0]]))
    found = []
    for i in picked:
        if abs(val[i]) < 0.5 * best:
            continue
        u, H = _newton_polish(f64, act, Vf, cf, Q[i], sign[i], iterations=8)
        found.append((abs(float(objective.correlation(f64, act, u[None, :], Vf, cf)[0])), u, sign[i], H))
    found.sort(key=lambda t: -t[0])
    top = found[0][0]
    out = []
    for value, u, sg, H in found:
        if isinstance(engine, Float64Engine):
            out.append((value, u))
            continue
        if value < top * (1 - 1e-6) and out:
            with engine.context():
                ue = engine.array(list(u))
                v = abs(objective.correlation(engine, act, ue[None, :], V, c)[0])
            out.append((v, ue))
            continue
        with engine.context():
            ue = engine.array(list(u))
            ue, _ = _newton_polish(engine, act, V, c, ue, sg, iterations=6, hessian=H)
            v = abs(objective.correlation(engine, act, ue[None, :], V, c)[0])
        out.append((v, ue))
    # by the engine's values: near the optimum the maxima of |g| agree to far more digits than a
    # float holds (all ~lambda/2), and the largest must come first (it is the sup estimate U)
    out.sort(key=lambda t: t[0], reverse=True)
    return out


def sup_estimate(problem: Problem, a: Any = None, W: Any = None, *, seed: int = 0) -> tuple[Any, np.ndarray]:
    """Estimate of sup_{||w||=1} |g(w)| and its argmax, in the problem's engine numbers.

    Cheap (tens of milliseconds in float64): it is meant to be called during runs.
    Not a bound: it can miss the supremum (see ``certified_sup``).
    """
    value, u = local_maxima(problem, a, W, seed=seed)[0]
    return value, u


# ---------------------------------------------------------------- certified sup
def _span_basis(engine: Engine, V: np.ndarray) -> list[np.ndarray]:
    """Orthonormal basis (engine numbers) of span{v_l}: Gram-Schmidt with pivoting, twice orthogonalized.

    A direction counts only when its residual exceeds 1000 eps times the largest
    row norm; what is dropped is covered by the perturbation bound anyway.
    """
    with engine.context():
        rows = [np.array(v) for v in V]
        scale = max(float(engine.sqrt((v * v).sum())) for v in rows)
        cutoff = 1000 * engine.eps * scale
        basis: list[np.ndarray] = []
        R = [v.copy() for v in rows]
        while len(basis) < V.shape[1]:
            norms = [engine.sqrt((r * r).sum()) for r in R]
            j = int(np.argmax([float(n) for n in norms]))
            if float(norms[j]) <= cutoff:
                break
            q = R[j] / norms[j]
            for _ in range(2):
                for b in basis:
                    q = q - q.dot(b) * b
                q = q / engine.sqrt((q * q).sum())
            basis.append(q)
            R = [r - r.dot(q) * q for r in R]
        return basis


def _lipschitz(activation: str) -> arb:
    """Lip with |k(w, v) - k(w, v')| <= Lip ||v - v'|| for unit w.

    |E[sigma(<w,x>)(sigma(<v,x>) - sigma(<v',x>))]| <= sqrt(E[sigma(<w,x>)^2])
    sqrt(E[(sigma(<v,x>) - sigma(<v',x>))^2]) by Cauchy-Schwarz; sigma is
    1-Lipschitz for relu and abs, so the second factor is <= sqrt(E[<v - v', x>^2])
    = ||v - v'||, and the first is sqrt(kappa(0)): 1/sqrt(2) for relu, 1 for abs.
    """
    kap = kernel.kappa_at_one(activation)
    return arb(1) if kap == 1.0 else (arb(1) / 2).sqrt()


def _upper_half(U: Sequence[arb]) -> bool:
    """False only for a box of unit vectors certainly in the half sphere of negative last coordinate."""
    return not (U[-1] < 0)


def certified_sup(problem: Problem, a: Any = None, W: Any = None, *, tol: float,
                  max_boxes: int = 200_000, seeds: Sequence[Sequence[Any]] = (), prec: int | None = None,
                  max_seconds: float | None = None) -> SupCertificate:
    """Certified bounds on sup_{||w||=1} |g(w)|: branch and bound on [g, -g] over the sphere.

    When span{v_l} has dimension s < d with s <= 3 (any d), the search runs on the
    half of S^s where the last coordinate is >= 0 (a smaller sphere when s + 1 < d,
    half the sphere when s + 1 = d); otherwise d <= 4: the sphere S^{d-1} itself.
    The reduction: an orthonormal basis q_1..q_s of the span is computed in the engine; with
    z_l the (exact, dyadic) coordinates of v_l in it and E the exactly orthonormal
    polar factor of Q = (q_1 .. q_s), the vectors v_l' = E z_l satisfy
    ||v_l - v_l'|| <= ||Q z_l - v_l|| + ||I - Q^T Q||_F ||z_l|| (because
    ||E - Q||_2 = max |1 - sigma_i(Q)| <= max |1 - sigma_i(Q)^2|), both enclosed
    in Arb.  g'(w) = sum c_l k(w, v_l') depends on w only through (E^T w,
    ||w - E E^T w||), a point of S^s, and is even in the last coordinate, so
    sup_{S^{d-1}} g' = sup_{S^s} of the reduced kernel sum with rows (z_l, 0), which is
    its sup over the half sphere p_{s+1} >= 0 (the reflection p_{s+1} -> -p_{s+1}
    maps S^s onto itself and leaves the sum unchanged).
    Finally |g - g'| <= Lip sum_l |c_l| ||v_l - v_l'|| (see ``_lipschitz``).
    Otherwise (d > 4 and s > 3) the result is not rigorous.
    """
    engine = problem.engine
    act = problem.activation
    a_, W_ = _student(problem, a, W)
    V, c = residual_terms(problem, a_, W_)
    d = problem.W_star.shape[1]
    prec = default_prec(engine) if prec is None else prec
    if len(c) == 0:  # g == 0
        return SupCertificate("0", "0", [1.0] + [0.0] * (d - 1), True, "", d, 0, "0", None)
    basis = _span_basis(engine, V)
    s = len(basis)
    if d <= MAX_SEARCH_DIM and s >= d:  # the span is all of R^d: nothing to reduce
        with ctx.workprec(prec):
            F = KernelSum(act, V, c)
            res = certified_max_abs(F, d, tol=tol, max_boxes=max_boxes, seeds=seeds, prec=prec,
                                    max_seconds=max_seconds)
        return SupCertificate(res.upper, res.lower, res.argmax, res.rigorous, res.reason, d, s, "0", res)
    if s + 1 > MAX_SEARCH_DIM:
        return SupCertificate("inf", "0", [], False,
                              f"span dimension s = {s} > 3 with d = {d} > 4 (the search covers spheres in "
                              f"R^n, n <= {MAX_SEARCH_DIM}): not certified; estimate only",
                              d, s, "inf", None)
    with ctx.workprec(prec):
        Q = to_arb_matrix(np.array(basis))
        G_off = arb(0)
        for i in range(s):
            for j in range(s):
                e = dot(Q[i], Q[j]) - (1 if i == j else 0)
                G_off += e * e
        gram_err = G_off.nonnegative_part().sqrt()
        if not upper_fraction(gram_err) < 1:
            return SupCertificate("inf", "0", [], False, "numerical span basis is not orthonormal enough",
                                  d, s, "inf", None)
        Z, pert = [], arb(0)
        for row, cl in zip(to_arb_matrix(V), [to_arb(x) for x in c]):
            z = [dot(q, row).mid() for q in Q]  # exact dyadic coordinates
            back = [sum((z[k] * Q[k][t] for k in range(s)), arb(0)) - row[t] for t in range(d)]
            delta = norm(back) + gram_err * norm(z)
            pert += abs(cl) * delta
            Z.append(z + [arb(0)])
        pert = _lipschitz(act) * pert
        pert_q = upper_fraction(pert)
        Qf = np.array([[float(x) for x in q] for q in basis])
        red_seeds = []
        with engine.context():  # in the engine's numbers: a polished seed keeps its digits
            for sd in seeds:
                ue = np.array(list(sd), dtype=object if isinstance(engine, MpEngine) else float)
                ue = ue / engine.sqrt((ue * ue).sum())
                p = [q.dot(ue) for q in basis]
                rest = 1 - sum(x * x for x in p)
                red_seeds.append(p + [engine.sqrt(rest) if rest > 0 else 0 * rest])
        F = KernelSum(act, Z, c)
        # g' is even in the last coordinate: the half sphere p_{s+1} >= 0 holds its sup (``keep``
        # drops only the boxes certainly below it), half the boxes of the whole S^s.
        res = certified_max_abs(F, s + 1, tol=tol, max_boxes=max_boxes, seeds=red_seeds, prec=prec,
                                max_seconds=max_seconds, keep=_upper_half)
    digits = digits_for(prec)
    if not res.rigorous:
        return SupCertificate(res.upper, res.lower, res.argmax, False, res.reason, s + 1, s,
                              decimal_string(pert_q, up=True, digits=digits), res)
    upper = decimal_string(Fraction(res.upper) + pert_q, up=True, digits=digits)
    lower = decimal_string(max(Fraction(0), Fraction(res.lower) - pert_q), up=False, digits=digits)
    # Back to R^d (float, for reporting): w = Q^T p + p_{s+1} e_perp.
    p = np.array(res.argmax)
    comp = np.linalg.svd(Qf)[2][s:] if s < d else np.zeros((0, d))
    w = Qf.T.dot(p[:s]) + (p[s] * comp[0] if len(comp) else 0)
    return SupCertificate(upper, lower, list(map(float, w / np.linalg.norm(w))), True, "", s + 1, s,
                          decimal_string(pert_q, up=True, digits=digits), res)


# ---------------------------------------------------------------- the gap bound
def _engine_pieces(problem: Problem, a: np.ndarray, W: np.ndarray, lam: Any) -> dict[str, Any]:
    """L, L_lambda, <r, f*> and the student mass in engine numbers."""
    engine = problem.engine
    act = problem.activation
    with engine.context():
        ev = problem.evaluate(a, W, lam=lam, with_gradient=False)
        Ktt = objective.gram(engine, problem.W_star, problem.W_star, act)
        Kst = objective.gram(engine, W, problem.W_star, act)
        rt = problem.a_star.dot(Ktt.dot(problem.a_star)) - a.dot(Kst.dot(problem.a_star))
        norms = engine.sqrt((W * W).sum(axis=1))
        mass = sum(abs(x) * n for x, n in zip(a, norms))
        teacher_norms = engine.sqrt((problem.W_star * problem.W_star).sum(axis=1))
        scale = mass + sum(abs(x) * n for x, n in zip(problem.a_star, teacher_norms))
    return {"loss": ev.loss, "reg_loss": ev.reg_loss, "rt": rt, "mass": mass, "scale": scale}


def dual_scale(lam: Any, U: Any, residual_teacher: Any, loss: Any, one: Any = 1, *,
               round_down: Callable[[Any], Any] | None = None,
               minimum: Callable[[Any, Any], Any] = min, maximum: Callable[[Any, Any], Any] = max) -> Any:
    """s = min(lambda / (2 U), max(0, <r, f*> / L)): the feasible s that maximizes D(2 s r).

    p = 2 s r is dual feasible exactly when 0 <= s <= lambda / (2 U) (U >= sup |g|), and
    D(2 s r) = 2 s <r, f*> - s^2 L is a concave parabola in s with its peak at <r, f*> / L;
    so the best feasible s is the peak clipped to [0, lambda / (2 U)]
    (``derivations/duality.py::optimal_dual_scale``).  Generic over the number type
    (engine numbers, Arb balls, SymPy symbols with ``minimum=sympy.Min``,
    ``maximum=sympy.Max``).  ``one`` is 1 in the caller's numbers; ``round_down`` maps a
    number to one at or below it (the lower end of an Arb ball, an exact Fraction): it is
    applied to lambda / (2 U), so that the rounded s never exceeds the feasible one, and to
    the peak, whose value only decides how good the bound is (any s in the feasible interval
    gives a valid lower bound on L*_lambda).  Edge cases: lambda = 0 gives s = 0; a loss that
    is not (certainly) positive gives s = 0 for the peak (L = 0 means r = 0 and D = 0 for
    every s); U = 0 (r orthogonal to every feature) leaves only the peak.
    """
    down = (lambda x: x) if round_down is None else round_down
    zero = 0 * one
    if lam == 0:
        return zero
    peak = maximum(zero, down(residual_teacher / loss)) if loss > 0 else zero
    if U == 0:
        return peak
    # max(0, .): a rounded-down lambda / (2 U) below 0 (a very wide ball) must not give s < 0
    return maximum(zero, minimum(down(lam / (2 * U)), peak))


def dual_objective(s: Any, residual_teacher: Any, loss: Any) -> Any:
    """D(2 s r) = 2 s <r, f*> - s^2 ||r||^2, with ||r||^2 = L(theta) (generic over the number type)."""
    return 2 * s * residual_teacher - s * s * loss


def _engine_dual(engine: Engine, pieces: dict[str, Any], lam: Any, U: Any) -> tuple[Any, Any]:
    """(s, D) in engine numbers for an estimated U."""
    with engine.context():
        s = dual_scale(lam, U, pieces["rt"], pieces["loss"], engine.scalar(1))
        return s, dual_objective(s, pieces["rt"], pieces["loss"])


def dual_value(problem: Problem, U: Any, a: Any = None, W: Any = None, *, lam: Any = None) -> tuple[Any, Any]:
    """(s, D(p)) in engine numbers for a given U, p = 2 s r, s = ``dual_scale`` (the best feasible scale).

    D(p) <= L*_lambda holds only when U >= sup |g|: with a U that misses the
    supremum (a sampled estimate, say) D can exceed L*_lambda.
    """
    engine = problem.engine
    a_, W_ = _student(problem, a, W)
    with engine.context():
        lam_ = problem.lam if lam is None else engine.scalar(lam)
        U_ = engine.scalar(U) if not isinstance(U, type(lam_)) else U
    return _engine_dual(engine, _engine_pieces(problem, a_, W_, lam_), lam_, U_)


def _choose_tol(engine: Engine, pieces: dict[str, Any], lam: Any, U: Any, gap: Any, prec: int) -> float:
    """Tolerance on U so that its error adds at most ~1% of the expected gap.

    dD/dU = -2 <r, f* - s r> s / U where s = lambda / (2 U) (near the optimum about -2 ||nu||;
    0 where the peak <r, f*> / L is the smaller),
    so tol = 0.01 gap / max(2 ||nu||, |dD/dU|).  The expected gap is the
    engine's estimate, but not below its rounding level (10 eps L_lambda: an
    estimate at or under that level is noise); the result is floored by the Arb
    precision (2^-(prec - 24) times the larger of U and sum_l |c_l| ||v_l||, the
    size of the terms whose cancellation the enclosures must resolve).
    """
    Uf, lamf = float(U), float(lam)
    floor = max(Uf, float(pieces["scale"]), 1e-300) * 2.0 ** -(prec - 24)
    expected = max(float(gap), 10 * engine.eps * abs(float(pieces["reg_loss"])))
    sens = 2 * float(pieces["mass"])
    if Uf > 0 and lamf > 0:
        s = float(dual_scale(lamf, Uf, float(pieces["rt"]), float(pieces["loss"]), 1.0))
        sens = max(sens, abs(2 * float(pieces["rt"]) - 2 * s * float(pieces["loss"])) * s / Uf)
    tol = 0.01 * expected / max(sens, 1e-300)
    return max(floor, min(tol, 0.1 * Uf if Uf > 0 else tol))


def gap_bound(problem: Problem, a: Any = None, W: Any = None, *, lam: Any = None, rigorous: bool = True,
              tol: float | None = None, max_boxes: int = 200_000, seed: int = 0, prec: int | None = None,
              max_seconds: float | None = None, max_tol: float | None = None) -> GapBound:
    """Upper bound on zeta(theta) = L_lambda(theta) - L*_lambda by duality.

    ``rigorous=True``: U certified by ``certified_sup`` and every other piece an
    Arb enclosure of the exact engine numbers (method "arb-branch-and-bound");
    if the certification is not possible the result falls back to the estimate
    and says why.  ``rigorous=False``: U from ``sup_estimate`` and engine
    arithmetic (method "estimate"), cheap enough to call during runs.
    ``tol`` (on U) defaults to ~1% of the estimated gap over its sensitivity, capped at
    ``max_tol`` when given (a caller that needs the bound to a fixed absolute accuracy, and
    also within ~1% of a small gap).
    """
    start = time.monotonic()
    engine = problem.engine
    a_, W_ = _student(problem, a, W)
    with engine.context():
        lam_ = problem.lam if lam is None else engine.scalar(lam)
    if lam_ < 0:
        raise CheckerError(f"lambda must be >= 0 for the duality bound, got {engine.to_str(lam_)}")
    prec = default_prec(engine) if prec is None else prec
    pieces = _engine_pieces(problem, a_, W_, lam_)
    maxima = local_maxima(problem, a_, W_, seed=seed)
    U_est = maxima[0][0]
    s_est, D_est = _engine_dual(engine, pieces, lam_, U_est)
    with engine.context():
        gap_est = pieces["reg_loss"] - D_est

    def estimate(why: str) -> GapBound:
        return GapBound(engine.to_str(pieces["reg_loss"]), engine.to_str(D_est), engine.to_str(gap_est),
                        engine.to_str(U_est), engine.to_str(s_est), False, "estimate",
                        f"estimate, not a bound: U = sup |g| from a multi-start local search in "
                        f"{engine.describe()} (local maxima kept: {len(maxima)}){why}",
                        0, time.monotonic() - start, "")

    if not rigorous:
        return estimate("")
    if tol is None:
        tol = _choose_tol(engine, pieces, lam_, U_est, gap_est, prec)
        tol = tol if max_tol is None else min(tol, max_tol)
    cert = certified_sup(problem, a_, W_, tol=tol, max_boxes=max_boxes, seeds=[u for _, u in maxima],
                         prec=prec, max_seconds=max_seconds)
    boxes = cert.sphere.boxes if cert.sphere is not None else 0
    if not cert.rigorous:
        est = estimate(f"; {cert.reason}")
        return GapBound(**{**asdict(est), "boxes": boxes, "tol": repr(tol), "extra": {}})
    digits = digits_for(prec)
    with ctx.workprec(prec):
        enc = loss_enclosure(problem.activation, a_, W_, problem.a_star, problem.W_star, lam_)
        lam_arb = to_arb(lam_)
        U_q = Fraction(cert.upper)  # the upper end: s must not exceed lambda / (2 sup |g|)
        U_arb = arb(U_q.numerator) / U_q.denominator
        s_q = dual_scale(lam_arb, U_arb, enc.residual_teacher, enc.loss, Fraction(1), round_down=lower_fraction)
        s = to_arb(s_q)
        dual = dual_objective(s, enc.residual_teacher, enc.loss)
        reg_up = upper_fraction(enc.reg_loss)
        dual_low = lower_fraction(dual)
    search = (f"S^{cert.search_dim - 1} (d = {problem.W_star.shape[1]})" if cert.perturbation == "0" else
              f"S^{cert.search_dim - 1} after reduction to span dimension {cert.span_dim} "
              f"(basis perturbation <= {float(Fraction(cert.perturbation)):.3g})")
    sph = cert.sphere
    detail = (f"U certified by Arb branch and bound on {search}: {boxes} boxes, depth {sph.max_level}, "
              f"tol {tol:.3g}, {sph.seconds:.2f} s, sup |g| in [{float(cert.lower):.12g}, {float(cert.upper):.12g}]"
              + ("" if sph.converged else f"; search stopped before tol ({sph.extra.get('stopped', '')})"))
    return GapBound(
        reg_loss=decimal_string(reg_up, up=True, digits=digits),
        dual=decimal_string(dual_low, up=False, digits=digits),
        gap_upper=decimal_string(reg_up - dual_low, up=True, digits=digits),
        sup_upper=cert.upper,
        scale=decimal_string(s_q, up=False, digits=digits),
        rigorous=True,
        method="arb-branch-and-bound",
        detail=detail,
        boxes=boxes,
        seconds=time.monotonic() - start,
        tol=repr(tol),
        extra={"sup_lower": cert.lower, "sup_estimate": engine.to_str(U_est),
               "gap_estimate": engine.to_str(gap_est), "search_dim": cert.search_dim,
               "span_dim": cert.span_dim, "perturbation": cert.perturbation,
               "converged": sph.converged},
    )
