"""The single-teacher optimum L*_lambda, proved optimal over all signed measures.

Teacher f* = a* sigma(<w*, x>), ||w*|| = 1.  Write K1 = kappa(1) = E[sigma(z)^2]
(kappa(1) in t, i.e. angle 0).  Over the one-atom measures c delta_{w*} with
sign(c) = sign(a*),

    P(c) = (a* - c)^2 K1 + lambda |c|,

whose stationary point is c0 = a* - lambda sign(a*) / (2 K1), of the sign of a*
iff |a*| > lambda / (2 K1).  Optimality over ALL measures is proved by the dual
certificate p = 2 (f* - f_opt) = 2 (a* - c0) sigma(<w*, x>):

* D(p) = <p, f*> - ||p||^2 / 4 equals P(c0) (so by weak duality, see
  ``derivations/duality.py``, no measure does better);
* feasibility: E[p sigma(<w, x>)] = 2 (a* - c0) kappa(t), and |2 (a* - c0)| = lambda / K1,
  so |E[p sigma]| <= lambda for all unit w iff 0 <= kappa(t) <= K1 on [-1, 1],
  proved from the sign of kappa'(t) on [-1, 0] and [0, 1].

The value is also attained by a width-1 network (a = sign(c0) sqrt|c0|,
w = sqrt|c0| w*, balanced, so L_lambda = P(c0) by the AM-GM equality), hence
L*_lambda = P(c0).  relu (K1 = 1/2): c0 = a* - lambda sign(a*), value
lambda |a*| - lambda^2 / 2, for |a*| > lambda.  abs (K1 = 1): derived below,
not assumed.
"""

from __future__ import annotations

from typing import Any, Callable

import sympy as sp
from sympy.calculus.util import function_range

from checker.core import kernel as ck

from .kernel import KappaFn, kappa_checker
from .result import Result, bound, guarded

FAMILY = "optimum"

ValueFn = Callable[[Any, Any], Any]        # (|a*|, lambda) -> L*_lambda
MassFn = Callable[[Any, Any, Any], Any]    # (a*, sign(a*), lambda) -> optimal signed mass

#: The reference values the checker's tests use (relu from docs/formalization.md; abs derived
#: by ``single_teacher_optimum``).
SINGLE_TEACHER_VALUE: dict[str, ValueFn] = {
    "relu": lambda alpha, lam: lam * alpha - lam**2 / 2,
    "abs": lambda alpha, lam: lam * alpha - lam**2 / 4,
}
SINGLE_TEACHER_MASS: dict[str, MassFn] = {
    "relu": lambda a_star, s, lam: a_star - lam * s,
    "abs": lambda a_star, s, lam: a_star - lam * s / 2,
}


def kappa_bounds(activation: str, kappa_fn: KappaFn = ck.kappa) -> tuple[Any, Any, str]:
    """(min, max) of the checker's kappa(t) on [-1, 1], from the sign of kappa' on [-1, 0] and [0, 1].

    Raises ArithmeticError if kappa' changes sign inside one of the two halves.
    """
    t = sp.Symbol("t", real=True)
    kt = kappa_checker(t, activation, kappa_fn)
    dk = sp.simplify(sp.diff(kt, t))
    at = {x: sp.simplify(kt.subs(t, x)) for x in (-1, 0, 1)}
    lows, highs, notes = [], [], []
    for lo, hi in ((-1, 0), (0, 1)):
        rng = function_range(dk, t, sp.Interval(lo, hi))
        if bool(rng.inf >= 0):
            lows.append(at[lo]), highs.append(at[hi])
            notes.append(f"kappa' in {rng} on [{lo}, {hi}]: nondecreasing")
        elif bool(rng.sup <= 0):
            lows.append(at[hi]), highs.append(at[lo])
            notes.append(f"kappa' in {rng} on [{lo}, {hi}]: nonincreasing")
        else:
            raise ArithmeticError(f"kappa' = {dk} changes sign on [{lo}, {hi}] (range {rng})")
    lo_val, hi_val = sp.Min(*lows), sp.Max(*highs)
    detail = (f"kappa'(t) = {dk}; {'; '.join(notes)}; kappa(-1, 0, 1) = "
              f"{at[-1]}, {at[0]}, {at[1]}; {lo_val} <= kappa <= {hi_val}")
    return lo_val, hi_val, detail


def kappa_monotone(activation: str = "relu", kappa_fn: KappaFn = ck.kappa) -> Result:
    """0 <= kappa(t) <= kappa(1) on [-1, 1] (the dual-feasibility condition of the single teacher)."""
    how = {"relu": "kappa'(t) >= 0 on [-1, 1] (nondecreasing)",
           "abs": "kappa'(t) has the sign of t (even, nondecreasing on [0, 1])"}[activation]

    def check() -> tuple[bool, str]:
        lo, hi, detail = kappa_bounds(activation, kappa_fn)
        k1 = sp.simplify(kappa_fn(sp.Integer(0), sp.Integer(0), sp.Integer(1), sp.pi, activation))
        return bool(lo >= 0) and sp.simplify(hi - k1) == 0, f"{detail}; kappa(1) = {k1}"

    return guarded(
        f"kappa_{activation}_monotone", FAMILY,
        f"{activation}: {how}, hence 0 <= kappa(t) <= kappa(1) on [-1, 1]",
        "symbolic", check)


def single_teacher_optimum(activation: str = "relu", kappa_fn: KappaFn = ck.kappa,
                           claimed_value: ValueFn | None = None,
                           claimed_mass: MassFn | None = None) -> Result:
    """Derive the single-teacher optimum and certify it with the dual point p = 2 (f* - f_opt)."""
    value_fn = claimed_value or SINGLE_TEACHER_VALUE[activation]
    mass_fn = claimed_mass or SINGLE_TEACHER_MASS[activation]
    lam_, alpha_ = sp.symbols("lambda |a*|", positive=True)
    claim_str = f"{value_fn(alpha_, lam_)}"
    threshold_str = f"{lam_ / (2 * sp.Rational(ck.kappa_at_one(activation)))}"

    def check() -> tuple[bool, str]:
        lam, delta = sp.symbols("lambda delta", positive=True)
        c = sp.Symbol("c", real=True)
        k1 = sp.simplify(kappa_fn(sp.Integer(0), sp.Integer(0), sp.Integer(1), sp.pi, activation))
        if not bool(k1 > 0):
            return False, f"kappa(1) = {k1} is not positive"
        threshold = lam / (2 * k1)
        lo, hi, bounds_detail = kappa_bounds(activation, kappa_fn)
        feasible_shape = bool(lo >= 0) and sp.simplify(hi - k1) == 0
        failures, values = [], {}
        for s in (1, -1):
            alpha = threshold + delta  # |a*| > lambda / (2 K1), delta > 0 arbitrary
            a_star = s * alpha
            primal = (a_star - c)**2 * k1 + lam * s * c  # lambda |c| for sign(c) = s
            roots = sp.solve(sp.diff(primal, c), c)
            if len(roots) != 1:
                failures.append(f"s={s}: stationary points {roots}")
                continue
            c0 = roots[0]
            value = sp.simplify(primal.subs(c, c0))
            q = 2 * (a_star - c0)  # p = q sigma(<w*, x>)
            dual = q * a_star * k1 - q**2 * k1 / 4  # <p, f*> - ||p||^2 / 4
            checks = {
                "sign(c0) = sign(a*)": bool((s * c0).is_positive),
                "P(c0) = D(p)": sp.simplify(value - dual) == 0,
                "|E[p sigma(<w*,x>)]| = lambda": sp.simplify(sp.Abs(q) * k1 - lam) == 0,
                "value = claimed": sp.simplify(value - value_fn(alpha, lam)) == 0,
                "mass = claimed": sp.simplify(c0 - mass_fn(a_star, s, lam)) == 0,
            }
            failures += [f"s={s}: {name} fails" for name, ok in checks.items() if not ok]
            values[s] = (sp.simplify(c0.subs(delta, alpha_ - threshold)),
                         sp.simplify(value.subs(delta, alpha_ - threshold)))
        if not feasible_shape:
            failures.append("0 <= kappa <= kappa(1) fails on [-1, 1]")
        found = "; ".join(f"sign(a*) = {s:+d}: mass {m}, value {v}" for s, (m, v) in values.items())
        detail = (f"kappa(1) = {k1}; threshold |a*| > {threshold}; {found} "
                  f"(with a* = sign(a*) |a*|); feasibility: {bounds_detail}")
        if failures:
            detail += "; FAILED: " + ", ".join(failures)
        return not failures, detail

    return guarded(
        f"single_teacher_optimum_{activation}", FAMILY,
        f"{activation}, m* = 1, |a*| > {threshold_str}: L*_lambda = {claim_str} over all signed measures, "
        f"certified by the dual point p = 2 (f* - f_opt)",
        "symbolic", check)


DERIVATIONS = (
    bound(kappa_monotone, "kappa_relu_monotone", activation="relu"),
    bound(kappa_monotone, "kappa_abs_monotone", activation="abs"),
    bound(single_teacher_optimum, "single_teacher_optimum_relu", activation="relu"),
    bound(single_teacher_optimum, "single_teacher_optimum_abs", activation="abs"),
)
