"""Ball evaluations of the exact objective on boxes that reach a zero neuron.

The objective's zero-neuron convention (a zero row contributes nothing) holds only for a row that
is exactly zero.  A ball row whose norm is neither certainly positive nor exactly zero (a wide box
that reaches w = 0) must give an enclosure that contains the value at every point of the box: here
an indeterminate one.  The reference is the closed form of one relu neuron against one teacher,
written in the test with numpy: L(a, w) = a^2 ||w||^2 / 2 - 2 a ||w|| kappa(phi) + 1/2,
kappa(phi) = (sin phi + (pi - phi) cos phi) / (2 pi).
"""

from __future__ import annotations

import math

import numpy as np
from flint import arb

from checker.core import objective
from checker.rigorous.critical import BallEngine


def _loss_reference(a: float, w: np.ndarray) -> float:
    n = float(np.linalg.norm(w))
    if n == 0:
        return 0.5
    c = max(-1.0, min(1.0, w[0] / n))
    phi = math.acos(c)
    kappa = (math.sin(phi) + (math.pi - phi) * c) / (2 * math.pi)
    return a * a * n * n / 2 - 2 * a * n * kappa + 0.5


def _evaluate(a: arb, W: list[list[arb]]):
    eng = BallEngine()
    A = np.array([a], dtype=object)
    Wb = np.array(W, dtype=object)
    return objective.evaluate(eng, "relu", A, Wb, np.array([arb(1)], dtype=object),
                              np.array([[arb(1), arb(0)]], dtype=object), lam=arb(0))


def _contains(ball: arb, x: float) -> bool:
    return (not ball.is_finite()) or ball.contains(arb(x))


def test_a_box_reaching_a_zero_neuron_encloses_the_loss_at_every_sampled_point() -> None:
    # w in [-0.3, 0.5] x [-0.2, 0.2] (reaches w = 0), a = 1: sample the box densely.
    ev = _evaluate(arb(1), [[arb(0.1, 0.4), arb(0, 0.2)]])
    rng = np.random.default_rng(0)
    for w in rng.uniform([-0.3, -0.2], [0.5, 0.2], size=(400, 2)):
        assert _contains(ev.loss, _loss_reference(1.0, w)), (ev.loss, w)
    for w in ([0.0, 0.0], [0.5, 0.0], [-0.3, 0.2]):
        assert _contains(ev.loss, _loss_reference(1.0, np.array(w))), (ev.loss, w)


def test_an_exact_zero_row_keeps_the_zero_neuron_convention() -> None:
    # exactly zero: L = E[f*^2] = 1/2, a finite enclosure
    ev = _evaluate(arb(1), [[arb(0), arb(0)]])
    assert ev.loss.is_finite() and ev.loss.contains(arb(0.5)) and ev.loss.rad() < 1e-15


def test_a_box_away_from_zero_stays_finite_and_contains_the_loss() -> None:
    ev = _evaluate(arb(0.9), [[arb(1, 0.01), arb(0.2, 0.01)]])
    assert ev.loss.is_finite()
    rng = np.random.default_rng(1)
    for w in rng.uniform([0.99, 0.19], [1.01, 0.21], size=(200, 2)):
        assert ev.loss.contains(arb(_loss_reference(0.9, w))), w


def _grad_reference(a: float, w: np.ndarray, h: float = 1e-6) -> np.ndarray:
    # central differences of the closed form: error O(h^2) ~ 1e-12 on this smooth region
    g = np.zeros(2)
    for i in range(2):
        e = np.zeros(2)
        e[i] = h
        g[i] = (_loss_reference(a, w + e) - _loss_reference(a, w - e)) / (2 * h)
    return g


def test_a_box_reaching_a_zero_neuron_encloses_the_gradient_at_every_sampled_point() -> None:
    # the gradient in w is O(0.1) on most of the box (e.g. -0.27 e1 at w = (0.5, 0)): an enclosure
    # that says exactly 0 (a zero neuron's convention applied to a box that only reaches w = 0) is
    # wrong by far more than the 1e-9 slack of the finite differences.
    ev = _evaluate(arb(1), [[arb(0.1, 0.4), arb(0, 0.2)]])
    rng = np.random.default_rng(2)
    for w in rng.uniform([0.05, -0.2], [0.5, 0.2], size=(100, 2)):
        g = _grad_reference(1.0, w)
        for i in range(2):
            ball = ev.grad_W[0][i]
            assert (not ball.is_finite()) or abs(float(ball.mid()) - g[i]) <= float(ball.rad()) + 1e-9, (ball, w, g)
