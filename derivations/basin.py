"""The two facts behind the certified basin's numbers (``checker/basin``, ``docs/basin.md``).

* ``rescaling_curvature``: at a stationary point of L_lambda, along the rescaling
  direction v = (a_j, -w_j) of one neuron (the tangent of the curve (a_j e^s, w_j e^-s),
  which keeps the function, so L is constant on it), the Hessian's quadratic form is
  v^T H v = d^2/ds^2 L_lambda(curve)(0) = 2 lambda ||v||^2: the Rayleigh quotient is
  exactly 2 lambda, so mu <= 2 lambda on every ball around the optimum and the gap level
  mu R^2 / 2 is at most lambda R^2.
* ``contraction_factor``: for 0 < eta <= 2/(mu + beta), 0 < mu <= beta,
  max(|1 - eta mu|, |1 - eta beta|) = 1 - eta mu (the factor of the certificate's claim 4).
"""

from __future__ import annotations

import sympy as sp

from .result import Result, guarded

FAMILY = "basin"


def rescaling_curvature() -> Result:
    def check() -> tuple[bool, str]:
        s, lam, a = sp.symbols("s lambda a", real=True)
        w = sp.symbols("w1:4", real=True)
        # L_lambda along the curve: L is constant on it (same function), only the weight decay varies;
        # at a stationary point the curve's acceleration term grad . gamma'' vanishes, so
        # v^T H v = d^2/ds^2 of L_lambda along the curve at s = 0.
        reg = lam / 2 * ((a * sp.exp(s)) ** 2 + sum((x * sp.exp(-s)) ** 2 for x in w))
        second = sp.diff(reg, s, 2).subs(s, 0)
        v = [sp.diff(a * sp.exp(s), s).subs(s, 0)] + [sp.diff(x * sp.exp(-s), s).subs(s, 0) for x in w]
        v2 = sum(x ** 2 for x in v)
        ok = sp.simplify(second - 2 * lam * v2) == 0 and [sp.simplify(x) for x in v] == [a] + [-x for x in w]
        return ok, f"d^2/ds^2 = {sp.factor(second)}, ||v||^2 = {v2}"

    return guarded("rescaling_curvature", FAMILY,
                   "along v = (a_j, -w_j) at a stationary point: v^T Hess L_lambda v = 2 lambda ||v||^2",
                   "symbolic", check)


def contraction_factor() -> Result:
    def check() -> tuple[bool, str]:
        mu, beta, t = sp.symbols("mu beta t", positive=True)
        # eta = t * 2/(mu + beta), 0 < t <= 1; beta = mu + g, g >= 0
        g = sp.Symbol("g", nonnegative=True)
        eta = 2 * t / (2 * mu + g)
        one_minus_mu = 1 - eta * mu
        # 1 - eta mu >= 0, and (1 - eta mu) - (eta beta - 1) = 2 - eta (mu + beta) = 2 (1 - t) >= 0,
        # and (1 - eta mu) - (1 - eta beta) = eta g >= 0: so 1 - eta mu is the max of both absolute values.
        d1 = sp.simplify(one_minus_mu - (eta * (mu + g) - 1))
        d2 = sp.simplify(one_minus_mu - (1 - eta * (mu + g)))
        nonneg = sp.simplify(one_minus_mu - (g + 2 * mu * (1 - t)) / (2 * mu + g))
        ok = sp.simplify(d1 - 2 * (1 - t)) == 0 and sp.simplify(d2 - eta * g) == 0 and nonneg == 0
        return ok, "1 - eta mu = (g + 2 mu (1 - t))/(2 mu + g) >= 0; minus (eta beta - 1) = 2 (1 - t); " \
                   "minus (1 - eta beta) = eta g"

    return guarded("contraction_factor", FAMILY,
                   "0 < eta <= 2/(mu + beta): max(|1 - eta mu|, |1 - eta beta|) = 1 - eta mu",
                   "algebraic", check)


DERIVATIONS = (rescaling_curvature, contraction_factor)
