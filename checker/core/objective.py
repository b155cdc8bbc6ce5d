"""The exact population objective and its gradients, for every engine.

With x ~ N(0, I_d), f_theta(x) = sum_j a_j sigma(<w_j, x>) and the teacher f*,

    L(theta) = E[(f_theta - f*)^2] = a^T K(W, W) a - 2 a^T K(W, W*) a* + a*^T K(W*, W*) a*,
    L_lambda(theta) = L(theta) + (lambda / 2)(||a||^2 + ||W||_F^2),

with K(U, V)_{jl} = k(u_j, v_l) from ``checker.core.kernel``.  No factor 1/2 in L.

Angles: with u^ = u/||u||, v^ = v/||v||, t = <u^, v^> (one Gram product for all
pairs) and the half-angle norms a = ||u^ - v^||, b = ||u^ + v^||,

    phi = 2 atan2(a, b),  sin phi = a b / 2,  cos phi = t,

which keeps full relative accuracy at t = +-1 where arccos(t) loses half the
digits (at t = 1 - 1e-18 float64 arccos returns 0 instead of ~1.4e-9).  For
|t| <= ACCURATE_T the norms come from the Gram entries, a^2 = 2 - 2t and
b^2 = 2 + 2t (unit rows; cancellation costs at most a factor 1 / (1 - ACCURATE_T)
in relative error); only the pairs with |t| > ACCURATE_T form the difference (or
sum) vector, so the float64 and mp engines build no (m, n, d) array (an engine
without ``accurate_t``, such as the Arb balls of ``checker.geometry.certificate``,
keeps the vector route for every pair).  In ``evaluate`` the pairs of all neurons
with themselves are symmetric: the angle triple and kappa, A, B are computed once
per pair j <= l and spread to the matrices (``_packed_geometry``).  The
gradient contraction sum_l c_l grad_u k(u_j, v_l) is two matrix products
(``grad_gram_dot``), the kernel contraction one (``gram_dot``).

Unit vectors: an engine with ``row_scales`` (float64) divides each row by a
power of two near its largest entry before squaring, as a robust norm does, so
norms from 1e-300 to 1e300 keep their directions (no underflow to 0, no overflow
to inf of the squares).  A result that is still not finite (the objective itself
overflows float64) raises CheckerError naming the overflow.

Memory: ``evaluate``, ``correlation`` and ``correlation_grad`` process the
student rows in blocks whose pair arrays stay below ``PAIR_BLOCK_BYTES``; the
functions that return whole pair arrays (``gram``, ``grad_gram``,
``pair_geometry``) refuse sizes above ``PAIR_MEMORY_LIMIT`` with a CheckerError
before allocating.

Zero-norm neurons: k(0, v) = 0, so a neuron with w_j = 0 contributes nothing to
f_theta.  k is not differentiable at u = 0 (it is 1-homogeneous); we return
grad_{w_j} L = 0 there, the pathwise derivative with the convention
sigma'(0) = 0 (as automatic differentiation does), and grad_{a_j} L = 0 since
sigma(0) = 0.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from checker.core import kernel
from checker.core.engines import ACCURATE_T, Engine
from checker.core.errors import CheckerError


#: Bytes of pair arrays (all (m, n) intermediates together) a block of
#: ``evaluate`` / ``correlation`` / ``correlation_grad`` may hold at once.
PAIR_BLOCK_BYTES = 256 * 2**20
#: Functions that return whole pair arrays refuse to allocate more than this.
PAIR_MEMORY_LIMIT = 2 * 2**30
#: Numbers in one chunk of close-pair vectors in ``half_angle_norms`` (125 KiB of float64):
#: below glibc's default mmap threshold (128 KiB), so the (k, d) temporaries are reused
#: from the heap instead of being mapped, page-faulted and unmapped on every call.
CLOSE_PAIR_CHUNK = 16_000
#: (m, n) arrays alive at once inside one block (geometry, kernel, coefficients, temporaries).
_PAIR_ARRAYS = 16


@dataclass(frozen=True)
class PairGeometry:
    """Norms, unit vectors and the angle triple of every pair (u_j, v_l)."""

    nu: np.ndarray  # (m,)
    nv: np.ndarray  # (n,)
    uhat: np.ndarray  # (m, d); zero rows for zero neurons
    vhat: np.ndarray  # (n, d)
    phi: np.ndarray  # (m, n)
    sin_phi: np.ndarray
    cos_phi: np.ndarray
    u_nonzero: np.ndarray  # (m,) bool
    #: None: phi, sin_phi, cos_phi are (m, n).  Else the rows are the same set and the triple
    #: is packed, one entry per pair j <= l; full[j, l] is that pair's position.
    full: np.ndarray | None = None


def pair_bytes(engine: Engine, m: int, n: int, d: int = 0) -> int:
    """Estimated bytes of the pair arrays for m x n pairs (plus m x n x d if d > 0)."""
    per = getattr(engine, "bytes_per_number", 8)
    return int(per * m * n * (_PAIR_ARRAYS + 3 * d))


def check_pair_memory(engine: Engine, m: int, n: int, d: int = 0, *, what: str = "pair arrays") -> None:
    """Refuse (CheckerError) before allocating more than PAIR_MEMORY_LIMIT bytes of pair arrays."""
    need = pair_bytes(engine, m, n, d)
    if need > PAIR_MEMORY_LIMIT:
        raise CheckerError(
            f"{what} of {m} x {n} neuron pairs need about {need / 2**30:.1f} GiB, above the "
            f"limit of {PAIR_MEMORY_LIMIT / 2**30:.0f} GiB (checker.core.objective.PAIR_MEMORY_LIMIT); "
            "use fewer neurons")


def _row_blocks(engine: Engine, m: int, n: int) -> Iterator[slice]:
    """Slices of the m rows such that each block's pair arrays fit in PAIR_BLOCK_BYTES."""
    rows = max(1, PAIR_BLOCK_BYTES // max(1, pair_bytes(engine, 1, n)))
    if m == 0:
        yield slice(0, 0)
    for start in range(0, m, rows):
        yield slice(start, min(m, start + rows))


Units = tuple  # (norms (m,), unit rows (m, d), non-zero mask (m,)) from ``_norms_and_units``


def _norms_and_units(engine: Engine, X: np.ndarray) -> Units:
    """Row norms, unit rows (zero rows stay zero) and the non-zero mask.

    An engine with ``row_scales`` (float64) has each row divided by a power of
    two near its largest entry first, so the squares neither underflow nor
    overflow; the division and the scaling back are exact.
    """
    scales = getattr(engine, "row_scales", None)
    sq = (X * X).sum(axis=1)
    # Scaling is needed only where a square under- or overflows (or may have): float64 below
    # 1e-150 or above 1e150 in norm; otherwise the plain squares are exact to rounding.
    s = None if scales is None or len(sq) == 0 or 1e-300 < sq.min() and sq.max() < 1e300 else scales(X)
    Xs = X if s is None else X / s[:, None]
    r = engine.sqrt(sq if s is None else (Xs * Xs).sum(axis=1))
    nonzero = np.asarray(r > 0, dtype=bool)
    # A ball whose norm is neither certainly positive nor exactly zero (a wide box that reaches a
    # zero row) is not a zero neuron: it keeps its norm as the divisor, so its unit row, and every
    # number computed from it, is an indeterminate enclosure instead of a wrong finite one.
    uncertain = ~nonzero & ~np.asarray(r == 0, dtype=bool)
    if uncertain.any():
        nonzero = nonzero | uncertain
    safe = np.where(nonzero, r, 1)
    norms = r if s is None else r * s
    units = Xs / safe[:, None]
    point = getattr(engine, "point", None)  # ball engines: the midpoints, so u^ - u^ = 0 exactly
    if point is not None:
        norms, units = point(norms), point(units)
    return norms, units, nonzero


def _rows(units: Units, rows: slice) -> Units:
    return tuple(x[rows] for x in units)


def half_angle_norms(engine: Engine, uhat: np.ndarray, vhat: np.ndarray, t: np.ndarray,
                     threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) = (||u^_j - v^_l||, ||u^_j + v^_l||) for all pairs, from the Gram matrix t.

    Gram route where |t| <= threshold; the difference (t > 0) or sum (t < 0)
    vector for the others, where the Gram route would cancel.  (threshold > 1
    forces the Gram route everywhere: used to measure its error.)  The default
    is the engine's ``accurate_t`` (ACCURATE_T for float64 and mp); an engine
    without it (the Arb balls of ``checker.geometry.certificate``, whose
    enclosures the Gram route would widen) takes both norms from the vectors
    for every pair, as before.
    """
    if threshold is None:
        threshold = getattr(engine, "accurate_t", -1.0)
    if threshold < 0:  # both norms from the (m, n, d) vectors, for every pair
        diff = uhat[:, None, :] - vhat[None, :, :]
        summ = uhat[:, None, :] + vhat[None, :, :]
        return engine.sqrt((diff * diff).sum(axis=2)), engine.sqrt((summ * summ).sum(axis=2))
    n = t.shape[1]
    a, b = _half_angle_pairs(engine, uhat, vhat, t.reshape(-1), lambda k: np.divmod(k, n), threshold)
    return a.reshape(t.shape), b.reshape(t.shape)


def _half_angle_pairs(engine: Engine, uhat: np.ndarray, vhat: np.ndarray, t: np.ndarray,
                      rows_of: Any, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) for a 1-D list of pairs with Gram entries t; ``rows_of(k)`` gives their rows (j, l).

    Unit rows: |u^|^2 = |v^|^2 = 1 up to rounding, so on the Gram route a^2 = 2 - 2t
    and b^2 = 2 + 2t carry the absolute error of t alone (relative error at most
    ~1 / (1 - threshold) ulp).  A zero row (u = 0, t = 0) gets a = b = sqrt 2,
    phi = pi/2: finite, and every use of that pair is multiplied by ||u|| = 0.
    """
    numbers = t.dtype == object  # numbers with a cost per operation (mp)
    # mp: the routes chosen on float(t), one conversion per pair instead of several comparisons
    # of mp numbers (where float(t) and t fall on either side of the threshold both routes are
    # accurate; float(t) has the sign of t wherever |t| > threshold).
    tf = np.fromiter(map(float, t), dtype=float, count=len(t)) if numbers else t
    close = np.asarray(abs(tf) > threshold, dtype=bool)
    k = np.flatnonzero(close)
    if numbers:
        # Each Gram-route norm only where it is used (not for a where t > threshold, not for b
        # where t < -threshold); there 2 -+ 2t >= 2 - 2 threshold > 0, so no abs() is needed.
        a, b = np.empty(t.shape, dtype=object), np.empty(t.shape, dtype=object)
        pos = tf > 0
        ia, ib = np.flatnonzero(~(close & pos)), np.flatnonzero(~(close & ~pos))
        a[ia] = engine.sqrt(2 - 2 * t[ia])
        b[ib] = engine.sqrt(2 + 2 * t[ib])
    else:
        t2 = 2 * t
        # abs(): the Gram route may dip below 0 where |t| > threshold; those entries are replaced below.
        a = engine.sqrt(abs(2 - t2))
        b = engine.sqrt(abs(2 + t2))
    # The close pairs in chunks whose (k, d) temporaries stay small (CLOSE_PAIR_CHUNK numbers):
    # large short-lived arrays are allocated by mmap and paid for in page faults on every call.
    step = max(1, CLOSE_PAIR_CHUNK // max(1, uhat.shape[1]))
    for s in range(0, len(k), step):
        kk = k[s:s + step]
        pos = np.asarray(tf[kk] > 0, dtype=bool)
        if numbers:  # u^ - v^ (t > 0) and u^ + v^ (t < 0) apart: no product by -+1 per entry
            for kp, out, diff in ((kk[pos], a, True), (kk[~pos], b, False)):
                if len(kp):
                    j, l = rows_of(kp)
                    D = uhat[j] - vhat[l] if diff else uhat[j] + vhat[l]
                    out[kp] = engine.sqrt((D * D).sum(axis=1))
            continue
        j, l = rows_of(kk)
        D = uhat[j] - vhat[l] * np.where(pos, 1, -1)[:, None]  # u^ - v^ (t > 0) or u^ + v^ (t < 0)
        r = engine.sqrt((D * D).sum(axis=1))
        a[kk[pos]] = r[pos]
        b[kk[~pos]] = r[~pos]
    return a, b


@functools.lru_cache(maxsize=32)
def _packed_pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs j <= l of n rows as (j, l), and the (n, n) array of each pair's position in that list."""
    j, l = np.triu_indices(n)
    full = np.empty((n, n), dtype=np.intp)
    full[j, l] = full[l, j] = np.arange(len(j))
    for x in (j, l, full):
        x.flags.writeable = False  # shared by every call (cached)
    return j, l, full


@functools.lru_cache(maxsize=32)
def _packed_diagonal(n: int) -> np.ndarray:
    """The mask of the pairs (j, j) in the list of pairs j <= l of ``_packed_pairs(n)``."""
    j, l, _ = _packed_pairs(n)
    same = j == l
    same.flags.writeable = False
    return same


def _matmul(engine: Engine, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """X @ Y (2-D), by the engine's own matrix product if it has one (Arb)."""
    mm = getattr(engine, "matmul", None)
    return X.dot(Y) if mm is None else mm(X, Y)


def _geometry(engine: Engine, uu: Units, vu: Units) -> PairGeometry:
    """The pair geometry of the rows of uu against those of vu."""
    nu, uhat, u_nonzero = uu
    nv, vhat, _ = vu
    t = _matmul(engine, uhat, vhat.T)
    a, b = half_angle_norms(engine, uhat, vhat, t)
    phi = 2 * engine.atan2(a, b)
    sin_phi = a * b / 2
    return PairGeometry(nu, nv, uhat, vhat, phi, sin_phi, t, u_nonzero)


def _packed_geometry(engine: Engine, vu: Units) -> PairGeometry:
    """The pair geometry of the rows of vu with themselves, packed: each pair j <= l once.

    The angle of (v_j, v_l) is that of (v_l, v_j), so the angle triple (and every
    function of it: kappa, A, B) is computed on the n(n + 1)/2 pairs j <= l and
    spread to the (n, n) matrices by ``_unpack`` (``PairGeometry.full``).  Needs
    an engine with ``accurate_t`` (the vector route for close pairs only).
    """
    nv, vhat, nonzero = vu
    t = _matmul(engine, vhat, vhat.T)
    j, l, full = _packed_pairs(len(vhat))
    tp = t[j, l]
    a, b = _half_angle_pairs(engine, vhat, vhat, tp, lambda k: (j[k], l[k]), engine.accurate_t)
    phi = 2 * engine.atan2(a, b)
    sin_phi = a * b / 2
    return PairGeometry(nv, nv, vhat, vhat, phi, sin_phi, tp, nonzero, full)


def _unpack(g: PairGeometry, x: Any) -> Any:
    """A function of the angle triple as an (m, n) matrix (spread from the packed pairs if packed)."""
    return x if g.full is None else x[g.full]


def pair_geometry(engine: Engine, U: np.ndarray, V: np.ndarray) -> PairGeometry:
    """Norms, unit vectors and (phi, sin phi, cos phi) of every pair (u_j, v_l)."""
    check_pair_memory(engine, len(U), len(V))
    return _geometry(engine, _norms_and_units(engine, U), _norms_and_units(engine, V))


def gram_from(engine: Engine, g: PairGeometry, activation: str) -> np.ndarray:
    """K_{jl} = k(u_j, v_l) = ||u_j|| ||v_l|| kappa(phi_jl)."""
    kap = _unpack(g, kernel.kappa(g.phi, g.sin_phi, g.cos_phi, engine.pi, activation))
    return g.nu[:, None] * g.nv[None, :] * kap


def kernel_terms(engine: Engine, g: PairGeometry, activation: str) -> tuple[Any, Any, Any]:
    """(kappa, A, B) of every pair as (m, n) matrices; A, B once and kappa = B + A cos phi."""
    A, B = kernel.grad_coefficients(g.phi, g.sin_phi, engine.pi, activation)
    kap = kernel.kappa_from_coefficients(A, B, g.cos_phi)
    return _unpack(g, kap), _unpack(g, A), _unpack(g, B)


def gram_dot(engine: Engine, g: PairGeometry, activation: str, c: np.ndarray, *,
             terms: tuple[Any, Any, Any] | None = None) -> np.ndarray:
    """sum_l c_l k(u_j, v_l) for every j: ||u_j|| (kappa @ (c ||v||)), one matrix-vector product.

    ``terms``: the pairs' (kappa, A, B) from ``kernel_terms``, if already computed.
    """
    kap = (terms or kernel_terms(engine, g, activation))[0]
    return g.nu * kap.dot(c * g.nv)


def grad_gram_from(engine: Engine, g: PairGeometry, activation: str) -> np.ndarray:
    """G_{jl:} = grad_u k(u_j, v_l) = ||v_l|| (A v^_l + B u^_j); zero where u_j = 0."""
    check_pair_memory(engine, len(g.nu), len(g.nv), g.uhat.shape[1], what="gradient arrays")
    A, B = (_unpack(g, x) for x in kernel.grad_coefficients(g.phi, g.sin_phi, engine.pi, activation))
    G = g.nv[None, :, None] * (A[:, :, None] * g.vhat[None, :, :] + B[:, :, None] * g.uhat[:, None, :])
    return G * g.u_nonzero[:, None, None]


def grad_gram_dot(engine: Engine, g: PairGeometry, activation: str, c: np.ndarray, *,
                  terms: tuple[Any, Any, Any] | None = None) -> np.ndarray:
    """sum_l c_l grad_u k(u_j, v_l) for every j, as two matrix products.

    From grad_u k(u_j, v_l) = ||v_l|| (A_jl v^_l + B_jl u^_j):
    (A * (c ||v||)) @ V^ + (B @ (c ||v||)) u^_j, zero where u_j = 0.
    ``terms``: the pairs' (kappa, A, B) from ``kernel_terms``, if already computed.
    """
    if terms is None:
        A, B = (_unpack(g, x) for x in kernel.grad_coefficients(g.phi, g.sin_phi, engine.pi, activation))
    else:
        A, B = terms[1], terms[2]
    cn = c * g.nv
    out = _matmul(engine, A * cn[None, :], g.vhat) + B.dot(cn)[:, None] * g.uhat
    return out if np.all(g.u_nonzero) else out * g.u_nonzero[:, None]


def _work(engine: Engine) -> Any:
    """The engine whose numbers the pair arithmetic runs in (``engine.work``, else itself)."""
    return getattr(engine, "work", engine)


def _to_work(engine: Engine, x: Any) -> Any:
    fn = getattr(engine, "to_work", None)  # duck-typed engines (Arb balls) compute in their own numbers
    return x if fn is None else fn(x)


def _zeros(engine: Engine, shape: Any) -> np.ndarray:
    fn = getattr(engine, "zeros", None)
    return np.zeros(shape, dtype=object) if fn is None else fn(shape)


def _from_work(engine: Engine, x: Any) -> Any:
    fn = getattr(engine, "from_work", None)
    return x if fn is None else fn(x)


def gram(engine: Engine, U: np.ndarray, V: np.ndarray, activation: str) -> np.ndarray:
    """K_{jl} = k(u_j, v_l) for all rows of U and V, in the engine's numbers."""
    w = _work(engine)
    with engine.context():
        K = gram_from(w, pair_geometry(w, _to_work(engine, U), _to_work(engine, V)), activation)
        return _from_work(engine, K)


def grad_gram(engine: Engine, U: np.ndarray, V: np.ndarray, activation: str) -> np.ndarray:
    """(m, n, d) array of grad_u k(u_j, v_l), in the engine's numbers."""
    check_pair_memory(engine, len(U), len(V), U.shape[1], what="gradient arrays")
    w = _work(engine)
    with engine.context():
        G = grad_gram_from(w, pair_geometry(w, _to_work(engine, U), _to_work(engine, V)), activation)
        return _from_work(engine, G)


@dataclass(frozen=True)
class Evaluation:
    """L, L_lambda and their gradients at one point, in engine numbers."""

    loss: Any
    reg_loss: Any
    grad_a: np.ndarray  # gradient of L_lambda in a
    grad_W: np.ndarray  # gradient of L_lambda in W
    loss_grad_a: np.ndarray  # gradient of the unregularized L in a
    loss_grad_W: np.ndarray  # gradient of the unregularized L in W


def regularizer(a: np.ndarray, W: np.ndarray) -> Any:
    """(||a||^2 + ||W||_F^2) / 2; L_lambda = L + lambda * regularizer."""
    return ((a * a).sum() + (W * W).sum()) / 2


class NonFiniteResult(CheckerError):
    """The objective overflows the engine's number range from finite inputs (float64)."""


def _check_finite(engine: Engine, ev: Evaluation) -> Evaluation:
    """Raise CheckerError if a result is not finite (float64 overflow); never return inf/nan."""
    check = getattr(engine, "all_finite", None)
    if check is None:
        return ev
    # One sum first: any inf or nan entry makes it non-finite (near 1e308 it may also overflow
    # from finite entries, which is refused as well: float64 has no room left there).
    if check(ev.reg_loss + ev.loss + ev.grad_a.sum() + ev.grad_W.sum()):
        return ev
    bad = next((f for f in ("loss", "reg_loss", "grad_a", "grad_W") if not check(getattr(ev, f))), "result")
    raise NonFiniteResult(
        f"the {bad.replace('_', ' ')} overflows {engine.name} (a non-finite result from finite "
        "inputs: the numbers are too large for this engine); use --engine mp")


def evaluate(
    engine: Engine,
    activation: str,
    a: np.ndarray,
    W: np.ndarray,
    a_star: np.ndarray,
    W_star: np.ndarray,
    lam: Any,
    *,
    with_gradient: bool = True,
    teacher_work: tuple[Any, Any] | None = None,
) -> Evaluation:
    """Exact L, L_lambda and (optionally) their gradients in (a, W).

    Call inside ``engine.context()`` when the arrays are mp numbers.  The student
    rows are processed in blocks (``PAIR_BLOCK_BYTES``); a non-finite result
    raises CheckerError.  ``teacher_work``: (a*, W*) already in the engine's
    working numbers (``Problem.teacher_work``), so that they are not converted
    on every call.
    """
    with engine.context():
        aw, Ww = _to_work(engine, a), _to_work(engine, W)
        asw, Wsw = ((_to_work(engine, a_star), _to_work(engine, W_star)) if teacher_work is None
                    else teacher_work)
        # Computed in the working numbers (conversions are exact), then every result converted once.
        loss, reg_loss, ga, gW, lga, lgW = _evaluate_parts(engine, activation, aw, Ww, asw, Wsw,
                                                           _to_work(engine, lam), with_gradient)
        if not with_gradient:
            loss, reg_loss, lga, lgW = (_from_work(engine, x) for x in (loss, reg_loss, lga, lgW))
            ev = Evaluation(loss, reg_loss, lga, lgW, lga, lgW)
        else:
            ev = Evaluation(*(_from_work(engine, x) for x in (loss, reg_loss, ga, gW, lga, lgW)))
    return _check_finite(engine, ev)


def _evaluate_parts(engine: Engine, activation: str, aw: np.ndarray, Ww: np.ndarray, asw: np.ndarray,
                    Wsw: np.ndarray, lam_w: Any, with_gradient: bool) -> tuple[Any, ...]:
    """(L, L_lambda, grad L_lambda in a and W, grad L in a and W) in the working numbers."""
    w = _work(engine)
    parts = _loss_parts_matrix if getattr(w, "matrix_form", False) else _loss_parts
    loss, lga, lgW = parts(w, activation, aw, Ww, asw, Wsw, with_gradient=with_gradient)
    # The regularizer and its gradient in the same working numbers; where dL/da_j = 0,
    # dL_lambda/da_j is lam a_j rounded once at the working precision (exactly the float64 product).
    reg_loss = loss + lam_w * regularizer(aw, Ww)
    if not with_gradient:
        return loss, reg_loss, lga, lgW, lga, lgW
    # Array on the left: a number * ndarray may first fail inside the number's own
    # __mul__ (mpmath formats the whole array into its error message), then fall back.
    ga, gW = lga + aw * lam_w, lgW + Ww * lam_w
    return loss, reg_loss, ga, gW, lga, lgW


def evaluate_work(
    engine: Engine,
    activation: str,
    a: np.ndarray,
    W: np.ndarray,
    a_star: np.ndarray,
    W_star: np.ndarray,
    lam: Any,
    *,
    with_gradient: bool = True,
) -> Evaluation:
    """``evaluate`` on arrays already in the engine's working numbers, the result in them too.

    No conversion on either side: what a gradient-descent run with the iterate
    kept in the working numbers calls at every step (``MpEngine(iterate="arb")``,
    ``checker.dynamics.gd``).  The arithmetic is that of ``evaluate``:
    ``evaluate(x) = from_work(evaluate_work(to_work(x)))`` entry for entry.
    For the float64 engine (whose working numbers are its own) it is ``evaluate``.
    """
    if _work(engine) is engine:
        return evaluate(engine, activation, a, W, a_star, W_star, lam, with_gradient=with_gradient)
    with engine.context():
        return Evaluation(*_evaluate_parts(engine, activation, a, W, a_star, W_star, lam, with_gradient))


def _loss_parts_matrix(engine: Any, activation: str, a: np.ndarray, W: np.ndarray, a_star: np.ndarray,
                       W_star: np.ndarray, *, with_gradient: bool) -> tuple[Any, np.ndarray, np.ndarray]:
    """``_loss_parts`` with the pair matrices contracted as Arb matrices (``ArbWork.matrix_form``).

    The norms and unit rows are ``_loss_parts``'s (the same function); the angle
    triple of the packed pairs j <= l takes the vector route of ``_loss_parts``
    (``_half_angle_pairs``) where |t| > ``accurate_t`` and, elsewhere, the Gram
    route in one square root: sin phi = sqrt(1 - t^2), phi = atan2(sin phi, t)
    (equal to 2 atan2(a, b) and a b / 2: ``derivations/angles.py``,
    gram_route_one_root), one root and one atan2 per pair instead of two roots.
    Then, (A, B) = ``kernel.grad_coefficients`` being affine, A = A_0 + A_1 phi and
    B = B_1 sin phi (``derivations/angles.py``, coefficients_affine; A_0, A_1, B_1
    from ``kernel.grad_coefficients`` itself), with cn = c ||v||, X = cn v^ and the
    (n, n) Arb matrices Phi, Sin of phi and sin phi (``ArbWork.pair_matrix``):
    Z = A X = A_0 sum_l X_l + A_1 (Phi X) (one matrix product, n x d) and
    S = B cn = B_1 (Sin cn), and

        sum_l c_l k(v_j, v_l) = ||v_j|| (S_j + <v^_j, Z_j>),
        sum_l c_l grad_u k(v_j, v_l) = Z_j + S_j v^_j,

    from kappa = B + A cos phi (``kernel.kappa_from_coefficients``) and
    cos phi_jl = t_jl = <v^_j, v^_l>, so that neither (A, B) nor kappa is formed
    entry by entry.  The same numbers as ``_loss_parts`` up to the order of the
    roundings (tests/test_arb_iterate.py).  Instances whose pair arrays need several
    row blocks go to ``_loss_parts``.
    """
    V = np.concatenate([W, W_star], axis=0)
    c = np.concatenate([a, -a_star])
    m, n = len(a), len(V)
    if n == 0 or V.shape[1] == 0 or pair_bytes(engine, n, n) > PAIR_BLOCK_BYTES:
        return _loss_parts(engine, activation, a, W, a_star, W_star, with_gradient=with_gradient)
    nv, vhat, nonzero = _norms_and_units(engine, V)
    Vm = engine.as_matrix(vhat)
    t = engine.from_matrix(Vm * Vm.transpose())
    j, l, full = _packed_pairs(n)
    tp = t[j, l]
    # The route of each pair from float(t) (one conversion per pair instead of several Arb
    # comparisons): where float(t) and t fall on either side of the threshold, both routes are
    # accurate.  A non-zero row with itself (t > threshold, the vector route): u^ - u^ is exactly 0,
    # so a = 0, phi = 2 atan2(0, b) = 0 and sin phi = 0 b / 2 = 0 exactly; set without computing them.
    tf = np.fromiter(map(float, tp), dtype=float, count=len(tp))
    close = np.abs(tf) > engine.accurate_t
    gram, vec = np.flatnonzero(~close), np.flatnonzero(close & ~_packed_diagonal(n))
    phi, sin_phi = engine.zeros(tp.shape), engine.zeros(tp.shape)
    if len(gram):
        # Gram route in one root: sin phi = sqrt(1 - t^2) = a b / 2 and phi = atan2(sin phi, t)
        # = 2 atan2(a, b) (derivations/angles.py, gram_route_one_root); 1 - t^2 >= 1 - threshold^2.
        tg = tp[gram]
        sg = engine.sqrt(1 - tg * tg)
        phi[gram], sin_phi[gram] = engine.atan2(sg, tg), sg
    if len(vec):
        jv, lv = j[vec], l[vec]
        ah, bh = _half_angle_pairs(engine, vhat, vhat, tp[vec], lambda k: (jv[k], lv[k]), engine.accurate_t)
        # 2 atan2(a, b) and a b / 2, with the constants as engine numbers (scaling by 2 is exact:
        # the same numbers as with the integers, without converting them for every pair)
        two, half = engine.to_work(2), engine.to_work(0.5)
        phi[vec], sin_phi[vec] = engine.atan2(ah, bh) * two, ah * bh * half
    # (A, B) = kernel.grad_coefficients is affine: A = A_0 + A_1 phi, B = B_1 sin phi
    # (derivations/angles.py, coefficients_affine), so with X = cn v^ (one row per neuron)
    # Z = A X = A_0 (sum_l X_l) + A_1 (Phi X) and S = B cn = B_1 (Sin cn): the pair matrices
    # Phi, Sin enter two Arb matrix products, and no (A, B) is formed entry by entry.
    zero, one = engine.to_work(0), engine.to_work(1)
    A_0, B_1 = kernel.grad_coefficients(zero, one, engine.pi, activation)
    A_0, A_1, B_1 = A_0.mid(), (kernel.grad_coefficients(one, one, engine.pi, activation)[0] - A_0).mid(), B_1.mid()
    cn = c * nv
    X = cn[:, None] * vhat
    Z = engine.from_matrix(engine.pair_matrix(phi, full) * engine.as_matrix(X)) * A_1 + X.sum(axis=0) * A_0
    S = engine.from_matrix(engine.pair_matrix(sin_phi, full) * engine.as_matrix(cn[:, None]))[:, 0] * B_1
    Kc = nv * (S + (vhat * Z).sum(axis=1))
    lgW = engine.zeros(W.shape)
    if with_gradient and m:
        G = Z[:m] + S[:m, None] * vhat[:m]
        if not np.all(nonzero[:m]):
            G = G * nonzero[:m, None]
        lgW = 2 * a[:, None] * G
    return c.dot(Kc), (2 * Kc[:m] if with_gradient else engine.zeros(a.shape)), lgW


def _loss_parts(engine: Engine, activation: str, a: np.ndarray, W: np.ndarray, a_star: np.ndarray,
                W_star: np.ndarray, *, with_gradient: bool) -> tuple[Any, np.ndarray, np.ndarray]:
    """(L, grad_a L, grad_W L) in the working numbers of ``engine`` (zeros without gradient).

    With all neurons V = (W, W*) and c = (a, -a*), L = c^T K(V, V) c (no factor 1/2),
    grad_a L = 2 (K c)[:m] and grad_{w_j} L = 2 a_j sum_l c_l grad_u k(w_j, v_l).
    """
    V = np.concatenate([W, W_star], axis=0)
    c = np.concatenate([a, -a_star])
    m, n = len(a), len(V)
    vu = _norms_and_units(engine, V)
    Kc = engine.zeros((n,))
    lgW = engine.zeros(W.shape)
    for rows in _row_blocks(engine, n, n):
        whole = rows.start == 0 and rows.stop == n  # one block: the pairs of V with itself, packed
        packed = whole and getattr(engine, "accurate_t", -1.0) >= 0  # (engines with the vector route only)
        geo = _packed_geometry(engine, vu) if packed else _geometry(engine, _rows(vu, rows), vu)
        terms = kernel_terms(engine, geo, activation)
        Kc[rows] = gram_dot(engine, geo, activation, c, terms=terms)
        students = slice(rows.start, min(rows.stop, m))
        if with_gradient and students.stop > students.start:
            G = grad_gram_dot(engine, geo, activation, c, terms=terms)
            lgW[students] = 2 * a[students, None] * G[:students.stop - students.start]
    loss = c.dot(Kc)
    return loss, (2 * Kc[:m] if with_gradient else engine.zeros(a.shape)), lgW


def correlation(
    engine: Engine,
    activation: str,
    Q: np.ndarray,
    V: np.ndarray,
    c: np.ndarray,
) -> np.ndarray:
    """g(q) = sum_l c_l k(q, v_l) for each row q of Q (e.g. E[r(x) sigma(<q,x>)])."""
    w = _work(engine)
    with engine.context():
        Q, V, c = (_to_work(engine, x) for x in (Q, V, c))
        out = _zeros(w, (len(Q),))
        vu = _norms_and_units(w, V)
        for rows in _row_blocks(w, len(Q), len(V)):
            geo = _geometry(w, _norms_and_units(w, Q[rows]), vu)
            out[rows] = gram_dot(w, geo, activation, c)
        return _from_work(engine, out)


def correlation_grad(
    engine: Engine,
    activation: str,
    Q: np.ndarray,
    V: np.ndarray,
    c: np.ndarray,
) -> np.ndarray:
    """grad_q g(q) = sum_l c_l grad_u k(q, v_l) for each row q of Q."""
    w = _work(engine)
    with engine.context():
        Q, V, c = (_to_work(engine, x) for x in (Q, V, c))
        out = _zeros(w, Q.shape)
        vu = _norms_and_units(w, V)
        for rows in _row_blocks(w, len(Q), len(V)):
            geo = _geometry(w, _norms_and_units(w, Q[rows]), vu)
            out[rows] = grad_gram_dot(w, geo, activation, c)
        return _from_work(engine, out)


# --------------------------------------------------------------------------- a batch of students
@dataclass(frozen=True)
class BatchEvaluation:
    """L, L_lambda and their gradients at B students at once (float64 arrays, leading axis B).

    Row i is bit for bit what ``evaluate`` returns for student i alone; ``finite[i]``
    is False exactly where ``evaluate`` would raise ``NonFiniteResult`` for it.
    """

    loss: np.ndarray  # (B,)
    reg_loss: np.ndarray  # (B,)
    grad_a: np.ndarray  # (B, m): gradient of L_lambda in a
    grad_W: np.ndarray  # (B, m, d): gradient of L_lambda in W
    loss_grad_a: np.ndarray  # (B, m): gradient of the unregularized L in a
    loss_grad_W: np.ndarray  # (B, m, d)
    finite: np.ndarray  # (B,) bool

    def take(self, rows: Any) -> "BatchEvaluation":
        """The evaluations of the students ``rows`` (an index array or a boolean mask)."""
        return BatchEvaluation(*(getattr(self, f)[rows] for f in
                                 ("loss", "reg_loss", "grad_a", "grad_W", "loss_grad_a", "loss_grad_W", "finite")))

    def student(self, i: int) -> Evaluation:
        """Student i's evaluation as ``evaluate`` returns it (numpy float64 scalars and arrays)."""
        return Evaluation(self.loss[i], self.reg_loss[i], self.grad_a[i], self.grad_W[i],
                          self.loss_grad_a[i], self.loss_grad_W[i])


def evaluate_batch(
    engine: Engine,
    activation: str,
    a: np.ndarray,
    W: np.ndarray,
    a_star: np.ndarray,
    W_star: np.ndarray,
    lam: Any,
    *,
    with_gradient: bool = True,
) -> BatchEvaluation:
    """``evaluate`` for B students of the same width and teacher, a (B, m) and W (B, m, d), in one call.

    float64 engine only.  Every student goes through the very operations of
    ``evaluate`` in the same order, vectorized across the batch: the same
    elementwise arithmetic, the row reductions over the same contiguous axes,
    and the matrix products as stacked ``np.matmul``, which numpy runs as one
    BLAS call of the same kind (syrk for the Gram matrix, gemv, gemm, dot) per
    student, exactly as the 2-D ``dot`` of ``evaluate``.  So row i of the result
    is bit for bit ``evaluate`` on student i (checked by tests/test_batch.py with
    np.array_equal on random instances, close pairs, zero neurons and rows that
    need the power-of-two scaling, which is decided per student as in
    ``evaluate``).  A student whose result is not finite is flagged in
    ``finite`` instead of raising.

    Memory: the batch is cut into chunks whose pair arrays stay below
    ``PAIR_BLOCK_BYTES``.  A width whose single-student evaluation needs several
    row blocks (above about 1400 neurons with the teacher) is evaluated student
    by student with ``evaluate`` itself.
    """
    if getattr(engine, "name", None) != "float64":
        raise CheckerError(f"evaluate_batch runs in the float64 engine only, not {getattr(engine, 'name', engine)!r}")
    kernel.check_activation(activation)
    a = np.ascontiguousarray(a, dtype=float)
    W = np.ascontiguousarray(W, dtype=float)
    if a.ndim != 2 or W.ndim != 3 or W.shape[:2] != a.shape or W.shape[2] != W_star.shape[1]:
        raise CheckerError(f"evaluate_batch: expected a (B, m) and W (B, m, d) with d = {W_star.shape[1]}, "
                           f"got {a.shape} and {W.shape}")
    lam = engine.scalar(lam)
    Bn, m = a.shape
    n = m + len(W_star)
    with engine.context():
        one_block = m > 0 and max(1, PAIR_BLOCK_BYTES // max(1, pair_bytes(engine, 1, n))) >= n
        if not one_block:  # evaluate's own path has several row blocks: student by student, by evaluate
            return _batch_by_students(engine, activation, a, W, a_star, W_star, lam, with_gradient)
        per = max(1, PAIR_BLOCK_BYTES // max(1, pair_bytes(engine, n, n)))
        parts = [_batch_parts(engine, activation, a[s:s + per], W[s:s + per], a_star, W_star, lam, with_gradient)
                 for s in range(0, Bn, per)] if Bn else []
    if len(parts) == 1:
        return parts[0]
    if not parts:
        z = np.zeros((0,))
        return BatchEvaluation(z, z, a.copy(), W.copy(), a.copy(), W.copy(), np.zeros((0,), dtype=bool))
    return BatchEvaluation(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                             ("loss", "reg_loss", "grad_a", "grad_W", "loss_grad_a", "loss_grad_W", "finite")))


def _batch_by_students(engine: Engine, activation: str, a: np.ndarray, W: np.ndarray, a_star: np.ndarray,
                       W_star: np.ndarray, lam: float, with_gradient: bool) -> BatchEvaluation:
    """The batch evaluated student by student with ``evaluate`` (widths beyond one row block)."""
    Bn, m = a.shape
    out = {f: np.zeros(s) for f, s in (("loss", (Bn,)), ("reg_loss", (Bn,)), ("grad_a", a.shape),
                                       ("grad_W", W.shape), ("loss_grad_a", a.shape), ("loss_grad_W", W.shape))}
    finite = np.ones(Bn, dtype=bool)
    for i in range(Bn):
        try:
            ev = evaluate(engine, activation, a[i], W[i], a_star, W_star, lam, with_gradient=with_gradient)
        except NonFiniteResult:
            finite[i] = False
            out["loss"][i] = out["reg_loss"][i] = math.nan
            continue
        for f in out:
            out[f][i] = getattr(ev, f)
    return BatchEvaluation(**out, finite=finite)


def _batch_norms_and_units(engine: Engine, X: np.ndarray) -> Units:
    """``_norms_and_units`` for each student of X (B, n, d); the scaling decided per student."""
    sq = (X * X).sum(axis=2)
    if sq.shape[1] == 0:
        scaled = np.zeros(len(X), dtype=bool)
    else:
        scaled = ~((1e-300 < sq.min(axis=1)) & (sq.max(axis=1) < 1e300))  # evaluate's test, per student
    if scaled.any():
        # Students that need no scaling get s = 1: X / 1, r * 1 and the squares are then exactly
        # evaluate's unscaled numbers.
        s = np.ones(sq.shape)
        s[scaled] = engine.row_scales(X[scaled].reshape(-1, X.shape[2])).reshape(-1, X.shape[1])
        Xs = X / s[:, :, None]
        r = engine.sqrt((Xs * Xs).sum(axis=2))
        norms = r * s
    else:
        Xs, r = X, engine.sqrt(sq)
        norms = r
    nonzero = np.asarray(r > 0, dtype=bool)
    safe = np.where(nonzero, r, 1)
    return norms, Xs / safe[:, :, None], nonzero


def _batch_parts(engine: Engine, activation: str, a: np.ndarray, W: np.ndarray, a_star: np.ndarray,
                 W_star: np.ndarray, lam: float, with_gradient: bool) -> BatchEvaluation:
    """One chunk of ``evaluate_batch``: ``evaluate`` -> ``_loss_parts`` (packed, one block), batched."""
    Bn, m = a.shape
    d = W.shape[2]
    # Row-major arrays throughout (np.concatenate with a broadcast teacher may pick column-major, and
    # matmul on other layouts leaves BLAS for loops that round differently from evaluate's dot).
    n = m + len(W_star)
    V = np.empty((Bn, n, d))
    V[:, :m], V[:, m:] = W, W_star
    c = np.empty((Bn, n))
    c[:, :m], c[:, m:] = a, -a_star
    nv, vhat, nonzero = _batch_norms_and_units(engine, V)
    # _packed_geometry
    t = np.matmul(vhat, vhat.transpose(0, 2, 1))  # per student the syrk of vhat.dot(vhat.T)
    j, l, full = _packed_pairs(n)
    P = len(j)
    tp = np.take(t.reshape(Bn, n * n), j * n + l, axis=1)
    # _half_angle_pairs (float64 branch), on the flat list of all students' pairs
    tf = tp.reshape(-1)
    threshold = engine.accurate_t
    close = np.asarray(abs(tf) > threshold, dtype=bool)
    # A neuron with itself (j = l, t > threshold): evaluate's vector u^ - u^ is exactly 0, so a = +0
    # (set directly, without forming the vector); a zero neuron has t = 0 and stays on the Gram route.
    diag = np.tile(j == l, Bn)
    k = np.flatnonzero(close & ~diag)
    t2 = 2 * tf
    ah = engine.sqrt(abs(2 - t2))
    bh = engine.sqrt(abs(2 + t2))
    flat_v = vhat.reshape(-1, d)
    step = max(1, CLOSE_PAIR_CHUNK // max(1, d))
    for s in range(0, len(k), step):
        kk = k[s:s + step]
        bi, pi_ = np.divmod(kk, P)
        pos = np.asarray(tf[kk] > 0, dtype=bool)
        D = flat_v[bi * n + j[pi_]] - flat_v[bi * n + l[pi_]] * np.where(pos, 1, -1)[:, None]
        r = engine.sqrt((D * D).sum(axis=1))
        ah[kk[pos]] = r[pos]
        bh[kk[~pos]] = r[~pos]
    ah[close & diag & (tf > 0)] = 0.0
    ah, bh = ah.reshape(Bn, P), bh.reshape(Bn, P)
    phi = 2 * engine.atan2(ah, bh)
    sin_phi = ah * bh / 2
    # kernel_terms
    A, Bc = kernel.grad_coefficients(phi, sin_phi, engine.pi, activation)
    kap = kernel.kappa_from_coefficients(A, Bc, tp)
    # Row-major (B, n, n) as evaluate's (n, n) matrices: the fancy index alone gives another memory
    # layout, for which matmul takes a route other than evaluate's BLAS call (other roundings).
    kap, A, Bc = (np.take(x, full, axis=1) for x in (kap, A, Bc))
    # gram_dot: nu * kap.dot(c * nv)
    Kc = nv * np.matmul(kap, (c * nv)[:, :, None])[:, :, 0]
    if with_gradient:
        # grad_gram_dot: (A * cn) @ V^ + (B @ cn) u^, times the non-zero mask (x 1 is exact)
        cn = c * nv
        G = np.matmul(A * cn[:, None, :], vhat) + np.matmul(Bc, cn[:, :, None])[:, :, 0][:, :, None] * vhat
        G = G * nonzero[:, :, None]
        lgW = 2 * a[:, :, None] * G[:, :m]
        lga = 2 * Kc[:, :m]
    else:
        lgW, lga = np.zeros(W.shape), np.zeros(a.shape)
    loss = np.matmul(c[:, None, :], Kc[:, :, None])[:, 0, 0]  # c.dot(Kc)
    # evaluate: the regularizer ((a a).sum() + (W W).sum()) / 2 and the gradients of L_lambda
    reg_loss = loss + lam * (((a * a).sum(axis=1) + (W * W).sum(axis=(1, 2))) / 2)
    if with_gradient:
        ga, gW = lga + a * lam, lgW + W * lam
    else:
        ga, gW = lga, lgW
    # _check_finite: evaluate raises iff this one sum is not finite
    finite = np.isfinite(reg_loss + loss + ga.sum(axis=1) + gW.sum(axis=(1, 2)))
    return BatchEvaluation(loss, reg_loss, ga, gW, lga, lgW, finite)
