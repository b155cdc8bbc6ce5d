"""Stage 3's recovery criteria, the safe step, random teachers and the study's interval.

References: the recovery criteria on states built by hand (students placed on the
teacher directions, or moved off them, so that which criterion fails is known in
advance); the Wilson interval against its defining equation solved by bisection
(independent of the closed form) and against Newcombe (1998)'s worked values; the
random teachers against their specification (separation, signs, magnitudes).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from checker.core.errors import CheckerError
from checker.stages import stage3, teachers
from checker.stages.algorithm import default_steps, wilson_interval

A_STAR = np.array([1.0, -0.8])
W_STAR = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
SEP = math.pi / 2


def _on_teachers(a_star=A_STAR, W_star=W_STAR):
    """Balanced students exactly on the teachers, each carrying its teacher's signed mass."""
    r = np.sqrt(np.abs(a_star))
    return np.sign(a_star) * r, W_star * r[:, None]


def test_the_teacher_itself_is_recovered_at_every_lambda():
    a, W = _on_teachers()
    for lam in (1e-2, 1e-3, 1e-5):
        rec = stage3.measure_recovery("relu", A_STAR, W_STAR, a, W, lam, 0.0, SEP)
        assert rec.recovered and not rec.unmet
        assert rec.angle_bound == pytest.approx(min(SEP / 3, stage3.ANGLE_CONSTANT * math.sqrt(lam)))
        assert [t["near_signed_mass"] for t in rec.teachers] == pytest.approx(list(A_STAR))


def test_a_missed_teacher_a_wrong_sign_far_mass_and_a_large_loss_are_each_reported():
    a, W = _on_teachers()
    lam = 1e-3
    theta = stage3.angle_bound(lam, SEP)
    # teacher 1's student rotated by 2 theta: outside the angle bound, so its mass is far mass
    c, s = math.cos(2 * theta), math.sin(2 * theta)
    W_rot = W.copy()
    W_rot[1] = np.sqrt(0.8) * np.array([0.0, c, s])
    rec = stage3.measure_recovery("relu", A_STAR, W_STAR, a, W_rot, lam, 0.0, SEP)
    assert not rec.recovered and any("teacher 1" in u for u in rec.unmet)
    assert rec.far_mass == pytest.approx(0.8) and any("of no teacher" in u for u in rec.unmet)
    # the student on teacher 0 with the wrong sign
    a_bad = a.copy()
    a_bad[0] = -a_bad[0]
    rec = stage3.measure_recovery("relu", A_STAR, W_STAR, a_bad, W, lam, 0.0, SEP)
    assert [t["covered"] for t in rec.teachers] == [False, True]
    # loss just above and just below the stated multiple of lambda^2
    above = stage3.measure_recovery("relu", A_STAR, W_STAR, a, W, lam, 1.01 * stage3.LOSS_MULTIPLE * lam**2, SEP)
    below = stage3.measure_recovery("relu", A_STAR, W_STAR, a, W, lam, 0.99 * stage3.LOSS_MULTIPLE * lam**2, SEP)
    assert not above.recovered and above.unmet[0].startswith("loss") and below.recovered


def test_half_the_mass_near_the_teacher_is_the_boundary():
    a, W = _on_teachers()
    lam = 1e-4
    # split teacher 0's student into a near part (mass 0.45 or 0.55) and a part at 90 degrees
    for near, ok in ((0.45, False), (0.55, True)):
        a2 = np.concatenate([a, [math.sqrt(1 - near)]])
        W2 = np.vstack([W, [0.0, 0.0, math.sqrt(1 - near)]])
        a2[0] = W2[0, 0] = math.sqrt(near)
        rec = stage3.measure_recovery("relu", A_STAR, W_STAR, a2, W2, lam, 0.0, SEP)
        assert rec.teachers[0]["covered"] is ok
        assert rec.far_mass == pytest.approx(1 - near)


def test_abs_counts_the_opposite_direction_as_the_same_line():
    a, W = _on_teachers()
    rec = stage3.measure_recovery("abs", A_STAR, W_STAR, a, -W, 1e-3, 0.0, SEP)
    assert rec.recovered


def test_default_steps_follow_the_decay_time_of_weight_decay():
    assert default_steps(0.2, 5e-3) == math.ceil(6 / (0.2 * 5e-3))
    assert default_steps(0.5, 1.0) == 1000 and default_steps(1e-3, 1e-4) == 30_000


# --------------------------------------------------------------------------- Wilson interval
def _wilson_by_bisection(k, n, z=1.959963984540054):
    """The two roots in [0, 1] of (k/n - p)^2 = z^2 p (1 - p) / n, by bisection."""
    ph = k / n

    def f(p):
        return (ph - p) ** 2 - z * z * p * (1 - p) / n

    def root(lo, hi):
        for _ in range(200):
            mid = (lo + hi) / 2
            if (f(lo) > 0) == (f(mid) > 0):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    lo = 0.0 if k == 0 else root(0.0, ph)
    hi = 1.0 if k == n else root(ph, 1.0)
    return lo, hi


@pytest.mark.parametrize("k, n", [(0, 5), (3, 3), (2, 5), (7, 25), (13, 25), (81, 263)])
def test_wilson_interval_solves_its_defining_equation(k, n):
    assert wilson_interval(k, n) == pytest.approx(_wilson_by_bisection(k, n), abs=1e-12)


def test_wilson_interval_matches_newcombe_1998():
    # Newcombe, Statistics in Medicine 17 (1998) 857-872, table I (method 3, no continuity correction)
    lo, hi = wilson_interval(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    lo, hi = wilson_interval(15, 148)
    assert (round(lo, 4), round(hi, 4)) == (0.0624, 0.1605)


# --------------------------------------------------------------------------- random teachers
@pytest.mark.parametrize("m_star, d, sep", [(2, 4, 0.5), (3, 6, 0.6), (4, 10, 1.0), (4, 4, 1.2)])
def test_random_teachers_meet_their_specification(m_star, d, sep):
    for seed in range(5):
        t = teachers.random_teacher(m_star, d, sep, seed)
        W = np.array([[float(x) for x in r] for r in t.teacher_W])
        a = np.array([float(x) for x in t.teacher_a])
        assert W.shape == (m_star, d) and np.allclose(np.linalg.norm(W, axis=1), 1.0, atol=1e-15)
        G = np.clip(W @ W.T, -1, 1)
        angles = np.arccos(G[np.triu_indices(m_star, 1)])
        assert angles.min() >= sep and t.separation >= sep - 1e-12
        assert a[0] > 0 and a[1] < 0  # mixed signs
        assert np.all((np.abs(a) >= teachers.A_LOW) & (np.abs(a) <= teachers.A_HIGH))
        assert teachers.random_teacher(m_star, d, sep, seed) == t  # reproducible


def test_abs_teachers_are_separated_as_lines():
    t = teachers.random_teacher(3, 4, 1.0, 3, activation="abs")
    W = np.array([[float(x) for x in r] for r in t.teacher_W])
    G = np.abs(W @ W.T)
    assert np.arccos(G[np.triu_indices(3, 1)]).min() >= 1.0


def test_an_unmet_separation_is_refused_after_a_bounded_number_of_draws():
    with pytest.raises(CheckerError, match="after 50 draws"):
        teachers.random_teacher(4, 3, 1.9, 0, max_draws=50)
    with pytest.raises(CheckerError, match="at most"):
        teachers.random_teacher(3, 4, 1.6, 0, activation="abs")


def test_the_spec_text_round_trips():
    spec = teachers.parse_spec("random:mstar=3,d=6,sep=0.6,seed=1,count=5")
    assert (spec.m_star, spec.d, spec.sep, spec.seed, spec.count) == (3, 6, 0.6, 1, 5)
    assert teachers.parse_spec(spec.text()) == spec
    ts = spec.teachers()
    assert len(ts) == 5 and ts[2] == teachers.random_teacher(3, 6, 0.6, 3)
