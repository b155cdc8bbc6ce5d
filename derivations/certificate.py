"""The dual certificate: the mixed second derivative H, the gradient of eta, and the
chain of inequalities that turns the certificate into the bounds C3 and C4.

Grade LIKELY for the certificate itself (the paper's Figure 2 is known here only
through machine-written descriptions); the identities below are our own
derivations, proved by SymPy.

* H(u, v) = grad_u grad_v^T k(u, v) = A(phi) I + A1 sin(phi) (s^ s^T - p^ p^T),
  s = u^ + v^, p = v^ - u^, (A, A1) = checker.geometry.certificate.mixed_coefficients:
  (a) equal to the second derivative of ||u|| ||v|| kappa(acos t) (checker.core.kernel's
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
from checker.core import kernel as ck

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


# ----------------------------------------------------------------- the premises of the chain
def _sigma_is_homogeneous(activation: str) -> tuple[bool, str]:
    """sigma(c z) = c sigma(z) for c > 0 (SymPy on both signs of z)."""
    from .kernel import sigma_with_sign

    c = sp.Symbol("c", positive=True)
    z = sp.Symbol("z", positive=True)
    res = [sp.simplify(sigma_with_sign(activation, c * sg * z, sg) - c * sigma_with_sign(activation, sg * z, sg))
           for sg in (1, -1)]
    return all(r == 0 for r in res), f"sigma(c z) - c sigma(z) for z > 0, z < 0: {res}"


def certificate_premise_optimum_below_teacher() -> Result:
    """L*_lambda <= lambda sum_i |a*_i|: the balanced teacher network is a feasible point.

    theta* = (a_i, w_i) = (sign(a*_i) sqrt|a*_i|, sqrt|a*_i| w*_i): by the 1-homogeneity of sigma,
    a_i sigma(<w_i, x>) = a*_i sigma(<w*_i, x>), so f_theta* = f* and L(theta*) = 0; the weight decay
    (the checker's own ``objective.regularizer`` on SymPy arrays) is (lambda/2) sum (|a*_i| + |a*_i|
    ||w*_i||^2) = lambda sum |a*_i| for unit w*_i.  L*_lambda is an infimum, hence at most that.
    """

    def check() -> tuple[bool, str]:
        import numpy as np

        from checker.core import objective

        ms, d = 2, 3
        A = sp.symbols(f"A1:{ms + 1}", positive=True)  # |a*_i|
        sg = sp.symbols(f"g1:{ms + 1}")  # sign(a*_i) in {+1, -1}
        Wst = [sp.symbols(f"w{i}_1:{d + 1}", real=True) for i in range(1, ms + 1)]
        a = np.array([sg[i] * sp.sqrt(A[i]) for i in range(ms)], dtype=object)
        W = np.array([[sp.sqrt(A[i]) * x for x in Wst[i]] for i in range(ms)], dtype=object)
        lam = sp.Symbol("lambda", positive=True)
        reg = lam * objective.regularizer(a, W)
        reg_unit = sp.expand(reg).subs({sg[i]**2: 1 for i in range(ms)})
        for i in range(ms):  # ||w*_i||^2 = 1
            reg_unit = sp.expand(reg_unit).subs(Wst[i][0]**2, 1 - sum(x**2 for x in Wst[i][1:]))
        residue = sp.simplify(reg_unit - lam * sum(A))
        hom = [_sigma_is_homogeneous(act) for act in ck.ACTIVATIONS]
        # output weight times the homogeneous factor: sign(a*) sqrt|a*| sqrt|a*| = a*
        out_w = [sp.simplify(sg[i] * sp.sqrt(A[i]) * sp.sqrt(A[i]) - sg[i] * A[i]) for i in range(ms)]
        ok = residue == 0 and all(h for h, _ in hom) and all(x == 0 for x in out_w)
        return ok, (f"(lambda) regularizer(balanced teacher) - lambda sum|a*_i| = {residue} (unit w*_i, "
                    f"sign^2 = 1); a_i sqrt|a*_i| - a*_i = {out_w}; homogeneity: "
                    + "; ".join(f"{act}: {msg}" for act, (_, msg) in zip(ck.ACTIVATIONS, hom)))

    return guarded(
        "certificate_premise_optimum_below_teacher", FAMILY,
        "L*_lambda <= lambda sum_i |a*_i| (the balanced teacher network fits f* exactly and pays "
        "lambda sum |a*_i| of weight decay)",
        "algebraic", check)


def certificate_premise_pairing_with_teacher() -> Result:
    """<p*, f*> = sum_i a*_i eta(w*_i) = sum_i |a*_i| from the interpolation conditions eta(w*_i) = sign(a*_i)."""

    def check() -> tuple[bool, str]:
        ms = 3
        a = sp.symbols(f"a1:{ms + 1}", real=True, nonzero=True)
        eta = sp.symbols(f"eta1:{ms + 1}", real=True)  # eta(w*_i) = E[p* sigma(<w*_i, x>)]
        # Fubini: <p*, f*> = E[p* sum_i a*_i sigma(<w*_i,x>)] = sum_i a*_i eta(w*_i).
        pairing = sum(x * e for x, e in zip(a, eta))
        interp = {e: sp.sign(x) for x, e in zip(a, eta)}  # the certificate's interpolation conditions
        residue = sp.simplify(pairing.subs(interp) - sum(sp.Abs(x) for x in a))
        return residue == 0, f"sum a*_i eta(w*_i) with eta(w*_i) = sign(a*_i), minus sum|a*_i| = {residue}"

    return guarded(
        "certificate_premise_pairing_with_teacher", FAMILY,
        "<p*, f*> = sum_i |a*_i| (Fubini and the interpolation conditions eta(w*_i) = sign(a*_i))",
        "symbolic", check)


def certificate_premise_cauchy_schwarz() -> Result:
    """<p*, f_theta> >= <p*, f*> - ||p*|| sqrt(L(theta)): Cauchy-Schwarz on <p*, r>, ||r||^2 = L.

    Any two elements of L2 span a space isometric to R^k, k <= 2: the Lagrange identity
    ||p||^2 ||r||^2 - <p, r>^2 = sum_{i<j} (p_i r_j - p_j r_i)^2 in R^3 proves |<p, r>| <= ||p|| ||r||.
    """

    def check() -> tuple[bool, str]:
        pv, r = [list(sp.symbols(f"{n}1:4", real=True)) for n in ("p", "r")]
        dot = sum(x * y for x, y in zip(pv, r))
        lagrange = sp.expand(sum(x**2 for x in pv) * sum(y**2 for y in r) - dot**2
                             - sum((pv[i] * r[j] - pv[j] * r[i]) ** 2 for i in range(3) for j in range(i + 1, 3)))
        # f_theta = f* - r, so <p, f_theta> = <p, f*> - <p, r> >= <p, f*> - ||p|| ||r||.
        f = list(sp.symbols("f1:4", real=True))
        split = sp.expand(sum(x * (y - z) for x, y, z in zip(pv, f, r)) - (sum(x * y for x, y in zip(pv, f)) - dot))
        return lagrange == 0 and split == 0, (f"Lagrange identity residue {lagrange}; "
                                              f"<p, f* - r> - (<p, f*> - <p, r>) = {split}")

    return guarded(
        "certificate_premise_cauchy_schwarz", FAMILY,
        "<p*, f_theta> >= <p*, f*> - ||p*|| sqrt(L(theta)) (Cauchy-Schwarz, ||f* - f_theta||^2 = L)",
        "algebraic", check)


def certificate_premise_eta_bounds() -> Result:
    """With |eta(u)| <= 1 - rho angle^2 near a teacher and <= 1 - rho' far (hypotheses), and
    s_j = a_j ||w_j||, mu_j = |s_j|:  <p*, f_theta> = sum_j s_j eta(u_j) <= M - rho S_near - rho' F_far.

    The hypotheses enter as slacks: |eta_j| = 1 - rho th_j^2 - e_j (near) and 1 - rho' - e_j (far),
    e_j >= 0; s_j eta_j <= |s_j| |eta_j| over the four sign cases; the difference is then the sum
    of mu_j e_j plus the sign slacks, each >= 0.
    """

    def check() -> tuple[bool, str]:
        rho, rhof = sp.symbols("rho rho_far", positive=True)
        n_near, n_far = 2, 2
        mu = sp.symbols(f"mu1:{n_near + n_far + 1}", nonnegative=True)
        th = sp.symbols(f"th1:{n_near + 1}", nonnegative=True)
        e = sp.symbols(f"e1:{n_near + n_far + 1}", nonnegative=True)
        abs_eta = [1 - rho * th[j]**2 - e[j] for j in range(n_near)] + \
            [1 - rhof - e[n_near + j] for j in range(n_far)]
        M = sum(mu)
        S = sum(mu[j] * th[j]**2 for j in range(n_near))
        F = sum(mu[n_near:])
        # sum_j mu_j |eta_j| = M - rho S - rho' F - sum mu_j e_j (identity)
        identity = sp.expand(sum(m * a for m, a in zip(mu, abs_eta)) - (M - rho * S - rhof * F)
                             + sum(m * x for m, x in zip(mu, e)))
        slack_terms = [m * x for m, x in zip(mu, e)]
        # s eta <= |s| |eta| for s = +-m, eta = +-h (m, h >= 0): |s||eta| - s eta in {0, 2 m h}
        m_, h_ = sp.symbols("m h", nonnegative=True)
        signs = [sp.expand(m_ * h_ - (s1 * m_) * (s2 * h_)) for s1 in (1, -1) for s2 in (1, -1)]
        ok = identity == 0 and all(bool(t.is_nonnegative) for t in slack_terms + signs)
        return ok, (f"sum mu_j |eta_j| - (M - rho S - rho' F) + sum mu_j e_j = {identity}; slack terms "
                    f"{slack_terms} >= 0; |s||eta| - s eta over the sign cases: {signs} >= 0")

    return guarded(
        "certificate_premise_eta_bounds", FAMILY,
        "|eta| <= 1 - rho angle^2 (near) and <= 1 - rho' (far) imply <p*, f_theta> = sum_j s_j eta(u_j) "
        "<= sum_j mu_j - rho sum_near mu_j angle_j^2 - rho' sum_far mu_j",
        "algebraic", check)


def certificate_premise_am_gm() -> Result:
    """(lambda/2)(a^2 + ||w||^2) >= lambda |a| ||w|| per neuron, with the checker's regularizer:
    L_lambda(theta) >= L(theta) + lambda sum_j mu_j."""

    def check() -> tuple[bool, str]:
        import numpy as np

        from checker.core import objective

        lam = sp.Symbol("lambda", positive=True)
        a = sp.Symbol("a", real=True)
        w = list(sp.symbols("w1:4", real=True))
        reg = lam * objective.regularizer(np.array([a], dtype=object), np.array([w], dtype=object))
        nw = sp.sqrt(sum(x**2 for x in w))
        residue = sp.simplify(sp.expand(reg - lam * sp.Abs(a) * nw - lam / 2 * (sp.Abs(a) - nw) ** 2))
        return residue == 0, (f"lambda regularizer(a, w) - lambda |a| ||w|| - (lambda/2)(|a| - ||w||)^2 "
                              f"= {residue}")

    return guarded(
        "certificate_premise_am_gm", FAMILY,
        "lambda * regularizer(a, W) >= lambda sum_j |a_j| ||w_j|| (AM-GM, with the checker's regularizer)",
        "algebraic", check)


def single_teacher_constants(activation: str = "relu",
                             kappa_fn: Callable[..., Any] = ck.kappa) -> Result:
    """One teacher: eta = kappa(phi)/kappa(0) (line angle for abs), so in closed form at the radius r
    (0 < r <= pi/2 for abs, < pi for relu):

        ||p*|| = 1/sqrt(kappa(0)),  rho' = 1 - kappa(r)/kappa(0),  rho = rho'/r^2,

    because kappa is decreasing (max of |eta| off the cap is at its edge) and
    h(phi) = (1 - kappa(phi)/kappa(0))/phi^2 is decreasing (its minimum over the cap is at r):
    phi^3 h'(phi) kappa(0) = N(phi) = -phi kappa'(phi) - 2 (kappa(0) - kappa(phi)), N(0) = 0 and
    N'(phi) = kappa'(phi) - phi kappa''(phi) = -c sin(phi) + phi (c - phi) cos(phi) times a positive
    constant (c = pi for relu, pi/2 for abs), which is < 0: for cos(phi) <= 0 both terms are <= 0 and
    not both 0; for cos(phi) > 0 divide by cos: -c tan(phi) + c phi - phi^2 < 0 as tan(phi) >= phi.
    ``single_teacher_closed_form`` values are what tests compare build_certificate with.
    """

    def check() -> tuple[bool, str]:
        phi = sp.Symbol("phi", positive=True)
        kap = kappa_fn(phi, sp.sin(phi), sp.cos(phi), sp.pi, activation)
        k0 = sp.simplify(kap.subs(phi, 0))
        c = sp.pi if activation == "relu" else sp.pi / 2
        pref = 1 / (2 * sp.pi) if activation == "relu" else 2 / sp.pi
        dk = sp.simplify(sp.diff(kap, phi))
        monotone = sp.simplify(dk + pref * (c - phi) * sp.sin(phi)) == 0  # kappa' = -pref (c - phi) sin <= 0
        Nprime = sp.simplify(dk - phi * sp.diff(kap, phi, 2))
        shape = sp.simplify(Nprime - pref * (-c * sp.sin(phi) + phi * (c - phi) * sp.cos(phi))) == 0
        # cos > 0 branch: (-c sin + phi (c - phi) cos)/cos = -c (tan - phi) - phi^2
        branch = sp.simplify((-c * sp.sin(phi) + phi * (c - phi) * sp.cos(phi)) / sp.cos(phi)
                             - (-c * (sp.tan(phi) - phi) - phi**2)) == 0
        tan_ge = sp.series(sp.tan(phi) - phi, phi, 0, 6).removeO()  # phi^3/3 + 2 phi^5/15: >= 0 near 0
        r = sp.Symbol("r", positive=True)
        rho_far = 1 - kap.subs(phi, r) / k0
        ok = monotone and shape and branch and k0 == kappa_fn(0, 0, 1, sp.pi, activation)             and tan_ge.coeff(phi, 3) == sp.Rational(1, 3)
        return ok, (f"kappa(0) = {k0}, ||p*|| = {sp.simplify(1 / sp.sqrt(k0))}; kappa' = {dk} (<= 0); "
                    f"N' = {Nprime}; rho'(r) = {sp.simplify(rho_far)}, rho(r) = rho'(r)/r^2")

    return guarded(
        f"single_teacher_constants_{activation}", FAMILY,
        f"one teacher ({activation}): ||p*|| = 1/sqrt(kappa(0)), rho' = 1 - kappa(r)/kappa(0), "
        f"rho = (1 - kappa(r)/kappa(0))/r^2 at the cap radius r",
        "algebraic", check)


def single_teacher_closed_form(activation: str, radius: float, dps: int = 50) -> dict[str, Any]:
    """The closed forms of ``single_teacher_constants`` evaluated in mpmath at ``dps`` digits."""
    import mpmath

    with mpmath.workdps(dps):
        r = mpmath.mpf(radius)
        kap = ck.kappa(r, mpmath.sin(r), mpmath.cos(r), mpmath.pi, activation)
        k0 = mpmath.mpf(ck.kappa_at_one(activation))
        rho_far = 1 - kap / k0
        return {"p_norm": 1 / mpmath.sqrt(k0), "rho_far": rho_far, "rho": rho_far / r**2}


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
    Each T_k >= 0 is its own verified result: T1 certificate_premise_eta_bounds, T2
    certificate_premise_am_gm, T3 certificate_premise_optimum_below_teacher, T4
    certificate_premise_pairing_with_teacher and certificate_premise_cauchy_schwarz, T5
    certificate_quadratic_step (derivations/duality.py).
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


def eta_unit_sphere_form(activation: str = "relu",
                         grad_fn: Callable[..., tuple[Any, Any]] = ck.grad_coefficients,
                         kappa_fn: Callable[..., Any] = ck.kappa) -> Result:
    """The per-teacher term of eta in t = <w^, v^> and s = <w^, beta>, with the derivatives of kappa
    that ``checker.geometry.certificate._ArbChartEta.hessian`` differentiates:

        alpha k(w, v) + <beta, grad_v k(w, v)>
            = ||w|| (alpha ||v|| kappa(t) + <beta, v^> (kappa - t kappa')(t) + s kappa'(t)),
        kappa(t) = c (sqrt(1 - t^2) + (a - acos t) t), kappa' = c (a - acos t), kappa'' = c / sqrt(1 - t^2),
        kappa''' = c t / (1 - t^2)^(3/2), kappa - t kappa' = c sqrt(1 - t^2)

    (relu: c = 1/(2 pi), a = pi; abs: c = 2/pi, a = pi/2), kappa and grad_v k as the checker writes
    them (``kernel.kappa``, ``grad_coefficients`` with the roles swapped).  v = n e1, w generic in R^3.
    """

    def check() -> tuple[bool, str]:
        w = sp.symbols("w1:4", real=True)
        b = sp.symbols("b1:4", real=True)
        n = sp.symbols("n", positive=True)
        al, t = sp.symbols("alpha t", real=True)
        c, a = (1 / (2 * sp.pi), sp.pi) if activation == "relu" else (2 / sp.pi, sp.pi / 2)
        kap = c * (sp.sqrt(1 - t**2) + (a - sp.acos(t)) * t)
        ok_k = sp.simplify(kappa_fn(sp.acos(t), sp.sqrt(1 - t**2), t, sp.pi, activation) - kap) == 0
        k1, k2, k3 = (sp.diff(kap, t, j) for j in (1, 2, 3))
        ok_d = all(sp.simplify(x - y) == 0 for x, y in [(k1, c * (a - sp.acos(t))), (k2, c / sp.sqrt(1 - t**2)),
                                                       (k3, c * t / (1 - t**2) ** sp.Rational(3, 2)),
                                                       (kap - t * k1, c * sp.sqrt(1 - t**2))])
        nw = sp.sqrt(sum(x**2 for x in w))
        wh, vh, beta = sp.Matrix(w) / nw, sp.Matrix([1, 0, 0]), sp.Matrix(b)
        tt = wh.dot(vh)
        A, B = grad_fn(sp.acos(tt), sp.sqrt(1 - tt**2), sp.pi, activation)
        lhs = al * nw * n * kap.subs(t, tt) + beta.dot(nw * (A * wh + B * vh))
        rhs = nw * (al * n * kap + beta.dot(vh) * (kap - t * k1) + beta.dot(wh) * k1).subs(t, tt)
        D = sp.simplify(lhs - rhs)
        return ok_k and ok_d and D == 0, f"kappa {ok_k}, derivatives {ok_d}, term difference {D}"

    return guarded(
        f"eta_unit_sphere_form_{activation}", FAMILY,
        f"alpha k(w, v) + <beta, grad_v k(w, v)> = ||w|| (alpha ||v|| kappa(t) + <beta, v^> c sqrt(1 - t^2) "
        f"+ <w^, beta> kappa'(t)), kappa', kappa'', kappa''' in closed form ({activation})",
        "symbolic", check)


DERIVATIONS = (
    bound(mixed_hessian_closed_form, "mixed_hessian_relu_closed_form", activation="relu"),
    bound(mixed_hessian_closed_form, "mixed_hessian_abs_closed_form", activation="abs"),
    bound(mixed_hessian_gaussian_integral, "mixed_hessian_relu_gaussian_integral", activation="relu"),
    bound(mixed_hessian_gaussian_integral, "mixed_hessian_abs_gaussian_integral", activation="abs"),
    bound(mixed_hessian_limits, "mixed_hessian_relu_limits", activation="relu"),
    bound(mixed_hessian_limits, "mixed_hessian_abs_limits", activation="abs"),
    bound(eta_gradient_formula, "eta_gradient_relu", activation="relu"),
    bound(eta_gradient_formula, "eta_gradient_abs", activation="abs"),
    bound(eta_unit_sphere_form, "eta_unit_sphere_form_relu", activation="relu"),
    bound(eta_unit_sphere_form, "eta_unit_sphere_form_abs", activation="abs"),
    bound(single_teacher_certificate, "single_teacher_certificate_relu", activation="relu"),
    bound(single_teacher_certificate, "single_teacher_certificate_abs", activation="abs"),
    certificate_premise_optimum_below_teacher,
    certificate_premise_pairing_with_teacher,
    certificate_premise_cauchy_schwarz,
    certificate_premise_eta_bounds,
    certificate_premise_am_gm,
    bound(single_teacher_constants, "single_teacher_constants_relu", activation="relu"),
    bound(single_teacher_constants, "single_teacher_constants_abs", activation="abs"),
    certificate_inequality_chain,
)
