"""The exact population objective and its gradients, for every engine.

With x ~ N(0, I_d), f_theta(x) = sum_j a_j sigma(<w_j, x>) and the teacher f*,

    L(theta) = E[(f_theta - f*)^2] = a^T K(W, W) a - 2 a^T K(W, W*) a* + a*^T K(W*, W*) a*,
    L_lambda(theta) = L(theta) + (lambda / 2)(||a||^2 + ||W||_F^2),

with K(U, V)_{jl} = k(u_j, v_l) from ``checker.kernel``.  No factor 1/2 in L.

Angles are computed as phi = 2 atan2(||u^ - v^||, ||u^ + v^||) (u^ = u/||u||),
which keeps full relative accuracy at t = cos phi = +-1 where arccos(t) loses
half the digits (at t = 1 - 1e-18 float64 arccos returns 0 instead of ~1.4e-9).
Then sin phi = ||u^ - v^|| ||u^ + v^|| / 2 and cos phi = <u^, v^>.

Zero-norm neurons: k(0, v) = 0, so a neuron with w_j = 0 contributes nothing to
f_theta.  k is not differentiable at u = 0 (it is 1-homogeneous); we return
grad_{w_j} L = 0 there, the pathwise derivative with the convention
sigma'(0) = 0 (as automatic differentiation does), and grad_{a_j} L = 0 since
sigma(0) = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import kernel
from .engines import Engine


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


def _norms_and_units(engine: Engine, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    norms = engine.sqrt((X * X).sum(axis=1))
    nonzero = np.array([bool(n > 0) for n in norms], dtype=bool)
    safe = np.where(nonzero, norms, 1)
    return norms, X / safe[:, None], nonzero


def pair_geometry(engine: Engine, U: np.ndarray, V: np.ndarray) -> PairGeometry:
    nu, uhat, u_nonzero = _norms_and_units(engine, U)
    nv, vhat, _ = _norms_and_units(engine, V)
    diff = uhat[:, None, :] - vhat[None, :, :]
    summ = uhat[:, None, :] + vhat[None, :, :]
    a = engine.sqrt((diff * diff).sum(axis=2))
    b = engine.sqrt((summ * summ).sum(axis=2))
    phi = 2 * engine.atan2(a, b)
    sin_phi = a * b / 2
    cos_phi = (uhat[:, None, :] * vhat[None, :, :]).sum(axis=2)
    return PairGeometry(nu, nv, uhat, vhat, phi, sin_phi, cos_phi, u_nonzero)


def gram_from(engine: Engine, g: PairGeometry, activation: str) -> np.ndarray:
    """K_{jl} = k(u_j, v_l) = ||u_j|| ||v_l|| kappa(phi_jl)."""
    kap = kernel.kappa(g.phi, g.sin_phi, g.cos_phi, engine.pi, activation)
    return g.nu[:, None] * g.nv[None, :] * kap


def grad_gram_from(engine: Engine, g: PairGeometry, activation: str) -> np.ndarray:
    """G_{jl:} = grad_u k(u_j, v_l) = ||v_l|| (A v^_l + B u^_j); zero where u_j = 0."""
    A, B = kernel.grad_coefficients(g.phi, g.sin_phi, engine.pi, activation)
    G = g.nv[None, :, None] * (A[:, :, None] * g.vhat[None, :, :] + B[:, :, None] * g.uhat[:, None, :])
    return G * g.u_nonzero[:, None, None]


def gram(engine: Engine, U: np.ndarray, V: np.ndarray, activation: str) -> np.ndarray:
    return gram_from(engine, pair_geometry(engine, U, V), activation)


def grad_gram(engine: Engine, U: np.ndarray, V: np.ndarray, activation: str) -> np.ndarray:
    return grad_gram_from(engine, pair_geometry(engine, U, V), activation)


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

    Call inside ``engine.context()`` when the arrays are mp numbers.
    """
    with engine.context():
        V = np.concatenate([W, W_star], axis=0)
        c = np.concatenate([a, -a_star])
        geo = pair_geometry(engine, W, V)
        K = gram_from(engine, geo, activation)  # (m, m + m*)
        Ktt = gram(engine, W_star, W_star, activation)
        Kc = K.dot(c)  # (m,) = K_ss a - K_st a*
        m = len(a)
        # L = a^T K_ss a - 2 a^T K_st a* + a*^T K_tt a*, and a^T Kc = a^T K_ss a - a^T K_st a*.
        loss = a.dot(Kc) - a.dot(K[:, m:].dot(a_star)) + a_star.dot(Ktt.dot(a_star))
        reg = regularizer(a, W)
        reg_loss = loss + lam * reg
        if not with_gradient:
            z = engine.zeros(a.shape)
            zW = engine.zeros(W.shape)
            return Evaluation(loss, reg_loss, z, zW, z, zW)
        G = grad_gram_from(engine, geo, activation)  # (m, m + m*, d)
        lga = 2 * Kc
        lgW = 2 * a[:, None] * (G * c[None, :, None]).sum(axis=1)
        return Evaluation(loss, reg_loss, lga + lam * a, lgW + lam * W, lga, lgW)


def correlation(
    engine: Engine,
    activation: str,
    Q: np.ndarray,
    V: np.ndarray,
    c: np.ndarray,
) -> np.ndarray:
    """g(q) = sum_l c_l k(q, v_l) for each row q of Q (e.g. E[r(x) sigma(<q,x>)])."""
    with engine.context():
        return gram(engine, Q, V, activation).dot(c)


def correlation_grad(
    engine: Engine,
    activation: str,
    Q: np.ndarray,
    V: np.ndarray,
    c: np.ndarray,
) -> np.ndarray:
    """grad_q g(q) = sum_l c_l grad_u k(q, v_l) for each row q of Q."""
    with engine.context():
        G = grad_gram(engine, Q, V, activation)
        return (G * c[None, :, None]).sum(axis=1)
