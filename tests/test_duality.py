"""Tests of checker/rigorous/duality.py: the certified duality bound on the gap zeta(theta)."""

from __future__ import annotations

import json
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checker.core import objective
from checker.rigorous.duality import (GapBound, certified_sup, dual_value, gap_bound, local_maxima, residual_terms,
                             sup_estimate)
from checker.core.engines import Float64Engine, MpEngine
from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.core.problem import Problem


def _mp(x) -> mpmath.mpf:
    with mpmath.workdps(80):
        return mpmath.mpf(x)


def _mp_reg_loss(problem: Problem, dps: int = 40, loss_only: bool = False) -> mpmath.mpf:
    """L_lambda (or L) of a float64 problem's exact binary inputs, by the mp engine."""
    eng = MpEngine(dps)
    with eng.context():
        ev = objective.evaluate(eng, problem.activation, eng.array(problem.a), eng.array(problem.W),
                                eng.array(problem.a_star), eng.array(problem.W_star), eng.scalar(problem.lam),
                                with_gradient=False)
        return +(ev.loss if loss_only else ev.reg_loss)


def _single_teacher_optimum(activation: str, a_star: str, lam: str, w_star, digits: int = 55) -> Instance:
    """One student neuron at the lambda-optimum of a single teacher, balanced, at ``digits`` digits.

    The optimum puts signed mass a* - lambda sign(a*) / (2 kappa(0)) on w*
    (docs/formalization.md for relu, kappa(0) = 1/2; for abs, kappa(0) = 1, the same
    first-order condition (s - a*) 2 kappa(0) + lambda sign(s) = 0 of
    P(s delta_w*) = (s - a*)^2 kappa(0) + lambda |s|), split as a = sign sqrt(|s|),
    w = sqrt(|s|) w*.
    """
    kappa0 = {"relu": "0.5", "abs": "1"}[activation]
    with mpmath.workdps(digits + 10):
        a_s, lam_m = mpmath.mpf(a_star), mpmath.mpf(lam)
        mass = a_s - mpmath.sign(a_s) * lam_m / (2 * mpmath.mpf(kappa0))
        root = mpmath.sqrt(abs(mass))
        a = [mpmath.nstr(mpmath.sign(mass) * root, digits)]
        W = [[mpmath.nstr(root * mpmath.mpf(x), digits) for x in w_star]]
    return Instance.create(activation=activation, teacher_a=[a_star], teacher_W=[w_star], student_a=a,
                           student_W=W, lam=lam)


def _l_star(activation: str, a_star: str, lam: str) -> mpmath.mpf:
    """L*_lambda of a single unit teacher: lambda |a*| - lambda^2 / (4 kappa(0)).

    relu: lambda |a*| - lambda^2/2 (docs/formalization.md); abs: lambda |a*| - lambda^2/4 (value
    of P at the optimum above: (lambda/(2 kappa0))^2 kappa0 + lambda (|a*| - lambda/(2 kappa0))).
    """
    with mpmath.workdps(80):
        k0 = mpmath.mpf({"relu": "0.5", "abs": "1"}[activation])
        lam_m = mpmath.mpf(lam)
        return lam_m * abs(mpmath.mpf(a_star)) - lam_m ** 2 / (4 * k0)


@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_single_teacher_optimum_certified_to_1e25(activation):
    # Target (1): d = 3, student at the lambda-optimum computed at 55 digits, mp engine
    # at 50 digits.  Reference: the closed form L*_lambda (see _l_star).  The true gap
    # is ~1e-50 (the student's decimal rounding); the certificate must bring
    # gap_upper below 1e-25 and, being rigorous, keep dual <= L* <= reg_loss up to
    # the teacher's own rounding: 0.6, 0.8 are not binary numbers, so ||w*|| = 1 +- 1e-59
    # in the engine and L* moves by |a*| lambda 1e-59 < 1e-55.
    inst = _single_teacher_optimum(activation, "1.3", "0.05", ["0.6", "0", "0.8"])
    problem = Problem.from_instance(inst, MpEngine(50))
    bound = gap_bound(problem)
    assert bound.rigorous and bound.method == "arb-branch-and-bound"
    l_star = _l_star(activation, "1.3", "0.05")
    with mpmath.workdps(80):  # all comparisons at 80 digits (outside, mpmath rounds to 15)
        assert 0 <= _mp(bound.gap_upper) <= _mp("1e-25")
        slack = _mp("1e-55")
        assert _mp(bound.dual) <= l_star + slack
        assert _mp(bound.reg_loss) >= l_star - slack
        # sup |g| = lambda/2 at the optimum (KKT), up to the student's decimal rounding: a and W
        # are written with 55 significant digits, so |a| ||w|| (about 1.275) is within
        # 2 sqrt(1.275) 5e-55 < 1.2e-54 of the optimal mass, and g(w*) = kappa(0) (a* - |a| ||w||)
        # within kappa(0) 1.2e-54 <= 1.2e-54 of lambda/2.  U must enclose lambda/2 to that slack
        # (the certified U is now tight enough to see the rounding: 0.025 - 4.9e-55).
        rounding = _mp("1.2e-54")
        assert _mp(bound.extra["sup_lower"]) - rounding <= _mp("0.025") <= _mp(bound.sup_upper) + rounding
        assert _mp(bound.extra["sup_lower"]) <= _mp(bound.sup_upper)


students = st.tuples(st.floats(0.2, 1.6), st.floats(-0.6, 0.6), st.floats(-0.6, 0.6), st.floats(0.0, 0.1))


@settings(max_examples=6)
@given(students)
def test_rigorous_bound_dominates_true_gap_off_optimum(student):
    # Single relu teacher a* = 1, w* = e3 (exactly unit in binary); a non-converged
    # student (random mass, direction and imbalance).  Reference: the true gap
    # L_lambda(theta) - L* with L_lambda from the mp engine at 40 digits on the same
    # binary inputs and L* = lambda - lambda^2/2 (closed form).  The rigorous bound
    # must dominate it (no tolerance: both sides are exact to ~1e-38, far below the
    # 1e-30 slack for the decimal rounding of the strings).
    scale, x, y, tilt = student
    w = np.array([x, y, 1.0])
    w = w / np.linalg.norm(w) * np.sqrt(scale) * (1 + tilt)
    a = np.sqrt(scale) / (1 + tilt)
    inst = Instance.create(teacher_a=[1.0], teacher_W=[[0.0, 0.0, 1.0]], student_a=[float(a)],
                           student_W=[w.tolist()], lam=0.1)
    problem = Problem.from_instance(inst, Float64Engine())
    bound = gap_bound(problem)
    assert bound.rigorous
    l_star = _l_star("relu", "1", "0.1")
    with mpmath.workdps(80):
        true_gap = _mp_reg_loss(problem) - l_star
        assert _mp(bound.gap_upper) >= true_gap - _mp("1e-30")
        assert _mp(bound.dual) <= l_star + _mp("1e-30")


def test_sampled_sup_can_break_the_lower_bound():
    # A student far from the teacher: g peaks near w* = e1.  The largest |g| over 20
    # random directions misses the peak; D computed with that U exceeds L*_lambda
    # (closed form lambda |a*| - lambda^2/2 = 0.095): not a lower bound.  With the
    # certified U, D <= L*.
    inst = Instance.create(teacher_a=["1"], teacher_W=[["1", "0", "0", "0"]], student_a=["0.3"],
                           student_W=[["0", "0.3", "0", "0"]], lam="0.1")
    problem = Problem.from_instance(inst, Float64Engine())
    V, c = residual_terms(problem, problem.a, problem.W)
    Q = np.random.default_rng(0).standard_normal((20, 4))
    Q /= np.linalg.norm(Q, axis=1)[:, None]
    sampled = float(np.abs(objective.correlation(problem.engine, "relu", Q, V, c)).max())
    certified = certified_sup(problem, tol=1e-6)
    assert certified.rigorous and sampled < float(certified.lower)
    l_star = 0.1 - 0.1 ** 2 / 2
    _, d_sampled = dual_value(problem, sampled)
    assert d_sampled > l_star  # the "lower bound" from a sampled U is above L*
    bound = gap_bound(problem)
    assert _mp(bound.dual) <= _mp(l_star)


def test_span_reduction_for_d_above_4():
    # d = 6 with teacher and student in a random 2-dimensional subspace: the certified
    # sup must agree with the same problem written in d = 3 coordinates (reference:
    # the direct search on S^2, no reduction).  The intervals must overlap and the
    # basis perturbation stays at rounding level (< 1e-14).
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.standard_normal((6, 6)))[0][:, :2].T
    teacher2 = np.array([[1.0, 0.0], [0.6, 0.8]])
    student2 = np.array([[0.9, 0.1], [0.5, 0.7]])
    T6, S6 = teacher2 @ basis, student2 @ basis
    T3 = np.column_stack([T6 @ basis.T, np.zeros(2)])
    S3 = np.column_stack([S6 @ basis.T, np.zeros(2)])
    common = dict(teacher_a=[1.0, -0.7], student_a=[0.8, -0.5], lam=0.05, normalize_teacher=True)
    p6 = Problem.from_instance(Instance.create(teacher_W=T6.tolist(), student_W=S6.tolist(), **common),
                               Float64Engine())
    p3 = Problem.from_instance(Instance.create(teacher_W=T3.tolist(), student_W=S3.tolist(), **common),
                               Float64Engine())
    c6 = certified_sup(p6, tol=1e-12)
    c3 = certified_sup(p3, tol=1e-12)
    assert c6.rigorous and c6.search_dim == 3 and c6.span_dim == 2
    assert float(c6.perturbation) < 1e-14
    # Same function up to the rounding of the coordinates (~1e-16): the enclosures overlap.
    assert _mp(c6.lower) <= _mp(c3.upper) + _mp("1e-14") and _mp(c3.lower) <= _mp(c6.upper) + _mp("1e-14")
    # A student spanning 5 dimensions: not certified, and the bound says so.
    wide = Instance.create(teacher_W=T6.tolist(), student_W=rng.standard_normal((3, 6)).tolist(),
                           teacher_a=[1.0, -0.7], student_a=[0.3, 0.2, 0.1], lam=0.05, normalize_teacher=True)
    bound = gap_bound(Problem.from_instance(wide, Float64Engine()))
    assert not bound.rigorous and bound.method == "estimate"
    assert "span dimension" in bound.detail and "estimate" in bound.detail


def test_lambda_zero_gives_the_loss():
    # lambda = 0: s = 0, D = 0 and the bound is L(theta) itself (L*_0 = 0: the student
    # can copy the teacher).  Reference: L from the mp engine at 40 digits.
    inst = Instance.create(teacher_a=["1", "-0.5"], teacher_W=[["1", "0", "0"], ["0", "1", "0"]],
                           student_a=["0.7"], student_W=[["0.8", "0.3", "0.1"]], lam="0")
    problem = Problem.from_instance(inst, Float64Engine())
    bound = gap_bound(problem)
    assert bound.rigorous and _mp(bound.scale) == 0 and _mp(bound.dual) == 0
    with mpmath.workdps(80):
        # 1e-35: the 40-digit strings and the mp engine's 40 digits
        assert abs(_mp(bound.gap_upper) - _mp_reg_loss(problem, loss_only=True)) < _mp("1e-35")


def test_student_equal_to_teacher_gives_zero_correlation():
    # r = 0, so g = 0, L = <r, f*> = 0 and D(2 s r) = 0 for every s: the scale is 0 (the peak
    # <r, f*>/L is undefined; U is certified to the default tolerance, 1% of the
    # expected gap over its sensitivity: 0.01 * 0.1 / 2 = 5e-4), D = 0, and the bound
    # is the regularizer lambda (|a|^2 + |W|^2)/2 = lambda exactly (L = 0), with lambda
    # the binary float 0.1.  With a tolerance below the rounding level the search
    # must still stop (the floor scales with the cancelling terms, not with U = 0).
    inst = Instance.create(teacher_a=["1"], teacher_W=[["0", "0", "1"]], student_a=["1"],
                           student_W=[["0", "0", "1"]], lam="0.1")
    problem = Problem.from_instance(inst, Float64Engine())
    bound = gap_bound(problem)
    assert bound.rigorous and _mp(bound.scale) == 0 and _mp(bound.dual) == 0
    with mpmath.workdps(80):
        assert _mp(bound.sup_upper) <= _mp("5e-4")
        assert abs(_mp(bound.gap_upper) - _mp(0.1)) < _mp("1e-35")
    tight = certified_sup(problem, tol=0.0, max_boxes=20_000)
    assert tight.rigorous and tight.sphere.boxes < 20_000 and _mp(tight.upper) < _mp("1e-30")


def test_estimate_mode_is_labelled_and_json():
    inst = _single_teacher_optimum("relu", "1", "0.1", ["0", "0", "1"], digits=17)
    problem = Problem.from_instance(inst, Float64Engine())
    est = gap_bound(problem, rigorous=False)
    assert not est.rigorous and est.method == "estimate" and "estimate, not a bound" in est.detail
    data = json.loads(json.dumps(est.to_dict()))
    assert GapBound(**data) == est
    with pytest.raises(CheckerError):
        gap_bound(problem, lam=-1.0)


def test_sup_estimate_agrees_with_certified_sup():
    # Reference: the certified interval (tol 1e-30, prec default for mp 30 digits).
    # The estimate is refined by Newton steps in the mp engine, so it must fall in the
    # interval up to its own 30-digit rounding (1e-28).
    rng = np.random.default_rng(4)
    inst = Instance.create(teacher_a=[1.0, -0.6], teacher_W=[[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]],
                           student_a=[0.5, 0.4], student_W=rng.standard_normal((2, 3)).tolist(), lam=0.05)
    problem = Problem.from_instance(inst, MpEngine(30))
    value, argmax = sup_estimate(problem)
    cert = certified_sup(problem, tol=1e-30)
    assert cert.rigorous
    with mpmath.workdps(80):
        assert _mp(cert.lower) - _mp("1e-28") <= value <= _mp(cert.upper) + _mp("1e-28")
        assert abs(mpmath.fsum(x * x for x in argmax) - 1) < _mp("1e-28")
    assert len(local_maxima(problem)) >= 1


def _gd(problem: Problem, a, W, steps: int, eta: float):
    """Plain gradient descent on L_lambda in the problem's engine."""
    with problem.engine.context():
        step = problem.engine.scalar(eta)
        for _ in range(steps):
            ev = problem.evaluate(a, W)
            a, W = a - step * ev.grad_a, W - step * ev.grad_W
    return a, W


def _three_teachers(d: int) -> tuple[Instance, np.ndarray, np.ndarray]:
    teachers = {3: [[1.0, 0, 0], [0, 0.6, 0.8], [-0.6, 0, 0.8]],
                4: [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0.6, 0.8]]}[d]
    Ws, As = np.array(teachers), np.array([1.0, -0.8, 1.2])
    rng = np.random.default_rng(1)
    W0 = 0.9 * Ws + 0.03 * rng.standard_normal(Ws.shape)
    inst = Instance.create(teacher_a=As.tolist(), teacher_W=Ws.tolist(), student_a=(0.9 * As).tolist(),
                           student_W=W0.tolist(), lam=0.05, normalize_teacher=True)
    return inst, 0.9 * As, W0


def test_three_teachers_converged_float64_d3():
    # Three separated teachers in d = 3, one student neuron each, float64 GD to a
    # stationary point (gradient ~1e-16).  The rigorous bound must be below 1e-14: the
    # float student is within rounding of the lambda-optimum, so its true gap is
    # O(eps |grad|) ~ 1e-16 and the certificate adds ~1% of that.
    inst, a0, W0 = _three_teachers(3)
    problem = Problem.from_instance(inst, Float64Engine())
    a, W = _gd(problem, a0, W0, 3000, 0.5)
    bound = gap_bound(problem, a, W)
    assert bound.rigorous and bound.extra["converged"]
    with mpmath.workdps(80):
        assert 0 <= _mp(bound.gap_upper) <= _mp("1e-14")


@pytest.mark.slow
def test_three_teachers_converged_mp_d4():
    # Target (2): three separated teachers in d = 4, GD in float64 then in the mp
    # engine (50 digits) to a gradient below 1e-45; rigorous gap_upper <= 1e-15.
    inst, a0, W0 = _three_teachers(4)
    a, W = _gd(Problem.from_instance(inst, Float64Engine()), a0, W0, 20000, 0.5)
    problem = Problem.from_instance(inst, MpEngine(50))
    with problem.engine.context():
        a, W = problem.engine.array(list(a)), problem.engine.array(W.tolist())
    a, W = _gd(problem, a, W, 1600, 0.5)
    bound = gap_bound(problem, a, W)
    assert bound.rigorous and bound.extra["converged"]
    with mpmath.workdps(80):
        assert 0 <= _mp(bound.gap_upper) <= _mp("1e-15")


def test_gap_bound_restores_exactly_from_its_json_and_refuses_damage():
    # Checkpoints store a GapBound as JSON (decimal strings); reading it back must give the very
    # same record, and a damaged record a one-line CheckerError naming where it was read.
    inst = _single_teacher_optimum("relu", "1", "0.1", ["0", "0", "1"], digits=17)
    problem = Problem.from_instance(inst, Float64Engine())
    bound = gap_bound(problem, rigorous=True, max_boxes=2000)
    assert bound.rigorous
    assert GapBound.from_dict(json.loads(json.dumps(bound.to_dict()))) == bound
    for damage in ({"gap_upper": "inf"}, {"dual": "x"}, {"rigorous": "yes"}, {"boxes": 1.5}, {"seconds": "1"}):
        with pytest.raises(CheckerError, match="ckpt: phase initial-gap") as info:
            GapBound.from_dict({**bound.to_dict(), **damage}, "ckpt: phase initial-gap")
        assert "\n" not in str(info.value)
    with pytest.raises(CheckerError, match="malformed"):
        GapBound.from_dict({**bound.to_dict(), "new": 1}, "ckpt")


def test_sup_reduces_to_a_smaller_sphere_when_the_span_is_degenerate_in_low_dimension():
    """d = 4, every vector in a plane: the sup runs on S^2 (span reduction), not S^3.

    Reference: the branch and bound on the full sphere S^3 (no reduction) at the same
    tolerance; both are certified intervals of the same supremum, so they must overlap.
    """
    from flint import ctx

    from checker.rigorous.arb_objective import KernelSum
    from checker.rigorous.duality import certified_sup, residual_terms
    from checker.rigorous.sphere import certified_max_abs

    inst = Instance.create(teacher_a=["1", "-0.7"], teacher_W=[["1", "0", "0", "0"], ["0", "1", "0", "0"]],
                           student_a=["0.8", "-0.5"], student_W=[["0.9", "0.2", "0", "0"], ["0.1", "0.6", "0", "0"]],
                           lam="0.01")
    p = Problem.from_instance(inst, Float64Engine())
    cert = certified_sup(p, tol=1e-4)
    assert cert.rigorous and cert.search_dim == 3 and cert.span_dim == 2
    V, c = residual_terms(p, p.a, p.W)
    with ctx.workprec(80):
        full = certified_max_abs(KernelSum("relu", V, c), 4, tol=1e-4, max_boxes=200_000, prec=80)
    assert full.rigorous
    assert Fraction(cert.lower) <= Fraction(full.upper) and Fraction(full.lower) <= Fraction(cert.upper)


@pytest.mark.parametrize("rows", [
    [["0.9", "0.2", "0.3"], ["0.1", "0.6", "-0.2"]],  # d = 3, students off the teachers' plane: span R^3
    [["0.9", "0.2", "0"], ["0.1", "0.6", "0"]],  # d = 3, everything in a plane: s + 1 = d, half of S^2
])
def test_half_sphere_search_brackets_the_full_sphere_sup(rows):
    """The reduced search keeps only the half sphere p_{s+1} >= 0 (the sum is even in it).

    Reference: the branch and bound on the full sphere S^2 of R^3 (no reduction, no
    restriction) at the same tolerance; both are certified intervals of the same
    supremum, so they must overlap, and the reduced one must have searched the
    half sphere (every box it kept has a point with p_{s+1} >= 0).
    """
    from flint import ctx

    from checker.rigorous.arb_objective import KernelSum
    from checker.rigorous.duality import certified_sup, residual_terms
    from checker.rigorous.sphere import certified_max_abs

    inst = Instance.create(teacher_a=["1", "-0.7"], teacher_W=[["1", "0", "0"], ["0", "1", "0"]],
                           student_a=["0.8", "-0.5"], student_W=rows, lam="0.01")
    p = Problem.from_instance(inst, Float64Engine())
    cert = certified_sup(p, tol=1e-5)
    V, c = residual_terms(p, p.a, p.W)
    with ctx.workprec(80):
        full = certified_max_abs(KernelSum("relu", V, c), 3, tol=1e-5, max_boxes=200_000, prec=80)
    assert cert.rigorous and full.rigorous
    assert Fraction(cert.lower) <= Fraction(full.upper) and Fraction(full.lower) <= Fraction(cert.upper)
    if rows[0][2] == "0":
        assert cert.span_dim == 2 and cert.search_dim == 3  # reduced (s + 1 = d), not the direct search
        assert cert.sphere.boxes < full.boxes  # the half sphere: fewer boxes than the whole one
    else:
        assert cert.span_dim == 3


def test_dual_scale_and_value_against_exact_rationals():
    # A student far from the single relu teacher (a* = 1, w* = e3, lambda = 0.1): sup |g| is
    # about kappa(0) = 1/2 > lambda/2, so the scale s = min(1, lambda/(2U)) is ~0.1 < 1 and
    # every piece of it matters.  References, none from checker.rigorous.duality:
    # * s <= lambda/(2U) exactly (Fractions), U the reported certified upper end of sup |g|,
    #   and s below it by no more than the Arb precision (2^-100 relative) and the 41-digit
    #   decimal rounding: the scale rests on the upper end of the enclosure, rounded down;
    # * D = 2 s <r, f*> - s^2 ||r||^2 recomputed at 80 digits with the independent reference
    #   kernel (tests/reference.py) on the same binary inputs: the reported (lower-end) dual
    #   is below it and within 1e-30 of it (Arb at 128 bits, 41-digit strings);
    # * D <= L*_lambda = lambda - lambda^2/2 (closed form), and gap_upper >= L_lambda - D.
    from fractions import Fraction
    from decimal import Decimal

    from tests import reference

    lam = 0.1
    a = [0.3, -0.2]
    W = [[0.8, 0.1, -0.2], [0.1, 0.9, 0.3]]
    inst = Instance.create(teacher_a=[1.0], teacher_W=[[0.0, 0.0, 1.0]], student_a=a, student_W=W, lam=lam)
    problem = Problem.from_instance(inst, Float64Engine())
    bound = gap_bound(problem)
    assert bound.rigorous
    U, s, lam_q = Fraction(Decimal(bound.sup_upper)), Fraction(Decimal(bound.scale)), Fraction(lam)
    assert Fraction(Decimal(bound.extra["sup_lower"])) <= U  # an enclosure [lower, upper] of sup |g|
    feasible = lam_q / (2 * U)
    assert feasible < 1  # the case where the scale is lambda/(2U), not 1
    assert s <= feasible
    assert feasible - s <= feasible * Fraction(1, 2**100)
    with mpmath.workdps(80):
        am = [mpmath.mpf(x) for x in a]  # floats: exact
        Wm = [[mpmath.mpf(x) for x in r] for r in W]
        ast, Wst = [mpmath.mpf(1)], [[mpmath.mpf(0), mpmath.mpf(0), mpmath.mpf(1)]]
        ref = reference.evaluate("relu", am, Wm, ast, Wst, mpmath.mpf(lam), dps=80, gradient=False)
        ff = reference.loss_double_sum("relu", [], [], ast, Wst)
        cross = mpmath.fsum(x * y * reference.kernel_k(w, v, "relu") for x, w in zip(am, Wm) for y, v in zip(ast, Wst))
        sm = mpmath.mpf(s.numerator) / s.denominator
        D = 2 * sm * (ff - cross) - sm * sm * ref.loss
        dual = _mp(bound.dual)
        assert dual <= D + mpmath.mpf("1e-40") and D - dual <= mpmath.mpf("1e-30")
        lm = mpmath.mpf(lam)
        assert dual <= lm - lm**2 / 2
        assert _mp(bound.gap_upper) >= ref.reg_loss - dual - mpmath.mpf("1e-40")
        assert abs(_mp(bound.reg_loss) - ref.reg_loss) <= mpmath.mpf("1e-30")


@pytest.mark.parametrize("activation", ["relu", "abs"])
@pytest.mark.parametrize("offset", [-1e-3, 0.0, 1e-3])
def test_gap_bound_equals_the_true_gap_near_the_optimal_mass(activation, offset):
    """One balanced neuron on the teacher's direction with signed mass S = S* + offset.

    Closed forms (none from the checker; relu kappa(0) = 1/2, abs kappa(0) = 1, E[sigma(x_3)^2] =
    kappa(0)): the student t e3 with output weight a has f = a t sigma(x_3), so
    L_lambda = kappa(0) (a t - a*)^2 + (lambda/2)(a^2 + t^2), and L* = lambda |a*| - lambda^2/(4 kappa(0))
    at S* = a* - lambda/(2 kappa(0)) (``_l_star``); with a = t = sqrt(S) the true gap is
    kappa(0) (S - S*)^2 (here S* +- 1e-3: 5e-7 for relu, 1e-6 for abs).  The residual is
    r = e sigma(x_3), e = a* - S, so sup |g| = |e| kappa(0) (at w = e3), <r, f*> = e a* kappa(0)
    and L = e^2 kappa(0): with e > 0 the best feasible scale s = lambda/(2 kappa(0) e) gives
    D = L* exactly, whichever side of S* the student is on.  So the rigorous bound must be the
    true gap plus only what the sup's tolerance costs: with U the certified upper end,
    D(U) = lambda <r, f*>/U - lambda^2 L/(4 U^2) is computed here at 80 digits and the
    bound must lie within 1e-25 (the 41-digit strings, 128-bit Arb) of L_lambda - D(U).
    Above S* a scale capped at 1 leaves a first-order gap bound (about 9e-4 for relu).
    """
    k0 = {"relu": mpmath.mpf("0.5"), "abs": mpmath.mpf(1)}[activation]
    S = 1 - 0.1 / (2 * float(k0)) + offset
    root = float(np.sqrt(S))
    inst = Instance.create(activation=activation, teacher_a=[1.0], teacher_W=[[0.0, 0.0, 1.0]],
                           student_a=[root], student_W=[[0.0, 0.0, root]], lam=0.1)
    bound = gap_bound(Problem.from_instance(inst, Float64Engine()))
    assert bound.rigorous
    with mpmath.workdps(80):
        t, lam = mpmath.mpf(root), mpmath.mpf(0.1)  # the binary numbers the engine uses
        reg = k0 * (t * t - 1) ** 2 + lam * t * t
        l_star = lam - lam ** 2 / (4 * k0)
        true_gap = reg - l_star
        e = 1 - t * t
        U = _mp(bound.sup_upper)
        assert _mp(bound.extra["sup_lower"]) <= e * k0 <= U  # the certified enclosure of sup |g|
        d_at_U = lam * e * k0 / U - lam ** 2 * e * e * k0 / (4 * U * U)  # D at s = lambda/(2U)
        gap = _mp(bound.gap_upper)
        assert gap >= true_gap - _mp("1e-25")
        assert abs(gap - (reg - d_at_U)) <= _mp("1e-25")
        if offset != 0:
            assert gap <= 1.02 * true_gap  # the sup tolerance costs about 1% of the gap
        else:  # at S* (up to the rounding of sqrt(S*)): the rounding level of float64 inputs
            assert gap <= _mp("1e-17")


def _dense_sup_reference(activation: str, V: list, c: list) -> mpmath.mpf:
    """max over the unit sphere of |sum_l c_l ||v_l|| kappa(angle(w, v_l))| (d = 3), independently of
    checker.core.kernel: kappa written out here from the Gaussian expectations E[s(X) s(Y)] at
    correlation cos t (relu: (sin t + (pi - t) cos t)/(2 pi), the arc-cosine kernel of degree 1;
    abs: (2/pi)(sin t + (pi/2 - t) cos t), i.e. (2/pi)(sqrt(1 - rho^2) + rho arcsin rho)), on a
    60 x 120 grid in spherical coordinates at 30 digits, then a compass search (coordinate
    steps halved down to 1e-12 rad) from the best 5 grid points."""
    with mpmath.workdps(30):
        Vm = [[mpmath.mpf(x) for x in v] for v in V]
        cm = [mpmath.mpf(x) for x in c]
        nv = [mpmath.sqrt(sum(x * x for x in v)) for v in Vm]

        def kappa(cos_t):
            cos_t = max(-1, min(1, cos_t))
            t = mpmath.acos(cos_t)
            if activation == "relu":
                return (mpmath.sin(t) + (mpmath.pi - t) * cos_t) / (2 * mpmath.pi)
            return 2 * (mpmath.sin(t) + (mpmath.pi / 2 - t) * cos_t) / mpmath.pi

        def g(th, ph):
            w = [mpmath.sin(th) * mpmath.cos(ph), mpmath.sin(th) * mpmath.sin(ph), mpmath.cos(th)]
            return abs(mpmath.fsum(cl * n * kappa(mpmath.fsum(a * b for a, b in zip(w, v)) / n)
                                   for cl, n, v in zip(cm, nv, Vm)))

        grid = [(g(th, ph), th, ph) for th in mpmath.linspace(0, mpmath.pi, 60)
                for ph in mpmath.linspace(0, 2 * mpmath.pi, 120)]
        grid.sort(key=lambda x: -x[0])
        best = grid[0][0]
        for val, th, ph in grid[:5]:
            h = mpmath.mpf("0.05")
            while h > mpmath.mpf("1e-12"):
                moved = False
                for dth, dph in ((h, 0), (-h, 0), (0, h), (0, -h)):
                    v2 = g(th + dth, ph + dph)
                    if v2 > val:
                        val, th, ph, moved = v2, th + dth, ph + dph, True
                if not moved:
                    h /= 2
            best = max(best, val)
        return best


@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_certified_sup_against_an_independent_dense_evaluation(activation):
    # Reference: the dense evaluation above (its own kappa, no checker code), a lower bound on the
    # true sup up to its 1e-12 rad refinement (the function is Lipschitz: the refined local maxima
    # are within ~1e-20 of the true ones, far below the tolerance 1e-9 asked of the certificate).
    # The certified enclosure [lower, upper] must contain it: lower <= dense + 1e-15 (the refined
    # grid finds the global maximum's basin on this smooth two-teacher residual) and dense <= upper.
    inst = Instance.create(activation=activation, teacher_a=["1", "-0.7"],
                           teacher_W=[["1", "0", "0"], ["0", "0.6", "0.8"]], student_a=["0.8", "-0.5"],
                           student_W=[["0.7", "0.3", "-0.2"], ["0.2", "0.4", "0.7"]], lam="0.05")
    problem = Problem.from_instance(inst, Float64Engine())
    cert = certified_sup(problem, tol=1e-9)
    assert cert.rigorous
    V = [[float(x) for x in row] for row in problem.W_star] + [[float(x) for x in row] for row in problem.W]
    c = [float(x) for x in problem.a_star] + [-float(x) for x in problem.a]
    dense = _dense_sup_reference(activation, V, c)
    with mpmath.workdps(40):
        assert _mp(cert.lower) - _mp("1e-15") <= dense <= _mp(cert.upper)
        assert _mp(cert.upper) - _mp(cert.lower) <= _mp("1e-8")


@pytest.mark.parametrize("bigger", [0, 1])
def test_sup_estimate_is_the_largest_maximum_in_the_engines_numbers(bigger):
    # Two relu teachers on e1 and -e1 whose output weights differ by 1e-20: the two maxima of |g|
    # (near e1 and -e1) agree to ~1e-20, far below a float's resolution.  Reference: the maxima
    # themselves, compared as 40-digit numbers: the estimate must be the largest (the sup
    # estimate U of the gap estimate; a smaller one makes s = lambda/(2U) too large and the
    # "bound" fall below the gap), whichever teacher carries it, and the list must be sorted.
    weights = ["1", "1.00000000000000000001"] if bigger else ["1.00000000000000000001", "1"]
    inst = Instance.create(teacher_a=weights, teacher_W=[["1", "0", "0"], ["-1", "0", "0"]],
                           student_a=["0.001"], student_W=[["0", "0", "1"]], lam="0.01")
    problem = Problem.from_instance(inst, MpEngine(40))
    maxima = local_maxima(problem)
    values = [v for v, _ in maxima]
    assert len(values) >= 2 and all(x >= y for x, y in zip(values, values[1:]))
    top = maxima[0][1]
    assert float(top[0]) * (1 if bigger == 0 else -1) > 0.9  # near the teacher with the larger weight
    assert sup_estimate(problem)[0] == values[0]
