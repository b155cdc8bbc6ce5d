"""Re-check an over-parameterized certificate (route ``checker.basin.over.ROUTE``) from the file alone.

Read from the file: the instance, the exact-width centre (``base_center``), the split (neuron,
cos, sin), rho, the radius, the cover tree and the claimed numbers.  Recomputed here with this
module's own Arb evaluations and compared exactly (``Fraction``):

1. the instance is valid with m = m* + 1 and lambda > 0; cos^2 + sin^2 = 1 exactly, cos, sin > 0;
   ``center`` is exactly the split of ``base_center``;
2. rho_2^2 >= n* rho^2 and the Krawczyk test of the exact-width instance on base_center + [-rho, rho]^n*;
3. every derived number (mu_N, beta, R, step_max, c_D, c_PL, rate, K, gap_level) follows from
   lambda2_center, lambda_max_center, hessian_variation, radius and rho_2 (``over.check_derived``),
   and the ball stays away from the arc's ends: (2 R + 3 rho_2)^2 < (distance to the nearer end)^2;
4. the Hessian at the centre recomputed (its midpoint matrix M0): inertia of M0 - lambda2_center I
   is exactly 1 and of M0 - lambda_max_center I exactly n (LDL^T, every pivot's sign certain);
5. the tree replayed from the cube: its leaves partition it, ``o`` leaves miss B(c, r), the listed
   boxes are its certified leaves; on each, every neuron is non-zero (exact) and ||H(box) - M0||
   <= hessian_variation (Arb);
6. L*_lambda: L_lambda(center) <= upper (Arb), lower <= the duality bound recomputed at
   base_center (skipped with ``check_l_star=False``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Callable

from flint import ctx

from checker.core.model import Instance
from checker.rigorous.arb_objective import upper_fraction

from . import cover as cv
from .basin import HESSIAN_PREC, ArbObjective, krawczyk, l_star_lower
from .over import (arc_end_distance_sq, base_instance, check_derived, check_over_instance, inertia_below,
                   midpoint_matrix, split_point, variation_bound)


def verify_over(cert: dict[str, Any], checked: list[str], check_l_star: bool,
                progress: Callable[[int, int], None], out: Any, fail: Callable[[str, str], Exception],
                bad: Callable[[str], Exception]) -> None:
    """Raise ``fail(claim, detail)`` at the first claim that fails; ``bad(text)`` for an unreadable file."""
    def ok(claim: str) -> None:
        checked.append(claim)

    def num(key: str, where: dict[str, Any] | None = None) -> Fraction:
        try:
            return cv.parse_decimal(str((where if where is not None else cert)[key]))
        except (KeyError, ValueError, TypeError, ArithmeticError):
            raise bad(f"certificate: {key!r} is missing or not a decimal number") from None

    if cert.get("proved") is not True:
        raise fail("proved", f"the certificate does not claim a proof (status {cert.get('status')!r})")
    try:
        instance = Instance.from_dict(cert["instance"])
    except KeyError:
        raise bad("certificate: 'instance' is missing") from None
    check_over_instance(instance)
    ok("instance: valid, m = m* + 1, lambda > 0")
    m, ms, d = instance.m, instance.m_star, instance.d
    n, ns = m * (d + 1), ms * (d + 1)
    try:
        ba = [cv.parse_decimal(str(x)) for x in cert["base_center"]["a"]]
        bW = [[cv.parse_decimal(str(x)) for x in row] for row in cert["base_center"]["W"]]
        ca = [cv.parse_decimal(str(x)) for x in cert["center"]["a"]]
        cW = [[cv.parse_decimal(str(x)) for x in row] for row in cert["center"]["W"]]
        arc = cert["arc"]
        k = int(arc["neuron"])
    except (KeyError, TypeError, ValueError, ArithmeticError):
        raise bad("certificate: base_center, center (decimal strings) and arc {neuron, cos, sin} are needed") from None
    cos, sin = num("cos", arc), num("sin", arc)
    if len(ba) != ms or len(bW) != ms or any(len(row) != d for row in bW) or not 0 <= k < ms:
        raise fail("base_center", f"the exact-width centre or the split neuron has the wrong shape (m* = {ms})")
    if len(ca) != m or len(cW) != m or any(len(row) != d for row in cW):
        raise fail("center", f"the centre has the wrong shape (expected a[{m}], W[{m}][{d}])")
    base = ba + [x for row in bW for x in row]
    center = ca + [x for row in cW for x in row]
    if not (cos > 0 and sin > 0 and cos * cos + sin * sin == 1):
        raise fail("arc", "the split needs cos, sin > 0 with cos^2 + sin^2 = 1 exactly")
    if center != split_point(base, ms, d, k, cos, sin):
        raise fail("center", "the centre is not the split of base_center at (cos, sin)")
    ok("centre: exactly the split of base_center at (cos, sin), cos^2 + sin^2 = 1")

    box = cert.get("stationary_box") or {}
    rho, rho2 = num("rho", box), num("rho_euclid", box)
    if not (rho > 0 and rho2 * rho2 >= ns * rho * rho):
        raise fail("stationary_box.rho_euclid", f"rho_euclid^2 < n* rho^2 (n* = {ns})")
    if Fraction(float(rho)) != rho:
        raise fail("stationary_box.rho", "rho is not a binary (float) number, as the Krawczyk test needs")
    proved, excess = krawczyk(ArbObjective(base_instance(instance)), base, rho)
    if not proved:
        raise fail("stationary_box", f"the Krawczyk test fails on base_center + [-rho, rho]^n* (max |K - c| / rho = "
                   f"{excess:.3g})")
    ok("Krawczyk: exactly one stationary point of the exact-width L_lambda in base_center + [-rho, rho]^n*")

    r, e = num("radius"), num("hessian_variation")
    l2, lmax = num("lambda2_center"), num("lambda_max_center")
    if not (r > 0 and e >= 0 and l2 > 0):
        raise fail("radius", "radius, hessian_variation and lambda2_center must be positive")
    for key in ("mu_N_lower", "beta_upper", "basin_radius", "step_max", "c_D", "c_PL", "rate", "path_constant",
                "gap_level"):
        num(key)
    wrong = check_derived(cert, l2, lmax, e, r, rho2)
    if wrong is not None:
        raise fail(wrong, f"{wrong} does not follow from lambda2_center, lambda_max_center, hessian_variation, radius "
                   "and rho_euclid (exact arithmetic)")
    R = num("basin_radius")
    if not (2 * R + 3 * rho2) ** 2 < arc_end_distance_sq(base, ms, d, k, cos, sin):
        raise fail("basin_radius", "the ball may reach an end of the arc")
    ok("mu_N, beta, R, step_max, c_D, c_PL, rate, K, gap_level follow exactly; the ball avoids the arc's ends")

    obj = ArbObjective(instance)
    with ctx.workprec(HESSIAN_PREC):
        M0 = midpoint_matrix(obj.hessian([cv.frac_arb(c) for c in center]))
        below_l2 = inertia_below(M0, l2)
        below_max = inertia_below(M0, lmax)
    if below_l2 != 1:
        raise fail("lambda2_center", f"M0 - lambda2_center I has {below_l2} negative pivots (need exactly 1)")
    if below_max != n:
        raise fail("lambda_max_center", "M0 - lambda_max_center I is not certainly negative definite")
    ok("lambda_2(M0) >= lambda2_center, lambda_max(M0) <= lambda_max_center (Arb LDL^T inertia)")

    leaves, certified = cv.replay_cover(cert.get("cover"), center, r, fail, bad)
    ok(f"cover: the tree's {len(leaves)} leaves partition the cube; 'o' leaves miss the ball; the listed boxes are "
       "its certified leaves")
    for i, b in enumerate(certified):
        if not cv.neuron_norms_positive(b, m, d):
            raise fail(f"cover.boxes[{i}]", "a neuron w_j can be zero on this box")
        with ctx.workprec(HESSIAN_PREC):
            v = variation_bound(obj.hessian_on_box(b), M0)
        if v is None or v > e:
            raise fail("hessian_variation", f"box {i}: ||H(box) - M0|| is not proved <= hessian_variation")
        progress(i + 1, len(certified))
    out.boxes = len(certified)
    ok(f"Hessian: ||H(q) - M0|| <= hessian_variation on all {len(certified)} boxes (Arb, every neuron non-zero)")

    enc = cert.get("L_star_enclosure") or {}
    try:
        lower, upper = num("lower", enc), num("upper", enc)
        dps, tol = int(enc["dps"]), float(enc["sup_tol"])
        if not (15 <= dps <= 1000 and 0 < tol < 1 and lower <= upper):
            raise ValueError
    except (KeyError, TypeError, ValueError, ArithmeticError):
        raise bad("certificate: L_star_enclosure must hold decimal lower <= upper, dps (15..1000) and "
                  "sup_tol") from None
    with ctx.workprec(HESSIAN_PREC):
        L_c = obj.reg_loss([cv.frac_arb(c) for c in center])
    if not upper_fraction(L_c) <= upper:
        raise fail("L_star_enclosure.upper", "L_lambda(centre) may exceed the claimed upper end")
    ok("L_lambda(centre) <= upper (Arb)")
    if check_l_star:
        D = l_star_lower(base_instance(instance), cert["base_center"], dps, tol)
        if D is None:
            raise fail("L_star_enclosure.lower", "the duality bound could not be certified at base_center")
        if not lower <= D:
            raise fail("L_star_enclosure.lower", f"the recomputed duality bound {float(D):.17g} is below the claimed "
                       "lower end")
        ok(f"L*_lambda >= lower: the duality bound recomputed at base_center ({dps} digits, rigorous)")
