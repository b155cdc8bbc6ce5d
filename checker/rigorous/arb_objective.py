"""Arb ball enclosures of the kernel sums and of the population objective.

The rigorous side of ``checker/core/objective.py``: the same closed forms
(``checker.core.kernel.kappa`` and ``grad_coefficients``, called on python-flint
``arb`` balls) and the same stable angle route,

    a = ||u^ - v^||,  b = ||u^ + v^||,  phi = 2 atan2(a, b),  sin phi = a b / 2,
    cos phi = <u^, v^>,

so every result is a ball that certainly contains the exact value.  Inputs may
themselves be balls (a box of directions), which is what the branch and bound
of ``checker/sphere.py`` feeds in.  ``KernelSum`` gives a kernel sum
F(w) = sum_l c_l k(w, v_l) with its gradient, its Hessian and a Taylor bound
over a set of unit vectors (``upper_on_sphere``); the Taylor coefficients of
kappa in t = cos phi come from ``kernel.kappa`` on Arb power series
(``kappa_taylor``).

Engine numbers (float64 and ``mpmath.mpf``) are binary floating-point numbers
and are converted to arb *exactly* (``to_arb``).  No function here sets the Arb
precision: callers scope it with ``flint.ctx.workprec(prec)``.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Sequence

import mpmath
import numpy as np
from flint import arb, arb_series, ctx, fmpz

from checker.core import kernel

ArbVector = list[arb]


# ---------------------------------------------------------------- conversion
def to_arb(x: Any) -> arb:
    """Exact arb of a binary number (int, float, numpy float, mpmath.mpf, dyadic Fraction).

    Decimal strings are not binary numbers: they are enclosed in a ball of the
    current precision (``arb(str)``).
    """
    if isinstance(x, arb):
        return x
    if isinstance(x, bool):
        raise TypeError("booleans are not numbers here")
    if isinstance(x, (int, fmpz, np.integer)):
        return arb(int(x))
    if isinstance(x, (float, np.floating)):
        f = float(x)
        if not math.isfinite(f):
            raise ValueError(f"cannot enclose non-finite number {f}")
        return dyadic_arb(Fraction(f))
    if isinstance(x, mpmath.mpf):
        sign, man, exp, _ = x._mpf_
        if not man:
            if exp:  # mpmath encodes inf and nan as zero mantissa with a non-zero exponent
                raise ValueError(f"cannot enclose non-finite number {x}")
            return arb(0)
        return arb((-int(man) if sign else int(man), int(exp)))
    if isinstance(x, Fraction):
        return dyadic_arb(x)
    if isinstance(x, str):
        return arb(x)
    raise TypeError(f"cannot convert {type(x).__name__} to arb")


def dyadic_arb(q: Fraction) -> arb:
    """Exact arb of a rational whose denominator is a power of two."""
    den = q.denominator
    if den & (den - 1):
        raise ValueError(f"{q} is not a dyadic rational")
    return arb((q.numerator, -(den.bit_length() - 1)))


def to_arb_vector(xs: Sequence[Any]) -> ArbVector:
    return [to_arb(x) for x in xs]


def to_arb_matrix(X: Any) -> list[ArbVector]:
    return [to_arb_vector(row) for row in np.asarray(X, dtype=object)]


def _exact_fraction(x: arb) -> Fraction:
    man, exp = x.man_exp()
    man, exp = int(man), int(exp)
    return Fraction(man * 2**exp) if exp >= 0 else Fraction(man, 2**-exp)


def upper_fraction(x: arb) -> Fraction:
    """The upper end of a ball, exactly (mid + rad are dyadic numbers)."""
    if not x.is_finite():
        raise ValueError("ball is not finite")
    return _exact_fraction(x.mid()) + _exact_fraction(x.rad())


def lower_fraction(x: arb) -> Fraction:
    """The lower end of a ball, exactly."""
    if not x.is_finite():
        raise ValueError("ball is not finite")
    return _exact_fraction(x.mid()) - _exact_fraction(x.rad())


def exact_decimal(x: Any) -> str:
    """The exact decimal expansion of a binary number (float, mpmath.mpf, dyadic Fraction, int).

    A dyadic m / 2^k is m 5^k / 10^k: finitely many digits, no rounding.  This is how a rigorous
    result names an input the engine rounded (lambda = "0.1" read as the nearest binary number):
    the enclosure is about that number, and its label must say so.
    """
    q = _exact_fraction(to_arb(x))
    k = q.denominator.bit_length() - 1  # q.denominator = 2^k
    num = q.numerator * 5**k
    context = decimal.Context(prec=len(str(abs(num))) + 2, Emin=-10**9, Emax=10**9)
    return format(context.scaleb(decimal.Decimal(num), -k), "f")


def decimal_string(q: Fraction, *, up: bool, digits: int = 40) -> str:
    """q as a decimal string of ``digits`` significant digits, rounded up (or down)."""
    context = decimal.Context(prec=digits, rounding=decimal.ROUND_CEILING if up else decimal.ROUND_FLOOR,
                              Emin=-10**9, Emax=10**9)
    value = context.divide(decimal.Decimal(q.numerator), decimal.Decimal(q.denominator))
    return str(value).replace("E", "e")


def digits_for(prec: int) -> int:
    """Decimal digits that carry a ``prec``-bit value (two more than log10(2) prec)."""
    return max(20, math.ceil(prec * math.log10(2)) + 2)


# ---------------------------------------------------------------- ball vector algebra
def sq(x: arb) -> arb:
    """x^2 as a ball inside [0, inf) (Arb's x*x of a ball around 0 dips below 0)."""
    return (x * x).nonnegative_part()


def dot(u: ArbVector, v: ArbVector) -> arb:
    total = arb(0)
    for x, y in zip(u, v):
        total += x * y
    return total


def norm(u: ArbVector) -> arb:
    total = arb(0)
    for x in u:
        total += sq(x)
    # The rounded sum of non-negative balls can reach slightly below 0; clip before sqrt.
    return total.nonnegative_part().sqrt()


_ZERO_TWO = arb.union(arb(0), arb(2))  # [0, 2]: the range of ||u^ -+ v^|| for unit u^, v^
_UNIT = arb.union(arb(-1), arb(1))
_ZERO_ONE = arb.union(arb(0), arb(1))


def angle_triple(uhat: ArbVector, vhat: ArbVector) -> tuple[arb, arb, arb]:
    """(phi, sin phi, cos phi) of two unit vectors (or balls of them), the stable route.

    Each quantity is intersected with its known range so that wide boxes (early
    branch and bound levels) still give finite balls.
    """
    a = norm([x - y for x, y in zip(uhat, vhat)]).intersection(_ZERO_TWO)
    b = norm([x + y for x, y in zip(uhat, vhat)]).intersection(_ZERO_TWO)
    pi = arb.pi()
    phi = 2 * arb.atan2(a, b)
    phi_range = arb.union(arb(0), pi)
    phi = phi.intersection(phi_range) if phi.is_finite() else phi_range
    sin_phi = (a * b / 2).intersection(_ZERO_ONE)
    cos_phi = dot(uhat, vhat).intersection(_UNIT)
    return phi, sin_phi, cos_phi


# ---------------------------------------------------------------- kernel sums
class KernelSum:
    """F(w) = sum_l c_l k(w, v_l) and its gradient, enclosed in Arb.

    F is positively 1-homogeneous and its gradient 0-homogeneous.  Rows with
    v_l = 0 or c_l = 0 contribute nothing and are dropped.  Calling the object
    gives (F(w), grad F(w)) for a ball vector w that certainly excludes 0 (the
    form ``checker.sphere.certified_max`` expects); ``value(w)`` gives F alone.
    The inputs are kept exact; the unit vectors v_l/||v_l|| are computed at the
    Arb precision in force when F is called.
    """

    def __init__(self, activation: str, V: Sequence[Sequence[Any]], c: Sequence[Any]) -> None:
        self.activation = kernel.check_activation(activation)
        self.d = len(V[0]) if len(V) else 0
        self.rows: list[tuple[ArbVector, arb]] = []
        exact: list[tuple[list[Fraction], Fraction] | None] = []
        for row, cl in zip(V, c):
            v = to_arb_vector(list(row))
            cl = to_arb(cl)
            if cl == 0 or all(x == 0 for x in v):
                continue
            if cl.is_exact() and all(x.is_exact() for x in v):
                vq, cq = [_exact_fraction(x) for x in v], _exact_fraction(cl)
                for i, prev in enumerate(exact):
                    ratio = _positive_ratio(vq, prev[0]) if prev is not None else None
                    if ratio is not None:
                        # c k(w, v) = c ratio k(w, v_prev) for v = ratio v_prev, ratio > 0 (1-homogeneity)
                        exact[i] = (prev[0], prev[1] + cq * ratio)
                        break
                else:
                    exact.append((vq, cq))
                    self.rows.append((v, cl))
            else:
                exact.append(None)
                self.rows.append((v, cl))
        # Exactly parallel rows are merged (their terms cancel exactly when the
        # coefficients do, as for a student neuron equal to a teacher neuron).
        merged = []
        for (v, cl), ex in zip(self.rows, exact):
            if ex is not None:
                if ex[1] == 0:
                    continue
                cl = arb(ex[1].numerator) / ex[1].denominator
            merged.append((v, cl))
        self.rows = merged
        self._cache: tuple[int, list[ArbVector], list[arb]] | None = None

    def negated(self) -> "KernelSum":
        out = KernelSum(self.activation, [], [])
        out.d = self.d
        out.rows = [(v, -cl) for v, cl in self.rows]
        return out

    def _units(self) -> tuple[list[ArbVector], list[arb]]:
        """(v_l / ||v_l||, c_l ||v_l||) at the current precision."""
        prec = ctx.prec
        if self._cache is None or self._cache[0] != prec:
            vhat, coef = [], []
            for v, cl in self.rows:
                nv = norm(v)
                vhat.append([x / nv for x in v])
                coef.append(cl * nv)
            self._cache = (prec, vhat, coef)
        return self._cache[1], self._cache[2]

    def value(self, w: ArbVector) -> arb:
        vhats, coefs = self._units()
        nw = norm(w)
        uhat = [x / nw for x in w]
        pi = arb.pi()
        total = arb(0)
        for vh, cf in zip(vhats, coefs):
            phi, s, c = angle_triple(uhat, vh)
            total += cf * kernel.kappa(phi, s, c, pi, self.activation)
        return nw * total

    def __call__(self, w: ArbVector) -> tuple[arb, ArbVector]:
        vhats, coefs = self._units()
        nw = norm(w)
        uhat = [x / nw for x in w]
        pi = arb.pi()
        total = arb(0)
        grad = [arb(0)] * len(w)
        b_sum = arb(0)
        for vh, cf in zip(vhats, coefs):
            phi, s, c = angle_triple(uhat, vh)
            total += cf * kernel.kappa(phi, s, c, pi, self.activation)
            A, B = kernel.grad_coefficients(phi, s, pi, self.activation)
            cA = cf * A
            grad = [g + cA * x for g, x in zip(grad, vh)]
            b_sum += cf * B
        grad = [g + b_sum * x for g, x in zip(grad, uhat)]
        return nw * total, grad

    def hessian(self, w: ArbVector) -> tuple[arb, ArbVector, list[ArbVector]]:
        """(F(w), grad F(w), Hess F(w)), enclosed in Arb.

        With n = ||w||, w^ = w/n, P = I - w^ w^T, phi = angle(w, v) and
        grad_w k(w, v) = ||v|| (A v^ + B w^) (``kernel.grad_coefficients``):
        d w^ = P dw / n and d phi = -(P v^)^T dw / (n sin phi), so

            Hess_w k = ||v|| [-(A' v^ + B' w^)(P v^)^T / (n sin phi) + B P / n].

        For relu A' = -1/(2 pi), B' = cos(phi)/(2 pi); for abs A' = -2/pi,
        B' = (2/pi) cos phi.  In both cases A' v^ + B' w^ = A' P v^ and
        B = -A' sin phi, hence

            Hess_w k(w, v) = (||v|| B(phi) / ||w||) (P + e e^T),  e = P v^ / sin phi,

        which has no 0/0 once e e^T is enclosed by |e_i e_j| <= 1 near
        phi = 0, pi (where the factor B is small).  tests/test_sphere.py checks
        it against central differences of the exact gradient.
        """
        vhats, coefs = self._units()
        d = len(w)
        nw = norm(w)
        uhat = [x / nw for x in w]
        pi = arb.pi()
        total = arb(0)
        grad = [arb(0)] * d
        b_sum = arb(0)
        E_sum = [[arb(0)] * d for _ in range(d)]
        for vh, cf in zip(vhats, coefs):
            phi, s, c = angle_triple(uhat, vh)
            total += cf * kernel.kappa(phi, s, c, pi, self.activation)
            A, B = kernel.grad_coefficients(phi, s, pi, self.activation)
            cA, cB = cf * A, cf * B
            grad = [g + cA * x for g, x in zip(grad, vh)]
            b_sum += cB
            E = _tangent_dyad(uhat, vh, s, c)
            for i in range(d):
                row, Ei = E_sum[i], E[i]
                for j in range(i, d):
                    row[j] += cB * Ei[j]
        grad = [g + b_sum * x for g, x in zip(grad, uhat)]
        H = [[arb(0)] * d for _ in range(d)]
        for i in range(d):
            for j in range(i, d):
                proj = (1 if i == j else 0) - uhat[i] * uhat[j]
                H[i][j] = (b_sum * proj + E_sum[i][j]) / nw
                H[j][i] = H[i][j]
        return nw * total, grad, H


    # ------------------------------------------------------------ zonal Taylor bound
    def _gram_powers(self, order: int) -> list[list[list[arb]]]:
        """<v^_l, v^_l'>^j for j = 0..order (cached per precision)."""
        key = (ctx.prec, order)
        if getattr(self, "_powers_key", None) != key:
            vhats, _ = self._units()
            n = len(vhats)
            T = [[dot(vhats[i], vhats[j]).intersection(_UNIT) for j in range(n)] for i in range(n)]
            powers = [[[arb(1)] * n for _ in range(n)]]
            for _ in range(order):
                prev = powers[-1]
                powers.append([[prev[i][j] * T[i][j] for j in range(n)] for i in range(n)])
            self._powers, self._powers_key = powers, key
        return self._powers

    def _singular_term(self, center: ArbVector, vh: ArbVector, cf: arb, t_range: arb, s_up: arb, J: int,
                       pi: arb) -> tuple[list[arb], arb]:
        """First-order Taylor data of a term whose t-range reaches +-1 (the box nears +-v^).

        kappa is not analytic at t = +-1, but kappa'(t) = A(phi) (the A of
        ``kernel.grad_coefficients``: (pi - phi)/(2 pi) for relu, (2/pi)(pi/2 - phi)
        = (2/pi) arcsin t for abs) is continuous and increasing in t, so
        kappa(t_m + s) = kappa(t_m) + A(t_m) s + R with
        |R| <= |s| max(A(t_hi) - A(t_m), A(t_m) - A(t_lo)) over the range
        [t_lo, t_hi] of t.  Near v^ both |s| and the spread of A are small
        (|s| = O(rho^2), spread O(rho)), so R = O(rho^3).  Values at the centre
        use the stable angle route.  kappa is convex in t (kappa'' = 1/(2 pi sqrt(1 - t^2)) for relu,
        four times that for abs), so R >= 0: ``upper_on_sphere`` charges the remainder only to the
        signs for which sign * c_l > 0.
        """
        phi, sn, cs = angle_triple(center, vh)
        k0 = kernel.kappa(phi, sn, cs, pi, self.activation)
        A_m = kernel.grad_coefficients(phi, sn, pi, self.activation)[0]
        lo = max(lower_fraction(t_range), Fraction(-1))
        hi = min(upper_fraction(t_range), Fraction(1))

        def A_at(t: Fraction) -> arb:
            ta = dyadic_arb(t)
            ph = ta.acos() if t > -1 else pi
            return kernel.grad_coefficients(ph, ((1 - ta) * (1 + ta)).nonnegative_part().sqrt(), pi,
                                            self.activation)[0]

        spread = (A_at(hi) - A_m).max(A_m - A_at(lo))
        kj = [k0, A_m] + [arb(0)] * (J - 1)
        return kj, cf.abs_upper() * s_up * spread.abs_upper()

    def upper_on_sphere(self, U: ArbVector, center: ArbVector, *, order: int = 6,
                        signs: Sequence[int] = (1,), radius: arb | None = None) -> list[arb] | None:
        """Balls whose upper ends bound sign * F(u) over the unit vectors u in U, one per sign.

        ``center`` is (a tight ball around) a unit vector u_m in U.  On the sphere
        F(u) = sum_l beta_l kappa(<u, v^_l>), beta_l = c_l ||v_l||.  With
        delta = u - u_m and s_l = <v^_l, delta>, Taylor's theorem in t for each
        term gives

            F(u) = sum_{j <= J} sum_l beta_l kappa_j(t_l) s_l^j + remainder,

        kappa_j = kappa^(j)/j! from ``kappa_taylor`` (J = ``order``).  The sums
        over l are formed at the single point u_m, so the cancellation between
        terms (teacher and student neurons nearly aligned: F = O(lambda) while
        each term is O(1)) is kept at every order:

        * j = 1, 2: <G, delta> + delta^T M delta with G = sum beta kappa_1 v^_l,
          M = sum beta kappa_2 v^_l v^_l^T.  On the sphere <u_m, delta> =
          -|delta|^2/2, so this is <G_T, delta_T> + delta_T^T M' delta_T + O(rho^3)
          with G_T the tangential part of G, M' = M - <G, u_m> I / 2 and
          |delta| <= rho; it is bounded by max over 0 <= tau <= rho of
          |G_T| tau + lambda* tau^2, lambda* >= the largest eigenvalue of M' on
          the tangent space, plus the O(rho^3) cross terms.  Near a maximizer
          this is the maximum of the quadratic model: the bound is tight to O(rho^3).
          Away from maximizers sum_i |G_T,i| |delta_i| + max(lambda*, 0) rho^2
          is used when smaller (it follows the box's shape, not its circumscribed ball).
        * 3 <= j <= J: |sum_l gamma_l s_l^j| = |<T_j, delta^(x)j>| <= ||T_j||_F |delta|^j,
          T_j = sum_l gamma_l v^_l^(x)j, ||T_j||_F^2 = sum_{l,l'} gamma_l gamma_l' <v^_l, v^_l'>^j
          (or sum_l |gamma_l| |s_l|^j when smaller).
        * remainder: |beta_l| times the tail sum_{j > J} kappa_j(|t_l|) sigma_l^j =
          kappa(|t_l| + sigma_l) - sum_{j <= J} kappa_j(|t_l|) sigma_l^j of the series at the
          centre, sigma_l >= |s_l| (``_taylor_tail``, when |t_l| + sigma_l <= 1); otherwise
          Lagrange's |beta_l| sup |kappa_{J+1}| |s_l|^{J+1}.  kappa has
          non-negative Taylor coefficients (the squared Hermite coefficients of
          sigma), so |kappa_{J+1}(t)| <= kappa_{J+1}(|t|), increasing in |t|:
          the sup over the range of t is at most its value at an upper bound of |t|.

        A term whose range of <u, v^_l> reaches +-1 (the box nears +-v^_l, where
        kappa is not analytic) enters to first order only (``_singular_term``); so does a
        term with 1 - |t_m| <= 4 |s_l| (the series in t then converges slowly) when its
        convex first-order remainder (``_first_order_remainder``) is below its tail.  Both
        remainders are >= 0 (kappa is convex in t) and are charged only to the signs with
        sign * c_l > 0.
        For sign -1 only the value, G_T's sign and the eigenvalue bound change.
        ``radius``, when given, is an upper bound of |u - u_m| over the unit vectors u in U
        (a cap around u_m; the branch and bound gets it from the box's vertices): it caps
        |delta| and gives each term the range of t = <u, v^_l> over the cap,
        [cos(min(a + theta, pi)), cos(max(a - theta, 0))] with a = angle(u_m, v^_l) and
        theta = 2 asin(radius / 2), much narrower than <U, v^_l> for a coordinate-wise U.
        Returns None if some enclosure is not finite.
        """
        vhats, coefs = self._units()
        d = len(U)
        J = order
        delta = [x - c for x, c in zip(U, center)]
        rho_ball = norm(delta)
        rho = rho_ball.abs_upper()  # a ball around an upper bound of |delta|
        theta = None
        if radius is not None and radius.is_finite() and radius < 2:
            if float(radius.mid()) < float(rho.mid()):
                rho = radius.abs_upper()
            theta = 2 * (radius.abs_upper() / 2).asin()
        rho_f = float(rho.mid())
        terms = []
        singular: list[tuple[arb, arb]] = []  # (beta_l, bound of the first-order remainder of kappa)
        pi = arb.pi()
        for vh, cf in zip(vhats, coefs):
            t_range = dot(U, vh)
            s_up = dot(delta, vh).abs_upper()
            if theta is not None:
                t_c = dot(center, vh).intersection(_UNIT)
                alpha = t_c.acos()
                lo_a = alpha - theta
                t_hi = arb(1) if not lo_a > 0 else lo_a.cos()
                hi_a = alpha + theta
                t_lo = arb(-1) if not hi_a < pi else hi_a.cos()
                cap = arb.union(t_lo, t_hi)
                if cap.is_finite() and t_range.overlaps(cap):
                    t_range = t_range.intersection(cap)
                    s_cap = (cap - t_c).abs_upper()
                    if float(s_cap.mid()) < float(s_up.mid()):
                        s_up = s_cap
            t_abs = t_range.abs_upper()
            s_up = s_up if float(s_up.mid()) < rho_f else rho
            if t_abs < 1:
                t_m = dot(center, vh)
                kj = kappa_taylor(t_m, J + 1, self.activation)
                tail = _taylor_tail(t_m, s_up, J, self.activation)
                if tail is None:  # Lagrange's form at the largest |t| of the range
                    k_rem = kappa_taylor(t_abs, J + 2, self.activation)[J + 1]
                    tail = k_rem.abs_upper() * s_up ** (J + 1)
                rem = cf.abs_upper() * tail
                if not (1 - t_m.abs_upper()) > 4 * s_up:
                    # near +-v^ the series in t converges slowly (radius 1 - |t_m|): the first-order
                    # form with its convex remainder (``_first_order_remainder``) may be smaller
                    r1 = _first_order_remainder(t_m, t_range, self.activation)
                    if r1 is not None and float(r1.mid()) < float(tail.mid()):
                        kj = [kj[0], kj[1]] + [arb(0)] * (J - 1)
                        singular.append((cf, r1))
                        rem = arb(0)
            else:
                kj, rem = self._singular_term(center, vh, cf, t_range, s_up, J, pi)
                singular.append((cf, rem / cf.abs_upper() if cf != 0 else arb(0)))
                rem = arb(0)  # enters per sign below
            if not (rem.is_finite() and all(x.is_finite() for x in kj)):
                return None
            terms.append((vh, cf, kj, rem, s_up))
        value = arb(0)
        G = [arb(0)] * d
        M = [[arb(0)] * d for _ in range(d)]
        for vh, cf, kj, _, _ in terms:
            value += cf * kj[0]
            g1, g2 = cf * kj[1], cf * kj[2]
            G = [g + g1 * x for g, x in zip(G, vh)]
            for i in range(d):
                row, gi = M[i], g2 * vh[i]
                for j in range(i, d):
                    row[j] += gi * vh[j]
        for i in range(d):
            for j in range(i):
                M[i][j] = M[j][i]
        Gr = dot(G, center)
        GT = [g - Gr * c for g, c in zip(G, center)]
        gt = norm(GT)
        # <G_T, delta> coordinate by coordinate: no loss when G_T points along an edge of the box.
        lin = arb(0)
        for g, x in zip(GT, delta):
            lin += g.abs_upper() * x.abs_upper()
        Mp = [[M[i][j] - (Gr / 2 if i == j else 0) for j in range(d)] for i in range(d)]
        Mu = [dot(row, center) for row in Mp]
        # Terms that do not depend on the sign: cross terms 2 delta_r <u_m, M' delta_T> and
        # delta_r^2 u_m^T M' u_m (|delta_r| = |delta|^2 / 2), orders 3..J, the remainder.
        rest = norm(Mu).abs_upper() * rho ** 3 + dot(center, Mu).abs_upper() * rho ** 4 / 4
        powers = self._gram_powers(J)
        n = len(terms)
        for j in range(3, J + 1):
            gam = [cf * kj[j] for _, cf, kj, _, _ in terms]
            fro2 = arb(0)
            for a in range(n):
                pa = powers[j][a]
                for b in range(n):
                    fro2 += gam[a] * gam[b] * pa[b]
            frob = fro2.nonnegative_part().sqrt() * rho ** j
            crude = arb(0)
            for gm, term in zip(gam, terms):
                crude += gm.abs_upper() * term[4] ** j
            rest += frob if float(frob.mid()) <= float(crude.mid()) else crude
        for term in terms:
            rest += term[3]
        P = [[(1 if i == j else 0) - center[i] * center[j] for j in range(d)] for i in range(d)]
        PM = [[dot(P[i], [Mp[k][j] for k in range(d)]) for j in range(d)] for i in range(d)]
        PMP = [[dot(PM[i], P[j]) for j in range(d)] for i in range(d)]
        out = []
        for sign in signs:
            lam = _lambda_max_tangent(PMP, center, sign)
            if lam is None:
                return None
            q = quadratic_max(gt, 2 * lam, rho)
            q_sep = lin + lam.max(arb(0)) * rho * rho
            if float(q_sep.mid() + q_sep.rad()) < float(q.mid() + q.rad()):
                q = q_sep
            # kappa is convex in t, so a singular term's first-order remainder R is >= 0: sign * beta R
            # is at most max(sign * beta, 0) R_max (nothing when sign * beta < 0).
            own = arb(0)
            for cf, r_max in singular:
                if not r_max.is_finite():
                    return None
                own += (sign * cf).max(arb(0)).abs_upper() * r_max
            out.append(sign * value + q + rest + own)
        return out


def _first_order_remainder(t_m: arb, t_range: arb, activation: str) -> arb | None:
    """An upper bound (ball) of R(t) = kappa(t) - kappa(t_m) - kappa'(t_m) (t - t_m) over t in t_range.

    kappa is convex in t on [-1, 1] (kappa'' = 1/(2 pi sqrt(1 - t^2)) for relu, four times that
    for abs), so R >= 0 is convex with R(t_m) = 0 and its maximum over an interval holding t_m is
    at an end: max(R(t_lo), R(t_hi)), each end clipped to [-1, 1] (the range on the sphere).
    None when t_m is not inside the range."""
    lo = max(lower_fraction(t_range), Fraction(-1))
    hi = min(upper_fraction(t_range), Fraction(1))
    pi = arb.pi()
    tc = t_m.intersection(_UNIT)
    phi_m = tc.acos()
    s_m = ((1 - tc) * (1 + tc)).nonnegative_part().sqrt()
    k_m = kernel.kappa(phi_m, s_m, tc, pi, activation)
    a_m = kernel.grad_coefficients(phi_m, s_m, pi, activation)[0]
    if not (lower_fraction(tc) >= lo and upper_fraction(tc) <= hi):
        return None
    out = arb(0)
    for end in (lo, hi):
        t = dyadic_arb(end)
        ph = t.acos() if end > -1 else pi
        sn = ((1 - t) * (1 + t)).nonnegative_part().sqrt()
        r = kernel.kappa(ph, sn, t, pi, activation) - k_m - a_m * (t - tc)
        if not r.is_finite():
            return None
        out = out.max(r.abs_upper())
    return out


def _taylor_tail(t_m: arb, sigma: arb, J: int, activation: str) -> arb | None:
    """An upper bound (ball) of sup_{|s| <= sigma} |sum_{j > J} kappa_j(t_m) s^j|, J >= 1, or None.

    kappa - t/4 (relu) and kappa (abs) are even with non-negative Taylor coefficients at 0, so
    for j >= 2 |kappa_j(t)| = kappa_j(|t|), and kappa_j is non-negative and increasing on
    [0, 1).  With t0 >= |t_m| and t0 + sigma <= 1 (inside the disc of convergence of the
    series at t0, radius 1 - t0, closed by Abel's theorem: kappa is continuous at 1) the tail is
    at most sum_{j > J} kappa_j(t0) sigma^j = kappa(t0 + sigma) - sum_{j <= J} kappa_j(t0) sigma^j:
    the Taylor coefficients at the centre, where Lagrange's form takes kappa_{J+1} at the worst
    point of the range (much larger when the range nears +-1)."""
    if J < 1:
        return None
    t0 = t_m.abs_upper()
    x = t0 + sigma
    if not x <= 1:
        return None
    k0 = kappa_taylor(t0, J + 1, activation)
    kx = kernel.kappa(x.acos(), ((1 - x) * (1 + x)).nonnegative_part().sqrt(), x, arb.pi(), activation)
    total = kx
    power = arb(1)
    for j in range(J + 1):
        total -= k0[j] * power
        power = power * sigma
    total = total.abs_upper() if total.is_finite() else total
    return total if total.is_finite() else None


def kappa_taylor(t: arb, length: int, activation: str) -> list[arb]:
    """Taylor coefficients kappa^(j)(t)/j!, j < length, of kappa as a function of t = cos phi.

    From ``kernel.kappa`` itself evaluated on Arb power series (phi = acos t,
    sin phi = sqrt(1 - t^2)); at t = 0 these are the squared Hermite
    coefficients c_k^2 of sigma.  Balls: every coefficient encloses the exact one.
    """
    x = arb_series([t, 1], prec=length)
    series = kernel.kappa(x.acos(), ((1 - x) * (1 + x)).sqrt(), x, arb.pi(), activation)
    coeffs = list(series.coeffs())
    return coeffs + [arb(0)] * (length - len(coeffs))


def quadratic_max(g: arb, u: arb, r: arb) -> arb:
    """A ball whose upper end bounds max over 0 <= t <= r of g t + u t^2 / 2, for all g, u in the balls.

    The value is increasing in g and u.  max(g, 0) r + max(u, 0) r^2 / 2 is
    always an upper bound; when u < 0 for sure, -g^2 / (2u) (the unconstrained
    maximum of the concave quadratic) is one too, and so is g r + u r^2 / 2 once
    the vertex -g/u is beyond r; when u >= 0 for sure the maximum is at an end.
    Only certain comparisons choose a formula, so the result is valid for balls.
    """
    zero = arb(0)
    candidates = [g.max(zero) * r + u.max(zero) * r * r / 2]
    at_end = (g * r + u * r * r / 2).max(zero)
    if u >= 0:
        candidates.append(at_end)
    elif u < 0:
        candidates.append((-(g * g) / (2 * u)).max(zero))
        if g + u * r > 0:
            candidates.append(at_end)
    best = candidates[0]
    for c in candidates[1:]:
        if c.is_finite() and (not best.is_finite() or float(c.mid() + c.rad()) < float(best.mid() + best.rad())):
            best = c
    return best


def _lambda_max_tangent(PMP: list[ArbVector], u: ArbVector, sign: int) -> arb | None:
    """Upper bound on the largest eigenvalue of sign * M on the plane orthogonal to unit u.

    ``PMP`` is P M P with P = I - u u^T.  For delta_T orthogonal to u,
    delta_T^T M delta_T = delta_T^T N delta_T with N = sign P M P - mu u u^T for
    any mu; a large mu moves the eigenvalue of the u direction out of the way.
    sigma >= lambda_max(N) is certified by an Arb LDL^T factorization of
    sigma I - N (all pivots > 0), sigma a float estimate plus a margin;
    Gershgorin's bound is the fallback.
    """
    d = len(u)
    mid = np.array([[float(x.mid()) for x in row] for row in PMP])
    if not np.all(np.isfinite(mid)):
        return None
    scale = float(np.abs(mid).sum()) + 1e-300
    mu = arb(2 * scale + 1)
    N = [[sign * PMP[i][j] - mu * u[i] * u[j] for j in range(d)] for i in range(d)]
    Nmid = np.array([[float(x.mid()) for x in row] for row in N])
    rad = max(float(x.rad()) for row in N for x in row)
    top = float(np.linalg.eigvalsh((Nmid + Nmid.T) / 2).max())
    for margin in (1e-12, 1e-9, 1e-6, 1e-3):
        sigma = arb(top + margin * scale + 2 * d * rad)  # a float: converted exactly
        if _positive_definite([[(sigma if i == j else 0) - N[i][j] for j in range(d)] for i in range(d)]):
            return sigma
    gersh = [N[i][i] + sum((N[i][j].abs_upper() for j in range(d) if j != i), arb(0)) for i in range(d)]
    best = gersh[0]
    for g in gersh[1:]:
        best = best.max(g)
    return best


def _positive_definite(A: list[ArbVector]) -> bool:
    """True only if the symmetric ball matrix A is certainly positive definite (Arb LDL^T)."""
    d = len(A)
    L = [[arb(0)] * d for _ in range(d)]
    D = [arb(0)] * d
    for j in range(d):
        D[j] = A[j][j] - sum((L[j][k] * L[j][k] * D[k] for k in range(j)), arb(0))
        if not D[j] > 0:
            return False
        for i in range(j + 1, d):
            L[i][j] = (A[i][j] - sum((L[i][k] * L[j][k] * D[k] for k in range(j)), arb(0))) / D[j]
    return True


def _tangent_dyad(uhat: ArbVector, vhat: ArbVector, sin_phi: arb, cos_phi: arb) -> list[ArbVector]:
    """Upper triangle of e e^T, e = (v^ - cos phi u^)/sin phi (the unit tangent towards v^).

    Where sin phi may vanish e is undefined, but |e_i e_j| <= 1 and e_i^2 in
    [0, 1] still hold (e is a unit vector), which is all the Hessian needs
    there: its factor B(phi) is then small.
    """
    d = len(uhat)
    p = [v - cos_phi * u for u, v in zip(uhat, vhat)]
    s2 = sin_phi * sin_phi
    if s2 > 0:
        return [[(p[i] * p[j] / s2).intersection(_ZERO_ONE if i == j else _UNIT) if j >= i else None
                 for j in range(d)] for i in range(d)]
    return [[(_ZERO_ONE if i == j else _UNIT) if j >= i else None for j in range(d)] for i in range(d)]


def _positive_ratio(v: list[Fraction], u: list[Fraction]) -> Fraction | None:
    """t > 0 with v = t u exactly, or None."""
    k = next(i for i, x in enumerate(u) if x != 0)
    t = v[k] / u[k]
    if t <= 0 or any(x != t * y for x, y in zip(v, u)):
        return None
    return t


def gram(activation: str, U: Sequence[ArbVector], V: Sequence[ArbVector]) -> list[list[arb]]:
    """K_{jl} = k(u_j, v_l) = ||u_j|| ||v_l|| kappa(phi_jl); 0 when either vector is 0."""
    pi = arb.pi()
    units = []
    for X in (U, V):
        rows = []
        for x in X:
            n = norm(x)
            rows.append((n, None if all(t == 0 for t in x) else [t / n for t in x]))
        units.append(rows)
    K = []
    for nu, uh in units[0]:
        row = []
        for nv, vh in units[1]:
            if uh is None or vh is None:
                row.append(arb(0))
                continue
            phi, s, c = angle_triple(uh, vh)
            row.append(nu * nv * kernel.kappa(phi, s, c, pi, activation))
        K.append(row)
    return K


def _quad(x: ArbVector, K: list[list[arb]], y: ArbVector) -> arb:
    total = arb(0)
    for xi, row in zip(x, K):
        total += xi * dot(row, y)
    return total


@dataclass(frozen=True)
class LossEnclosure:
    """Arb balls of the pieces of the duality bound (see ``checker.duality``)."""

    loss: arb  # L(theta) = ||r||^2, r = f* - f_theta
    reg_loss: arb  # L_lambda(theta)
    residual_teacher: arb  # <r, f*> = a*^T K(W*, W*) a* - a^T K(W, W*) a*
    mass: arb  # ||nu|| = sum_j |a_j| ||w_j||


def loss_enclosure(activation: str, a: Any, W: Any, a_star: Any, W_star: Any, lam: Any) -> LossEnclosure:
    """Enclosures of L, L_lambda, <r, f*> and the student mass from engine numbers (exact inputs)."""
    a_ = to_arb_vector(list(a))
    as_ = to_arb_vector(list(a_star))
    W_ = to_arb_matrix(W)
    Ws_ = to_arb_matrix(W_star)
    lam_ = to_arb(lam)
    Kss = gram(activation, W_, W_)
    Kst = gram(activation, W_, Ws_)
    Ktt = gram(activation, Ws_, Ws_)
    teacher = _quad(as_, Ktt, as_)
    cross = _quad(a_, Kst, as_)
    loss = (_quad(a_, Kss, a_) - 2 * cross + teacher).nonnegative_part()
    reg = arb(0)
    for x in a_:
        reg += sq(x)
    for row in W_:
        for x in row:
            reg += sq(x)
    mass = arb(0)
    for x, row in zip(a_, W_):
        mass += abs(x) * norm(row)
    return LossEnclosure(loss, loss + lam_ * reg / 2, teacher - cross, mass)
