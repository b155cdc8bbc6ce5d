"""Tests of the sharper box bounds of checker/rigorous/sphere.py: the cap radius of a box, the
tail of kappa's Taylor series, the cap range of t in ``KernelSum.upper_on_sphere``, and the
concave regions around near-maximizers (each against an evaluation written here, in numpy or
mpmath, and a planted wrong bound that the comparison must catch)."""

from __future__ import annotations

import itertools
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from flint import arb, ctx

from checker.rigorous import sphere
from checker.rigorous.arb_objective import KernelSum, _first_order_remainder, _taylor_tail, to_arb_vector
from checker.rigorous.sphere import _BranchAndBound, certified_max_abs


def _kappa_np(t: np.ndarray, activation: str = "relu") -> np.ndarray:
    """The closed-form kernel in t = cos phi, written here (float64)."""
    t = np.clip(t, -1.0, 1.0)
    phi = np.arccos(t)
    if activation == "relu":
        return (np.sin(phi) + (np.pi - phi) * t) / (2 * np.pi)
    return 2 * (np.sin(phi) + (np.pi / 2 - phi) * t) / np.pi


def _kappa_mp(t: mpmath.mpf, activation: str) -> mpmath.mpf:
    phi = mpmath.acos(t)
    if activation == "relu":
        return (mpmath.sin(phi) + (mpmath.pi - phi) * t) / (2 * mpmath.pi)
    return 2 * (mpmath.sin(phi) + (mpmath.pi / 2 - phi) * t) / mpmath.pi


def _g_np(V: np.ndarray, c: np.ndarray, P: np.ndarray) -> np.ndarray:
    """sum_l c_l ||v_l|| kappa(<p, v_l^>) at unit rows p of P (relu, float64)."""
    n = np.linalg.norm(V, axis=1)
    return (c * n * _kappa_np(P @ (V / n[:, None]).T)).sum(axis=1)


def _box_points(face: tuple[int, int], k: tuple[int, ...], level: int, d: int, rng, count: int) -> np.ndarray:
    i, s = face
    free = [j for j in range(d) if j != i]
    r = 2.0 ** -level
    P = np.zeros((count, d))
    P[:, i] = s
    for a, j in enumerate(free):
        P[:, j] = (k[a] + rng.uniform(-1, 1, count)) * r
    # the corners too: the cap radius is attained there
    corners = np.zeros((2 ** len(free), d))
    corners[:, i] = s
    for row, e in zip(corners, itertools.product((-1, 1), repeat=len(free))):
        for a, j in enumerate(free):
            row[j] = (k[a] + e[a]) * r
    P = np.concatenate([P, corners])
    return P / np.linalg.norm(P, axis=1)[:, None]


def test_cap_radius_bounds_every_point_of_the_box_and_is_tighter():
    # _tighten returns R >= |u - u_m| for every unit u of the box (reference: dense samples and
    # the corners, in float64 with a 1e-12 margin for their rounding) and a U inside the
    # coordinate-wise enclosure Y / ||Y||.
    rng = np.random.default_rng(3)
    d = 4
    with ctx.workprec(128):
        bb = _BranchAndBound([KernelSum("relu", [[1, 0, 0, 0]], [1])], d, Fraction(0), None, 128)
        for _ in range(40):
            level = int(rng.integers(1, 6))
            face = (int(rng.integers(0, d)), int(rng.choice([-1, 1])))
            k = tuple(int(2 * rng.integers(-(2 ** (level - 1)), 2 ** (level - 1)) + 1) for _ in range(d - 1))
            Y = bb._box(face, k, level)
            ym = bb._point(face, k, level)
            nm = sphere.norm(ym)
            um = [y / nm for y in ym]
            nY = sphere.norm(Y)
            U0 = [y / nY for y in Y]
            U, R = bb._tighten(U0, face, k, level, ym, nm, um)
            assert R is not None
            P = _box_points(face, k, level, d, rng, 400)
            umf = np.array([float(x.mid()) for x in um])
            dist = np.linalg.norm(P - umf, axis=1)
            assert dist.max() <= float(R.mid() + R.rad()) + 1e-12
            for j in range(d):
                lo, hi = float(U[j].lower().mid()), float(U[j].upper().mid())
                assert np.all(P[:, j] >= lo - 1e-12) and np.all(P[:, j] <= hi + 1e-12)
                assert U[j].rad() <= U0[j].rad()


@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_taylor_tail_bounds_the_remainder(activation):
    # Reference: the remainder kappa(t + s) - sum_{j <= J} kappa_j(t) s^j computed with mpmath at
    # 50 digits (Taylor coefficients by mpmath.taylor of the closed form written here), for s on a
    # grid of [-sigma, sigma]; the tail bound must be >= |remainder| everywhere.
    rng = np.random.default_rng(11)
    with mpmath.workdps(50), ctx.workprec(200):
        for _ in range(25):
            t = float(rng.uniform(-0.95, 0.95))
            sigma = float(rng.uniform(0.001, 0.9) * (1 - abs(t)))
            J = int(rng.integers(1, 7))
            tail = _taylor_tail(arb(t), arb(sigma), J, activation)
            assert tail is not None
            up = mpmath.mpf(tail.mid().str(40, radius=False)) + mpmath.mpf(tail.rad().str(10, radius=False))
            coeffs = mpmath.taylor(lambda x: _kappa_mp(x, activation), mpmath.mpf(t), J)
            for s in np.linspace(-sigma, sigma, 41):
                s = mpmath.mpf(s)
                if not -1 <= t + s <= 1:
                    continue
                rem = _kappa_mp(mpmath.mpf(t) + s, activation) - mpmath.fsum(a * s ** j for j, a in enumerate(coeffs))
                assert abs(rem) <= up * (1 + mpmath.mpf("1e-30")) + mpmath.mpf("1e-45")
        # out of the disc of convergence: no tail
        assert _taylor_tail(arb(0.9), arb(0.2), 3, activation) is None


@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_first_order_remainder_bounds_the_convex_remainder(activation):
    # Reference: R(t) = kappa(t) - kappa(t_m) - kappa'(t_m)(t - t_m) with mpmath at 50 digits
    # (kappa' by mpmath.diff of the closed form written here) on a grid of the range, ranges
    # reaching +-1 included; the bound must be >= R everywhere (and R >= 0: kappa is convex).
    rng = np.random.default_rng(13)
    with mpmath.workdps(50), ctx.workprec(200):
        for _ in range(30):
            t_m = float(rng.uniform(-0.999, 0.999))
            lo, hi = max(-1.0, t_m - float(rng.uniform(0, 0.05))), min(1.0, t_m + float(rng.uniform(0, 0.05)))
            bound = _first_order_remainder(arb(t_m), arb.union(arb(lo), arb(hi)), activation)
            assert bound is not None
            up = mpmath.mpf(bound.mid().str(40, radius=False)) + mpmath.mpf(bound.rad().str(10, radius=False))
            tm = mpmath.mpf(t_m)
            k_m, a_m = _kappa_mp(tm, activation), mpmath.diff(lambda x: _kappa_mp(x, activation), tm)
            for t in np.linspace(lo, hi, 51):
                t = mpmath.mpf(t)
                r = _kappa_mp(t, activation) - k_m - a_m * (t - tm)
                assert -mpmath.mpf("1e-40") <= r <= up + mpmath.mpf("1e-40")
        # t_m outside the range: no bound
        assert _first_order_remainder(arb(0.5), arb.union(arb(0.6), arb(0.7)), activation) is None


def test_upper_on_sphere_with_cap_radius_bounds_sampled_values():
    # Caps (centre u_m, chordal radius rho) around random points and around +-v^_0 (the
    # singular terms, where the bound is first order and charged only to the sign with
    # sign * c_l > 0): the zonal bound with ``radius`` must exceed sign * F at every sampled
    # unit vector of the cap (reference: _g_np, float64, margin 1e-12).
    rng = np.random.default_rng(7)
    V, c = rng.standard_normal((5, 4)), rng.standard_normal(5)
    v0 = V[0] / np.linalg.norm(V[0])
    near = [v0 + 0.03 * x / np.linalg.norm(x) for x in rng.standard_normal((4, 4))]  # first-order, non-singular
    centres = [rng.standard_normal(4) for _ in range(20)] + [v0, -v0, v0 + 0.02 * rng.standard_normal(4)] + near
    with ctx.workprec(128):
        F = KernelSum("relu", V, c)
        for m in centres:
            m = m / np.linalg.norm(m)
            for rho in (0.3, 0.05, 0.01):
                # a ball vector holding the cap, as the branch and bound passes it
                U = [arb(x, rho) for x in m]
                bounds = F.upper_on_sphere(U, to_arb_vector(list(m)), signs=(1, -1), radius=arb(rho))
                assert bounds is not None
                X = rng.standard_normal((600, 4))
                X -= np.outer(X @ m, m)
                X /= np.linalg.norm(X, axis=1)[:, None]
                ang = rng.uniform(0, 2 * np.arcsin(rho / 2), 600)
                P = np.cos(ang)[:, None] * m + np.sin(ang)[:, None] * X
                vals = _g_np(V, c, P)
                for sign, b in zip((1, -1), bounds):
                    assert np.max(sign * vals) <= float(b.mid() + b.rad()) + 1e-12


def _near_optimum_pair():
    """A teacher and a student neuron 0.01 rad apart with nearly cancelling output weights, and a
    second teacher: g = sum c_l k(., v_l) has an interior maximum near the pair (relu, d = 3)."""
    V = np.array([[1.0, 0.0, 0.0], [np.cos(0.01), np.sin(0.01), 0.0], [0.2, 0.9, 0.4]])
    c = np.array([1.0, -0.97, 0.3])
    return V, c


def _dense_max(V, c, sign, centre, radius, count, rng):
    X = rng.standard_normal((count, 3))
    X -= np.outer(X @ centre, centre)
    X /= np.linalg.norm(X, axis=1)[:, None]
    ang = radius * np.sqrt(rng.uniform(0, 1, count))
    P = np.cos(ang)[:, None] * centre + np.sin(ang)[:, None] * X
    return float(np.max(sign * _g_np(V, c, P)))


def _local_max(V, c, sign, start):
    """Maximizer of sign * g on S^2 by float64 gradient ascent with central differences (written here)."""
    u = np.array(start, dtype=float) / np.linalg.norm(start)
    step = 0.1
    f = lambda x: sign * _g_np(V, c, (x / np.linalg.norm(x))[None, :])[0]  # noqa: E731
    for _ in range(4000):
        g = np.array([(f(u + 1e-7 * e) - f(u - 1e-7 * e)) / 2e-7 for e in np.eye(3)])
        g -= (g @ u) * u
        new = u + step * g
        new /= np.linalg.norm(new)
        if f(new) >= f(u):
            u, step = new, step * 1.2
        else:
            step *= 0.5
        if step < 1e-14:
            break
    return u


def test_concave_region_covers_the_maximizer_and_stays_rigorous(monkeypatch):
    # With a polished seed at the maximizer, the search builds a concave region there and stops
    # with a width far below the tolerance-free bounds.  Reference: a float64 dense evaluation of
    # |g| around the maximizer and over the whole sphere (written here): the certified upper bound
    # must exceed it.  Planted wrong bound: the region's model lowered by 1e-6 must fall below
    # the dense maximum, so this comparison would catch a region bound that is too low.
    V, c = _near_optimum_pair()
    rng = np.random.default_rng(0)
    P = rng.standard_normal((200_000, 3))
    P /= np.linalg.norm(P, axis=1)[:, None]
    vals = _g_np(V, c, P)
    start = P[int(np.argmax(np.abs(vals)))]
    sign = 1 if vals[int(np.argmax(np.abs(vals)))] > 0 else -1
    u = _local_max(V, c, sign, start)
    dense = max(float(np.max(np.abs(vals))), _dense_max(V, c, sign, u, 0.05, 100_000, rng))
    with ctx.workprec(128):
        F = KernelSum("relu", V, c)
        res = certified_max_abs(F, 3, tol=1e-14, seeds=[list(u)], prec=128, max_boxes=20_000)
    assert res.rigorous and res.converged
    regions = res.extra.get("concave_regions", [])
    assert regions and regions[0]["sign"] == sign and regions[0]["mu"] > 0
    assert float(res.upper) >= dense - 1e-15
    assert float(res.upper) - float(res.lower) <= 1e-14
    for reg in regions:
        assert float(reg["bound"]) >= _region_dense_max(V, c, reg, rng) - 1e-15

    real_region = _BranchAndBound._region

    def planted(self, fi, F_, u_, sign_):
        reg = real_region(self, fi, F_, u_, sign_)
        if reg is not None:
            reg.bound -= Fraction(1, 10**6)
        return reg

    monkeypatch.setattr(_BranchAndBound, "_region", planted)
    with ctx.workprec(128):
        bad = certified_max_abs(KernelSum("relu", V, c), 3, tol=1e-14, seeds=[list(u)], prec=128,
                                max_boxes=20_000)
    reg = bad.extra["concave_regions"][0]
    assert reg["boxes_covered"] > 0  # the planted bound was used
    assert float(reg["bound"]) < _region_dense_max(V, c, reg, rng) - 1e-7  # and the check catches it


def _region_dense_max(V, c, reg, rng, count: int = 20_000) -> float:
    """max of sign * g over unit vectors of a region (face chart box), by dense sampling (float64)."""
    i, s = reg["face"]
    free = [j for j in range(3) if j != i]
    Y = np.zeros((count, 3))
    Y[:, i] = s
    for a, j in enumerate(free):
        Y[:, j] = reg["centre"][a] + reg["half_width"] * rng.uniform(-1, 1, count)
    Y[0, free] = reg["centre"]
    P = Y / np.linalg.norm(Y, axis=1)[:, None]
    return float(np.max(reg["sign"] * _g_np(V, c, P)))


def test_region_needs_certified_concavity():
    # At a maximizer of sign * g, -sign * g has a minimum (its Hessian is positive definite): no
    # concave region may be made for -sign there, at any size (the LDL^T certificate must fail);
    # for sign itself one is made.
    V, c = _near_optimum_pair()
    rng = np.random.default_rng(1)
    P = rng.standard_normal((50_000, 3))
    P /= np.linalg.norm(P, axis=1)[:, None]
    vals = _g_np(V, c, P)
    j = int(np.argmax(np.abs(vals)))
    sign = 1 if vals[j] > 0 else -1
    u = _local_max(V, c, sign, P[j])
    with ctx.workprec(128):
        F = KernelSum("relu", V, c)
        bb = _BranchAndBound([F], 3, Fraction(0), None, 128, (1, -1))
        w = to_arb_vector(list(u))
        assert bb._region(0, F, w, -sign) is None
        assert bb._region(0, F, w, sign) is not None
