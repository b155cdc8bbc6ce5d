"""Tests of checker/core/model.py: the instance, its JSON form and every loader error.

Every invalid input must raise InstanceError (a CheckerError: one line, exit 2)
whose ``field`` is the offending field and whose message names it.
"""

from __future__ import annotations

import copy
import json
import math

import mpmath
import pytest

from checker.core.errors import CheckerError, InstanceError
from checker.core.engines import MpEngine
from checker.core.model import Instance
from checker.core.problem import Problem


def valid() -> dict:
    return {
        "activation": "relu",
        "teacher": {"a": ["1.0", "-0.7"], "W": [["1", "0", "0"], ["0", "0.6", "0.8"]]},
        "student": {"a": ["0.9", "0.1"], "W": [["0.9", "0.1", "0"], ["0", "0.2", "0.3"]]},
        "lambda": "0.01",
        "eta": "0.05",
    }


def with_change(path: str, value) -> dict:
    """The valid instance with one entry replaced (path like "student.W.1"); value DELETE removes it."""
    data = valid()
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    key = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return data


DELETE = object()

DICT_ERRORS = [
    # (id, change path, new value, field the error must name)
    ("a-vs-W-teacher", "teacher.a", ["1.0"], "teacher"),
    ("a-vs-W-student", "student.a", ["0.9", "0.1", "0.3"], "student"),
    ("ragged-teacher-rows", "teacher.W", [["1", "0", "0"], ["0", "1"]], "teacher.W"),
    ("ragged-student-rows", "student.W", [["0.9", "0.1", "0"], ["0", "0.2"]], "student.W"),
    ("d-mismatch", "student.W", [["0.9", "0.1"], ["0", "0.2"]], "student.W"),
    ("empty-teacher-a", "teacher.a", [], "teacher.a"),
    ("empty-student-W", "student.W", [], "student.W"),
    ("empty-row", "student.W", [[], []], "student.W[0]"),
    ("a-not-a-list", "student.a", "0.9", "student.a"),
    ("W-not-a-list", "teacher.W", 5, "teacher.W"),
    ("nan-string", "student.a.0", "nan", "student.a[0]"),
    ("NaN-string", "teacher.W.0.1", "NaN", "teacher.W[0][1]"),
    ("inf-string", "lambda", "inf", "lambda"),
    ("Infinity-string", "student.W.1.2", "-Infinity", "student.W[1][2]"),
    ("float-nan", "student.a.1", math.nan, "student.a[1]"),
    ("float-inf", "eta", math.inf, "eta"),
    ("non-number", "student.a.0", "0.9x", "student.a[0]"),
    ("null", "student.W.0.0", None, "student.W[0][0]"),
    ("nested-list", "teacher.a.0", [1], "teacher.a[0]"),
    ("object", "lambda", {"value": 1}, "lambda"),
    ("bool-true", "student.a.0", True, "student.a[0]"),
    ("bool-false", "lambda", False, "lambda"),
    ("zero-norm-teacher", "teacher.W.1", ["0", "0", "0"], "teacher.W[1]"),
    ("non-unit-teacher", "teacher.W.1", ["0", "0.6", "0.9"], "teacher.W[1]"),
    ("duplicate-teacher", "teacher.W.1", ["1", "0", "0"], "teacher.W"),
    ("zero-teacher-weight", "teacher.a.1", "0", "teacher.a[1]"),
    ("zero-teacher-weight-exp", "teacher.a.0", "-0.0e5", "teacher.a[0]"),
    ("negative-lambda", "lambda", "-0.01", "lambda"),
    ("zero-eta", "eta", "0", "eta"),
    ("negative-eta", "eta", "-0.05", "eta"),
    ("unknown-activation", "activation", "tanh", "activation"),
    ("unknown-key", "momentum", "0.9", "momentum"),
    ("unknown-subkey", "teacher.b", ["1"], "teacher.b"),
    ("missing-lambda", "lambda", DELETE, "lambda"),
    ("missing-teacher", "teacher", DELETE, "teacher"),
    ("missing-student-W", "student.W", DELETE, "student.W"),
    ("student-not-object", "student", [1, 2], "student"),
    ("normalize-not-bool", "normalize_teacher", "yes", "normalize_teacher"),
    ("name-not-string", "name", 3, "name"),
]


@pytest.mark.parametrize("path,value,field", [c[1:] for c in DICT_ERRORS], ids=[c[0] for c in DICT_ERRORS])
def test_invalid_instance_names_the_field(path, value, field):
    with pytest.raises(InstanceError) as info:
        Instance.from_dict(with_change(path, value))
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"{field}: ") and "\n" not in message


def test_input_dimension_one_is_rejected():
    data = valid()
    data["teacher"] = {"a": ["1"], "W": [["1"]]}
    data["student"] = {"a": ["1"], "W": [["0.5"]]}
    with pytest.raises(InstanceError, match=r"^teacher\.W: input dimension d = 1") as info:
        Instance.from_dict(data)
    assert info.value.field == "teacher.W"


def test_abs_rejects_antipodal_teachers_but_relu_accepts_them():
    # For abs, w and -w are the same feature (a line), so an antipodal pair has Delta = 0.
    data = with_change("teacher.W.1", ["-1", "0", "0"])
    relu = Instance.from_dict(data)
    assert relu.separation == pytest.approx(math.pi, rel=1e-15)
    data["activation"] = "abs"
    with pytest.raises(InstanceError, match="same line") as info:
        Instance.from_dict(data)
    assert info.value.field == "teacher.W"


def test_duplicate_direction_with_different_norms_is_rejected_when_normalizing():
    data = with_change("teacher.W.1", ["2.5", "0", "0"])
    data["normalize_teacher"] = True
    with pytest.raises(InstanceError, match="separation Delta = 0") as info:
        Instance.from_dict(data)
    assert info.value.field == "teacher.W"


def test_normalize_teacher_accepts_non_unit_rows_and_engines_normalize():
    # Reference: the row (0, 0.6, 0.9) has norm sqrt(1.17); normalized at 50 digits its
    # entries are 0.6/sqrt(1.17), 0.9/sqrt(1.17) to 1e-45 (both O(1)).
    data = with_change("teacher.W.1", ["0", "0.6", "0.9"])
    data["normalize_teacher"] = True
    inst = Instance.from_dict(data)
    assert inst.normalize_teacher and inst.teacher_W[1] == ("0", "0.6", "0.9")
    prob = Problem.from_instance(inst, MpEngine(50))
    with mpmath.workdps(60):
        root = mpmath.sqrt(mpmath.mpf("1.17"))
        expected = [0, mpmath.mpf("0.6") / root, mpmath.mpf("0.9") / root]
    assert all(abs(x - y) < mpmath.mpf("1e-45") for x, y in zip(prob.W_star[1], expected))
    # Separation: angle between (1,0,0) and (0,0.6,0.9) is pi/2, whatever the norms.
    assert inst.separation == pytest.approx(math.pi / 2, rel=1e-14)


JSON_ERRORS = [
    ("json-NaN", '{"teacher": {"a": [1], "W": [[1, 0]]}, "student": {"a": [NaN], "W": [[1, 0]]}, "lambda": 0.1}',
     "student.a[0]"),
    ("json-Infinity", '{"teacher": {"a": [1], "W": [[1, 0]]}, "student": {"a": [1], "W": [[Infinity, 0]]}, '
     '"lambda": 0.1}', "student.W[0][0]"),
    ("json-minus-Infinity", '{"teacher": {"a": [1], "W": [[1, 0]]}, "student": {"a": [1], "W": [[1, 0]]}, '
     '"lambda": -Infinity}', "lambda"),
    ("invalid-json", '{"teacher": {"a": [1], "W": [[1, 0]]},', "source.json"),
    ("empty-text", "", "source.json"),
]


@pytest.mark.parametrize("text,field", [c[1:] for c in JSON_ERRORS], ids=[c[0] for c in JSON_ERRORS])
def test_invalid_json_text_names_the_field(text, field):
    with pytest.raises(InstanceError) as info:
        Instance.from_json(text, source="source.json")
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize("text", ["[1, 2]", '"instance"', "3", "null"])
def test_top_level_must_be_an_object(text):
    with pytest.raises(InstanceError, match="must be a JSON object"):
        Instance.from_json(text)


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(InstanceError, match="no such file") as info:
        Instance.from_file(missing)
    assert info.value.field == str(missing)
    with pytest.raises(InstanceError, match="is a directory") as info:
        Instance.from_file(tmp_path)
    assert info.value.field == str(tmp_path)


def test_undecodable_file(tmp_path):
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(InstanceError, match="cannot be read") as info:
        Instance.from_file(bad)
    assert info.value.field == str(bad)


def test_instance_error_is_a_one_line_checker_error():
    err = InstanceError("lambda", "is negative (-1)", "weight decay needs lambda >= 0")
    assert isinstance(err, CheckerError)
    assert str(err) == "lambda: is negative (-1) (weight decay needs lambda >= 0)"


def test_numbers_are_kept_as_written(tmp_path):
    # JSON numbers are read as text, never through a float: 0.1 stays "0.1",
    # a 30-digit number keeps all its digits, and 1e400 (not a float64) is kept.
    text = (json.dumps(valid()).replace('"0.01"', "0.100000000000000000000000000001")
            .replace('"a": ["0.9", "0.1"]', '"a": [1e400, 0.1]'))
    path = tmp_path / "inst.json"
    path.write_text(text)
    inst = Instance.from_file(path)
    assert inst.lam == "0.100000000000000000000000000001"
    assert inst.student_a == ("1e400", "0.1")
    assert inst.student_W[0] == ("0.9", "0.1", "0")


def test_round_trip_and_properties():
    data = valid()
    data["name"] = "two teachers"
    inst = Instance.from_dict(data)
    assert (inst.d, inst.m, inst.m_star) == (3, 2, 2)
    assert inst.separation == pytest.approx(math.acos(0), rel=1e-14)  # <(1,0,0), (0,.6,.8)> = 0
    assert inst.to_dict() == data
    assert Instance.from_json(json.dumps(inst.to_dict())) == inst
    assert inst.eta == "0.05"
    assert Instance.from_dict({k: v for k, v in data.items() if k != "eta"}).eta is None


def test_replace_revalidates():
    inst = Instance.from_dict(valid())
    changed = inst.replace(lam="0.5", student_a=[1, 2.5])
    assert changed.lam == "0.5" and changed.student_a == ("1", "2.5")
    assert inst.lam == "0.01"  # frozen original untouched
    with pytest.raises(InstanceError) as info:
        inst.replace(lam="-1")
    assert info.value.field == "lambda"
    with pytest.raises(InstanceError) as info:
        inst.replace(student_a=["1"])
    assert info.value.field == "student"


def test_create_accepts_python_numbers_and_mpf():
    # An mpf with more than 53 bits keeps its digits in the canonical string
    # (reference: 1/3 at 40 digits; the string must reproduce it to 1e-40).
    with mpmath.workdps(40):
        third = mpmath.mpf(1) / 3
    inst = Instance.create(teacher_a=[1], teacher_W=[[1, 0]], student_a=[third], student_W=[[0.5, -0.25]],
                           lam=0)
    assert inst.student_W[0] == ("0.5", "-0.25")
    with mpmath.workdps(40):
        assert abs(mpmath.mpf(inst.student_a[0]) - third) < mpmath.mpf("1e-40")
    with pytest.raises(InstanceError) as info:
        Instance.create(teacher_a=[1], teacher_W=[[1, 0]], student_a=[mpmath.mpf("nan")],
                        student_W=[[1, 0]], lam=0)
    assert info.value.field == "student.a[0]"


def test_the_valid_instance_is_valid():
    # Guards the table above: every error there comes from its one change.
    inst = Instance.from_dict(copy.deepcopy(valid()))
    assert inst.activation == "relu" and inst.lam == "0.01"


# ---------------------------------------------------------------- numbers at the door (issue 7)
def test_a_ten_thousand_digit_number_is_refused_quoting_a_short_prefix():
    data = valid()
    data["student"]["a"][0] = "0." + "3" * 10_000
    with pytest.raises(InstanceError) as info:
        Instance.from_dict(data)
    msg = str(info.value)
    assert info.value.field == "student.a[0]" and "too long" in msg
    assert "3" * 41 not in msg and len(msg) < 200  # at most ~40 characters of the value


def test_a_huge_json_integer_and_an_exponent_beyond_the_range_are_refused():
    text = json.dumps(valid()).replace('"0.01"', "1" * 5000)  # read as text: a 5000-digit integer
    with pytest.raises(InstanceError) as info:
        Instance.from_json(text)
    assert info.value.field == "lambda" and len(str(info.value)) < 200
    with pytest.raises(InstanceError, match="outside the supported range") as info:
        Instance.from_dict({**valid(), "eta": "1e999999999"})
    assert info.value.field == "eta"
    with pytest.raises(InstanceError) as info:
        Instance.create(**{**dict(teacher_a=["1"], teacher_W=[["1", "0"]], student_a=["1"],
                                  student_W=[["1", "0"]], lam="0.1"), "student_a": [10 ** 5000]})
    assert info.value.field == "student.a[0]"


def test_non_unit_teacher_rows_point_to_the_real_key():
    data = valid()
    data["teacher"]["W"][0] = ["2", "0", "0"]
    with pytest.raises(InstanceError) as info:
        Instance.from_dict(data)
    msg = str(info.value)
    assert '"normalize_teacher": true' in msg and "--normalize-teacher" not in msg
    Instance.from_dict({**data, "normalize_teacher": True})  # and that key does what the message says


def test_a_file_with_a_utf8_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(valid()).encode("utf-8"))
    assert Instance.from_file(path) == Instance.from_dict(valid())


def test_numpy_floats_are_read_as_their_decimal_value():
    # numpy 2's float64 is a Python float whose repr is "np.float64(0.5)": the instance must keep
    # the number, "0.5", exactly as for the built-in float.
    import numpy as np

    inst = Instance.create(teacher_a=[np.float64(1.0)], teacher_W=[[np.float64(1.0), 0.0]],
                           student_a=[np.float64(0.5)], student_W=[[np.float64(0.25), np.float32(0.5)]],
                           lam=np.float64(0.01))
    assert inst.student_a == ("0.5",) and inst.student_W == (("0.25", "0.5"),) and inst.lam == "0.01"
