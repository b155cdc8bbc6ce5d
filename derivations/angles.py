"""The angle routes and the gradient contraction of ``checker/core/objective.py``.

The objective computes the angle triple of a pair of unit vectors (u^, v^) from
t = <u^, v^> (one Gram product for all pairs) and the half-angle norms
a = ||u^ - v^||, b = ||u^ + v^||:

    phi = 2 atan2(a, b),  sin phi = a b / 2,  cos phi = t,

taking a^2 = 2 - 2t and b^2 = 2 + 2t from the Gram entry when |t| is not
close to 1 (for unit vectors ||u^ -+ v^||^2 = |u^|^2 + |v^|^2 -+ 2t = 2 -+ 2t),
and the vectors themselves otherwise.  It assembles sum_l c_l grad_u k(u_j, v_l)
by two matrix products (``grad_gram_dot``) instead of the (m, n, d) array of
``grad_gram_from``, and sum_l c_l k(u_j, v_l) as ||u_j|| (kappa @ (c ||v||))
(``gram_dot``).  All are proved here, the contractions on the checker's own
functions called with SymPy symbols.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from checker.core import kernel, objective

from .result import Result, bound, guarded

FAMILY = "angles"


def half_angle_route() -> Result:
    """For phi in [0, pi): with a = sqrt(2 - 2 cos phi), b = sqrt(2 + 2 cos phi),
    2 atan2(a, b) = phi and a b / 2 = sin phi; a^2, b^2 are ||u^ -+ v^||^2 (Gram route)."""

    def check() -> tuple[bool, str]:
        phi = sp.Symbol("phi", nonnegative=True)
        t = sp.cos(phi)
        a = sp.sqrt(2 - 2 * t)
        b = sp.sqrt(2 + 2 * t)
        # On [0, pi): a = 2 sin(phi/2) >= 0 and b = 2 cos(phi/2) > 0 (half-angle formulas).
        half_a = sp.simplify(a**2 - (2 * sp.sin(phi / 2))**2)
        half_b = sp.simplify(b**2 - (2 * sp.cos(phi / 2))**2)
        # With a, b as above, b > 0, so atan2(a, b) = atan(a / b) = atan(tan(phi / 2)) = phi / 2.
        ratio = sp.simplify(2 * sp.sin(phi / 2) / (2 * sp.cos(phi / 2)) - sp.tan(phi / 2))
        sine = sp.simplify(2 * sp.sin(phi / 2) * 2 * sp.cos(phi / 2) / 2 - sp.sin(phi))
        d = 3
        u = sp.Matrix(sp.symbols(f"u0:{d}", real=True))
        v = sp.Matrix(sp.symbols(f"v0:{d}", real=True))
        gram_a = sp.expand((u - v).dot(u - v) - (u.dot(u) + v.dot(v) - 2 * u.dot(v)))
        gram_b = sp.expand((u + v).dot(u + v) - (u.dot(u) + v.dot(v) + 2 * u.dot(v)))
        ok = all(x == 0 for x in (half_a, half_b, ratio, sine, gram_a, gram_b))
        return ok, (f"a^2 - 4 sin^2(phi/2) = {half_a}, b^2 - 4 cos^2(phi/2) = {half_b}, "
                    f"a/b - tan(phi/2) = {ratio}, ab/2 - sin phi = {sine}; "
                    f"||u -+ v||^2 - (|u|^2 + |v|^2 -+ 2<u,v>) = {gram_a}, {gram_b} (d = {d})")

    return guarded("half_angle_route", FAMILY,
                   "phi = 2 atan2(a, b), sin phi = a b / 2 with a, b = ||u^ -+ v^|| = sqrt(|u^|^2 + |v^|^2 -+ 2t)"
                   " = sqrt(2 -+ 2t) for unit u^, v^",
                   "symbolic", check)


def gram_route_one_root() -> Result:
    """For phi in [0, pi] and t = cos phi: sin phi = sqrt(1 - t^2) = a b / 2 and atan2(sqrt(1 - t^2), t) = phi.

    The Gram route of ``objective._loss_parts_matrix`` (the mp engine's Arb iterate): one square
    root and one atan2 per pair instead of the two roots a, b = sqrt(2 -+ 2t) of ``half_angle_route``.
    """

    def check() -> tuple[bool, str]:
        phi = sp.Symbol("phi", nonnegative=True)
        t = sp.cos(phi)
        s = sp.sqrt(1 - t**2)
        a, b = sp.sqrt(2 - 2 * t), sp.sqrt(2 + 2 * t)
        # s, a, b >= 0: equal iff their squares are; sin phi >= 0 on [0, pi].
        root = sp.simplify(s**2 - sp.sin(phi)**2)
        product = sp.simplify((a * b / 2)**2 - s**2)
        # atan2(y, x) for y >= 0, (x, y) != 0 is the angle in [0, pi] with cosine x / r and sine y / r,
        # r = sqrt(x^2 + y^2); here r^2 = (1 - t^2) + t^2 = 1, so cosine t = cos phi and sine
        # s = sin phi: the angle is phi.
        radius = sp.simplify(s**2 + t**2 - 1)
        ok = all(x == 0 for x in (root, product, radius))
        return ok, (f"(1 - t^2) - sin^2 phi = {root}, (ab/2)^2 - (1 - t^2) = {product}, "
                    f"(1 - t^2) + t^2 - 1 = {radius}")

    return guarded("gram_route_one_root", FAMILY,
                   "sin phi = sqrt(1 - t^2) = a b / 2 and phi = atan2(sqrt(1 - t^2), t) for t = cos phi, phi in [0, pi]"
                   " (checker.core.objective._loss_parts_matrix, Gram route)",
                   "symbolic", check)


class _SymbolicEngine:
    """The part of the engine interface grad_gram_from / grad_gram_dot use, on SymPy objects."""

    name = "sympy"
    pi = sp.pi


def _symbolic_pairs(m: int, n: int, d: int) -> tuple[objective.PairGeometry, np.ndarray]:
    """A pair geometry of m x n pairs in d dimensions and weights c, every entry its own SymPy symbol."""
    def sym(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.array(sp.symbols(f"{name}0:{int(np.prod(shape))}", real=True), dtype=object).reshape(shape)

    g = objective.PairGeometry(nu=sym("nu", (m,)), nv=sym("nv", (n,)), uhat=sym("uh", (m, d)),
                               vhat=sym("vh", (n, d)), phi=sym("phi", (m, n)), sin_phi=sym("s", (m, n)),
                               cos_phi=sym("t", (m, n)),
                               u_nonzero=np.array([sp.Integer(1)] * m, dtype=object))  # mask 1: u_j != 0
    return g, sym("c", (n,))


def _entrywise_equal(fast: np.ndarray, slow: np.ndarray) -> tuple[bool, int]:
    diffs = [sp.simplify(sp.expand(x - y)) for x, y in zip(fast.ravel(), slow.ravel())]
    return all(x == 0 for x in diffs), len(diffs)


def gradient_contraction(activation: str = "relu") -> Result:
    """grad_gram_dot(c) = sum_l c_l grad_gram_from[:, l, :] (checker functions on SymPy symbols)."""

    def check() -> tuple[bool, str]:
        m, n, d = 2, 3, 2
        g, c = _symbolic_pairs(m, n, d)
        eng = _SymbolicEngine()
        fast = objective.grad_gram_dot(eng, g, activation, c)
        slow = (objective.grad_gram_from(eng, g, activation) * c[None, :, None]).sum(axis=1)
        ok, count = _entrywise_equal(fast, slow)
        return ok, f"{m} x {n} pairs in d = {d}: all {count} entries equal"

    return guarded(f"gradient_contraction_{activation}", FAMILY,
                   "sum_l c_l ||v_l|| (A_jl v^_l + B_jl u^_j) = (A * c||v||) V^ + (B c||v||) u^_j "
                   f"(checker.core.objective.grad_gram_dot, '{activation}')",
                   "symbolic", check)


def gram_contraction(activation: str = "relu") -> Result:
    """gram_dot(c) = gram_from(...) @ c (checker functions on SymPy symbols)."""

    def check() -> tuple[bool, str]:
        m, n = 2, 3
        g, c = _symbolic_pairs(m, n, 1)
        eng = _SymbolicEngine()
        ok, count = _entrywise_equal(objective.gram_dot(eng, g, activation, c),
                                     objective.gram_from(eng, g, activation).dot(c))
        return ok, f"{m} x {n} pairs: all {count} entries equal"

    return guarded(f"gram_contraction_{activation}", FAMILY,
                   "sum_l c_l ||u_j|| ||v_l|| kappa_jl = ||u_j|| (kappa @ (c ||v||)) "
                   f"(checker.core.objective.gram_dot, '{activation}')",
                   "symbolic", check)


def kappa_from_coefficients(activation: str = "relu") -> Result:
    """checker.core.kernel.kappa = B + A cos phi with (A, B) = checker.core.kernel.grad_coefficients (SymPy symbols)."""

    def check() -> tuple[bool, str]:
        phi, s, c = sp.symbols("phi s c", real=True)
        A, B = kernel.grad_coefficients(phi, s, sp.pi, activation)
        diff = sp.simplify(kernel.kappa(phi, s, c, sp.pi, activation) - kernel.kappa_from_coefficients(A, B, c))
        return diff == 0, f"kappa - (B + A cos phi) = {diff} (phi, sin phi, cos phi independent symbols)"

    return guarded(f"kappa_from_coefficients_{activation}", FAMILY,
                   f"kappa = B + A cos phi (checker.core.kernel, '{activation}')", "symbolic", check)


def coefficients_affine(activation: str = "relu") -> Result:
    """(A, B) = kernel.grad_coefficients(phi, sin phi) is affine: A = A_0 + A_1 phi, B = B_1 sin phi.

    With A_0 = A(phi = 0), A_1 = A(phi = 1) - A_0 and B_1 = B(sin phi = 1), all three from
    ``kernel.grad_coefficients`` itself, as ``objective._loss_parts_matrix`` takes them; hence
    A X = A_0 (1 1^T X) + A_1 (Phi X) for any matrix X (linearity of the matrix product).
    """

    def check() -> tuple[bool, str]:
        phi, s = sp.symbols("phi s", real=True)
        A, B = kernel.grad_coefficients(phi, s, sp.pi, activation)
        A_0, B_1 = kernel.grad_coefficients(sp.Integer(0), sp.Integer(1), sp.pi, activation)
        A_1 = kernel.grad_coefficients(sp.Integer(1), sp.Integer(1), sp.pi, activation)[0] - A_0
        dA, dB = sp.simplify(A - (A_0 + A_1 * phi)), sp.simplify(B - B_1 * s)
        return dA == 0 and dB == 0, f"A - (A_0 + A_1 phi) = {dA}, B - B_1 sin phi = {dB}"

    return guarded(f"coefficients_affine_{activation}", FAMILY,
                   "A = A(0) + (A(1) - A(0)) phi and B = B(sin phi = 1) sin phi for (A, B) = "
                   f"kernel.grad_coefficients ('{activation}')", "symbolic", check)


def matrix_contraction(activation: str = "relu") -> Result:
    """The contractions of ``objective._loss_parts_matrix`` equal ``gram_dot`` and ``grad_gram_dot``.

    With all neurons against themselves (unit rows v^, norms ||v||, weights c, cos phi_jl = t_jl =
    <v^_j, v^_l>), cn = c ||v||, X = cn v^, Z = A_0 sum_l X_l + A_1 (Phi X) (= A X, coefficients_affine)
    and S = B_1 (Sin cn) (= B cn):
    ||v_j|| (S_j + <v^_j, Z_j>) = gram_dot(c)_j and Z_j + S_j v^_j = grad_gram_dot(c)_j, the right
    sides being the checker's functions on SymPy symbols (A, B: kernel.grad_coefficients).
    """

    def check() -> tuple[bool, str]:
        n, d = 3, 2
        vh = np.array(sp.symbols(f"vh0:{n * d}", real=True), dtype=object).reshape(n, d)
        nv = np.array(sp.symbols(f"nv0:{n}", real=True), dtype=object)
        phi = np.array(sp.symbols(f"phi0:{n * n}", real=True), dtype=object).reshape(n, n)
        s = np.array(sp.symbols(f"s0:{n * n}", real=True), dtype=object).reshape(n, n)
        c = np.array(sp.symbols(f"c0:{n}", real=True), dtype=object)
        t = vh.dot(vh.T)  # the Gram entries of the unit rows
        g = objective.PairGeometry(nu=nv, nv=nv, uhat=vh, vhat=vh, phi=phi, sin_phi=s, cos_phi=t,
                                   u_nonzero=np.array([sp.Integer(1)] * n, dtype=object))
        eng = _SymbolicEngine()
        # Z, S as objective._loss_parts_matrix forms them: from the affine coefficients
        # (coefficients_affine) and the matrices phi, s of the pairs, never A, B entrywise.
        A_0, B_1 = kernel.grad_coefficients(sp.Integer(0), sp.Integer(1), sp.pi, activation)
        A_1 = kernel.grad_coefficients(sp.Integer(1), sp.Integer(1), sp.pi, activation)[0] - A_0
        cn = c * nv
        X = cn[:, None] * vh
        Z = phi.dot(X) * A_1 + X.sum(axis=0) * A_0
        S = s.dot(cn) * B_1
        ok_k, count_k = _entrywise_equal(nv * (S + (vh * Z).sum(axis=1)), objective.gram_dot(eng, g, activation, c))
        ok_g, count_g = _entrywise_equal(Z + S[:, None] * vh, objective.grad_gram_dot(eng, g, activation, c))
        return ok_k and ok_g, f"{n} neurons in d = {d}: all {count_k} kernel and {count_g} gradient entries equal"

    return guarded(f"matrix_contraction_{activation}", FAMILY,
                   "||v_j|| (S_j + <v^_j, Z_j>) = sum_l c_l k(v_j, v_l) and Z_j + S_j v^_j = sum_l c_l grad_u k(v_j, v_l) "
                   f"with X = c||v|| v^, Z = A_0 sum_l X_l + A_1 Phi X, S = B_1 Sin c||v|| (checker.core.objective._loss_parts_matrix, '{activation}')",
                   "symbolic", check)


DERIVATIONS = (
    half_angle_route,
    gram_route_one_root,
    bound(kappa_from_coefficients, "kappa_from_coefficients_relu", activation="relu"),
    bound(kappa_from_coefficients, "kappa_from_coefficients_abs", activation="abs"),
    bound(gram_contraction, "gram_contraction_relu", activation="relu"),
    bound(gram_contraction, "gram_contraction_abs", activation="abs"),
    bound(gradient_contraction, "gradient_contraction_relu", activation="relu"),
    bound(gradient_contraction, "gradient_contraction_abs", activation="abs"),
    bound(coefficients_affine, "coefficients_affine_relu", activation="relu"),
    bound(coefficients_affine, "coefficients_affine_abs", activation="abs"),
    bound(matrix_contraction, "matrix_contraction_relu", activation="relu"),
    bound(matrix_contraction, "matrix_contraction_abs", activation="abs"),
)
