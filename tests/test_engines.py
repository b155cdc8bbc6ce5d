"""Tests of checker/core/engines.py: precision validation, scoping, conversion and output."""

from __future__ import annotations

import re

import mpmath
import numpy as np
import pytest

from checker.core.engines import (GUARD_DIGITS, MAX_DPS, MIN_DPS, Float64Engine, MpEngine, make_engine,
                             to_strings)
from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.core.problem import Problem
from tests import reference
from tests.tolerance import assert_close_scaled


@pytest.mark.parametrize("dps", [MIN_DPS - 1, 0, -30, MAX_DPS + 1, 10 ** 9])
def test_dps_out_of_range(dps):
    with pytest.raises(CheckerError, match=rf"--dps must be between {MIN_DPS} and {MAX_DPS}"):
        MpEngine(dps)


@pytest.mark.parametrize("dps", [2.5, 50.0, "50", None, True])
def test_dps_must_be_a_whole_number(dps):
    with pytest.raises(CheckerError, match="--dps must be a whole number"):
        MpEngine(dps)


@pytest.mark.parametrize("dps", [MIN_DPS, MAX_DPS])
def test_dps_bounds_are_accepted(dps):
    eng = MpEngine(dps)
    assert eng.dps == dps and eng.work_dps == dps + GUARD_DIGITS


def test_make_engine():
    assert isinstance(make_engine("float64"), Float64Engine)
    assert make_engine("mp").dps == 50
    assert make_engine("mp", 30).dps == 30
    with pytest.raises(CheckerError, match="--dps applies to --engine mp only"):
        make_engine("float64", 30)
    with pytest.raises(CheckerError, match="unknown engine 'quad'"):
        make_engine("quad")
    with pytest.raises(CheckerError, match="--dps must be between"):
        make_engine("mp", 3)


def overflow_instance(where: str) -> Instance:
    fields = dict(teacher_a=["1.0"], teacher_W=[["1", "0"]], student_a=["0.5"], student_W=[["0.3", "0.4"]],
                  lam="0.01")
    if where == "student.a":
        fields["student_a"] = ["1e400"]
    elif where == "student.W":
        fields["student_W"] = [["0.3", "-1e400"]]
    elif where == "teacher.a":
        fields["teacher_a"] = ["-2e308"]
    else:
        fields["lam"] = "1e400"
    return Instance.create(**fields)


@pytest.mark.parametrize("where", ["student.a", "student.W", "teacher.a", "lambda"])
def test_float64_overflow_says_use_mp(where):
    # A finite decimal beyond float64's range (about 1.8e308) is a valid instance
    # but cannot be represented: a one-line CheckerError pointing to the mp engine.
    inst = overflow_instance(where)
    # refused where the instance enters the float64 engine (checker.core.problem.check_float64_range),
    # naming the field
    with pytest.raises(CheckerError, match=r"overflows float64.*use --engine mp") as info:
        Problem.from_instance(inst, Float64Engine())
    assert "\n" not in str(info.value) and str(info.value).startswith(where)
    # The mp engine reads the same instance exactly.
    prob = Problem.from_instance(inst, MpEngine(20))
    values = list(prob.a) + list(prob.W.ravel()) + list(prob.a_star) + [prob.lam]
    assert all(mpmath.isfinite(v) for v in values)


def test_float64_scalar_rejects_non_finite():
    eng = Float64Engine()
    for bad in ("inf", "nan", float("inf")):
        with pytest.raises(CheckerError, match="use --engine mp"):
            eng.scalar(bad)
    assert eng.scalar("0.1") == 0.1


def test_mp_precision_is_scoped():
    before = mpmath.mp.dps
    eng = MpEngine(40)
    with eng.context():
        assert mpmath.mp.dps == 40 + GUARD_DIGITS
    assert mpmath.mp.dps == before
    inst = Instance.create(teacher_a=["1"], teacher_W=[["1", "0"]], student_a=["0.5"], student_W=[["0.3", "0.4"]],
                           lam="0.01")
    Problem.from_instance(inst, eng).evaluate()
    assert mpmath.mp.dps == before


def test_mp_reads_decimal_strings_exactly_at_its_precision():
    # Reference: mpf("0.1") at 60 digits; a detour through float64 would differ by ~5.6e-18.
    eng = MpEngine(50)
    x = eng.scalar("0.1")
    arr = eng.array([["0.1", "-2.5e-30"]])
    with mpmath.workdps(60):
        exact = mpmath.mpf("0.1")
        assert abs(x - exact) < mpmath.mpf("1e-59")
        assert abs(arr[0, 0] - exact) < mpmath.mpf("1e-59")
        assert abs(x - mpmath.mpf(0.1)) > mpmath.mpf("1e-18")
        assert arr[0, 1] == mpmath.mpf("-2.5e-30")
    assert arr.dtype == object and arr.shape == (1, 2)


def _significant_digits(s: str) -> int:
    mantissa = re.split(r"[eE]", s.lstrip("+-"))[0].replace(".", "").lstrip("0")
    return len(mantissa)


def test_to_str_carries_the_engines_precision():
    eng = MpEngine(30)
    with eng.context():
        third = mpmath.mpf(1) / 3
        tiny = mpmath.mpf("-1.25e-40") / 7
    s = eng.to_str(third)
    assert _significant_digits(s) == 30 and s.startswith("0.3333")
    assert _significant_digits(eng.to_str(tiny)) == 30
    with mpmath.workdps(40):
        # Reference: 1/3 and -1.25e-40/7 at 40 digits; 30 correct digits means a
        # relative error below 1e-29 (half an ulp of the last printed digit).
        assert abs(mpmath.mpf(s) - mpmath.mpf(1) / 3) < mpmath.mpf("1e-30")
        assert abs(mpmath.mpf(eng.to_str(tiny)) / (mpmath.mpf("-1.25e-40") / 7) - 1) < mpmath.mpf("1e-29")
    f = Float64Engine()
    assert float(f.to_str(1 / 3)) == 1 / 3  # repr round-trips exactly


def test_to_strings_keeps_shape():
    eng = MpEngine(10)
    arr = eng.array([["1", "2", "3"], ["4", "5", "6"]])
    out = to_strings(eng, arr)
    assert [len(r) for r in out] == [3, 3] and all(isinstance(x, str) for r in out for x in r)
    assert to_strings(eng, eng.array(["7"])) == ["7.000000000"]
    assert to_strings(Float64Engine(), np.array([0.5, -1.0])) == ["0.5", "-1.0"]


# ---------------------------------------------------------------- the Arb backend of the mp engine
def test_backends_and_engine_names():
    assert make_engine("mp").backend == "arb"
    pure = make_engine("mpmath", 30)
    assert isinstance(pure, MpEngine) and pure.backend == "mpmath" and pure.dps == 30
    assert pure.work is pure and make_engine("mp").work is not None
    with pytest.raises(CheckerError, match="unknown mp backend"):
        MpEngine(30, backend="quad")


def test_arb_backend_precision_is_scoped():
    # The flint precision is scoped like mpmath's: set inside context(), restored after.
    from flint import ctx

    before, eng = ctx.prec, MpEngine(60)
    with eng.context():
        assert ctx.prec == eng.work_prec >= (60 + GUARD_DIGITS) * 3.32
    assert ctx.prec == before


def test_arb_conversions_are_exact():
    # mpf -> arb -> mpf is the identity (both are binary numbers; arb(man, exp) is exact).
    eng = MpEngine(100)
    with eng.context():
        xs = np.array([mpmath.mpf(1) / 3, -mpmath.mpf(2) ** -1000, mpmath.mpf(0), mpmath.mpf("1e300") * 7],
                      dtype=object)
        back = eng.from_work(eng.to_work(xs))
    assert all(x == y and isinstance(y, mpmath.mpf) for x, y in zip(xs, back))


def _generic(seed: int, activation: str, m: int = 5, m_star: int = 3, d: int = 4) -> Instance:
    rng = np.random.default_rng(seed)
    return Instance.create(
        activation=activation,
        teacher_a=[f"{x:.17g}" for x in rng.uniform(0.5, 1.5, m_star) * rng.choice([-1, 1], m_star)],
        teacher_W=[[f"{x:.17g}" for x in row] for row in rng.normal(size=(m_star, d))],
        # two nearly collinear rows (1 - t ~ 1e-19) besides generic ones: both angle routes run
        student_a=[f"{x:.17g}" for x in rng.normal(size=m)],
        student_W=[[f"{x:.17g}" for x in row] for row in
                   np.vstack([rng.normal(size=(m - 2, d)), np.ones((1, d)), np.ones((1, d)) + 1e-9])],
        lam="0.01", normalize_teacher=True)


@pytest.mark.parametrize("dps", [30, 50, 100])
@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_arb_backend_agrees_with_pure_mpmath(dps, activation):
    # Reference: the same mp engine computing in pure mpmath (the engine of every
    # earlier release).  Both work at dps + 10 digits from the same binary inputs;
    # the objective sums O((m + m*)^2) = 64 terms of size O(1), so both round to
    # within ~1e-(dps + 8) of the exact value: dps digits relative to the largest
    # entry is the precision promised.
    inst = _generic(dps, activation)
    fast = Problem.from_instance(inst, MpEngine(dps)).evaluate()
    pure = Problem.from_instance(inst, MpEngine(dps, backend="mpmath")).evaluate()
    for f in ("loss", "reg_loss", "grad_a", "grad_W", "loss_grad_a", "loss_grad_W"):
        x, y = getattr(fast, f), getattr(pure, f)
        assert all(isinstance(v, mpmath.mpf) for v in np.asarray(x, dtype=object).ravel())
        assert_close_scaled(x, y, digits=dps, what=f"arb vs mpmath {f} at {dps} digits")


@pytest.mark.parametrize("dps", [30, 50, 100])
def test_arb_backend_agrees_with_the_reference(dps):
    # Reference: tests/reference.py at 110 digits (t-form kernel, explicit double sum,
    # gradients by mpmath.diff), sharing no code with checker/.  dps - 2 digits
    # relative to the largest entry: the engine's rounding (dps + 10 working digits)
    # is far below; the margin covers the reference's numerical differentiation.
    inst = _generic(7, "relu")
    ev = Problem.from_instance(inst, MpEngine(dps)).evaluate()
    ref = reference.evaluate(inst.activation, inst.student_a, inst.student_W, inst.teacher_a, inst.teacher_W,
                             inst.lam, normalize_teacher=True, dps=max(reference.REF_DPS, dps + 20))
    for f in ("loss", "reg_loss", "grad_a", "grad_W"):
        assert_close_scaled(getattr(ev, f), getattr(ref, f), digits=dps - 2, what=f"arb vs reference {f}")
