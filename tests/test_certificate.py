"""Tests of checker/geometry/certificate.py and derivations/certificate.py: the dual certificate.

Layered references: the SymPy derivations (exact identities); finite differences
of the proven gradient grad_u k (for H); exact 2-D polar quadrature and seeded
Monte Carlo of the defining expectations E[p* sigma], E[p* sigma' x], E[p*^2],
E[sigma' sigma' x x^T], computed from samples of x and never from the kernel;
closed forms of the single-teacher certificate and of its optimum L*_lambda.
"""

from __future__ import annotations

import dataclasses
import json
import math

import mpmath
import numpy as np
import pytest
from hypothesis import example, given, note, target
from hypothesis import strategies as st

from checker.geometry import certificate as cc
from checker.core import objective
from checker.core.engines import Float64Engine
from checker.core.errors import CheckerError
from derivations import certificate as dc
from tests import reference
from tests.strategies import Teacher, near_students, random_students, teachers
from tests.tolerance import assert_close

ACTS = ("relu", "abs")
EPS = float(np.finfo(float).eps)
F64 = Float64Engine()
KAPPA0 = {"relu": 0.5, "abs": 1.0}  # E[sigma(z)^2], z ~ N(0, 1)


# --------------------------------------------------------------- references
def sigma(z: np.ndarray, activation: str) -> np.ndarray:
    return np.maximum(z, 0.0) if activation == "relu" else np.abs(z)


def dsigma(z: np.ndarray, activation: str) -> np.ndarray:
    return (z > 0).astype(float) if activation == "relu" else np.sign(z)


def p_star(cert: cc.Certificate, W_star: np.ndarray, X: np.ndarray) -> np.ndarray:
    """p*(x) = sum_i alpha_i sigma(<w*_i,x>) + sum_i <beta_i,x> sigma'(<w*_i,x>), straight from samples."""
    Z = X @ W_star.T
    B = X @ np.asarray(cert.beta).T
    return (sigma(Z, cert.activation) @ np.asarray(cert.alpha)
            + (B * dsigma(Z, cert.activation)).sum(axis=1))


def polar_mean(f, directions: list[np.ndarray]) -> np.ndarray:
    """E[f(x)], x ~ N(0, I_2), for f 2-homogeneous: (1/pi) int_0^{2pi} f(cos psi, sin psi) dpsi.

    (E[rho^2] = 2 and the angle is uniform.)  The circle is cut where <w, x> = 0 for
    every given w, so each piece is a trigonometric polynomial: 40-node Gauss-Legendre
    is exact to rounding on it.
    """
    cuts = {0.0, 2 * math.pi}
    for w in directions:
        base = math.atan2(w[1], w[0])
        cuts |= {(base + s * math.pi / 2) % (2 * math.pi) for s in (1, -1)}
    cuts = sorted(cuts)
    nodes, weights = np.polynomial.legendre.leggauss(40)
    total = 0.0
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        if hi - lo < 1e-15:
            continue
        psi = (hi - lo) / 2 * nodes + (hi + lo) / 2
        X = np.stack([np.cos(psi), np.sin(psi)], axis=1)
        vals = f(X)
        total = total + (hi - lo) / 2 * np.tensordot(weights, vals, axes=(0, 0))
    return total / math.pi


def mc_mean(f, d: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded Monte Carlo mean of f(x), x ~ N(0, I_d), and its standard error."""
    X = np.random.default_rng(seed).standard_normal((n, d))
    vals = f(X)
    return vals.mean(axis=0), vals.std(axis=0) / math.sqrt(n)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def build(activation: str, a, W, **kw) -> cc.Certificate:
    kw.setdefault("rigorous", False)
    kw.setdefault("samples", 2000)
    return cc.build_certificate(activation, a, W, **kw)


# --------------------------------------------------------------- derivations
@pytest.mark.parametrize("derivation", dc.DERIVATIONS, ids=lambda f: f.__name__)
def test_derivation_verified(derivation) -> None:
    res = derivation()
    assert res.verified, res.detail
    assert res.family == "certificate"


def test_derivation_rejects_a_wrong_mixed_hessian() -> None:
    # A1 doubled: the exact Gaussian integral must then disagree.
    def wrong(phi, sin_phi, pi, activation):
        A, A1 = cc.mixed_coefficients(phi, sin_phi, pi, activation)
        return A, 2 * A1

    assert not dc.mixed_hessian_gaussian_integral("relu", mixed_fn=wrong).verified
    assert not dc.mixed_hessian_limits("abs", mixed_fn=lambda p, s, pi, a: (1, 0)).verified


# --------------------------------------------------------------- H
@given(act=st.sampled_from(ACTS), d=st.integers(2, 5), seed=st.integers(0, 2**32 - 1),
       angle=st.floats(0.1, math.pi - 0.1), scale_u=st.floats(0.3, 3.0), scale_v=st.floats(0.3, 3.0))
def test_mixed_hessian_matches_finite_differences_of_grad_k(act, d, seed, angle, scale_u, scale_v) -> None:
    rng = np.random.default_rng(seed)
    uh = unit(rng.standard_normal(d))
    e = rng.standard_normal(d)
    e = unit(e - (e @ uh) * uh)
    u, v = uh * scale_u, (math.cos(angle) * uh + math.sin(angle) * e) * scale_v
    H = cc.mixed_hessian(u[None], v[None], act)[0, 0]
    # Reference: central differences in v of grad_u k (objective.grad_gram, proven in
    # derivations/gradients.py).  h = 1e-5: truncation h^2 |d^3 k| / 6 <~ 1e-8 for
    # angles in [0.1, pi - 0.1] and norms >= 0.3; rounding eps / h ~ 2e-11.
    h = 1e-5
    fd = np.zeros((d, d))
    for b in range(d):
        e = np.zeros(d)
        e[b] = h
        plus = objective.grad_gram(F64, u[None], (v + e)[None], act)[0, 0]
        minus = objective.grad_gram(F64, u[None], (v - e)[None], act)[0, 0]
        fd[:, b] = (plus - minus) / (2 * h)
    assert_close(H, fd, abs_=1e-7, what="H vs finite differences")
    # H(u, v) = H(v, u)^T (k symmetric) and H is symmetric: E[sigma' sigma' x x^T].
    assert_close(H, cc.mixed_hessian(v[None], u[None], act)[0, 0].T, abs_=1e-15, what="H(u,v)=H(v,u)^T")
    assert_close(H, H.T, abs_=1e-15, what="H symmetric")


@pytest.mark.parametrize("act", ACTS)
def test_mixed_hessian_at_equal_and_opposite_directions(act) -> None:
    # Gaussian values (derivations: mixed_hessian_*_limits): H(u, u) = I/2 (relu), I (abs);
    # H(u, -u) = 0 (relu), -I (abs).  The guarded formula must return them to rounding,
    # and be continuous next to them (angle 1e-9: deviation O(1e-9)).
    u = unit(np.array([0.3, -1.2, 0.7, 0.1]))
    same, opp = (0.5, 0.0) if act == "relu" else (1.0, -1.0)
    I = np.eye(4)
    assert_close(cc.mixed_hessian(u[None], (2 * u)[None], act)[0, 0], same * I, abs_=4 * EPS, what="H(u,u)")
    assert_close(cc.mixed_hessian(u[None], (-u)[None], act)[0, 0], opp * I, abs_=4 * EPS, what="H(u,-u)")
    e = unit(np.array([1.0, 0.0, 0.0, 0.0]) - u * u[0])
    near = math.cos(1e-9) * u + math.sin(1e-9) * e
    assert_close(cc.mixed_hessian(u[None], near[None], act)[0, 0], same * I, abs_=1e-8, what="H near u")
    assert_close(cc.mixed_hessian(u[None], (-near)[None], act)[0, 0], opp * I, abs_=1e-8, what="H near -u")


@pytest.mark.parametrize("act", ACTS)
def test_mixed_hessian_gaussian_expectation(act) -> None:
    rng = np.random.default_rng(7)
    u, v = rng.standard_normal(2), rng.standard_normal(2)
    H = cc.mixed_hessian(u[None], v[None], act)[0, 0]

    def integrand(X):
        w = dsigma(X @ u, act) * dsigma(X @ v, act)
        return w[:, None, None] * X[:, :, None] * X[:, None, :]

    # d = 2: exact polar quadrature of E[sigma' sigma' x x^T] (kinks at the cut points):
    # rounding only, so 1e-13.
    assert_close(H, polar_mean(integrand, [u, v]), abs_=1e-13, what="H vs quadrature (d=2)")
    # d = 4: seeded Monte Carlo, 2e5 samples; 6 standard errors (estimated from the samples).
    u4, v4 = rng.standard_normal(4), rng.standard_normal(4)
    H4 = cc.mixed_hessian(u4[None], v4[None], act)[0, 0]
    mean, se = mc_mean(lambda X: (dsigma(X @ u4, act) * dsigma(X @ v4, act))[:, None, None]
                       * X[:, :, None] * X[:, None, :],
                       4, 200_000, 11)
    assert np.all(np.abs(H4 - mean) <= 6 * se + 1e-12), (H4, mean, se)


# --------------------------------------------------------------- the linear system
# Pinned: relu rays +-w1, +-w2 in d = 2 with signs (+, +, +, -): exposed that this
# configuration has no pre-certificate at all (reported, not an error of the solver).
@example(t=Teacher("relu", ("1.0", "1.0", "1.0", "-1.0"),
                   (("0.1926463324140409", "0.9812682561906397"), ("-0.1926463324140409", "-0.9812682561906397"),
                    ("-0.9812682561906396", "0.19264633241404108"), ("0.9812682561906396", "-0.19264633241404108")),
                   "frame", 0.5))
@given(t=teachers(min_d=2, max_d=5, min_m_star=1, max_m_star=4, min_separation=0.5))
def test_interpolation_conditions_hold(t) -> None:
    a, W = t.a_array(), t.W_array()
    cert = build(t.activation, a, W, samples=500)
    note(f"cond={cert.condition:.3g} reason={cert.reason} notes={cert.notes}")
    if "no solution" in cert.reason:
        # The known obstruction (relu): sigma(z) - sigma(-z) = z, so with opposite rays
        # +-w the tangential conditions at +-w fix E[p* <e, x>] = 0 for e _|_ w; a second
        # opposite pair makes E[p* x] = 0, hence eta(w) = eta(-w): opposite rays with
        # opposite signs then admit no pre-certificate.  Anything else must be solvable.
        G = W @ W.T
        assert t.activation == "relu" and any(
            G[i, j] < -1 + 1e-9 and a[i] * a[j] < 0 for i in range(len(a)) for j in range(i)), cert.reason
        assert cert.degenerate
        return
    # Reference: the conditions themselves, evaluated through eta_values /
    # eta_gradients (a separate summation from the assembled matrix).  The solve is
    # backward stable, so the residual is a few ulps of the sizes of the summed terms:
    # 100 eps (1 + sum|alpha| + sum||beta||) (m* d unknowns, each term ~ ulp).
    scale = 1 + np.abs(cert.alpha).sum() + np.linalg.norm(cert.beta, axis=1).sum()
    tol = 100 * EPS * scale * len(a) * W.shape[1]
    assert_close(cc.eta_values(cert, W, W), np.sign(a), abs_=tol, what="eta(w*_l) = sign a*_l")
    G = cc.eta_gradients(cert, W, W)
    tangential = G - (G * W).sum(axis=1, keepdims=True) * W
    assert_close(tangential, np.zeros_like(W), abs_=tol, what="tangential grad eta(w*_l)")
    # beta_i is orthogonal to w*_i by construction.
    assert_close((np.asarray(cert.beta) * W).sum(axis=1), np.zeros(len(a)), abs_=tol, what="beta_i . w*_i")
    # ||p*||^2 = c^T M c = sum_l alpha_l sign(a*_l) because M c = (sign a*, 0).
    assert_close(cert.p_norm**2, float(np.dot(cert.alpha, np.sign(a))), rel=1e-10, abs_=tol,
                 what="||p*||^2 = sum alpha_l sign a*_l")


def _three_teacher_relu() -> tuple[np.ndarray, np.ndarray]:
    return np.array([1.0, -0.8, 0.6]), np.eye(4)[:3]


def _abs_instance() -> tuple[np.ndarray, np.ndarray]:
    # Three lines in d = 3 at pairwise angles ~ 1.2 rad (cone around (1,1,1)).
    c = 0.15
    W = np.eye(3) + c
    return np.array([1.0, -0.7, 0.5]), W / np.linalg.norm(W, axis=1, keepdims=True)


@pytest.mark.parametrize("case", ["relu3", "abs3"])
def test_eta_and_gradient_match_expectations_of_p_star(case) -> None:
    a, W = _three_teacher_relu() if case == "relu3" else _abs_instance()
    act = "relu" if case == "relu3" else "abs"
    cert = build(act, a, W)
    d = W.shape[1]
    rng = np.random.default_rng(3)
    Q = rng.standard_normal((3, d)) * rng.uniform(0.5, 2.0, size=(3, 1))
    eta = cc.eta_values(cert, W, Q)
    grad = cc.eta_gradients(cert, W, Q)

    def integrand(X):
        p = p_star(cert, W, X)
        Z = X @ Q.T
        cols = [p[:, None] * sigma(Z, act), *(p[:, None] * dsigma(Z[:, [j]], act) * X for j in range(3)),
                (p * p)[:, None]]
        return np.concatenate(cols, axis=1)

    # Seeded Monte Carlo of E[p* sigma(<q,x>)], E[p* sigma'(<q,x>) x], E[p*^2]; 4e5 samples,
    # tolerance 6 standard errors estimated from the same samples.
    mean, se = mc_mean(integrand, d, 400_000, 5)
    expected = np.concatenate([eta, grad.ravel(), [cert.p_norm**2]])
    assert np.all(np.abs(mean - expected) <= 6 * se + 1e-12), (mean - expected) / se


@pytest.mark.parametrize("act", ACTS)
def test_eta_gradient_and_norm_match_exact_quadrature_in_the_plane(act) -> None:
    # d = 2, two teachers: every expectation is a 1-D integral over the circle, done by
    # exact piecewise quadrature (rounding only): tolerance 1e-12 on O(10) quantities.
    W = np.array([unit(np.array([1.0, 0.2])), unit(np.array([-0.1, 1.0]))])
    a = np.array([1.0, -0.6])
    cert = build(act, a, W)
    q = np.array([0.7, -1.1])

    def integrand(X):
        p = p_star(cert, W, X)
        z = X @ q
        return np.concatenate([(p * sigma(z, act))[:, None], (p * dsigma(z, act))[:, None] * X,
                               (p * p)[:, None]], axis=1)

    exact = polar_mean(integrand, [q, *W])
    got = np.concatenate([cc.eta_values(cert, W, q[None]), cc.eta_gradients(cert, W, q[None])[0],
                          [cert.p_norm**2]])
    assert_close(got, exact, abs_=1e-12, rel=1e-12, what="eta, grad eta, ||p*||^2 vs quadrature")


@pytest.mark.parametrize("act", ACTS)
def test_eta_is_homogeneous_and_even_for_abs(act) -> None:
    a, W = _abs_instance()
    cert = build(act, a, W)
    Q = np.random.default_rng(2).standard_normal((5, 3))
    e = cc.eta_values(cert, W, Q)
    # 1-homogeneity of k and grad_v k in w.  eta is a sum of 2 m* terms of size up to
    # |alpha_i|, ||beta_i||: a few ulps of that sum of sizes (the angles are scale-free).
    scale = 2.5 * (1 + np.abs(cert.alpha).sum() + np.linalg.norm(cert.beta, axis=1).sum())
    assert_close(cc.eta_values(cert, W, 2.5 * Q), 2.5 * e, abs_=8 * EPS * scale,
                 what="eta(2.5 w) = 2.5 eta(w)")
    if act == "abs":  # sigma even: w and -w are one feature
        assert_close(cc.eta_values(cert, W, -Q), e, abs_=1e-14, what="eta(-w) = eta(w)")


# --------------------------------------------------------------- single teacher
def _single_reference(act: str, r: float) -> tuple[float, float]:
    """(rho, rho_far) of the single-teacher certificate eta = sign kappa(phi)/kappa(0).

    From the t-form kernel of tests/reference.py on a fine grid (float reference
    independent of checker.core.kernel): rho = min over (0, r] of (1 - eta)/phi^2,
    rho_far = 1 - max over (r, phi_max] of |eta| (phi_max = pi, or pi/2 for lines).
    """
    with mpmath.workdps(30):
        def eta(p):
            return float(reference.kappa_t(mpmath.cos(p), act) / KAPPA0[act])
        near = np.linspace(r / 4000, r, 4000)
        rho = min((1 - eta(p)) / p**2 for p in near)
        top = math.pi if act == "relu" else math.pi / 2
        far = np.linspace(r, top, 4000)
        rho_far = 1 - max(abs(eta(p)) for p in far)
    return rho, rho_far


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("d", [2, 3, 5])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_single_teacher_closed_form(act, d, sign) -> None:
    w = unit(np.arange(1.0, d + 1) * np.array([1, -1] * d)[:d])
    cert = build(act, [0.9 * sign], w[None])
    # alpha = sign(a*)/kappa(0), beta = 0 (derivations: single_teacher_certificate_*); p* = alpha
    # sigma(<w*,x>), ||p*|| = 1/sqrt(kappa(0)).  The system is diagonal: rounding only.
    assert_close(cert.alpha, [sign / KAPPA0[act]], rel=4 * EPS, what="alpha")
    assert_close(cert.beta, np.zeros((1, d)), abs_=4 * EPS, what="beta")
    assert_close(cert.p_norm, 1 / math.sqrt(KAPPA0[act]), rel=4 * EPS, what="||p*||")
    assert cert.radius == pytest.approx(math.pi / 3, rel=1e-15)  # Delta = pi for one teacher
    rho, rho_far = _single_reference(act, cert.radius)
    # The minimum ratio sits at the cap boundary phi = r (where both grids end); the
    # search samples phi = r exactly and the far search approaches it from outside, so
    # agreement to 1e-7 relative (the grid itself is exact at its end points).
    assert_close(cert.rho, rho, rel=1e-7, what="rho")
    assert_close(cert.rho_far, rho_far, rel=1e-7, what="rho_far")
    assert not cert.degenerate



@pytest.mark.parametrize("act,d,radius", [("relu", 3, None), ("relu", 4, 0.4), ("abs", 3, None), ("abs", 2, 1.2)])
def test_single_teacher_constants_match_the_derived_closed_form(act, d, radius) -> None:
    # Reference: derivations/certificate.py single_teacher_constants (SymPy: kappa decreasing and
    # (1 - kappa/kappa(0))/phi^2 decreasing, so rho' = 1 - kappa(r)/kappa(0), rho = rho'/r^2,
    # ||p*|| = 1/sqrt(kappa(0))), evaluated in mpmath at 50 digits.  ||p*||: a diagonal system,
    # rounding only (4 eps).  rho and rho' (float estimates here; the certified rho' of the
    # single-teacher preset is checked in tests/test_theorem1_references.py): sampled at the cap
    # edge, where both extremes sit (1e-7, as in test_single_teacher_closed_form).
    w = unit(np.arange(1.0, d + 1))
    cert = build(act, [-1.3], w[None], radius=radius)
    r = cert.radius if radius is None else radius
    ref = dc.single_teacher_closed_form(act, r)
    assert not cert.degenerate
    assert_close(cert.p_norm, ref["p_norm"], rel=4 * EPS, what="||p*||")
    assert_close(cert.rho, ref["rho"], rel=1e-7, what="rho")
    assert_close(cert.rho_far, ref["rho_far"], rel=1e-7, what="rho'")


# --------------------------------------------------------------- C3 / C4
def _single_teacher_gap(act: str, a_star: float, w: np.ndarray, a: np.ndarray, W: np.ndarray,
                        lam: float) -> float:
    """zeta = L_lambda - L*_lambda with L*_lambda = lam |a*| - lam^2 / (4 kappa(0)).

    One atom s on w* minimizes (s - a*)^2 kappa(0) + lam |s| at s = a* - lam sign(a*)/(2 kappa(0))
    (|a*| > lam / (2 kappa(0))); the scaled certificate p = (lam/kappa(0)) sign(a*) sigma(<w*,x>)
    has |E[p sigma(<w,x>)]| <= lam on the sphere, so that atom is the optimum over all
    measures (relu: lam |a*| - lam^2/2 as in docs/formalization.md).
    """
    ev = objective.evaluate(F64, act, a, W, np.array([a_star]), w[None], lam, with_gradient=False)
    return float(ev.reg_loss) - (lam * abs(a_star) - lam**2 / (4 * KAPPA0[act]))


@given(t=teachers(min_d=2, max_d=4, min_m_star=1, max_m_star=1, a_min=0.5, a_max=2.0),
       lam=st.floats(1e-3, 0.1), data=st.data())
def test_c3_c4_bounds_hold_near_single_teacher(t, lam, data) -> None:
    student = data.draw(near_students(teacher=t, lam=lam, max_angle=1.2, max_mass_error=0.3,
                                      max_split=3, max_small=2, small_mass=0.3, zero_neuron=True))
    a = np.array([float(x) for x in student.a])
    W = np.array([[float(x) for x in r] for r in student.W])
    W_star, a_star = t.W_array(), float(t.a[0])
    cert = build(t.activation, [a_star], W_star)
    zeta = _single_teacher_gap(t.activation, a_star, W_star[0], a, W, lam)
    # The exact gap is >= 0 (rounding of L_lambda ~ 1e-15 relative).
    assert zeta >= -1e-12
    zeta = max(zeta, 0.0)
    terms = cc.certificate_terms(cert, W_star, a, W, lam=lam, zeta=zeta)
    target(terms["combined_lhs"] / terms["rhs"], label="combined lhs / rhs")
    assert terms["combined_holds"] and terms["c3_holds"] and terms["c4_holds"], terms
    # Step T1 of the chain: pairing <= total mass - rho S_near - rho_far S_far (1e-12:
    # rounding of sums of O(10) terms of size O(1)).
    assert terms["pairing"] <= terms["total_mass"] - cert.rho * terms["weighted_sq_angle"] \
        - cert.rho_far * terms["far_mass"] + 1e-12


@given(t=teachers(min_d=2, max_d=4, min_m_star=1, max_m_star=1), lam=st.floats(1e-3, 0.1), data=st.data())
def test_c3_c4_bounds_hold_for_any_student(t, lam, data) -> None:
    student = data.draw(random_students(d=t.d, min_m=1, max_m=4))
    a = np.array([float(x) for x in student.a])
    W = np.array([[float(x) for x in r] for r in student.W])
    cert = build(t.activation, t.a_array(), t.W_array())
    zeta = max(_single_teacher_gap(t.activation, float(t.a[0]), t.W_array()[0], a, W, lam), 0.0)
    terms = cc.certificate_terms(cert, t.W_array(), a, W, lam=lam, zeta=zeta)
    assert terms["combined_holds"] and terms["c3_holds"] and terms["c4_holds"], terms


def test_certificate_terms_records() -> None:
    a_star, W_star = _three_teacher_relu()
    cert = build("relu", a_star, W_star)
    W = np.array([[1.0, 0.01, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.9, 0.1, 0.0]])
    a = np.array([0.9, 0.1, 0.5, -0.7])
    terms = cc.certificate_terms(cert, W_star, a, W, lam=0.01, zeta=0.001)
    regions = [s["region"] for s in terms["students"]]
    assert regions == ["near", "far", "zero", "near"]
    # Student 1 is at angle pi/2 from every teacher (ties go to the first index).
    assert [s["nearest"] for s in terms["students"]] == [0, 0, None, 1]
    # Hand values: mu = |a| ||w||; near angles atan(0.01/1) and atan(0.1/0.9).
    assert_close(terms["weighted_sq_angle"],
                 0.9 * math.hypot(1, 0.01) * math.atan(0.01) ** 2 + 0.7 * math.hypot(0.9, 0.1) * math.atan(0.1 / 0.9) ** 2,
                 rel=1e-14, what="weighted squared angle")
    assert_close(terms["far_mass"], 0.2, rel=1e-15, what="far mass")
    json.dumps(terms, allow_nan=False)



# --------------------------------------------------------------- C3 / C4 bounds against an independent formula
def _bound_reference(rho: float, p_norm: float, lam: float, zeta: float) -> mpmath.mpf:
    """(zeta + lambda^2 ||p*||^2 / 4) / (lambda rho) in mpmath at 50 digits, written from paper.md's
    certificate inequality (not from checker.geometry.certificate)."""
    with mpmath.workdps(50):
        lam_m = mpmath.mpf(lam)
        return (mpmath.mpf(zeta) + lam_m * lam_m * mpmath.mpf(p_norm) ** 2 / 4) / (lam_m * mpmath.mpf(rho))


@given(rho=st.floats(1e-4, 2.0), rho_far=st.floats(1e-4, 1.0), p_norm=st.floats(0.1, 10.0),
       lam=st.floats(1e-5, 0.5), zeta=st.one_of(st.just(0.0), st.floats(1e-30, 1.0)))
def test_c3_c4_bounds_match_an_independent_formula(rho, rho_far, p_norm, lam, zeta) -> None:
    # Float evaluation of a formula of positive terms (no cancellation): six roundings of at
    # most eps/2 relative each, so 4 eps relative covers it; a wrong power of lambda or of
    # ||p*||, a swapped rho / rho' or a missing 1/4 is off by far more.
    cert = dataclasses.replace(_CERT_TEMPLATE, rho=rho, rho_far=rho_far, p_norm=p_norm)
    assert_close(cc.c4_bound(cert, lam, zeta), _bound_reference(rho, p_norm, lam, zeta), rel=4 * EPS, what="C4")
    assert_close(cc.c3_bound(cert, lam, zeta), _bound_reference(rho_far, p_norm, lam, zeta), rel=4 * EPS,
                 what="C3")
    # No certificate constant, no bound: rho <= 0 gives an infinite bound, never a finite one.
    flat = dataclasses.replace(cert, rho=0.0, rho_far=-1e-3)
    assert cc.c4_bound(flat, lam, zeta) == math.inf and cc.c3_bound(flat, lam, zeta) == math.inf


_CERT_TEMPLATE = cc.Certificate(activation="relu", alpha=[2.0], beta=[[0.0, 0.0]], p_norm=1.0, radius=1.0,
                                rho=0.5, rho_far=0.5, rho_rigorous=False, rho_far_rigorous=False,
                                condition=1.0, degenerate=False, reason="")


@pytest.mark.parametrize("lam,zeta", [(0.01, 0.0), (0.01, 1e-4), (0.2, 3e-3)])
def test_certificate_terms_bounds_and_flags_against_independent_geometry(lam, zeta) -> None:
    # Reference: the student's masses and angles from numpy (arccos of the clipped cosine, the
    # textbook route, not checker.core.objective.pair_geometry), the bounds from _bound_reference,
    # and each holds flag recomputed as measured <= bound.  1e-12 relative: arccos near 1 loses
    # about sqrt(eps) in the angle only for angles below 1e-8, and none is drawn that small.
    a_star, W_star = _three_teacher_relu()
    cert = build("relu", a_star, W_star)
    rng = np.random.default_rng(7)
    r = cert.radius
    # two students on either side of the cap edge of teacher 0 (angles 0.9 r and 1.5 r, towards e4,
    # orthogonal to every teacher), so a wrong radius moves mass between the regions
    edge = np.array([[math.cos(t), 0.0, 0.0, math.sin(t)] for t in (0.9 * r, 1.5 * r)]) * 0.7
    W = np.concatenate([W_star + 0.05 * rng.standard_normal(W_star.shape), rng.standard_normal((3, 4)), edge])
    a = np.concatenate([a_star * 0.9, 0.02 * rng.standard_normal(3), [0.3, -0.2]])
    terms = cc.certificate_terms(cert, W_star, a, W, lam=lam, zeta=zeta)
    norms = np.linalg.norm(W, axis=1)
    cos = np.clip((W / norms[:, None]) @ W_star.T, -1, 1)
    ang = np.arccos(cos).min(axis=1)
    mu = np.abs(a) * norms
    near = ang <= cert.radius
    sq_ref, far_ref = float((mu[near] * ang[near] ** 2).sum()), float(mu[~near].sum())
    assert 0 < near.sum() < len(a)  # both regions are exercised
    assert np.any((ang > cert.radius) & (ang <= 2 * cert.radius))  # mass just outside a cap
    assert_close(terms["weighted_sq_angle"], sq_ref, rel=1e-12, what="sum_near mu angle^2")
    assert_close(terms["far_mass"], far_ref, rel=1e-12, what="far mass")
    c4_ref = _bound_reference(cert.rho, cert.p_norm, lam, zeta)
    c3_ref = _bound_reference(cert.rho_far, cert.p_norm, lam, zeta)
    assert_close(terms["c4_bound"], c4_ref, rel=4 * EPS, what="C4 bound")
    assert_close(terms["c3_bound"], c3_ref, rel=4 * EPS, what="C3 bound")
    assert terms["c4_holds"] == (sq_ref <= c4_ref) and terms["c3_holds"] == (far_ref <= c3_ref)
    with mpmath.workdps(50):
        rhs = mpmath.mpf(zeta) + mpmath.mpf(lam) ** 2 * mpmath.mpf(cert.p_norm) ** 2 / 4
        lhs = mpmath.mpf(lam) * (mpmath.mpf(cert.rho) * sq_ref + mpmath.mpf(cert.rho_far) * far_ref)
    assert_close(terms["rhs"], rhs, rel=4 * EPS, what="certificate right-hand side")
    assert_close(terms["combined_lhs"], lhs, rel=1e-12, what="certificate left-hand side")
    assert terms["combined_holds"] == (lhs <= rhs)


# --------------------------------------------------------------- degenerate and invalid
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_nearly_collinear_teachers_are_reported(sign) -> None:
    for angle in (1e-2, 1e-3, 1e-6):
        W = np.array([[1.0, 0.0, 0.0], [math.cos(angle), math.sin(angle), 0.0]])
        cert = build("relu", [1.0, 0.8 * sign], W)
        # Either flagged (no solution, rho <= 0, or margins below the rounding level of
        # eta), or a certificate whose curvature is tiny (rho < 1e-4 against 0.36 for a
        # single teacher): in both cases the record shows that the bounds are useless.
        assert cert.degenerate or cert.rho < 1e-4, cert
        if cert.degenerate:
            assert cert.reason
        json.dumps(cert.to_dict(), allow_nan=False)


def test_reference_instances_are_valid_certificates() -> None:
    # Measured figures (reported): the checks here are only the qualitative facts.
    for act, (a, W) in (("relu", _three_teacher_relu()), ("abs", _abs_instance())):
        cert = build(act, a, W, samples=20000)
        assert not cert.degenerate, cert.reason
        assert 0 < cert.rho < 0.5 and 0 < cert.rho_far < 1
        assert cert.max_abs_eta <= 1 + cc.ETA_EXCESS_TOL
        json.dumps(cert.to_dict(), allow_nan=False)


@pytest.mark.parametrize("kwargs,match", [
    (dict(activation="tanh"), "activation"),
    (dict(a_star=[1.0, 2.0]), "shape"),
    (dict(a_star=[0.0]), "non-zero"),
    (dict(W_star=[[0.0, 0.0]]), "non-zero"),
    (dict(W_star=[[float("nan"), 1.0]]), "non-finite"),
    (dict(W_star=[[1.0]]), "d >= 2"),
    (dict(radius=-1.0), "radius"),
])
def test_invalid_arguments_raise(kwargs, match) -> None:
    args = dict(activation="relu", a_star=[1.0], W_star=[[1.0, 0.0]])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cc.build_certificate(args.pop("activation"), args.pop("a_star"), args.pop("W_star"),
                             rigorous=False, samples=200, **args)


# --------------------------------------------------------------- rigorous far region
def test_rigorous_rho_far() -> None:
    pytest.importorskip("checker.rigorous.sphere")
    cert = cc.build_certificate("relu", [1.0], [[1.0, 0.0, 0.0]], rigorous=True, samples=2000)
    _, rho_far = _single_reference("relu", cert.radius)
    assert cert.rho_far_rigorous, cert.notes
    # A certified lower bound: below the exact closed-form value, and within the
    # requested tolerance of it (the search stops when upper - attained <= tol).
    assert rho_far - cc.RIGOROUS_TOL - 1e-12 <= cert.rho_far <= rho_far
    a, W = _abs_instance()
    cert = cc.build_certificate("abs", a, W, rigorous=True, samples=2000)
    assert cert.rho_far_rigorous, cert.notes
    # No closed form here: the float estimate is attained at actual points, so the
    # certified bound must lie below it, and above it by at most tol plus the estimate's
    # own shortfall (bounded by the same tol: the search is converged, see notes).
    assert cert.rho_far_estimate - 2 * cc.RIGOROUS_TOL <= cert.rho_far <= cert.rho_far_estimate


@pytest.mark.parametrize("activation, a, W", [
    ("relu", [1.0, -0.8], [[1, 0, 0], [0, 1, 0]]),
    ("relu", [1.0, 1.0], [[1, 0, 0], [-1, 0, 0]]),  # opposite rays: dependent features
    ("abs", [1.0, 0.5], [[1, 0, 0], [1, 1e-9, 0]]),  # near-duplicate lines: degenerate
])
@pytest.mark.parametrize("non_finite", [{}, {"rho": math.nan, "rho_far": -math.inf, "max_abs_eta": math.inf}])
def test_certificate_restores_exactly_from_its_json(activation, a, W, non_finite) -> None:
    # Checkpoints store the certificate (to_json); from_json must rebuild it bit for bit, the
    # non-finite constants of a degenerate teacher (nan when the system has no solution) included
    # (to_dict turns those into null).
    import dataclasses
    cert = build(activation, np.array(a), np.array(W, float) / np.linalg.norm(W, axis=1)[:, None])
    cert = dataclasses.replace(cert, **non_finite)
    text = json.loads(json.dumps(cert.to_json()))
    back = cc.Certificate.from_json(text)
    assert back.to_json() == cert.to_json()
    assert all(type(getattr(back, f)) is type(getattr(cert, f)) for f in ("rho", "alpha", "degenerate", "notes"))


@pytest.mark.parametrize("damage", [{"rho": 1.5}, {"rho": "1e"}, {"degenerate": "no"}, {"alpha": "1"},
                                    {"extra": 1}])
def test_certificate_from_json_refuses_damage_in_one_line(damage) -> None:
    cert = build("relu", np.array([1.0, -0.8]), np.eye(3)[:2])
    with pytest.raises(CheckerError, match="ckpt") as info:
        cc.Certificate.from_json({**cert.to_json(), **damage}, "ckpt")
    assert "\n" not in str(info.value)
