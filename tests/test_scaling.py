"""The generated instance family of the scaling study: exact geometry of the teacher and start."""

from __future__ import annotations

import math

import numpy as np
import pytest

from checker.core.errors import CheckerError
from checker.core.model import line_or_ray_angle
from checker.studies.scaling import PointSpec, cone_teacher, start_instance, teacher_weights
from tests.tolerance import assert_close


@pytest.mark.parametrize("m_star, d, delta", [(2, 3, 1.0), (3, 3, math.pi / 2), (3, 5, 2.0), (4, 4, 1.5),
                                              (2, 2, 3.0)])
def test_cone_teacher_has_every_pairwise_angle_equal_to_delta(m_star: int, d: int, delta: float) -> None:
    W = cone_teacher(m_star, d, delta, np.random.default_rng(0))
    # reference: angles recomputed at 30 digits from the float64 rows; the rows carry ~1e-16
    # relative error, i.e. ~1e-16/sin(delta) in the angle: 1e-12 is ample
    assert_close(np.linalg.norm(W, axis=1), np.ones(m_star), rel=1e-14, what="unit rows")
    for i in range(m_star):
        for l in range(i + 1, m_star):
            assert_close(line_or_ray_angle(W[i], W[l], "relu"), delta, abs_=1e-12, what=f"angle {i},{l}")


def test_start_student_has_the_single_teacher_optimal_masses_on_the_teacher_directions() -> None:
    spec = PointSpec(m_star=3, d=4, delta=1.2, lam=0.02, a_min=0.5, seed=4)
    inst = start_instance(spec)
    a_star = teacher_weights(spec)
    assert_close(np.abs(a_star), [0.5, 0.75, 1.0], rel=1e-15, what="|a*| evenly spaced from a_min to a_max")
    assert list(np.sign(a_star)) == [1, -1, 1]
    a = np.array([float(x) for x in inst.student_a])
    W = np.array([[float(x) for x in r] for r in inst.student_W])
    # mass |a*_i| - lambda (derivations/optimum.py), balanced, on the teacher direction
    assert_close(np.abs(a) * np.linalg.norm(W, axis=1), np.abs(a_star) - spec.lam, rel=1e-14, what="mass")
    assert_close(np.abs(a), np.linalg.norm(W, axis=1), rel=1e-14, what="balanced")
    assert abs(inst.separation - 1.2) < 1e-9 and float(inst.eta) > 0


@pytest.mark.parametrize("kw, needle", [({"m_star": 4, "d": 3}, "d >= m_star"), ({"lam": 0.9}, "below a_min"),
                                        ({"m_star": 3, "delta": 2.5}, "cannot be pairwise"),
                                        ({"delta": -1.0}, "delta"), ({"m_star": True}, "m_star")])
def test_infeasible_points_are_refused(kw, needle) -> None:
    with pytest.raises(CheckerError, match=needle):
        PointSpec(**kw)


def test_each_step_policy_searches_every_family_with_one_shared_memo(monkeypatch) -> None:
    # Reference: the calls made.  With trial_step = [instance, safe] every family is
    # searched once per policy, with that policy in its TrialConfig, under the keys
    # FAMILY and FAMILY@safe, and every search of the point shares one memo dict
    # (the checker's eps_0 and the unperturbed start are computed once).
    from types import SimpleNamespace

    from checker.studies import scaling
    from checker.studies import threshold as thr

    spec = PointSpec()
    start = start_instance(spec)
    report = SimpleNamespace(constants={}, conclusions=[SimpleNamespace(id="C2", holds=True)], hypotheses=[],
                             final=None)
    monkeypatch.setattr(scaling, "reference_run", lambda spec, **kw: (start, SimpleNamespace(cert=None), report,
                                                                      start))
    calls: list[tuple[str, str, int]] = []

    def fake_find(rf, name, cfg, **kw):
        calls.append((name, cfg.step, id(kw["shared"])))
        res = SimpleNamespace(status="nothing-fails", size_range={}, threshold_size={}, threshold_gap={},
                              threshold_loss={}, eps0_checker=1e-3, ratio_to_eps0=10.0, counterexample=False,
                              failure={}, trials=[1, 2], interrupted=False, t1_at_reference=True,
                              lower_is_reference=False, ratio_status="ratio", non_monotone={})
        return res, None

    monkeypatch.setattr(thr, "find_threshold", fake_find)
    cfg = scaling.MeasureConfig.from_dict({"families": ["rotate", "far"], "trial_step": ["instance", "safe"]})
    out = scaling.measure_point(spec, cfg)
    assert sorted(out["threshold"]) == ["far", "far@safe", "rotate", "rotate@safe"]
    assert [(n, s) for n, s, _ in calls] == [("rotate", "instance"), ("far", "instance"), ("rotate", "safe"),
                                             ("far", "safe")]
    assert len({m for _, _, m in calls}) == 1
    assert out["threshold"]["far@safe"]["step"] == "safe" and out["threshold"]["far"]["step"] == "instance"
