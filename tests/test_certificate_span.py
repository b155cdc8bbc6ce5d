"""The span reduction of the dual certificate: max |eta| and rho_far on S^{d-1} from a smaller sphere.

References, written here and independent of ``checker.geometry.certificate``'s search and chart:
the relu pre-certificate on unit w in closed form,

    eta(w) = sum_i alpha_i kappa(<w, w*_i>) + sum_i (pi - phi_i) / (2 pi) <beta_i, w>,

(kappa the arc-cosine kernel; grad_v k(w, v) = (A w + B v) for unit v, w with A = (pi - phi)/(2 pi),
and <beta_i, w*_i> = 0), maximized by a multi-start projected gradient ascent in R^d with a
numerical gradient, and the single-teacher closed form of ``tests/test_certificate.py``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from checker.geometry import certificate as cc

# Three relu teachers in d = 6, output signs (+, +, -), pairwise angles 84, 73 and 58 degrees:
# a degenerate pre-certificate (|eta| ~ 1.077 near the antipode of the negative teacher).
W_DEG = np.array([[-0.76735774, -0.27670466, 0.3261005, -0.45079659, 0.12588446, -0.0958678],
                  [-0.33036052, -0.04856187, -0.62824791, 0.15031039, 0.43568109, -0.53046868],
                  [-0.25380271, 0.45254852, 0.13872234, -0.12353834, 0.54066675, -0.6355768]])
A_DEG = np.array([1.0, 1.0, -0.7])


def _kappa(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, -1.0, 1.0)
    return (np.sqrt(1 - t * t) + (math.pi - np.arccos(t)) * t) / (2 * math.pi)


def _eta_ref(alpha: np.ndarray, beta: np.ndarray, W: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """eta at the unit vectors Q / ||Q|| from the closed form above (numpy, textbook arccos)."""
    U = Q / np.linalg.norm(Q, axis=-1, keepdims=True)
    t = np.clip(U @ (W / np.linalg.norm(W, axis=1, keepdims=True)).T, -1.0, 1.0)
    A = (math.pi - np.arccos(t)) / (2 * math.pi)
    return _kappa(t) @ alpha + (A * (U @ beta.T)).sum(axis=-1)


def _dense_max_abs(alpha, beta, W, *, starts=3000, iters=300, seed=11) -> tuple[float, np.ndarray]:
    """max |eta| over S^{d-1}: projected gradient ascent from random starts in R^d (central differences)."""
    rng = np.random.default_rng(seed)
    d = W.shape[1]
    X = rng.standard_normal((starts, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    f = lambda Z: np.abs(_eta_ref(alpha, beta, W, Z))  # noqa: E731
    step = np.full(starts, 0.05)
    val = f(X)
    h = 1e-6
    for _ in range(iters):
        G = np.stack([(f(X + h * e) - f(X - h * e)) / (2 * h) for e in np.eye(d)], axis=1)
        G -= (G * X).sum(axis=1, keepdims=True) * X
        Y = X + step[:, None] * G / np.maximum(np.linalg.norm(G, axis=1, keepdims=True), 1e-300)
        Y /= np.linalg.norm(Y, axis=1, keepdims=True)
        vy = f(Y)
        up = vy > val
        X[up], val[up] = Y[up], vy[up]
        step = np.where(up, step * 1.2, step * 0.5)
    i = int(np.argmax(val))
    return float(val[i]), X[i]


def test_closed_form_reference_matches_the_code_eta() -> None:
    # The reference formula and eta_values are two routes to one function (1e-12: sums of a few O(10)
    # terms in float64, differently ordered; arccos near +-1 is never hit by random directions).
    cert = cc.build_certificate("relu", A_DEG, W_DEG, rigorous=False, samples=500)
    Q = np.random.default_rng(0).standard_normal((200, 6))
    ref = _eta_ref(np.array(cert.alpha), np.array(cert.beta), W_DEG, Q)
    got = cc.eta_values(cert, W_DEG, Q / np.linalg.norm(Q, axis=1, keepdims=True))
    assert np.max(np.abs(ref - got)) <= 1e-12 * (1 + np.abs(cert.alpha).sum())


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(4, 8))
def test_eta_depends_only_on_the_projection_on_the_teachers_span(seed, d) -> None:
    # The fact behind the reduction: beta_i lies in span{w*_l}, so two unit vectors with the same
    # projection on that span have the same eta (checked with the closed form, not the chart).
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((3, d))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    a = rng.choice([-1.0, 1.0], 3) * rng.uniform(0.5, 1.5, 3)
    cert = cc.build_certificate("relu", a, W, rigorous=False, samples=200)
    if cert.reason.startswith("the system has no solution"):
        return
    alpha, beta = np.array(cert.alpha), np.array(cert.beta)
    P = W.T @ np.linalg.pinv(W.T)
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    z = P @ w
    perp = rng.standard_normal(d)
    perp -= P @ perp
    w2 = z + np.linalg.norm(w - z) * perp / np.linalg.norm(perp)
    scale = 1 + np.abs(alpha).sum() + np.linalg.norm(beta, axis=1).sum()
    assert abs(_eta_ref(alpha, beta, W, w[None])[0] - _eta_ref(alpha, beta, W, w2[None])[0]) <= 1e-11 * scale
    assert np.linalg.norm(beta - beta @ P.T) <= 1e-10 * scale


def test_max_abs_eta_is_the_true_peak_of_a_degenerate_certificate() -> None:
    # Reference: the dense projected-gradient search of this file in R^6 (3000 starts).  Both are
    # values attained at points, so each bounds the true maximum from below; agreement to 1e-7 means
    # the code's span search found the peak (plain sampling of S^5 with 20000 points misses it by
    # several 1e-3 on this teacher).
    cert = cc.build_certificate("relu", A_DEG, W_DEG, rigorous=False, samples=20000)
    alpha, beta = np.array(cert.alpha), np.array(cert.beta)
    ref, _ = _dense_max_abs(alpha, beta, W_DEG)
    assert ref > 1.07
    peak = cert.to_dict()["max_abs_eta"]
    assert abs(peak["value"] - ref) <= 1e-7, (peak["value"], ref)
    assert cert.degenerate and "|eta| reaches" in cert.reason
    # the direction attains the value (closed form) and the angles are those of the direction
    u = np.array(peak["direction"])
    assert abs(np.linalg.norm(u) - 1) <= 1e-12
    assert abs(abs(_eta_ref(alpha, beta, W_DEG, u[None])[0]) - peak["value"]) <= 1e-9
    ang = np.arccos(np.clip(W_DEG @ u / np.linalg.norm(W_DEG, axis=1), -1, 1))
    assert np.allclose(peak["angles_to_teachers"], ang, atol=1e-7)
    assert peak["span_dimension"] == 3 and peak["search_dimension"] == 4
    assert peak["enclosure"] is None  # rigorous=False
    json.dumps(cert.to_dict(), allow_nan=False)


def test_degenerate_peak_enclosure_is_rigorous_and_contains_the_value() -> None:
    cert = cc.build_certificate("relu", A_DEG, W_DEG, rigorous=True, samples=5000, rigorous_seconds=5)
    peak = cert.peak()
    lo, hi = peak["enclosure"]
    # The enclosure must contain the attained value (lower end: a value attained in ball arithmetic,
    # upper end: the branch-and-bound bound, valid whatever stopped the search).
    assert lo <= peak["value"] + 1e-12 and peak["value"] <= hi
    ref, _ = _dense_max_abs(np.array(cert.alpha), np.array(cert.beta), W_DEG, starts=500, iters=200)
    assert ref <= hi


def _single_reference(radius: float) -> float:
    # Single relu teacher: eta = kappa(t) / kappa(1) on the sphere (alpha = 1 / kappa(1), beta = 0),
    # decreasing in the angle, so max over the far region is at the cap edge.
    return 1 - float(_kappa(np.array(math.cos(radius)))) / float(_kappa(np.array(1.0)))


@pytest.mark.parametrize("d", [5, 7])
def test_rho_far_is_certified_in_high_dimension_through_the_span(d) -> None:
    W = np.zeros((1, d))
    W[0, 1] = 1.0
    cert = cc.build_certificate("relu", [0.7], W, rigorous=True, samples=2000, radius=0.4)
    assert cert.rho_far_rigorous, cert.notes
    assert cert.search_dim == 2 and cert.span_dim == 1
    rho_far = _single_reference(0.4)
    # certified lower bound: below the closed form, within the requested tolerance of it
    assert rho_far - cc.RIGOROUS_TOL - 1e-12 <= cert.rho_far <= rho_far


def test_rho_far_certified_in_d6_agrees_with_the_same_teacher_in_d3() -> None:
    # Two orthogonal teachers of the same sign in d = 3 (span chart S^2) and the same teacher rotated
    # into d = 6 (span chart S^2 of a 6-dimensional problem): both certified lower bounds, both below
    # their float estimates, and within 2 tol of each other (each is within tol of the true value,
    # the search having converged; rotation leaves rho_far unchanged).
    W3 = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    Q = np.linalg.qr(np.random.default_rng(3).standard_normal((6, 6)))[0]
    W6 = np.concatenate([W3, np.zeros((2, 3))], axis=1) @ Q.T
    c3 = cc.build_certificate("relu", [1.0, 0.7], W3, rigorous=True, samples=5000)
    c6 = cc.build_certificate("relu", [1.0, 0.7], W6, rigorous=True, samples=5000)
    assert c3.rho_far_rigorous and c6.rho_far_rigorous, (c3.notes, c6.notes)
    assert c6.search_dim == 3 and c3.search_dim == 3
    assert abs(c3.rho_far - c6.rho_far) <= 2 * cc.RIGOROUS_TOL
    assert c6.rho_far <= c6.rho_far_estimate + 1e-12 and c3.rho_far <= c3.rho_far_estimate + 1e-12


def test_to_dict_reports_max_abs_eta_as_a_record() -> None:
    cert = cc.build_certificate("relu", [1.0], [[1.0, 0.0, 0.0, 0.0, 0.0]], rigorous=False, samples=500)
    rec = cert.to_dict()["max_abs_eta"]
    assert set(rec) >= {"value", "enclosure", "direction", "angles_to_teachers", "span_dimension"}
    assert abs(rec["value"] - 1) <= 1e-12 and rec["span_dimension"] == 1
    back = cc.Certificate.from_json(json.loads(json.dumps(cert.to_json())))
    assert back.to_json() == cert.to_json()


@pytest.mark.slow
def test_theorem1_reports_the_true_peak_of_a_degenerate_certificate(tmp_path) -> None:
    # End to end: python -m checker.theorem1 on the degenerate teacher refuses H1-certificate (exit 2)
    # and its JSON carries certificate.max_abs_eta with the peak of the dense search of this file.
    import subprocess
    import sys

    inst = {"activation": "relu", "teacher": {"a": ["1", "1", "-0.7"], "W": [[repr(float(x)) for x in r] for r in W_DEG]},
            "student": {"a": ["0.99", "0.99", "-0.69"], "W": [[repr(float(0.99 * x)) for x in r] for r in W_DEG]},
            "lambda": "0.001", "eta": "0.2", "normalize_teacher": True}
    path = tmp_path / "deg.json"
    path.write_text(json.dumps(inst))
    out = tmp_path / "out.json"
    res = subprocess.run([sys.executable, "-m", "checker.theorem1", "--instance", str(path), "--json", str(out)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 2, res.stderr
    cert = json.loads(out.read_text())["certificate"]
    peak = cert["max_abs_eta"]
    W = W_DEG / np.linalg.norm(W_DEG, axis=1, keepdims=True)
    ref, _ = _dense_max_abs(np.array(cert["alpha"]), np.array(cert["beta"]), W)
    assert abs(peak["value"] - ref) <= 1e-7
    assert peak["enclosure"] is not None and peak["enclosure"][0] <= peak["value"] <= peak["enclosure"][1]
    assert peak["search_dimension"] == 4 and len(peak["direction"]) == 6
