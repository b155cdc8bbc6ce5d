"""The algebra behind the checker's duality bound on the gap.

Functions are elements of L^2(N(0, I_d)).  Each identity below involves at most
three functions (f*, Phi nu, p), and any three vectors of an inner-product space
span a subspace isometric to R^k, k <= 3; so checking the identity for generic
symbolic vectors of R^3 proves it in L^2.  The measure enters only through
<p, Phi nu> = int eta_p d nu with eta_p(w) = E[p(x) sigma(<w, x>)] (Fubini),
written for an atomic nu = sum_j s_j delta_{u_j} with distinct u_j, the
measures the checker builds from a network.

The dual scale s and the dual value D are not restated here: the derivations
call the checker's own ``checker.rigorous.duality.dual_scale`` and
``dual_objective`` with SymPy symbols (as ``derivations/kernel.py`` does with
``checker/core/kernel.py``), so what is proved is the code that runs.
"""

from __future__ import annotations

from typing import Any, Callable

import sympy as sp

from checker.rigorous import duality as cd

from .result import Result, guarded

FAMILY = "duality"

_N = 3  # dimension of the representing Euclidean space
_ATOMS = 3


def _vec(name: str) -> list[Any]:
    return list(sp.symbols(f"{name}1:{_N + 1}", real=True))


def _dot(x: list[Any], y: list[Any]) -> Any:
    return sp.Add(*[a * b for a, b in zip(x, y)])


def weak_duality() -> Result:
    """||r||^2 + lambda ||nu||_TV - D(p) = ||r - p/2||^2 + sum_j (lambda |s_j| - s_j eta_p(u_j)) >= 0."""

    def check() -> tuple[bool, str]:
        lam = sp.Symbol("lambda", positive=True)
        f_star, g, p = _vec("f"), _vec("g"), _vec("p")  # g = Phi nu
        r = [x - y for x, y in zip(f_star, g)]
        s = sp.symbols(f"s1:{_ATOMS + 1}", real=True)
        eta = sp.symbols(f"eta1:{_ATOMS + 1}", real=True)  # eta_p(u_j), |eta_j| <= lambda when p is feasible
        # <p, Phi nu> = sum_j s_j eta_p(u_j) (Fubini): the last bracket of the identity is zero.
        pairing = sp.Add(*[x * y for x, y in zip(s, eta)])
        tv = sp.Add(*[sp.Abs(x) for x in s])
        primal = _dot(r, r) + lam * tv
        dual = _dot(p, f_star) - _dot(p, p) / 4
        half = [x - y / 2 for x, y in zip(r, p)]
        slack = sp.Add(*[lam * sp.Abs(x) - x * e for x, e in zip(s, eta)])
        identity = sp.expand(primal - dual - (_dot(half, half) + slack) + (_dot(p, g) - pairing))
        # Each slack term lambda|s_j| - s_j eta_j >= 0 when |eta_j| <= lambda: s = +-A, eta = +-e with
        # A, e >= 0 and lambda = e + delta, delta >= 0; all four sign cases are sums of non-negative terms.
        a_, e_, d_ = sp.symbols("A e delta", nonnegative=True)
        terms = [sp.expand((e_ + d_) * sp.Abs(s1 * a_) - s1 * a_ * s2 * e_) for s1 in (1, -1) for s2 in (1, -1)]
        ok = identity == 0 and all(bool(x.is_nonnegative) for x in terms)
        return ok, (f"primal - D(p) - ||r - p/2||^2 - sum_j(lambda|s_j| - s_j eta_j) "
                    f"+ (<p, Phi nu> - sum_j s_j eta_j) = {identity} (R^3, {_ATOMS} atoms); "
                    f"lambda|s| - s eta over the sign cases (lambda = |eta| + delta): {terms}, all >= 0")

    return guarded(
        "weak_duality", FAMILY,
        "||r||^2 + lambda ||nu||_TV >= <p, f*> - ||p||^2/4 when |E[p sigma(<w,x>)]| <= lambda for all unit w "
        "(||r - p/2||^2 >= 0 and <p, Phi nu> <= lambda ||nu||_TV)",
        "algebraic", check)


ScaleFn = Callable[..., Any]
DualFn = Callable[[Any, Any, Any], Any]


def _checker_scale(lam: Any, U: Any, scale_fn: ScaleFn) -> Any:
    """The checker's dual scale on SymPy numbers: min becomes sympy.Min."""
    return scale_fn(lam, U, sp.Integer(1), minimum=sp.Min)


def _resolve_min(expr: Any) -> Any:
    """Replace each Min(x, y) by the argument that is provably the smaller (x - y or y - x
    simplifies to a non-negative expression under the symbols' assumptions); else leave it."""

    def pick(*args: Any) -> Any:
        x, y = args
        if sp.simplify(y - x).is_nonnegative:
            return x
        if sp.simplify(x - y).is_nonnegative:
            return y
        return sp.Min(x, y, evaluate=False)

    return expr.replace(sp.Min, pick)


def scaled_dual_feasible(scale_fn: ScaleFn = cd.dual_scale) -> Result:
    """p = 2 s r with the checker's s (``duality.dual_scale``), U >= sup|E[r sigma]|: 2 s U <= lambda."""

    def check() -> tuple[bool, str]:
        lam, u = sp.symbols("lambda U", positive=True)
        eps = sp.Symbol("epsilon", nonnegative=True)
        eps_pos = sp.Symbol("epsilon", positive=True)
        s = _checker_scale(lam, u, scale_fn)
        # Case 2U <= lambda, written lambda = 2U + eps: the checker's s must be 1 and 2 s U <= lambda.
        s1 = sp.simplify(_resolve_min(s.subs(lam, 2 * u + eps)))
        case1 = sp.simplify(2 * s1 * u - (2 * u + eps))
        # Case 2U > lambda, written U = lambda/2 + eps: s must be lambda/(2U) (then 2 s U = lambda).
        u2 = lam / 2 + eps_pos
        s2 = sp.simplify(_resolve_min(s.subs(u, u2)))
        case2 = sp.simplify(2 * s2 * u2 - lam)
        # The two edge cases of the code path: lambda = 0 gives s = 0, U = 0 gives s = 1.
        edges = (scale_fn(sp.Integer(0), u, sp.Integer(1), minimum=sp.Min),
                 scale_fn(lam, sp.Integer(0), sp.Integer(1), minimum=sp.Min))
        ok = (s1 == 1 and bool(case1.is_nonpositive) and sp.simplify(s2 - lam / (2 * u2)) == 0
              and case2 == 0 and edges == (0, 1))
        return ok, (f"checker s = {s}; lambda = 2U + eps: s = {s1}, 2 s U - lambda = {case1}; "
                    f"U = lambda/2 + eps: s = {s2}, 2 s U - lambda = {case2}; "
                    f"s(lambda = 0) = {edges[0]}, s(U = 0) = {edges[1]}; then |E[p sigma]| = 2 s |E[r sigma]| "
                    f"<= 2 s U <= lambda")

    return guarded(
        "scaled_dual_feasible", FAMILY,
        "p = 2 s r with the checker's s = min(1, lambda/(2U)) (checker.rigorous.duality.dual_scale), "
        "U >= sup_w |E[r sigma(<w,x>)]|: p is dual feasible (2 s U <= lambda)",
        "algebraic", check)


def scaled_dual_value(dual_fn: DualFn = cd.dual_objective) -> Result:
    """The checker's D (``duality.dual_objective``) is <p, f*> - ||p||^2/4 at p = 2 s r."""

    def check() -> tuple[bool, str]:
        s = sp.Symbol("s", real=True)
        r, f_star = _vec("r"), _vec("f")
        p = [2 * s * x for x in r]
        checker_d = dual_fn(s, _dot(r, f_star), _dot(r, r))  # (s, <r, f*>, ||r||^2 = L)
        diff = sp.expand(_dot(p, f_star) - _dot(p, p) / 4 - checker_d)
        return diff == 0, f"<2sr, f*> - ||2sr||^2/4 - dual_objective(s, <r, f*>, ||r||^2) = {diff} (R^3)"

    return guarded(
        "scaled_dual_value", FAMILY,
        "D(2 s r) = <p, f*> - ||p||^2/4 equals the checker's dual_objective(s, <r, f*>, L) = "
        "2 s <r, f*> - s^2 L, so zeta(theta) <= L_lambda(theta) - D(2 s r)",
        "symbolic", check)


def certificate_quadratic_step() -> Result:
    """max over L >= 0 of lambda ||p*|| sqrt(L) - L is lambda^2 ||p*||^2 / 4 (sum of squares)."""

    def check() -> tuple[bool, str]:
        lam, norm_p = sp.symbols("lambda P", positive=True)  # P = ||p*||
        y = sp.Symbol("y", nonnegative=True)  # y = sqrt(L)
        c = lam * norm_p
        bound_ = lam**2 * norm_p**2 / 4
        sos = sp.expand(bound_ - (c * y - y**2) - (y - c / 2)**2)
        argmax = sp.solve(sp.diff(c * y - y**2, y), y)
        attained = len(argmax) == 1 and sp.simplify((c * y - y**2).subs(y, argmax[0]) - bound_) == 0
        return sos == 0 and attained, (
            f"lambda^2 P^2/4 - (lambda P y - y^2) - (y - lambda P/2)^2 = {sos}; maximum attained at "
            f"sqrt(L) = {argmax} (>= 0)")

    return guarded(
        "certificate_quadratic_step", FAMILY,
        "max_{L >= 0} (lambda ||p*|| sqrt(L) - L) = lambda^2 ||p*||^2 / 4 (the last step of the certificate bound)",
        "algebraic", check)


DERIVATIONS = (weak_duality, scaled_dual_feasible, scaled_dual_value, certificate_quadratic_step)
