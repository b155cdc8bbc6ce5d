"""Tests of checker/core/hessian.py: the exact Hessian of L and L_lambda.

Reference: central finite differences of the exact gradient
(``checker.core.objective.evaluate``, independent of the Hessian code) in the
mp engine at 70 digits with step h = 1e-25.  Where L is smooth near the point
the difference error is O(h^2 |D^4 L|) = O(1e-50) plus rounding O(1e-70 / h) =
O(1e-45), hence the tolerance 1e-40 relative to the Hessian's scale (agreement
to 40 digits).  Near a collinear pair at angle psi the higher derivatives of k
grow as psi -> 0 (kappa has a |phi|^3 term): measured, the difference at
h = 1e-25 is off by 1.3e-26 at psi = 1e-8 and agrees at h = 1e-40, so those
cases run at 120 digits with h = 1e-45 (error O(h^2 / psi^3) = 1e-66, rounding
1e-75).  At an exactly collinear pair the gradient is only C^{1,1} across the
pair, and a central difference of a function like x |x| is off by O(h) there:
those cases (h = 1e-45) use the tolerance 1e-40.
"""

from __future__ import annotations


import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checker.core import hessian as hs
from checker.core.engines import Float64Engine, MpEngine
from checker.core.model import Instance
from checker.core.problem import Problem
from tests import strategies as sts

ACTS = ("relu", "abs")
DPS = 70
H_STEP = "1e-25"
#: near and at collinear pairs (see the module docstring)
COLLINEAR_DPS, COLLINEAR_STEP = 120, "1e-45"


def fd_hessian(problem: Problem, a: np.ndarray, W: np.ndarray, train: str, step: str = H_STEP) -> np.ndarray:
    """Central differences of the exact gradient of L_lambda in the trained block (mp numbers)."""
    e = problem.engine
    with e.context():
        h = mpmath.mpf(step)
        x = hs.flatten(a, W, train)
        cols = []
        for i in range(len(x)):
            xp, xm = x.copy(), x.copy()
            xp[i] += h
            xm[i] -= h
            gp = hs.gradient_vector(problem.evaluate(*hs.unflatten(xp, a, W, train)), train)
            gm = hs.gradient_vector(problem.evaluate(*hs.unflatten(xm, a, W, train)), train)
            cols.append((gp - gm) / (2 * h))
        return np.array(cols, dtype=object).T


def max_err(X: np.ndarray, Y: np.ndarray) -> mpmath.mpf:
    with mpmath.workdps(DPS):
        return max(abs(mpmath.mpf(x) - mpmath.mpf(y)) for x, y in zip(X.ravel(), Y.ravel()))


def scale_of(H: np.ndarray) -> mpmath.mpf:
    with mpmath.workdps(DPS):
        return max(1, max(abs(mpmath.mpf(x)) for x in H.ravel()))


def check_against_fd(inst: Instance, train: str, tol: str, *, dps: int = DPS, step: str = H_STEP) -> None:
    p = Problem.from_instance(inst, MpEngine(dps))
    H = hs.hessian(p, train=train)
    F = fd_hessian(p, p.a, p.W, train, step)
    err = max_err(H, F)
    assert err <= mpmath.mpf(tol) * scale_of(F), f"train={train}: |H - FD| = {mpmath.nstr(err, 5)}"
    sym = max_err(H, H.T)
    assert sym == 0, f"train={train}: not symmetric ({sym})"


def _inst(act: str, a_star, W_star, a, W, lam="0.03") -> Instance:
    return Instance.create(activation=act, teacher_a=a_star, teacher_W=W_star, student_a=a, student_W=W,
                           lam=lam, normalize_teacher=True)


# ----------------------------------------------------------------------- random instances
@settings(deadline=None, max_examples=6)
@given(inst=sts.instances(student="random", student_options={"max_m": 3},
                          teacher=sts.teachers(max_d=3, max_m_star=2)),
       train=st.sampled_from(hs.TRAIN_CHOICES))
def test_hessian_matches_fd_random(inst: Instance, train: str) -> None:
    check_against_fd(inst, train, "1e-40")


@settings(deadline=None, max_examples=4)
@given(inst=sts.instances(student="near", teacher=sts.teachers(max_d=3, max_m_star=2)))
def test_hessian_matches_fd_near_optimum(inst: Instance) -> None:
    check_against_fd(inst, "both", "1e-40")


def _rot(phi: str) -> list[str]:
    with mpmath.workdps(60):
        p = mpmath.mpf(phi) if phi != "pi-1e-8" else mpmath.pi - mpmath.mpf("1e-8")
        return [mpmath.nstr(1.3 * mpmath.cos(p), 50), mpmath.nstr(1.3 * mpmath.sin(p), 50), "0.2"]


NEAR = {
    # student 1 at angle ~1e-8 from student 0 (both at the same height 0.2 off the plane)
    "phi=1e-8": (["0.7", "-0.4"], [["1.3", "0", "0.2"], _rot("1e-8")]),
    # student 1 at angle ~pi - 1e-8 from student 0 in the plane
    "phi=pi-1e-8": (["0.7", "-0.4"], [["1.3", "0", "0"], _rot("pi-1e-8")[:2] + ["0"]]),
}

EXACT = {
    # exactly collinear students, and a student on the teacher's ray
    "collinear": (["0.7", "-0.4"], [["1", "0", "0"], ["2.5", "0", "0"]]),
    # exactly antipodal students, one antipodal to the teacher
    "antipodal": (["0.7", "0.4"], [["-1", "0", "0"], ["0.5", "0", "0"]]),
}
TEACHER = (["1.0", "-0.6"], [["1", "0", "0"], ["0", "0.6", "0.8"]])


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("case", sorted(NEAR))
@pytest.mark.parametrize("train", hs.TRAIN_CHOICES)
def test_hessian_near_collinear(act: str, case: str, train: str) -> None:
    a, W = NEAR[case]
    check_against_fd(_inst(act, *TEACHER, a, W), train, "1e-40", dps=COLLINEAR_DPS, step=COLLINEAR_STEP)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("case", sorted(EXACT))
@pytest.mark.parametrize("train", hs.TRAIN_CHOICES)
def test_hessian_exactly_collinear(act: str, case: str, train: str) -> None:
    # At an exactly collinear pair the central difference is off by O(h) (see the module doc).
    a, W = EXACT[case]
    check_against_fd(_inst(act, *TEACHER, a, W), train, "1e-40", dps=COLLINEAR_DPS, step=COLLINEAR_STEP)


# ----------------------------------------------------------------------- structure
def test_hessian_finite_at_collinear_and_continuous() -> None:
    """At a collinear pair the float64 Hessian is finite and equals its limit from phi = 1e-7."""
    e = Float64Engine()
    for act in ACTS:
        for sign in (1.0, -1.0):
            W0 = np.array([[1.0, 0.0, 0.3], [sign * 2.0, 0.0, sign * 0.6]])
            W1 = W0.copy()
            W1[1, 1] = 2e-7  # the same pair, rotated by ~1e-7
            a, As, Ws = np.array([0.5, -0.8]), np.array([1.0]), np.array([[0.0, 1.0, 0.0]])
            H0 = hs.loss_hessian(e, act, a, W0, As, Ws, 0.0)
            H1 = hs.loss_hessian(e, act, a, W1, As, Ws, 0.0)
            assert np.all(np.isfinite(H0))
            # the Hessian is Lipschitz near collinear pairs (C^{2,1}): a 1e-7 move changes it by O(1e-7)
            assert np.max(np.abs(H0 - H1)) < 1e-6, (act, sign)


@pytest.mark.parametrize("act", ACTS)
def test_float64_agrees_with_mp(act: str) -> None:
    """float64 against the mp engine (60 digits) on a generic instance: agreement to ~1e-13 of the scale.

    The float64 Hessian is a sum of O((m + m*) d) terms of size O(scale), each with a few
    ulps of rounding, so 1e-13 relative leaves a margin of ~10x above the expected error.
    """
    rng = np.random.default_rng(7)
    m, ms, d = 5, 3, 4
    inst = _inst(act, [repr(float(x)) for x in rng.uniform(0.5, 1.5, ms)],
                 [[repr(float(x)) for x in r] for r in rng.normal(size=(ms, d))],
                 [repr(float(x)) for x in rng.normal(size=m)],
                 [[repr(float(x)) for x in r] for r in rng.normal(size=(m, d))])
    pf = Problem.from_instance(inst, Float64Engine())
    pm = Problem.from_instance(inst, MpEngine(60))
    for train in hs.TRAIN_CHOICES:
        Hf = hs.hessian(pf, train=train)
        Hm = hs.hessian(pm, train=train)
        assert Hf.dtype == float and Hf.shape == Hm.shape
        assert np.max(np.abs(Hf - Hm.astype(float))) <= 1e-13 * max(1.0, np.max(np.abs(Hf)))
        assert np.array_equal(Hf, Hf.T)


def test_train_blocks_are_submatrices() -> None:
    rng = np.random.default_rng(3)
    e = Float64Engine()
    a, W = rng.normal(size=4), rng.normal(size=(4, 3))
    As, Ws = np.array([1.0, -0.5]), np.eye(3)[:2]
    full = hs.loss_hessian(e, "relu", a, W, As, Ws, 0.1, "both")
    for train in ("first", "second"):
        idx = hs.parameter_indices(4, 3, train)
        assert np.allclose(hs.loss_hessian(e, "relu", a, W, As, Ws, 0.1, train), full[np.ix_(idx, idx)],
                           rtol=0, atol=1e-15)
    x = hs.flatten(a, W)
    assert np.array_equal(x[4 + 2 * 3 + 1], W[2, 1])  # w_j[k] at m + j d + k


def test_zero_neuron_refused_unless_second() -> None:
    e = Float64Engine()
    a, W = np.array([0.5, 0.2]), np.array([[1.0, 0.0], [0.0, 0.0]])
    As, Ws = np.array([1.0]), np.array([[0.0, 1.0]])
    for train in ("both", "first"):
        with pytest.raises(hs.NotTwiceDifferentiable):
            hs.loss_hessian(e, "relu", a, W, As, Ws, 0.0, train)
    H = hs.loss_hessian(e, "relu", a, W, As, Ws, 0.0, "second")
    assert H[1, 1] == 0 and H[0, 0] == 2 * 0.5  # 2 k(w, w) = 2 ||w||^2 kappa(0), kappa(0) = 1/2


def test_self_pair_exact() -> None:
    """One student and a teacher with a* = 0: L = a^2 ||w||^2 kappa(0), so d^2 L / dw^2 = 2 a^2 kappa(0) I."""
    e = Float64Engine()
    for act, k0 in (("relu", 0.5), ("abs", 1.0)):
        a, W = np.array([0.7]), np.array([[0.3, -0.4]])
        H = hs.loss_hessian(e, act, a, W, np.array([0.0]), np.array([[1.0, 0.0]]), 0.0, "first")
        assert np.allclose(H, 2 * a[0] ** 2 * k0 * np.eye(2), rtol=0, atol=1e-15)


# ----------------------------------------------------------------------- the derivations reject wrong formulas
def _uv_without_tangents(A, B, uhat, vhat, e_u, e_v):
    """The cross block without its e_u e_v^T term (a plausible slip)."""
    return A * np.eye(len(uhat), dtype=int) + B * np.outer(uhat, vhat)


def _uu_textbook_slip(nu, nv, uhat, B, e_u):
    """The u u block with 1/sin phi left in (B e e^T replaced by e e^T): unbounded at collinear pairs."""
    return (nv * B / nu) * (np.eye(len(uhat), dtype=int) - np.outer(uhat, uhat)) + np.outer(e_u, e_u)


def test_collinear_limit_rejects_unbounded_block() -> None:
    from derivations.hessian import collinear_limit

    assert collinear_limit("relu").verified
    assert not collinear_limit("relu", uu_fn=_uu_textbook_slip).verified


@pytest.mark.slow
def test_pair_blocks_reject_missing_tangent_term() -> None:
    from derivations.hessian import pair_blocks_closed_form

    assert not pair_blocks_closed_form("relu", uv_fn=_uv_without_tangents).verified


def test_assembly_rejects_wrong_hessian() -> None:
    from derivations.hessian import assembly

    def wrong(engine, g, activation, a, c, lam, train):
        H = hs.hessian_from(engine, g, activation, a, c, lam, train)
        H[0, 2] = H[2, 0] = 2 * H[0, 2]  # a cross term a_1 w_1 doubled
        return H

    assert not assembly("relu", hessian_fn=wrong).verified
