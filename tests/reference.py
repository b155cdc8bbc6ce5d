"""Independent high-precision reference for L, L_lambda and their gradients.

Shares no code with ``checker/``: a different route to every quantity, so that
agreement between the two is evidence and not an echo.

* the kernel is written from t = cos angle(u, v) (not from the angle triple):
  relu kappa(t) = (sqrt(1 - t^2) + (pi - acos t) t) / (2 pi),
  abs  kappa(t) = (2/pi) (sqrt(1 - t^2) + t asin t);
* the loss is the explicit double sum over all neuron pairs of the network
  f_theta - f* (student weights a, teacher weights -a*):
  L = sum_p sum_q c_p c_q k(v_p, v_q), no factor 1/2;
* every gradient entry is ``mpmath.diff`` of that double sum in one scalar
  (a central difference whose step and working precision mpmath chooses from
  the target precision), not a closed form.

All work runs inside ``mpmath.workdps(dps)`` with ``dps >= 80``; inputs are
decimal strings (or anything ``mpmath.mpf`` reads) converted at that precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import mpmath

#: Digits of the reference; the tests compare 50-digit results to it at 40 digits.
REF_DPS = 90


def kappa_t(t: Any, activation: str) -> mpmath.mpf:
    """kappa as a function of t = cos angle in [-1, 1] (clamped against rounding)."""
    t = min(mpmath.mpf(1), max(mpmath.mpf(-1), mpmath.mpf(t)))
    root = mpmath.sqrt(1 - t * t)
    if activation == "relu":
        return (root + (mpmath.pi - mpmath.acos(t)) * t) / (2 * mpmath.pi)
    if activation == "abs":
        return 2 * (root + t * mpmath.asin(t)) / mpmath.pi
    raise ValueError(f"unknown activation {activation!r}")


def _mp_vector(xs: Sequence[Any]) -> list[mpmath.mpf]:
    return [mpmath.mpf(x) for x in xs]


def _dot(u: Sequence[Any], v: Sequence[Any]) -> mpmath.mpf:
    return mpmath.fsum(x * y for x, y in zip(u, v))


def kernel_k(u: Sequence[Any], v: Sequence[Any], activation: str) -> mpmath.mpf:
    """k(u, v) = E[sigma(<u,x>) sigma(<v,x>)] = ||u|| ||v|| kappa(t); 0 if either is zero."""
    u, v = _mp_vector(u), _mp_vector(v)
    nu = mpmath.sqrt(_dot(u, u))
    nv = mpmath.sqrt(_dot(v, v))
    if nu == 0 or nv == 0:
        return mpmath.mpf(0)
    return nu * nv * kappa_t(_dot(u, v) / (nu * nv), activation)


def angle(u: Sequence[Any], v: Sequence[Any]) -> mpmath.mpf:
    """arccos(<u, v> / (||u|| ||v||)), the textbook formula (fine at high precision)."""
    u, v = _mp_vector(u), _mp_vector(v)
    t = _dot(u, v) / mpmath.sqrt(_dot(u, u) * _dot(v, v))
    return mpmath.acos(min(mpmath.mpf(1), max(mpmath.mpf(-1), t)))


def loss_double_sum(activation: str, a: Sequence[Any], W: Sequence[Sequence[Any]],
                    a_star: Sequence[Any], W_star: Sequence[Sequence[Any]]) -> mpmath.mpf:
    """L = E[(f_theta - f*)^2] as the double sum over all pairs of neurons."""
    coef = list(a) + [-x for x in a_star]
    vecs = list(W) + list(W_star)
    n = len(coef)
    return mpmath.fsum(coef[p] * coef[q] * kernel_k(vecs[p], vecs[q], activation)
                       for p in range(n) for q in range(n))


@dataclass(frozen=True)
class ReferenceEvaluation:
    """Reference values (mpmath numbers at the reference precision)."""

    loss: mpmath.mpf
    reg_loss: mpmath.mpf
    grad_a: list  # gradient of L_lambda in a
    grad_W: list  # rows: gradient of L_lambda in w_j
    loss_grad_a: list  # gradient of L in a
    loss_grad_W: list


def evaluate(activation: str, a: Sequence[Any], W: Sequence[Sequence[Any]],
             a_star: Sequence[Any], W_star: Sequence[Sequence[Any]], lam: Any, *,
             normalize_teacher: bool = False, dps: int = REF_DPS,
             gradient: bool = True) -> ReferenceEvaluation:
    """L, L_lambda and their gradients at ``dps`` digits (``dps >= 80``).

    ``normalize_teacher`` divides each teacher row by its norm (at ``dps``), as an
    instance with ``"normalize_teacher": true`` asks.  The gradient at a zero-norm
    student neuron is not defined (k is not differentiable there) and is not
    meaningful from this routine; tests check the documented convention directly.
    """
    if dps < 80:
        raise ValueError("the reference works at 80 digits or more")
    with mpmath.workdps(dps):
        a_m = _mp_vector(a)
        W_m = [_mp_vector(r) for r in W]
        as_m = _mp_vector(a_star)
        Ws_m = [_mp_vector(r) for r in W_star]
        if normalize_teacher:
            Ws_m = [[x / mpmath.sqrt(_dot(r, r)) for x in r] for r in Ws_m]
        lam_m = mpmath.mpf(lam)

        def loss_at(a_v: list, W_v: list) -> mpmath.mpf:
            return loss_double_sum(activation, a_v, W_v, as_m, Ws_m)

        loss = loss_at(a_m, W_m)
        reg = (mpmath.fsum(x * x for x in a_m) + mpmath.fsum(x * x for r in W_m for x in r)) / 2
        reg_loss = loss + lam_m * reg
        if not gradient:
            return ReferenceEvaluation(+loss, +reg_loss, [], [], [], [])

        # mpmath.diff raises the working precision itself and picks the step from it.
        lga = []
        for j in range(len(a_m)):
            def in_a(x: mpmath.mpf, j: int = j) -> mpmath.mpf:
                return loss_at(a_m[:j] + [x] + a_m[j + 1:], W_m)
            lga.append(mpmath.diff(in_a, a_m[j]))
        lgW = []
        for j, row in enumerate(W_m):
            grow = []
            for k in range(len(row)):
                def in_w(x: mpmath.mpf, j: int = j, k: int = k, row: list = row) -> mpmath.mpf:
                    new_row = row[:k] + [x] + row[k + 1:]
                    return loss_at(a_m, W_m[:j] + [new_row] + W_m[j + 1:])
                grow.append(mpmath.diff(in_w, row[k]))
            lgW.append(grow)
        ga = [g + lam_m * x for g, x in zip(lga, a_m)]
        gW = [[g + lam_m * x for g, x in zip(gr, r)] for gr, r in zip(lgW, W_m)]
        return ReferenceEvaluation(+loss, +reg_loss, ga, gW, lga, lgW)
