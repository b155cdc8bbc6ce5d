"""A straightforward mpmath implementation of L_lambda and its gradient, as a user would write it.

The comparison point of ``benchmarks/bench.py`` for the high-precision engine:
Python lists of ``mpmath.mpf``, scalar loops over all neuron pairs, the textbook
relu formulas from t = cos angle (arccos and sqrt(1 - t^2)), nothing shared with
``checker/``.  Not used by the checker; accurate except at t = +-1 (where acos
loses half the digits), which the benchmark instances avoid.
"""

from __future__ import annotations

from typing import Sequence

import mpmath


def evaluate(a: Sequence, W: Sequence[Sequence], a_star: Sequence, W_star: Sequence[Sequence],
             lam: mpmath.mpf) -> tuple[mpmath.mpf, list, list]:
    """(L_lambda, dL_lambda/da, dL_lambda/dW) for relu, at the current mpmath precision."""
    pi = mpmath.pi
    neurons = [(x, list(w)) for x, w in zip(a, W)] + [(-x, list(w)) for x, w in zip(a_star, W_star)]
    m = len(a)
    d = len(W[0])
    norms = [mpmath.sqrt(sum(x * x for x in w)) for _, w in neurons]
    loss = mpmath.mpf(0)
    grad_a = [mpmath.mpf(0)] * m
    grad_W = [[mpmath.mpf(0)] * d for _ in range(m)]
    for p, (cp, wp) in enumerate(neurons):
        for q, (cq, wq) in enumerate(neurons):
            t = sum(x * y for x, y in zip(wp, wq)) / (norms[p] * norms[q])
            t = max(mpmath.mpf(-1), min(mpmath.mpf(1), t))
            phi = mpmath.acos(t)
            s = mpmath.sqrt(1 - t * t)
            kap = (s + (pi - phi) * t) / (2 * pi)
            k = norms[p] * norms[q] * kap
            loss += cp * cq * k
            if p < m:
                grad_a[p] += 2 * cq * k
                # grad_u k(u, v) = ((pi - phi) v + ||v|| sin(phi) u / ||u||) / (2 pi)
                for i in range(d):
                    g = ((pi - phi) * wq[i] + norms[q] * s * wp[i] / norms[p]) / (2 * pi)
                    grad_W[p][i] += 2 * cp * cq * g
    reg = (sum(x * x for x in a) + sum(x * x for w in W for x in w)) / 2
    grad_a = [g + lam * x for g, x in zip(grad_a, a)]
    grad_W = [[g + lam * x for g, x in zip(gr, w)] for gr, w in zip(grad_W, W)]
    return loss + lam * reg, grad_a, grad_W
