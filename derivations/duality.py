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


def _checker_scale(lam: Any, U: Any, rt: Any, loss: Any, scale_fn: ScaleFn, round_down: Any = None) -> Any:
    """The checker's dual scale on SymPy numbers: min and max become sympy.Min and sympy.Max."""
    return scale_fn(lam, U, rt, loss, sp.Integer(1), round_down=round_down, minimum=sp.Min, maximum=sp.Max)


def _resolve_min(expr: Any) -> Any:
    """Replace each Min(x, y) (and Max(x, y)) by the argument that is provably the smaller (larger):
    x - y or y - x simplifies to a non-negative expression under the symbols' assumptions; else leave it."""

    def pick(*args: Any, largest: bool = False) -> Any:
        x, y = args
        if sp.simplify(y - x).is_nonnegative:
            return y if largest else x
        if sp.simplify(x - y).is_nonnegative:
            return x if largest else y
        return (sp.Max if largest else sp.Min)(x, y, evaluate=False)

    if not isinstance(expr, sp.Basic):
        return expr
    return expr.replace(sp.Max, lambda *a: pick(*a, largest=True)).replace(sp.Min, pick)


def _at_most(expr: Any, bound: Any) -> bool:
    """expr <= bound, proved through the lattice rules: Max(x, y) <= b when both are, Min(x, y) <= b
    when one is; otherwise b - expr must simplify to a non-negative expression."""
    if isinstance(expr, sp.Max):
        return all(_at_most(x, bound) for x in expr.args)
    if isinstance(expr, sp.Min):
        return any(_at_most(x, bound) for x in expr.args)
    return bool(sp.simplify(bound - expr).is_nonnegative)


def _at_least(expr: Any, bound: Any) -> bool:
    """expr >= bound, by the same rules with the roles of Min and Max exchanged."""
    if isinstance(expr, sp.Min):
        return all(_at_least(x, bound) for x in expr.args)
    if isinstance(expr, sp.Max):
        return any(_at_least(x, bound) for x in expr.args)
    return bool(sp.simplify(expr - bound).is_nonnegative)


def _scale_cases() -> list[tuple[str, dict[Any, Any], Any, Any]]:
    """The three cases of the optimal feasible scale, each parametrized by non-negative symbols.

    Returns (name, {lambda: ., U: ., rt: ., L: .}, the expected s, a generic feasible t written
    with non-negative symbols) for: the peak <r, f*>/L inside [0, lambda/(2U)]; the peak above
    it (the feasibility bound is active); <r, f*> <= 0 (s = 0).
    """
    U, L, P, Q, eps, tau, R = sp.symbols("U L P Q epsilon tau R", positive=True)
    return [
        # peak P = rt/L, lambda/(2U) = P + eps (> P); feasible t = P + eps - tau (tau <= P + eps)
        ("peak inside", {"lambda": 2 * U * (P + eps), "U": U, "rt": L * P, "L": L}, P, P + eps - tau),
        # lambda/(2U) = Q below the peak Q + eps; feasible t = Q - tau (tau <= Q)
        ("feasibility bound active", {"lambda": 2 * U * Q, "U": U, "rt": L * (Q + eps), "L": L}, Q, Q - tau),
        # rt = -R <= 0 (R > 0; R = 0 is the limit): s = 0; feasible t = tau (tau <= Q = lambda/(2U))
        ("<r, f*> < 0", {"lambda": 2 * U * Q, "U": U, "rt": -R, "L": L}, sp.Integer(0), tau),
    ]


def scaled_dual_feasible(scale_fn: ScaleFn = cd.dual_scale) -> Result:
    """p = 2 s r with the checker's s (``duality.dual_scale``), U >= sup|E[r sigma]|: 0 <= 2 s U <= lambda,
    also when lambda / (2U) and the peak are rounded down (as the rigorous bound does)."""

    def check() -> tuple[bool, str]:
        delta = sp.Symbol("delta", nonnegative=True)  # the rounding: down(x) = x - delta
        parts, ok = [], True
        for name, case, _, _ in _scale_cases():
            q = case["lambda"] / (2 * case["U"])
            for rd, label in ((None, "exact"), (lambda x: x - delta, "rounded down")):
                s = _resolve_min(_checker_scale(case["lambda"], case["U"], case["rt"], case["L"], scale_fn, rd))
                good = _at_most(s, q) and _at_least(s, 0)  # 0 <= s <= lambda/(2U): 2 s U <= lambda
                ok = ok and good
                parts.append(f"{name} ({label}): s = {s}, 0 <= s <= lambda/(2U) = {q}: {good}")
        lam, u, rt, loss = sp.symbols("lambda U rt L", positive=True)
        edges = (_checker_scale(sp.Integer(0), u, rt, loss, scale_fn),
                 sp.simplify(_checker_scale(lam, sp.Integer(0), rt, loss, scale_fn)))
        ok = ok and edges[0] == 0 and sp.simplify(edges[1] - rt / loss) == 0
        return ok, ("; ".join(parts) + f"; s(lambda = 0) = {edges[0]}, s(U = 0) = {edges[1]} (no feasibility "
                    "bound: g = 0); then |E[p sigma]| = 2 s |E[r sigma]| <= 2 s U <= lambda")

    return guarded(
        "scaled_dual_feasible", FAMILY,
        "p = 2 s r with the checker's s = min(lambda/(2U), max(0, <r, f*>/L)) (checker.rigorous.duality."
        "dual_scale), U >= sup_w |E[r sigma(<w,x>)]|: p is dual feasible (0 <= 2 s U <= lambda), also with "
        "lambda/(2U) and the peak rounded down",
        "algebraic", check)


def optimal_dual_scale(scale_fn: ScaleFn = cd.dual_scale, dual_fn: Any = None) -> Result:
    """The checker's s maximizes D(2 t r) = 2 t <r, f*> - t^2 L over the feasible t in [0, lambda/(2U)]."""

    def check() -> tuple[bool, str]:
        dual = cd.dual_objective if dual_fn is None else dual_fn
        parts, ok = [], True
        for name, case, expected, t in _scale_cases():
            s = sp.simplify(_resolve_min(_checker_scale(case["lambda"], case["U"], case["rt"], case["L"],
                                                        scale_fn)))
            same = sp.simplify(s - expected) == 0
            # D(s) - D(t) = 2 (s - t)(rt - s L) + (s - t)^2 L: in each case a product of positive
            # symbols and squares once factored (SymPy decides its sign from the assumptions).
            diff = sp.expand(dual(s, case["rt"], case["L"]) - dual(t, case["rt"], case["L"]))
            nonneg = bool(sp.factor(diff).is_nonnegative)
            ok = ok and same and nonneg
            parts.append(f"{name}: s = {s} (expected {expected}), D(s) - D(t) = {sp.factor(diff)}")
        return ok, "; ".join(parts) + " (every symbol positive: each difference is >= 0)"

    return guarded(
        "optimal_dual_scale", FAMILY,
        "the checker's s = min(lambda/(2U), max(0, <r, f*>/L)) maximizes the dual value 2 t <r, f*> - t^2 L "
        "over the feasible scales 0 <= t <= lambda/(2U) (the concave parabola's peak clipped to the "
        "feasible interval)",
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


DERIVATIONS = (weak_duality, scaled_dual_feasible, optimal_dual_scale, scaled_dual_value, certificate_quadratic_step)
