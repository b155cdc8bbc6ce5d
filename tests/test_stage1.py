"""Stage 1 (checker/stages/stage1.py): the exact gradient of both variants against
seeded Monte Carlo, and its small-initialization limit against the derived closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings

from checker.core.engines import Float64Engine, MpEngine
from checker.stages import stage1
from tests import strategies as S
from tests.tolerance import assert_close

F64 = Float64Engine()
A_STAR = np.array([1.0, -0.8, 0.6])
W_STAR = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.6, 0.0, 0.8, 0.0]])


def _mc_gradient(a, W, variant, n, seed):
    """Per-component mean and standard error of 2 a_j (f_theta - g)(x) 1{<w_j,x> > 0} x, g the target."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, W.shape[1]))
    f = np.maximum(X @ W.T, 0) @ a
    g = np.maximum(X @ W_STAR.T, 0) @ A_STAR
    if variant == "centred":
        c = A_STAR.sum() / math.sqrt(2 * math.pi)  # E[f*] for unit teachers (derivations/early_stage.py)
        b = 0.5 * (A_STAR[:, None] * W_STAR).sum(axis=0)  # E[x f*]
        g = g - c - X @ b
    r = f - g
    gate = (X @ W.T > 0).astype(float)  # (n, m)
    samples = 2 * a[None, :, None] * (r[:, None, None] * gate[:, :, None] * X[:, None, :])  # (n, m, d)
    return samples.mean(axis=0), samples.std(axis=0, ddof=1) / math.sqrt(n)


@pytest.mark.parametrize("variant", stage1.VARIANTS)
def test_gradient_against_monte_carlo(variant):
    rng = np.random.default_rng(3)
    a = np.array([0.7, -0.5, 0.3])
    W = 0.5 * rng.standard_normal((3, 4))
    exact = stage1.stage1_gradient(F64, "relu", a, W, A_STAR, W_STAR, variant)
    mean, se = _mc_gradient(a, W, variant, 200_000, seed=11)
    # Reference: seeded Monte Carlo with 2e5 samples; 5 standard errors per component
    # (a two-sided 5-sigma band: a false failure has probability < 1e-5 per component).
    assert np.all(np.abs(exact - mean) <= 5 * se + 1e-12), (exact, mean, se)


def test_centred_minus_plain_is_the_derived_correction_in_mp():
    eng = MpEngine(40)
    a = eng.array(["0.7", "-0.5"])
    W = eng.array([["0.3", "0.1", "-0.2", "0.05"], ["-0.1", "0.4", "0.2", "0.3"]])
    ast, Ws = eng.array(A_STAR.tolist()), eng.array(W_STAR.tolist())
    plain = stage1.stage1_gradient(eng, "relu", a, W, ast, Ws, "plain")
    centred = stage1.stage1_gradient(eng, "relu", a, W, ast, Ws, "centred")
    # Reference: the derived correction 2 a_j sum_i a*_i (c_0^2 u_j + c_1^2 w*_i), c_0^2 = 1/(2 pi),
    # c_1^2 = 1/4 (derivations/early_stage.py::centred_correction), computed here by hand in float64;
    # the comparison is limited by that float64 arithmetic (~1e-15 on O(1) numbers).
    Wf = np.array([[float(x) for x in r] for r in W])
    U = Wf / np.linalg.norm(Wf, axis=1)[:, None]
    af = np.array([0.7, -0.5])
    expect = 2 * af[:, None] * (A_STAR.sum() / (2 * math.pi) * U + 0.25 * (A_STAR[:, None] * W_STAR).sum(axis=0))
    assert_close(np.array(centred - plain, dtype=object).ravel(), expect.ravel(), abs_=1e-14,
                 what="centred - plain")


@settings(max_examples=15)
@given(teacher=S.teachers(activation="relu", min_d=3, max_d=6, max_m_star=3),
       start=S.stage1_settings(min_scale=1e-10, max_scale=1e-8))
def test_small_init_limit_matches_the_hermite_closed_form(teacher, start):
    a_star, W_star = teacher.a_array(), teacher.W_array()
    W_star = W_star / np.linalg.norm(W_star, axis=1)[:, None]
    a, W0 = stage1.initial_student(np.random.default_rng(start.seed), start.width, teacher.d,
                                   start.scale, start.a_value)
    G = stage1.stage1_gradient(F64, "relu", a, W0, a_star, W_star, "centred")
    U = W0 / np.linalg.norm(W0, axis=1)[:, None]
    t = np.clip(U @ W_star.T, -1, 1)  # (m, m*)
    # Derived limit (derivations/early_stage.py::small_init_gradient): as W -> 0, the centred
    # gradient is -2 a_j sum_i a*_i ((A - 1/4) w*_i + (B - 1/(2 pi)) u_j), A = (pi - acos t)/(2 pi),
    # B = sqrt(1 - t^2)/(2 pi) -- written here from arccos, not from the checker's atan2 route.
    A = (math.pi - np.arccos(t)) / (2 * math.pi) - 0.25
    B = np.sqrt(1 - t**2) / (2 * math.pi) - 1 / (2 * math.pi)
    limit = -2 * a[:, None] * ((A * a_star[None, :]) @ W_star + (B @ a_star)[:, None] * U)
    # The student's own terms are O(||W|| |a|) (<= 1e-8 * m here); arccos near t = +-1 loses
    # ~sqrt(eps) ~ 1e-8 in the angle, which enters A and B at that size times |a_j| sum |a*_i|.
    tol = 1e-7 * (1 + np.abs(a).max() * np.abs(a_star).sum())
    assert np.max(np.abs(G - limit)) <= tol


def test_span_fraction_and_histogram():
    W = np.array([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0], [1.0, 0.0, 0.0, 1.0]])
    fr = stage1.span_fractions(W, W_STAR)
    # exact: rows 0 in the span (e1, e2, e3 span), row 1 orthogonal, row 2 at 45 degrees
    assert_close(fr, [1.0, 0.0, math.sqrt(0.5)], abs_=1e-15, what="span fraction")
    h = stage1.angle_histogram(W, W_STAR, "relu", bins=6)
    assert sum(h["counts"]) == 3


def test_stage1_is_deterministic_and_leaves_a_alone():
    a, W0 = stage1.initial_student(np.random.default_rng(5), 7, 4, 1e-3, 1.0)
    a_copy = a.copy()
    W1 = stage1.run_stage1(F64, "relu", a, W0, A_STAR, W_STAR, eta=2.0, steps=3, variant="centred")
    a2, W0b = stage1.initial_student(np.random.default_rng(5), 7, 4, 1e-3, 1.0)
    W1b = stage1.run_stage1(F64, "relu", a2, W0b, A_STAR, W_STAR, eta=2.0, steps=3, variant="centred")
    assert np.array_equal(a, a_copy) and np.array_equal(W1, W1b)
    assert set(np.abs(a)) == {1.0}


@pytest.mark.parametrize("bad", [dict(width=0), dict(width=3, scale=-1.0), dict(width=3, steps=0),
                                 dict(width=3, variant="other"), dict(width=3, eta=math.nan)])
def test_options_are_validated(bad):
    from checker.core.errors import CheckerError
    with pytest.raises(CheckerError):
        stage1.Stage1Options(**bad).validate()


@settings(max_examples=15)
@given(teacher=S.teachers(activation="relu", min_d=3, max_d=6, max_m_star=3),
       start=S.stage1_settings(min_scale=1e-2, max_scale=1.0))
def test_orient_never_lowers_the_signed_correlation(teacher, start):
    from checker.core import objective

    a_star, W_star = teacher.a_array(), teacher.W_array()
    W_star = W_star / np.linalg.norm(W_star, axis=1)[:, None]
    a, W = stage1.initial_student(np.random.default_rng(start.seed), start.width, teacher.d,
                                  start.scale, start.a_value)
    Wo = stage1.orient(F64, "relu", a, W, a_star, W_star)
    g0 = a * objective.correlation(F64, "relu", W, W_star, a_star)
    g1 = a * objective.correlation(F64, "relu", Wo, W_star, a_star)
    assert np.all(g1 >= g0) and np.all(np.abs(Wo) == np.abs(W))  # a sign flip per row, never worse


def test_orient_turns_a_reversed_teacher_direction_around():
    # Exact: at u = -w*_0 the correlation with f* misses teacher 0 (k(-w, w) = 0 for relu), at
    # u = w*_0 it gains a*_0 / 2; a neuron with a_j a*_0 > 0 is therefore flipped.
    W = np.array([[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    a = np.array([1.0, -1.0])
    Wo = stage1.orient(F64, "relu", a, W, A_STAR, W_STAR)
    assert np.array_equal(Wo, np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
    assert np.array_equal(stage1.orient(F64, "abs", a, W, A_STAR, W_STAR), W)


def test_one_step_eta_makes_the_update_the_stated_multiple_of_the_start():
    """The one-step variant's step: median update row = ONE_STEP_RATIO x median start row (by construction,
    checked on the rows themselves), and the features then lie in the teacher span to ~1/ratio."""
    rng = np.random.default_rng(3)
    a, W0 = stage1.initial_student(rng, 30, 4, 1e-3, 1e-3)
    eta = stage1.one_step_eta(F64, "relu", a, W0, A_STAR, W_STAR)
    upd = eta * stage1.stage1_gradient(F64, "relu", a, W0, A_STAR, W_STAR, "centred")
    ratio = np.median(np.linalg.norm(upd, axis=1)) / np.median(np.linalg.norm(W0, axis=1))
    assert ratio == pytest.approx(stage1.ONE_STEP_RATIO, rel=1e-12)
    W1 = W0 - upd
    # the update's leading term is in span{w*_i} (the Hermite-2 term 4 c2^2 a_j M u_j); the start's own
    # direction and the O(||W0||) terms are left at about 1e-3 of each row
    assert np.median(stage1.span_fractions(W1, W_STAR)) > 0.99


def test_stage1_options_accept_the_one_step_and_none_variants():
    assert stage1.Stage1Options(5, eta=None, variant="one-step").validate().variant == "one-step"
    assert stage1.Stage1Options(5, eta=None, variant="none").validate().variant == "none"
    with pytest.raises(Exception, match="eta"):
        stage1.Stage1Options(5, eta=None, variant="centred").validate()
