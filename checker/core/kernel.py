"""Closed forms of the Gaussian kernel of one neuron pair, written once.

For x ~ N(0, I_d) and an activation sigma,

    k(u, v) = E[sigma(<u, x>) sigma(<v, x>)] = ||u|| ||v|| kappa(phi),

with phi = angle(u, v).  Every formula here takes the angle through the triple
(phi, sin phi, cos phi) and the constant pi, and uses only + - * / on them, so
the same function serves numpy float64 arrays, numpy arrays of mpmath numbers,
python-flint Arb balls and SymPy symbols.  The derivations in
``derivations/kernel.py`` and ``derivations/gradients.py`` call these very
functions with SymPy symbols and prove them equal to the Gaussian integrals.

Closed forms (derived in ``derivations``):

* relu, sigma(z) = max(z, 0):  kappa = (sin phi + (pi - phi) cos phi) / (2 pi),
  the arc-cosine kernel of degree 1 (Cho and Saul 2009);
* abs, sigma(z) = |z|:  kappa = (2/pi) (sin phi + (pi/2 - phi) cos phi),
  i.e. (2/pi)(sqrt(1 - t^2) + t arcsin t) with t = cos phi.

Gradient in the first argument (u != 0):

    grad_u k(u, v) = ||v|| (A(phi) v_hat + B(phi) u_hat),

relu: A = (pi - phi)/(2 pi), B = sin phi/(2 pi);
abs:  A = (2/pi)(pi/2 - phi), B = (2/pi) sin phi.
"""

from __future__ import annotations

from typing import Any

ACTIVATIONS = ("relu", "abs")


def check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    return activation


def kappa(phi: Any, sin_phi: Any, cos_phi: Any, pi: Any, activation: str) -> Any:
    """kappa(phi) = k(u, v) / (||u|| ||v||) for unit-free angle phi in [0, pi]."""
    if activation == "relu":
        return (sin_phi + (pi - phi) * cos_phi) / (2 * pi)
    if activation == "abs":
        return 2 * (sin_phi + (pi / 2 - phi) * cos_phi) / pi
    raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")


def grad_coefficients(phi: Any, sin_phi: Any, pi: Any, activation: str) -> tuple[Any, Any]:
    """(A, B) with grad_u k(u, v) = ||v|| (A v_hat + B u_hat)."""
    if activation == "relu":
        return (pi - phi) / (2 * pi), sin_phi / (2 * pi)
    if activation == "abs":
        return 2 * (pi / 2 - phi) / pi, 2 * sin_phi / pi
    raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")


def kappa_from_coefficients(A: Any, B: Any, cos_phi: Any) -> Any:
    """kappa = B + A cos phi, for both activations (``derivations/angles.py``, kappa_from_coefficients).

    Lets the objective compute A and B once and kappa from them (two operations
    per pair instead of four).
    """
    return B + A * cos_phi


def kappa_at_one(activation: str) -> float:
    """kappa(0): E[sigma(<u,x>)^2] for unit u (1/2 for relu, 1 for abs)."""
    return {"relu": 0.5, "abs": 1.0}[check_activation(activation)]
