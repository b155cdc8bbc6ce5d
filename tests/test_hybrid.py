"""Tests of checker/dynamics/hybrid.py: float64 steps to the float64 floor, then high precision.

Reference: the pure high-precision run of ``checker.dynamics.gd.run_gd`` on the same
problem (a separate code path: it never touches float64).  The two runs differ
only by the rounding of the float64 steps, which a contracting descent does not
amplify: the iterates agree to ~1e-12 relative, far above the 30-digit engine's
rounding and far below anything the schedule or the stop rules can see.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from checker.dynamics import gd, hybrid
from checker.core.engines import MpEngine
from checker.core.model import Instance
from checker.core.problem import Problem
from checker.rigorous.duality import gap_bound


def _gap(problem, a, W, lam):
    return max(float(gap_bound(problem, a, W, lam=lam, rigorous=False).gap_upper), 0.0)


@pytest.fixture(scope="module")
def default_mp():
    """Two teachers, three students away from the optimum: float64 reaches its floor near step 500."""
    inst = Instance.create(teacher_a=["1", "-0.6"], teacher_W=[["1", "0", "0"], ["0", "1", "0"]],
                           student_a=["0.6", "0.5", "-0.4"],
                           student_W=[["0.5", "0.2", "0"], ["0.4", "-0.1", "0.1"], ["0.1", "0.5", "0.1"]],
                           lam="0.05", eta="0.5")
    return Problem.from_instance(inst, MpEngine(30))


def _rel(x, y) -> float:
    x = np.array([float(v) for v in np.ravel(x)])
    y = np.array([float(v) for v in np.ravel(y)])
    return float(np.max(np.abs(x - y)) / np.max(np.abs(y)))


def test_hybrid_follows_the_high_precision_trajectory(default_mp):
    stop = gd.StopRules(max_steps=800, gap_every=50)
    ref = gd.run_gd(default_mp, default_mp.eta, stop=stop, gap_fn=_gap, progress=False)
    hyb = hybrid.run_hybrid(default_mp, default_mp.eta, stop=stop, gap_fn=_gap, progress=False)
    assert hyb.steps == ref.steps == 800
    assert _rel(hyb.a, ref.a) < 1e-12 and _rel(hyb.W, ref.W) < 1e-12
    # the result is in the high-precision engine, one step counter along the history
    assert all(isinstance(x, type(ref.a[0])) for x in hyb.a)
    steps = [r.step for r in hyb.history]
    assert steps == sorted(steps) and steps[-1] == hyb.steps


def test_a_run_that_ends_in_float64_returns_high_precision_numbers(default_mp):
    res = hybrid.run_hybrid(default_mp, default_mp.eta, stop=gd.StopRules(max_steps=100, gap_every=50),
                            gap_fn=_gap, progress=False)
    assert res.stop_reason == "max-steps" and res.steps == 100
    assert all(type(x) is type(default_mp.a[0]) for x in res.a)
    assert type(res.lam) is type(default_mp.lam)


def test_hybrid_switches_only_at_the_float64_floor(default_mp, monkeypatch):
    calls: list[str] = []
    original = gd.run_gd

    def spy(problem, *args, **kwargs):
        res = original(problem, *args, **kwargs)
        calls.append(f"{problem.engine.name}:{res.stop_reason}")
        return res

    monkeypatch.setattr(gd, "run_gd", spy)
    stop = gd.StopRules(max_steps=5000, gap_every=50, gap_target=1e-20)
    res = hybrid.run_hybrid(default_mp, default_mp.eta, stop=stop, gap_fn=_gap, progress=False)
    # 1e-20 is below float64's resolution: the float64 phase must not stop on it
    assert calls == ["float64:precision-floor", "mp:gap-target"], calls
    assert res.stop_reason == "gap-target" and res.history[-1].gap <= 1e-20
    # the float64 steps keep their own record: counted apart, against float64's rounding level
    f64 = res.float64_phase
    assert f64 is not None and 0 < f64["steps"] < res.steps
    assert f64["rounding_scale"] > 1e6 * res.rounding_scale
    assert res.to_dict(default_mp.engine)["float64_phase"] == f64


def test_a_checkpoint_after_the_switch_resumes_to_the_same_end(default_mp, tmp_path, monkeypatch):
    stop = gd.StopRules(max_steps=800, gap_every=50)
    full = hybrid.run_hybrid(default_mp, default_mp.eta, stop=stop, gap_fn=_gap, progress=False)
    ck = tmp_path / "run.ckpt.json"
    # the high-precision phase ends early (as on Ctrl-C): the checkpoint holds its last step
    short = hybrid.run_hybrid(default_mp, default_mp.eta, stop=gd.StopRules(max_steps=700, gap_every=50),
                              gap_fn=_gap, progress=False, checkpoint=ck)
    assert json.loads(ck.read_text())["engine"]["name"] == "mp"
    data = hybrid.load_checkpoint(ck, default_mp)
    resumed = hybrid.run_hybrid(default_mp, default_mp.eta, stop=stop, gap_fn=_gap, progress=False,
                                resume=data)
    assert short.steps == 700 and resumed.steps == full.steps == 800
    assert list(map(str, resumed.a)) == list(map(str, full.a))
    assert [list(map(str, r)) for r in resumed.W] == [list(map(str, r)) for r in full.W]


def test_a_run_resumed_after_the_switch_keeps_the_float64_phase(default_mp, tmp_path):
    # the audit: theorem1 resumed from a checkpoint of the descent lost run.float64_phase and the
    # float64 part of C1; the reference is the uninterrupted run's record
    stop = gd.StopRules(max_steps=800, gap_every=50)
    full = hybrid.run_hybrid(default_mp, default_mp.eta, stop=stop, gap_fn=_gap, progress=False)
    assert full.float64_phase is not None
    ck = tmp_path / "run.ckpt.json"
    hybrid.run_hybrid(default_mp, default_mp.eta, stop=gd.StopRules(max_steps=700, gap_every=50),
                      gap_fn=_gap, progress=False, checkpoint=ck)
    assert json.loads(ck.read_text())["float64_phase"] == full.float64_phase
    resumed = hybrid.run_hybrid(default_mp, default_mp.eta, stop=stop, gap_fn=_gap, progress=False,
                                resume=hybrid.load_checkpoint(ck, default_mp))
    assert resumed.float64_phase == full.float64_phase
