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

from flint import arb, ctx

from .arb_objective import (ArbVector, decimal_string, digits_for, lower_fraction, norm, quadratic_max, to_arb_vector,
                            upper_fraction)

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
    boxes: int  # boxes examined
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


def _value(F: Func, w: ArbVector) -> arb:
    value = getattr(F, "value", None)
    return value(w) if value is not None else F(w)[0]


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
        self.boxes += 1
        self.deepest = max(self.deepest, level)
        F = self.Fs[fi]
        Y = self._box(face, k, level)
        nY = norm(Y)
        U = [y / nY for y in Y]
        if self.keep is not None and not self.keep(U):
            return None
        ym = self._point(face, k, level)
        nm = norm(ym)
        um = [y / nm for y in ym]
        centre_ok = self.keep is None or self.keep(um)
        zonal = getattr(F, "upper_on_sphere", None)
        zonal_bounds: list[Fraction] | None = None
        if zonal is not None:
            zb = zonal(U, um, signs=self.signs)
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
        FY, GY, HY = hessian(Y)
        free = [j for j in range(self.d) if j != i]
        Fm, Gm = F(ym)
        hm = Fm / nm
        if centre_ok:
            self._consider_signed(hm, ym)
        # Tighter enclosures of grad F and F over the box by their own mean-value
        # forms around the centre: the point values carry the cancellation
        # between terms, so the widths drop from O(r) to O(r (|grad| + r)).
        offset = arb(0, (1, -level))  # y_l - m_l for a free coordinate l
        if all(x.is_finite() for row in HY for x in row) and all(x.is_finite() for x in Gm):
            GY = [_meet(GY[j], Gm[j] + sum((HY[j][l] * offset for l in free), arb(0))) for j in range(self.d)]
        if all(x.is_finite() for x in GY) and Fm.is_finite():
            FY = _meet(FY, Fm + sum((GY[l] * offset for l in free), arb(0)))
        if not (hm.is_finite() and FY.is_finite() and all(x.is_finite() for x in GY)):
            return [_INF for _ in self.signs]
        natural = FY / nY
        n3 = nY * nY * nY
        n5 = n3 * nY * nY
        fm3 = Fm / (nm * nm * nm)
        slope = [Gm[j] / nm - fm3 * ym[j] for j in free]
        first = arb(0)
        for j in free:
            first += (GY[j] / nY - FY * Y[j] / n3) * offset
        H = {}
        for a, j in enumerate(free):
            for b, l in enumerate(free):
                if b >= a:
                    Hjl = HY[j][l] / nY - (GY[j] * Y[l] + Y[j] * GY[l]) / n3 + 3 * FY * Y[j] * Y[l] / n5
                    H[a, b] = Hjl - FY / n3 if j == l else Hjl
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
                up = self._evaluate(fi, face, child, level + 1)
                if up is None or (self.best is not None and up <= self.best):
                    continue
                heapq.heappush(heap, (-up, next(counter), fi, face, level + 1, child))

        seconds = time.monotonic() - start
        extra = {"stopped": stopped} if stopped else {}
        if stuck is not None:
            extra["unsplit_boxes"] = "boxes reached the precision limit; raise prec"
        candidates = [c for c in (-heap[0][0] if heap else None, stuck, self.best) if c is not None]
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
