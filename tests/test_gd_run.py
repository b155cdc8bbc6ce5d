"""checker/studies/gd_run.py: ``python -m checker.gd``, gradient descent alone for studies."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from decimal import Decimal

import mpmath
import numpy as np
import pytest

from checker.core import objective
from checker.core.engines import make_engine
from checker.core.io import read_json
from checker.core.model import Instance
from checker.commands import gd as gd_cmd
from checker.studies import gd_run
from tests.test_gd import TWO_TEACHERS


@pytest.fixture
def inst_file(tmp_path):
    path = tmp_path / "inst.json"
    path.write_text(json.dumps(TWO_TEACHERS.to_dict()))
    return str(path)


def run_cli(*args: str) -> int:
    return gd_cmd.main([*args, "--no-progress"])


def result(path) -> dict:
    return read_json(path, "result")


# --------------------------------------------------------------------------- the command
def test_lambda_zero_is_accepted_and_the_history_has_the_specified_keys(inst_file, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert run_cli(inst_file, "--lambda", "0", "--steps", "40", "--json", str(out)) == 0
    r = result(out)
    assert r["version"] == gd_run.RESULT_VERSION and r["instance"]["lambda"] == "0"
    assert r["stop_reason"] == "max-steps" and r["steps"] == 40
    for row in r["history"] + [r["final"]]:
        assert set(gd_run.HISTORY_KEYS) <= set(row)
        assert isinstance(row["step"], int)
        assert all(isinstance(row[k], str) for k in gd_run.HISTORY_KEYS[1:])
    # lambda = 0: L_lambda is L itself
    assert all(row["loss"] == row["reg_loss"] for row in r["history"])
    assert {"a", "W"} <= set(r["final"]) and r["history"][-1]["step"] == 40
    assert "no weight decay" in capsys.readouterr().out


def test_geometric_history_is_geometric_and_always_ends_with_the_last_step(inst_file, tmp_path):
    out = tmp_path / "r.json"
    assert run_cli(inst_file, "--steps", "1234", "--json", str(out)) == 0
    steps = [row["step"] for row in result(out)["history"]]
    assert steps == sorted(gd_run.geometric_steps(1234)) + [1234]
    # about 20 rows a decade beyond the first ten steps: 10..1234 is ~2.1 decades
    assert len(steps) <= 11 + 20 * 2.1 + 2
    tail = steps[11:-1]
    assert all(1.05 < b / a < 1.25 for a, b in zip(tail, tail[1:]))  # 10^(1/20) = 1.122, rounded to integers


def test_every_n_history(inst_file, tmp_path):
    out = tmp_path / "r.json"
    assert run_cli(inst_file, "--steps", "30", "--history", "every:7", "--json", str(out)) == 0
    assert [row["step"] for row in result(out)["history"]] == [0, 7, 14, 21, 28, 30]


def test_history_rows_match_a_direct_evaluation(inst_file, tmp_path):
    # Reference: the objective evaluated directly at the final a, W read back from
    # their exact decimal strings; geometry from nearest_teacher by hand.
    out = tmp_path / "r.json"
    assert run_cli(inst_file, "--steps", "25", "--json", str(out)) == 0
    fin = result(out)["final"]
    e = make_engine("float64")
    a = np.array([float(Decimal(x)) for x in fin["a"]])
    W = np.array([[float(Decimal(x)) for x in r] for r in fin["W"]])
    assert [str(Decimal(x)) for x in a] == fin["a"]  # exact expansion of the doubles
    a_s, W_s = e.array(TWO_TEACHERS.teacher_a), e.array(TWO_TEACHERS.teacher_W)
    ev = objective.evaluate(e, "relu", a, W, a_s, W_s, e.scalar(TWO_TEACHERS.lam))
    assert float(fin["loss"]) == ev.loss and float(fin["reg_loss"]) == ev.reg_loss
    assert float(fin["grad_norm"]) == math.sqrt((ev.grad_a ** 2).sum() + (ev.grad_W ** 2).sum())


@pytest.mark.parametrize("train, fixed", [("first", "a"), ("second", "W")])
def test_cli_trained_blocks_keep_the_fixed_block(inst_file, tmp_path, train, fixed):
    out = tmp_path / "r.json"
    assert run_cli(inst_file, "--train", train, "--steps", "30", "--json", str(out)) == 0
    r = result(out)
    start = TWO_TEACHERS.to_dict()["student"][fixed]
    got = r["final"][fixed]
    # exact: the fixed block's doubles are those of the instance's decimal strings
    if fixed == "a":
        assert [float(Decimal(x)) for x in got] == [float(x) for x in start]
    else:
        assert [[float(Decimal(x)) for x in row] for row in got] == [[float(x) for x in row] for row in start]
    assert r["options"]["train"] == train and r["monitoring"]["balance_identity"].startswith("not applicable")


@pytest.mark.parametrize("engine", ["float64", "mp"])
def test_checkpoint_and_resume_give_the_same_final_numbers(inst_file, tmp_path, engine):
    extra = ["--engine", "mp", "--dps", "20"] if engine == "mp" else []
    n, split = (60, 25) if engine == "float64" else (12, 5)
    straight, part, resumed = (tmp_path / f"{k}.json" for k in ("straight", "part", "resumed"))
    ck = tmp_path / "ck.json"
    assert run_cli(inst_file, "--steps", str(n), "--train", "first", "--json", str(straight), *extra) == 0
    assert run_cli(inst_file, "--steps", str(split), "--train", "first", "--checkpoint", str(ck),
                   "--json", str(part), *extra) == 0
    assert run_cli(inst_file, "--steps", str(n), "--train", "first", "--checkpoint", str(ck), "--resume",
                   "--json", str(resumed), *extra) == 0
    s, r = result(straight), result(resumed)
    # exact equality: the resumed run replays the same arithmetic
    assert s["final"] == r["final"] and s["history"] == r["history"]
    # another trained block is refused on resume, with one line
    assert run_cli(inst_file, "--steps", str(n), "--checkpoint", str(ck), "--resume", *extra) == 2


def test_start_continues_in_mp_from_the_exact_float64_point(inst_file, tmp_path):
    f64, mp = tmp_path / "f64.json", tmp_path / "mp.json"
    assert run_cli(inst_file, "--lambda", "0", "--steps", "50", "--json", str(f64)) == 0
    assert run_cli(inst_file, "--lambda", "0", "--start", str(f64), "--engine", "mp", "--dps", "30",
                   "--steps", "5", "--json", str(mp)) == 0
    r0, r1 = result(f64), result(mp)
    assert r1["step_offset"] == 50 and r1["steps"] == 55
    assert [row["step"] for row in r1["history"]][0] == 50 and r1["history"][-1]["step"] == 55
    # The mp start is the float64 end point exactly (the exact binary expansions).
    assert r1["instance"]["student"]["a"] == r0["final"]["a"]
    with mpmath.workdps(30):
        assert all(mpmath.mpf(x) == mpmath.mpf(float(Decimal(x))) for x in r0["final"]["a"])
    # same point, two engines: the losses agree to float64's rounding of L (~eps ||f*||^2)
    assert abs(float(r1["history"][0]["loss"]) - float(r0["final"]["loss"])) < 1e-14
    # another teacher is refused
    other = tmp_path / "other.json"
    other.write_text(json.dumps(TWO_TEACHERS.replace(teacher_a=["1.0", "-0.7"]).to_dict()))
    assert run_cli(str(other), "--start", str(f64), "--steps", "1") == 2


def test_divergence_exits_1_with_a_reproducible_file(inst_file, tmp_path):
    out = tmp_path / "r.json"
    assert run_cli(inst_file, "--eta", "1e6", "--steps", "50", "--json", str(out),
                   "--counterexample-dir", str(tmp_path / "cx")) == 1
    assert result(out)["stop_reason"] == "diverged"
    files = list((tmp_path / "cx").glob("gd-diverged-*.json"))
    assert len(files) == 1
    assert Instance.from_dict(read_json(files[0], "file")["instance"]).eta == "1e6"


def test_ctrl_c_gives_130_and_the_partial_result(inst_file, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = objective.evaluate

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 40:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(objective, "evaluate", flaky)
    out = tmp_path / "r.json"
    assert run_cli(inst_file, "--steps", "1000", "--json", str(out)) == 130
    r = result(out)
    assert r["stop_reason"] == "interrupted" and 0 < r["steps"] < 1000


@pytest.mark.parametrize("args, expect", [
    (["--steps", "0"], "--steps"),
    (["--steps", "100000000000000000000"], "--steps"),
    (["--lambda", "-0.1"], "--lambda"),
    (["--lambda", "abc"], "--lambda"),
    (["--lambda", "nan"], "--lambda"),
    (["--eta", "0"], "--eta"),
    (["--steps", "-1"], "--steps"),
    (["--history", "every:0"], "--history"),
    (["--history", "log"], "--history"),
    (["--train", "third"], "--train"),
    (["--dps", "4"], "--dps"),  # the one range: 5 to max_dps(), as every command
    (["--engine", "float64", "--dps", "30"], "--dps"),
    (["--time-budget", "0"], "--time-budget"),
    (["--resume"], "--checkpoint"),
    (["--bogus"], "unrecognized"),
    (["--preset", "nope"], "unknown preset"),
])
def test_bad_flags_are_refused_with_one_line(inst_file, capsys, args, expect):
    argv = list(args) if "--preset" in args else [inst_file, *args]
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1


def test_bad_files_are_refused_with_one_line(inst_file, tmp_path, capsys):
    assert run_cli(str(tmp_path / "missing.json")) == 2
    assert run_cli() == 2
    assert run_cli(inst_file, "--json", str(tmp_path)) == 2  # a directory
    assert run_cli(inst_file, "--json", inst_file) == 2  # would overwrite the input
    assert run_cli(inst_file, "--checkpoint", str(tmp_path / "none.json"), "--resume") == 2
    assert run_cli(inst_file, "--start", inst_file) == 2  # not a result
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all(line.startswith(gd_run.PROG) for line in err)


def test_module_entry_point_runs_the_command(inst_file, tmp_path):
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "checker.gd", inst_file, "--steps", "3", "--lambda", "0",
                        "--json", str(out), "--no-progress"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert result(out)["steps"] == 3
    bad = subprocess.run([sys.executable, "-m", "checker.gd", inst_file, "--lambda", "-1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


# --------------------------------------------------------------------------- geometry of a point
def test_neuron_geometry_on_constructed_cases():
    # Two orthogonal teachers, radius pi/6.  Neuron 0 exactly on teacher 0 (mass 0.5),
    # neuron 1 on teacher 0 at angle 0.1 (mass 0.2): a split pair, redundant mass 0.2;
    # neuron 2 at 45 degrees between them (far, mass 0.3); neuron 3 tiny (mass 1e-4,
    # angle 0.6 > radius: far, and below 1e-2 a_min so not in max_angle); neuron 4 zero.
    a_s, W_s = [1.0, -1.0], [[1, 0, 0], [0, 1, 0]]
    c, s = math.cos(0.1), math.sin(0.1)
    a = [0.5, 0.2, 0.3, 1e-4, 1.0]
    W = [[1, 0, 0], [c, 0, s], [math.sqrt(0.5), math.sqrt(0.5), 0], [math.cos(0.6), 0, math.sin(0.6)], [0, 0, 0]]
    g = gd_run.neuron_geometry("relu", a_s, W_s, a, W, math.pi / 6)
    # rel 1e-15 / 1e-14: a few ulps of the float64 sums and of the atan2 angle formula
    assert g["far_mass"] == pytest.approx(0.3 + 1e-4, rel=1e-15)
    assert g["redundant_mass"] == pytest.approx(0.2, rel=1e-15)
    # the heavy far neuron sits at pi/4 from both teachers: it sets the max angle
    assert g["max_angle"] == pytest.approx(math.pi / 4, rel=1e-14)
    g2 = gd_run.neuron_geometry("relu", a_s, W_s, a[:2], W[:2], math.pi / 6)
    # the masses are sums of products of doubles: equal to a few ulps
    assert g2 == {"far_mass": 0.0, "max_angle": pytest.approx(0.1, rel=1e-14),
                  "redundant_mass": pytest.approx(0.2, rel=1e-15)}


def test_history_option_parsing():
    assert gd_run.parse_history(" every:05 ") == "every:5"
    assert gd_run.geometric_steps(5) == {0, 1, 2, 3, 4, 5}
    assert {10, 11, 13, 14, 16, 18, 20, 22, 25, 28, 32} <= gd_run.geometric_steps(32)
