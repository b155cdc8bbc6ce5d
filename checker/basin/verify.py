"""Re-check a basin certificate from the file alone, with its own Arb evaluations.

Nothing that can be recomputed is taken from the file: the centre, the radius,
the Krawczyk half-width rho, the cover tree and the claimed bounds are *read*;
everything else is *recomputed* and compared exactly (``Fraction``):

1. format and version; the instance is valid, m = m*, lambda > 0;
2. rho_2 >= rho sqrt(n) (exactly: rho_2^2 >= n rho^2) and the Krawczyk test on
   centre + [-rho, rho]^n, with this module's own Y, gradient and Hessian enclosures;
3. the tree replayed from the cube [c - r, c + r]^n: its leaves partition the cube
   (so they cover B(c, r)); the listed boxes are exactly the replayed certified
   leaves; every ``o`` leaf misses B(c, r) (exact distance); on every ``c`` leaf every
   neuron is non-zero (exact) and the Arb Hessian enclosure proves
   mu_lower <= every eigenvalue <= beta_upper (``cover.check_spectrum``);
4. mu_lower > 0; basin_radius <= r - rho_2; step_max <= 2/(mu + beta); rate >=
   max(|1 - step mu|, |1 - step beta|); gap_level <= mu R^2/2; gap_upper >=
   beta R^2/2 + (upper - lower) of the L*_lambda enclosure;
5. the L*_lambda enclosure: its upper end bounds L_lambda(c) (Arb), its lower end
   is at most the duality bound recomputed at c (``checker.rigorous.duality.gap_bound``,
   rigorous, at the digits the certificate names).

A certificate whose ``route`` is ``checker.basin.over.ROUTE`` (m = m* + 1) is re-checked by
``checker.basin.verify_over`` instead; a certificate without ``route`` is an exact-width one.

eps0_checker and lambda_max_checker are T1's operational constants, reported for
comparison; they are not claims of the certificate and are not re-checked here
(``python -m checker.theorem1`` recomputes them).  The first claim that fails is
reported; nothing after it is checked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

from flint import ctx

from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.rigorous.arb_objective import upper_fraction

from . import cover as cv
from .basin import (FORMAT, HESSIAN_PREC, ROUTE_EXACT, VERSION, ArbObjective, check_instance, krawczyk,
                    l_star_lower)
from .over import ROUTE as OVER_ROUTE


class CertificateError(CheckerError):
    """The file is not a readable basin certificate (exit 2)."""


@dataclass
class Verification:
    verified: bool
    failed_claim: str | None
    detail: str
    checked: list[str] = field(default_factory=list)
    seconds: float = 0.0
    boxes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Fail(Exception):
    def __init__(self, claim: str, detail: str) -> None:
        super().__init__(claim)
        self.claim, self.detail = claim, detail


def _num(cert: dict[str, Any], key: str) -> Fraction:
    try:
        return cv.parse_decimal(str(cert[key]))
    except (KeyError, ValueError, TypeError, ArithmeticError):
        raise CertificateError(f"certificate: {key!r} is missing or not a decimal number") from None


def verify_certificate(cert: Any, *, check_l_star: bool = True,
                       progress: Callable[[int, int], None] = lambda done, total: None) -> Verification:
    """Verify every claim of a basin certificate (see the module docstring); never trusts a recomputable number."""
    t0 = time.perf_counter()
    checked: list[str] = []
    out = Verification(False, None, "", checked)
    if not isinstance(cert, dict) or cert.get("format") != FORMAT:
        raise CertificateError(f"not a basin certificate (format must be {FORMAT!r})")
    if cert.get("version") != VERSION:
        raise CertificateError(f"certificate version {cert.get('version')!r}; this verifier reads version {VERSION}")
    try:
        if cert.get("route", ROUTE_EXACT) == OVER_ROUTE:
            from .verify_over import verify_over

            verify_over(cert, checked, check_l_star, progress, out, _Fail, CertificateError)
        elif cert.get("route", ROUTE_EXACT) != ROUTE_EXACT:
            raise CertificateError(f"unknown route {cert.get('route')!r} (known: {ROUTE_EXACT!r}, {OVER_ROUTE!r})")
        else:
            _verify(cert, checked, check_l_star, progress, out)
        out.verified = True
        out.detail = "every claim re-checked"
    except _Fail as f:
        out.failed_claim, out.detail = f.claim, f.detail
    out.seconds = time.perf_counter() - t0
    return out


def _verify(cert: dict[str, Any], checked: list[str], check_l_star: bool,
            progress: Callable[[int, int], None], out: Verification) -> None:
    def ok(claim: str) -> None:
        checked.append(claim)

    if cert.get("proved") is not True:
        raise _Fail("proved", f"the certificate does not claim a proof (status {cert.get('status')!r})")
    try:
        instance = Instance.from_dict(cert["instance"])
        check_instance(instance)
    except KeyError:
        raise CertificateError("certificate: 'instance' is missing") from None
    ok("instance: valid, m = m*, lambda > 0")
    m, d = instance.m, instance.d
    n = m * (d + 1)
    try:
        ca = [cv.parse_decimal(str(x)) for x in cert["center"]["a"]]
        cW = [[cv.parse_decimal(str(x)) for x in row] for row in cert["center"]["W"]]
    except (KeyError, TypeError, ValueError, ArithmeticError):
        raise CertificateError("certificate: 'center' must hold decimal strings a[m] and W[m][d]") from None
    if len(ca) != m or len(cW) != m or any(len(row) != d for row in cW):
        raise _Fail("center", f"the centre has the wrong shape (expected a[{m}], W[{m}][{d}])")
    center = ca + [x for row in cW for x in row]
    r = _num(cert, "radius")
    R = _num(cert, "basin_radius")
    mu = _num(cert, "mu_lower")
    beta = _num(cert, "beta_upper")
    step = _num(cert, "step_max")
    rate = _num(cert, "rate")
    gap_level = _num(cert, "gap_level")
    gap_upper = _num(cert, "gap_upper")
    box = cert.get("stationary_box") or {}
    try:
        rho = cv.parse_decimal(str(box["rho"]))
        rho2 = cv.parse_decimal(str(box["rho_euclid"]))
    except (KeyError, TypeError, ValueError, ArithmeticError):
        raise CertificateError("certificate: stationary_box must hold decimal rho and rho_euclid") from None

    # ---- numbers that follow from mu, beta, r, rho by exact arithmetic
    if not mu > 0:
        raise _Fail("mu_lower", f"mu_lower = {cert['mu_lower']} is not positive")
    if not beta >= mu:
        raise _Fail("beta_upper", "beta_upper < mu_lower")
    ok("mu_lower > 0, beta_upper >= mu_lower")
    if not (rho > 0 and rho2 * rho2 >= n * rho * rho):
        raise _Fail("stationary_box.rho_euclid", f"rho_euclid^2 < n rho^2 (n = {n})")
    if not (r > 0 and 0 < R <= r - rho2):
        raise _Fail("basin_radius", "basin_radius is not in (0, radius - rho_euclid]")
    ok("0 < basin_radius <= radius - rho_euclid, rho_euclid >= rho sqrt(n)")
    if not (0 < step <= 2 / (mu + beta)):
        raise _Fail("step_max", "step_max is not in (0, 2/(mu_lower + beta_upper)]")
    if not rate >= max(abs(1 - step * mu), abs(1 - step * beta)) or not rate < 1:
        raise _Fail("rate", "rate < max(|1 - step_max mu|, |1 - step_max beta|) or rate >= 1")
    if not (0 < gap_level <= mu * R * R / 2):
        raise _Fail("gap_level", "gap_level is not in (0, mu_lower basin_radius^2 / 2]")
    ok("step_max <= 2/(mu + beta), rate >= max(|1 - step mu|, |1 - step beta|), gap_level <= mu R^2/2")

    obj = ArbObjective(instance)
    # ---- the stationary point
    if Fraction(float(rho)) != rho:
        raise _Fail("stationary_box.rho", "rho is not a binary (float) number, as the Krawczyk test needs")
    proved, excess = krawczyk(obj, center, rho)
    if not proved:
        raise _Fail("stationary_box", f"the Krawczyk test fails on centre + [-rho, rho]^n (max |K - c| / rho = "
                    f"{excess:.3g})")
    ok("Krawczyk: exactly one stationary point in centre + [-rho, rho]^n")

    # ---- the cover
    leaves, certified = cv.replay_cover(cert.get("cover"), center, r, _Fail, CertificateError)
    ok(f"cover: the tree's {len(leaves)} leaves partition the cube [c - r, c + r]^n; 'o' leaves miss the ball; "
       "the listed boxes are its certified leaves")
    total = len(certified)
    for i, b in enumerate(certified):
        if not cv.neuron_norms_positive(b, m, d):
            raise _Fail(f"cover.boxes[{i}]", "a neuron w_j can be zero on this box")
        with ctx.workprec(HESSIAN_PREC):
            H = obj.hessian_on_box(b)
            lo_ok, hi_ok = cv.check_spectrum(H, mu, beta)
        if not lo_ok:
            raise _Fail("mu_lower", f"box {i}: the Hessian enclosure does not prove every eigenvalue >= mu_lower")
        if not hi_ok:
            raise _Fail("beta_upper", f"box {i}: the Hessian enclosure does not prove every eigenvalue <= beta_upper")
        progress(i + 1, total)
    out.boxes = total
    ok(f"Hessian: mu_lower <= every eigenvalue <= beta_upper on all {total} boxes (Arb, every neuron non-zero)")

    # ---- L*_lambda and the gap bound
    enc = cert.get("L_star_enclosure") or {}
    try:
        lower = cv.parse_decimal(str(enc["lower"]))
        upper = cv.parse_decimal(str(enc["upper"]))
        dps = int(enc["dps"])
        tol = float(enc["sup_tol"])
        if not (15 <= dps <= 1000 and 0 < tol < 1):
            raise ValueError
    except (KeyError, TypeError, ValueError, ArithmeticError):
        raise CertificateError("certificate: L_star_enclosure must hold decimal lower and upper, dps (15..1000) and "
                               "sup_tol (0 < tol < 1)") from None
    if not gap_upper >= beta * R * R / 2 + (upper - lower):
        raise _Fail("gap_upper", "gap_upper < beta R^2/2 + (upper - lower)")
    with ctx.workprec(HESSIAN_PREC):
        L_c = obj.reg_loss([cv.frac_arb(c) for c in center])
    if not upper_fraction(L_c) <= upper:
        raise _Fail("L_star_enclosure.upper", "L_lambda(centre) may exceed the claimed upper end")
    ok("L*_lambda <= L_lambda(centre) <= upper (Arb); gap_upper >= beta R^2/2 + (upper - lower)")
    if check_l_star:
        D = l_star_lower(instance, cert["center"], dps, tol)
        if D is None:
            raise _Fail("L_star_enclosure.lower", "the duality bound could not be certified at the centre")
        if not lower <= D:
            raise _Fail("L_star_enclosure.lower", f"the recomputed duality bound {float(D):.17g} is below the claimed "
                        "lower end")
        ok(f"L*_lambda >= lower: the duality bound recomputed at the centre ({dps} digits, rigorous)")

