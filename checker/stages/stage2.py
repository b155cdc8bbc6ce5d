"""Stage 2: the first layer fixed, the second layer solved exactly (ridge regression).

With W fixed, L(a, W) = a^T K_ss a - 2 a^T K_st a* + a*^T K_tt a* (no factor
1/2, ``checker.core.objective``), K_ss = K(W, W), K_st = K(W, W*).  Minimizing
L(a, W) + (lambda2/2) ||a||^2 over a: the gradient 2 K_ss a - 2 K_st a* +
lambda2 a vanishes at

    a(lambda2) = (K_ss + (lambda2/2) I)^{-1} K_st a*        (derivations/early_stage.py).

The frozen-feature floor is the lambda2 -> 0 limit, inf_a L(a, W) =
a*^T K_tt a* - (K_st a*)^T K_ss^+ (K_st a*), reached at the least-squares a =
K_ss^+ K_st a*.  K_ss is a Gram matrix of features (positive semidefinite) and
often nearly singular, so the pseudo-inverse is taken on the eigenvalues above
``RANK_RTOL`` times the largest; the floor returned is L evaluated by
``checker.core.objective`` at that a (the loss of an actual second layer, so never
below the true infimum), together with the rank used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from checker.core import objective
from checker.core.engines import Engine, Float64Engine

#: Relative eigenvalue cut of the pseudo-inverse for the floor: float64 Gram
#: entries carry ~1e-16 relative rounding, so eigenvalues below ~1e-13 of the
#: largest are rounding noise rather than directions of the feature space.
RANK_RTOL = 1e-13


@dataclass(frozen=True)
class Floor:
    """The frozen-feature floor: least-squares output weights, their loss, the rank used."""

    a: np.ndarray
    loss: Any
    rank: int


def gram_blocks(engine: Engine, activation: str, W: np.ndarray,
                W_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K_ss, K_st) in the engine's numbers."""
    with engine.context():
        return (objective.gram(engine, W, W, activation), objective.gram(engine, W, W_star, activation))


def ridge(engine: Engine, activation: str, W: np.ndarray, a_star: np.ndarray, W_star: np.ndarray,
          lam2: Any) -> np.ndarray:
    """a = (K_ss + (lam2/2) I)^{-1} K_st a*: the exact minimizer of L + (lam2/2)||a||^2 (lam2 > 0)."""
    Kss, Kst = gram_blocks(engine, activation, W, W_star)
    with engine.context():
        rhs = Kst.dot(a_star)
        m = len(W)
        A = Kss + (lam2 / 2) * np.eye(m, dtype=Kss.dtype)
        if isinstance(engine, Float64Engine):
            return np.linalg.solve(A, rhs)
        sol = mpmath.lu_solve(mpmath.matrix(A.tolist()), mpmath.matrix(rhs.tolist()))
        return np.array([sol[i] for i in range(m)], dtype=object)


def frozen_floor(engine: Engine, activation: str, W: np.ndarray, a_star: np.ndarray,
                 W_star: np.ndarray, *, rtol: float = RANK_RTOL) -> Floor:
    """inf over a of L(a, W) with W frozen (pseudo-inverse of K_ss, eigenvalues above rtol * max)."""
    Kss, Kst = gram_blocks(engine, activation, W, W_star)
    with engine.context():
        rhs = Kst.dot(a_star)
        if isinstance(engine, Float64Engine):
            vals, vecs = np.linalg.eigh(Kss)
            keep = vals > rtol * max(vals.max(), 0.0)
            coef = vecs[:, keep].T.dot(rhs) / vals[keep]
            a = vecs[:, keep].dot(coef)
            rank = int(keep.sum())
        else:
            vals, vecs = mpmath.eigsy(mpmath.matrix(Kss.tolist()))
            m = len(W)
            top = max(vals[i] for i in range(m))
            a = engine.zeros((m,))
            rank = 0
            for k in range(m):
                if vals[k] > rtol * top:
                    v = np.array([vecs[i, k] for i in range(m)], dtype=object)
                    a = a + v * (v.dot(rhs) / vals[k])
                    rank += 1
        loss = objective.evaluate(engine, activation, a, W, a_star, W_star, engine.scalar(0),
                                  with_gradient=False).loss
    return Floor(a, loss, rank)


def rebalance(engine: Engine, a: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same network with |a_j| = ||w_j|| per neuron (1-homogeneity; least weight decay by AM-GM)."""
    with engine.context():
        norms = engine.sqrt((W * W).sum(axis=1))
        a_new, W_new = engine.zeros(a.shape), engine.zeros(W.shape)
        for j in range(len(a)):
            mu = abs(a[j]) * norms[j]
            if mu > 0:
                root = engine.sqrt(np.array([mu]))[0]
                a_new[j] = root if a[j] > 0 else -root
                W_new[j] = W[j] * (root / norms[j])
        return a_new, W_new


def unit_rows(engine: Engine, W: np.ndarray) -> np.ndarray:
    """Each non-zero row divided by its norm (zero rows kept)."""
    with engine.context():
        norms = engine.sqrt((W * W).sum(axis=1))
        nz = np.array([bool(n > 0) for n in norms])
        return W / np.where(nz, norms, 1)[:, None]
