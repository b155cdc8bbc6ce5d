"""The early stage (stages 1 and 2 of the whole algorithm), derived.

* ``early_stage_moments``: the Gaussian moments used by the centred stage-1 step,
  m0 = E[sigma(z)], m1 = E[z sigma(z)], e0 = E[sigma'(z)], e1 = E[z sigma'(z)],
  e2 = E[z^2 sigma'(z)], exact, against ``checker.stages.stage1.MOMENTS``; and
  e0 = e2, which makes E[sigma'(<u,x>) x x^T] = e0 (I - u u^T) + e2 u u^T = e2 I
  (so the linear part of the target enters the step as e2 b).  With them
  E[sigma(<w,x>)] = m0 ||w|| and E[x sigma(<w,x>)] = m1 w.
* ``small_init_gradient``: as W -> 0 (a fixed) the gradient of L in w_j tends to
  -2 a_j sum_i a*_i grad_u k(u_j, w*_i) (the student's own terms are O(||W||) since
  grad_u k(u, s v) = s grad_u k(u, v)), and for unit u, v the checker's gradient
  A v + B u has A = kappa'(t), B = kappa(t) - t kappa'(t) (t = <u, v>), whose
  Hermite series are A = sum_k k c_k^2 t^(k-1), B = sum_k (1 - k) c_k^2 t^k.
  Hence the second-Hermite part of the limit gradient is
  -2 a_j (2 c_2^2 sum_i a*_i w*_i w*_i^T u_j - c_2^2 sum_i a*_i <u_j, w*_i>^2 u_j),
  i.e. -(a_j/pi) M u_j + O(t^2) u_j for relu with M = sum_i a*_i w*_i w*_i^T,
  and the part outside span{w*_i} is -2 a_j (sum_i a*_i B(t_ij)) P_perp u_j,
  whose Hermite-0 term c_0^2 sum_i a*_i P_perp u_j is O(1).
* ``centred_correction``: the centred step removes exactly the k = 0 and k = 1
  terms: m0 e1 = c_0^2 and m1 e2 = c_1^2, so 2 a_j (c e1 u_j + e2 b) (c = m0 sum
  a*_i, b = m1 sum a*_i w*_i) = 2 a_j sum_i a*_i (c_0^2 u_j + c_1^2 w*_i); the
  out-of-span coefficient becomes sum_i a*_i (B(t_ij) - c_0^2) = O(t^2).
* ``ridge_solution``: minimizing a^T K a - 2 a^T r + (lambda2/2)||a||^2 (L has no
  factor 1/2) gives (K + (lambda2/2) I) a = r.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from checker.core import kernel as ck
from checker.stages import stage1 as cs1

from .hermite import _Z, gaussian_expectation, hermite_squares
from .kernel import kappa_checker, sigma_with_sign
from .result import Result, bound, guarded

FAMILY = "early_stage"
#: Highest power of t compared in the Hermite series of A and B.
ORDER = 8


def _moments(activation: str) -> dict[str, Any]:
    parts = (sigma_with_sign(activation, _Z, -1), sigma_with_sign(activation, _Z, 1))
    dparts = (sp.diff(parts[0], _Z), sp.diff(parts[1], _Z))
    return {"m0": gaussian_expectation(parts, sp.Integer(1)), "m1": gaussian_expectation(parts, _Z),
            "e0": gaussian_expectation(dparts, sp.Integer(1)), "e1": gaussian_expectation(dparts, _Z),
            "e2": gaussian_expectation(dparts, _Z**2)}


def early_stage_moments(activation: str = "relu") -> Result:
    """Exact m0, m1, e0, e1, e2 of the activation; the checker's constants; e0 = e2."""

    def check() -> tuple[bool, str]:
        mo = _moments(activation)
        table = cs1.MOMENTS[activation]
        bad = [k for k in ("m0", "m1", "e1", "e2") if abs(float(sp.N(mo[k], 30)) - table[k]) > 4e-16]
        even = sp.simplify(mo["e0"] - mo["e2"]) == 0
        detail = ", ".join(f"{k} = {sp.nsimplify(v)}" for k, v in mo.items())
        return not bad and even, detail + (f"; checker constants differ at {bad}" if bad else "") + \
            ("" if even else "; e0 != e2")

    return guarded(f"early_stage_moments_{activation}", FAMILY,
                   f"{activation}: E[sigma], E[z sigma], E[z sigma'], E[z^2 sigma'] exact = checker's MOMENTS "
                   "(to 4e-16); E[sigma'] = E[z^2 sigma'] so E[sigma'(<u,x>) x x^T] = e2 I",
                   "symbolic", check)


def small_init_gradient(activation: str = "relu") -> Result:
    """A = kappa'(t), B = kappa - t kappa'; their Hermite series sum k c_k^2 t^(k-1), sum (1-k) c_k^2 t^k."""

    def check() -> tuple[bool, str]:
        t = sp.Symbol("t", real=True)
        kap = kappa_checker(t, activation)
        A, B = ck.grad_coefficients(sp.acos(t), sp.sqrt(1 - t**2), sp.pi, activation)
        ok_a = sp.simplify(A - sp.diff(kap, t)) == 0
        ok_b = sp.simplify(B - (kap - t * sp.diff(kap, t))) == 0
        sq = hermite_squares(activation, ORDER + 1)
        sa = sp.series(A, t, 0, ORDER).removeO()
        sb = sp.series(B, t, 0, ORDER).removeO()
        ra = sp.expand(sa - sum(k * sq[k] * t**(k - 1) for k in range(1, ORDER + 1)))
        rb = sp.expand(sb - sum((1 - k) * sq[k] * t**k for k in range(ORDER)))
        c2 = sq[2]
        return (ok_a and ok_b and ra == 0 and rb == 0,
                f"A = kappa': {ok_a}; B = kappa - t kappa': {ok_b}; series residuals to O(t^{ORDER}): "
                f"A {ra}, B {rb}; second-Hermite part of A is 2 c_2^2 t = {sp.simplify(2 * c2)} t, "
                f"of B is -c_2^2 t^2 = {sp.simplify(-c2)} t^2; constant of B (out-of-span, O(1)) c_0^2 = {sq[0]}")

    return guarded(f"small_init_gradient_{activation}", FAMILY,
                   f"{activation}: as W -> 0, grad_w_j L -> -2 a_j sum_i a*_i (A(t_ij) w*_i + B(t_ij) u_j), "
                   "A = sum_k k c_k^2 t^(k-1), B = sum_k (1-k) c_k^2 t^k; second-Hermite part "
                   "-2 a_j c_2^2 (2 M u_j - sum_i a*_i t_ij^2 u_j), out-of-span part -2 a_j sum_i a*_i B(t_ij) P_perp u_j",
                   "symbolic", check)


def centred_correction(activation: str = "relu") -> Result:
    """m0 e1 = c_0^2 and m1 e2 = c_1^2: the centred step removes the k = 0 and k = 1 Hermite terms."""

    def check() -> tuple[bool, str]:
        mo = _moments(activation)
        sq = hermite_squares(activation, 1)
        r0 = sp.simplify(mo["m0"] * mo["e1"] - sq[0])
        r1 = sp.simplify(mo["m1"] * mo["e2"] - sq[1])
        return r0 == 0 and r1 == 0, f"m0 e1 - c_0^2 = {r0}, m1 e2 - c_1^2 = {r1}"

    return guarded(f"centred_correction_{activation}", FAMILY,
                   f"{activation}: 2 a_j (c e1 u_j + e2 b) = 2 a_j sum_i a*_i (c_0^2 u_j + c_1^2 w*_i), "
                   "c = m0 sum a*_i, b = m1 sum a*_i w*_i (unit teachers)", "symbolic", check)


def centred_kernel_is_even() -> Result:
    """relu: kappa(t) - c_0^2 - c_1^2 t is even in t, so the centred step cannot tell w*_i from -w*_i."""

    def check() -> tuple[bool, str]:
        # t = cos phi and -t = cos(pi - phi), phi in (0, pi): no inverse cosine involved
        phi = sp.Symbol("phi", positive=True)
        sq = hermite_squares("relu", 1)

        def kc(p: Any) -> Any:
            return ck.kappa(p, sp.sin(p), sp.cos(p), sp.pi, "relu") - sq[0] - sq[1] * sp.cos(p)

        res = sp.simplify(kc(phi) - kc(sp.pi - phi))
        return res == 0, f"kappa_c(phi) - kappa_c(pi - phi) = {res} for phi in (0, pi)"

    return guarded("centred_kernel_is_even", FAMILY,
                   "relu: the centred kernel kappa(t) - 1/(2 pi) - t/4 is even (relu(z) - z/2 = |z|/2): "
                   "hence the orientation step after the centred stage 1", "symbolic", check)


def ridge_solution() -> Result:
    """(K + (lambda2/2) I)^{-1} r minimizes a^T K a - 2 a^T r + (lambda2/2) ||a||^2 (3 x 3, symbolic)."""

    def check() -> tuple[bool, str]:
        n = 3
        K = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"k{min(i, j)}{max(i, j)}", real=True))
        r = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"r{i}", real=True))
        a = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"a{i}", real=True))
        lam = sp.Symbol("lambda2", positive=True)
        obj = (a.T * K * a)[0] - 2 * (a.T * r)[0] + lam / 2 * (a.T * a)[0]
        grad = sp.Matrix([sp.diff(obj, x) for x in a])
        sol = (K + lam / 2 * sp.eye(n)).LUsolve(r)
        res = sp.simplify(grad.subs(dict(zip(a, sol))))
        hess = sp.hessian(obj, list(a))
        ok_h = sp.simplify(hess - 2 * (K + lam / 2 * sp.eye(n))) == sp.zeros(n, n)
        return res == sp.zeros(n, 1) and ok_h, (f"gradient at the solution: {list(res)}; Hessian = "
                                                f"2 (K + lambda2/2 I): {ok_h} (convex when K is a Gram matrix)")

    return guarded("ridge_solution", FAMILY,
                   "argmin_a a^T K a - 2 a^T r + (lambda2/2)||a||^2 = (K + (lambda2/2) I)^{-1} r, "
                   "r = K_st a*; lambda2 -> 0 gives the least-squares floor", "symbolic", check)


DERIVATIONS = (
    bound(early_stage_moments, "early_stage_moments_relu", activation="relu"),
    bound(early_stage_moments, "early_stage_moments_abs", activation="abs"),
    bound(small_init_gradient, "small_init_gradient_relu", activation="relu"),
    bound(small_init_gradient, "small_init_gradient_abs", activation="abs"),
    bound(centred_correction, "centred_correction_relu", activation="relu"),
    bound(centred_correction, "centred_correction_abs", activation="abs"),
    centred_kernel_is_even,
    ridge_solution,
)
