"""Tests of checker/core/kernel.py: the closed forms of kappa and of grad_u k.

Layered references: the independent t-form of tests/reference.py (exact
identity to high precision), 2-D Gaussian quadrature over a ladder of
precisions, the Hermite coefficients of the activations, and numerical
derivatives of the reference kernel.
"""

from __future__ import annotations

import functools

import mpmath
import numpy as np
import pytest
from flint import arb, ctx

from checker.core import kernel
from tests import reference
from tests.tolerance import assert_close

ACTS = ("relu", "abs")


def _sigma(activation: str):
    if activation == "relu":
        return lambda z: z if z > 0 else mpmath.mpf(0)
    return abs


def _kappa_mp(phi, activation: str):
    """checker.core.kernel.kappa fed with mpmath numbers at the current precision."""
    phi = mpmath.mpf(phi)
    return kernel.kappa(phi, mpmath.sin(phi), mpmath.cos(phi), +mpmath.pi, activation)


def _phi_value(label: str):
    return mpmath.pi if label == "pi" else mpmath.mpf(label)


def gaussian_quadrature_kappa(phi, activation: str):
    """E[sigma(x1) sigma(cos(phi) x1 + sin(phi) x2)], x ~ N(0, I_2), by 2-D quadrature.

    Polar coordinates x = r (cos th, sin th): the integrand is
    r^3 exp(-r^2/2) sigma(cos th) sigma(cos(th - phi)) / (2 pi) on [0, inf) x [-pi, pi],
    with the th-interval split where either factor has its kink, so that every
    piece is analytic and tanh-sinh converges at the working precision.
    """
    pi = mpmath.pi
    sig = _sigma(activation)
    kinks = [-pi / 2, pi / 2] + [((phi + s * pi / 2 + pi) % (2 * pi)) - pi for s in (1, -1)]
    th_points = sorted({-pi, pi, *kinks})
    # The product rule evaluates every (r, th) pair: cache the 1-D factors.
    radial = functools.lru_cache(maxsize=None)(lambda r: r ** 3 * mpmath.exp(-r * r / 2) / (2 * pi))
    angular = functools.lru_cache(maxsize=None)(lambda th: sig(mpmath.cos(th)) * sig(mpmath.cos(th - phi)))
    return mpmath.quad(lambda r, th: radial(r) * angular(th), [0, mpmath.inf], th_points)


# Full grid, every case runs: 3 precisions x 2 activations x 4 angles.
@pytest.mark.parametrize("dps", [15, 30, 50])
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("phi_label", ["0", "0.7", "2.5", "pi"])
def test_kappa_matches_gaussian_quadrature_ladder(dps, activation, phi_label):
    # Reference: 2-D quadrature of the defining Gaussian integral (independent of
    # any closed form).  Both sides run with 5 guard digits; tanh-sinh on analytic
    # pieces reaches the working precision, so agreement to 10^-(dps-2) (kappa is
    # O(1): between 0 and 1) leaves 7 digits for rounding and quadrature error.
    with mpmath.workdps(dps + 5):
        phi = _phi_value(phi_label)
        quad = gaussian_quadrature_kappa(phi, activation)
        closed = _kappa_mp(phi, activation)
    assert_close(closed, quad, abs_=mpmath.mpf(10) ** (2 - dps), what=f"kappa {activation} phi={phi_label}")


PHIS = ["0", "1e-30", "1.4142135623730950488e-9", "0.3", "1.5707963267948966", "2", "3.1415926", "pi"]


@pytest.mark.parametrize("activation", ACTS)
def test_kappa_matches_t_form_at_80_digits(activation):
    # Reference: kappa written from t = cos(phi) with acos/asin and sqrt(1 - t^2)
    # (tests/reference.py), at 90 digits.  The kernel form uses (phi, sin, cos).
    # Both are O(1) and exact formulas; at 90 digits they must agree to 1e-80
    # (10 digits for rounding in acos near t = +-1).
    with mpmath.workdps(reference.REF_DPS):
        for label in PHIS:
            phi = _phi_value(label)
            assert_close(_kappa_mp(phi, activation), reference.kappa_t(mpmath.cos(phi), activation),
                         abs_="1e-80", what=f"kappa {activation} phi={label}", dps=100)


@pytest.mark.parametrize("activation", ACTS)
def test_kappa_at_one_is_second_moment(activation):
    # Reference: E[sigma(z)^2] for z ~ N(0, 1) is 1/2 for relu (half of E z^2) and
    # 1 for abs (E z^2): exact numbers.  kappa(0) is one exact expression: 1e-45 at 50 digits.
    expected = {"relu": "0.5", "abs": "1"}[activation]
    assert kernel.kappa_at_one(activation) == float(expected)
    with mpmath.workdps(50):
        assert_close(_kappa_mp(0, activation), expected, abs_="1e-45", what="kappa(0)")


def test_relu_hermite_coefficients():
    # Reference: normalized Hermite coefficients of relu, computed by hand:
    # c0 = E[relu z] = 1/sqrt(2 pi); c1 = E[z relu z] = 1/2;
    # c2 = E[relu(z)(z^2 - 1)]/sqrt 2 = (sqrt(2/pi) - 1/sqrt(2 pi))/sqrt 2 = 1/(2 sqrt pi);
    # odd k >= 3 vanish (relu(z) - z/2 = |z|/2 is even).  kappa(t) = sum_k c_k^2 t^k.
    # Taylor coefficients by mpmath.taylor at 50 digits: finite differences at raised
    # precision give ~40 correct digits for these low orders, hence 1e-35.
    with mpmath.workdps(50):
        coeffs = mpmath.taylor(lambda t: kernel.kappa(mpmath.acos(t), mpmath.sqrt(1 - t * t), t,
                                                      +mpmath.pi, "relu"), 0, 7)
        pi = mpmath.pi
        expected = {0: 1 / (2 * pi), 1: mpmath.mpf(1) / 4, 2: 1 / (4 * pi), 3: 0, 5: 0, 7: 0}
        for k, value in expected.items():
            assert_close(coeffs[k], value, abs_="1e-35", what=f"relu c_{k}^2")
        assert all(c >= -mpmath.mpf("1e-35") for c in coeffs), "kappa must have non-negative Taylor coefficients"


def test_abs_hermite_coefficients():
    # Reference: |z| = 2 relu(z) - z, so c_k(abs) = 2 c_k(relu) for k != 1 and
    # c_1(abs) = 2 (1/2) - 1 = 0: c0^2 = 2/pi, c2^2 = 1/pi, all odd ones vanish.
    # Tolerance as in the relu case.
    with mpmath.workdps(50):
        coeffs = mpmath.taylor(lambda t: kernel.kappa(mpmath.acos(t), mpmath.sqrt(1 - t * t), t,
                                                      +mpmath.pi, "abs"), 0, 7)
        pi = mpmath.pi
        expected = {0: 2 / pi, 1: 0, 2: 1 / pi, 3: 0, 5: 0, 7: 0}
        for k, value in expected.items():
            assert_close(coeffs[k], value, abs_="1e-35", what=f"abs c_{k}^2")


PAIRS = [
    ("generic", ["0.3", "-1.2", "0.5"], ["1", "0.4", "-0.7"]),
    ("collinear", ["2", "0", "0"], ["0.5", "0", "0"]),
    ("antipodal", ["-1.5", "0", "0"], ["0.5", "0", "0"]),
    ("near-collinear", ["1", "1.4142135623730950488e-9", "0"], ["3", "0", "0"]),
    ("orthogonal", ["0", "2", "0"], ["0", "0", "0.25"]),
]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("label,u,v", PAIRS, ids=[p[0] for p in PAIRS])
def test_grad_coefficients_match_derivative_of_reference_kernel(activation, label, u, v):
    # Reference: mpmath.diff of the t-form k(u, v) = ||u|| ||v|| kappa(t) of
    # tests/reference.py in each coordinate of u, at 90 digits.  k is C^1 in u != 0
    # (C^2 away from t = +-1), and the central difference mpmath picks has truncation
    # and rounding errors far below 1e-70; the closed form is exact, so 1e-70
    # relative to ||v|| (the scale of grad_u k) is a safe bound.
    with mpmath.workdps(reference.REF_DPS):
        uu = [mpmath.mpf(x) for x in u]
        vv = [mpmath.mpf(x) for x in v]
        nu = mpmath.sqrt(mpmath.fsum(x * x for x in uu))
        nv = mpmath.sqrt(mpmath.fsum(x * x for x in vv))
        uh = [x / nu for x in uu]
        vh = [x / nv for x in vv]
        phi = reference.angle(uu, vv)
        A, B = kernel.grad_coefficients(phi, mpmath.sin(phi), +mpmath.pi, activation)
        closed = [nv * (A * vh[k] + B * uh[k]) for k in range(3)]
        numeric = []
        for k in range(3):
            def f(x, k=k):
                w = list(uu)
                w[k] = x
                return reference.kernel_k(w, vv, activation)
            numeric.append(mpmath.diff(f, uu[k]))
        assert_close(closed, numeric, abs_=nv * mpmath.mpf("1e-70"), what=f"grad_u k {label}", dps=100)


def test_kernel_is_generic_over_number_types():
    # Reference: the 90-digit t-form.  float64 numpy arrays must agree to 4 ulp-ish
    # (1e-15 absolute, kappa <= 1); a python-flint arb ball computed at 200 bits must
    # contain the reference value (a rigorous enclosure, no tolerance involved).
    phis = ["0", "0.3", "1.2", "2.9", "pi"]
    with mpmath.workdps(reference.REF_DPS):
        ref = {act: [reference.kappa_t(mpmath.cos(_phi_value(p)), act) for p in phis] for act in ACTS}
    phi_f = np.array([float(_phi_value(p)) for p in phis])
    for act in ACTS:
        vals = kernel.kappa(phi_f, np.sin(phi_f), np.cos(phi_f), np.pi, act)
        assert vals.dtype == np.float64 and vals.shape == phi_f.shape
        assert_close(vals, ref[act], abs_="1e-15", what=f"float64 kappa {act}")
        with ctx.workprec(200):
            for p, r in zip(phis, ref[act]):
                phi_b = arb.pi() if p == "pi" else arb(p)
                ball = kernel.kappa(phi_b, phi_b.sin(), phi_b.cos(), arb.pi(), act)
                assert ball.rad() < arb("1e-50"), "200-bit ball should be tight"
                assert ball.contains(arb(mpmath.nstr(r, 85))), f"arb ball {ball} misses kappa {act}({p})"


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="unknown activation"):
        kernel.check_activation("tanh")
    with pytest.raises(ValueError, match="unknown activation"):
        kernel.kappa(0.1, 0.1, 0.9, np.pi, "tanh")
    with pytest.raises(ValueError, match="unknown activation"):
        kernel.grad_coefficients(0.1, 0.1, np.pi, "tanh")
