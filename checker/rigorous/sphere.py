"""Rigorous maximum of a positively 1-homogeneous function over the unit sphere.

The sphere S^{d-1} is covered by the 2d faces of the cube [-1, 1]^d: every unit
w is y/||y|| for some y with y_i = +-1 and the other coordinates z in
[-1, 1]^{d-1}.  On a face, h(z) = F(y)/||y|| = F(y/||y||) (F is 1-homogeneous),
and branch and bound runs on boxes of the free coordinates z, halving every
side at each level.  The upper bound of a box is the smallest of

* the natural enclosure F(Y)/||Y|| (first order in the half-width r);
* the mean-value form h(c) + J(Y).(z - c), J(Y) an enclosure of grad_z h over
  the box from F's gradient by the quotient rule, grad_y (F/||y||) =
  grad F/||y|| - F y/||y||^3.  Near a maximizer J = O(r), so the bound exceeds
  the maximum by O(r^2);
* when F has a ``hessian`` method, the second-order form h(m) + grad h(m).x +
  x^T H(Y) x / 2 (excess O(r^3));
* when F has an ``upper_on_sphere`` method (``checker.arb_objective.KernelSum``),
  a Taylor bound in the unit vectors that keeps the cancellation between the
  terms of a kernel sum at every order.  This is what makes the residual
  correlation g of a student near the lambda-optimum tractable: there g is
  O(lambda) and flat while each of its terms is O(1), and the bounds that
  enclose the terms one by one only resolve g on very small boxes.

Near a maximizer these bounds still exceed the maximum by O(r^3), so a tight
tolerance needs deep boxes there.  When F has a ``hessian`` method, each seed
that is a near-maximizer also gets a **concave region** (``_Region``): a box of
a face chart around it on which the Hessian of sign * h is certified
<= -mu I (mu > 0, Arb LDL^T of the ball matrix), so that on the whole box
sign * h(z) <= sign * h(c) + |grad h(c)|^2 / (2 mu) (concave quadratic model at
the box centre c, a dyadic point next to the seed; the excess is second order
in the gradient at c, tiny for a polished seed).  A branch-and-bound box whose
unit vectors all project into a region (its vertices, centrally projected onto
the region's face, lie in the region's box: exact rational arithmetic) is
covered by the region's bound and is not split; the other boxes only need
bounds below the maximum minus the quadratic fall-off at the region's edge.

Box centres are exact dyadic numbers and every enclosure is an Arb ball, so
``upper`` is a rigorous bound whatever stops the search (tolerance reached, box
budget or time exhausted): it is the largest upper bound among the boxes still
alive, or the best attained value when none is left.  Best-first order (the box
with the largest upper bound is split next) makes that maximum the top of a
heap.  Arb precision is scoped with ``flint.ctx.workprec``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np
from flint import arb, ctx

from .arb_objective import (ArbVector, _positive_definite, decimal_string, digits_for, dyadic_arb, lower_fraction, norm,
                            quadratic_max, to_arb_vector, upper_fraction)

Func = Callable[[ArbVector], tuple[arb, ArbVector]]
Keep = Callable[[ArbVector], bool]

_INF = math.inf
#: The expansion point of a box sits on a grid of 2^-16 of its half-width.
_OFFSET_BITS = 16


@dataclass(frozen=True)
class SphereMax:
    """Bounds on max_{||w|| = 1} F(w)."""

    upper: str  # upper bound, rounded up; rigorous when ``rigorous``
    lower: str  # a value F attains at ``argmax``, rounded down
    argmax: list[float]  # unit vector (float approximation of the exact dyadic point)
    rigorous: bool
    boxes: int  # boxes bounded (those a ``keep`` filter rejects are not counted)
    reason: str  # "" when rigorous; otherwise why not
    converged: bool = False  # upper - lower <= tol was reached
    seconds: float = 0.0
    max_level: int = 0  # deepest bisection level reached (box half-width 2^-level)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _meet(x: arb, y: arb) -> arb:
    """Intersection of two enclosures of the same number (either alone if the other is not finite)."""
    if not y.is_finite():
        return x
    if not x.is_finite():
        return y
    return x.intersection(y)


@dataclass
class _Region:
    """A face-chart box on which sign * h is certified concave, and the bounds that covers.

    ``face`` (i, s) and the box |z_t - centre_t| <= half (exact Fractions, t != i);
    ``bound``: an upper bound of max over signs of sign * h on the box (the concave
    model for ``sign``, the ordinary box bounds for the other signs)."""

    fi: int
    face: tuple[int, int]
    centre: tuple[Fraction, ...]
    half: Fraction
    bound: Fraction
    sign: int
    mu: float
    unit: tuple[float, ...]  # float unit vector of the centre (prefilter only)
    cos_reach: float  # float: boxes whose centre is farther than this (cosine) cannot be inside
    used: int = 0


def _value(F: Func, w: ArbVector) -> arb:
    value = getattr(F, "value", None)
    return value(w) if value is not None else F(w)[0]


def _takes_radius(method: Callable) -> bool:
    """True when an ``upper_on_sphere`` method accepts the cap radius (``KernelSum``'s does)."""
    import inspect

    try:
        return "radius" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _cos(a: Sequence[float], b: ArbVector) -> float:
    return sum(x * float(y.mid()) for x, y in zip(a, b))


def _unit(w: ArbVector) -> ArbVector:
    n = norm(w)
    return [x / n for x in w]


def certified_max(
    F: Func,
    d: int,
    *,
    tol: float,
    max_boxes: int = 200_000,
    seeds: Sequence[Sequence[Any]] = (),
    keep: Keep | None = None,
    prec: int = 128,
    max_seconds: float | None = None,
) -> SphereMax:
    """Certified bounds on the maximum over the unit sphere S^{d-1} of a 1-homogeneous F.

    F(w) returns Arb enclosures of F(w) and grad F(w) for a ball vector w (not
    necessarily unit, certainly non-zero).  Optional methods sharpen the box
    bounds: ``F.value(w)`` (F alone), ``F.hessian(w)`` -> (F, grad, Hess) and
    ``F.upper_on_sphere(U, centre, signs=...)`` (see ``KernelSum``).
    ``tol`` is absolute.  ``seeds`` are candidate maximizers
    (float or mpmath numbers, converted exactly) that sharpen pruning from the
    start.  ``keep`` restricts the maximum to a region: given the enclosure of
    the unit vectors of a box it returns False only when the box is certainly
    outside; the upper bound then covers the region, and ``lower`` is attained at
    a point whose own enclosure ``keep`` accepted.  The search stops refining
    once the largest live upper bound is <= best lower + tol, or when
    ``max_boxes`` boxes were examined or ``max_seconds`` elapsed; the upper bound
    is valid in every case.
    """
    return certified_max_many([F], d, tol=tol, max_boxes=max_boxes, seeds=seeds, keep=keep,
                              prec=prec, max_seconds=max_seconds)


def certified_max_many(
    Fs: Sequence[Func],
    d: int,
    *,
    tol: float,
    max_boxes: int = 200_000,
    seeds: Sequence[Sequence[Any]] = (),
    keep: Keep | None = None,
    prec: int = 128,
    max_seconds: float | None = None,
) -> SphereMax:
    """Certified bounds on max_k max_{||w|| = 1} F_k(w), one search over all k.

    Arguments as in ``certified_max``; the lower bound is shared, so boxes of
    the smaller functions are pruned early.
    """
    return _search(Fs, d, (1,), tol=tol, max_boxes=max_boxes, seeds=seeds, keep=keep, prec=prec,
                   max_seconds=max_seconds)


def certified_max_abs(
    F: Func,
    d: int,
    *,
    tol: float,
    max_boxes: int = 200_000,
    seeds: Sequence[Sequence[Any]] = (),
    keep: Keep | None = None,
    prec: int = 128,
    max_seconds: float | None = None,
) -> SphereMax:
    """Certified bounds on max_{||w|| = 1} |F(w)|, F and -F bounded together on each box.

    One search instead of two: the enclosures of a box serve both signs.
    ``argmax`` is a point where |F| attains ``lower``.  Arguments as in ``certified_max``.
    """
    return _search([F], d, (1, -1), tol=tol, max_boxes=max_boxes, seeds=seeds, keep=keep, prec=prec,
                   max_seconds=max_seconds)


def _search(Fs: Sequence[Func], d: int, signs: tuple[int, ...], *, tol: float, max_boxes: int,
            seeds: Sequence[Sequence[Any]], keep: Keep | None, prec: int, max_seconds: float | None) -> SphereMax:
    if d < 2:
        raise ValueError(f"dimension d = {d}: the sphere needs d >= 2")
    if not Fs:
        raise ValueError("no function to maximize")
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0, got {tol}")
    if prec < 53:
        raise ValueError(f"prec must be at least 53 bits, got {prec}")
    start = time.monotonic()
    with ctx.workprec(prec):
        return _BranchAndBound(Fs, d, Fraction(tol), keep, prec, signs).run(
            max_boxes=max_boxes, seeds=seeds, start=start, max_seconds=max_seconds)


class _BranchAndBound:
    """One best-first search; all numbers exact (Fractions) outside the Arb balls."""

    def __init__(self, Fs: Sequence[Func], d: int, tol: Fraction, keep: Keep | None, prec: int,
                 signs: tuple[int, ...] = (1,)) -> None:
        self.Fs = list(Fs)
        self.signs = signs
        self.d = d
        self.tol = tol
        self.keep = keep
        self.faces = [(i, s) for i in range(d) for s in (1, -1)]
        # Deepest level at which a box centre k/2^L still fits the working precision.
        self.max_level = prec - 8
        self.best: Fraction | None = None
        self.best_arg: list[float] = []
        self.boxes = 0
        self.deepest = 0
        self.prec = prec
        self.regions: list[_Region] = []
        self.zonal_radius = [getattr(F, "upper_on_sphere", None) is not None and _takes_radius(F.upper_on_sphere)
                             for F in self.Fs]

    # ---------------------------------------------------------------- geometry
    def _point(self, face: tuple[int, int], k: tuple[int, ...], level: int) -> ArbVector:
        i, s = face
        free = iter(k)
        return [arb(s) if j == i else arb((next(free), -level)) for j in range(self.d)]

    def _box(self, face: tuple[int, int], k: tuple[int, ...], level: int) -> ArbVector:
        i, s = face
        free = iter(k)
        return [arb(s) if j == i else arb((next(free), -level), (1, -level)) for j in range(self.d)]

    def _consider(self, value: arb, w: ArbVector) -> None:
        if not value.is_finite():
            return
        low = lower_fraction(value)
        if self.best is None or low > self.best:
            self.best = low
            u = _unit(w)
            self.best_arg = [float(x.mid()) for x in u]

    # ---------------------------------------------------------------- one box
    def _evaluate(self, fi: int, face: tuple[int, int], k: tuple[int, ...], level: int) -> float | Fraction | None:
        """Upper bound of max_sign sign * F_fi over the box (inf if none is finite); None if ``keep`` rejects it.

        The bound is the smallest of those F offers: the zonal Taylor bound
        (``upper_on_sphere``), the second-order Taylor form (``hessian``), the
        first-order mean-value form and the natural enclosure.
        """
        self.deepest = max(self.deepest, level)
        F = self.Fs[fi]
        Y = self._box(face, k, level)
        nY = norm(Y)
        ym = self._point(face, k, level)
        nm = norm(ym)
        um = [y / nm for y in ym]
        U, radius = [y / nY for y in Y], None
        if self.keep is not None or self.zonal_radius[fi]:  # only these use the unit vectors U
            U, radius = self._tighten(U, face, k, level, ym, nm, um)
        if self.keep is not None and not self.keep(U):
            return None
        self.boxes += 1  # boxes bounded (a box ``keep`` rejects costs no bound)
        centre_ok = self.keep is None or self.keep(um)
        zonal = getattr(F, "upper_on_sphere", None)
        zonal_bounds: list[Fraction] | None = None
        if zonal is not None:
            zb = zonal(U, um, signs=self.signs, **({"radius": radius} if radius is not None and
                                                    self.zonal_radius[fi] else {}))
            if zb is not None and all(b.is_finite() for b in zb):
                zonal_bounds = [upper_fraction(b) for b in zb]
                if self.best is not None and max(zonal_bounds) <= self.best:
                    return max(zonal_bounds)  # pruned: nothing in the box, centre included, beats best
        hessian = getattr(F, "hessian", None)
        if hessian is not None:
            per_sign = self._second_order(F, hessian, face, k, level, Y, nY, ym, nm, centre_ok)
        elif self.signs == (1,):
            per_sign = [self._first_order_baumann(F, face, k, level, Y, nY, centre_ok)]
        else:
            per_sign = self._first_order(F, face, k, level, Y, nY, ym, nm, centre_ok)
        if zonal_bounds is not None:
            per_sign = [min(a, b) for a, b in zip(per_sign, zonal_bounds)]
        return max(per_sign)

    def _tighten(self, U: ArbVector, face: tuple[int, int], k: tuple[int, ...], level: int, ym: ArbVector,
                 nm: arb, um: ArbVector) -> tuple[ArbVector, arb | None]:
        """U intersected coordinate-wise with the ball of radius R around the unit centre um.

        Y / ||Y|| encloses the unit vectors of a box coordinate by coordinate, a few times
        wider than the box's image on the sphere (the numerator and the norm vary
        together).  R is a rigorous upper bound of |u - um| on the box: the angle from
        ym is largest at a vertex (for cos >= 0 the set {y : <y, ym> >= c |y| |ym|} is a
        convex cone, so it holds the box once it holds the vertices), and
        |u - um| = sqrt(2 - 2 cos angle).  Returns (U, R), R None when not found."""
        i0, s0 = face
        free0 = [j for j in range(self.d) if j != i0]
        low: arb | None = None
        for corner in itertools.product((-1, 1), repeat=len(free0)):
            y = [arb(s0)] * self.d
            for j, kj, e in zip(free0, k, corner):
                y[j] = arb((kj + e, -level))
            c = sum((a * b for a, b in zip(y, ym)), arb(0)) / (norm(y) * nm)
            low = c if low is None else low.min(c)
        if low is None or not low > 0:
            return U, None
        R = (2 - 2 * low.lower()).nonnegative_part().sqrt().abs_upper()
        ball = arb(0, 1) * R
        out = []
        for x, c in zip(U, um):
            t = c + ball
            y = x.intersection(t) if x.overlaps(t) else x
            out.append(y if y.rad() < x.rad() else x)
        return out, R

    def _consider_signed(self, value: arb, w: ArbVector) -> None:
        for sign in self.signs:
            self._consider(sign * value, w)

    def _first_order(self, F: Func, face: tuple[int, int], k: tuple[int, ...], level: int, Y: ArbVector,
                     nY: arb, ym: ArbVector, nm: arb, centre_ok: bool) -> list[Fraction | float]:
        """Centred mean-value form and natural enclosure, for each sign."""
        FY, GY = F(Y)
        hm = _value(F, ym) / nm
        if centre_ok:
            self._consider_signed(hm, ym)
        coef = FY / (nY * nY * nY)
        slack = arb(0)
        half = arb(0, (1, -level))
        for j in range(self.d):
            if j != face[0]:
                slack += (GY[j] / nY - coef * Y[j]) * half
        out = []
        for sign in self.signs:
            bounds = [upper_fraction(b) for b in (sign * FY / nY, sign * hm + slack) if b.is_finite()]
            out.append(min(bounds) if bounds else _INF)
        return out

    def _first_order_baumann(self, F: Func, face: tuple[int, int], k: tuple[int, ...], level: int, Y: ArbVector,
                             nY: arb, centre_ok: bool) -> Fraction | float:
        """Mean-value form h(z) = h(c) + J(xi).(z - c), J(xi) in J(Y), at a point c of the box.

        c is chosen per coordinate to make max_{z_j, J_j} J_j (z_j - c_j) small:
        the upper end of the box when J_j >= 0, the lower end when J_j <= 0,
        else the point where both ends give the same value (Baumann's optimal
        centre; the centre of the box would do, only less well).  With J_j in
        [l, u] and z_j - c_j in [-p, q] the maximum is max(u q, -l p).
        """
        FY, GY = F(Y)
        natural = FY / nY
        coef = FY / (nY * nY * nY)
        i = face[0]
        yc: list[arb] = []
        slack: arb | None = arb(0)
        free = iter(k)
        den = level + _OFFSET_BITS
        one = 1 << _OFFSET_BITS
        for j in range(self.d):
            if j == i:
                yc.append(arb(face[1]))
                continue
            kj = next(free)
            Jj = GY[j] / nY - coef * Y[j]
            if not Jj.is_finite():
                slack = None
                yc.append(arb((kj, -level)))
                continue
            mid, rad = Jj.mid(), Jj.rad()
            hi, lo = mid + rad, mid - rad
            fhi, flo = float(hi), float(lo)
            if flo >= 0:
                t = one
            elif fhi <= 0:
                t = -one
            else:
                t = max(-one, min(one, round((fhi + flo) / (fhi - flo) * one)))
            # c_j = (kj + t / one) 2^-level; z_j - c_j in [-p, q].
            yc.append(arb((kj * one + t, -den)))
            if slack is not None:
                q = arb((one - t, -den))
                p = arb((one + t, -den))
                slack += (hi * q).max(-(lo * p))
        nc = norm(yc)
        hc = _value(F, yc) / nc
        if self.keep is None or self.keep([y / nc for y in yc]):
            self._consider(hc, yc)
        bounds = [upper_fraction(natural)] if natural.is_finite() else []
        if slack is not None and hc.is_finite():
            bounds.append(upper_fraction(hc + slack))
        return min(bounds) if bounds else _INF

    def _second_order(self, F: Func, hessian: Callable, face: tuple[int, int], k: tuple[int, ...], level: int,
                      Y: ArbVector, nY: arb, ym: ArbVector, nm: arb, centre_ok: bool) -> list[Fraction | float]:
        """Upper bounds (one per sign) from the second-order Taylor form at the box centre m.

        h(m + x) <= h(m) + grad h(m).x + (1/2) x^T H(Y) x for |x_j| <= r, with
        H(Y) an enclosure of the Hessian of h(y) = F(y)/||y|| over the box:

            Hess h = Hess F/n - (grad F y^T + y grad F^T)/n^3 - F I/n^3 + 3 F y y^T/n^5.

        Point values carry the cancellation between the terms of F (near an
        optimum they are O(1) while F is O(lambda)); the box enclosure only
        enters at second order, so the bound exceeds the maximum by O(r^3).
        The quadratic is bounded coordinate by coordinate (exact 1-D maxima of
        g_j t + u_jj t^2/2) plus the off-diagonal terms |H_jk| r^2 / 2.
        The first-order mean-value form and the natural enclosure are kept too;
        the smallest bound wins.
        """
        i = face[0]
        free = [j for j in range(self.d) if j != i]
        offset = arb(0, (1, -level))  # y_l - m_l for a free coordinate l
        parts = self._chart_taylor(F, hessian, free, Y, nY, ym, nm, offset)
        if parts is None:
            return [_INF for _ in self.signs]
        hm, FY, GY, slope, H = parts
        if centre_ok:
            self._consider_signed(hm, ym)
        if not (hm.is_finite() and FY.is_finite()):
            return [_INF for _ in self.signs]
        natural = FY / nY
        if not all(x.is_finite() for x in GY):  # no gradient bound: the natural enclosure only
            return [upper_fraction(sign * natural) if natural.is_finite() else _INF for sign in self.signs]
        n3 = nY * nY * nY
        first = arb(0)
        for j in free:
            first += (GY[j] / nY - FY * Y[j] / n3) * offset
        finite = all(x.is_finite() for x in slope) and all(x.is_finite() for x in H.values())
        if finite:
            off = arb(0)  # x_j x_l H_jl appears twice in x^T H x: |H_jl| r^2 per pair
            for (a, b), h in H.items():
                if a != b:
                    off += h.abs_upper()
            off *= offset.rad() ** 2
            rr = offset.rad()
        out = []
        for sign in self.signs:
            bounds = [upper_fraction(b) for b in (sign * natural, sign * hm + first) if b.is_finite()]
            if finite:
                quad = sign * hm + off
                for a, g in enumerate(slope):
                    # both directions of x_a: t = +x_a with slope g, t = -x_a with slope -g
                    u = sign * H[a, a]
                    quad += quadratic_max(sign * g, u, rr).max(quadratic_max(-sign * g, u, rr))
                if quad.is_finite():
                    bounds.append(upper_fraction(quad))
            out.append(min(bounds) if bounds else _INF)
        return out

    @staticmethod
    def _chart_taylor(F: Func, hessian: Callable, free: list[int], Y: ArbVector, nY: arb, ym: ArbVector,
                      nm: arb, offset: arb) -> tuple[arb, arb, ArbVector, ArbVector, dict] | None:
        """(h(m), F(Y), grad F(Y), grad h(m), Hess h(Y)) for the face chart h(z) = F(y)/||y||.

        ``offset`` is the ball of y_l - m_l for a free coordinate l; the Hessian of h
        is indexed by pairs (a, b), a <= b, of positions in ``free``:

            Hess h = Hess F/n - (grad F y^T + y grad F^T)/n^3 - F I/n^3 + 3 F y y^T/n^5.

        grad F and F over the box are tightened by their own mean-value forms around
        the centre: the point values carry the cancellation between terms, so the
        widths drop from O(r) to O(r (|grad| + r)).  None if the centre value is not finite.
        """
        FY, GY, HY = hessian(Y)
        d = len(Y)
        Fm, Gm = F(ym)
        hm = Fm / nm
        if not hm.is_finite():
            return None
        if all(x.is_finite() for row in HY for x in row) and all(x.is_finite() for x in Gm):
            GY = [_meet(GY[j], Gm[j] + sum((HY[j][l] * offset for l in free), arb(0))) for j in range(d)]
        if all(x.is_finite() for x in GY) and Fm.is_finite():
            FY = _meet(FY, Fm + sum((GY[l] * offset for l in free), arb(0)))
        n3 = nY * nY * nY
        n5 = n3 * nY * nY
        fm3 = Fm / (nm * nm * nm)
        slope = [Gm[j] / nm - fm3 * ym[j] for j in free]
        H = {}
        for a, j in enumerate(free):
            for b, l in enumerate(free):
                if b >= a:
                    Hjl = HY[j][l] / nY - (GY[j] * Y[l] + Y[j] * GY[l]) / n3 + 3 * FY * Y[j] * Y[l] / n5
                    H[a, b] = Hjl - FY / n3 if j == l else Hjl
        return hm, FY, GY, slope, H

    # ---------------------------------------------------------------- concave regions
    def _make_regions(self, seeds: Sequence[ArbVector]) -> None:
        """A concave region (``_Region``) around every seed where sign * F is within 1e-3
        (relative) of the best value, for each F with a ``hessian`` and each sign."""
        if self.best is None:
            return
        slack = abs(self.best) / 1000 + self.tol
        for fi, F in enumerate(self.Fs):
            if getattr(F, "hessian", None) is None:
                continue
            for w in seeds:
                nw = norm(w)
                u = [x / nw for x in w]
                val = _value(F, w) / nw
                if not val.is_finite():
                    continue
                for sign in self.signs:
                    if upper_fraction(sign * val) < self.best - slack:
                        continue
                    if any(r.fi == fi and r.sign == sign and _cos(r.unit, u) > 1 - 1e-12 for r in self.regions):
                        continue  # the same maximizer twice
                    region = self._region(fi, F, u, sign)
                    if region is not None:
                        self.regions.append(region)

    def _region(self, fi: int, F: Func, u: ArbVector, sign: int) -> _Region | None:
        """Largest box (half-width 2^-q, q = 3, 5, ..., 47) of the face chart around the unit vector u on
        which sign * h is certified concave (Hess <= -mu I); None if there is none."""
        hessian = F.hessian  # type: ignore[attr-defined]
        mids = [float(x.mid()) for x in u]
        i = max(range(self.d), key=lambda j: abs(mids[j]))
        s = 1 if mids[i] > 0 else -1
        free = [j for j in range(self.d) if j != i]
        bits = self.prec - 8
        centre = []
        for j in free:
            z = (u[j] / abs(u[i])).mid()
            centre.append(Fraction(round(upper_fraction(z) * 2**bits), 2**bits))
        ym = [arb(s) if j == i else dyadic_arb(centre[free.index(j)]) for j in range(self.d)]
        nm = norm(ym)
        um = [y / nm for y in ym]
        if self.keep is not None and not self.keep(um):
            return None
        for q in range(3, 49, 2):
            offset = arb(0, (1, -q))
            Y = [y if j == i else y + offset for j, y in enumerate(ym)]
            nY = norm(Y)
            parts = self._chart_taylor(F, hessian, free, Y, nY, ym, nm, offset)
            if parts is None:
                return None
            hm, FY, GY, slope, H = parts
            n = len(free)
            A = [[-sign * H[min(a, b), max(a, b)] for b in range(n)] for a in range(n)]
            if not all(x.is_finite() for row in A for x in row) or not all(x.is_finite() for x in slope):
                continue
            Am = np.array([[float(x.mid()) for x in row] for row in A])
            low = float(np.linalg.eigvalsh((Am + Am.T) / 2).min())
            if not low > 0:
                if q >= 11:  # the midpoint matrix is the Hessian at the seed by now: not a strict maximum
                    return None
                continue
            mu_f = low / 2
            mu = arb(mu_f)
            if not _positive_definite([[A[a][b] - (mu if a == b else 0) for b in range(n)] for a in range(n)]):
                continue
            model = sign * hm + sum((g * g for g in slope), arb(0)) / (2 * mu)
            if not model.is_finite():
                return None
            self._consider_signed(hm, ym)
            bounds = [upper_fraction(model)]
            others = [sg for sg in self.signs if sg != sign]
            if others:  # the other signs on the same box: the ordinary box bounds
                saved = self.signs
                self.signs = tuple(others)
                try:
                    Ub = [y / nY for y in Y]
                    zonal = getattr(F, "upper_on_sphere", None)
                    per = self._second_order(F, hessian, (i, s), (), q, Y, nY, ym, nm, False)
                    if zonal is not None:
                        zb = zonal(Ub, um, signs=self.signs)
                        if zb is not None and all(b.is_finite() for b in zb):
                            per = [min(p_, upper_fraction(b)) for p_, b in zip(per, zb)]
                finally:
                    self.signs = saved
                if any(p_ == _INF for p_ in per):
                    return None
                bounds.extend(per)
            reach = min(1.0, float(2.0**-q) * math.sqrt(n) * 1.01)
            return _Region(fi, (i, s), tuple(centre), Fraction(1, 2**q), max(bounds), sign, mu_f,
                           tuple(mids), math.cos(math.asin(reach)) - 1e-9)
        return None

    def _covered(self, fi: int, face: tuple[int, int], k: tuple[int, ...], level: int) -> _Region | None:
        """A region holding every unit vector of the box (exact test on its vertices), or None."""
        if not self.regions:
            return None
        i0, s0 = face
        c = [float(s0) if j == i0 else 0.0 for j in range(self.d)]
        free0 = [j for j in range(self.d) if j != i0]
        for j, kj in zip(free0, k):
            c[j] = kj / 2.0**level
        nc = math.sqrt(sum(x * x for x in c))
        cu = [x / nc for x in c]
        for reg in self.regions:
            if reg.fi != fi or sum(x * y for x, y in zip(cu, reg.unit)) < reg.cos_reach:
                continue
            if self._inside(reg, face, k, level):
                return reg
        return None

    def _inside(self, reg: _Region, face: tuple[int, int], k: tuple[int, ...], level: int) -> bool:
        i0, s0 = face
        free0 = [j for j in range(self.d) if j != i0]
        i, s = reg.face
        free = [j for j in range(self.d) if j != i]
        den = 2**level
        for corner in itertools.product((-1, 1), repeat=len(free0)):
            y = [Fraction(s0)] * self.d
            for j, kj, e in zip(free0, k, corner):
                y[j] = Fraction(kj + e, den)
            if not s * y[i] > 0:
                return False
            lam = s / y[i]
            for t, j in enumerate(free):
                if abs(lam * y[j] - reg.centre[t]) > reg.half:
                    return False
        return True

    # ---------------------------------------------------------------- search
    def run(self, *, max_boxes: int, seeds: Sequence[Sequence[Any]], start: float,
            max_seconds: float | None) -> SphereMax:
        for seed in seeds:
            if len(seed) != self.d:
                raise ValueError(f"seed of length {len(seed)} in dimension {self.d}")
            w = to_arb_vector(list(seed))
            if all(x == 0 for x in w):
                continue
            nw = norm(w)
            if self.keep is not None and not self.keep([x / nw for x in w]):
                continue
            for F in self.Fs:
                self._consider_signed(_value(F, w) / nw, w)

        seed_points = [to_arb_vector(list(sd)) for sd in seeds]
        self._make_regions([w for w in seed_points if not all(x == 0 for x in w)])

        heap: list[tuple[Any, int, int, tuple[int, int], int, tuple[int, ...]]] = []
        counter = itertools.count()
        root = (0,) * (self.d - 1)
        for fi in range(len(self.Fs)):
            for face in self.faces:
                up = self._evaluate(fi, face, root, 0)
                if up is not None:
                    heapq.heappush(heap, (-up, next(counter), fi, face, 0, root))

        stuck: Fraction | float | None = None  # largest upper bound of boxes too small to split
        stopped = ""
        children_signs = list(itertools.product((-1, 1), repeat=self.d - 1))
        while heap:
            top = -heap[0][0]
            if self.best is not None and top <= self.best:
                heapq.heappop(heap)
                continue
            if self.best is not None and top <= self.best + self.tol:
                break
            if self.boxes >= max_boxes:
                stopped = f"box budget {max_boxes} exhausted"
                break
            if max_seconds is not None and time.monotonic() - start > max_seconds:
                stopped = f"time budget {max_seconds} s exhausted"
                break
            _, _, fi, face, level, k = heapq.heappop(heap)
            if level >= self.max_level:
                stuck = top if stuck is None else max(stuck, top)
                continue
            for signs in children_signs:
                child = tuple(2 * kj + sj for kj, sj in zip(k, signs))
                region = self._covered(fi, face, child, level + 1)
                if region is not None:  # bounded by the region's concave model
                    region.used += 1
                    continue
                up = self._evaluate(fi, face, child, level + 1)
                if up is None or (self.best is not None and up <= self.best):
                    continue
                heapq.heappush(heap, (-up, next(counter), fi, face, level + 1, child))

        seconds = time.monotonic() - start
        extra = {"stopped": stopped} if stopped else {}
        if stuck is not None:
            extra["unsplit_boxes"] = "boxes reached the precision limit; raise prec"
        used = [r for r in self.regions if r.used]
        if self.regions:
            extra["concave_regions"] = [{"face": list(r.face), "centre": [float(x) for x in r.centre],
                                         "half_width": float(r.half), "sign": r.sign, "mu": r.mu,
                                         "bound": self._up(r.bound), "boxes_covered": r.used}
                                        for r in self.regions]
        candidates = [c for c in (-heap[0][0] if heap else None, stuck, self.best) if c is not None]
        candidates += [r.bound for r in used]
        lower = "-inf" if self.best is None else self._down(self.best)
        if not candidates:  # keep rejected every box: the region misses the sphere
            return SphereMax("-inf", "-inf", [], True, self.boxes, "", True, seconds, self.deepest,
                             {"empty_region": True})
        upper = max(candidates)
        if upper == _INF:
            return SphereMax("inf", lower, self.best_arg, False, self.boxes,
                             f"no finite enclosure on some box ({stopped or 'search ended'})",
                             False, seconds, self.deepest, extra)
        upper_q = Fraction(upper)
        converged = self.best is not None and upper_q - self.best <= self.tol
        return SphereMax(self._up(upper_q), lower, self.best_arg, True, self.boxes, "", converged, seconds,
                         self.deepest, extra)

    def _up(self, q: Fraction) -> str:
        return decimal_string(q, up=True, digits=digits_for(ctx.prec))

    def _down(self, q: Fraction) -> str:
        return decimal_string(q, up=False, digits=digits_for(ctx.prec))
