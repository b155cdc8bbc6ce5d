"""Tests of the evaluate command: ``python -m checker.evaluate INSTANCE.json [--engine mp --dps N]``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from checker.commands.evaluate import main
from tests import reference
from tests.tolerance import assert_close_scaled

REPO = Path(__file__).resolve().parent.parent

INSTANCE = {
    "activation": "abs",
    "teacher": {"a": ["1.2", "-0.8", "0.5"], "W": [["1", "0", "0"], ["0", "0.6", "0.8"], ["0.48", "0.6", "-0.64"]]},
    "student": {"a": ["1.1", "-0.6", "0.3", "0.2"],
                "W": [["0.95", "0.05", "0"], ["0.1", "0.5", "0.75"], ["0.4", "0.5", "-0.6"], ["0", "0", "0.3"]]},
    "lambda": "0.02",
    "eta": "0.1",
}
KEYS = {"loss", "reg_loss", "grad_a", "grad_W"}


@pytest.fixture(scope="module")
def ref():
    s, t = INSTANCE["student"], INSTANCE["teacher"]
    return reference.evaluate(INSTANCE["activation"], s["a"], s["W"], t["a"], t["W"], INSTANCE["lambda"])


@pytest.fixture
def instance_file(tmp_path):
    path = tmp_path / "instance.json"
    path.write_text(json.dumps(INSTANCE))
    return path


def _significant_digits(s: str) -> int:
    return len(re.split(r"[eE]", s.lstrip("+-"))[0].replace(".", "").lstrip("0"))


def _run(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _check_output(out: str, m: int = 4, d: int = 3) -> dict:
    data = json.loads(out)
    assert isinstance(data, dict) and set(data) == KEYS
    assert isinstance(data["loss"], str) and isinstance(data["reg_loss"], str)
    assert len(data["grad_a"]) == m and all(isinstance(x, str) for x in data["grad_a"])
    assert len(data["grad_W"]) == m and all(len(r) == d and all(isinstance(x, str) for x in r)
                                            for r in data["grad_W"])
    return data


def _compare(data: dict, ref, digits: float, what: str) -> None:
    assert_close_scaled(data["loss"], ref.loss, digits=digits, what=f"{what} loss")
    assert_close_scaled(data["reg_loss"], ref.reg_loss, digits=digits, what=f"{what} reg_loss")
    assert_close_scaled(data["grad_a"], ref.grad_a, digits=digits, what=f"{what} grad_a")
    assert_close_scaled(data["grad_W"], ref.grad_W, digits=digits, what=f"{what} grad_W")


def test_float64_output(capsys, instance_file, ref):
    # Reference: tests/reference.py at 90 digits; float64 must keep 11 digits
    # relative to the largest entry (as in test_objective), and its strings
    # are repr()s that round-trip the double.
    code, out, err = _run(capsys, [instance_file])
    assert code == 0 and err == ""
    data = _check_output(out)
    _compare(data, ref, 11, "float64")


@pytest.mark.parametrize("dps", [None, 30, 80])
def test_mp_output_carries_dps_digits(capsys, instance_file, ref, dps):
    # Reference: tests/reference.py at 90 digits.  Every printed number has exactly
    # dps significant digits (default 50), and they are correct to dps - 2 digits
    # relative to the largest entry (the last digit is rounded; one more for the
    # cancellation in sums of O(1) terms).
    argv = [instance_file, "--engine", "mp"] + ([] if dps is None else ["--dps", dps])
    code, out, err = _run(capsys, argv)
    assert code == 0 and err == ""
    data = _check_output(out)
    n = 50 if dps is None else dps
    strings = [data["loss"], data["reg_loss"], *data["grad_a"], *(x for r in data["grad_W"] for x in r)]
    assert all(_significant_digits(s) == n for s in strings), strings
    _compare(data, ref, n - 2, f"mp{n}")


BAD_INSTANCE_TEXT = [
    ("invalid-json", '{"teacher": '),
    ("nan-constant", json.dumps(INSTANCE).replace('"0.02"', "NaN")),
    ("nan-string", json.dumps(INSTANCE).replace('"0.02"', '"nan"')),
    ("boolean", json.dumps(INSTANCE).replace('"1.1"', "true")),
    ("unknown-key", json.dumps({**INSTANCE, "momentum": 0.9})),
    ("missing-key", json.dumps({k: v for k, v in INSTANCE.items() if k != "student"})),
    ("top-level-list", "[1, 2, 3]"),
    ("wrong-shape", json.dumps(INSTANCE).replace('"a": ["1.1", "-0.6", "0.3", "0.2"]', '"a": ["1.1"]')),
    ("d-mismatch", json.dumps(INSTANCE).replace('["0", "0", "0.3"]', '["0", "0.3"]')),
    ("zero-norm-teacher", json.dumps(INSTANCE).replace('["1", "0", "0"]', '["0", "0", "0"]')),
    ("non-unit-teacher", json.dumps(INSTANCE).replace('["1", "0", "0"]', '["2", "0", "0"]')),
    ("negative-lambda", json.dumps(INSTANCE).replace('"0.02"', '"-0.02"')),
    ("zero-eta", json.dumps(INSTANCE).replace('"0.1"', '"0"')),
    ("float64-overflow", json.dumps(INSTANCE).replace('"1.1"', '"1e400"')),
]


def _assert_one_line_error(code: int, out: str, err: str) -> None:
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("checker.evaluate: error: ")


@pytest.mark.parametrize("text", [c[1] for c in BAD_INSTANCE_TEXT], ids=[c[0] for c in BAD_INSTANCE_TEXT])
def test_bad_instance_exits_2_with_one_line(capsys, tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    _assert_one_line_error(*_run(capsys, [path]))


BAD_ARGS = [
    ("missing-file", ["{tmp}/nope.json"]),
    ("directory", ["{tmp}"]),
    ("no-arguments", []),
    ("unknown-option", ["{file}", "--fast"]),
    ("unknown-engine", ["{file}", "--engine", "quad"]),
    ("dps-with-float64", ["{file}", "--dps", "30"]),
    ("dps-too-low", ["{file}", "--engine", "mp", "--dps", "3"]),
    ("dps-too-high", ["{file}", "--engine", "mp", "--dps", "100000"]),
    ("dps-not-integer", ["{file}", "--engine", "mp", "--dps", "2.5"]),
]


@pytest.mark.parametrize("argv", [c[1] for c in BAD_ARGS], ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, instance_file, argv):
    argv = [a.format(tmp=tmp_path, file=instance_file) for a in argv]
    _assert_one_line_error(*_run(capsys, argv))


def test_error_messages_name_the_problem(capsys, tmp_path, instance_file):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(INSTANCE).replace('"0.02"', "NaN"))
    assert "lambda" in _run(capsys, [path])[2]
    path.write_text(json.dumps(INSTANCE).replace('"1.1"', '"1e400"'))
    assert "use --engine mp" in _run(capsys, [path])[2]
    assert "--dps" in _run(capsys, [instance_file, "--engine", "mp", "--dps", "3"])[2]


def test_real_command_line(instance_file, ref):
    # Reference: tests/reference.py at 90 digits, 38 digits relative to the largest
    # entry for the 40-digit output (see test_mp_output_carries_dps_digits).
    proc = subprocess.run([sys.executable, "-m", "checker.evaluate", str(instance_file), "--engine", "mp",
                           "--dps", "40"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    _compare(_check_output(proc.stdout), ref, 38, "subprocess mp40")


def test_real_command_line_on_the_example_and_bad_input(tmp_path):
    # The command as documented, on the repository's example: exit 0, one JSON object.
    proc = subprocess.run([sys.executable, "-m", "checker.evaluate", "examples/relu_3d.json"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    _check_output(proc.stdout, m=2, d=3)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = subprocess.run([sys.executable, "-m", "checker.evaluate", str(bad)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    _assert_one_line_error(proc.returncode, proc.stdout, proc.stderr)


# ---------------------------------------------------------------- non-finite results (issue 7)
def test_an_overflowing_student_is_refused_naming_the_field(capsys, tmp_path):
    data = json.loads(json.dumps(INSTANCE))
    data["student"]["W"][1][1] = "1e300"
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data))
    code, out, err = _run(capsys, [path])
    _assert_one_line_error(code, out, err)
    assert "student.W[1][1]" in err and "--engine mp" in err
    code, out, _ = _run(capsys, [path, "--engine", "mp", "--dps", "20"])
    assert code == 0 and "e+5" in json.loads(out)["loss"]  # the mp engine has the range: L ~ 1e599


def test_a_non_finite_float64_result_is_never_printed(capsys, tmp_path, monkeypatch):
    # Past the door (switched off here), an overflow in the objective must still end in exit 2.
    import checker.core.problem
    monkeypatch.setattr(checker.core.problem, "check_float64_range", lambda instance, fix="": None)
    data = json.loads(json.dumps(INSTANCE))
    data["student"]["a"][0] = "1e200"
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data))
    code, out, err = _run(capsys, [path])
    _assert_one_line_error(code, out, err)
    assert "overflows" in err and "--engine mp" in err
