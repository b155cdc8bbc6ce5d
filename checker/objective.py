"""The exact population objective and its gradients, for every engine.

With x ~ N(0, I_d), f_theta(x) = sum_j a_j sigma(<w_j, x>) and the teacher f*,

    L(theta) = E[(f_theta - f*)^2] = a^T K(W, W) a - 2 a^T K(W, W*) a* + a*^T K(W*, W*) a*,
    L_lambda(theta) = L(theta) + (lambda / 2)(||a||^2 + ||W||_F^2),

with K(U, V)_{jl} = k(u_j, v_l) from ``checker.kernel``.  No factor 1/2 in L.

Angles: with u^ = u/||u||, v^ = v/||v||, t = <u^, v^> (one Gram product for all
pairs) and the half-angle norms a = ||u^ - v^||, b = ||u^ + v^||,

    phi = 2 atan2(a, b),  sin phi = a b / 2,  cos phi = t,

which keeps full relative accuracy at t = +-1 where arccos(t) loses half the
digits (at t = 1 - 1e-18 float64 arccos returns 0 instead of ~1.4e-9).  For
|t| <= ACCURATE_T the norms come from the Gram entries, a^2 = 2 - 2t and
b^2 = 2 + 2t (unit rows; cancellation costs at most a factor 1 / (1 - ACCURATE_T)
in relative error); only the pairs with |t| > ACCURATE_T form the difference (or
sum) vector, once per unordered pair when the rows are the same set
(``half_angle_norms(symmetric=True)``), so the float64 and mp engines build no
(m, n, d) array (an engine without ``accurate_t``, such as the Arb balls of
``checker.geometry.certificate``, keeps the vector route for every pair).  The
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

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from . import kernel
from .engines import ACCURATE_T, Engine
from .errors import CheckerError


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
            f"limit of {PAIR_MEMORY_LIMIT / 2**30:.0f} GiB (checker.objective.PAIR_MEMORY_LIMIT); "
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
                     threshold: float | None = None, *, symmetric: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) = (||u^_j - v^_l||, ||u^_j + v^_l||) for all pairs, from the Gram matrix t.

    Gram route where |t| <= threshold; the difference (t > 0) or sum (t < 0)
    vector for the others, where the Gram route would cancel.  (threshold > 1
    forces the Gram route everywhere: used to measure its error.)  The default
    is the engine's ``accurate_t`` (ACCURATE_T for float64 and mp); an engine
    without it (the Arb balls of ``checker.geometry.certificate``, whose
    enclosures the Gram route would widen) takes both norms from the vectors
    for every pair, as before.

    ``symmetric``: uhat and vhat are the same rows (t is their Gram matrix).  The
    vector route then runs once per unordered pair and is mirrored (|u - v| and
    |v - u| are the same floating-point number), and a = 0 on the diagonal
    (u^ - u^ = 0 exactly); a pair takes the vector route if either of t_jl, t_lj
    is above the threshold.
    """
    if threshold is None:
        threshold = getattr(engine, "accurate_t", -1.0)
    if threshold < 0:  # both norms from the (m, n, d) vectors, for every pair
        diff = uhat[:, None, :] - vhat[None, :, :]
        summ = uhat[:, None, :] + vhat[None, :, :]
        return engine.sqrt((diff * diff).sum(axis=2)), engine.sqrt((summ * summ).sum(axis=2))
    # Unit rows: |u^|^2 = |v^|^2 = 1 up to rounding, so a^2 = 2 - 2t and b^2 = 2 + 2t carry the
    # absolute error of t alone (relative error at most ~1 / (1 - threshold) ulp on this route).
    # A zero row (u = 0, t = 0) gets a = b = sqrt 2, phi = pi/2: finite, and every use of
    # that pair is multiplied by ||u|| = 0.  abs(): the Gram route may dip below 0 where
    # |t| > threshold; those entries are replaced below.
    t2 = 2 * t
    a = engine.sqrt(abs(2 - t2))
    b = engine.sqrt(abs(2 + t2))
    close = np.asarray(abs(t) > threshold, dtype=bool)
    if symmetric:
        close |= close.T
    k = np.flatnonzero(close)
    if not len(k):
        return a, b
    n, af, bf, tf = t.shape[1], a.reshape(-1), b.reshape(-1), t.reshape(-1)  # flat views (fresh arrays)
    i, j = np.divmod(k, n)
    if symmetric:
        af[k[i == j]] = _zeros(engine, (int(np.count_nonzero(i == j)),))  # exact zeros, engine numbers
        upper = i < j
        k, i, j = k[upper], i[upper], j[upper]
    # The close pairs in chunks whose (k, d) temporaries stay small (CLOSE_PAIR_CHUNK numbers):
    # large short-lived arrays are allocated by mmap and paid for in page faults on every call.
    step = max(1, CLOSE_PAIR_CHUNK // max(1, uhat.shape[1]))
    for s in range(0, len(k), step):
        kk, ii, jj = k[s:s + step], i[s:s + step], j[s:s + step]
        pos = np.asarray(tf[kk] > 0, dtype=bool)
        D = uhat[ii] - vhat[jj] * np.where(pos, 1, -1)[:, None]  # u^ - v^ (t > 0) or u^ + v^ (t < 0)
        r = engine.sqrt((D * D).sum(axis=1))
        af[kk[pos]] = r[pos]
        bf[kk[~pos]] = r[~pos]
        if symmetric:  # the mirrored pairs (l, j)
            kt = jj * n + ii
            af[kt[pos]] = r[pos]
            bf[kt[~pos]] = r[~pos]
    return a, b


def _matmul(engine: Engine, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """X @ Y (2-D), by the engine's own matrix product if it has one (Arb)."""
    mm = getattr(engine, "matmul", None)
    return X.dot(Y) if mm is None else mm(X, Y)


def _geometry(engine: Engine, uu: Units, vu: Units, *, symmetric: bool = False) -> PairGeometry:
    """The pair geometry of the rows of uu against those of vu (``symmetric``: the same rows)."""
    nu, uhat, u_nonzero = uu
    nv, vhat, _ = vu
    t = _matmul(engine, uhat, vhat.T)
    a, b = half_angle_norms(engine, uhat, vhat, t, symmetric=symmetric)
    phi = 2 * engine.atan2(a, b)
    sin_phi = a * b / 2
    return PairGeometry(nu, nv, uhat, vhat, phi, sin_phi, t, u_nonzero)


def pair_geometry(engine: Engine, U: np.ndarray, V: np.ndarray) -> PairGeometry:
    """Norms, unit vectors and (phi, sin phi, cos phi) of every pair (u_j, v_l)."""
    check_pair_memory(engine, len(U), len(V))
    return _geometry(engine, _norms_and_units(engine, U), _norms_and_units(engine, V))


def gram_from(engine: Engine, g: PairGeometry, activation: str) -> np.ndarray:
    """K_{jl} = k(u_j, v_l) = ||u_j|| ||v_l|| kappa(phi_jl)."""
    kap = kernel.kappa(g.phi, g.sin_phi, g.cos_phi, engine.pi, activation)
    return g.nu[:, None] * g.nv[None, :] * kap


def gram_dot(engine: Engine, g: PairGeometry, activation: str, c: np.ndarray) -> np.ndarray:
    """sum_l c_l k(u_j, v_l) for every j: ||u_j|| (kappa @ (c ||v||)), one matrix-vector product."""
    kap = kernel.kappa(g.phi, g.sin_phi, g.cos_phi, engine.pi, activation)
    return g.nu * kap.dot(c * g.nv)


def grad_gram_from(engine: Engine, g: PairGeometry, activation: str) -> np.ndarray:
    """G_{jl:} = grad_u k(u_j, v_l) = ||v_l|| (A v^_l + B u^_j); zero where u_j = 0."""
    check_pair_memory(engine, len(g.nu), len(g.nv), g.uhat.shape[1], what="gradient arrays")
    A, B = kernel.grad_coefficients(g.phi, g.sin_phi, engine.pi, activation)
    G = g.nv[None, :, None] * (A[:, :, None] * g.vhat[None, :, :] + B[:, :, None] * g.uhat[:, None, :])
    return G * g.u_nonzero[:, None, None]


def grad_gram_dot(engine: Engine, g: PairGeometry, activation: str, c: np.ndarray) -> np.ndarray:
    """sum_l c_l grad_u k(u_j, v_l) for every j, as two matrix products.

    From grad_u k(u_j, v_l) = ||v_l|| (A_jl v^_l + B_jl u^_j):
    (A * (c ||v||)) @ V^ + (B @ (c ||v||)) u^_j, zero where u_j = 0.
    """
    A, B = kernel.grad_coefficients(g.phi, g.sin_phi, engine.pi, activation)
    cn = c * g.nv
    out = _matmul(engine, A * cn[None, :], g.vhat) + B.dot(cn)[:, None] * g.uhat
    return out * g.u_nonzero[:, None]


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
) -> Evaluation:
    """Exact L, L_lambda and (optionally) their gradients in (a, W).

    Call inside ``engine.context()`` when the arrays are mp numbers.  The student
    rows are processed in blocks (``PAIR_BLOCK_BYTES``); a non-finite result
    raises CheckerError.
    """
    with engine.context():
        parts = _loss_parts(_work(engine), activation, *(_to_work(engine, x) for x in (a, W, a_star, W_star)),
                            with_gradient=with_gradient)
        loss, lga, lgW = (_from_work(engine, x) for x in parts)
        # The regularizer in the engine's own numbers: dL_lambda/da_j = lam a_j exactly where dL/da_j = 0.
        reg_loss = loss + lam * regularizer(a, W)
        if not with_gradient:
            ev = Evaluation(loss, reg_loss, lga, lgW, lga, lgW)
        else:
            # Array on the left: mpf * ndarray first fails inside mpmath after formatting the
            # whole array into its error message (milliseconds), then falls back to numpy.
            ev = Evaluation(loss, reg_loss, lga + a * lam, lgW + W * lam, lga, lgW)
    return _check_finite(engine, ev)


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
        whole = rows.start == 0 and rows.stop == n  # one block: the pairs of V with itself
        geo = _geometry(engine, vu if whole else _rows(vu, rows), vu, symmetric=whole)
        Kc[rows] = gram_dot(engine, geo, activation, c)
        students = slice(rows.start, min(rows.stop, m))
        if with_gradient and students.stop > students.start:
            G = grad_gram_dot(engine, geo, activation, c)
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
