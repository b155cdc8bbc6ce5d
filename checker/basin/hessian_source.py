"""The one place the basin takes its Hessian and gradient enclosures of L_lambda from.

theta = (a_1..a_m, vec W) (W row by row, ``checker.core.hessian.flatten``); inputs are
lists of python-flint balls (a box of parameters), outputs balls that contain the exact
values for every point of the box.  The Hessian is ``checker.core.hessian.loss_hessian``
and the gradient ``checker.core.objective.evaluate``, both run on Arb balls through the
ball engine of ``checker.rigorous.critical`` (every radius kept, collinear-safe unit tangents).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from flint import arb

from checker.core import hessian as core_hessian
from checker.core import objective
from checker.rigorous.critical import BallEngine


_ENGINE = BallEngine()


def _arrays(a: Sequence[arb], W: Sequence[Sequence[arb]], a_star: Sequence[arb],
            W_star: Sequence[Sequence[arb]]) -> tuple[np.ndarray, ...]:
    obj = lambda rows: np.array([list(r) for r in rows], dtype=object)  # noqa: E731
    return np.array(list(a), dtype=object), obj(W), np.array(list(a_star), dtype=object), obj(W_star)


def hessian_enclosure(activation: str, a: Sequence[arb], W: Sequence[Sequence[arb]], a_star: Sequence[arb],
                      W_star: Sequence[Sequence[arb]], lam: arb) -> list[list[arb]]:
    """Hess L_lambda over the box (both layers trained), an n x n list of balls."""
    A, WW, As, Ws = _arrays(a, W, a_star, W_star)
    H = core_hessian.loss_hessian(_ENGINE, activation, A, WW, As, Ws, lam, "both")
    return [list(row) for row in H]


def gradient_enclosure(activation: str, a: Sequence[arb], W: Sequence[Sequence[arb]], a_star: Sequence[arb],
                       W_star: Sequence[Sequence[arb]], lam: arb) -> list[arb]:
    """grad L_lambda over the box, in the order of theta."""
    A, WW, As, Ws = _arrays(a, W, a_star, W_star)
    ev = objective.evaluate(_ENGINE, activation, A, WW, As, Ws, lam)
    return list(ev.grad_a) + list(np.asarray(ev.grad_W).reshape(-1))
