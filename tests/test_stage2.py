"""Stage 2 (checker/stages/stage2.py): the ridge solution against a direct 50-digit solve and
against the objective's own gradient; the frozen-feature floor; rebalancing."""

from __future__ import annotations

import mpmath
import numpy as np
from hypothesis import given, settings

from checker.core import objective
from checker.core.engines import Float64Engine, MpEngine
from checker.stages import stage2
from tests import strategies as S
from tests.tolerance import assert_close

F64 = Float64Engine()
A_STAR = ["1", "-0.8", "0.6"]
W_STAR = [["1", "0", "0", "0"], ["0", "1", "0", "0"], ["0.6", "0", "0.8", "0"]]
W = [["0.9", "0.1", "0", "0.2"], ["0.1", "-1", "0.3", "0"], ["0.5", "0.2", "0.7", "-0.1"],
     ["-0.3", "0.4", "0.1", "0.8"], ["0.2", "0.2", "0.2", "0.2"]]


def _direct_solve_50(lam2: str) -> list:
    """Reference: the normal equations written out and solved by mpmath.lu_solve at 50 digits."""
    eng = MpEngine(50)
    Wm, Ws, ast = eng.array(W), eng.array(W_STAR), eng.array(A_STAR)
    with mpmath.workdps(60):
        Kss = objective.gram(eng, Wm, Wm, "relu")
        Kst = objective.gram(eng, Wm, Ws, "relu")
        M = mpmath.matrix(Kss.tolist()) + mpmath.mpf(lam2) / 2 * mpmath.eye(len(W))
        rhs = mpmath.matrix(Kst.dot(ast).tolist())
        sol = mpmath.lu_solve(M, rhs)
        return [sol[i] for i in range(len(W))]


def test_ridge_float64_and_mp_against_a_direct_50_digit_solve():
    ref = _direct_solve_50("0.01")
    a64 = stage2.ridge(F64, "relu", F64.array(W), F64.array(A_STAR), F64.array(W_STAR), 0.01)
    # float64: the Gram matrix carries ~1e-16 relative rounding and K + 0.005 I has condition
    # number below 1e3 here, so the solution agrees to ~1e-13 relative.
    assert_close(a64, ref, rel=1e-12, abs_=1e-13, what="float64 ridge")
    eng = MpEngine(50)
    amp = stage2.ridge(eng, "relu", eng.array(W), eng.array(A_STAR), eng.array(W_STAR), eng.scalar("0.01"))
    # mp at 50 digits (+10 guard): the same system, so agreement to ~1e-45.
    assert_close(amp, ref, rel=1e-45, abs_=1e-45, what="mp ridge")


def test_ridge_zeroes_the_objectives_own_gradient():
    eng = MpEngine(50)
    Wm, Ws, ast = eng.array(W), eng.array(W_STAR), eng.array(A_STAR)
    lam2 = eng.scalar("0.003")
    a = stage2.ridge(eng, "relu", Wm, ast, Ws, lam2)
    with eng.context():
        ev = objective.evaluate(eng, "relu", a, Wm, ast, Ws, eng.scalar(0))
        g = ev.loss_grad_a + lam2 * a
    # Reference: checker.core.objective's gradient of L (no factor 1/2) plus lambda2 a; it vanishes
    # at the minimizer to the working precision (50 digits, O(1) entries).
    assert_close(g, [0] * len(W), abs_=1e-45, what="gradient at the ridge solution")


def test_floor_is_zero_on_the_teacher_features_and_below_every_ridge_loss():
    Ws, ast = F64.array(W_STAR), F64.array(A_STAR)
    fl = stage2.frozen_floor(F64, "relu", Ws, ast, Ws)
    # exact reference: a = a* reproduces f*; float64 rounding of a cancelling sum of O(1) terms
    assert abs(fl.loss) <= 1e-14 and fl.rank == 3
    Wm = F64.array(W)
    fl = stage2.frozen_floor(F64, "relu", Wm, ast, Ws)
    for lam2 in (1e-1, 1e-3, 1e-6):
        a = stage2.ridge(F64, "relu", Wm, ast, Ws, lam2)
        L = objective.evaluate(F64, "relu", a, Wm, ast, Ws, 0.0, with_gradient=False).loss
        assert fl.loss <= L + 1e-15  # the floor is the infimum over a (1e-15: float64 rounding)


def test_floor_float64_against_50_digits():
    eng = MpEngine(50)
    fm = stage2.frozen_floor(eng, "relu", eng.array(W), eng.array(A_STAR), eng.array(W_STAR))
    f6 = stage2.frozen_floor(F64, "relu", F64.array(W), F64.array(A_STAR), F64.array(W_STAR))
    # Reference: the mp floor (eigendecomposition at 60 working digits).  float64 loses
    # cond(K_ss) * eps relative in a, and L is quadratic around its minimum, so L agrees
    # to ~1e-14 absolute for this well-conditioned 5 x 5 Gram matrix.
    assert fm.rank == f6.rank == 5
    assert_close(f6.loss, fm.loss, abs_=1e-13, what="floor")


@settings(max_examples=10)
@given(teacher=S.teachers(min_d=2, max_d=5), student=S.random_students(d=5, max_m=5))
def test_rebalance_keeps_the_network_and_balances_it(teacher, student):
    d = teacher.d
    Wm = F64.array([r[:d] for r in student.W])
    a = F64.array(student.a)
    Ws, ast = teacher.W_array(), teacher.a_array()
    Ws = Ws / np.linalg.norm(Ws, axis=1)[:, None]
    ar, Wr = stage2.rebalance(F64, a, Wm)
    L0 = objective.evaluate(F64, teacher.activation, a, Wm, ast, Ws, 0.0, with_gradient=False).loss
    L1 = objective.evaluate(F64, teacher.activation, ar, Wr, ast, Ws, 0.0, with_gradient=False).loss
    # the same function (1-homogeneity): equal up to float64 rounding of O(10) terms
    assert_close(L1, L0, rel=1e-12, abs_=1e-12, what="loss after rebalancing")
    nz = np.abs(ar) > 0
    assert_close(np.abs(ar[nz]), np.linalg.norm(Wr[nz], axis=1), rel=1e-14, what="|a_j| = ||w_j||")
