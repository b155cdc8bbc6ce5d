"""The exact Hessian of checker/core/hessian.py: pair blocks, the collinear limit, the assembly.

1. ``curvature_identity``: dA/dphi = -C and B = C sin phi for the checker's (A, B)
   (``checker.core.kernel.grad_coefficients``) and C (``hessian.curvature_coefficient``);
   this is what turns the textbook (A' v^ + B' u^)(P v^)^T / sin phi into B e_u e_v^T.
2. ``pair_blocks_closed_form``: in R^3 (symbols), the second derivatives of the closed form
   k = ||u|| ||v|| kappa(acos t) in u u and in u v equal the checker's
   ``kernel_hessian_uu`` and ``kernel_hessian_uv``, called with SymPy symbols (B from
   the checker's ``grad_coefficients``, e_u = (v^ - t u^)/sin phi, e_v = (u^ - t v^)/sin phi).
   The v v block is ``kernel_hessian_uu`` with the roles swapped (k(u, v) = k(v, u)), so it
   is covered by the u u check.  As in derivations/gradients.py: after differentiating,
   acos t, sqrt(1 - t^2) and the squared norms become free symbols and ``sympy.cancel`` of
   the difference is 0, a proof for 0 < phi < pi; d = 3 suffices (k depends on u, v only
   through ||u||^2, ||v||^2, <u, v>, and the five matrices I, u u^T, u v^T, v u^T, v v^T are
   independent for non-parallel u, v in R^3).
3. ``collinear_limit``: along u = (1, 0, 0), v = s (cos phi, sin phi cos b, sin phi sin b)
   (every direction of approach b), the checker's blocks (proven equal to the closed form
   for 0 < phi < pi) have limits at phi -> 0+ and phi -> pi- that do not depend on b:
   d^2k/du du^T -> 0 and d^2k/du dv^T -> A(0) I, resp. A(pi) I.  The second derivatives of
   k, continuous off the collinear set (closed, of measure zero) and bounded with a
   continuous extension across it, together with k being C^1 (the gradient is continuous),
   make k C^2 at collinear pairs (mean value theorem along segments: the gradient is
   Lipschitz with derivative equal to that extension almost everywhere).
4. ``assembly``: the full Hessian of L for m = 2 students and one teacher in R^2, from
   SymPy's ``hessian`` of the closed form L(a, W) = sum_pq c_p c_q k(v_p, v_q), equals
   ``checker.core.hessian.hessian_from`` called on a SymPy pair geometry.  The plane lets
   the angles be differences of polar angles theta_j = atan2(w_j2, w_j1) (the region
   0 < theta_2 < theta_1 < pi, teacher at angle 0); after differentiating, atan2 becomes a
   symbol T_j and w_j = R_j (cos T_j, sin T_j) with cos, sin in the rational parametrization
   of tau_j = tan(T_j / 2); the difference is a rational function of independent symbols
   (T_j, tau_j, R_j, a, a*) and ``sympy.cancel`` gives 0: a proof for every point of the
   region (the assembly itself does not depend on the dimension).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from checker.core import hessian as hs
from checker.core import kernel as ck
from checker.core import objective

from .gradients import _closed_form, _free_symbols_form
from .result import Result, bound, guarded

FAMILY = "hessian"
_D = 3


def curvature_identity(activation: str = "relu") -> Result:
    def check() -> tuple[bool, str]:
        phi = sp.Symbol("phi", positive=True)
        A, B = ck.grad_coefficients(phi, sp.sin(phi), sp.pi, activation)
        C = hs.curvature_coefficient(sp.pi, activation)
        r1 = sp.simplify(sp.diff(A, phi) + C)
        r2 = sp.simplify(B - C * sp.sin(phi))
        return r1 == 0 and r2 == 0, f"dA/dphi + C = {r1}, B - C sin phi = {r2}, C = {C}"

    return guarded(f"hessian_curvature_{activation}", FAMILY,
                   f"dA/dphi = -C and B = C sin phi for {activation} (checker.core.hessian.curvature_coefficient)",
                   "symbolic", check)


def _vec(x: Any) -> np.ndarray:
    return np.array(list(x), dtype=object)


def pair_blocks_closed_form(activation: str = "relu", uu_fn: Any = hs.kernel_hessian_uu,
                            uv_fn: Any = hs.kernel_hessian_uv) -> Result:
    def check() -> tuple[bool, str]:
        cf = _closed_form(activation, ck.kappa)
        u, v = cf["u"], cf["v"]
        uhat, vhat = _vec(u) / cf["nu"], _vec(v) / cf["nv"]
        A, B = ck.grad_coefficients(cf["phi"], cf["sin_phi"], sp.pi, activation)
        e_u = (vhat - cf["t"] * uhat) / cf["sin_phi"]
        e_v = (uhat - cf["t"] * vhat) / cf["sin_phi"]
        claimed_uu = sp.Matrix(uu_fn(cf["nu"], cf["nv"], uhat, B, e_u))
        claimed_uv = sp.Matrix(uv_fn(A, B, uhat, vhat, e_u, e_v))
        grad = [sp.diff(cf["k"], x) for x in u]
        res_uu, res_uv = sp.zeros(_D, _D), sp.zeros(_D, _D)
        for i in range(_D):
            for j in range(_D):
                if j >= i:
                    res_uu[i, j] = sp.cancel(_free_symbols_form(sp.diff(grad[i], u[j]) - claimed_uu[i, j], cf))
                res_uv[i, j] = sp.cancel(_free_symbols_form(sp.diff(grad[i], v[j]) - claimed_uv[i, j], cf))
        ok = res_uu.is_zero_matrix is True and res_uv.is_zero_matrix is True
        return ok, f"uu residues {res_uu.tolist()}; uv residues {res_uv.tolist()}"

    return guarded(
        f"hessian_pair_blocks_{activation}", FAMILY,
        f"d^2k/du du^T = (||v|| B/||u||)(I - u^u^T + e_u e_u^T) and d^2k/du dv^T = A I + B (u^ v^T + e_u e_v^T) "
        f"for {activation}, 0 < phi < pi (checker.core.hessian.kernel_hessian_uu, kernel_hessian_uv)",
        "symbolic", check)


def collinear_limit(activation: str = "relu", uu_fn: Any = hs.kernel_hessian_uu,
                    uv_fn: Any = hs.kernel_hessian_uv) -> Result:
    def check() -> tuple[bool, str]:
        phi, b = sp.Symbol("phi", positive=True), sp.Symbol("b", real=True)
        s = sp.Symbol("s", positive=True)
        uhat = _vec([1, 0, 0])
        vhat = _vec([sp.cos(phi), sp.sin(phi) * sp.cos(b), sp.sin(phi) * sp.sin(b)])
        A, B = ck.grad_coefficients(phi, sp.sin(phi), sp.pi, activation)
        t = sp.cos(phi)
        e_u = _vec([sp.simplify(x) for x in (vhat - t * uhat) / sp.sin(phi)])
        e_v = _vec([sp.simplify(x) for x in (uhat - t * vhat) / sp.sin(phi)])
        Huu = sp.Matrix(uu_fn(sp.Integer(1), s, uhat, B, e_u))
        Huv = sp.Matrix(uv_fn(A, B, uhat, vhat, e_u, e_v))
        out, ok = [], True
        for end, side in ((0, "+"), (sp.pi, "-")):
            Aend = sp.limit(A, phi, end, side)
            Luu = Huu.applyfunc(lambda x: sp.limit(x, phi, end, side))
            Luv = Huv.applyfunc(lambda x: sp.limit(x, phi, end, side))
            good = Luu.is_zero_matrix is True and (Luv - Aend * sp.eye(_D)).applyfunc(sp.simplify).is_zero_matrix
            ok = ok and bool(good)
            out.append(f"phi -> {end}{side}: uu limit {Luu.tolist()}, uv limit {Luv.tolist()} (A = {Aend})")
        return ok, "; ".join(out)

    return guarded(
        f"hessian_collinear_limit_{activation}", FAMILY,
        f"for {activation} the pair blocks have finite limits at phi -> 0, pi independent of the direction "
        "of approach: d^2k/du du^T -> 0, d^2k/du dv^T -> A I (k is C^2 at collinear pairs)",
        "symbolic", check)


def assembly(activation: str = "relu", hessian_fn: Any = hs.hessian_from) -> Result:
    def check() -> tuple[bool, str]:
        R = sp.symbols("R1:3", positive=True)
        T = sp.symbols("T1:3", real=True)
        tau = sp.symbols("tau1:3", real=True)
        a = sp.symbols("a1:3", real=True)
        a_star = sp.Symbol("a_star", real=True)
        w = [sp.symbols(f"w{j}_1:3", real=True) for j in (1, 2)]
        X = list(a) + [x for row in w for x in row]
        r2 = [row[0] ** 2 + row[1] ** 2 for row in w]
        theta = [sp.atan2(row[1], row[0]) for row in w]
        norms = [sp.sqrt(x) for x in r2] + [sp.Integer(1)]
        angles = theta + [sp.Integer(0)]  # the teacher (1, 0) at angle 0
        c = list(a) + [-a_star]
        k0 = sp.Rational(ck.kappa_at_one(activation))
        L = sp.Integer(0)
        for p in range(3):
            for q in range(3):
                if p == q:
                    L += c[p] ** 2 * norms[p] ** 2 * k0
                else:  # angle(v_p, v_q) = theta_min(p,q) - theta_max(p,q) in (0, pi) on the region
                    ph = angles[min(p, q)] - angles[max(p, q)]
                    L += c[p] * c[q] * norms[p] * norms[q] * ck.kappa(ph, sp.sin(ph), sp.cos(ph), sp.pi, activation)
        exact = sp.hessian(L, X)
        cos_t = [(1 - x ** 2) / (1 + x ** 2) for x in tau]
        sin_t = [2 * x / (1 + x ** 2) for x in tau]

        def trig(e: Any) -> Any:
            e = sp.expand_trig(e)
            return e.xreplace({sp.cos(T[j]): cos_t[j] for j in range(2)} | {sp.sin(T[j]): sin_t[j] for j in range(2)})

        def free(e: Any) -> Any:
            e = e.xreplace({theta[j]: T[j] for j in range(2)}).xreplace({r2[j]: R[j] ** 2 for j in range(2)})
            e = e.xreplace({w[j][0]: R[j] * cos_t[j] for j in range(2)} | {w[j][1]: R[j] * sin_t[j] for j in range(2)})
            return trig(e)

        uhat = np.array([[cos_t[j], sin_t[j]] for j in range(2)], dtype=object)
        vhat = np.array([list(x) for x in uhat] + [[sp.Integer(1), sp.Integer(0)]], dtype=object)
        Tv = list(T) + [sp.Integer(0)]
        PHI, S, C = (np.empty((2, 3), dtype=object) for _ in range(3))
        for j in range(2):
            for q in range(3):
                if j == q:
                    PHI[j, q], S[j, q], C[j, q] = sp.Integer(0), sp.Integer(0), sp.Integer(1)
                else:
                    ph = Tv[min(j, q)] - Tv[max(j, q)]
                    PHI[j, q], S[j, q], C[j, q] = ph, trig(sp.sin(ph)), trig(sp.cos(ph))
        g = objective.PairGeometry(np.array(R, dtype=object), np.array(list(R) + [sp.Integer(1)], dtype=object),
                                   uhat, vhat, PHI, S, C, np.array([True, True]))

        class _SymPy:
            pi = sp.pi

        H = hessian_fn(_SymPy(), g, activation, np.array(a, dtype=object), np.array(c, dtype=object),
                       sp.Integer(0), "both")
        bad = []
        for i in range(len(X)):
            for k in range(i, len(X)):
                d = sp.cancel(sp.together(free(exact[i, k]) - H[i, k]))
                if d != 0:
                    bad.append(f"({i}, {k}): {d}")
                    break
            if bad:
                break
        return not bad, ("all 21 entries agree" if not bad else "; ".join(bad[:3]))

    return guarded(
        f"hessian_assembly_{activation}", FAMILY,
        f"the Hessian of L(a, W) (2 students, 1 teacher, R^2, {activation}) from SymPy equals "
        "checker.core.hessian.hessian_from on a SymPy geometry (every block: aa, aw, ww)",
        "symbolic", check)


DERIVATIONS = tuple(
    bound(fn, f"{name}_{act}", activation=act)
    for act in ("relu", "abs")
    for fn, name in ((curvature_identity, "hessian_curvature"), (pair_blocks_closed_form, "hessian_pair_blocks"),
                     (collinear_limit, "hessian_collinear_limit"), (assembly, "hessian_assembly"))
)
