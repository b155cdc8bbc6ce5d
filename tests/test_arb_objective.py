"""The conversions every ``rigorous: true`` label rests on: Arb ball -> Fraction -> decimal string.

A rigorous figure of the checker is the end of an Arb ball, read exactly as a
Fraction (``upper_fraction`` / ``lower_fraction``) and printed as a decimal string
rounded outward (``decimal_string``) with ``digits_for(prec)`` digits; the
certificate reads a certified decimal back into a float rounded up
(``_decimal_up``).  Every check here is exact: Fraction arithmetic on the
strings and on the balls' dyadic mid-points and radii, and Arb's own
containment predicate as the independent judge of what a ball contains.  No
tolerance enters: rounding in the wrong direction by a single unit fails.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import mpmath
import pytest
from flint import arb, ctx
from hypothesis import given
from hypothesis import strategies as st

from checker.geometry.certificate import _decimal_up
from checker.rigorous.arb_objective import (decimal_string, digits_for, dyadic_arb, lower_fraction, to_arb,
                                            upper_fraction)
from tests.strategies import dyadic_balls, non_decimal_fractions


def _exact(text: str) -> Fraction:
    """The exact value of a decimal string (Decimal -> Fraction is exact)."""
    return Fraction(Decimal(text))


def _significant(text: str) -> int:
    digits = Decimal(text).as_tuple().digits
    return len(digits)


def _ball(mid: Fraction, rad: Fraction) -> arb:
    """An Arb ball with exactly this dyadic mid-point and a radius at least ``rad``.

    Arb stores radii with 30 bits rounded up, so the ball may be a little wider
    than asked; what it contains is judged by ``arb.contains``.
    """
    r = dyadic_arb(rad)
    return arb(dyadic_arb(mid).mid(), r.mid()) if rad else dyadic_arb(mid)


# ------------------------------------------------------------------ decimal_string
@given(q=non_decimal_fractions(), digits=st.integers(1, 80))
def test_decimal_string_rounds_outward_by_at_most_one_unit(q, digits):
    # q has no finite decimal expansion, so both roundings are strict: down < q < up.
    up = decimal_string(q, up=True, digits=digits)
    down = decimal_string(q, up=False, digits=digits)
    assert _exact(down) < q < _exact(up)
    assert _significant(up) <= digits and _significant(down) <= digits
    # Adjacent decimals of `digits` significant digits: one unit in the last place of the
    # larger magnitude, 10^(floor(log10 |up or down|) - digits + 1), apart.
    top = max(abs(_exact(up)), abs(_exact(down)))
    ulp = Fraction(10) ** (math.floor(math.log10(top)) - digits + 1)
    assert _exact(up) - _exact(down) <= ulp


@given(q=non_decimal_fractions(max_exponent=5), digits=st.integers(1, 40))
def test_decimal_string_up_and_down_are_mirror_images(q, digits):
    # Rounding toward +inf of q is minus the rounding toward -inf of -q (exact check).
    assert _exact(decimal_string(q, up=True, digits=digits)) == \
        -_exact(decimal_string(-q, up=False, digits=digits))


@given(man=st.integers(-2**60, 2**60), exp=st.integers(-60, 60))
def test_decimal_string_of_a_dyadic_number_with_enough_digits_is_exact(man, exp):
    # m 2^e has a finite decimal expansion of at most |e| + 19 significant digits (2^-k =
    # 5^k / 10^k): with that many digits nothing is rounded in either direction.
    q = Fraction(man) * Fraction(2) ** exp
    digits = abs(exp) + 20
    assert _exact(decimal_string(q, up=True, digits=digits)) == q
    assert _exact(decimal_string(q, up=False, digits=digits)) == q


# ------------------------------------------------------------------ ball ends
@given(ball=dyadic_balls())
def test_ball_ends_are_exact_and_outermost(ball):
    mid, rad = ball
    with ctx.workprec(256):
        x = _ball(mid, rad)
        hi, lo = upper_fraction(x), lower_fraction(x)
        # the ends enclose the interval asked for (the stored radius is at least rad) ...
        assert hi >= mid + rad and lo <= mid - rad
        assert hi - mid == mid - lo  # a ball is symmetric about its mid-point
        # ... are points of the ball (Arb's own predicate on exact balls) ...
        assert x.contains(dyadic_arb(hi)) and x.contains(dyadic_arb(lo))
        # ... and nothing beyond them is: 2^-400 is far below every radius drawn and every mid's ulp
        beyond = Fraction(1, 2**400)
        assert not x.contains(dyadic_arb(hi + beyond)) and not x.contains(dyadic_arb(lo - beyond))


@given(ball=dyadic_balls(), digits=st.integers(1, 90))
def test_decimal_strings_of_the_ends_enclose_the_whole_ball(ball, digits):
    # Digits from far coarser than the ball's width to far finer than it: the upper string
    # is >= every point of the ball and the lower string <= every point, always.
    mid, rad = ball
    with ctx.workprec(256):
        x = _ball(mid, rad)
        up = _exact(decimal_string(upper_fraction(x), up=True, digits=digits))
        down = _exact(decimal_string(lower_fraction(x), up=False, digits=digits))
        assert up >= upper_fraction(x) >= mid + rad
        assert down <= lower_fraction(x) <= mid - rad


def test_non_finite_balls_are_refused():
    for x in (arb("inf"), arb("nan"), arb(0, "inf")):
        with pytest.raises(ValueError):
            upper_fraction(x)
        with pytest.raises(ValueError):
            lower_fraction(x)


# ------------------------------------------------------------------ digits for a precision
@pytest.mark.parametrize("prec", [53, 64, 100, 128, 160, 200, 256, 300, 512, 1000, 2000])
def test_digits_for_carry_the_precision(prec):
    # A prec-bit number rounded to digits_for(prec) significant digits moves by at most one unit
    # in the last decimal place, 10^(1 - digits) relative; that must stay below 2^-prec, the
    # relative spacing of prec-bit numbers.  Exact check in rationals.
    digits = digits_for(prec)
    assert Fraction(10) ** (1 - digits) <= Fraction(1, 2**prec)
    assert digits >= 20
    # and not wastefully many: at most 3 digits beyond ceil(prec log10 2)
    assert digits <= math.ceil(prec * math.log10(2)) + 3 or digits == 20


# ------------------------------------------------------------------ binary numbers in, decimal back
@given(f=st.floats(allow_nan=False, allow_infinity=False))
def test_to_arb_of_a_float_is_exact(f):
    x = to_arb(f)
    assert x.rad() == 0
    assert upper_fraction(x) == lower_fraction(x) == Fraction(f)


@given(man=st.integers(-2**200, 2**200), exp=st.integers(-300, 300))
def test_to_arb_of_an_mpf_is_exact(man, exp):
    with mpmath.workdps(80):
        m = mpmath.mpf((man, exp)) if man else mpmath.mpf(0)
    x = to_arb(m)
    q = Fraction(man) * Fraction(2) ** exp
    # mpmath normalizes the mantissa (strips trailing zero bits): the value is the same
    assert x.rad() == 0 and upper_fraction(x) == q


@given(q=non_decimal_fractions(max_exponent=200), digits=st.integers(1, 40))
def test_decimal_up_reads_a_certified_decimal_into_a_float_above_it(q, digits):
    # The certificate turns a certified upper bound (a decimal string) into a float with
    # _decimal_up: the float must be >= the decimal and the next float down must not be.
    # (Magnitudes stay within 1e-215 .. 1e265: inside the normal float range.)
    text = decimal_string(q, up=True, digits=digits)
    x = _decimal_up(text)
    assert Fraction(x) >= _exact(text)
    assert Fraction(math.nextafter(x, -math.inf)) < _exact(text)
