"""The exact Hessian of L and L_lambda in theta = (a, vec W), for every number type.

Parameter vector (used everywhere in the checker: ``checker.landscape``,
``checker.rigorous.critical``, the JSON of ``checker.critical``)::

    theta = (a_1, ..., a_m, w_1[0], ..., w_1[d-1], w_2[0], ..., w_m[d-1])

i.e. a first, then W row-major: a_j is index j, w_j[k] is index m + j d + k.  The
trained block (``train``) keeps that order: "both" is all of theta, "first" only
the W part (indices m ..), "second" only the a part (indices 0 .. m-1)
(``parameter_indices``, ``flatten``, ``unflatten``).

Pair second derivatives.  k(u, v) = ||u|| ||v|| kappa(phi), grad_u k = ||v|| (A v^ + B u^)
(``checker.core.kernel``).  In both activations dA/dphi = -C and B = C sin phi with the
constant C = 1/(2 pi) (relu), 2/pi (abs) (``curvature_coefficient``); with P = I - u^ u^T,
Q = I - v^ v^T and the unit tangents e_u = P v^ / sin phi (at u^, towards v^) and
e_v = Q u^ / sin phi (at v^, towards u^):

    d^2 k / du du^T = (||v|| B / ||u||) (P + e_u e_u^T),
    d^2 k / du dv^T = A I + B (u^ v^T + e_u e_v^T)          (symmetric: = d^2 k / dv du^T),
    d^2 k / dv dv^T = (||u|| B / ||v||) (Q + e_v e_v^T).

(derivations/hessian.py proves each block equal to the derivatives of the closed form.)
The textbook forms carry (A' v^ + B' u^)(P v^)^T / sin phi; here A' v^ + B' u^ = -C P v^,
so the only quotient left is the unit tangent e = P v^ / sin phi, always multiplied by
B = C sin phi.  At a collinear pair (phi = 0 or pi) e is undefined but bounded
(|e_i| <= 1) and its factor B vanishes: the blocks are finite and continuous there
(d^2k/du du^T -> 0, d^2k/du dv^T -> A(phi) I), and k is C^2 at collinear pairs (kappa
has a phi^3 term at phi = 0, a (pi - phi)^3 term at pi, for relu; abs is
2 (k_relu(u, v) + k_relu(u, -v)), so the same holds).  The code divides by
sin phi only where it is certainly positive (``unit_tangents``): elsewhere the tangent
is 0 for point numbers (float64, mp, SymPy zero) and the ball [-1, 1] per component
for Arb balls whose sin phi may vanish (a box reaching a collinear pair); both are
exact or enclosures of B e e^T since B is 0 or enclosed near 0 there.

Where L is not twice differentiable: at a zero student neuron w_j = 0 (k is
1-homogeneous in u: d^2k/du du^T grows like 1/||u|| and the gradient's direction
has no limit), for relu and abs alike; nowhere else.  ``loss_hessian`` refuses
(``NotTwiceDifferentiable``) a point with a zero neuron, or a box of balls whose neuron
norm is not certainly positive, unless only the output weights train (``train="second"``:
the Hessian in a is 2 K(W, W), smooth).

Assembly.  With V = (W, W*), c = (a, -a*), L = c^T K(V, V) c, G_jq = grad_u k(w_j, v_q):

    d^2 L / da_j da_l   = 2 k(w_j, w_l),
    d^2 L / da_j dw_l   = 2 delta_jl sum_q c_q G_jq + 2 a_l G_lj,
    d^2 L / dw_j dw_l^T = 2 a_j a_l d^2k(w_j, w_l)/du dv^T
                          + delta_jl 2 a_j sum_q c_q d^2k(w_j, v_q)/du du^T,

and L_lambda adds lambda I.  The self pair (q = j) has its angle triple set to
(0, 0, 1) exactly, which makes the formulas exact there (its d^2k/du du^T is 0 and
its d^2k/du dv^T is A(0) I, which sum with the transpose to 2 kappa(0) I, the
Hessian of ||w||^2 kappa(0)).

Number types.  ``hessian_from`` is written once with + - * / on numpy arrays: it runs on
float64 arrays, object arrays of mpmath numbers or Arb midpoints (the mp engine's working
numbers), object arrays of python-flint ``arb`` balls (``checker.rigorous.critical``, with
an engine providing ``unit_tangents``) and of SymPy expressions (derivations/hessian.py).
The pair geometry is ``checker.core.objective``'s (stable half-angle route).  Cost: the
arrays are (m, m + m*, d, d) at most; m = m* = d = 10 (110 x 110) takes 0.5 ms in float64
(benchmarks/bench_hessian.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from checker.core import kernel, objective
from checker.core.errors import CheckerError

#: Trained blocks (the same names as ``checker.dynamics.gd.TRAIN_CHOICES``).
TRAIN_CHOICES = ("both", "first", "second")


class NotTwiceDifferentiable(CheckerError):
    """The point has a zero student neuron and W trains: L has no Hessian there."""


def check_train(train: str) -> str:
    if train not in TRAIN_CHOICES:
        raise CheckerError(f"train must be one of {', '.join(TRAIN_CHOICES)}, got {train!r}")
    return train


# --------------------------------------------------------------------------- parameter vector
def parameter_indices(m: int, d: int, train: str = "both") -> np.ndarray:
    """Indices in theta = (a, vec W) (a first, W row-major) of the trained parameters."""
    check_train(train)
    if train == "both":
        return np.arange(m * (d + 1))
    if train == "first":
        return np.arange(m, m * (d + 1))
    return np.arange(m)


def flatten(a: np.ndarray, W: np.ndarray, train: str = "both") -> np.ndarray:
    """The trained block of theta = (a_1..a_m, w_1, ..., w_m) as one vector (engine numbers)."""
    check_train(train)
    parts = ([a] if train != "first" else []) + ([np.asarray(W).reshape(-1)] if train != "second" else [])
    return np.concatenate(parts)


def unflatten(x: np.ndarray, a: np.ndarray, W: np.ndarray, train: str = "both") -> tuple[np.ndarray, np.ndarray]:
    """(a, W) with the trained block replaced by x (``flatten``'s inverse); the fixed block is ``a`` or ``W``."""
    check_train(train)
    m, d = np.shape(W)
    if train == "both":
        return x[:m], x[m:].reshape(m, d)
    if train == "first":
        return a, x.reshape(m, d)
    return x, W


def gradient_vector(ev: objective.Evaluation, train: str = "both") -> np.ndarray:
    """The gradient of L_lambda in the trained block, in the order of ``flatten``."""
    return flatten(ev.grad_a, ev.grad_W, train)


# --------------------------------------------------------------------------- pair closed forms
def curvature_coefficient(pi: Any, activation: str) -> Any:
    """C with dA/dphi = -C and B = C sin phi (``kernel.grad_coefficients``): 1/(2 pi) relu, 2/pi abs."""
    if activation == "relu":
        return 1 / (2 * pi)
    if activation == "abs":
        return 2 / pi
    raise ValueError(f"unknown activation {activation!r}; expected one of {kernel.ACTIVATIONS}")


def tangent_numerators(uhat: Any, vhat: Any, cos_phi: Any) -> Any:
    """P v^ = v^ - cos(phi) u^ for all pairs: (m, n, d) from (m, d), (n, d), (m, n)."""
    return vhat[None, :, :] - cos_phi[:, :, None] * uhat[:, None, :]


def unit_tangents(engine: Any, P: np.ndarray, sin_phi: np.ndarray) -> np.ndarray:
    """e = P / sin phi where sin phi > 0 certainly; elsewhere 0 (point numbers) or the engine's enclosure.

    An engine with ``unit_tangents`` (Arb balls) decides itself (a ball whose sin phi may
    vanish gets [-1, 1] per component: e is a unit vector wherever it is defined).
    """
    fn = getattr(engine, "unit_tangents", None)
    if fn is not None:
        return fn(P, sin_phi)
    if P.dtype != object:
        pos = sin_phi > 0
        safe = np.where(pos, sin_phi, 1.0)
        return np.where(pos[..., None], P / safe[..., None], 0.0)
    out = np.empty(P.shape, dtype=object)
    zero = P.flat[0] * 0 if P.size else 0
    for idx in np.ndindex(sin_phi.shape):
        s = sin_phi[idx]
        if s != 0:
            out[idx] = P[idx] / s
        else:
            out[idx] = np.array([zero] * P.shape[-1], dtype=object)
    return out


def kernel_hessian_uu(nu: Any, nv: Any, uhat: Any, B: Any, e_u: Any) -> Any:
    """d^2 k(u, v) / du du^T = (||v|| B / ||u||)(I - u^ u^T + e_u e_u^T), one pair (d-vectors)."""
    d = len(uhat)
    outer = np.outer
    eye = np.eye(d, dtype=int) if getattr(uhat, "dtype", None) == object else np.eye(d)
    return (nv * B / nu) * (eye - outer(uhat, uhat) + outer(e_u, e_u))


def kernel_hessian_uv(A: Any, B: Any, uhat: Any, vhat: Any, e_u: Any, e_v: Any) -> Any:
    """d^2 k(u, v) / du dv^T = A I + B (u^ v^T + e_u e_v^T), one pair (d-vectors); symmetric."""
    d = len(uhat)
    eye = np.eye(d, dtype=int) if getattr(uhat, "dtype", None) == object else np.eye(d)
    return A * eye + B * (np.outer(uhat, vhat) + np.outer(e_u, e_v))


# --------------------------------------------------------------------------- assembly
def _set_self_pairs(engine: Any, g: objective.PairGeometry, m: int) -> objective.PairGeometry:
    """The geometry with the angle triple of each self pair (w_j, w_j) set to (0, 0, 1) exactly."""
    phi, s, c = g.phi.copy(), g.sin_phi.copy(), g.cos_phi.copy()
    one = getattr(engine, "one", 1.0 if phi.dtype != object else 1)
    zero = one * 0
    for j in range(m):
        phi[j, j], s[j, j], c[j, j] = zero, zero, one
    return objective.PairGeometry(g.nu, g.nv, g.uhat, g.vhat, phi, s, c, g.u_nonzero)


def _eye(d: int, like: np.ndarray) -> np.ndarray:
    return np.eye(d) if like.dtype != object else np.eye(d, dtype=int).astype(object)


def hessian_from(engine: Any, g: objective.PairGeometry, activation: str, a: np.ndarray, c: np.ndarray,
                 lam: Any, train: str = "both") -> np.ndarray:
    """The Hessian of L_lambda in the trained block, from the pair geometry of the students (rows)
    against all neurons V = (W, W*) (columns; the first m are the students) and c = (a, -a*).

    Generic over the number type (see the module docstring); ``engine`` gives ``pi`` and,
    optionally, ``unit_tangents``.  The self pairs are taken as given (``loss_hessian``
    sets them to (0, 0, 1) exactly).
    """
    check_train(train)
    kernel.check_activation(activation)
    m, d = g.uhat.shape
    pi = engine.pi
    A, B = kernel.grad_coefficients(g.phi, g.sin_phi, pi, activation)  # (m, n)
    cn = c * g.nv  # (n,)
    blocks_a = train != "first"
    blocks_w = train != "second"
    Haa = Haw = Hww = None
    if blocks_a:
        kap = kernel.kappa_from_coefficients(A[:, :m], B[:, :m], g.cos_phi[:, :m])
        Haa = 2 * (g.nu[:, None] * g.nu[None, :] * kap)
    if blocks_w:
        E = unit_tangents(engine, tangent_numerators(g.uhat, g.vhat, g.cos_phi), g.sin_phi)  # (m, n, d)
        Ess = E[:, :m]  # e at w_j towards w_l
        EssT = Ess.transpose(1, 0, 2)  # e at w_l towards w_j, indexed [j, l]
        U = g.uhat
        # d^2k(w_j, w_l)/du dv^T = A I + B (u^_j u^_l^T + e_jl e_lj^T), (m, m, d, d)
        R = U[:, None, :, None] * U[None, :, None, :] + Ess[:, :, :, None] * EssT[:, :, None, :]
        M = A[:, :m, None, None] * _eye(d, U)[None, None] + B[:, :m, None, None] * R
        aa = a[:, None] * a[None, :]
        Hww = 2 * aa[:, :, None, None] * M
        # diagonal blocks: 2 a_j / ||w_j|| (b_j P_j + sum_q c_q ||v_q|| B_jq e_jq e_jq^T)
        cnB = B * cn[None, :]  # (m, n)
        b = cnB.sum(axis=1)  # (m,)
        S = (cnB[:, :, None, None] * E[:, :, :, None] * E[:, :, None, :]).sum(axis=1)  # (m, d, d)
        P = _eye(d, U)[None] - U[:, :, None] * U[:, None, :]
        diag = (2 * a / g.nu)[:, None, None] * (b[:, None, None] * P + S)
        for j in range(m):
            Hww[j, j] = Hww[j, j] + diag[j]
        Hww = Hww.transpose(0, 2, 1, 3).reshape(m * d, m * d)
    if blocks_a and blocks_w:
        nv = g.nv
        # G_jq = ||v_q|| (A_jq v^_q + B_jq u^_j), student columns only, and sum_q c_q G_jq
        Gss = nv[None, :m, None] * (A[:, :m, None] * g.vhat[None, :m, :] + B[:, :m, None] * g.uhat[:, None, :])
        Gsum = (A * cn[None, :]).dot(g.vhat) + (B.dot(cn))[:, None] * g.uhat  # (m, d)
        Haw = 2 * a[None, :, None] * Gss.transpose(1, 0, 2)  # [j, l] = 2 a_l G_lj
        for j in range(m):
            Haw[j, j] = Haw[j, j] + 2 * Gsum[j]
        Haw = Haw.reshape(m, m * d)
    if train == "both":
        H = np.concatenate([np.concatenate([Haa, Haw], axis=1), np.concatenate([Haw.T, Hww], axis=1)], axis=0)
    elif train == "first":
        H = Hww
    else:
        H = Haa
    # The exact Hessian is symmetric; the pair (j, l) and (l, j) terms are computed from two
    # roundings of the same angle, so the mean is taken (for balls: still an enclosure).
    H = (H + H.T) / 2
    n = H.shape[0]
    for i in range(n):
        H[i, i] = H[i, i] + lam
    return H


def _check_differentiable(u_nonzero: np.ndarray, train: str) -> None:
    if train == "second":
        return
    zero = np.flatnonzero(~np.asarray(u_nonzero, dtype=bool))
    if len(zero):
        raise NotTwiceDifferentiable(
            f"student neuron {int(zero[0])} is zero (w_{int(zero[0])} = 0): L is not twice "
            "differentiable there, no Hessian in W exists")


def loss_hessian(engine: Any, activation: str, a: np.ndarray, W: np.ndarray, a_star: np.ndarray,
                 W_star: np.ndarray, lam: Any, train: str = "both", *,
                 teacher_work: tuple[Any, Any] | None = None) -> np.ndarray:
    """The exact Hessian of L_lambda in the trained block (order of ``flatten``), in the engine's numbers.

    ``engine``: Float64Engine, MpEngine (computed in its working numbers, returned as mpf),
    or a duck-typed ball engine (``checker.rigorous.critical``).  Raises
    ``NotTwiceDifferentiable`` at a zero student neuron unless ``train == "second"``.
    """
    check_train(train)
    work = objective._work(engine)
    with engine.context():
        aw, Ww = objective._to_work(engine, a), objective._to_work(engine, W)
        asw, Wsw = ((objective._to_work(engine, a_star), objective._to_work(engine, W_star))
                    if teacher_work is None else teacher_work)
        lw = objective._to_work(engine, lam)
        m = len(aw)
        V = np.concatenate([Ww, Wsw], axis=0)
        c = np.concatenate([aw, -asw])
        objective.check_pair_memory(work, m, len(V), Ww.shape[1] ** 2, what="Hessian arrays")
        uu = objective._norms_and_units(work, Ww)
        vu = objective._norms_and_units(work, V)
        # a neuron whose norm is not certainly positive (a ball that reaches w = 0) may be zero
        _check_differentiable(np.asarray(uu[0] > 0, dtype=bool), train)
        g = _set_self_pairs(work, objective._geometry(work, uu, vu), m)
        H = hessian_from(work, g, activation, aw, c, lw, train)
        return objective._from_work(engine, H)


def hessian(problem: Any, a: np.ndarray | None = None, W: np.ndarray | None = None, *,
            lam: Any = None, train: str = "both") -> np.ndarray:
    """The exact Hessian of L_lambda at (a, W) (default: the problem's student and lambda).

    ``problem``: a ``checker.core.problem.Problem``; lam = 0 gives the Hessian of L.
    Returns an (n, n) array of the engine's numbers, n = m (d + 1), m d or m for
    ``train`` = "both", "first", "second"; the order is that of ``flatten``.
    """
    return loss_hessian(problem.engine, problem.activation, problem.a if a is None else a,
                        problem.W if W is None else W, problem.a_star, problem.W_star,
                        problem.lam if lam is None else lam, train, teacher_work=problem.teacher_work())
