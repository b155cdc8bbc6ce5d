"""The two facts behind the certified basin's numbers (``checker/basin``, ``docs/basin.md``).

* ``rescaling_curvature``: at a stationary point of L_lambda, along the rescaling
  direction v = (a_j, -w_j) of one neuron (the tangent of the curve (a_j e^s, w_j e^-s),
  which keeps the function, so L is constant on it), the Hessian's quadratic form is
  v^T H v = d^2/ds^2 L_lambda(curve)(0) = 2 lambda ||v||^2: the Rayleigh quotient is
  exactly 2 lambda, so mu <= 2 lambda on every ball around the optimum and the gap level
  mu R^2 / 2 is at most lambda R^2.
* ``contraction_factor``: for 0 < eta <= 2/(mu + beta), 0 < mu <= beta,
  max(|1 - eta mu|, |1 - eta beta|) = 1 - eta mu (the factor of the certificate's claim 4).

The over-parameterized route (``checker/basin/over.py``):

* ``split_keeps_the_network``: for (cos, sin) with cos, sin > 0 and cos^2 + sin^2 = 1, the two
  neurons cos (a, w) and sin (a, w) compute a sigma(<w, x>) (relu and abs, both branches) and
  carry the weight decay of (a, w): every point of the arc Gamma has the value of theta*;
* ``over_ratio_constants``: the Taylor weights of grad . D (1) and of 2 zeta (2 (1 - s)) over
  [0, 1] differ by 2s - 1, with integral 0 and absolute integral 1/2, and 2 (1 - s) integrates
  to 1; with <grad, D> >= 2 zeta - (e/2)||D||^2 and ||D||^2 <= 2 zeta/mu this gives
  <grad, D> >= (2 - e/mu) zeta, and Cauchy-Schwarz gives ||grad||^2 >= (2 - e/mu)^2 (mu/2) zeta;
* ``over_path_constant``: the Lojasiewicz step sqrt(z) - sqrt(y) >= (z - y)/(2 sqrt z) for
  0 <= y <= z (the difference is (sqrt z - sqrt y)^2/(2 sqrt z)), and the path constant
  2 / ((1 - eta beta/2) sqrt(c_PL)) is increasing in eta and equals K = 4/sqrt(c_PL) at
  eta = 1/beta, so K bounds it for every step 0 < eta <= 1/beta.
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


def split_keeps_the_network() -> Result:
    def check() -> tuple[bool, str]:
        a, w2 = sp.symbols("a w2", real=True)
        p, q = sp.symbols("p q", positive=True)  # the Pythagorean parametrization of (cos, sin)
        c, s = (p**2 - q**2) / (p**2 + q**2), 2 * p * q / (p**2 + q**2)
        ok = sp.simplify(c**2 + s**2 - 1) == 0
        zp = sp.Symbol("zp", positive=True)
        for sigma in (lambda u: sp.Max(u, 0), sp.Abs):
            for arg in (zp, -zp):  # <w, x> positive, negative
                # c > 0 is needed for relu's branch: take p > q
                cc = c.subs(p, p + q)
                ss = s.subs(p, p + q)
                lhs = cc * a * sigma(cc * arg) + ss * a * sigma(ss * arg)
                ok = ok and sp.simplify(lhs - a * sigma(arg)) == 0
        reg = sp.simplify((c * a) ** 2 + (s * a) ** 2 + (c * w2) ** 2 + (s * w2) ** 2 - a**2 - w2**2)
        ok = ok and reg == 0
        return ok, ("c a sigma(c u) + s a sigma(s u) = a sigma(u) for u > 0 and u < 0 (relu, abs); "
                    "(c a)^2 + (s a)^2 + ||c w||^2 + ||s w||^2 = a^2 + ||w||^2")

    return guarded("split_keeps_the_network", FAMILY,
                   "cos, sin > 0, cos^2 + sin^2 = 1: the split neurons cos (a, w), sin (a, w) compute a sigma(<w, x>) "
                   "with the same weight decay", "symbolic", check)


def over_ratio_constants() -> Result:
    def check() -> tuple[bool, str]:
        s = sp.Symbol("s", real=True)
        half = sp.Rational(1, 2)
        zero = sp.integrate(2 * s - 1, (s, 0, 1))
        abs_int = sp.integrate(1 - 2 * s, (s, 0, half)) + sp.integrate(2 * s - 1, (s, half, 1))
        one = sp.integrate(2 * (1 - s), (s, 0, 1))
        # 1 (the weight of grad . D = D^T int H ds D) minus 2 (1 - s) (that of 2 zeta) is 2s - 1
        weights = sp.expand(1 - 2 * (1 - s) - (2 * s - 1))
        z, e, mu = sp.symbols("zeta e mu", positive=True)
        # worst case ||D||^2 = 2 zeta/mu: 2 zeta - (e/2) ||D||^2 = (2 - e/mu) zeta
        c_d = sp.simplify((2 * z - e / 2 * (2 * z / mu)) / z)
        # ||grad||^2 >= (c_D zeta)^2 / ||D||^2 >= c_D^2 zeta^2 / (2 zeta/mu)
        c_pl = sp.simplify(((2 - e / mu) * z) ** 2 / (2 * z / mu) / z)
        ok = (zero == 0 and abs_int == half and one == 1 and weights == 0
              and sp.simplify(c_d - (2 - e / mu)) == 0 and sp.simplify(c_pl - (2 - e / mu) ** 2 * mu / 2) == 0)
        return ok, "int (2s - 1) = 0, int |2s - 1| = 1/2, int 2 (1 - s) = 1; c_D = 2 - e/mu, c_PL = (2 - e/mu)^2 mu/2"

    return guarded("over_ratio_constants", FAMILY,
                   "<grad, D> >= 2 zeta - (e/2)||D||^2 and ||D||^2 <= 2 zeta/mu give c_D = 2 - e/mu and "
                   "c_PL = c_D^2 mu/2", "algebraic", check)


def over_path_constant() -> Result:
    def check() -> tuple[bool, str]:
        zs, ys = sp.symbols("zs ys", positive=True)  # sqrt z, sqrt y
        step = sp.simplify((zs - ys) - (zs**2 - ys**2) / (2 * zs) - (zs - ys) ** 2 / (2 * zs))
        c, t = sp.symbols("c t", positive=True)  # c = c_PL, eta = t / beta, 0 < t <= 1
        kprime = 2 / ((1 - t / 2) * sp.sqrt(c))
        at_one = sp.simplify(kprime.subs(t, 1) - 4 / sp.sqrt(c))
        slope = sp.simplify(sp.diff(kprime, t) * (1 - t / 2) ** 2 * sp.sqrt(c))  # = 1 > 0
        ok = step == 0 and at_one == 0 and slope == 1
        return ok, ("(sqrt z - sqrt y) - (z - y)/(2 sqrt z) = (sqrt z - sqrt y)^2/(2 sqrt z); "
                    "K'(eta) = 2/((1 - eta beta/2) sqrt(c_PL)), increasing, K'(1/beta) = 4/sqrt(c_PL)")

    return guarded("over_path_constant", FAMILY,
                   "the Lojasiewicz step and the path constant K = 4/sqrt(c_PL) for every 0 < eta <= 1/beta",
                   "algebraic", check)


DERIVATIONS = (rescaling_curvature, contraction_factor, split_keeps_the_network, over_ratio_constants,
               over_path_constant)
