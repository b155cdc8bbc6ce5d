"""kappa derived from the Gaussian integral, for relu and abs.

For x ~ N(0, I_d) only the projection of x on span(u, v) enters
E[sigma(<u,x>) sigma(<v,x>)], and that projection is a standard 2-D Gaussian.
By rotation invariance take u = (1, 0), v = (cos phi, sin phi); in polar
coordinates x = r (cos th, sin th), and by the 1-homogeneity of sigma,

    kappa(phi) = (1/2pi) int_0^inf r^3 e^{-r^2/2} dr
                 * int_{-pi/2}^{3pi/2} sigma(cos th) sigma(cos(th - phi)) dth.

For phi in (0, pi) the sign changes of the two factors in that period window are
at -pi/2 < phi - pi/2 < pi/2 < phi + pi/2 < 3pi/2; on each piece sigma is
replaced by its exact (linear) value and SymPy integrates exactly.  The result
is compared with ``checker.core.kernel.kappa`` called on SymPy symbols, so the proof
is about the checker's own formula.
"""

from __future__ import annotations

from typing import Any, Callable

import sympy as sp

from checker.core import kernel as ck

from .result import Result, bound, guarded

FAMILY = "kernel"

#: The activations as SymPy functions (the only place they are written in derivations/).
SIGMA: dict[str, Callable[[Any], Any]] = {
    "relu": lambda z: sp.Max(z, 0),
    "abs": sp.Abs,
}

KappaFn = Callable[[Any, Any, Any, Any, str], Any]


def sigma_with_sign(activation: str, z: Any, sign: int) -> Any:
    """sigma(z) as an exact expression in z, valid where sign(z) == sign (+1 or -1).

    sigma is evaluated on sign * y with y a positive symbol (SymPy then resolves
    Max / Abs exactly) and y is put back as sign * z.
    """
    y = sp.Symbol("y_pos", positive=True)
    value = SIGMA[activation](sign * y)
    if value.has(sp.Max, sp.Min, sp.Abs, sp.Piecewise):
        raise ValueError(f"sigma({sign}*y) did not resolve for {activation}: {value}")
    return value.subs(y, sign * z)


def gaussian_density(z: sp.Symbol) -> Any:
    return sp.exp(-z**2 / 2) / sp.sqrt(2 * sp.pi)


def kappa_checker(t: Any, activation: str, kappa_fn: KappaFn = ck.kappa) -> Any:
    """The checker's kappa as a function of t = cos phi (phi = acos t, sin phi = sqrt(1 - t^2))."""
    return kappa_fn(sp.acos(t), sp.sqrt(1 - t**2), t, sp.pi, activation)


def derive_kappa_integral(activation: str) -> tuple[Any, sp.Symbol, str]:
    """kappa(phi) for phi in (0, pi) from the 2-D Gaussian integral: (expression, phi, detail)."""
    phi = sp.Symbol("phi", positive=True)
    th, r = sp.symbols("theta r", real=True)
    pi = sp.pi
    radial = sp.integrate(r**3 * sp.exp(-r**2 / 2), (r, 0, sp.oo))
    breaks = [-pi / 2, phi - pi / 2, pi / 2, phi + pi / 2, 3 * pi / 2]
    open_range = sp.Interval.open(0, pi)
    for lo, hi in zip(breaks[:-1], breaks[1:]):
        if sp.solveset(sp.simplify(hi - lo) > 0, phi, open_range) != open_range:
            raise ArithmeticError(f"breakpoints not ordered on (0, pi): {lo} < {hi}")
    angular = sp.Integer(0)
    pieces = []
    for lo, hi in zip(breaks[:-1], breaks[1:]):
        # No zero of cos(th) or cos(th - phi) lies inside a piece for any phi in (0, pi),
        # so each factor's sign is constant there; read it at the midpoint for three phis.
        signs = {
            tuple(int(sp.sign(sp.cos(arg.subs(phi, p)))) for arg in ((lo + hi) / 2, (lo + hi) / 2 - phi))
            for p in (pi / 7, pi / 2, 6 * pi / 7)
        }
        if len(signs) != 1 or 0 in next(iter(signs)):
            raise ArithmeticError(f"sign pattern on ({lo}, {hi}) not constant: {signs}")
        s1, s2 = next(iter(signs))
        integrand = sigma_with_sign(activation, sp.cos(th), s1) * sigma_with_sign(activation, sp.cos(th - phi), s2)
        piece = sp.integrate(integrand, (th, lo, hi))
        pieces.append(f"({lo}, {hi}): signs {s1:+d}{s2:+d}")
        angular += piece
    derived = sp.simplify(radial * angular / (2 * pi))
    detail = f"radial integral = {radial}; pieces {'; '.join(pieces)}; derived kappa = {derived}"
    return derived, phi, detail


def kappa_gaussian_integral(activation: str = "relu", kappa_fn: KappaFn = ck.kappa) -> Result:
    """The checker's kappa equals the exact Gaussian integral for phi in (0, pi)."""

    def check() -> tuple[bool, str]:
        derived, phi, detail = derive_kappa_integral(activation)
        code = kappa_fn(phi, sp.sin(phi), sp.cos(phi), sp.pi, activation)
        diff = sp.simplify(derived - code)
        return diff == 0, f"{detail}; derived - checker = {diff}"

    return guarded(
        f"kappa_{activation}_gaussian_integral", FAMILY,
        f"E[sigma(<u,x>) sigma(<v,x>)] for unit u, v at angle phi in (0, pi) equals "
        f"checker.core.kernel.kappa(phi, sin phi, cos phi, pi, '{activation}')",
        "symbolic", check)


def kappa_at_zero_angle(activation: str = "relu", kappa_fn: KappaFn = ck.kappa) -> Result:
    """kappa(0) = E[sigma(z)^2], z ~ N(0, 1): 1/2 for relu, 1 for abs."""
    expected = {"relu": sp.Rational(1, 2), "abs": sp.Integer(1)}[activation]

    def check() -> tuple[bool, str]:
        z = sp.Symbol("z", real=True)
        g = gaussian_density(z)
        second = (sp.integrate(sigma_with_sign(activation, z, -1)**2 * g, (z, -sp.oo, 0))
                  + sp.integrate(sigma_with_sign(activation, z, 1)**2 * g, (z, 0, sp.oo)))
        code = sp.simplify(kappa_fn(sp.Integer(0), sp.Integer(0), sp.Integer(1), sp.pi, activation))
        at_one = sp.Rational(ck.kappa_at_one(activation))  # exact: 0.5 and 1.0 are binary floats
        ok = sp.simplify(second - expected) == 0 and sp.simplify(code - second) == 0 and at_one == second
        return ok, (f"E[sigma(z)^2] = {second}; checker kappa(0, 0, 1, pi) = {code}; "
                    f"checker kappa_at_one = {at_one}; expected {expected}")

    return guarded(
        f"kappa_{activation}_at_zero_angle", FAMILY,
        f"kappa(0) = E[sigma(z)^2] = {expected} for {activation} (exact integral), "
        f"equal to checker kappa(0, 0, 1, pi) and kappa_at_one",
        "symbolic", check)


def kappa_abs_from_relu(kappa_fn: KappaFn = ck.kappa) -> Result:
    """kappa_abs(t) = 2 (kappa_relu(t) + kappa_relu(-t)), since |z| = relu(z) + relu(-z).

    Expanding E[|a| |b|] with |z| = relu(z) + relu(-z) gives four relu kernels,
    two at t and two at -t (angle pi - phi: sin unchanged, cos negated).
    """

    def check() -> tuple[bool, str]:
        phi = sp.Symbol("phi", positive=True)
        s, c, pi = sp.sin(phi), sp.cos(phi), sp.pi
        lhs = kappa_fn(phi, s, c, pi, "abs")
        rhs = 2 * (kappa_fn(phi, s, c, pi, "relu") + kappa_fn(pi - phi, s, -c, pi, "relu"))
        diff = sp.simplify(lhs - rhs)
        return diff == 0, f"kappa_abs - 2(kappa_relu(t) + kappa_relu(-t)) = {diff}"

    return guarded(
        "kappa_abs_from_relu", FAMILY,
        "kappa_abs(t) = 2 (kappa_relu(t) + kappa_relu(-t)) for the checker's formulas",
        "symbolic", check)


DERIVATIONS = (
    bound(kappa_gaussian_integral, "kappa_relu_gaussian_integral", activation="relu"),
    bound(kappa_gaussian_integral, "kappa_abs_gaussian_integral", activation="abs"),
    bound(kappa_at_zero_angle, "kappa_relu_at_zero_angle", activation="relu"),
    bound(kappa_at_zero_angle, "kappa_abs_at_zero_angle", activation="abs"),
    kappa_abs_from_relu,
)
