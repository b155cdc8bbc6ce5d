"""The strategies of tests/strategies.py honour their parameters and reject bad ones.

Angles here are recomputed independently of the strategies' constructions, with
mpmath at 40 digits through atan2(||u^ - v^||, ||u^ + v^||) (accurate at small
angles, where acos loses half the digits) from the decimal strings themselves.
"""

from __future__ import annotations

import math

import mpmath
import pytest
from hypothesis import find, given, strategies as st
from hypothesis.errors import InvalidArgument

from checker.core.model import Instance, line_or_ray_angle
from tests import strategies as S


def angle(u, v, activation: str = "relu") -> float:
    """Angle between rays (relu) or lines (abs): the checker's own stable formula at 30 digits."""
    return line_or_ray_angle(u, v, activation)


def norm(v) -> mpmath.mpf:
    with mpmath.workdps(40):
        return mpmath.sqrt(mpmath.fsum(mpmath.mpf(x) ** 2 for x in v))


# Rounding the construction to float64 moves an angle by ~1e-16 rad; the strategies build
# every angle with a relative margin of 1e-9 above Delta, so Delta itself is checked exactly.
TEACHER_CASES = [
    dict(),
    dict(activation="relu", min_d=2, max_d=2, min_m_star=6, max_m_star=6, min_separation=1.0),
    dict(activation="abs", min_d=2, max_d=3, min_m_star=3, max_m_star=3, min_separation=1.0),
    dict(activation="relu", min_d=3, max_d=5, min_m_star=2, max_m_star=5, min_separation=1.5,
         signs="positive"),
    dict(activation="relu", min_d=3, max_d=3, min_m_star=3, max_m_star=3, min_separation=math.pi / 2),
    dict(activation="abs", min_d=4, max_d=4, min_m_star=4, max_m_star=4, min_separation=0.05,
         signs="negative", constructions=("cone",)),
    dict(min_separation=1e-3, a_min=1.0, a_max=1.0, constructions=("circle",)),
]


@pytest.mark.parametrize("kw", TEACHER_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults")
@given(data=st.data())
def test_teachers_honour_parameters(kw, data):
    t = data.draw(S.teachers(**kw))
    p = {**dict(activation=None, min_d=2, max_d=4, min_m_star=1, max_m_star=3, min_separation=0.3,
                a_min=0.5, a_max=2.0, signs="mixed", constructions=S.CONSTRUCTIONS), **kw}
    assert p["activation"] in (None, t.activation)
    assert p["min_d"] <= t.d <= p["max_d"]
    assert p["min_m_star"] <= t.m_star <= p["max_m_star"]
    assert t.construction in p["constructions"]
    assert all(len(row) == t.d for row in t.W)
    for row in t.W:
        # the model accepts a teacher neuron as unit when | ||w|| - 1 | <= 1e-12
        assert abs(norm(row) - 1) <= mpmath.mpf("1e-12")
    for i in range(t.m_star):
        for l in range(i + 1, t.m_star):
            assert angle(t.W[i], t.W[l], t.activation) >= p["min_separation"]
    for x in t.a:
        assert p["a_min"] <= abs(float(x)) <= p["a_max"]
        if p["signs"] == "positive":
            assert float(x) > 0
        if p["signs"] == "negative":
            assert float(x) < 0


@pytest.mark.parametrize("construction", S.CONSTRUCTIONS)
@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_every_construction_is_reachable(construction, activation):
    # find() raises if no draw satisfies the condition: the declared grid is actually explored
    t = find(S.teachers(activation=activation, min_m_star=2, constructions=(construction,)),
             lambda t: t.m_star >= 2)
    assert t.construction == construction and t.activation == activation


NEAR_CASES = [
    dict(),
    dict(max_angle=0.0, max_mass_error=0.0, max_split=1, max_small=0, max_imbalance=1.0),
    dict(max_angle=0.5, max_mass_error=0.5, max_split=3, max_small=3, small_mass=0.3, max_imbalance=4.0,
         zero_neuron=True),
]


@pytest.mark.parametrize("kw", NEAR_CASES, ids=["defaults", "exact", "wide"])
@given(data=st.data())
def test_near_students_honour_parameters(kw, data):
    t = data.draw(S.teachers(max_m_star=3, min_separation=1.2))
    lam = data.draw(S.lambdas())
    s = data.draw(S.near_students(teacher=t, lam=lam, **kw))
    p = {**S.NEAR_DEFAULTS, **kw}
    assert len(s.a) == len(s.W) == len(s.assignment)
    assert all(len(w) == t.d for w in s.W)
    # products and square roots of floats: relative rounding ~1e-15, allowed 1e-12
    rel = mpmath.mpf("1e-12")
    zero_rows = [j for j, w in enumerate(s.W) if norm(w) == 0]
    assert len(zero_rows) == (1 if p["zero_neuron"] else 0)
    small_total = mpmath.mpf(0)
    n_small = 0
    for i in range(t.m_star):
        members = [j for j, owner in enumerate(s.assignment) if owner == i]
        assert 1 <= len(members) <= p["max_split"]
        mass = mpmath.fsum(abs(mpmath.mpf(s.a[j])) * norm(s.W[j]) for j in members)
        ref = abs(S.reference_mass(float(t.a[i]), float(lam), t.activation))
        assert (1 - p["max_mass_error"]) * ref * (1 - rel) <= mass <= (1 + p["max_mass_error"]) * ref * (1 + rel)
        for j in members:
            assert angle(s.W[j], t.W[i], t.activation) <= p["max_angle"] + 1e-12
            assert (float(s.a[j]) > 0) == (float(t.a[i]) > 0)
            ratio = abs(mpmath.mpf(s.a[j])) / norm(s.W[j])  # = gamma^2
            assert 1 / p["max_imbalance"] ** 2 * (1 - rel) <= ratio <= p["max_imbalance"] ** 2 * (1 + rel)
    for j, owner in enumerate(s.assignment):
        if owner == -1 and j not in zero_rows:
            n_small += 1
            small_total += abs(mpmath.mpf(s.a[j])) * norm(s.W[j])
    assert n_small <= p["max_small"]
    assert small_total <= p["small_mass"] * (1 + rel)


@given(data=st.data())
def test_random_students_honour_parameters(data):
    d = data.draw(st.integers(2, 5))
    s = data.draw(S.random_students(d=d, min_m=2, max_m=5, min_norm=0.5, max_norm=1.5, a_max=0.7))
    assert 2 <= s.m <= 5
    for a, w in zip(s.a, s.W):
        assert len(w) == d
        # norm of (unit vector * float): relative rounding ~1e-16, allowed 1e-12
        assert 0.5 * (1 - 1e-12) <= norm(w) <= 1.5 * (1 + 1e-12)
        assert abs(float(a)) <= 0.7


@given(lam=S.lambdas(min_value=1e-4, max_value=0.5), eta=S.step_sizes(min_value=0.01, max_value=0.02),
       dps=S.precisions(min_dps=20, max_dps=25))
def test_scalars_in_range(lam, eta, dps):
    assert 1e-4 <= float(lam) <= 0.5
    assert 0.01 <= float(eta) <= 0.02
    assert 20 <= dps <= 25


@given(inst=S.instances(eta=S.step_sizes()))
def test_instances_are_valid_and_round_trip(inst):
    assert isinstance(inst, Instance)
    assert inst.eta is not None
    assert Instance.from_dict(inst.to_dict()) == inst


@given(inst=S.instances(student="random", student_options=dict(min_m=3, max_m=3)))
def test_random_instances(inst):
    assert inst.m == 3


BAD = [
    (S.teachers, dict(min_d=3, max_d=2)),
    (S.teachers, dict(min_d=1)),
    (S.teachers, dict(min_m_star=0)),
    (S.teachers, dict(min_m_star=3, max_m_star=2)),
    (S.teachers, dict(min_separation=0.0)),
    (S.teachers, dict(min_separation=float("nan"))),
    (S.teachers, dict(a_min=0.0)),
    (S.teachers, dict(a_min=2.0, a_max=1.0)),
    (S.teachers, dict(signs="both")),
    (S.teachers, dict(activation="tanh")),
    (S.teachers, dict(min_d=2, max_d=2, min_m_star=7, max_m_star=7, min_separation=1.0)),  # 7 > 2 pi / 1
    (S.teachers, dict(constructions=())),
    (S.teachers, dict(min_d=2.5)),
    (S.lambdas, dict(min_value=0.0)),
    (S.lambdas, dict(min_value=0.2, max_value=0.1)),
    (S.step_sizes, dict(min_value=-1.0)),
    (S.step_sizes, dict(max_value=float("inf"))),
    (S.precisions, dict(min_dps=60, max_dps=50)),
    (S.precisions, dict(min_dps=2)),
    (S.random_students, dict(d=1)),
    (S.random_students, dict(d=3, min_norm=0.0)),
    (S.random_students, dict(d=3, min_m=4, max_m=2)),
    (S.instances, dict(student="far")),
    (S.instances, dict(student_options=dict(max_angle=-0.1))),
    (S.instances, dict(student_options=dict(max_mass_error=1.0))),
    (S.instances, dict(student_options=dict(max_imbalance=0.5))),
    (S.instances, dict(student_options=dict(max_split=0))),
    (S.instances, dict(student_options=dict(colour="red"))),
    (S.instances, dict(student="random", student_options=dict(min_norm=3.0, max_norm=1.0))),
    (S.instances, dict(lam=0.1)),
    (S.non_decimal_fractions, dict(max_exponent=-1)),
    (S.non_decimal_fractions, dict(max_bits=4)),
    (S.dyadic_balls, dict(max_exponent=0)),
    (S.dyadic_balls, dict(max_bits=1.5)),
    (S.near_optimal_instances, dict(spread=0.0)),
    (S.near_optimal_instances, dict(spread=1.0)),
    (S.near_optimal_instances, dict(min_lambda=0.0)),
    (S.near_optimal_instances, dict(min_lambda=0.2, max_lambda=0.1)),
    (S.near_optimal_instances, dict(min_separation=0.0)),
]


@pytest.mark.parametrize("factory,kw", BAD, ids=[f"{f.__name__}-{kw}" for f, kw in BAD])
def test_bad_parameters_rejected_when_built(factory, kw):
    with pytest.raises(InvalidArgument):
        factory(**kw)


def test_near_students_rejects_bad_teacher_and_lambda():
    t = find(S.teachers(), lambda t: True)
    with pytest.raises(InvalidArgument):
        S.near_students(teacher="teacher", lam=0.1)
    with pytest.raises(InvalidArgument):
        S.near_students(teacher=t, lam=-0.1)
    with pytest.raises(TypeError):  # keyword-only
        S.near_students(t, 0.1)  # type: ignore[misc]


@given(q=S.non_decimal_fractions(max_exponent=20))
def test_non_decimal_fractions_have_no_finite_decimal_expansion(q):
    # q = n / (2^i 5^j m) in lowest terms with m > 1 coprime to 10 <=> no finite decimal equals q
    den = q.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    assert q != 0 and den > 1


@given(ball=S.dyadic_balls())
def test_dyadic_balls_are_dyadic_with_non_negative_radius(ball):
    mid, rad = ball
    for x in (mid, rad):
        assert x.denominator & (x.denominator - 1) == 0  # a power of two
    assert rad >= 0
@given(inst=S.near_optimal_instances(max_d=3, max_m_star=2, spread=0.2, min_lambda=0.02, max_lambda=0.05))
def test_near_optimal_instances_honour_parameters(inst):
    assert 0.02 <= float(inst.lam) <= 0.05
    assert inst.d <= 3 and inst.m_star <= 2
    assert inst.separation >= 0.8 * (1 - 1e-9)  # the default min_separation
