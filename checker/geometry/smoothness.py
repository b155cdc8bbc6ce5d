"""Local smoothness of L_lambda: the Hessian's spectral norm at a point (hypothesis H3).

The descent lemma guarantees L_lambda(theta - eta g) < L_lambda(theta) when
eta < 2 / beta and beta bounds the Hessian norm on the segment.  We estimate
beta at the initial point by power iteration on Hessian-vector products formed
as central differences of the exact float64 gradient, and report it as an
estimate (the conclusion C1 then checks the actual decrease at every step).
"""

from __future__ import annotations

import numpy as np

from checker.core.engines import Float64Engine
from checker.core.model import Instance
from checker.core.problem import Problem


def _flat_grad(problem: Problem, x: np.ndarray, m: int, d: int) -> np.ndarray:
    a, W = x[:m], x[m:].reshape(m, d)
    ev = problem.evaluate(a, W)
    return np.concatenate([ev.grad_a, ev.grad_W.ravel()])


def hessian_norm_estimate(instance: Instance, *, iterations: int = 60, seed: int = 0,
                          h: float = 1e-5) -> float:
    """Largest |eigenvalue| of the Hessian of L_lambda at the instance's student (estimate).

    h = 1e-5 balances the O(h^2) truncation of the central difference against the
    O(eps/h) rounding of the gradient difference (optimum near eps^(1/3) ~ 6e-6).
    """
    problem = Problem.from_instance(instance, Float64Engine())
    m, d = instance.m, instance.d
    x0 = np.concatenate([problem.a, problem.W.ravel()])
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(x0.size)
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(iterations):
        hv = (_flat_grad(problem, x0 + h * v, m, d) - _flat_grad(problem, x0 - h * v, m, d)) / (2 * h)
        norm = float(np.linalg.norm(hv))
        if norm == 0.0:
            return 0.0
        lam = norm
        v = hv / norm
    return lam
