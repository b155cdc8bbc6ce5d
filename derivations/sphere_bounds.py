"""The facts about kappa that the sharper box bounds of ``checker.rigorous.sphere`` rest on.

With t = cos phi and the checker's own closed form (``checker.core.kernel.kappa`` called with
phi = acos t, sin phi = sqrt(1 - t^2)):

* kappa is convex on (-1, 1): kappa'' = 1 / (2 pi sqrt(1 - t^2)) for relu, 2 / (pi sqrt(1 - t^2))
  for abs (the first-order remainder of a singular term is >= 0, ``_singular_term``, and the
  convex remainder ``_first_order_remainder`` is largest at an end of the range);
* kappa(t) - L t is even, L = 1/4 for relu, 0 for abs, so for j >= 2 the Taylor coefficients
  satisfy kappa_j(-t) = (-1)^j kappa_j(t) (``_taylor_tail`` uses |kappa_j(t)| = kappa_j(|t|));
* the Taylor coefficients of kappa at 0 are non-negative (checked to order 24: those of
  1/sqrt(1 - t^2), integrated twice, are), so every kappa_j, j >= 2, is non-negative and
  increasing on [0, 1): the tail sum_{j > J} kappa_j(t0) sigma^j equals
  kappa(t0 + sigma) - sum_{j <= J} kappa_j(t0) sigma^j and increases with t0 and sigma.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from checker.core import kernel

from .result import Result, bound, guarded

FAMILY = "sphere_bounds"
_ORDER = 24


def _kappa_t(activation: str) -> tuple[Any, Any]:
    t = sp.Symbol("t", real=True)
    phi = sp.acos(t)
    return t, kernel.kappa(phi, sp.sqrt(1 - t ** 2), t, sp.pi, activation)


def convexity(activation: str) -> Result:
    """kappa''(t) = c / sqrt(1 - t^2) > 0 on (-1, 1), c = 1/(2 pi) (relu), 2/pi (abs)."""

    def check() -> tuple[bool, str]:
        t, k = _kappa_t(activation)
        c = {"relu": 1 / (2 * sp.pi), "abs": 2 / sp.pi}[activation]
        second = sp.diff(k, t, 2)
        diff = sp.simplify(second - c / sp.sqrt(1 - t ** 2))
        return diff == 0, f"kappa'' - c/sqrt(1-t^2) simplifies to {diff}"

    return guarded(f"kappa_convex_{activation}", FAMILY, convexity.__doc__ or "", "symbolic", check)


def even_part(activation: str) -> Result:
    """kappa(t) - L t is even in t: L = 1/4 (relu), 0 (abs); hence kappa_j(-t) = (-1)^j kappa_j(t), j >= 2."""

    def check() -> tuple[bool, str]:
        t, k = _kappa_t(activation)
        L = {"relu": sp.Rational(1, 4), "abs": 0}[activation]
        e = (k - L * t).rewrite(sp.asin)  # acos t = pi/2 - asin t, and SymPy knows asin(-t) = -asin t
        diff = sp.simplify(e - e.subs(t, -t))
        return diff == 0, f"(kappa - L t)(t) - (kappa - L t)(-t) simplifies to {diff}"

    return guarded(f"kappa_even_part_{activation}", FAMILY, even_part.__doc__ or "", "symbolic", check)


def nonnegative_coefficients(activation: str) -> Result:
    """The Taylor coefficients of kappa at t = 0 are >= 0 up to order 24 (at every order: kappa'' = c (1 - t^2)^(-1/2) has the series c sum binom(2n, n) (t/2)^(2n))."""

    def check() -> tuple[bool, str]:
        t, k = _kappa_t(activation)
        series = sp.series(k, t, 0, _ORDER + 1).removeO()
        coeffs = [sp.nsimplify(sp.simplify(series.coeff(t, j))) for j in range(_ORDER + 1)]
        neg = [j for j, c in enumerate(coeffs) if not (c >= 0)]
        return not neg, f"orders 0..{_ORDER}: negative at {neg}" if neg else f"orders 0..{_ORDER} all >= 0"

    return guarded(f"kappa_nonnegative_taylor_{activation}", FAMILY, nonnegative_coefficients.__doc__ or "",
                   "symbolic", check)


DERIVATIONS = tuple(bound(fn, f"{name}_{act}", activation=act)
                    for fn, name in ((convexity, "kappa_convex"), (even_part, "kappa_even_part"),
                                     (nonnegative_coefficients, "kappa_nonnegative_taylor"))
                    for act in ("relu", "abs"))
