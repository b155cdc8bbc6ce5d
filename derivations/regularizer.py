"""Weight decay against the total-variation norm (AM-GM), and L_lambda >= P(nu_theta).

With mu_j = |a_j| ||w_j|| and nu_theta = sum_j s_j delta_{u_j} (s_j = a_j ||w_j||,
u_j = w_j/||w_j||), positive homogeneity of sigma gives f_theta = Phi nu_theta,
so L(theta) = ||Phi nu_theta - f*||^2, and

    L_lambda(theta) - P(nu_theta) = sum_j (lambda/2)(|a_j| - ||w_j||)^2
                                    + lambda (sum_j mu_j - ||nu_theta||_TV),

both terms >= 0 (the second by the triangle inequality for the TV norm, with
equality when no two neurons of opposite sign share a direction).
"""

from __future__ import annotations

import sympy as sp

from .kernel import SIGMA
from .result import Result, bound, guarded

FAMILY = "regularizer"

_M = 3


def amgm_weight_decay() -> Result:
    """(lambda/2)(a^2 + ||w||^2) - lambda |a| ||w|| = (lambda/2)(|a| - ||w||)^2 >= 0, = 0 iff |a| = ||w||."""

    def check() -> tuple[bool, str]:
        lam = sp.Symbol("lambda", positive=True)
        alpha, nw = sp.symbols("alpha n_w", nonnegative=True)  # alpha = |a|, n_w = ||w||
        a = sp.Symbol("a", real=True)
        w_sq = sp.Add(*[x**2 for x in sp.symbols("w1:4", real=True)])
        # a^2 = |a|^2 and ||w||^2 = sum w_i^2: the exact substitutions behind alpha, n_w.
        if sp.simplify(sp.Abs(a)**2 - a**2) != 0 or sp.sqrt(w_sq)**2 != w_sq:
            return False, "|a|^2 != a^2 or ||w||^2 != sum w_i^2"
        gap = lam / 2 * (alpha**2 + nw**2) - lam * alpha * nw
        sos = lam / 2 * (alpha - nw)**2
        identity = sp.expand(gap - sos)
        zeros = sp.solve(sp.Eq(sos, 0), alpha)
        ok = identity == 0 and zeros == [nw]
        return ok, (f"(lambda/2)(|a|^2 + ||w||^2) - lambda|a|||w|| - (lambda/2)(|a| - ||w||)^2 = {identity}; "
                    f"the square vanishes iff |a| in {zeros} (lambda > 0)")

    return guarded(
        "amgm_weight_decay", FAMILY,
        "(lambda/2)(a^2 + ||w||^2) >= lambda |a| ||w||, equality iff |a| = ||w|| (sum of squares)",
        "algebraic", check)


def activation_homogeneity(activation: str = "relu") -> Result:
    """sigma(c z) = c sigma(z) for c > 0, hence a sigma(<w, x>) = s sigma(<u, x>), s = a||w||."""

    def check() -> tuple[bool, str]:
        c = sp.Symbol("c", positive=True)
        y = sp.Symbol("y", positive=True)
        sigma = SIGMA[activation]
        cases = [sp.simplify(sigma(c * z) - c * sigma(z)) for z in (y, -y, sp.Integer(0))]
        return all(x == 0 for x in cases), f"sigma(c z) - c sigma(z) for z > 0, z < 0, z = 0: {cases}"

    return guarded(
        f"activation_homogeneity_{activation}", FAMILY,
        f"{activation}(c z) = c {activation}(z) for c > 0 (cases z > 0, z < 0, z = 0): f_theta = Phi nu_theta",
        "symbolic", check)


def regularized_loss_dominates_p() -> Result:
    """L_lambda(theta) - P(nu_theta) is a sum of non-negative terms (m = 3 neurons, symbolic)."""

    def check() -> tuple[bool, str]:
        lam = sp.Symbol("lambda", positive=True)
        loss = sp.Symbol("L", nonnegative=True)  # = ||Phi nu_theta - f*||^2, same on both sides
        tv = sp.Symbol("T", nonnegative=True)    # ||nu_theta||_TV <= sum_j mu_j
        alpha = sp.symbols(f"alpha1:{_M + 1}", nonnegative=True)  # |a_j|
        nw = sp.symbols(f"n1:{_M + 1}", nonnegative=True)         # ||w_j||
        mu = [x * y for x, y in zip(alpha, nw)]
        l_lambda = loss + lam / 2 * sp.Add(*[x**2 + y**2 for x, y in zip(alpha, nw)])
        p_value = loss + lam * tv
        terms = sp.Add(*[lam / 2 * (x - y)**2 for x, y in zip(alpha, nw)]) + lam * (sp.Add(*mu) - tv)
        identity = sp.expand(l_lambda - p_value - terms)
        return identity == 0, (f"L_lambda - P(nu_theta) - [sum_j (lambda/2)(|a_j| - ||w_j||)^2 "
                               f"+ lambda (sum_j mu_j - ||nu_theta||_TV)] = {identity}; first sum >= 0 "
                               f"(squares), second >= 0 (triangle inequality ||sum s_j delta_uj||_TV <= sum |s_j|)")

    return guarded(
        "regularized_loss_dominates_p", FAMILY,
        "L_lambda(theta) >= P(nu_theta) term by term; equality if balanced and no two neurons of "
        "opposite sign share a direction",
        "algebraic", check)


DERIVATIONS = (
    amgm_weight_decay,
    bound(activation_homogeneity, "activation_homogeneity_relu", activation="relu"),
    bound(activation_homogeneity, "activation_homogeneity_abs", activation="abs"),
    regularized_loss_dominates_p,
)
