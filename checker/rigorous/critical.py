"""Certified stationary points of L_lambda (Arb balls): existence, uniqueness, kind and gap.

Around a numerical stationary point x~ of the trained block (``checker.stationary.critical``),
with X = x~ + [-r, r]^n (max-norm radius r, the fixed block held at its numbers):

1. **Existence and uniqueness** (Krawczyk): with Y ~ H(x~)^{-1} (a float64 point matrix),
   g the gradient of L_lambda in the trained block and H(X) the Arb enclosure of its
   Hessian over the whole box (``checker.core.hessian`` on balls),

       K(X) = x~ - Y g(x~) + (I - Y H(X)) (X - x~).

   K(X) inside the interior of X proves that X holds exactly one zero of g
   (Krawczyk 1969; Moore 1977).  H(X) is an enclosure of the Hessian of every point of X
   only where L is twice differentiable on all of X: a box reaching a zero student neuron
   (w_j = 0) is refused (``rigorous: false`` with the reason) unless only a trains.
2. **The smallest eigenvalue over the box**: sigma is a certified lower bound when
   Q^T (H(X) - sigma I) Q, Q the float eigenvectors of the centre's Hessian, is certainly
   strictly diagonally dominant with a positive diagonal (Arb matrix products; by
   Sylvester's law of inertia every symmetric matrix in H(X) is then above sigma I), or
   else when the Arb LDL^T factorization of H(X) - sigma I has all pivots certainly
   positive; sigma is the float estimate of the smallest eigenvalue at the centre minus
   a margin, the largest of a few tried.  Positive: L_lambda is strictly convex on X, and the unique stationary
   point is a strict local minimum (proved).  An upper bound comes from the Rayleigh
   quotient v^T H(X) v / v^T v of the centre's lowest eigenvector: negative proves a saddle.
3. **Enclosures** of L and L_lambda over X (hence at the stationary point).
4. **Spurious**: the certified lower end of L_lambda is above a certified upper end U of
   the optimum of the problem being solved (the trained blocks at this width, the fixed
   block held).  Then the stationary point is not a global minimum of that problem, and
   gap_lower = L_lambda(lower) - U is a lower bound on its gap to it and on its gap to the
   paper's L*_lambda (an infimum over more parameters, so at most U).  U is supplied by the
   caller (``optimum_upper``: e.g. the upper end of ``checker.rigorous.optimum``'s
   enclosure when the reduced optimum fits the width and both layers train) or, for
   lambda = 0, is 0 when the trained layers can realize the teacher at this width
   (``realizable``): train both with m >= m*; train first when the fixed output weights
   have at least as many of each sign as the teacher's (a_j sigma(<w_j, x>) with
   w_j = (|a*_i| / |a_j|) w*_i is the teacher neuron i, the other w_j = 0); train second
   when every teacher neuron is an exact positive multiple of a student row.  Otherwise
   ``spurious`` is null (not decided).  With train = "second" the problem is convex in a,
   so every stationary point is a global minimum of it: spurious is false.

Numbers: the centre, the teacher and lambda are the engine's numbers, converted to Arb
exactly; the certificate is about the instance as read by that engine.  No function here
changes the global Arb precision (``flint.ctx.workprec`` scoped).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from flint import arb, arb_mat, ctx

from checker.core import hessian as hs
from checker.core import objective
from checker.core.problem import Problem
from .arb_objective import (_positive_definite, decimal_string, digits_for, lower_fraction, to_arb,
                            upper_fraction)

#: Largest radius tried for the Krawczyk box (max norm, relative to 1 + ||x~||_max).
MAX_RADIUS = 1e-2


class BallEngine:
    """Duck-typed engine on numpy object arrays of python-flint ``arb`` balls (rigorous).

    What ``checker.core.objective`` and ``checker.core.hessian`` need: sqrt of the
    non-negative part (a sum of squares whose ball dips below 0 stays an enclosure),
    atan2, pi, zeros, and ``unit_tangents`` (a tangent whose sin phi may vanish is
    enclosed by [-1, 1] per component).  No ``accurate_t`` and no ``point``: every
    angle takes the vector route and every radius is kept.
    """

    name = "arb-ball"
    one = arb(1)

    def __init__(self) -> None:
        self.sqrt = np.frompyfunc(lambda x: x.nonnegative_part().sqrt(), 1, 1)
        self.atan2 = np.frompyfunc(arb.atan2, 2, 1)

    @property
    def pi(self) -> Any:
        return arb.pi()

    def context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def zeros(self, shape: Any) -> np.ndarray:
        out = np.empty(shape, dtype=object)
        out.fill(arb(0))
        return out

    def unit_tangents(self, P: np.ndarray, sin_phi: np.ndarray) -> np.ndarray:
        out = np.empty(P.shape, dtype=object)
        unit = arb(0, 1)
        for idx in np.ndindex(sin_phi.shape):
            s = sin_phi[idx]
            if s > 0:
                out[idx] = np.array([(p / s).intersection(unit) for p in P[idx]], dtype=object)
            else:
                out[idx] = np.array([unit] * P.shape[-1], dtype=object)
        return out


def _arb_array(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for idx, v in np.ndenumerate(arr):
        out[idx] = to_arb(v)
    return out


def _interval(x: arb, digits: int) -> list[str]:
    return [decimal_string(lower_fraction(x), up=False, digits=digits),
            decimal_string(upper_fraction(x), up=True, digits=digits)]


@dataclass
class CriticalCertificate:
    """What ``certify`` proved (decimal strings rounded outward), or why it could not."""

    rigorous: bool
    why: str | None = None
    radius: str | None = None  # max-norm half-width of the box
    unique_stationary_point: bool = False
    min_eigenvalue_lower: str | None = None
    min_eigenvalue_upper: str | None = None
    strict_local_minimum: bool = False
    saddle: bool = False
    loss_enclosure: list[str] | None = None
    reg_loss_enclosure: list[str] | None = None
    optimum_upper: str | None = None
    optimum_reference: str | None = None
    gap_lower: str | None = None
    #: L_lambda(upper) - (a certified lower end of the optimum): the gap is at most this
    gap_upper: str | None = None
    spurious: bool | None = None
    prec: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reg_loss_upper(problem: Problem, a: Any = None, W: Any = None, *, prec: int = 128) -> str:
    """A certified upper end of L_lambda at (a, W) (default: the problem's student), as a decimal
    string rounded up; the engine numbers are read exactly.  The optimum of a problem is an infimum
    of L_lambda over its parameters, so any point's value bounds it above."""
    from .arb_objective import loss_enclosure

    a = problem.a if a is None else a
    W = problem.W if W is None else W
    with ctx.workprec(prec):
        enc = loss_enclosure(problem.activation, a, W, problem.a_star, problem.W_star, problem.lam)
        return decimal_string(upper_fraction(enc.reg_loss), up=True, digits=digits_for(prec))


def realizable(problem: Problem, train: str) -> tuple[bool, str]:
    """(True, how) when the trained layers at this width can realize the teacher exactly (L = 0)."""
    m, ms = len(problem.a), len(problem.a_star)
    if train == "both":
        if m >= ms:
            return True, f"both layers train and m = {m} >= m* = {ms}: the student can copy the teacher"
        return False, f"m = {m} < m* = {ms}"
    if train == "first":
        a = [float(x) for x in problem.a]
        t = [float(x) for x in problem.a_star]
        pos, neg = sum(x > 0 for x in a), sum(x < 0 for x in a)
        tpos, tneg = sum(x > 0 for x in t), sum(x < 0 for x in t)
        if pos >= tpos and neg >= tneg:
            return True, ("the fixed output weights have at least as many of each sign as the teacher's: "
                          "w_j = (|a*_i| / |a_j|) w*_i realizes each teacher neuron, the other w_j = 0")
        return False, (f"the fixed output weights have {pos} positive and {neg} negative entries, the "
                       f"teacher's {tpos} and {tneg}: no sign-matching copy of the teacher")
    # second: W fixed; exact positive multiples only
    def frac_row(r: Any) -> list[Fraction]:
        return [lower_fraction(to_arb(x)) for x in r]  # engine numbers are binary: exact
    W = [frac_row(r) for r in problem.W]
    for ws in problem.W_star:
        v = frac_row(ws)
        if not any(_positive_multiple(v, u) for u in W):
            return False, "a teacher neuron is not an exact positive multiple of a fixed student row"
    return True, "every teacher neuron is an exact positive multiple of a fixed student row"


def _positive_multiple(v: list[Fraction], u: list[Fraction]) -> bool:
    k = next((i for i, x in enumerate(u) if x != 0), None)
    if k is None:
        return False
    t = v[k] / u[k]
    return t > 0 and all(x == t * y for x, y in zip(v, u))


@dataclass
class KrawczykResult:
    """One Krawczyk test on the box x~ + [-r, r]^n."""

    contained: bool
    radius: float
    excess: float  # max_i |K_i - x~_i|_upper / r (below 1: contained)
    H: np.ndarray | None  # the ball Hessian over the box (None if not twice differentiable)
    why: str | None = None


def _box(center: np.ndarray, r: float) -> np.ndarray:
    rad = arb(0, r)
    return np.array([c + rad for c in center], dtype=object)


def krawczyk(problem: Problem, a: Any, W: Any, *, train: str, lam: Any, r: float,
             Y: np.ndarray | None = None, g: np.ndarray | None = None) -> KrawczykResult:
    """The Krawczyk test on X = x~ + [-r, r]^n at the current Arb precision.

    ``a``, ``W``: the centre (engine numbers, converted exactly); ``Y``: a float64
    approximate inverse of the Hessian at the centre (default: computed); ``g``: the
    ball gradient at the centre (default: computed).
    """
    eng = BallEngine()
    a0, W0, As, Ws = _arb_array(a), _arb_array(W), _arb_array(problem.a_star), _arb_array(problem.W_star)
    lam_b = to_arb(lam)
    x0 = hs.flatten(a0, W0, train)
    n = len(x0)
    if g is None:
        ev = objective.evaluate(eng, problem.activation, a0, W0, As, Ws, lam_b)
        g = hs.gradient_vector(ev, train)
    if Y is None:
        Hc = hs.loss_hessian(eng, problem.activation, a0, W0, As, Ws, lam_b, train)
        Y = np.linalg.inv(np.array([[float(x.mid()) for x in row] for row in Hc]))
    ab, Wb = hs.unflatten(_box(x0, r), a0, W0, train)
    try:
        HX = hs.loss_hessian(eng, problem.activation, ab, Wb, As, Ws, lam_b, train)
    except hs.NotTwiceDifferentiable as exc:
        return KrawczykResult(False, r, float("inf"), None, f"the box of radius {r:.3g} reaches a zero neuron: {exc}")
    Ym = arb_mat([[arb(float(v)) for v in row] for row in Y])
    Hm = arb_mat(HX.tolist())
    Z = arb_mat(n, n)
    YH = Ym * Hm
    for i in range(n):
        for j in range(n):
            Z[i, j] = (1 if i == j else 0) - YH[i, j]
    dev = arb_mat([[arb(0, r)] for _ in range(n)])
    K = -(Ym * arb_mat([[v] for v in g])) + Z * dev
    worst = max(float(K[i, 0].abs_upper()) for i in range(n)) if n else 0.0
    contained = all(K[i, 0].abs_upper() < r for i in range(n))
    return KrawczykResult(contained, r, worst / r, HX)


def _congruent_dominant(Hm: arb_mat, Qm: arb_mat, QtQ: arb_mat, sigma: arb, n: int) -> bool:
    """True only if Q^T (H - sigma I) Q is certainly strictly diagonally dominant with a positive diagonal
    for every H in the ball matrix ``Hm``.  Then Q^T (H - sigma I) Q is positive definite, so Q is
    non-singular and, by Sylvester's law of inertia, H - sigma I is positive definite."""
    M = Qm.transpose() * Hm * Qm
    for i in range(n):
        row = arb(0)
        for j in range(n):
            if j != i:
                row += abs(M[i, j] - sigma * QtQ[i, j])
        if not (M[i, i] - sigma * QtQ[i, i] - row) > 0:
            return False
    return True


def _lower_eigen_bound(H: np.ndarray) -> tuple[arb | None, np.ndarray, float]:
    """(certified sigma <= lambda_min over the ball matrix, or None; float eigenvector; estimate).

    sigma = (float estimate) - margin is proved by diagonal dominance of Q^T (H(X) - sigma I) Q
    with Q the float eigenvectors of the midpoint (Arb matrix products; ``_congruent_dominant``),
    else by an Arb LDL^T of H(X) - sigma I (``arb_objective._positive_definite``).
    """
    n = len(H)
    mid = np.array([[float(x.mid()) for x in row] for row in H])
    w, V = np.linalg.eigh((mid + mid.T) / 2)
    est = float(w[0])
    rad = max(float(x.rad()) for row in H for x in row)
    scale = float(np.max(np.abs(w))) or 1.0
    Hm = arb_mat(H.tolist())
    Qm = arb_mat([[arb(float(x)) for x in row] for row in V])
    QtQ = Qm.transpose() * Qm
    delta = 2 * n * rad + 1e-13 * scale
    for _ in range(12):
        sigma = arb(est - delta)  # a float: exact
        if _congruent_dominant(Hm, Qm, QtQ, sigma, n):
            return sigma, V[:, 0], est
        delta *= 8
    rows = [list(r) for r in H]
    delta = 2 * n * rad + 1e-13 * scale
    for _ in range(12):
        sigma = arb(est - delta)
        if _positive_definite([[rows[i][j] - (sigma if i == j else 0) for j in range(n)] for i in range(n)]):
            return sigma, V[:, 0], est
        delta *= 8
    return None, V[:, 0], est


def certify(problem: Problem, a: Any = None, W: Any = None, *, train: str = "both", lam: Any = None,
            radius: float | None = None, prec: int | None = None, optimum_upper: Any = None,
            optimum_lower: Any = None, optimum_reference: str | None = None) -> CriticalCertificate:
    """Certify the stationary point near (a, W) (engine numbers); see the module docstring.

    ``radius``: try only this box radius (default: from 4 ||Y g|| up by factors of 8 to
    MAX_RADIUS (1 + ||x~||)).  ``prec``: Arb bits (default: 128 for float64, the mp
    engine's working precision + 64).  ``optimum_upper``: a certified upper end of the
    optimum of the trained problem (decimal string or number); default 0 when lambda = 0
    and ``realizable``.  ``optimum_lower``: a certified lower end of that optimum (default 0
    when lambda = 0, since L >= 0), which gives ``gap_upper``.
    """
    hs.check_train(train)
    e = problem.engine
    a = problem.a if a is None else a
    W = problem.W if W is None else W
    lam = problem.lam if lam is None else lam
    if prec is None:
        prec = getattr(e, "work_prec", 64) + 64
    t0 = time.perf_counter()
    secs: dict[str, float] = {}
    digits = digits_for(prec)
    with ctx.workprec(prec):
        eng = BallEngine()
        a0, W0 = _arb_array(a), _arb_array(W)
        As, Ws = _arb_array(problem.a_star), _arb_array(problem.W_star)
        lam_b = to_arb(lam)
        x0 = hs.flatten(a0, W0, train)
        try:
            Hc = hs.loss_hessian(eng, problem.activation, a0, W0, As, Ws, lam_b, train)
        except hs.NotTwiceDifferentiable as exc:
            return CriticalCertificate(False, why=str(exc), prec=prec)
        ev = objective.evaluate(eng, problem.activation, a0, W0, As, Ws, lam_b)
        g = hs.gradient_vector(ev, train)
        Hmid = np.array([[float(x.mid()) for x in row] for row in Hc])
        try:
            Y = np.linalg.inv(Hmid)
        except np.linalg.LinAlgError:
            return CriticalCertificate(False, why="the Hessian at the point is singular (a degenerate point): "
                                                  "no isolated stationary point to certify", prec=prec)
        secs["centre"] = time.perf_counter() - t0
        gmid = np.array([float(v.mid()) for v in g])
        grad_rad = max((float(v.rad()) for v in g), default=0.0)
        step = float(np.max(np.abs(Y.dot(gmid)))) if len(g) else 0.0
        xmax = max((abs(float(v.mid())) for v in x0), default=0.0)
        radii = [radius] if radius is not None else []
        if radius is None:
            r = max(4 * step, 4 * grad_rad * float(np.max(np.abs(Y))), 2.0 ** (-prec // 2) * (1 + xmax))
            while r <= MAX_RADIUS * (1 + xmax):
                radii.append(r)
                r *= 8
        t1 = time.perf_counter()
        result = None
        for r in radii:
            kr = krawczyk(problem, a, W, train=train, lam=lam, r=r, Y=Y, g=g)
            if kr.H is None:
                return CriticalCertificate(False, why=kr.why, prec=prec)
            if kr.contained:
                result = kr
                break
        secs["krawczyk"] = time.perf_counter() - t1
        if result is None:
            return CriticalCertificate(False, why=f"the Krawczyk test failed on every box tried (radii "
                                                  f"{radii[0]:.3g} .. {radii[-1]:.3g})" if radii else
                                       "no box radius to try", prec=prec, seconds=secs)
        t2 = time.perf_counter()
        sigma, v, _ = _lower_eigen_bound(result.H)
        vb = [arb(float(x)) for x in v]
        n = len(vb)
        q = arb(0)
        for i in range(n):
            row = result.H[i]
            q += vb[i] * sum((row[j] * vb[j] for j in range(n)), arb(0))
        vv = sum((x * x for x in vb), arb(0))
        rayleigh = q / vv
        secs["eigenvalue"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        ab, Wb = hs.unflatten(_box(x0, result.radius), a0, W0, train)
        box_ev = objective.evaluate(eng, problem.activation, ab, Wb, As, Ws, lam_b, with_gradient=False)
        loss_b = box_ev.loss.nonnegative_part() if hasattr(box_ev.loss, "nonnegative_part") else box_ev.loss
        reg_b = box_ev.reg_loss
        secs["enclosures"] = time.perf_counter() - t3
        cert = CriticalCertificate(
            True, radius=decimal_string(Fraction(result.radius), up=True, digits=17),
            unique_stationary_point=True,
            min_eigenvalue_lower=None if sigma is None else decimal_string(lower_fraction(sigma), up=False,
                                                                           digits=digits),
            min_eigenvalue_upper=decimal_string(upper_fraction(rayleigh), up=True, digits=digits),
            strict_local_minimum=sigma is not None and sigma > 0,
            saddle=bool(rayleigh < 0),
            loss_enclosure=_interval(loss_b, digits), reg_loss_enclosure=_interval(reg_b, digits),
            prec=prec)
        # --- spurious
        if train == "second":
            cert.spurious = False
            cert.optimum_reference = ("train = second: L_lambda is convex in a, every stationary point is a "
                                      "global minimum of the trained problem")
        else:
            U = None
            if optimum_upper is not None:
                U = arb(str(optimum_upper)) if isinstance(optimum_upper, str) else to_arb(optimum_upper)
                cert.optimum_reference = optimum_reference or "supplied upper end of the optimum"
            elif float(lam) == 0:
                ok, how = realizable(problem, train)
                if ok:
                    U = arb(0)
                    cert.optimum_reference = f"lambda = 0 and the teacher is realizable: optimum 0 ({how})"
                else:
                    cert.optimum_reference = f"lambda = 0 but realizability unknown ({how}): not decided"
            else:
                cert.optimum_reference = "no certified upper end of the optimum supplied: not decided"
            lower = None
            if optimum_lower is not None:
                lower = arb(str(optimum_lower)) if isinstance(optimum_lower, str) else to_arb(optimum_lower)
            elif float(lam) == 0:
                lower = arb(0)
            if lower is not None:
                cert.gap_upper = decimal_string(upper_fraction(reg_b - lower), up=True, digits=digits)
            if U is not None:
                cert.optimum_upper = decimal_string(upper_fraction(U), up=True, digits=digits)
                gap = reg_b - U
                if gap > 0:  # the certified stationary point is not a global minimum
                    cert.spurious = True
                    cert.gap_lower = decimal_string(lower_fraction(gap), up=False, digits=digits)
        secs["total"] = time.perf_counter() - t0
        cert.seconds = secs
        return cert
