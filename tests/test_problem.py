"""The float64 door of ``checker.core.problem``: an instance the float64 objective would overflow is refused.

Reference for the accepted side: the mp engine at 50 digits (its own arithmetic,
no float64 anywhere), compared with the float64 engine on the same instance.
"""

from __future__ import annotations

import pytest

from checker.core.engines import Float64Engine, MpEngine
from checker.core.errors import InstanceError
from checker.core.model import Instance
from checker.core.problem import Problem, check_float64_range
from tests.tolerance import assert_close

TEACHER = dict(activation="relu", teacher_a=["1", "-0.7"], teacher_W=[["1", "0", "0"], ["0", "1", "0"]],
               lam="0.01", eta="0.1")


def _instance(a1: str, w1: str) -> Instance:
    return Instance.create(student_a=["0.9", a1], student_W=[["0.9", "0.1", "0"], ["0", w1, "0.3"]], **TEACHER)


@pytest.mark.parametrize("a1, w1", [("0.1", "1e50"), ("0.1", "1e100"), ("1e-100", "1e140"), ("1e70", "1e70")])
def test_large_but_representable_instances_agree_with_the_mp_engine(a1: str, w1: str) -> None:
    inst = _instance(a1, w1)
    check_float64_range(inst)
    f = Problem.from_instance(inst, Float64Engine()).evaluate()
    with MpEngine(50).context():
        m = Problem.from_instance(inst, MpEngine(50)).evaluate()
    # float64 against 50 digits: the huge neuron dominates every term (no cancellation at
    # its scale), so the relative error is a few ulps times the O(m^2) term count; 1e-11
    # is the agreement the issue asks of the float64 engine.
    for name in ("loss", "reg_loss", "grad_a", "grad_W"):
        assert_close(getattr(f, name), getattr(m, name), rel="1e-11", abs_="1e-11", what=name)


@pytest.mark.parametrize("a1, w1, field", [
    ("0.1", "1e300", "student.W[1][1]"),   # the entry itself squares past float64
    ("0.1", "1e151", "student.W[1][1]"),   # its square 1e302 exceeds the limit
    ("1e100", "1e100", "student.a[1]"),    # squares fine (1e200) but the kernel product a^2 ||w||^2 = 1e400
    ("1e200", "0.5", "student.a[1]"),
])
def test_overflowing_instances_are_refused_naming_the_field(a1: str, w1: str, field: str) -> None:
    inst = _instance(a1, w1)
    with pytest.raises(InstanceError) as exc:
        Problem.from_instance(inst, Float64Engine())
    assert exc.value.field == field and "overflows float64" in str(exc.value) and "--engine mp" in str(exc.value)
    Problem.from_instance(inst, MpEngine(30))  # the mp engine takes it


def test_a_huge_lambda_is_refused_and_a_normalized_teacher_counts_as_unit() -> None:
    with pytest.raises(InstanceError) as exc:
        check_float64_range(_instance("0.1", "0.2").replace(lam="1e301"))
    assert exc.value.field == "lambda"
    with pytest.raises(InstanceError) as exc:
        Problem.from_instance(_instance("0.1", "0.2").replace(eta="1e400"), Float64Engine())
    assert exc.value.field == "eta"
    big_teacher = _instance("0.1", "0.2").replace(teacher_W=[["1e100", "0", "0"], ["0", "1", "0"]],
                                                   normalize_teacher=True)
    check_float64_range(big_teacher)  # normalized rows: only the squares of the entries matter
    with pytest.raises(InstanceError) as exc:
        check_float64_range(big_teacher.replace(teacher_W=[["1e200", "0", "0"], ["0", "1", "0"]]))
    assert exc.value.field == "teacher.W[0][0]"
