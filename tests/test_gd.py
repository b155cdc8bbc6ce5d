"""checker/dynamics/gd.py: descent, balance identity, schedule, stop rules, checkpoints and resume."""

from __future__ import annotations

import dataclasses
import json
import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, strategies as st

from checker.dynamics import gd
from checker.core.engines import make_engine
from checker.core.errors import CheckerError
from checker.core.io import (check_seal, engine_from_json, engine_to_json, json_digest, read_json, seal,
                        write_json_atomic)
from checker.core.model import Instance
from checker.core.problem import Problem
from tests import strategies as S
from tests.tolerance import assert_close

#: Two orthogonal teachers of opposite signs, three students near them plus a small far one.
TWO_TEACHERS = Instance.create(
    teacher_a=["1.0", "-0.8"], teacher_W=[["1", "0", "0"], ["0", "1", "0"]],
    student_a=["0.9", "-0.6", "0.1"],
    student_W=[["0.85", "0.1", "0.05"], ["0.05", "0.75", "-0.1"], ["0.1", "0.1", "0.2"]],
    lam="0.05", eta="0.1")

#: One teacher, a* = 1: the optimum is known exactly (docs/formalization.md, single teacher):
#: L*_lambda = lambda |a*| - lambda^2 / 2 for |a*| > lambda.
ONE_TEACHER = Instance.create(
    teacher_a=["1.0"], teacher_W=[["1", "0", "0"]],
    student_a=["0.6", "0.3"], student_W=[["0.6", "0.1", "0.05"], ["0.25", "-0.1", "0.1"]],
    lam="0.1", eta="0.2")

#: Geometric schedule used on ONE_TEACHER: lambda 0.1 -> 0.05 -> 0.025 (final, since 0.0125 < 0.02).
SCHEDULE = gd.Schedule.parse("geometric:factor=0.5,switch=1e-1,min=0.02")


def problem(instance: Instance, engine: str) -> Problem:
    return Problem.from_instance(instance, make_engine(engine, 30 if engine == "mp" else None))


def exact_gap(p: Problem, a: np.ndarray, W: np.ndarray, lam) -> float:
    """zeta = L_lambda - L*_lambda for ONE_TEACHER, with the exact single-teacher L*."""
    with p.engine.context():
        ev = p.evaluate(a, W, lam=lam, with_gradient=False)
        return float(ev.reg_loss - (lam * abs(p.a_star[0]) - lam * lam / 2))


def _append(items: list, g: float) -> float:
    """Record a gap in a monitor list (as a caller's gap_fn does) and return it."""
    items.append({"gap": g})
    return g


def strings(p: Problem, r: gd.GDResult) -> tuple:
    e = p.engine
    with e.context():
        return engine_to_json(e, r.a), engine_to_json(e, r.W), engine_to_json(e, r.lam)


def assert_same_run(p: Problem, resumed: gd.GDResult, straight: gd.GDResult) -> None:
    # Exact equality: a resumed run replays the same arithmetic, so nothing may differ.
    assert strings(p, resumed) == strings(p, straight)
    assert resumed.steps == straight.steps and resumed.stop_reason == straight.stop_reason
    assert resumed.history == straight.history
    assert resumed.lam_changes == straight.lam_changes
    assert (resumed.increases, resumed.max_increase, resumed.max_balance_residual) == \
        (straight.increases, straight.max_increase, straight.max_balance_residual)


# --------------------------------------------------------------------------- descent and balance
@pytest.mark.parametrize("engine, steps", [("float64", 300), ("mp", 25)])
def test_descent_is_monotone_with_small_eta(engine, steps):
    # Reference: the descent lemma.  eta = 0.1 is below 1/beta, beta ~ 2.2 being the
    # largest Hessian eigenvalue of L_lambda measured (central differences of the
    # gradient) at both ends of this run, so every step must decrease L_lambda by
    # far more than rounding; no tolerance is needed.
    p = problem(TWO_TEACHERS, engine)
    r = gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=steps, record_every=5), progress=False)
    assert r.stop_reason == "max-steps" and r.steps == steps
    assert r.increases == 0 and r.max_increase == 0.0
    losses = [row.reg_loss for row in r.history]
    assert len(losses) == steps // 5 + 1
    assert all(b < a for a, b in zip(losses, losses[1:]))
    # Independent re-evaluation at 60 digits from the exact end-point strings.
    hi = make_engine("mp", 60)
    p_hi = Problem.from_instance(TWO_TEACHERS, hi)
    a_end, W_end, lam = (engine_from_json(hi, s) for s in strings(p, r))
    with hi.context():
        start = p_hi.evaluate(with_gradient=False).reg_loss
        end = p_hi.evaluate(a_end, W_end, lam=lam[()], with_gradient=False).reg_loss
        assert end < start - mpmath.mpf("1e-3")


@pytest.mark.parametrize("engine, steps, bound", [
    # float64: b' and its prediction each take O(d) roundings of numbers of size
    # <= max(1, |b|) here, so the relative residual is a few eps; 32 eps leaves
    # room for d = 3 without hiding a real violation (see the control below).
    ("float64", 200, 32 * 2.0 ** -52),
    # mp at 30 digits works at 40: rounding is ~1e-40, far below 1e-30.
    ("mp", 20, 1e-30),
])
def test_balance_identity_residual_is_at_rounding_level(engine, steps, bound):
    # Reference: the exact identity b' = (1 - eta lam)^2 b + eta^2 (g_a^2 - |g_w|^2),
    # a consequence of the balance law a dL/da = <w, grad_w L> (derived in docs/formalization.md).
    p = problem(TWO_TEACHERS, engine)
    r = gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=steps), progress=False)
    assert_close(r.max_balance_residual, 0, abs_=bound, what="balance identity residual")
    assert max(row.balance_identity_residual for row in r.history) == r.max_balance_residual


def test_balance_residual_detects_a_gradient_that_breaks_the_balance_law():
    # Negative control: a relative error of 1e-6 in grad_W (an extra decay of W
    # alone) shifts b' by about 2 eta 1e-6 ||w||^2 ~ 1e-7, far above rounding.
    p = problem(TWO_TEACHERS, "float64")
    original = p.evaluate

    def skewed(*args, **kwargs):
        ev = original(*args, **kwargs)
        W = args[1] if len(args) > 1 else kwargs.get("W", p.W)
        return dataclasses.replace(ev, grad_W=ev.grad_W + 1e-6 * W)

    p.evaluate = skewed
    r = gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=5), progress=False)
    assert r.max_balance_residual > 1e-9


# --------------------------------------------------------------------------- schedule and stops
def test_geometric_schedule_follows_its_documented_rule():
    # Reference: the rule in the Schedule docstring, checked at every gap evaluation
    # in both directions (changed exactly when it should, and only then).
    p = problem(ONE_TEACHER, "float64")
    r = gd.run_gd(p, p.eta, schedule=SCHEDULE, gap_fn=exact_gap,
                  stop=gd.StopRules(max_steps=200, gap_every=5, record_every=5), progress=False)
    changes = dict(r.lam_changes)
    assert [round(v, 12) for v in changes.values()] == [0.05, 0.025]
    evaluated = [row for row in r.history if row.gap is not None]
    assert len(evaluated) == 200 // 5 + 1
    for row in evaluated[:-1]:  # the last row is the end of the run, after the last decision
        should = row.gap <= SCHEDULE.switch_rel_gap * row.lam ** 2 and \
            row.lam * SCHEDULE.factor >= SCHEDULE.lam_min
        assert (row.step in changes) == should, row
        if should:
            assert changes[row.step] == row.lam * SCHEDULE.factor
    assert float(r.lam) == 0.025 and all(row.lam >= SCHEDULE.lam_min for row in r.history)


def test_gap_target_applies_only_at_the_final_lambda():
    # gap_target = 1 is met by every gap estimate here (the initial gap is 0.11), so
    # the run must stop at the first evaluation after lambda reached its final value.
    p = problem(ONE_TEACHER, "float64")
    r = gd.run_gd(p, p.eta, schedule=SCHEDULE, gap_fn=exact_gap,
                  stop=gd.StopRules(max_steps=500, gap_every=5, gap_target=1.0), progress=False)
    last_change = r.lam_changes[-1][0]
    assert r.stop_reason == "gap-target" and float(r.lam) == 0.025
    assert r.steps == last_change + 5


def test_fixed_schedule_stops_at_the_first_gap_below_target():
    # Reference: exact single-teacher optimum, so the gap is exact up to rounding
    # (~1e-16), far below the target 1e-8.
    p = problem(ONE_TEACHER, "float64")
    r = gd.run_gd(p, p.eta, gap_fn=exact_gap, stop=gd.StopRules(max_steps=5000, gap_every=10, gap_target=1e-8),
                  progress=False)
    assert r.stop_reason == "gap-target" and r.steps < 5000
    gaps = [row.gap for row in r.history if row.gap is not None]
    assert gaps[-1] <= 1e-8 and all(g > 1e-8 for g in gaps[:-1])
    assert exact_gap(p, r.a, r.W, r.lam) == gaps[-1]


def test_float64_precision_floor_is_reported_not_called_convergence():
    # Reference: the exact optimum L*_lambda.  float64 GD converges linearly here and
    # then stalls at the rounding level of L_lambda (~1e-16 of L_lambda ~ 0.1).
    p = problem(ONE_TEACHER, "float64")
    r = gd.run_gd(p, p.eta, gap_fn=exact_gap, stop=gd.StopRules(max_steps=20_000, gap_every=100),
                  progress=False)
    assert r.stop_reason == "precision-floor" and r.precision_floor
    assert r.steps < 20_000
    # At the floor: the exact gap is at the rounding level of L_lambda
    # (rounding_scale = eps (|L_lambda| + ||f*||^2); evaluating the gap itself costs
    # a few such ulps), i.e. the run really got there.
    assert abs(exact_gap(p, r.a, r.W, r.lam)) <= 16 * r.rounding_scale
    # The same number of steps in mp (30 digits) is still far from its own floor
    # (measured gap ~2e-21 there, its floor ~1e-29): the floor is the engine's, not the method's.
    q = problem(ONE_TEACHER, "mp")
    s = gd.run_gd(q, q.eta, gap_fn=exact_gap, stop=gd.StopRules(max_steps=r.steps, gap_every=100),
                  progress=False)
    assert s.stop_reason == "max-steps" and not s.precision_floor
    assert exact_gap(q, s.a, s.W, s.lam) < 1e-3 * r.rounding_scale


def test_precision_floor_without_gap_fn():
    # From an iterate at the float64 floor, L_lambda cannot decrease by more than
    # rounding, so the first window already detects the floor.
    p = problem(ONE_TEACHER, "float64")
    r = gd.run_gd(p, p.eta, gap_fn=exact_gap, stop=gd.StopRules(max_steps=20_000, gap_every=100),
                  progress=False)
    a, W, _ = strings(p, r)
    q = problem(ONE_TEACHER.replace(student_a=a, student_W=W), "float64")
    s = gd.run_gd(q, q.eta, stop=gd.StopRules(max_steps=1000, gap_every=50), progress=False)
    assert s.stop_reason == "precision-floor" and s.steps == 50


def test_divergence_is_detected_and_last_finite_iterate_returned():
    p = problem(TWO_TEACHERS, "float64")
    r = gd.run_gd(p, "50", stop=gd.StopRules(max_steps=1000), progress=False)
    assert r.stop_reason == "diverged" and r.steps < 1000
    assert np.all(np.isfinite(r.a)) and np.all(np.isfinite(r.W))


def test_time_budget_zero_stops_before_the_first_step():
    p = problem(TWO_TEACHERS, "float64")
    r = gd.run_gd(p, p.eta, stop=gd.StopRules(time_budget=0), progress=False)
    assert r.stop_reason == "time-budget" and r.steps == 0 and len(r.history) == 1


def test_no_progress_output_when_stderr_is_not_a_terminal(capsys):
    p = problem(TWO_TEACHERS, "float64")
    gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=20), progress=True)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- resume and Ctrl-C
@pytest.mark.parametrize("engine, total, split", [("float64", 200, 70), ("mp", 45, 20)])
def test_resume_reaches_the_same_final_state(tmp_path, engine, total, split):
    # Exact equality: the schedule changes lambda at steps 15 and 35, i.e. on both
    # sides of the split, so the checkpoint must carry lambda and the floor window.
    p = problem(ONE_TEACHER, engine)

    def rules(n: int) -> gd.StopRules:
        return gd.StopRules(max_steps=n, gap_every=5, record_every=5)

    straight = gd.run_gd(p, p.eta, schedule=SCHEDULE, gap_fn=exact_gap, stop=rules(total), progress=False)
    assert [k for k, _ in straight.lam_changes] == [15, 35]
    ck = tmp_path / "ck.json"
    first = gd.run_gd(p, p.eta, schedule=SCHEDULE, gap_fn=exact_gap, stop=rules(split), checkpoint=ck,
                      progress=False)
    assert first.steps == split and read_json(ck, "checkpoint")["state"]["step"] == split
    resumed = gd.run_gd(problem(ONE_TEACHER, engine), p.eta, schedule=SCHEDULE, gap_fn=exact_gap,
                        stop=rules(total), resume=gd.load_checkpoint(ck, p), progress=False)
    assert_same_run(p, resumed, straight)


@pytest.mark.parametrize("engine, total", [("float64", 120), ("mp", 40)])
def test_ctrl_c_in_gap_fn_returns_partial_result_and_resumes(tmp_path, engine, total):
    p = problem(ONE_TEACHER, engine)
    rules = gd.StopRules(max_steps=total, gap_every=5, record_every=5)
    straight_monitor: list = []
    straight = gd.run_gd(p, p.eta, schedule=SCHEDULE, stop=rules, progress=False, monitor=straight_monitor,
                         gap_fn=lambda q, a, W, lam: _append(straight_monitor, exact_gap(q, a, W, lam)))
    calls = {"n": 0}
    monitor: list = []

    def interrupting(q, a, W, lam):
        calls["n"] += 1
        if calls["n"] == 5:  # the evaluation at step 20
            raise KeyboardInterrupt
        return _append(monitor, exact_gap(q, a, W, lam))

    ck = tmp_path / "run" / "ck.json"
    ck.parent.mkdir()
    partial = gd.run_gd(p, p.eta, schedule=SCHEDULE, gap_fn=interrupting, stop=rules, checkpoint=ck,
                        checkpoint_every=1e9, progress=False, monitor=monitor)
    assert partial.stop_reason == "interrupted" and partial.steps == 20
    saved = gd.load_checkpoint(ck, p)
    assert saved["status"] == "interrupted" and saved["state"]["step"] == 20
    assert saved["monitor"] == straight_monitor[:4]
    again = list(saved["monitor"])
    resumed = gd.run_gd(p, p.eta, schedule=SCHEDULE, stop=rules, resume=saved, progress=False, monitor=again,
                        gap_fn=lambda q, a, W, lam: _append(again, exact_gap(q, a, W, lam)))
    assert_same_run(p, resumed, straight)
    assert again == straight_monitor


@pytest.mark.parametrize("engine, total, call", [("float64", 60, 23), ("mp", 30, 17)])
def test_ctrl_c_inside_a_step_resumes_to_the_same_state(tmp_path, engine, total, call):
    # The interrupt lands in an objective evaluation in the middle of an iteration:
    # the last completed step is what is returned and checkpointed.
    p = problem(TWO_TEACHERS, engine)
    rules = gd.StopRules(max_steps=total, gap_every=7, record_every=3)
    straight = gd.run_gd(p, p.eta, stop=rules, progress=False)
    q = problem(TWO_TEACHERS, engine)
    original, count = q.evaluate, {"n": 0}

    def flaky(*args, **kwargs):
        count["n"] += 1
        if count["n"] == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    q.evaluate = flaky
    ck = tmp_path / "ck.json"
    partial = gd.run_gd(q, q.eta, stop=rules, checkpoint=ck, progress=False)
    assert partial.stop_reason == "interrupted" and 0 < partial.steps < total
    resumed = gd.run_gd(p, p.eta, stop=rules, resume=gd.load_checkpoint(ck, p), progress=False)
    assert_same_run(p, resumed, straight)


def test_result_serializes_and_round_trips(tmp_path):
    p = problem(TWO_TEACHERS, "mp")
    r = gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=5), progress=False)
    out = tmp_path / "result.json"
    write_json_atomic(out, r.to_dict(p.engine))
    data = json.loads(out.read_text())
    assert data["stop_reason"] == "max-steps" and data["steps"] == 5
    back = engine_from_json(p.engine, data["W"])
    assert all(x == y for x, y in zip(back.ravel(), r.W.ravel()))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("text", ["", "geo", "fixed:factor=0.5", "geometric:factor=2", "geometric:factor=0",
                                  "geometric:factor=abc", "geometric:foo=1", "geometric:factor",
                                  "geometric:factor=0.5,factor=0.3", "geometric:switch=-1",
                                  "geometric:min=nan", "geometric:min=-1e-3", "geometric:factor=1e400",
                                  "geometric:factor=__import__('os')"])
def test_bad_schedule_text_is_a_checker_error(text):
    with pytest.raises(CheckerError) as info:
        gd.Schedule.parse(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("fixed", gd.Schedule()),
    (" geometric ", gd.Schedule("geometric")),
    ("geometric:factor=0.25,switch=1e-3,min=1e-4", gd.Schedule("geometric", 0.25, 1e-3, 1e-4)),
    ("geometric:min=0.01", gd.Schedule("geometric", lam_min=0.01)),
])
def test_schedule_text_and_dict_forms(text, expected):
    s = gd.Schedule.parse(text)
    assert s == expected and gd.Schedule.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@pytest.mark.parametrize("kwargs", [dict(max_steps=-1), dict(gap_every=0), dict(record_every=0),
                                    dict(time_budget=-1.0), dict(gap_target=math.inf), dict(max_steps=1.5)])
def test_bad_stop_rules(kwargs):
    with pytest.raises(CheckerError):
        gd.StopRules(**kwargs)


def test_run_gd_refuses_unusable_requests():
    p = problem(ONE_TEACHER, "float64")
    with pytest.raises(CheckerError, match="gap estimate"):
        gd.run_gd(p, p.eta, schedule=SCHEDULE, progress=False)
    with pytest.raises(CheckerError, match="gap estimate"):
        gd.run_gd(p, p.eta, stop=gd.StopRules(gap_target=1e-6), progress=False)
    with pytest.raises(CheckerError, match="step size"):
        gd.run_gd(p, None, progress=False)
    with pytest.raises(CheckerError, match="eta"):
        gd.run_gd(p, "-0.1", progress=False)


@pytest.fixture
def float64_checkpoint(tmp_path):
    p = problem(TWO_TEACHERS, "float64")
    ck = tmp_path / "ck.json"
    gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=3), checkpoint=ck, progress=False,
              instance_dict=TWO_TEACHERS.to_dict())
    return ck


@pytest.mark.parametrize("other, expect", [
    (lambda: problem(TWO_TEACHERS.replace(teacher_a=["1.0", "-0.7"]), "float64"), "another instance"),
    (lambda: problem(TWO_TEACHERS.replace(student_a=["0.9", "-0.6", "0.2"]), "float64"), "another instance"),
    (lambda: problem(TWO_TEACHERS.replace(lam="0.04"), "float64"), "another instance"),
    (lambda: problem(TWO_TEACHERS.replace(activation="abs"), "float64"), "another instance"),
    (lambda: problem(TWO_TEACHERS, "mp"), "engine float64"),
])
def test_load_checkpoint_refuses_another_instance_or_engine(float64_checkpoint, other, expect):
    with pytest.raises(CheckerError) as info:
        gd.load_checkpoint(float64_checkpoint, other())
    assert expect in str(info.value) and "\n" not in str(info.value)


def test_load_checkpoint_refuses_other_mp_precision(tmp_path):
    p = problem(TWO_TEACHERS, "mp")
    ck = tmp_path / "ck.json"
    gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=1), checkpoint=ck, progress=False)
    other = Problem.from_instance(TWO_TEACHERS, make_engine("mp", 40))
    with pytest.raises(CheckerError, match="--dps 30"):
        gd.load_checkpoint(ck, other)


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d.update(format="something else"), "not a GD checkpoint"),
    (lambda d: d.update(version=99), "version"),
    (lambda d: d.pop("state"), "missing 'state'"),
    (lambda d: d["state"].update(a=["1", "2"]), "shape"),
    (lambda d: d["state"].update(step=-3), "step"),
    (lambda d: d["state"].update(W=[["x"]]), "not a finite decimal"),
])
def test_load_checkpoint_refuses_damaged_files(float64_checkpoint, mutate, expect):
    # Damaged but re-sealed (a consistent digest), so the content checks behind the digest are reached.
    data = read_json(float64_checkpoint, "checkpoint")
    assert data["instance"] == TWO_TEACHERS.to_dict()
    mutate(data)
    write_json_atomic(float64_checkpoint, seal(data))
    with pytest.raises(CheckerError) as info:
        gd.load_checkpoint(float64_checkpoint, problem(TWO_TEACHERS, "float64"))
    assert expect in str(info.value) and "\n" not in str(info.value)
    assert str(float64_checkpoint) in str(info.value)


@pytest.mark.parametrize("mutate", [
    lambda d: d["state"]["a"].__setitem__(0, "0.5"),  # hand-edited state
    lambda d: d["problem"].update(initial_lambda="0.02"),  # edited instance fingerprint
    lambda d: d["instance"].update(eta="0.5"),  # edited instance copy
    lambda d: d["stop"].update(max_steps=10),  # edited options
    lambda d: d.update(note="a key this version does not know"),
    lambda d: d.pop("digest"),
])
def test_load_checkpoint_refuses_content_that_does_not_match_its_digest(float64_checkpoint, mutate):
    data = read_json(float64_checkpoint, "checkpoint")
    mutate(data)
    write_json_atomic(float64_checkpoint, data)
    with pytest.raises(CheckerError) as info:
        gd.load_checkpoint(float64_checkpoint, problem(TWO_TEACHERS, "float64"))
    text = str(info.value)
    assert text.startswith(f"checkpoint {float64_checkpoint}: ") and "digest" in text and "\n" not in text


def test_load_checkpoint_refuses_a_state_that_overflows_float64(float64_checkpoint):
    # 1e300 is a valid float64, but the objective at it is not (||w||^2 overflows): refused by
    # name even when the digest is consistent, never an inf/nan run or a traceback.
    data = read_json(float64_checkpoint, "checkpoint")
    data["state"]["W"][0][0] = "1e300"
    write_json_atomic(float64_checkpoint, seal(data))
    # the engine refuses the overflow (checker.core.objective.NonFiniteResult), or the checkpoint
    # check finds the objective not finite: either way one line naming the file
    with pytest.raises(CheckerError, match="not finite|overflows float64") as info:
        gd.load_checkpoint(float64_checkpoint, problem(TWO_TEACHERS, "float64"))
    assert str(float64_checkpoint) in str(info.value)


def test_checkpoint_digest_covers_every_key_and_survives_the_file_round_trip(float64_checkpoint):
    data = read_json(float64_checkpoint, "checkpoint")
    assert data["digest"] == json_digest({k: v for k, v in data.items() if k != "digest"})
    # a key added by a later format version is covered by the same rule
    extended = seal({**data, "added_later": {"a": True}})
    check_seal(json.loads(json.dumps(extended)), "x")
    gd.validate_checkpoint(extended, problem(TWO_TEACHERS, "float64"), "x")  # unknown keys: covered, not refused
    with pytest.raises(CheckerError, match="digest"):
        check_seal({**extended, "added_later": {"a": False}}, "x")


def test_resume_refuses_other_eta_or_schedule(float64_checkpoint):
    p = problem(TWO_TEACHERS, "float64")
    saved = gd.load_checkpoint(float64_checkpoint, p)
    with pytest.raises(CheckerError, match="same step size"):
        gd.run_gd(p, "0.2", resume=saved, progress=False)
    with pytest.raises(CheckerError, match=r"same step budget \(--steps\)") as info:
        gd.run_gd(p, p.eta, stop=gd.StopRules(gap_every=7), resume=saved, progress=False)
    assert "gap_every" not in str(info.value)  # not an option a user can set


def test_on_checkpoint_hands_sealed_checkpoints_to_the_caller_and_writes_no_file(tmp_path, monkeypatch):
    # theorem1 embeds the descent checkpoint in its own: run_gd must pass every checkpoint (the
    # periodic ones and the final one) to on_checkpoint instead of writing a file, each sealed
    # and valid for resuming this problem.
    monkeypatch.chdir(tmp_path)
    p = problem(TWO_TEACHERS, "float64")
    got: list[dict] = []
    result = gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=5), checkpoint_every=0, progress=False,
                       on_checkpoint=got.append)
    assert len(got) == 6 and not list(tmp_path.iterdir())  # after each of the 5 steps, and at the end
    last = json.loads(json.dumps(got[-1]))
    check_seal(last, "x")
    gd.validate_checkpoint(last, p, "x")
    assert last["status"] == "max-steps" and last["state"]["step"] == result.steps == 5


# --------------------------------------------------------------------------- trained blocks
@pytest.mark.parametrize("engine, steps", [("float64", 200), ("mp", 15)])
@pytest.mark.parametrize("train", ["first", "second"])
def test_a_fixed_block_never_changes_bit_for_bit(engine, steps, train):
    # Exact: the fixed block is never updated, so its numbers (and their exact
    # decimal strings) are those of the start; the trained block does move.
    p = problem(TWO_TEACHERS, engine)
    r = gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=steps, record_every=5), progress=False, train=train)
    assert r.steps == steps and r.train == train
    fixed, moving = (("a", "W") if train == "first" else ("W", "a"))
    with p.engine.context():
        assert engine_to_json(p.engine, getattr(r, fixed)) == engine_to_json(p.engine, getattr(p, fixed))
        assert engine_to_json(p.engine, getattr(r, moving)) != engine_to_json(p.engine, getattr(p, moving))
    # and the trained block alone still descends L_lambda (eta = 0.1 < 1/beta, see above)
    assert r.increases == 0
    assert r.history[-1].reg_loss < r.history[0].reg_loss


@pytest.mark.parametrize("engine, steps, bound", [
    # same rounding budget as the two-layer identity above (a few O(d) roundings of
    # numbers of size <= max(1, |b|)); mp at 30 digits: rounding ~1e-40.
    ("float64", 200, 32 * 2.0 ** -52),
    ("mp", 15, 1e-30),
])
@pytest.mark.parametrize("train", ["first", "second"])
def test_one_block_balance_identity_residual_is_at_rounding_level(engine, steps, bound, train):
    # Reference: the one-block identities of derivations/balance.py
    # (balance_gd_step_one_block); the two-layer identity is "not applicable".
    p = problem(TWO_TEACHERS, engine)
    r = gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=steps), progress=False, train=train)
    assert_close(r.max_balance_residual, 0, abs_=bound, what=f"one-block ({train}) balance identity residual")
    text = r.to_dict(p.engine)["balance_identity"]
    assert text.startswith("not applicable") and train in text


def test_one_block_balance_residual_detects_a_broken_gradient():
    # Negative control as for two layers: an extra 1e-6 decay in grad_W moves W
    # (the trained block) off the identity by ~2 eta 1e-6 ||w||^2 ~ 1e-7.
    p = problem(TWO_TEACHERS, "float64")
    original = p.evaluate

    def skewed(*args, **kwargs):
        ev = original(*args, **kwargs)
        W = args[1] if len(args) > 1 else kwargs.get("W", p.W)
        return dataclasses.replace(ev, grad_W=ev.grad_W + 1e-6 * W)

    p.evaluate = skewed
    r = gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=5), progress=False, train="first")
    assert r.max_balance_residual > 1e-9


@pytest.mark.parametrize("engine, total, split", [("float64", 150, 60), ("mp", 30, 12)])
def test_resume_with_first_layer_only_reaches_the_same_state(tmp_path, engine, total, split):
    p = problem(TWO_TEACHERS, engine)
    rules = lambda n: gd.StopRules(max_steps=n, gap_every=7, record_every=4)  # noqa: E731
    straight = gd.run_gd(p, p.eta, stop=rules(total), progress=False, train="first")
    ck = tmp_path / "ck.json"
    gd.run_gd(p, p.eta, stop=rules(split), checkpoint=ck, progress=False, train="first")
    saved = gd.load_checkpoint(ck, p)
    assert saved["train"] == "first"
    resumed = gd.run_gd(p, p.eta, stop=rules(total), resume=saved, progress=False, train="first")
    assert_same_run(p, resumed, straight)
    for other in ("both", "second"):
        with pytest.raises(CheckerError, match="same trained blocks"):
            gd.run_gd(p, p.eta, stop=rules(total), resume=saved, progress=False, train=other)


def test_checkpoint_without_train_key_means_both_and_bad_values_are_refused(float64_checkpoint):
    p = problem(TWO_TEACHERS, "float64")
    data = read_json(float64_checkpoint, "checkpoint")
    data.pop("train")
    data = seal(data)  # a sealed checkpoint whose format had no "train" key (not an edited one)
    gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=5), resume=data, progress=False)  # both: accepted
    with pytest.raises(CheckerError, match="same trained blocks"):
        gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=5), resume=data, progress=False, train="first")
    data = seal({**data, "train": "third"})
    write_json_atomic(float64_checkpoint, data)
    with pytest.raises(CheckerError, match="checkpoint train"):
        gd.load_checkpoint(float64_checkpoint, p)
    with pytest.raises(CheckerError, match="train must be"):
        gd.run_gd(p, p.eta, progress=False, train="third")


def test_record_at_and_on_record_choose_the_history_rows():
    p = problem(TWO_TEACHERS, "float64")
    seen: list = []
    r = gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=40, gap_every=1000), progress=False,
                  record_at=lambda k: k in (0, 1, 3, 10, 30),
                  on_record=lambda q, a, W, lam, k: seen.append((k, float(a[0]))))
    assert [row.step for row in r.history] == [0, 1, 3, 10, 30, 40]
    assert [k for k, _ in seen] == [0, 1, 3, 10, 30]


@given(inst=S.instances(student="random", eta=S.step_sizes()), train=st.sampled_from(["first", "second"]))
def test_a_fixed_block_never_changes_on_random_instances(inst, train):
    # Exact, for any teacher, activation, student and step size: the fixed block is
    # never written, whatever the trained block does (even if the run diverges).
    p = problem(inst, "float64")
    r = gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=5), progress=False, train=train)
    fixed = "a" if train == "first" else "W"
    assert np.array_equal(getattr(r, fixed), getattr(p, fixed))
    assert getattr(r, fixed).tobytes() == getattr(p, fixed).tobytes()


def test_a_gap_estimate_stuck_at_zero_still_lets_the_precision_floor_stop_the_run():
    # A gap estimate clamped at 0 (the rounding floor of float64 near the optimum) never improves
    # by 10% on its best (0): the run must stop at the precision floor once L_lambda stalls, not
    # run out its step budget (a hybrid run switches engines there).
    p = problem(TWO_TEACHERS, "float64")
    r = gd.run_gd(p, p.eta, stop=gd.StopRules(max_steps=200_000, gap_every=100),
                  gap_fn=lambda *args: 0.0, progress=False)
    assert r.stop_reason == "precision-floor" and r.steps < 200_000
