"""Enclosures of the span-chart certificate function F(y) = ||y|| eta(M y / ||M y||) on boxes.

``checker.geometry.certificate._ArbChartEta`` is the function the Arb branch and bound maximizes for
max |eta|: value and gradient (first-order bounds) and Hessian (second-order form) enclosed over a box.
Reference, written here and independent of the code: the relu pre-certificate on unit w in closed form
(as in tests/test_certificate_span.py),

    eta(w) = sum_i alpha_i kappa(<w, w*_i>) + sum_i (pi - phi_i) / (2 pi) <beta_i, w> + c sqrt(1 - t_i^2) <beta_i, w*_i>

(the last term vanishes when <beta_i, w*_i> = 0; kept so the reference does not rely on it), in float64
numpy, differentiated by central differences.  Points are drawn inside each box; every enclosure must
contain the reference at every point, up to a slack that covers the finite-difference error only.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from checker.geometry import certificate as cc
from tests.test_certificate_span import A_DEG, W_DEG

flint = pytest.importorskip("flint")
arb = flint.arb


def _kappa(t: np.ndarray) -> np.ndarray:
    return (np.sqrt(1 - t * t) + (math.pi - np.arccos(t)) * t) / (2 * math.pi)


def _F_ref(alpha, beta, W, M, sgn, y: np.ndarray) -> float:
    """sgn ||y|| eta(u), u = M y / ||M y|| (numpy closed form)."""
    q = M @ y
    u = q / np.linalg.norm(q)
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    t = np.clip(Wn @ u, -1.0, 1.0)
    eta = (alpha * np.linalg.norm(W, axis=1)) @ _kappa(t) + ((math.pi - np.arccos(t)) / (2 * math.pi)) @ (beta @ u)
    eta += (np.sqrt(1 - t * t) / (2 * math.pi)) @ np.einsum("ij,ij->i", beta, Wn)
    return float(sgn * np.linalg.norm(y) * eta)


def _grad_ref(f, y: np.ndarray, h: float = 1e-6) -> np.ndarray:
    return np.array([(f(y + h * e) - f(y - h * e)) / (2 * h) for e in np.eye(len(y))])


def _hess_ref(f, y: np.ndarray, h: float = 1e-4) -> np.ndarray:
    n = len(y)
    H = np.empty((n, n))
    for j, ej in enumerate(np.eye(n)):
        for l, el in enumerate(np.eye(n)):
            H[j, l] = (f(y + h * ej + h * el) - f(y + h * ej - h * el) - f(y - h * ej + h * el)
                       + f(y - h * ej - h * el)) / (4 * h * h)
    return H


def _contains(ball, x: float, slack: float) -> bool:
    if not ball.is_finite():
        return True  # no bound claimed
    return float(ball.lower()) - slack <= x <= float(ball.upper()) + slack


@pytest.fixture(scope="module")
def setup():
    cert = cc.build_certificate("relu", A_DEG, W_DEG, rigorous=False, samples=500)
    fn = cc._fn_of(cert, W_DEG)
    chart = cc.span_chart(fn)
    assert chart.reduced and chart.dim == 4
    return fn, chart


def _boxes(rng, k: int, levels):
    """Boxes of the cube-face charts: face coordinate +-1, free coordinates k_j 2^-L +- 2^-L."""
    for level in levels:
        for _ in range(6):
            i, s = int(rng.integers(k)), int(rng.choice([-1, 1]))
            c = np.array([float(s) if j == i else (2 * rng.integers(-(2**level) // 2, 2**level // 2) + 1)
                          / 2**level if level > 0 else 0.0 for j in range(k)])
            r = np.array([0.0 if j == i else 2.0**-level for j in range(k)])
            yield c, r


def _violations(F, ref, boxes, rng, *, what: str) -> list:
    """Points where the enclosure of ``what`` (value, grad, hess) misses the reference."""
    bad = []
    for c, r in boxes:
        Y = [arb(float(cj), float(rj)) if rj > 0 else arb(float(cj)) for cj, rj in zip(c, r)]
        if what == "hess":
            v, g, H = F.hessian(Y)
        else:
            v, g = F(Y)
        for _ in range(4):
            y = c + r * rng.uniform(-0.999, 0.999, len(c))
            if what == "value" and not _contains(v, ref(y), 1e-9):
                bad.append((c, r, y))
            elif what == "grad" and not all(_contains(gj, x, 1e-6) for gj, x in zip(g, _grad_ref(ref, y))):
                bad.append((c, r, y))
            elif what == "hess":
                Hr = _hess_ref(ref, y)
                if not all(_contains(H[j][l], Hr[j, l], 1e-4) for j in range(len(y)) for l in range(len(y))):
                    bad.append((c, r, y))
    return bad


@pytest.mark.parametrize("sgn", [1, -1])
def test_value_and_gradient_enclosures_hold_on_wide_boxes(setup, sgn) -> None:
    # Whole faces and large boxes, where the ball of M Y reaches 0: the enclosures must still hold
    # (or be non-finite).  Slack: central differences with h = 1e-6 err by ~1e-9 here.
    fn, chart = setup
    F = cc._ArbChartEta(fn, chart, sgn)
    ref = lambda y: _F_ref(fn.alpha, chart.beta_span, fn.W, chart.M, sgn, y)  # noqa: E731
    rng = np.random.default_rng(1)
    for what in ("value", "grad"):
        assert not _violations(F, ref, _boxes(rng, 4, [0, 1, 2, 3, 5]), rng, what=what), what


def _zero_convention_everywhere(engine, X):
    """The planted defect: the pair geometry's zero-neuron convention applied to every row whose norm
    ball is not certainly positive (a ball that only touches 0 read as the zero vector)."""
    r = engine.sqrt((X * X).sum(axis=1))
    nonzero = np.asarray(r > 0, dtype=bool)
    units = X / np.where(nonzero, r, 1)[:, None]
    point = getattr(engine, "point", None)
    if point is not None:
        r, units = point(r), point(units)
    return r, units, nonzero


def test_a_planted_unsound_enclosure_is_caught(setup, monkeypatch) -> None:
    # Without the chart's own guard, the objective's handling of a norm ball that touches 0 keeps
    # the enclosures sound; with the zero convention planted there, the same check finds violations.
    from checker.core import objective

    fn, chart = setup
    F = cc._ArbChartEta(fn, chart, 1)
    monkeypatch.setattr(cc._ArbChartEta, "_away_from_zero", lambda self, q: True)
    ref = lambda y: _F_ref(fn.alpha, chart.beta_span, fn.W, chart.M, 1, y)  # noqa: E731
    rng = np.random.default_rng(1)
    boxes = list(_boxes(rng, 4, [0]))
    assert not _violations(F, ref, boxes, rng, what="grad")
    monkeypatch.setattr(objective, "_norms_and_units", _zero_convention_everywhere)
    rng = np.random.default_rng(1)
    assert _violations(F, ref, boxes, rng, what="grad")


def test_hessian_enclosure_contains_second_differences(setup) -> None:
    # Slack 1e-4: second differences with h = 1e-4 err by ~h^2 |F''''| ~ 1e-6 away from the teachers
    # (boxes whose Hessian reaches a teacher's singularity are non-finite and claim nothing).
    fn, chart = setup
    F = cc._ArbChartEta(fn, chart, -1)
    ref = lambda y: _F_ref(fn.alpha, chart.beta_span, fn.W, chart.M, -1, y)  # noqa: E731
    rng = np.random.default_rng(2)
    boxes = list(_boxes(rng, 4, [3, 4, 6, 9]))
    assert not _violations(F, ref, boxes, rng, what="hess")
    # and the enclosures are finite somewhere (the check is not vacuous)
    finite = sum(all(x.is_finite() for row in F.hessian([arb(float(cj), float(rj)) if rj > 0 else arb(float(cj))
                                                         for cj, rj in zip(c, r)])[2] for x in row)
                 for c, r in boxes)
    assert finite >= len(boxes) // 2


def test_a_planted_wrong_hessian_is_caught(setup, monkeypatch) -> None:
    fn, chart = setup
    F = cc._ArbChartEta(fn, chart, -1)
    true_hessian = cc._ArbChartEta.hessian

    def negated(self, Y):
        v, g, H = true_hessian(self, Y)
        return v, g, [[-x for x in row] for row in H]

    monkeypatch.setattr(cc._ArbChartEta, "hessian", negated)
    ref = lambda y: _F_ref(fn.alpha, chart.beta_span, fn.W, chart.M, -1, y)  # noqa: E731
    rng = np.random.default_rng(2)
    assert _violations(F, ref, list(_boxes(rng, 4, [6, 9])), rng, what="hess")


def test_the_unit_sphere_form_derivation_rejects_a_wrong_kernel() -> None:
    # The SymPy identity behind ``hessian`` is checked against the checker's own kappa and gradient
    # coefficients; with the relu coefficients swapped in for abs it must fail.
    from checker.core import kernel as ck
    from derivations.certificate import eta_unit_sphere_form

    assert eta_unit_sphere_form("relu").verified
    wrong = lambda phi, s, pi, act: ck.grad_coefficients(phi, s, pi, "relu")  # noqa: E731
    assert not eta_unit_sphere_form("abs", grad_fn=wrong).verified
