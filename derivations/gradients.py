"""grad_u k(u, v) by differentiating the closed form, and the Euler identity.

In coordinates u, v in R^3 (symbols), k(u, v) = ||u|| ||v|| kappa(acos t) with
t = <u, v>/(||u|| ||v||) and kappa the checker's own function; SymPy
differentiates it in u_1, u_2, u_3 and the result is compared with
||v|| (A v_hat + B u_hat), (A, B) = checker.core.kernel.grad_coefficients.

d = 3 is enough: a displacement of u orthogonal to u and v changes neither
<u, v> nor ||u|| to first order, so the gradient lies in span(u, v) in any
dimension, and R^3 holds a generic pair together with one orthogonal direction.

Simplification: after differentiating, acos(t) is replaced by a symbol Phi,
sqrt(1 - t^2) by a positive symbol S, and ||u||^2, ||v||^2 by the squares of
positive symbols.  If the difference vanishes identically in these free symbols
it vanishes at their true values, so this is a proof (valid where u, v are
non-zero and not parallel, i.e. 0 < phi < pi, where k is differentiable in t).

Hessian in the first argument: checker.rigorous.arb_objective.KernelSum.hessian sums,
per teacher row, Hess_w k(w, v) = (||v|| B(phi)/||w||)(I - w^ w^T + e e^T)
with e = (v^ - cos phi w^)/sin phi.  ``hessian_closed_form`` compares it with
the second derivatives of the same closed form, in the same free symbols; the
difference is then a rational function of them and ``sympy.cancel`` (its
canonical form p/q) is 0 exactly when it vanishes identically.  d = 3 again
suffices: k depends on u only through ||u||^2 and <u, v>, so both sides are
combinations of I, u u^T, u v^T, v u^T, v v^T with scalar coefficients in
(||u||, ||v||, <u, v>), and for non-parallel u, v in R^3 these five matrices
are linearly independent (I is not in span(u, v) (x) span(u, v)), so equality
in R^3 is equality of the coefficients, hence in every dimension.
"""

from __future__ import annotations

from typing import Any, Callable

import sympy as sp

from checker.core import kernel as ck

from .kernel import KappaFn
from .result import Result, bound, guarded

FAMILY = "gradients"

GradFn = Callable[[Any, Any, Any, str], tuple[Any, Any]]

_D = 3


def _closed_form(activation: str, kappa_fn: KappaFn) -> dict[str, Any]:
    u = sp.symbols(f"u1:{_D + 1}", real=True)
    v = sp.symbols(f"v1:{_D + 1}", real=True)
    u2 = sp.Add(*[x**2 for x in u])
    v2 = sp.Add(*[x**2 for x in v])
    nu, nv = sp.sqrt(u2), sp.sqrt(v2)
    t = sp.Add(*[x * y for x, y in zip(u, v)]) / (nu * nv)
    phi, sin_phi = sp.acos(t), sp.sqrt(1 - t**2)
    k = nu * nv * kappa_fn(phi, sin_phi, t, sp.pi, activation)
    return dict(u=u, v=v, u2=u2, v2=v2, nu=nu, nv=nv, t=t, phi=phi, sin_phi=sin_phi, k=k)


def _free_symbols_form(expr: Any, cf: dict[str, Any]) -> Any:
    """Replace acos(t), 1 - t^2, ||u||^2, ||v||^2 by free symbols (see module docstring)."""
    n_u, n_v, s = sp.symbols("N_u N_v S", positive=True)
    big_phi = sp.Symbol("Phi", real=True)
    expr = expr.xreplace({cf["phi"]: big_phi, 1 - cf["t"]**2: s**2})
    return expr.xreplace({cf["u2"]: n_u**2, cf["v2"]: n_v**2})


def gradient_closed_form(activation: str = "relu", kappa_fn: KappaFn = ck.kappa,
                         grad_fn: GradFn = ck.grad_coefficients) -> Result:
    """d k / d u_i equals ||v|| (A v_hat + B u_hat)_i, i = 1..3, for the checker's (A, B)."""

    def check() -> tuple[bool, str]:
        cf = _closed_form(activation, kappa_fn)
        a, b = grad_fn(cf["phi"], cf["sin_phi"], sp.pi, activation)
        residues = []
        for i in range(_D):
            claimed = cf["nv"] * (a * cf["v"][i] / cf["nv"] + b * cf["u"][i] / cf["nu"])
            residues.append(sp.simplify(_free_symbols_form(sp.diff(cf["k"], cf["u"][i]) - claimed, cf)))
        ok = all(r == 0 for r in residues)
        return ok, (f"dk/du_i - ||v||(A v_i/||v|| + B u_i/||u||) = {residues} for i = 1..3 "
                    f"(A = {a.xreplace({cf['phi']: sp.Symbol('phi')})}, "
                    f"B = {b.xreplace({cf['sin_phi']: sp.Symbol('sin_phi')})})")

    return guarded(
        f"gradient_{activation}_closed_form", FAMILY,
        f"grad_u of ||u|| ||v|| kappa(acos t) in R^3 = ||v|| (A v_hat + B u_hat) with "
        f"checker.core.kernel.grad_coefficients (A, B) for {activation}, 0 < phi < pi",
        "symbolic", check)


def euler_identity(activation: str = "relu", kappa_fn: KappaFn = ck.kappa,
                   grad_fn: GradFn = ck.grad_coefficients) -> Result:
    """<u, grad_u k> = k: on the differentiated closed form, and on the checker's (A, B).

    For the checker's gradient, <u, ||v|| (A v_hat + B u_hat)> = ||u|| ||v|| (A cos phi + B),
    so Euler holds for it iff kappa(phi) = A(phi) cos phi + B(phi).
    """

    def check() -> tuple[bool, str]:
        cf = _closed_form(activation, kappa_fn)
        euler = sp.simplify(sp.Add(*[x * sp.diff(cf["k"], x) for x in cf["u"]]) - cf["k"])
        phi = sp.Symbol("phi", positive=True)
        a, b = grad_fn(phi, sp.sin(phi), sp.pi, activation)
        coeff = sp.simplify(a * sp.cos(phi) + b - kappa_fn(phi, sp.sin(phi), sp.cos(phi), sp.pi, activation))
        return euler == 0 and coeff == 0, (
            f"sum_i u_i dk/du_i - k = {euler} (R^3 coordinates); "
            f"A cos phi + B - kappa = {coeff} (checker formulas)")

    return guarded(
        f"euler_identity_{activation}", FAMILY,
        f"<u, grad_u k(u, v)> = k(u, v) (1-homogeneity) for {activation}: on the differentiated "
        f"closed form and on checker (A, B): kappa = A cos phi + B",
        "symbolic", check)


HessFn = Callable[[Any, Any, Any, Any, Any, Any, Any, str], Any]


def arb_objective_hessian(w_hat: Any, v_hat: Any, norm_w: Any, norm_v: Any, phi: Any, sin_phi: Any,
                          cos_phi: Any, activation: str) -> sp.Matrix:
    """Hess_w k(w, v) = (||v|| B/||w||)(I - w^ w^T + e e^T), e = (v^ - cos phi w^)/sin phi.

    The per-row term of checker.rigorous.arb_objective.KernelSum.hessian (e e^T is its
    ``_tangent_dyad``), transcribed because that routine runs on Arb balls only;
    B is the checker's own ``checker.core.kernel.grad_coefficients``.
    """
    _, b = ck.grad_coefficients(phi, sin_phi, sp.pi, activation)
    e = (v_hat - cos_phi * w_hat) / sin_phi
    return norm_v * b / norm_w * (sp.eye(len(w_hat)) - w_hat * w_hat.T + e * e.T)


def hessian_closed_form(activation: str = "relu", kappa_fn: KappaFn = ck.kappa,
                        hessian_fn: HessFn = arb_objective_hessian) -> Result:
    """d^2 k / du_i du_j equals the claimed Hessian entry (i, j), i, j = 1..3."""

    def check() -> tuple[bool, str]:
        cf = _closed_form(activation, kappa_fn)
        u = cf["u"]
        w_hat, v_hat = sp.Matrix(u) / cf["nu"], sp.Matrix(cf["v"]) / cf["nv"]
        claimed = sp.Matrix(hessian_fn(w_hat, v_hat, cf["nu"], cf["nv"], cf["phi"], cf["sin_phi"],
                                       cf["t"], activation))
        if claimed.shape != (_D, _D):
            return False, f"claimed Hessian has shape {claimed.shape}, expected {(_D, _D)}"
        grad = [sp.diff(cf["k"], x) for x in u]
        exact = [[sp.diff(grad[i], u[j]) if j >= i else None for j in range(_D)] for i in range(_D)]
        residues = sp.zeros(_D, _D)
        for i in range(_D):
            for j in range(_D):
                # k is smooth for 0 < phi < pi, so d^2k/du_i du_j = d^2k/du_j du_i (Schwarz).
                second = exact[min(i, j)][max(i, j)]
                residues[i, j] = sp.cancel(_free_symbols_form(second - claimed[i, j], cf))
        ok = residues.is_zero_matrix is True
        return ok, (f"d^2k/du_i du_j - H_ij = {residues.tolist()} for i, j = 1..3; H is "
                    f"checker.rigorous.arb_objective.KernelSum.hessian's per-row term (transcribed: it runs "
                    f"on Arb balls only) with B from checker.core.kernel.grad_coefficients")

    return guarded(
        f"hessian_{activation}_closed_form", FAMILY,
        f"Hess_u of ||u|| ||v|| kappa(acos t) in R^3 = (||v|| B/||u||)(I - u^ u^T + e e^T), "
        f"e = (v^ - cos phi u^)/sin phi, B from checker.core.kernel.grad_coefficients for {activation} "
        f"(checker.rigorous.arb_objective.KernelSum.hessian), 0 < phi < pi",
        "symbolic", check)


DERIVATIONS = (
    bound(gradient_closed_form, "gradient_relu_closed_form", activation="relu"),
    bound(gradient_closed_form, "gradient_abs_closed_form", activation="abs"),
    bound(euler_identity, "euler_identity_relu", activation="relu"),
    bound(euler_identity, "euler_identity_abs", activation="abs"),
    bound(hessian_closed_form, "hessian_relu_closed_form", activation="relu"),
    bound(hessian_closed_form, "hessian_abs_closed_form", activation="abs"),
)
