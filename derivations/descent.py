"""The descent direction D = theta - theta-hat of the local phase (checker/geometry/descent.py).

1. ``kernel_directional_derivative``: along D_w = u - w-hat, the derivative of one kernel term is

       <grad_u k(u, v), u - w-hat> = k(u, v) - ||v|| (A <v-hat, w-hat> + B <u-hat, w-hat>),

   (Euler's identity removes the u-part), proved on the differentiated closed form in R^3 with the
   checker's kappa and (A, B) called on SymPy symbols.  Summed over the neurons with
   c = (a, -a*), it is the closed form ``checker.geometry.descent.directional_derivative``:

       <grad L_lambda, D> = sum_j 2 [(2 a_j - a-hat_j) g_j - a_j h_j] + lambda (<a, D_a> + <W, D_W>).

2. ``directional_derivative_assembly`` (numeric check, relu; abs and more points in
   ``tests/test_descent.py`` against central differences at 40 digits): that closed form equals
   d/dt L_lambda(theta + t D) at t = 0, with ``directional_derivative`` and ``objective.evaluate``
   themselves run on SymPy numbers for a stated student of two neurons in d = 2 and one teacher,
   the exact derivative evaluated at 60 digits.

3. ``descent_identity_single_teacher``: at an exactly balanced point on the teacher direction
   (one teacher a* > 0, two balanced neurons of masses m_1, m_2 on w*, S = m_1 + m_2), with
   S* = a* - lambda / (2 kappa(0)) the optimal mass and theta-hat built by the mass-proportional rule,

       <grad L_lambda, D> = 4 sqrt(S) / (sqrt(S) + sqrt(S*)) zeta,     ||grad L_lambda||^2 = 8 kappa(0) S zeta,

   zeta = L_lambda(theta) - L*_lambda = kappa(0) (S - S*)^2: D is a descent direction there with
   c_D -> 2 and c_PL -> 8 kappa(0) S* at the optimum.  Proved symbolically with the checker's
   functions.

4. With several teachers the same computation gives sum_i c_i (S_i - S*_i) dF/dS_i with different
   c_i and a coupled F, whose positivity is not an identity: ``descent_several_teachers_measured``
   measures it (numeric, not a proof) and the Hypothesis test and C6 measure it along runs.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import sympy as sp
from sympy.core.sympify import converter as _sympify_converter

from checker.core import kernel as ck
from checker.core import objective
from checker.geometry import descent as cd

from .result import Result, bound, guarded

FAMILY = "descent"


class SympyEngine:
    """The engine interface of ``checker.core.objective`` on numpy object arrays of SymPy expressions."""

    name = "sympy"
    pi = sp.pi
    sqrt = staticmethod(np.frompyfunc(sp.sqrt, 1, 1))
    atan2 = staticmethod(np.frompyfunc(sp.atan2, 2, 1))

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """objective.grad_gram_from masks zero neurons by multiplying with a bool array: inside this
        context SymPy reads a Python bool as the integer 0 or 1 (restored on exit)."""
        saved = _sympify_converter.get(bool)
        _sympify_converter[bool] = lambda b: sp.Integer(int(b))
        try:
            yield
        finally:
            if saved is None:
                del _sympify_converter[bool]
            else:
                _sympify_converter[bool] = saved

    def zeros(self, shape: Any) -> np.ndarray:
        out = np.empty(shape, dtype=object)
        out.fill(sp.Integer(0))
        return out


def _obj(values: Any) -> np.ndarray:
    arr = np.empty(np.shape(values), dtype=object)
    for idx, v in np.ndenumerate(np.asarray(values, dtype=object)):
        arr[idx] = sp.sympify(v)  # SymPy expressions built here, never user text
    return arr


def kernel_directional_derivative(activation: str = "relu") -> Result:
    """d/dt k(u + t (u - w-hat), v) at t = 0 = k - ||v|| (A <v-hat, w-hat> + B <u-hat, w-hat>), in R^2.

    The path stays in span(u, v, w-hat); the component of w-hat off span(u, v) enters only through
    <u-hat, w-hat> and <v-hat, w-hat>, which vanish for it, so the plane of u and v with w-hat in it
    carries the identity; by rotation invariance v = ||v|| e_1 (beta = 0), and u = rho (cos alpha, sin alpha).
    """

    def check() -> tuple[bool, str]:
        x, y, t = sp.symbols("x y t", real=True)
        rho, nu = sp.symbols("rho nu", positive=True)
        al, p1, p2 = sp.symbols("alpha p1 p2", real=True)
        X, Y = x + t * (x - p1), y + t * (y - p2)
        phi = sp.atan2(Y, X)
        k = sp.sqrt(X**2 + Y**2) * nu * ck.kappa(phi, sp.sin(phi), sp.cos(phi), sp.pi, activation)
        dk = sp.diff(k, t).subs(t, 0)
        # at t = 0, atan2(y, x) is the angle alpha of u (0 < alpha < pi: the closed form's domain)
        dk = dk.xreplace({sp.atan2(y, x): al}).subs({x: rho * sp.cos(al), y: rho * sp.sin(al)})
        a, b = ck.grad_coefficients(al, sp.sin(al), sp.pi, activation)
        kk = rho * nu * ck.kappa(al, sp.sin(al), sp.cos(al), sp.pi, activation)
        claimed = kk - nu * (a * p1 + b * (sp.cos(al) * p1 + sp.sin(al) * p2))
        residue = sp.simplify(sp.expand_trig(sp.simplify(dk - claimed)))
        return residue == 0, (f"difference simplifies to {residue} "
                              f"(u = rho(cos alpha, sin alpha), v = nu e_1, 0 < alpha < pi)")

    return guarded(
        f"kernel_directional_derivative_{activation}", FAMILY,
        f"<grad_u k(u, v), u - w_hat> = k(u, v) - ||v|| (A <v_hat, w_hat> + B <u_hat, w_hat>) "
        f"with checker.core.kernel kappa and (A, B) for {activation} (differentiated along the path)",
        "symbolic", check)


def directional_derivative_assembly(activation: str = "relu") -> Result:
    """checker.geometry.descent.directional_derivative = d/dt L_lambda(theta + t D)|_0 on exact numbers."""

    def check() -> tuple[bool, str]:
        eng = SympyEngine()
        # t > 0 lets SymPy see that the moving neurons stay non-zero; the expression is analytic in t
        # near 0, so its derivative at t = 0 is the two-sided one.
        t = sp.Symbol("t", positive=True)
        R = sp.Rational
        # Two students at rational points (angles ~0.38 and ~0.14 rad from the teacher e1), targets on e1
        # as theta-hat is; exact rationals, t symbolic: the derivative is exact before evaluation.
        cases = [
            dict(a=[R(1, 3), R(3, 5)], W=[[R(1, 2), R(1, 5)], [R(7, 10), R(-1, 10)]],
                 a_hat=[R(2, 5), R(1, 2)], W_hat=[[R(2, 5), 0], [R(1, 2), 0]], lam=R(1, 10)),
        ]
        residues, values = [], []
        for c in cases:
            a, W, a_hat, W_hat = _obj(c["a"]), _obj(c["W"]), _obj(c["a_hat"]), _obj(c["W_hat"])
            a_star, W_star = _obj([1]), _obj([[1, 0]])
            closed = cd.directional_derivative(eng, activation, a, W, a_hat, W_hat, a_star, W_star, c["lam"])
            path = objective.evaluate(eng, activation, a + t * (a - a_hat), W + t * (W - W_hat), a_star, W_star,
                                      c["lam"], with_gradient=False).reg_loss
            d_path = sp.diff(path, t).subs(t, 0)
            # exact expressions evaluated at 60 digits (simplifying the nested radicals to 0 takes minutes)
            residues.append(abs(sp.N(d_path - closed, 60)))
            values.append(sp.N(closed, 20))
        ok = all(r < sp.Float("1e-50") for r in residues)
        return ok, (f"at a stated student, exact expressions evaluated at 60 digits (not a general "
                    f"identity: that is the kernel identity above, summed): |d/dt L_lambda - closed form| = "
                    f"{[sp.N(r, 3) for r in residues]} <= 1e-50; closed form = {values}")

    return guarded(
        f"directional_derivative_assembly_{activation}", FAMILY,
        f"checker.geometry.descent.directional_derivative equals d/dt L_lambda(theta + t D) at t = 0 "
        f"({activation}; a student of two neurons in d = 2, one teacher; objective.evaluate on SymPy numbers, "
        f"evaluated at 60 digits)",
        "numeric", check)


def descent_identity_single_teacher(activation: str = "relu") -> Result:
    """At a balanced split on w*: <grad, D> = 4 sqrt S/(sqrt S + sqrt S*) zeta, ||grad||^2 = 8 kappa(0) S zeta."""

    def check() -> tuple[bool, str]:
        eng = SympyEngine()
        lam, s_opt, m1, m2 = sp.symbols("lambda S_opt m1 m2", positive=True)
        k0 = ck.kappa(sp.Integer(0), sp.Integer(0), sp.Integer(1), sp.pi, activation)
        # the optimal mass S* = a* - lambda / (2 kappa(0)) > 0 (2 kappa(0) a* > lambda): a* in terms of S*
        a_s = s_opt + lam / (2 * k0)
        S = m1 + m2
        a = _obj([sp.sqrt(m1), sp.sqrt(m2)])
        W = _obj([[sp.sqrt(m1), 0], [sp.sqrt(m2), 0]])
        q = [m1 / S, m2 / S]  # the mass-proportional rule of checker.geometry.descent
        a_hat = _obj([sp.sqrt(qj * s_opt) for qj in q])
        W_hat = _obj([[sp.sqrt(qj * s_opt), 0] for qj in q])
        a_star, W_star = _obj([a_s]), _obj([[1, 0]])
        dd = cd.directional_derivative(eng, activation, a, W, a_hat, W_hat, a_star, W_star, lam)
        ev = objective.evaluate(eng, activation, a, W, a_star, W_star, lam)
        opt = objective.evaluate(eng, activation, _obj([sp.sqrt(s_opt)]), _obj([[sp.sqrt(s_opt), 0]]),
                                 a_star, W_star, lam, with_gradient=False)
        zeta = sp.simplify(ev.reg_loss - opt.reg_loss)
        g2 = (ev.grad_a * ev.grad_a).sum() + (ev.grad_W * ev.grad_W).sum()
        r_zeta = sp.simplify(zeta - k0 * (S - s_opt) ** 2)
        c_D = 4 * sp.sqrt(S) / (sp.sqrt(S) + sp.sqrt(s_opt))
        r_dd = sp.simplify(sp.factor(sp.expand(dd - c_D * zeta)))
        r_g2 = sp.simplify(sp.expand(g2 - 8 * k0 * S * zeta))
        ok = r_zeta == 0 and r_dd == 0 and r_g2 == 0
        return ok, (f"zeta - kappa(0)(S - S*)^2 = {r_zeta}; <grad, D> - 4 sqrt S/(sqrt S + sqrt S*) zeta = {r_dd}; "
                    f"||grad||^2 - 8 kappa(0) S zeta = {r_g2} (kappa(0) = {k0}, S* = a* - lambda/(2 kappa(0)) > 0)")

    return guarded(
        f"descent_identity_single_teacher_{activation}", FAMILY,
        f"{activation}: balanced neurons on w* with total mass S: <grad L_lambda, D> = 4 sqrt(S)/(sqrt(S) + "
        f"sqrt(S*)) zeta and ||grad L_lambda||^2 = 8 kappa(0) S zeta, zeta = kappa(0)(S - S*)^2 (D is a "
        f"descent direction; c_D -> 2, c_PL -> 8 kappa(0) S* at the optimum)",
        "symbolic", check)


def descent_several_teachers_measured() -> Result:
    """Several teachers: <grad, D> / zeta > 0 at balanced points on the optimal directions (measured)."""

    def check() -> tuple[bool, str]:
        from checker.core.engines import MpEngine
        from checker.commands.presets import load_preset
        from checker.core.problem import Problem

        inst = load_preset("default").instance
        eng = MpEngine(30)
        p = Problem.from_instance(inst, eng)
        red = cd.reduced_optimum(eng, p.activation, p.a_star, p.W_star, p.lam)
        ratios = []
        with eng.context():
            opt = p.evaluate(red.a, red.W, with_gradient=False).reg_loss
            for f0, f1 in ((1.1, 1.0), (0.9, 1.05), (1.2, 0.8), (0.97, 1.02)):
                # teacher 0 split in two (0.4 / 0.6 of f0 s_0), teacher 1 one neuron (f1 s_1), all balanced
                fr = [eng.scalar(x) for x in (0.4 * f0, 0.6 * f0, f1)]
                a = np.array([fr[0] ** 0.5 * red.a[0], fr[1] ** 0.5 * red.a[0], fr[2] ** 0.5 * red.a[1]], dtype=object)
                W = np.array([fr[0] ** 0.5 * red.W[0], fr[1] ** 0.5 * red.W[0], fr[2] ** 0.5 * red.W[1]], dtype=object)
                zeta = p.evaluate(a, W, with_gradient=False).reg_loss - opt
                D = cd.descent_direction(eng, p.activation, a, W, p.W_star, red, inst.separation / 3)
                dd = cd.directional_derivative(eng, p.activation, a, W, D.a_hat, D.W_hat, p.a_star, p.W_star, p.lam)
                ratios.append(float(dd / zeta))
        return all(r > 0 for r in ratios), (
            f"not an identity (the masses of the teachers are coupled through the kernel): measured "
            f"<grad, D>/zeta = {[f'{r:.6g}' for r in ratios]} on the default preset's teacher at lambda = "
            f"{inst.lam}, mp 30 digits, four balanced mass perturbations on the optimal directions; along "
            f"runs: C6 of checker.theorem1 and tests/test_descent.py (Hypothesis)")

    return guarded(
        "descent_several_teachers_measured", FAMILY,
        "several teachers, balanced neurons on the optimal directions: <grad L_lambda, D> / zeta > 0 "
        "(measured on the default teacher, not proved)",
        "numeric", check)


DERIVATIONS = (
    bound(kernel_directional_derivative, "kernel_directional_derivative_relu", activation="relu"),
    bound(kernel_directional_derivative, "kernel_directional_derivative_abs", activation="abs"),
    bound(directional_derivative_assembly, "directional_derivative_assembly_relu", activation="relu"),
    bound(descent_identity_single_teacher, "descent_identity_single_teacher_relu", activation="relu"),
    bound(descent_identity_single_teacher, "descent_identity_single_teacher_abs", activation="abs"),
    descent_several_teachers_measured,
)
