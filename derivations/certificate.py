"""The dual certificate: the mixed second derivative H, the gradient of eta, and the
chain of inequalities that turns the certificate into the bounds C3 and C4.

Grade LIKELY for the certificate itself (the paper's Figure 2 is known here only
through machine-written descriptions); the identities below are our own
derivations, proved by SymPy.

* H(u, v) = grad_u grad_v^T k(u, v) = A(phi) I + A1 sin(phi) (s^ s^T - p^ p^T),
  s = u^ + v^, p = v^ - u^, (A, A1) = checker.geometry.certificate.mixed_coefficients:
  (a) equal to the second derivative of ||u|| ||v|| kappa(acos t) (checker.kernel's
  kappa) in R^3; (b) equal to E[sigma'(<u,x>) sigma'(<v,x>) x x^T] by exact
  Gaussian integration; (c) its limits at u = v and u = -v.
* grad_w <beta, grad_v k(w, v)> = H(w, v) beta for beta _|_ v, with grad_v k
  written as the checker computes it (grad_coefficients with the roles swapped).
* Single teacher: the system is diagonal, alpha = sign(a*)/kappa(0), beta = 0,
  and 1 - eta = phi^2/2 + O(phi^3).
* The chain AM-GM, L*_lambda <= lambda sum|a*_i|, Cauchy-Schwarz, |eta| bounds
  and the maximum over L, as one exact algebraic identity with non-negative terms.

R^3 with u = r e_1 is enough for (a): k is rotation invariant, so H(Ru, Rv) =
R H(u, v) R^T, and the closed form transforms the same way; a generic v in R^3
spans the plane of the pair plus one orthogonal direction.
"""

from __future__ import annotations

from typing import Any, Callable

import sympy as sp

from checker.geometry import certificate as cc
from checker import kernel as ck

from .result import Result, bound, guarded

FAMILY = "certificate"

MixedFn = Callable[[Any, Any, Any, str], tuple[Any, Any]]


def _claimed_h(uh: sp.Matrix, vh: sp.Matrix, c: Any, sin_phi: Any, phi: Any, activation: str,
               mixed_fn: MixedFn) -> sp.Matrix:
    """A I + A1 sin(phi) (s s^T/||s||^2 - p p^T/||p||^2), ||s||^2 = 2 + 2c, ||p||^2 = 2 - 2c."""
    A, A1 = mixed_fn(phi, sin_phi, sp.pi, activation)
    s, p = uh + vh, vh - uh
    n = uh.shape[0]
    return A * sp.eye(n) + A1 * sin_phi * (s * s.T / (2 + 2 * c) - p * p.T / (2 - 2 * c))


def mixed_hessian_closed_form(activation: str = "relu", mixed_fn: MixedFn = cc.mixed_coefficients,
                              kappa_fn: Callable[..., Any] = ck.kappa) -> Result:
    """d^2 k / du_a dv_b of the closed form k = ||u|| ||v|| kappa equals the claimed H (R^3)."""

    def check() -> tuple[bool, str]:
        u = sp.symbols("u1:4", real=True)
        v = sp.symbols("v1:4", real=True)
        nu = sp.sqrt(sum(x**2 for x in u))
        nv = sp.sqrt(sum(x**2 for x in v))
        t = sum(x * y for x, y in zip(u, v)) / (nu * nv)
        k = nu * nv * kappa_fn(sp.acos(t), sp.sqrt(1 - t**2), t, sp.pi, activation)
        r = sp.Symbol("r", positive=True)
        at = {u[0]: r, u[1]: 0, u[2]: 0}
        J = sp.Matrix(3, 3, lambda a, b: sp.diff(k, u[a], v[b]).subs(at))
        uh, vh = sp.Matrix([1, 0, 0]), sp.Matrix(v) / nv
        c = vh.dot(uh)
        claimed = _claimed_h(uh, vh, c, sp.sqrt(1 - c**2), sp.acos(c), activation, mixed_fn)
        D = (J - claimed).applyfunc(sp.simplify)
        return D == sp.zeros(3, 3), f"d2k/du dv - H = {D.tolist()} at u = r e1, v generic in R^3"

    return guarded(
        f"mixed_hessian_{activation}_closed_form", FAMILY,
        f"grad_u grad_v^T of ||u|| ||v|| kappa(acos t) = A I + A1 sin(phi)(s^ s^T - p^ p^T) for {activation} "
        f"(checker.geometry.certificate.mixed_coefficients), 0 < phi < pi",
        "symbolic", check)


def _wedges(activation: str, phi: sp.Symbol) -> list[tuple[Any, Any, int]]:
    """(lo, hi, sign of sigma'(x1) sigma'(<v,x>)) on the circle psi in [-pi/2, 3pi/2), v = (cos phi, sin phi).

    cos(psi) > 0 on (-pi/2, pi/2); cos(psi - phi) > 0 on (phi - pi/2, phi + pi/2); 0 < phi < pi.
    """
    h = sp.pi / 2
    if activation == "relu":  # sigma' = 1{z > 0}: both positive
        return [(phi - h, h, 1)]
    return [(-h, phi - h, -1), (phi - h, h, 1), (h, phi + h, -1), (phi + h, 3 * h, 1)]


def mixed_hessian_gaussian_integral(activation: str = "relu",
                                    mixed_fn: MixedFn = cc.mixed_coefficients) -> Result:
    """The claimed H equals E[sigma' sigma' x x^T], by exact integration in polar coordinates.

    In the plane of u = e1 and v = (cos phi, sin phi), x = rho (cos psi, sin psi) with
    density rho exp(-rho^2/2) / (2 pi): the 2x2 block is
    int rho^3 e^{-rho^2/2} drho / (2 pi) * int sign * (cos, sin)(cos, sin)^T dpsi.  In an
    orthogonal direction x_perp is independent of the plane: the diagonal entry is
    E[sigma' sigma'] = int rho e^{-rho^2/2} drho / (2 pi) * int sign dpsi, the cross terms 0.
    """

    def check() -> tuple[bool, str]:
        phi = sp.Symbol("phi", positive=True)
        psi, rho = sp.symbols("psi rho", positive=True)
        radial3 = sp.integrate(rho**3 * sp.exp(-rho**2 / 2), (rho, 0, sp.oo)) / (2 * sp.pi)
        radial1 = sp.integrate(rho * sp.exp(-rho**2 / 2), (rho, 0, sp.oo)) / (2 * sp.pi)
        e = sp.Matrix([sp.cos(psi), sp.sin(psi)])
        block = sp.zeros(2, 2)
        perp = sp.Integer(0)
        for lo, hi, sg in _wedges(activation, phi):
            block += sg * radial3 * (e * e.T).applyfunc(lambda f: sp.integrate(f, (psi, lo, hi)))
            perp += sg * radial1 * (hi - lo)
        uh, vh = sp.Matrix([1, 0]), sp.Matrix([sp.cos(phi), sp.sin(phi)])
        claimed = _claimed_h(uh, vh, sp.cos(phi), sp.sin(phi), phi, activation, mixed_fn)
        D = (block - claimed).applyfunc(lambda f: sp.simplify(sp.trigsimp(f)))
        A, _ = mixed_fn(phi, sp.sin(phi), sp.pi, activation)
        dperp = sp.simplify(perp - A)
        ok = D == sp.zeros(2, 2) and dperp == 0
        return ok, (f"in-plane integral - H = {D.tolist()}; E[sigma' sigma'] - A = {dperp} "
                    f"(E[sigma' sigma'] = {sp.simplify(perp)}), 0 < phi < pi")

    return guarded(
        f"mixed_hessian_{activation}_gaussian_integral", FAMILY,
        f"E[sigma'(<u,x>) sigma'(<v,x>) x x^T] = A I + A1 sin(phi)(s^ s^T - p^ p^T) for {activation} "
        f"(exact polar integration in the plane of u, v; independence off it)",
        "symbolic", check)


def mixed_hessian_limits(activation: str = "relu", mixed_fn: MixedFn = cc.mixed_coefficients) -> Result:
    """H(u, u) and H(u, -u): limits of the closed form vs the Gaussian values.

    Gaussian values: H(u, u) = E[sigma'(x1)^2 x x^T] (relu: E[1{x1>0} x x^T] = I/2 by the
    symmetry x -> -x; abs: E[x x^T] = I); H(u, -u) = E[sigma'(x1) sigma'(-x1) x x^T]
    (relu: 1{x1>0} 1{x1<0} = 0, so 0; abs: sign(x1) sign(-x1) = -1, so -I).
    """
    expected = {"relu": (sp.eye(3) / 2, sp.zeros(3, 3)), "abs": (sp.eye(3), -sp.eye(3))}[activation]

    def check() -> tuple[bool, str]:
        phi = sp.Symbol("phi", positive=True)
        uh = sp.Matrix([1, 0, 0])
        vh = sp.Matrix([sp.cos(phi), sp.sin(phi), 0])
        H = _claimed_h(uh, vh, sp.cos(phi), sp.sin(phi), phi, activation, mixed_fn)
        H = H.applyfunc(sp.trigsimp)
        at0 = H.applyfunc(lambda f: sp.limit(f, phi, 0, "+"))
        atpi = H.applyfunc(lambda f: sp.limit(f, phi, sp.pi, "-"))
        ok = at0 == expected[0] and atpi == expected[1]
        return ok, f"lim phi->0: {at0.tolist()}; lim phi->pi: {atpi.tolist()}"

    vals = {"relu": "I/2 and 0", "abs": "I and -I"}[activation]
    return guarded(
        f"mixed_hessian_{activation}_limits", FAMILY,
        f"the closed form of H tends to the Gaussian values H(u, u), H(u, -u) = {vals} for {activation}",
        "symbolic", check)


def eta_gradient_formula(activation: str = "relu", mixed_fn: MixedFn = cc.mixed_coefficients,
                         grad_fn: Callable[..., tuple[Any, Any]] = ck.grad_coefficients) -> Result:
    """grad_w <beta, grad_v k(w, v)> = H(w, v) beta for beta _|_ v (the beta part of grad eta).

    grad_v k(w, v) is written as the checker computes it: ||w|| (A w^ + B v^) with (A, B)
    = grad_coefficients (k is symmetric).  v = e1, beta = (0, b2, b3), w generic in R^3.
    With the alpha part (grad_w k(w, w*_i) by definition), grad eta = sum alpha_i
    grad_u k(w, w*_i) + sum H(w, w*_i) beta_i.
    """

    def check() -> tuple[bool, str]:
        w = sp.symbols("w1:4", real=True)
        b2, b3 = sp.symbols("b2 b3", real=True)
        beta = sp.Matrix([0, b2, b3])
        nw = sp.sqrt(sum(x**2 for x in w))
        wh, vh = sp.Matrix(w) / nw, sp.Matrix([1, 0, 0])
        c = wh.dot(vh)
        phi, sin_phi = sp.acos(c), sp.sqrt(1 - c**2)
        A, B = grad_fn(phi, sin_phi, sp.pi, activation)
        pairing = beta.dot(nw * (A * wh + B * vh))
        grad = sp.Matrix([sp.diff(pairing, x) for x in w])
        claimed = _claimed_h(wh, vh, c, sin_phi, phi, activation, mixed_fn) * beta
        D = (grad - claimed).applyfunc(sp.simplify)
        return D == sp.zeros(3, 1), f"grad_w <beta, grad_v k> - H beta = {D.T.tolist()}"

    return guarded(
        f"eta_gradient_{activation}", FAMILY,
        f"grad eta(w) = sum_i alpha_i grad_u k(w, w*_i) + sum_i H(w, w*_i) beta_i for {activation} "
        f"(beta_i _|_ w*_i)",
        "symbolic", check)


def single_teacher_certificate(activation: str = "relu", mixed_fn: MixedFn = cc.mixed_coefficients,
                               kappa_fn: Callable[..., Any] = ck.kappa,
                               grad_fn: Callable[..., tuple[Any, Any]] = ck.grad_coefficients) -> Result:
    """m* = 1: alpha = sign(a*)/kappa(0), beta = 0, and 1 - eta(w) = phi^2/2 + O(phi^3).

    The system blocks at u = v = w*: k = kappa(0); grad_u k(w*, w*) = (A(0) + B(0)) w* has no
    tangential part (so the off-diagonal block is 0); H(w*, w*) = A(0) I.  The system is
    diagonal: alpha kappa(0) = sign(a*), A(0) gamma = 0.  Then eta(w) = sign(a*) ||w|| kappa(phi) / kappa(0).
    """

    def check() -> tuple[bool, str]:
        phi = sp.Symbol("phi", positive=True)
        k0 = kappa_fn(sp.Integer(0), sp.Integer(0), sp.Integer(1), sp.pi, activation)
        A0, B0 = grad_fn(sp.Integer(0), sp.Integer(0), sp.pi, activation)
        Am, _ = mixed_fn(sp.Integer(0), sp.Integer(0), sp.pi, activation)
        # grad_u k(u, u) = ||u|| (A(0) u^ + B(0) u^): parallel to u^, tangential part 0 identically.
        diag_ok = sp.simplify(Am - A0) == 0 and sp.simplify(k0) != 0 and sp.simplify(A0) != 0
        ratio = kappa_fn(phi, sp.sin(phi), sp.cos(phi), sp.pi, activation) / k0
        series = sp.series(1 - ratio, phi, 0, 4).removeO()
        expected = phi**2 / 2
        cubic = sp.simplify(series - expected)
        ok = diag_ok and sp.simplify(series.coeff(phi, 2) - sp.Rational(1, 2)) == 0 \
            and series.coeff(phi, 0) == 0 and series.coeff(phi, 1) == 0
        return ok, (f"kappa(0) = {k0}, A(0) = {A0}, B(0) = {B0}, H(w*, w*) = {Am} I; "
                    f"alpha = sign(a*) / ({k0}); 1 - kappa(phi)/kappa(0) = phi^2/2 + ({cubic}) + O(phi^4)")

    return guarded(
        f"single_teacher_certificate_{activation}", FAMILY,
        f"m* = 1 ({activation}): alpha = sign(a*)/kappa(0), beta = 0, 1 - eta = phi^2/2 + O(phi^3)",
        "symbolic", check)


def certificate_inequality_chain() -> Result:
    """lambda (rho S_near + rho' S_far) <= zeta + lambda^2 ||p*||^2 / 4 as a sum of non-negative terms.

    Symbols: Lr = L_lambda(theta), L = L(theta), Ls = L*_lambda, M = sum_j mu_j, Aa = sum|a*_i|,
    Pf = <p*, f_theta>, P = ||p*||, S = sum_near mu_j angle_j^2, F = sum_far mu_j.  Steps (each >= 0):
      T1 = lambda (M - rho S - rho' F - Pf): Pf = sum s_j eta(u_j) <= sum mu_j |eta(u_j)| and
           the |eta| bounds near (1 - rho angle^2) and far (1 - rho');
      T2 = Lr - L - lambda M: AM-GM, (lambda/2)(a_j^2 + ||w_j||^2) - lambda mu_j = (lambda/2)(|a_j| - ||w_j||)^2;
      T3 = lambda Aa - Ls: L*_lambda <= L_lambda(balanced teacher) = lambda sum |a*_i|;
      T4 = lambda (Pf - Aa + P sqrt(L)): <p*, f*> = sum a*_i eta(w*_i) = Aa, Cauchy-Schwarz;
      T5 = (sqrt(L) - lambda P / 2)^2: the maximum of lambda P sqrt(L) - L over L.
    Identity: zeta + lambda^2 P^2/4 - lambda (rho S + rho' F) = T1 + T2 + T3 + T4 + T5.
    """

    def check() -> tuple[bool, str]:
        lam, rho, rhof = sp.symbols("lambda rho rho_far", nonnegative=True)
        Lr, Ls, M, Aa, Pf, P, S, F, a, w = sp.symbols("L_lambda Lstar M A_a P_f P S F a w", real=True)
        sL = sp.Symbol("sqrtL", nonnegative=True)
        L = sL**2
        zeta = Lr - Ls
        T = [lam * (M - rho * S - rhof * F - Pf), Lr - L - lam * M, lam * Aa - Ls,
             lam * (Pf - Aa + P * sL), (sL - lam * P / 2) ** 2]
        identity = sp.expand(zeta + lam**2 * P**2 / 4 - lam * (rho * S + rhof * F) - sum(T))
        am_gm = sp.expand(lam / 2 * (a**2 + w**2) - lam * a * w - lam / 2 * (a - w) ** 2)
        max_l = sp.expand(lam * P * sL - L - (lam**2 * P**2 / 4 - (sL - lam * P / 2) ** 2))
        ok = identity == 0 and am_gm == 0 and max_l == 0
        return ok, (f"identity residue {identity}; AM-GM residue {am_gm} (a = |a_j|, w = ||w_j||); "
                    f"max over L residue {max_l}")

    return guarded(
        "certificate_inequality_chain", FAMILY,
        "lambda (rho sum_near mu_j angle_j^2 + rho_far sum_far mu_j) <= zeta + lambda^2 ||p*||^2/4 "
        "(AM-GM, L* <= lambda sum|a*|, Cauchy-Schwarz, |eta| bounds, max over L)",
        "algebraic", check)


DERIVATIONS = (
    bound(mixed_hessian_closed_form, "mixed_hessian_relu_closed_form", activation="relu"),
    bound(mixed_hessian_closed_form, "mixed_hessian_abs_closed_form", activation="abs"),
    bound(mixed_hessian_gaussian_integral, "mixed_hessian_relu_gaussian_integral", activation="relu"),
    bound(mixed_hessian_gaussian_integral, "mixed_hessian_abs_gaussian_integral", activation="abs"),
    bound(mixed_hessian_limits, "mixed_hessian_relu_limits", activation="relu"),
    bound(mixed_hessian_limits, "mixed_hessian_abs_limits", activation="abs"),
    bound(eta_gradient_formula, "eta_gradient_relu", activation="relu"),
    bound(eta_gradient_formula, "eta_gradient_abs", activation="abs"),
    bound(single_teacher_certificate, "single_teacher_certificate_relu", activation="relu"),
    bound(single_teacher_certificate, "single_teacher_certificate_abs", activation="abs"),
    certificate_inequality_chain,
)
