"""Closed forms behind the studies (``checker/studies/``): the equiangular teacher of the
scaling family, the invariances of the unbalance and split families, and the Student t
distribution function that the log-log fits invert.

* Cone: with v_1..v_m the unit, centred standard basis vectors of R^m (a regular
  simplex, <v_i, v_l> = -1/(m - 1) for i != l) and u_i = cos(alpha) e_0 + sin(alpha) v_i,
  <u_i, u_l> = cos Delta iff cos^2 alpha = ((m - 1) cos Delta + 1) / m
  (``checker.studies.scaling.cone_cos2_alpha``).
* Unbalance: (c a)(w / c) = a w (same function), weight decay (lambda/2)(c^2 a^2 + ||w||^2/c^2).
* Split: duplicates (sqrt(1+s) a, sqrt(1+s) w) and (-sqrt(s) a, sqrt(s) w) have signed
  masses (1+s) S and -s S, output sum a w (same function: sigma is positively
  1-homogeneous), and weight decay (1 + 2 s) times that of (a, w).
* Student t: for t > 0, P(T <= t) = 1 - I_x(nu/2, 1/2)/2 with x = nu/(nu + t^2): its
  t-derivative is the t density and its value at t = 0 is 1/2 (``t_quantile``).
"""

from __future__ import annotations

import sympy as sp

from checker.studies.scaling import cone_cos2_alpha

from .result import Result, guarded

FAMILY = "studies"


def cone_angle() -> Result:
    def check() -> tuple[bool, str]:
        m = sp.Symbol("m", integer=True, positive=True)
        cd = sp.Symbol("cos_Delta", real=True)
        # simplex: e_i - (1/m) 1 has squared norm 1 - 1/m, inner product -1/m between i != l
        norm2, cross = 1 - 1 / m, -1 / m
        simplex = sp.simplify(cross / norm2 - (-1 / (m - 1)))
        c2 = cone_cos2_alpha(m, cd)
        inner = c2 + (1 - c2) * (-1 / (m - 1))
        diff = sp.simplify(inner - cd)
        return simplex == 0 and diff == 0, f"simplex residual {simplex}, <u_i,u_l> - cos Delta = {diff}"

    return guarded("cone_angle", FAMILY, "equiangular cone: cos^2 alpha = ((m-1) cos Delta + 1)/m gives "
                   "pairwise angle Delta", "symbolic", check)


def family_invariances() -> Result:
    def check() -> tuple[bool, str]:
        a, c, s, lam = sp.symbols("a c s lambda", positive=True)
        w = sp.Symbol("w", positive=True)  # ||w||
        unb_fn = sp.simplify((c * a) * (w / c) - a * w)
        unb_reg = sp.simplify(lam / 2 * ((c * a) ** 2 + (w / c) ** 2) - lam / 2 * (c**2 * a**2 + w**2 / c**2))
        p, q = sp.sqrt(1 + s), sp.sqrt(s)
        split_fn = sp.simplify(p * a * p * w + (-q * a) * q * w - a * w)
        masses = (sp.simplify(p * a * p * w - (1 + s) * a * w), sp.simplify((-q * a) * (q * w) + s * a * w))
        split_reg = sp.simplify(lam / 2 * ((p * a) ** 2 + (p * w) ** 2 + (q * a) ** 2 + (q * w) ** 2)
                                - (1 + 2 * s) * lam / 2 * (a**2 + w**2))
        ok = unb_fn == 0 and unb_reg == 0 and split_fn == 0 and masses == (0, 0) and split_reg == 0
        return ok, f"unbalance {unb_fn}, split function {split_fn}, masses {masses}, weight decay {split_reg}"

    return guarded("family_invariances", FAMILY, "unbalance keeps a w; split keeps the function, has signed "
                   "masses (1+s)S, -sS and (1+2s) times the weight decay", "symbolic", check)


def student_t_cdf() -> Result:
    def check() -> tuple[bool, str]:
        nu, t = sp.symbols("nu t", positive=True)
        x = nu / (nu + t**2)
        a, b = nu / 2, sp.Rational(1, 2)
        beta_pdf = x ** (a - 1) * (1 - x) ** (b - 1) * sp.gamma(a + b) / (sp.gamma(a) * sp.gamma(b))
        cdf_derivative = -sp.Rational(1, 2) * beta_pdf * sp.diff(x, t)
        density = sp.gamma((nu + 1) / 2) / (sp.sqrt(nu * sp.pi) * sp.gamma(nu / 2)) \
            * (1 + t**2 / nu) ** (-(nu + 1) / 2)
        ratio = sp.simplify(sp.powsimp(sp.expand_power_base(cdf_derivative / density, force=True), force=True))
        at_zero = x.subs(t, 0)  # I_1 = 1, so the cdf is 1 - 1/2 = 1/2 at t = 0
        return sp.simplify(ratio - 1) == 0 and sp.simplify(at_zero - 1) == 0, f"ratio {ratio}, x(0) = {at_zero}"

    return guarded("student_t_cdf", FAMILY, "P(T <= t) = 1 - I_{nu/(nu+t^2)}(nu/2, 1/2)/2 for t > 0",
                   "symbolic", check)


DERIVATIONS = (cone_angle, family_invariances, student_t_cdf)
