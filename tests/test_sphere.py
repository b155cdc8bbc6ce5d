"""Tests of checker/rigorous/sphere.py (certified maximum on the sphere) and the Arb kernel sums it uses."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
from flint import arb, ctx
from hypothesis import given, settings
from hypothesis import strategies as st

from checker.core import objective
from checker.rigorous.arb_objective import KernelSum, kappa_taylor, quadratic_max, to_arb, to_arb_vector, upper_fraction
from checker.core.engines import Float64Engine, MpEngine
from checker.rigorous.sphere import SphereMax, certified_max, certified_max_abs, certified_max_many
from tests.tolerance import assert_close


def _mp(x: str) -> mpmath.mpf:
    with mpmath.workdps(60):
        return mpmath.mpf(x)


def _arb_mp(x: arb) -> mpmath.mpf:
    """The midpoint of a ball as an mpmath number at 60 digits."""
    with mpmath.workdps(60):
        return mpmath.mpf(x.mid().str(55, radius=False))


def _arb_up(x: arb) -> mpmath.mpf:
    """A number >= the upper end of a ball (mid + rad, then one unit of the 55th digit)."""
    with mpmath.workdps(60):
        return mpmath.mpf(x.mid().str(55, radius=False)) + mpmath.mpf(x.rad().str(10, radius=False)) \
            + abs(mpmath.mpf(x.mid().str(55, radius=False))) * mpmath.mpf("1e-54")


class Linear:
    """F(w) = <c, w>: 1-homogeneous, max over the sphere = ||c|| at c/||c||."""

    def __init__(self, c):
        self.c = [to_arb(x) for x in c]

    def __call__(self, w):
        total = arb(0)
        for x, y in zip(self.c, w):
            total += x * y
        return total, list(self.c)


def _norm_mp(c, scale: str = "1") -> mpmath.mpf:
    """scale * ||c|| at 60 digits (mpmath arithmetic outside a workdps block would round to 15)."""
    with mpmath.workdps(60):
        return mpmath.mpf(scale) * mpmath.sqrt(mpmath.fsum(mpmath.mpf(x) ** 2 for x in c))


vectors = st.integers(2, 4).flatmap(
    lambda d: st.lists(st.floats(-2, 2, allow_nan=False).filter(lambda x: abs(x) > 1e-3), min_size=d, max_size=d))


@settings(max_examples=12)
@given(vectors)
def test_linear_function_max_is_norm(c):
    # Reference: ||c|| from mpmath at 60 digits (independent of the search).  The
    # bound must contain it (rigor) and be tol-tight when converged: tol = 1e-16,
    # plus 1e-35 for the rounding of the decimal strings (40 digits).
    res = certified_max(Linear(c), len(c), tol=1e-16)
    assert res.rigorous and res.converged and res.reason == ""
    ref = _norm_mp(c)
    assert _mp(res.lower) <= ref <= _mp(res.upper)
    assert _mp(res.upper) - _mp(res.lower) <= _mp("1e-16") + _mp("1e-35")
    # argmax is (a float image of) the maximizer c/||c||: the max is flat to second
    # order, so its distance to c/||c|| is ~ sqrt(tol / ||c||) at most.
    u = np.array(c) / np.linalg.norm(c)
    assert np.linalg.norm(np.array(res.argmax) - u) < 1e-8


def test_relu_dipole_kernel_sum_max_known_by_construction():
    # k(w, v) - k(w, -v) = E[relu(<w,x>) <v,x>] = <w, v>/2 for relu (relu(z) - relu(-z) = z),
    # so max over the sphere is ||v||/2 exactly: a kernel sum with total
    # cancellation of its non-linear parts, evaluated through the closed forms.
    v = [0.3, -1.1, 0.7]
    with ctx.workprec(128):
        F = KernelSum("relu", [v, [-x for x in v]], [1.0, -1.0])
    res = certified_max(F, 3, tol=1e-25)
    ref = _norm_mp(v, "0.5")
    assert res.rigorous and res.converged
    assert _mp(res.lower) <= ref <= _mp(res.upper)
    assert _mp(res.upper) - ref <= _mp("1e-25") + _mp("1e-35")


@pytest.mark.parametrize("tol", [0.5, 0.05, 1e-3])
def test_pruning_keeps_every_box_that_could_hold_the_maximum(tol):
    # max <c, w> over the sphere is ||c|| exactly: 7 for c = (2, 3, 6) and (2, -6, 3, 0), 9 for
    # (4, 4, 7) (maximizer off the centre of its cube face: ratios 4/7 > 1/2).  With a coarse
    # tolerance the search stops early, but a box may be dropped only when its bound is at or
    # below the best value found: the certified upper end must still be >= ||c|| (exact Fraction
    # comparison, no tolerance) and the lower end <= ||c||, without seeds (the best value comes
    # from the search itself, not from a start at the maximizer).
    for c, n in (([2, 3, 6], 7), ([2, -6, 3, 0], 7), ([4, 4, 7], 9)):
        res = certified_max(Linear(c), len(c), tol=tol)
        assert res.rigorous
        assert Fraction(res.lower) <= n <= Fraction(res.upper)
        assert Fraction(res.upper) - Fraction(res.lower) <= Fraction(tol) + Fraction(1, 10**30) or not res.converged


@pytest.mark.parametrize("activation,kappa0", [("relu", "0.5"), ("abs", "1")])
def test_single_kernel_max_is_c_kappa0(activation, kappa0):
    # max_w c k(w, v) = c ||v|| kappa(0) at w = v/||v|| (kappa decreasing on [0, pi/2] and
    # kappa <= kappa(0) everywhere, Cauchy-Schwarz); kappa(0) = 1/2 (relu), 1 (abs).
    v, c = [0.6, 0.0, 0.8, 0.0], 1.7
    F = KernelSum(activation, [v], [c])
    res = certified_max(F, 4, tol=1e-20)
    with mpmath.workdps(60):
        ref = _norm_mp(v, kappa0) * mpmath.mpf(c)
    assert _mp(res.lower) <= ref <= _mp(res.upper)
    assert _mp(res.upper) - ref <= _mp("1e-20") + _mp("1e-35")


@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_enclosure_contains_dense_sample_maximum(activation):
    # Reference: the largest of 20,000 sampled values of F from the float64 engine
    # (objective.correlation, an independent code path); its rounding error is
    # below 1e-14 (a few ulps times sum |c_l| ||v_l|| ~ 10), so sampled - 1e-14 must
    # not exceed upper.  lower is attained: F at the reported argmax, computed by the
    # mp engine at 30 digits, is >= lower - 1e-13 (argmax is a float rounding of the
    # exact dyadic point: error ~1e-16 times |grad F| <= 10).
    rng = np.random.default_rng(7)
    V = rng.standard_normal((5, 3))
    c = rng.standard_normal(5)
    F = KernelSum(activation, V, c)
    res = certified_max(F, 3, tol=1e-12)
    assert res.rigorous and res.converged
    Q = rng.standard_normal((20_000, 3))
    Q /= np.linalg.norm(Q, axis=1)[:, None]
    sampled = objective.correlation(Float64Engine(), activation, Q, V, c).max()
    eng = MpEngine(30)
    with eng.context():
        at_arg = objective.correlation(eng, activation, eng.array([res.argmax]), eng.array(V), eng.array(c))[0]
    with mpmath.workdps(40):
        assert mpmath.mpf(sampled) - mpmath.mpf("1e-14") <= _mp(res.upper)
        assert at_arg >= _mp(res.lower) - mpmath.mpf("1e-13")
        assert _mp(res.upper) - mpmath.mpf(sampled) < mpmath.mpf("1e-3")  # the samples come close


def test_certified_max_abs_and_many_agree():
    # sup |F| = max(max F, max -F): the one-pass search and the two-function search
    # must give overlapping enclosures (same exact number).
    rng = np.random.default_rng(3)
    V, c = rng.standard_normal((4, 3)), rng.standard_normal(4)
    F = KernelSum("relu", V, c)
    one = certified_max_abs(F, 3, tol=1e-15)
    two = certified_max_many([F, F.negated()], 3, tol=1e-15)
    assert one.rigorous and two.rigorous
    assert _mp(one.lower) <= _mp(two.upper) and _mp(two.lower) <= _mp(one.upper)
    # For F = <c, w>, sup |F| = ||c||.
    lin = certified_max_abs(Linear([0.5, -2.0]), 2, tol=1e-18)
    assert _mp(lin.lower) <= _norm_mp([0.5, -2.0]) <= _mp(lin.upper)


def test_keep_filter_restricts_the_maximum():
    # F = <c, w> with c_0 > 0 over the region {w_0 <= 0}: the maximum is
    # ||(c_1, c_2)|| at w_0 = 0 (exact reference), below the global ||c||.
    c = [1.0, 0.4, -0.3]

    def keep(u):
        return not (u[0] > 0)  # False only when w_0 > 0 for certain

    res = certified_max(Linear(c), 3, tol=1e-6, keep=keep)
    ref = _norm_mp(c[1:])
    assert res.rigorous
    assert _mp(res.lower) <= ref <= _mp(res.upper)
    assert _mp(res.upper) < _norm_mp(c)
    assert res.argmax[0] <= 1e-6
    # A region that misses the sphere: the maximum over the empty set is -inf.
    empty = certified_max(Linear(c), 3, tol=1e-6, keep=lambda u: False)
    assert empty.rigorous and empty.upper == "-inf"


def test_budget_exhaustion_still_returns_a_valid_bound():
    # 40 boxes cannot reach tol = 1e-30; the bound must still contain the exact max.
    v = [0.3, -1.1, 0.7]
    F = KernelSum("relu", [v, [1.0, 0.0, 0.0]], [1.0, -0.4])
    res = certified_max(F, 3, tol=1e-30, max_boxes=40)
    full = certified_max(F, 3, tol=1e-20)
    assert res.rigorous and not res.converged
    assert res.extra.get("stopped", "").startswith("box budget")
    assert _mp(res.upper) >= _mp(full.lower)
    assert _mp(res.lower) <= _mp(full.upper)
    timed = certified_max(F, 3, tol=1e-30, max_seconds=0.0)
    assert timed.rigorous and _mp(timed.upper) >= _mp(full.lower)


def test_precision_is_scoped():
    before_prec, before_dps = ctx.prec, mpmath.mp.dps
    certified_max(Linear([1.0, 2.0]), 2, tol=1e-10, prec=200)
    assert ctx.prec == before_prec and mpmath.mp.dps == before_dps


def test_result_serializes_to_json():
    import json

    res = certified_max(Linear([1.0, 2.0]), 2, tol=1e-10)
    data = json.loads(json.dumps(res.to_dict()))
    assert data["rigorous"] is True and isinstance(data["upper"], str)
    assert SphereMax(**data) == res


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        certified_max(Linear([1.0]), 1, tol=1e-3)
    with pytest.raises(ValueError):
        certified_max(Linear([1.0, 2.0]), 2, tol=-1.0)


# ---------------------------------------------------------------- the Arb kernel sums
@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_kernel_sum_value_gradient_hessian_against_mp_engine(activation):
    # Value and gradient: the mp engine's objective.correlation / correlation_grad at
    # 40 digits (same closed forms, separate code path); Hessian: central
    # differences of that gradient with step h = 1e-12 (error O(h^2) ~ 1e-24 plus
    # 1e-40/h ~ 1e-28 rounding), so 1e-20 is a safe tolerance.
    rng = np.random.default_rng(11)
    V, c, w = rng.standard_normal((4, 4)), rng.standard_normal(4), rng.standard_normal(4)
    with ctx.workprec(160):
        F = KernelSum(activation, V, c)
        val, grad, hess = F.hessian(to_arb_vector(list(w)))
        assert F(to_arb_vector(list(w)))[0].overlaps(val)
    eng = MpEngine(40)
    with eng.context():
        Vm, cm, wm = eng.array(V), eng.array(c), eng.array(w)
        ref_val = objective.correlation(eng, activation, wm[None, :], Vm, cm)[0]
        ref_grad = objective.correlation_grad(eng, activation, wm[None, :], Vm, cm)[0]
        h = mpmath.mpf("1e-12")
        ref_hess = []
        for i in range(4):
            e = eng.array([1 if j == i else 0 for j in range(4)])
            gp = objective.correlation_grad(eng, activation, (wm + h * e)[None, :], Vm, cm)[0]
            gm = objective.correlation_grad(eng, activation, (wm - h * e)[None, :], Vm, cm)[0]
            ref_hess.append((gp - gm) / (2 * h))
    assert_close([_arb_mp(val)], [ref_val], abs_="1e-35", what="value")
    assert_close([_arb_mp(x) for x in grad], list(ref_grad), abs_="1e-35", what="gradient")
    assert_close([_arb_mp(x) for row in hess for x in row], [x for row in ref_hess for x in row], abs_="1e-20",
                 what="hessian")


@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_kappa_taylor_matches_closed_form_in_t(activation):
    # Reference: the closed form written in t (docs/formalization.md: relu kappa = (sqrt(1-t^2) +
    # (pi - arccos t) t)/(2 pi), abs kappa = (2/pi)(sqrt(1-t^2) + t arcsin t)),
    # differentiated by mpmath at 50 digits; and at t = 0 the squared Hermite
    # coefficients of relu (1/(2 pi), 1/4, 1/(4 pi), 0) from docs/formalization.md.
    def closed(t):
        if activation == "relu":
            return (mpmath.sqrt(1 - t * t) + (mpmath.pi - mpmath.acos(t)) * t) / (2 * mpmath.pi)
        return 2 * (mpmath.sqrt(1 - t * t) + t * mpmath.asin(t)) / mpmath.pi

    with ctx.workprec(200), mpmath.workdps(50):
        for t0 in ("0", "0.3", "-0.71"):
            coeffs = kappa_taylor(arb(t0), 5, activation)
            ref = mpmath.taylor(closed, mpmath.mpf(t0), 4)
            assert_close([_arb_mp(x) for x in coeffs], ref, abs_="1e-30", what=f"kappa Taylor at t = {t0}")
        if activation == "relu":
            c0 = kappa_taylor(arb(0), 4, activation)
            hermite = [1 / (2 * mpmath.pi), mpmath.mpf(1) / 4, 1 / (4 * mpmath.pi), mpmath.mpf(0)]
            assert_close([_arb_mp(x) for x in c0], hermite, abs_="1e-40", what="relu c_k^2")


@settings(max_examples=40)
@given(st.floats(-3, 3), st.floats(-3, 3), st.floats(0.001, 2))
def test_quadratic_max_bounds_the_exact_maximum(g, u, r):
    # Exact reference: max over t in [0, r] of g t + u t^2/2 is at t = 0, r or the
    # vertex -g/u (when inside), computed in mpmath.
    with mpmath.workdps(40):
        G, Uq, R = mpmath.mpf(g), mpmath.mpf(u), mpmath.mpf(r)
        cands = [mpmath.mpf(0), G * R + Uq * R * R / 2]
        if Uq != 0 and 0 < -G / Uq < R:
            t = -G / Uq
            cands.append(G * t + Uq * t * t / 2)
        exact = max(cands)
    with ctx.workprec(128):
        bound = quadratic_max(to_arb(g), to_arb(u), to_arb(r))
    up = _arb_up(bound)
    with mpmath.workdps(40):
        assert up >= exact
        # never looser than the always-valid max(g, 0) r + max(u, 0) r^2 / 2 ...
        assert up <= max(G, 0) * R + max(Uq, 0) * R * R / 2 + mpmath.mpf("1e-30")
        # ... and exact up to |u| r^2 / 2 (the concave case with the vertex beyond r)
        assert up <= exact + abs(Uq) * R * R / 2 + mpmath.mpf("1e-30")


def test_upper_on_sphere_bounds_sampled_values():
    # For boxes of unit vectors (balls around random points, and around a kernel's
    # own direction +-v^_0 where kappa is not analytic and the bound switches to its
    # first-order form), the zonal Taylor bound must exceed sign * F at every sampled
    # unit vector inside the box (reference: the mp engine's correlation at 30
    # digits), for both signs.
    rng = np.random.default_rng(5)
    V, c = rng.standard_normal((5, 4)), rng.standard_normal(5)
    eng = MpEngine(30)
    v0 = V[0] / np.linalg.norm(V[0])
    centres = [rng.standard_normal(4) for _ in range(25)] + [v0, -v0, v0 + 0.01 * rng.standard_normal(4)]
    with ctx.workprec(128):
        F = KernelSum("relu", V, c)
        for m in centres:
            m = m / np.linalg.norm(m)
            r = 0.05
            bounds = F.upper_on_sphere([arb(x, r) for x in m], to_arb_vector(list(m)), signs=(1, -1))
            assert bounds is not None
            P = m + rng.uniform(-r, r, (300, 4))
            P /= np.linalg.norm(P, axis=1)[:, None]
            P = P[np.all(np.abs(P - m) <= r, axis=1)]
            with eng.context():
                vals = objective.correlation(eng, "relu", eng.array(P), eng.array(V), eng.array(c))
            for sign, b in zip((1, -1), bounds):
                assert max(sign * x for x in vals) <= _arb_up(b)


def test_exact_conversion_of_engine_numbers():
    # float64 and mpmath numbers are binary: the arb must be exact (zero radius).
    with mpmath.workdps(60):
        third = mpmath.mpf(1) / 3
    assert to_arb(third).is_exact() and to_arb(0.1).is_exact()
    sign, man, exp, _ = third._mpf_
    assert upper_fraction(to_arb(third)) == Fraction(int(man), 2 ** -int(exp)) * (-1) ** sign
    assert upper_fraction(to_arb(0.1)) == Fraction(0.1)
    assert to_arb(-0.0) == 0
