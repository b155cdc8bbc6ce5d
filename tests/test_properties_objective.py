"""Property tests of the exact population objective (checker/core/objective.py).

Every property is an identity or inequality of the mathematics (see
docs/formalization.md), checked at points drawn by tests/strategies.py.
Tolerances are stated against the scale of the terms that cancel:

    S = sum_j |a_j| ||w_j|| + sum_i |a*_i| ||w*_i||   (total mass of f_theta - f*),

so that |L| <= kappa(0) S^2 and every kernel term is at most kappa(0) S^2.  In the
mp engine at ``dps`` digits (plus 10 guard digits inside) a sum of a few hundred
such terms is off by ~1e-(dps+8) S^2; the tolerance 1e-dps S^2 leaves two orders
of magnitude of headroom while any real error in a formula is O(S^2).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import example, given, note, strategies as st

from checker.core import objective
from checker.core.engines import Float64Engine, MpEngine, make_engine
from checker.core.errors import CheckerError, InstanceError
from checker.core.kernel import kappa_at_one
from checker.core.model import Instance
from checker.core.problem import Problem
from tests import strategies as S
from tests.tolerance import assert_close, mass_scale, max_abs_diff

# ----------------------------------------------------------------------------- draws
#: Anywhere in parameter space: random students (norms in [0.2, 2]) and students near
#: the optimum (split, unbalanced, with small neurons, sometimes a zero-norm neuron).
ANY_POINT = st.one_of(
    S.instances(student="random", student_options=dict(max_m=4)),
    S.instances(student_options=dict(max_split=2, max_small=2, max_imbalance=3.0, zero_neuron=False)),
    S.instances(student_options=dict(max_split=2, max_small=1, max_imbalance=3.0, zero_neuron=True)),
)
#: Points where L is differentiable in every parameter (no zero-norm neuron).
SMOOTH_POINT = st.one_of(
    S.instances(student="random", student_options=dict(max_m=4)),
    S.instances(student_options=dict(max_split=2, max_small=1, max_imbalance=3.0)),
)
DPS = S.precisions(min_dps=30, max_dps=40)

#: The teacher direction Hypothesis shrinks to (rotation seed 0 in d = 2); its decimal strings have
#: unit norm only to ~1e-16.
W0 = ("0.1926463324140409", "0.9812682561906397")
#: Pinned: a student in the third quadrant with a zero output weight; it exposed kinks of the polar
#: quadrature reference that were left out (angles base + pi/2 below 0 were not wrapped to [0, 2 pi)).
PIN_POLAR = Instance.create(teacher_a=["1.0"], teacher_W=[W0], student_a=["0.0", "1.0"],
                            student_W=[["-0.12563356291236374", "0.9920767147100799"],
                                       ["-0.4968057696272089", "-0.867861755848889"]], lam="0.0497871")
#: Pinned: one unbalanced neuron near a single teacher; it exposed a comparison of 40-digit numbers
#: made outside the engine's precision context (rounded to 15 digits, the split looked worse).
PIN_SPLIT = Instance.create(teacher_a=["0.5"], teacher_W=[W0], student_a=["0.6709790607761169"],
                            student_W=[["0.12926165518513677", "0.6584104529082135"]], lam="0.0497871")


def mp_problem(inst: Instance, dps: int) -> Problem:
    return Problem.from_instance(inst, MpEngine(dps))


def grad_scale(p: Problem) -> Any:
    """Bound on the size of gradient entries: 2 S max(1, |a_j|, ||w_j||) (||grad_u k|| <= 2 ||v||)."""
    e = p.engine
    with e.context():
        big = max([1] + [abs(x) for x in p.a] + [abs(x) for x in np.ravel(p.W)])
        return 2 * kappa_at_one(p.activation) * 2 * mass_scale(p) * big


def tol(p: Problem, scale: Any) -> mpmath.mpf:
    """10^-dps times ``scale`` (mp engine): see the module docstring for why."""
    with mpmath.workdps(60):
        return mpmath.mpf(10) ** (-p.engine.dps) * (mpmath.mpf(scale) + 1)


def balance(a: np.ndarray, W: np.ndarray) -> np.ndarray:
    return a * a - (W * W).sum(axis=1)


# ----------------------------------------------------------------------------- identities
@given(inst=ANY_POINT, dps=DPS)
def test_euler_identity(inst, dps):
    """1-homogeneity of sigma: a_j dL/da_j = <w_j, grad_{w_j} L> for the unregularized L.

    Reference: exact identity (docs/formalization.md, balance law).  Tolerance 1e-dps S^2 (module docstring).
    """
    p = mp_problem(inst, dps)
    ev = p.evaluate()
    with p.engine.context():
        lhs = p.a * ev.loss_grad_a
        rhs = (p.W * ev.loss_grad_W).sum(axis=1)
        scale = mass_scale(p) ** 2 * (1 + max(abs(x) for x in p.a))
    assert_close(lhs, rhs, abs_=tol(p, scale), what="a_j dL/da_j vs <w_j, dL/dw_j>")


@given(inst=ANY_POINT, dps=DPS)
def test_balance_law_of_the_gradient(inst, dps):
    """Gradient flow on L_lambda: d b_j/dt = -2 (a_j dL_l/da_j - <w_j, dL_l/dw_j>) = -2 lambda b_j.

    Reference: exact identity (Euler plus the derivative of the regularizer).
    Tolerance 1e-dps S^2 (module docstring; lambda b_j is far smaller than S^2 terms).
    """
    p = mp_problem(inst, dps)
    ev = p.evaluate()
    with p.engine.context():
        db_dt = -2 * (p.a * ev.grad_a - (p.W * ev.grad_W).sum(axis=1))
        expected = -2 * p.lam * balance(p.a, p.W)
        scale = mass_scale(p) ** 2 * (1 + max(abs(x) for x in p.a))
    assert_close(db_dt, expected, abs_=tol(p, scale), what="db_j/dt vs -2 lambda b_j")


@given(inst=ANY_POINT, dps=DPS, eta=S.step_sizes(min_value=1e-3, max_value=0.5))
def test_one_step_balance_identity(inst, dps, eta):
    """One GD step: b_j' = (1 - eta lambda)^2 b_j + eta^2 (g_a^2 - ||g_w||^2), g = grad of L.

    Reference: b_j' recomputed from the stepped parameters (a plain square), against
    the closed form above (exact given Euler's identity).  Tolerance 1e-dps S^2 (1 + eta)^2 B,
    B = 1 + max |grad entry|^2 / S^2, covering the size of every term.
    """
    p = mp_problem(inst, dps)
    ev = p.evaluate()
    e = p.engine
    with e.context():
        eta_e = e.scalar(eta)
        a2 = p.a - eta_e * ev.grad_a
        W2 = p.W - eta_e * ev.grad_W
        b2 = balance(a2, W2)
        one = 1 - eta_e * p.lam
        predicted = one * one * balance(p.a, p.W) + eta_e**2 * (
            ev.loss_grad_a**2 - (ev.loss_grad_W**2).sum(axis=1))
        g = grad_scale(p)
        scale = (mass_scale(p) ** 2 + g * g + 1) * (1 + eta_e) ** 2
    assert_close(b2, predicted, abs_=tol(p, scale), what="b_j after one step")


@given(inst=ANY_POINT, dps=DPS)
def test_am_gm_and_rebalancing(inst, dps):
    """AM-GM: L_lambda - L - lambda sum_j mu_j = (lambda/2) sum_j (|a_j| - ||w_j||)^2 >= 0, and the
    balanced rescaling (a_j, w_j) -> (sign(a_j) sqrt(mu_j), sqrt(mu_j) u_j) keeps f_theta, hence L,
    and reaches L_lambda = L + lambda sum_j mu_j.

    Reference: exact algebra ((a^2 + w^2)/2 - |a| w = (|a| - w)^2 / 2) and 1-homogeneity of sigma.
    Tolerance 1e-dps S^2 (module docstring).
    """
    p = mp_problem(inst, dps)
    e = p.engine
    ev = p.evaluate(with_gradient=False)
    with e.context():
        nw = e.sqrt((p.W * p.W).sum(axis=1))
        mu = np.abs(p.a) * nw
        gap = ev.reg_loss - ev.loss - p.lam * mu.sum()
        squares = p.lam / 2 * sum((abs(x) - y) ** 2 for x, y in zip(p.a, nw))
        root = e.sqrt(mu)
        safe = np.where(nw > 0, nw, 1)
        a_bal = np.array([root[j] if p.a[j] >= 0 else -root[j] for j in range(len(root))], dtype=object)
        W_bal = p.W / safe[:, None] * root[:, None]
        ev_bal = p.evaluate(a_bal, W_bal, with_gradient=False)
        scale = mass_scale(p) ** 2
    t = tol(p, scale)
    assert gap >= -t
    assert_close(gap, squares, abs_=t, what="L_lambda - L - lambda sum mu")
    assert_close(ev_bal.loss, ev.loss, abs_=t, what="L after rebalancing")
    with e.context():
        assert_close(ev_bal.reg_loss, ev.loss + p.lam * mu.sum(), abs_=t, what="L_lambda balanced")


@given(inst=ANY_POINT, dps=DPS, c=st.floats(0.1, 10.0))
def test_rescaling_invariance(inst, dps, c):
    """(a_j, w_j) -> (a_j c, w_j / c), c > 0, leaves f_theta and hence L unchanged (1-homogeneity).

    Reference: exact identity.  Tolerance 1e-dps S^2 (module docstring).
    """
    p = mp_problem(inst, dps)
    e = p.engine
    with e.context():
        cc = e.scalar(c)
        ev = p.evaluate(with_gradient=False)
        ev2 = p.evaluate(p.a * cc, p.W / cc, with_gradient=False)
        scale = mass_scale(p) ** 2
    assert_close(ev2.loss, ev.loss, abs_=tol(p, scale), what="L after rescaling")


# ----------------------------------------------------------------------------- gradients
@given(inst=SMOOTH_POINT, dps=DPS, seed=st.integers(0, 2**32 - 1))
def test_gradient_matches_central_differences(inst, dps, seed):
    """<grad L_lambda, delta> against (L_lambda(theta + h delta) - L_lambda(theta - h delta)) / (2h).

    Reference: the objective alone (no gradient formula), in the mp engine, along three unit
    directions (all parameters, a only, W only).  L is C^2 with bounded third derivative away from
    w_j = 0 (the kernel's expansion at phi = 0 and pi starts with |phi|^3), so the truncation error
    is <= h^2 C / 6 with C ~ S^2 / min ||w_j||^2, and rounding adds 1e-(dps+10) S^2 / h; with
    h = 1e-(dps+10)/3 both are ~1e-20 S^2 / min||w||^2 or less at dps >= 30.  Tolerance
    1e-(dps/2) G (G the gradient scale): many digits above both, far below any formula error.
    """
    p = mp_problem(inst, dps)
    e = p.engine
    rng = np.random.default_rng(seed)
    ev = p.evaluate()
    m, d = p.W.shape
    directions = []
    for mask_a, mask_W in ((1.0, 1.0), (1.0, 0.0), (0.0, 1.0)):
        da = rng.standard_normal(m) * mask_a
        dW = rng.standard_normal((m, d)) * mask_W
        n = math.sqrt(float((da**2).sum() + (dW**2).sum()))
        directions.append((da / n, dW / n))
    with e.context():
        h = mpmath.mpf(10) ** (-(e.work_dps) / 3)
        min_norm = min(e.sqrt((p.W * p.W).sum(axis=1)))
        assert h < min_norm / 100  # the difference stencil stays away from w_j = 0
        G = grad_scale(p)
        for da_f, dW_f in directions:
            da, dW = e.array(da_f), e.array(dW_f)
            plus = p.evaluate(p.a + h * da, p.W + h * dW, with_gradient=False).reg_loss
            minus = p.evaluate(p.a - h * da, p.W - h * dW, with_gradient=False).reg_loss
            fd = (plus - minus) / (2 * h)
            analytic = (ev.grad_a * da).sum() + (ev.grad_W * dW).sum()
            assert_close(analytic, fd, abs_=mpmath.mpf(10) ** (-dps / 2) * (G + 1),
                         what="directional derivative")


def _polar_loss(inst: Instance, dps: int) -> mpmath.mpf:
    """L by quadrature in d = 2: (f - f*)^2 is 2-homogeneous and E||x||^2 = 2 for x ~ N(0, I_2), so
    L = (1/pi) int_0^{2 pi} (f - f*)(cos t, sin t)^2 dt, integrated piecewise between the kinks
    (the angles where some neuron has <w, x> = 0) where the integrand is a trigonometric polynomial."""
    sig = (lambda z: max(z, 0)) if inst.activation == "relu" else abs
    with mpmath.workdps(dps):
        neurons = [(mpmath.mpf(c), [mpmath.mpf(x) for x in w])
                   for c, w in zip(inst.student_a, inst.student_W)]
        neurons += [(-mpmath.mpf(c), [mpmath.mpf(x) for x in w])
                    for c, w in zip(inst.teacher_a, inst.teacher_W)]
        two_pi = 2 * mpmath.pi
        kinks = {mpmath.mpf(0), two_pi}
        for _, (x, y) in neurons:
            if x != 0 or y != 0:
                base = mpmath.atan2(y, x)
                for shift in (mpmath.pi / 2, -mpmath.pi / 2):
                    kinks.add(mpmath.fmod(base + shift + two_pi, two_pi))
        pts = sorted(kinks)

        def integrand(t):
            c, s = mpmath.cos(t), mpmath.sin(t)
            r = mpmath.fsum(a * sig(w[0] * c + w[1] * s) for a, w in neurons)
            return r * r

        return mpmath.quad(integrand, pts) / mpmath.pi


@example(inst=PIN_POLAR)
@given(inst=S.instances(teacher=S.teachers(min_d=2, max_d=2), student="random",
                        student_options=dict(max_m=3)))
def test_loss_against_polar_quadrature(inst):
    """L from the closed-form kernels against direct integration over the circle (d = 2).

    Reference: mpmath.quad of the network itself (no kernel formula) at 30 digits on pieces where
    the integrand is smooth (tanh-sinh converges to ~1e-30 there).  Tolerance 1e-20 S^2, far below
    any formula error and far above the quadrature's.
    """
    p = mp_problem(inst, 30)
    ev = p.evaluate(with_gradient=False)
    ref = _polar_loss(inst, 30)
    with p.engine.context():
        scale = mass_scale(p) ** 2
    assert_close(ev.loss, ref, abs_=mpmath.mpf("1e-20") * (scale + 1), what="L vs quadrature")


# ----------------------------------------------------------------------------- invariances
def _mp_rotation(e: MpEngine, d: int, angles: list[float]) -> np.ndarray:
    """A product of Givens rotations built at the engine's precision (orthogonal to 1e-work_dps)."""
    Q = np.empty((d, d), dtype=object)
    for i in range(d):
        for j in range(d):
            Q[i, j] = mpmath.mpf(1 if i == j else 0)
    k = 0
    for i in range(d):
        for j in range(i + 1, d):
            c, s = mpmath.cos(angles[k]), mpmath.sin(angles[k])
            G = np.empty((d, d), dtype=object)
            for r in range(d):
                for q in range(d):
                    G[r, q] = mpmath.mpf(1 if r == q else 0)
            G[i, i], G[j, j], G[i, j], G[j, i] = c, c, -s, s
            Q = G.dot(Q)
            k += 1
    return Q


@given(inst=ANY_POINT, data=st.data())
def test_common_rotation_invariance(inst, data):
    """A common rotation R of teacher and student: L(R) = L, grad_W L(R) = grad_W L R^T (rows rotate).

    Reference: exact invariance of N(0, I_d).  R is a product of Givens rotations computed at the
    engine's precision; tolerance 1e-dps S^2 for L and 1e-dps G for gradients (module docstring).
    """
    d = inst.d
    angles = data.draw(st.lists(st.floats(-math.pi, math.pi), min_size=d * (d - 1) // 2,
                                max_size=d * (d - 1) // 2))
    p = mp_problem(inst, 30)
    e = p.engine
    with e.context():
        R = _mp_rotation(e, d, angles)
        ev = p.evaluate()
        ev_r = objective.evaluate(e, p.activation, p.a, p.W.dot(R.T), p.a_star, p.W_star.dot(R.T), p.lam)
        rotated_grad = ev.grad_W.dot(R.T)
        s2, g = mass_scale(p) ** 2, grad_scale(p)
    assert_close(ev_r.reg_loss, ev.reg_loss, abs_=tol(p, s2), what="L_lambda rotated")
    assert_close(ev_r.grad_a, ev.grad_a, abs_=tol(p, g), what="grad_a rotated")
    assert_close(ev_r.grad_W, rotated_grad, abs_=tol(p, g), what="grad_W rotated")


@given(inst=ANY_POINT, data=st.data())
def test_permutation_invariance(inst, data):
    """Permuting student neurons permutes the gradient and keeps L; permuting teacher neurons keeps
    everything.  Reference: exact symmetry of the sums.  Tolerance 1e-dps S^2 / 1e-dps G."""
    ps = data.draw(st.permutations(range(inst.m)))
    pt = data.draw(st.permutations(range(inst.m_star)))
    p = mp_problem(inst, 30)
    e = p.engine
    with e.context():
        ev = p.evaluate()
        ev_p = objective.evaluate(e, p.activation, p.a[ps], p.W[ps], p.a_star[pt], p.W_star[pt], p.lam)
        s2, g = mass_scale(p) ** 2, grad_scale(p)
    assert_close(ev_p.reg_loss, ev.reg_loss, abs_=tol(p, s2), what="L_lambda permuted")
    assert_close(ev_p.grad_a, ev.grad_a[ps], abs_=tol(p, g), what="grad_a permuted")
    assert_close(ev_p.grad_W, ev.grad_W[ps], abs_=tol(p, g), what="grad_W permuted")


@example(inst=PIN_SPLIT, pick=0, t=0.5, flip=False)
@given(inst=ANY_POINT, pick=st.integers(0, 10**6), t=st.floats(0.01, 0.99), flip=st.booleans())
def test_split_neuron_into_collinear_balanced_pair(inst, pick, t, flip):
    """Replace neuron j (mass mu) by two balanced neurons on the same ray with masses t mu and
    (1 - t) mu (for abs, the second may sit on the opposite ray of the same line): f_theta is
    unchanged, so L is; L_lambda drops by exactly (lambda / 2)(|a_j| - ||w_j||)^2 >= 0.

    Reference: 1-homogeneity and the AM-GM identity.  Tolerance 1e-dps S^2 (module docstring).
    """
    p = mp_problem(inst, 30)
    e = p.engine
    with e.context():
        norms = e.sqrt((p.W * p.W).sum(axis=1))
    nonzero = [j for j in range(inst.m) if norms[j] > 0]
    j = nonzero[pick % len(nonzero)]
    flip = flip and inst.activation == "abs"
    with e.context():
        mu = abs(p.a[j]) * norms[j]
        u = p.W[j] / norms[j]
        sgn = 1 if p.a[j] >= 0 else -1
        r1, r2 = e.sqrt(e.scalar(t) * mu), e.sqrt((1 - e.scalar(t)) * mu)
        a_new = np.concatenate([np.delete(p.a, j), np.array([sgn * r1, sgn * r2], dtype=object)])
        W_new = np.concatenate([np.delete(p.W, j, axis=0), np.array([r1 * u, (-1 if flip else 1) * r2 * u])])
        ev = p.evaluate(with_gradient=False)
        ev_s = p.evaluate(a_new, W_new, with_gradient=False)
        drop = p.lam / 2 * (abs(p.a[j]) - norms[j]) ** 2
        s2 = mass_scale(p) ** 2
    assert_close(ev_s.loss, ev.loss, abs_=tol(p, s2), what="L after split")
    with e.context():  # compare at the engine's precision, not mpmath's global 15 digits
        assert ev_s.reg_loss <= ev.reg_loss + tol(p, s2)
        assert_close(ev.reg_loss - ev_s.reg_loss, drop, abs_=tol(p, s2), what="decrease of L_lambda")


@given(inst=ANY_POINT, dps=DPS, a0=st.floats(-2.0, 2.0))
def test_zero_neuron_contributes_nothing(inst, dps, a0):
    """Appending a neuron with w = 0 changes neither L nor the other gradients; its own gradients
    are 0 (sigma(0) = 0 and the convention sigma'(0) = 0).  Reference: k(0, v) = 0 exactly.
    Tolerance 1e-dps S^2 / 1e-dps G (module docstring)."""
    p = mp_problem(inst, dps)
    e = p.engine
    with e.context():
        a2 = np.concatenate([p.a, np.array([e.scalar(a0)], dtype=object)])
        W2 = np.concatenate([p.W, e.zeros((1, inst.d))])
        ev = p.evaluate()
        ev2 = p.evaluate(a2, W2)
        s2, g = mass_scale(p) ** 2, grad_scale(p)
    assert_close(ev2.loss, ev.loss, abs_=tol(p, s2), what="L with a zero neuron")
    assert_close(ev2.loss_grad_a[:-1], ev.loss_grad_a, abs_=tol(p, g), what="grad_a")
    assert_close(ev2.loss_grad_W[:-1], ev.loss_grad_W, abs_=tol(p, g), what="grad_W")
    assert ev2.loss_grad_a[-1] == 0 and all(x == 0 for x in ev2.loss_grad_W[-1])


@given(inst=S.instances(teacher=S.teachers(activation="abs", max_m_star=3), student="random",
                        student_options=dict(max_m=4)), dps=DPS)
def test_relu_is_abs_plus_linear(inst, dps):
    """relu(z) = (z + |z|)/2, and E[<u,x> |<v,x>|] = 0 (odd in x), so for every theta

        L_relu(theta) = (L_abs(theta) + ||beta||^2) / 4,   beta = sum_j a_j w_j - sum_i a*_i w*_i,

    and the gradients obey the same relation: grad_a = (grad_a^abs + 2 W beta)/4,
    grad_{w_j} = (grad_{w_j}^abs + 2 a_j beta)/4.  (Kernel form: k_relu(u,v) = (<u,v> + k_abs(u,v))/4.)
    The teacher is line-separated, hence valid for both activations.

    Reference: that derivation (two independent closed forms on each side).
    Tolerance 1e-dps S^2 / 1e-dps G (module docstring).
    """
    p_abs = mp_problem(inst, dps)
    p_relu = mp_problem(inst.replace(activation="relu"), dps)
    e = p_abs.engine
    ev_a, ev_r = p_abs.evaluate(), p_relu.evaluate()
    with e.context():
        beta = p_abs.W.T.dot(p_abs.a) - p_abs.W_star.T.dot(p_abs.a_star)
        lin = (beta * beta).sum()
        s2, g = mass_scale(p_abs) ** 2, grad_scale(p_abs)
        exp_loss = (ev_a.loss + lin) / 4
        exp_ga = (ev_a.loss_grad_a + 2 * p_abs.W.dot(beta)) / 4
        exp_gW = (ev_a.loss_grad_W + 2 * p_abs.a[:, None] * beta[None, :]) / 4
    assert_close(ev_r.loss, exp_loss, abs_=tol(p_abs, s2), what="L_relu vs (L_abs + ||beta||^2)/4")
    assert_close(ev_r.loss_grad_a, exp_ga, abs_=tol(p_abs, g), what="grad_a relation")
    assert_close(ev_r.loss_grad_W, exp_gW, abs_=tol(p_abs, g), what="grad_W relation")


# ----------------------------------------------------------------------------- optimum
# Pinned: the first teacher tried; it exposed that unit-norm-to-1e-16 teacher strings shift the
# optimum by ~1e-17 (the test now normalizes the teacher at the engine's precision), and that
# sign * root computed outside the precision context is rounded to 15 digits.
@example(t=S.Teacher("relu", ("1.0",), (W0,), "cone", 0.3), lam="0.135335", dps=30)
@given(t=S.teachers(max_m_star=1), lam=S.lambdas(min_value=1e-3, max_value=0.2), dps=DPS)
def test_single_teacher_optimum(t, lam, dps):
    """At the balanced student carrying the exact single-teacher optimum (``strategies.single_teacher_optimum``),
    L_lambda equals L*_lambda and the gradient of L_lambda vanishes.

    Reference: the closed-form optimum (docs/formalization.md, relu; the same minimization for abs).
    Tolerance 1e-dps S^2 / 1e-dps G (module docstring).
    """
    inst, opt = S.single_teacher_optimum(t.a[0], t.W[0], t.activation, lam, dps)
    p = mp_problem(inst, dps)
    ev = p.evaluate()
    with p.engine.context():
        s2, g = mass_scale(p) ** 2, grad_scale(p)
    assert_close(ev.reg_loss, opt, abs_=tol(p, s2), what="L_lambda at the optimum")
    assert_close(ev.grad_a, [0], abs_=tol(p, g), what="grad_a at the optimum")
    assert_close(ev.grad_W, np.zeros((1, t.d)), abs_=tol(p, g), what="grad_W at the optimum")


@given(inst=st.one_of(
    S.instances(teacher=S.teachers(max_m_star=1), lam=S.lambdas(min_value=1e-3, max_value=0.2),
                student_options=dict(max_angle=0.3, max_mass_error=0.3, max_split=3, max_imbalance=2.0,
                                     zero_neuron=True)),
    S.instances(teacher=S.teachers(max_m_star=1), lam=S.lambdas(min_value=1e-3, max_value=0.2),
                student="random", student_options=dict(max_m=3))), dps=DPS)
def test_single_teacher_optimum_is_a_lower_bound(inst, dps):
    """Every student (near the optimum, split, unbalanced, or random) has L_lambda >= L*_lambda of its
    single teacher.  Reference: global optimality of the closed form, certified by the dual point
    p = lam sign(a*) sigma(<w*, x>) / kappa(0) (|E[p sigma(<w,x>)]| <= lam since kappa <= kappa(0)).
    Tolerance 1e-dps S^2 (module docstring).
    """
    _, opt = S.single_teacher_optimum(inst.teacher_a[0], inst.teacher_W[0], inst.activation, inst.lam, dps)
    q = mp_problem(inst.replace(normalize_teacher=True), dps)
    with q.engine.context():
        assert q.evaluate(with_gradient=False).reg_loss >= opt - tol(q, mass_scale(q) ** 2)


# ----------------------------------------------------------------------------- engines
@given(inst=ANY_POINT)
def test_float64_agrees_with_mp(inst):
    """float64 and mp (50 digits) evaluations of the same instance.

    Reference: the mp engine, whose error is ~1e-58 S^2.  Float64 computes L as a sum of
    O((m + m*)^2) kernel terms of size up to kappa(0) S^2 with relative error a few ulps each,
    so its error is ~1e-14 S^2 (scale-relative: near the optimum L itself is far smaller than S^2
    and float64 cannot resolve it better).  Tolerance 1e-12 S^2 for L and L_lambda, 1e-12 G for
    gradients: a hundred times the expected error, far below any formula difference.
    """
    f = Problem.from_instance(inst, Float64Engine())
    p = mp_problem(inst, 50)
    ev_f, ev_p = f.evaluate(), p.evaluate()
    with p.engine.context():
        s2, g = mass_scale(p) ** 2, grad_scale(p)
        t_l, t_g = mpmath.mpf("1e-12") * (s2 + 1), mpmath.mpf("1e-12") * (g + 1)
    note(f"max |dL| = {max_abs_diff(ev_f.reg_loss, ev_p.reg_loss)}")
    assert_close(ev_f.loss, ev_p.loss, abs_=t_l, what="L float64 vs mp")
    assert_close(ev_f.reg_loss, ev_p.reg_loss, abs_=t_l, what="L_lambda float64 vs mp")
    assert_close(ev_f.grad_a, ev_p.grad_a, abs_=t_g, what="grad_a float64 vs mp")
    assert_close(ev_f.grad_W, ev_p.grad_W, abs_=t_g, what="grad_W float64 vs mp")


# ----------------------------------------------------------------------------- bad input
BASE = {
    "activation": "relu",
    "teacher": {"a": ["1.0", "-0.7"], "W": [["1", "0", "0"], ["0", "1", "0"]]},
    "student": {"a": ["0.9", "0.1"], "W": [["0.9", "0.1", "0"], ["0", "0.2", "0.3"]]},
    "lambda": "0.01",
    "eta": "0.05",
}
NUMBER_SLOTS = [("teacher", "a", 0), ("teacher", "a", 1), ("student", "a", 1), ("teacher", "W", 0),
                ("student", "W", 1), ("lambda",), ("eta",)]
NOT_FINITE = ["NaN", "nan", "Infinity", "-Infinity", "inf", float("nan"), float("inf"), "1e", "0x10", "",
              "1,5", True, None, [], {}]


def _copy() -> dict:
    return json.loads(json.dumps(BASE))


def _set_number(d: dict, slot: tuple, value: Any) -> None:
    if len(slot) == 1:
        d[slot[0]] = value
    elif slot[1] == "a":
        d[slot[0]]["a"][slot[2]] = value
    else:
        d[slot[0]]["W"][slot[2]][1] = value


@st.composite
def corrupted(draw) -> tuple[str, dict]:
    """A corrupted copy of BASE: (what was broken, the dict)."""
    d = _copy()
    kind = draw(st.sampled_from([
        "not-finite", "row-length", "student-row-length", "count-mismatch", "empty", "zero-teacher",
        "duplicate-teacher", "abs-opposite-teacher", "negative-lambda", "bad-eta", "unknown-key",
        "missing-key", "d-one", "non-unit-teacher", "not-an-object", "bad-activation"]))
    if kind == "not-finite":
        _set_number(d, draw(st.sampled_from(NUMBER_SLOTS)), draw(st.sampled_from(NOT_FINITE)))
    elif kind == "row-length":
        d["teacher"]["W"][draw(st.integers(0, 1))].append("0")
    elif kind == "student-row-length":
        for row in d["student"]["W"]:
            row.append("0.5")
    elif kind == "count-mismatch":
        part = draw(st.sampled_from(["teacher", "student"]))
        d[part]["a"].append("0.3")
    elif kind == "empty":
        part, key = draw(st.sampled_from([("teacher", "a"), ("student", "W"), ("student", "a")]))
        d[part][key] = []
    elif kind == "zero-teacher":
        d["teacher"]["W"][draw(st.integers(0, 1))] = ["0", "0", "0"]
    elif kind == "duplicate-teacher":
        d["teacher"]["W"][1] = list(d["teacher"]["W"][0])
    elif kind == "abs-opposite-teacher":
        d["activation"] = "abs"
        d["teacher"]["W"][1] = ["-1", "0", "-0"]
    elif kind == "negative-lambda":
        d["lambda"] = draw(st.sampled_from(["-0.01", "-1e-9", -0.5]))
    elif kind == "bad-eta":
        d["eta"] = draw(st.sampled_from(["0", "-0.05", 0, -1]))
    elif kind == "unknown-key":
        d[draw(st.sampled_from(["lamda", "step", "Teacher"]))] = "1"
    elif kind == "missing-key":
        del d[draw(st.sampled_from(["teacher", "student", "lambda"]))]
    elif kind == "d-one":
        d["teacher"]["W"] = [["1"], ["-1"]]
        d["student"]["W"] = [["1"], ["1"]]
    elif kind == "non-unit-teacher":
        d["teacher"]["W"][0] = ["1.001", "0", "0"]
    elif kind == "not-an-object":
        part = draw(st.sampled_from(["teacher", "student"]))
        d[part] = draw(st.sampled_from([[1, 2], "teacher", 3]))
    else:
        d["activation"] = draw(st.sampled_from(["tanh", "ReLU", ""]))
    return kind, d


def _one_line(exc: Exception) -> None:
    msg = str(exc)
    assert msg and "\n" not in msg and "Traceback" not in msg


@example(case=("abs-opposite-teacher", {**_copy(), "activation": "abs",
                                        "teacher": {"a": ["1", "1"], "W": [["1", "0", "0"], ["-1", "0", "0"]]}}))
@given(case=corrupted())
def test_corrupted_instances_give_one_line_errors(case):
    """Every bad-input case of product.md gives InstanceError (exit 2 in the CLI), never a number
    or another exception.  Reference: the documented contract; no tolerance."""
    kind, d = case
    note(kind)
    with pytest.raises(InstanceError) as info:
        Instance.from_dict(d)
    _one_line(info.value)
    with pytest.raises(InstanceError) as info:
        Instance.from_json(json.dumps(d, allow_nan=True))
    _one_line(info.value)


@given(text=st.sampled_from([
    "", "{", "[1, 2]", "null", '{"teacher": ', json.dumps(BASE)[:-1], json.dumps(BASE).replace('"0.01"', "NaN"),
    json.dumps(BASE).replace('"0.01"', "Infinity"), json.dumps(BASE).replace('"0.01"', "-Infinity"),
    "\ufeff" + json.dumps(BASE)[1:]]))
def test_unreadable_json_gives_one_line_error(text):
    """Unreadable or non-object JSON text: InstanceError with one line.  Reference: the contract."""
    with pytest.raises(InstanceError) as info:
        Instance.from_json(text)
    _one_line(info.value)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"{\"teacher\": ", None])
def test_cli_bad_files_exit_2_with_one_line(content, capsys):
    """The evaluate CLI on a non-UTF-8 file, truncated JSON and a directory: exit 2, one line on
    stderr, nothing on stdout.  Reference: product.md exit codes."""
    from checker.commands.evaluate import main

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "instance.json")
        if content is None:
            os.mkdir(path)
        else:
            with open(path, "wb") as fh:
                fh.write(content)
        code = main([path])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err


@given(case=corrupted())
def test_cli_corrupted_instance_exit_2(case):
    """Same corruptions through the evaluate CLI: exit 2, one stderr line, no result printed."""
    import contextlib
    import io

    from checker.commands.evaluate import main

    _, d = case
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "instance.json")
        with open(path, "w") as fh:
            json.dump(d, fh, allow_nan=True)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([path])
    assert code == 2
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1


@pytest.mark.parametrize("value", ["1e400", "-2e308"])
def test_float64_overflow_is_a_clear_error(value):
    """A finite decimal beyond float64's range is accepted by the model (mp reads it) but the
    float64 engine refuses it with a CheckerError, never an inf.  Reference: the contract."""
    inst = Instance.from_dict({**_copy(), "lambda": value.lstrip("-")} if value[0] != "-" else
                              {**_copy(), "student": {"a": [value, "0.1"], "W": BASE["student"]["W"]}})
    with pytest.raises(CheckerError) as info:
        Problem.from_instance(inst, Float64Engine())
    _one_line(info.value)
    Problem.from_instance(inst, MpEngine(30)).evaluate(with_gradient=False)  # mp is fine with it


@pytest.mark.parametrize("dps", [0, 4, -3, 10_001, 2.5, "30", True])
def test_precision_too_low_or_invalid(dps):
    """A precision the mp engine cannot honour is refused with a one-line CheckerError."""
    with pytest.raises(CheckerError) as info:
        make_engine("mp", dps)
    _one_line(info.value)


def test_unknown_engine_and_preset():
    """Unknown engine or preset names: one-line CheckerError listing what exists."""
    with pytest.raises(CheckerError) as info:
        make_engine("float32")
    _one_line(info.value)
    from checker.commands.presets import load_preset

    with pytest.raises(CheckerError) as info:
        load_preset("no-such-preset")
    _one_line(info.value)


@given(engine=st.sampled_from(["float64", "mp"]), dps=st.integers(10, 40), shortfall=st.floats(0.5, 20.0))
def test_gap_target_beyond_the_precision_is_refused(engine, dps, shortfall):
    """A gap target below what the engine can resolve (~100 ulps of the objective) is refused by
    ``python -m checker.theorem1`` before any work: exit 2, one line on stderr, nothing on stdout.
    Reference: product.md ("a precision too low for the requested tolerance: a clear error")."""
    import contextlib
    import io

    from checker.commands.theorem1 import main

    eps = 2.0**-52 if engine == "float64" else 10.0**-dps
    gap_target = 100 * eps * 10.0**-shortfall
    argv = ["--engine", engine, "--gap-target", repr(gap_target), "--no-progress"]
    if engine == "mp":
        argv += ["--dps", str(dps)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 2
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1 and "gap-target" in err.getvalue()
