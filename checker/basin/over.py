"""Over-parameterized instances (m = m* + 1): a certified neighbourhood of an arc of split optima.

At m > m* the lambda-optimum is not isolated: a teacher's optimal neuron (a-hat, w-hat) may be
split among collinear balanced student neurons.  With one extra neuron, every point of the arc

    Gamma = { gamma(phi) : phi in [0, pi/2] },
    gamma(phi) = the exact-width optimum theta* with neuron k replaced by cos(phi) (a-hat_k, w-hat_k)
                 and the extra neuron (the last one) equal to sin(phi) (a-hat_k, w-hat_k),

is a stationary point of L_lambda with the same value L_lambda(theta*) (the network and the
regularizer are unchanged: sigma is 1-homogeneous and cos^2 + sin^2 = 1), so the Hessian has the
null vector gamma'(phi) there and no ball around a point of Gamma has mu > 0: the argument of
``checker.basin.basin`` does not apply.  What is used instead (the paper's route made rigorous
on a ball, with the descent direction D(theta) = theta - p(theta), p(theta) a nearest point of
Gamma; see ``statement`` for the exact claims):

* the exact-width optimum theta* is certified by ``checker.basin.basin`` on the instance with the
  extra neuron removed (Krawczyk box of half-width rho, ||theta* - c*|| <= rho_2); the centre here
  is c = the split of c* at (cos, sin) = (3/5, 4/5) by default (exact decimals), within rho_2 of
  gamma(phi_c);
* on the ball B(c, r), covered by a bisection tree of its cube (``checker.basin.cover``), every
  neuron is non-zero and ||H(q) - M0||_2 <= e for every q (M0 the midpoint matrix of the Hessian at c,
  exact binary numbers; per box an entrywise bound of |H(box) - M0|, then min(Frobenius, largest
  row sum));
* lambda_2(M0) >= l2 (Sylvester's inertia: an Arb LDL^T of M0 - l2 I with exactly one pivot
  certainly negative and the others certainly positive) and lambda_max(M0) <= lmax (LDL^T of
  lmax I - M0);
* then for q in B(c, r): lambda_max(H(q)) <= beta = lmax + e; at a point p of Gamma in the ball,
  H(p) gamma'(phi_p) = 0 and lambda_2(H(p)) >= l2 - e > 0, so H(p) >= l2 - e on gamma'(phi_p)^perp;
  for theta in B(c, R), R = (r - rho_2)/2, the nearest point p lies in B(c, r), interior to the arc
  (the ends are farther: checked), D = theta - p is orthogonal to gamma'(phi_p), and with
  grad L_lambda(theta) = (integral of H along [p, theta]) D:

      <grad L_lambda(theta), D> >= mu_N ||D||^2,  mu_N = l2 - 3 e,
      (mu_N/2) ||D||^2 <= zeta_Gamma(theta) = L_lambda(theta) - L_lambda(Gamma) <= (beta/2) ||D||^2,
      <grad L_lambda(theta), D> - 2 zeta_Gamma(theta) = D^T (integral of (2s - 1) (H(p + s D) - M0) ds) D
                                                    >= -(e/2) ||D||^2

  (the weights 1 and 2 (1 - s) of the two Taylor forms differ by 2s - 1, whose integral is 0 and
  whose absolute integral is 1/2), hence <grad, D> >= c_D zeta_Gamma with c_D = 2 - e/mu_N, and, by
  Cauchy-Schwarz with ||D||^2 <= 2 zeta_Gamma / mu_N, ||grad||^2 >= c_PL zeta_Gamma with
  c_PL = c_D^2 mu_N / 2;
* gradient descent with 0 < eta <= 1/beta: the descent lemma on the ball gives zeta_(t+1) <=
  (1 - eta c_PL (1 - eta beta/2)) zeta_t and the Lojasiewicz length bound
  sum_t ||theta_(t+1) - theta_t|| <= K sqrt(zeta_Gamma(theta_0)), K = 4 / sqrt(c_PL), so a start
  with ||theta_0 - c|| + K sqrt(zeta_Gamma(theta_0)) < R never leaves B(c, R) and converges to a point of
  Gamma.  Induction on t: from theta_t in B(c, R), ||grad|| <= beta ||D|| (the averaged Hessian's
  eigenvalues lie in [-2 e, beta] and 2 e <= beta), so the step is at most R + rho_2 long and its
  segment lies in B(c, r), where the descent lemma holds; along the segment theta(s) = theta_t - s eta
  grad, as long as theta(s) stays in B(c, R) (where zeta_Gamma >= 0 and the PL inequality of theta_t
  applies), sqrt(zeta_t) - sqrt(zeta(theta(s))) >= s eta ||grad|| / K, so ||theta(s) - c|| <=
  ||theta_0 - c|| + K sqrt(zeta_0) < R: by continuity the whole segment stays in B(c, R).

What this does not cover (reported in the certificate's ``limits``): the rest of the arc and its
ends (the extra neuron at 0, where L_lambda is not twice differentiable and the Hessian enclosure
diverges), a far extra neuron (the paper's typical over-parameterized start), and starts farther
than R from c.  zeta_Gamma differs from the true gap zeta = L_lambda - L*_lambda by L_lambda(Gamma) -
L*_lambda, which lies in [0, width of the certified L*_lambda enclosure].
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np
from flint import arb, ctx

from checker import __version__
from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.rigorous.arb_objective import decimal_string, upper_fraction

from . import cover as cv
from .basin import (BOUND_DIGITS, FORMAT, HESSIAN_PREC, RADIUS_DIGITS, VERSION, ArbObjective,
                    BasinProver, NotApplicable, search_radius, sqrt_upper, t1_constants)

#: The route name written to the certificate (``route``).
ROUTE = "over-parameterized-split-arc"
#: Default split of the teacher's optimal neuron between neuron k and the extra neuron (exact decimals).
SPLIT_COS = Fraction(3, 5)
#: The accepted Hessian variation e, as a fraction of the certified lambda_2(M0): mu_N = l2 - 3 e.
#: With e growing linearly in r, the gap level R^2 c_PL / 64 = R^2 mu_N (2 - e/mu_N)^2 / 128 is largest near
#: e = l2/6 (within 4 % of its maximum there).
E_FRACTION = Fraction(1, 6)
MAX_LEAVES = 64


# ---------------------------------------------------------------- the instance and the arc
def check_over_instance(instance: Instance) -> None:
    """Refuse instances this route does not cover (NotApplicable naming the reason)."""
    if instance.m != instance.m_star + 1:
        raise NotApplicable(f"the over-parameterized route needs m = m* + 1 (one extra neuron); this instance has "
                            f"m = {instance.m}, m* = {instance.m_star}")
    if Fraction(cv.parse_decimal(instance.lam)) <= 0:
        raise NotApplicable("the over-parameterized route needs lambda > 0")
    if instance.eta is None:
        raise NotApplicable("the descent to the optimum needs a step size: give \"eta\" in the instance")


def base_instance(instance: Instance) -> Instance:
    """The exact-width instance: the same teacher and lambda, the student without its last (extra) neuron."""
    return instance.replace(student_a=list(instance.student_a[:-1]),
                            student_W=[list(r) for r in instance.student_W[:-1]],
                            name=(instance.name or "instance") + "-base")


def split_neuron(instance: Instance, base_W: Sequence[Sequence[Fraction]]) -> int:
    """k: the base neuron whose mass the extra neuron shares (the nearest in direction to the extra student neuron;
    for abs the nearest line)."""
    w = np.array([float(x) for x in instance.student_W[-1]])
    if not np.linalg.norm(w) > 0:
        return 0
    best, k = -2.0, 0
    for j, row in enumerate(base_W):
        v = np.array([float(x) for x in row])
        c = float(w @ v / (np.linalg.norm(w) * np.linalg.norm(v)))
        if instance.activation == "abs":
            c = abs(c)
        if c > best:
            best, k = c, j
    return k


def split_sin(cos: Fraction) -> Fraction | None:
    """sin = sqrt(1 - cos^2) when it is a rational number (then the split centre is exact), else None."""
    s2 = 1 - cos * cos
    if s2 < 0:
        return None
    num, den = math.isqrt(s2.numerator), math.isqrt(s2.denominator)
    return Fraction(num, den) if num * num == s2.numerator and den * den == s2.denominator else None


def split_point(base: Sequence[Fraction], m_star: int, d: int, k: int, cos: Fraction,
                sin: Fraction) -> list[Fraction]:
    """theta of the split: neuron k scaled by cos, the extra neuron (last) = sin times the base neuron k."""
    a = list(base[:m_star])
    W = [list(base[m_star + j * d: m_star + (j + 1) * d]) for j in range(m_star)]
    extra_a, extra_w = sin * a[k], [sin * x for x in W[k]]
    a[k] = cos * a[k]
    W[k] = [cos * x for x in W[k]]
    return a + [extra_a] + [x for row in W for x in row] + extra_w


def arc_end_distance_sq(base: Sequence[Fraction], m_star: int, d: int, k: int, cos: Fraction,
                        sin: Fraction) -> Fraction:
    """Exact squared distance from the split centre to the nearer end of the decimal arc (phi = 0 or pi/2)."""
    a_k = base[k]
    w_k = base[m_star + k * d: m_star + (k + 1) * d]
    x2 = a_k * a_k + sum(v * v for v in w_k)
    # ends: (1, 0) and (0, 1) in the (cos, sin) plane, times the base neuron
    return min((1 - cos) ** 2 + sin ** 2, cos ** 2 + (1 - sin) ** 2) * x2


# ---------------------------------------------------------------- matrix bounds
def variation_bound(H: Sequence[Sequence[arb]], M0: np.ndarray) -> Fraction | None:
    """An exact upper bound of ||S - M0||_2 for every symmetric S in the ball matrix H (None if not finite).

    R_pq >= |H_pq - M0_pq| entrywise (Arb); ||S - M0||_2 <= ||R||_2 <= min(||R||_F, largest row sum)
    (Perron-Frobenius; R is symmetric).
    """
    n = len(H)
    frob = arb(0)
    row_max = arb(0)
    for p in range(n):
        row = arb(0)
        for q in range(n):
            e = (H[p][q] - arb(M0[p, q])).abs_upper()
            if not e.is_finite():
                return None
            row += e
            frob += e * e
        row_max = row_max.max(row)
    fro = frob.sqrt()
    return min(upper_fraction(fro), upper_fraction(row_max))


def inertia_below(M: np.ndarray, t: Fraction) -> int | None:
    """The number of eigenvalues of the exact matrix M below t, by an Arb LDL^T of M - t I (Sylvester's law).

    None when a pivot's sign is not certain (then nothing is claimed).
    """
    n = len(M)
    A = [[arb(M[p, q]) - (cv.frac_arb(t) if p == q else 0) for q in range(n)] for p in range(n)]
    L = [[arb(0)] * n for _ in range(n)]
    D = [arb(0)] * n
    neg = 0
    for j in range(n):
        D[j] = A[j][j] - sum((L[j][k] * L[j][k] * D[k] for k in range(j)), arb(0))
        if D[j] > 0:
            pass
        elif D[j] < 0:
            neg += 1
        else:
            return None
        for i in range(j + 1, n):
            L[i][j] = (A[i][j] - sum((L[i][k] * L[j][k] * D[k] for k in range(j)), arb(0))) / D[j]
    return neg


def center_bounds(M0: np.ndarray) -> tuple[Fraction, Fraction] | None:
    """(l2, lmax): lambda_2(M0) >= l2 > 0 and lambda_max(M0) <= lmax, both proved by inertia; None if not."""
    ev = np.linalg.eigvalsh(M0)
    scale = float(np.abs(M0).max()) + 1e-300
    l2 = lmax = None
    for margin in (1e-12, 1e-9, 1e-6):
        cand = Fraction(float(ev[1]) - margin * scale)
        if cand > 0 and inertia_below(M0, cand) == 1:
            l2 = cand
            break
    for margin in (1e-12, 1e-9, 1e-6):
        cand = Fraction(float(ev[-1]) + margin * scale)
        if inertia_below(M0, cand) == len(M0):
            lmax = cand
            break
    return None if l2 is None or lmax is None else (l2, lmax)


def midpoint_matrix(H: Sequence[Sequence[arb]]) -> np.ndarray:
    n = len(H)
    M = np.zeros((n, n))
    for p in range(n):
        for q in range(p, n):
            M[p, q] = M[q, p] = float(H[p][q].mid())
    return M


# ---------------------------------------------------------------- derived numbers
def derived(l2: Fraction, lmax: Fraction, e: Fraction, r: Fraction, rho2: Fraction) -> dict[str, Fraction] | None:
    """The certificate's numbers from the proved bounds, rounded the safe way (exact decimals); None if mu_N <= 0."""
    mu_n = cv.round_decimal(l2 - 3 * e, BOUND_DIGITS, up=False)
    if not mu_n > 0 or not r > rho2:
        return None
    beta = cv.round_decimal(lmax + e, BOUND_DIGITS, up=True)
    R = cv.round_decimal((r - rho2) / 2, RADIUS_DIGITS + 6, up=False)
    step = cv.round_decimal(1 / beta, BOUND_DIGITS, up=False)
    c_D = cv.round_decimal(2 - e / mu_n, BOUND_DIGITS, up=False)
    if not c_D > 0:
        return None
    c_PL = cv.round_decimal(c_D * c_D * mu_n / 2, BOUND_DIGITS, up=False)
    rate = cv.round_decimal(1 - step * c_PL * (1 - step * beta / 2), BOUND_DIGITS, up=True)
    K = cv.round_decimal(4 * sqrt_upper(1 / c_PL), BOUND_DIGITS, up=True)
    gap_level = cv.round_decimal((R / (2 * K)) ** 2, BOUND_DIGITS, up=False)
    return {"mu_N": mu_n, "beta": beta, "R": R, "step": step, "c_D": c_D, "c_PL": c_PL, "rate": rate, "K": K,
            "gap_level": gap_level}


def check_derived(cert: dict[str, Any], l2: Fraction, lmax: Fraction, e: Fraction, r: Fraction,
                  rho2: Fraction) -> str | None:
    """The first derived number of ``cert`` that does not follow from the bounds (exact arithmetic), or None."""
    def num(key: str) -> Fraction:
        return cv.parse_decimal(str(cert[key]))

    mu_n, beta, R, step = num("mu_N_lower"), num("beta_upper"), num("basin_radius"), num("step_max")
    c_D, c_PL, rate, K, gap = num("c_D"), num("c_PL"), num("rate"), num("path_constant"), num("gap_level")
    if not 0 < mu_n <= l2 - 3 * e:
        return "mu_N_lower"
    if not beta >= lmax + e:
        return "beta_upper"
    if not 0 < R <= (r - rho2) / 2:
        return "basin_radius"
    if not 0 < step <= 1 / beta:
        return "step_max"
    if not 0 < c_D <= 2 - e / mu_n:
        return "c_D"
    if not 0 < c_PL <= c_D * c_D * mu_n / 2:
        return "c_PL"
    if not (rate >= 1 - step * c_PL * (1 - step * beta / 2) and rate < 1):
        return "rate"
    if not (K > 0 and K * K * c_PL >= 16):
        return "path_constant"
    if not 0 < gap <= (R / (2 * K)) ** 2:
        return "gap_level"
    return None


def statement(cert: dict[str, Any]) -> list[str]:
    """The claims of a proved over-parameterized certificate, with its numbers, and nothing stronger."""
    arc = cert["arc"]
    return [
        "theta = (a, vec W) in R^n, n = m (d + 1), W row by row, Euclidean norm; L_lambda(theta) = "
        "E[(f_theta - f*)^2] + (lambda/2)(||a||^2 + ||W||_F^2); m = m* + 1 (the last neuron is the extra one).",
        f"(1) The exact-width instance (the extra neuron removed) has exactly one stationary point theta* in "
        f"base_center + [-rho, rho]^(n - d - 1), rho = {cert['stationary_box']['rho']} (Krawczyk); "
        f"||theta* - base_center|| <= rho_2 = {cert['stationary_box']['rho_euclid']}.",
        f"(2) Gamma = {{gamma(phi): phi in [0, pi/2]}}, gamma(phi) = theta* with neuron {arc['neuron']} scaled by "
        f"cos(phi) and the extra neuron = sin(phi) times theta*'s neuron {arc['neuron']}: every point of Gamma is a "
        f"stationary point of L_lambda with L_lambda = L_lambda(theta*) (1-homogeneity). center = the split of "
        f"base_center at (cos, sin) = ({arc['cos']}, {arc['sin']}); ||center - gamma(phi_c)|| <= rho_2.",
        f"(3) On the closed ball B(center, r), r = {cert['radius']}, every neuron is non-zero, L_lambda is twice "
        f"continuously differentiable, ||Hess L_lambda(q) - M0||_2 <= e = {cert['hessian_variation']} with "
        f"lambda_2(M0) >= {cert['lambda2_center']} and lambda_max(M0) <= {cert['lambda_max_center']}; every "
        f"eigenvalue of the Hessian is <= beta = {cert['beta_upper']}.",
        f"(4) For theta in B(center, R), R = {cert['basin_radius']}, with D(theta) = theta - p(theta), p(theta) a "
        f"nearest point of Gamma, and zeta_Gamma(theta) = L_lambda(theta) - L_lambda(Gamma): "
        f"<grad L_lambda(theta), D> >= mu_N ||D||^2, mu_N = {cert['mu_N_lower']}; (mu_N/2)||D||^2 <= zeta_Gamma <= "
        f"(beta/2)||D||^2; <grad L_lambda, D> >= 2 zeta_Gamma - (e/2)||D||^2; hence <grad L_lambda, D> >= "
        f"c_D zeta_Gamma, c_D = 2 - e/mu_N >= {cert['c_D']}, and ||grad L_lambda||^2 >= c_PL zeta_Gamma, "
        f"c_PL = c_D^2 mu_N/2 >= {cert['c_PL']}; the minimisers of L_lambda in "
        f"B(center, R) are exactly the points of Gamma there.",
        f"(5) For every step 0 < eta <= step_max = {cert['step_max']} (= 1/beta rounded down), gradient descent from "
        f"every theta_0 with ||theta_0 - center|| + K sqrt(zeta_Gamma(theta_0)) < R, K = {cert['path_constant']} "
        f">= 4/sqrt(c_PL), "
        f"stays in B(center, R), satisfies zeta_Gamma(theta_(t+1)) <= (1 - eta c_PL (1 - eta beta/2)) "
        f"zeta_Gamma(theta_t) (at eta = step_max the factor is at most rate = {cert['rate']}), has total path length "
        f"<= K sqrt(zeta_Gamma(theta_0)), and converges to a point of Gamma.",
        f"(6) In particular every start in B(center, R/2) whose zeta_Gamma is below gap_level = (R/(2K))^2 = "
        f"{cert['gap_level']} converges as in (5). zeta_Gamma <= zeta = L_lambda - L*_lambda <= zeta_Gamma + "
        f"(upper - lower) of the L*_lambda enclosure (L*_lambda <= L_lambda(Gamma) <= upper).",
        "Nothing is claimed for starts outside B(center, R), for the rest of Gamma or its ends (a zero extra "
        "neuron), for an extra neuron far from every teacher, for other widths or instances, or about the paper's "
        "threshold. D here is the nearest-point direction to Gamma, not the mass-fraction direction of C6 "
        "(checker.geometry.descent). eps0_checker and lambda_max_checker are T1's operational constants, "
        "reported for comparison, not claims.",
    ]


LIMITS = [
    "the ends of Gamma (phi = 0 or pi/2: one of the two neurons is zero) and the configurations with a far "
    "extra neuron at or near 0: L_lambda is not twice differentiable at w_j = 0 and the Hessian enclosure of a box "
    "reaching w_j = 0 is not finite (d^2 k/du du^T grows like 1/||u||), so no beta holds on a ball around them; "
    "this route needs the ball to keep every neuron away from 0, and the centre's extra neuron has the norm "
    "sin(phi) ||w-hat_k||",
    "the rest of Gamma: one ball around one point of the arc is certified; the arc's length is of order "
    "||(a-hat_k, w-hat_k)|| against a radius of order 1e-4",
    "the mass-fraction descent direction D of C6 (checker.geometry.descent) is not used: its target is a point of "
    "Gamma but not the nearest one, so <grad, D> >= c zeta would need a bound on D's tangential part, not done; "
    "a box enclosure of <grad, D> - c zeta near Gamma is 0/0 (both sides vanish on Gamma, quadratically) and a box "
    "of width w loses it unless w is a fraction c of the distance to Gamma, i.e. (1/c)^n boxes per shell",
    "the true gap zeta differs from zeta_Gamma by at most the width of the L*_lambda enclosure",
]


# ---------------------------------------------------------------- the prover
@dataclass
class OverAttempt:
    radius: str
    proved: bool
    leaves: int
    seconds: float
    e: str | None = None  # the Hessian variation bound of the cover, when it held


class OverProver:
    """Search and proof of a certified ball around a split optimum; ``certificate()`` gives the JSON so far."""

    def __init__(self, instance: Instance, *, time_budget: float | None = None, max_leaves: int = MAX_LEAVES,
                 seed: int = 0, t1: bool = True, radius: Fraction | None = None, split_cos: Fraction = SPLIT_COS,
                 e_fraction: Fraction = E_FRACTION, say: Callable[[str], None] = lambda text: None,
                 on_attempt: Callable[[OverAttempt], None] = lambda att: None) -> None:
        check_over_instance(instance)
        self.instance = instance
        self.base_instance = base_instance(instance)
        self.cos = Fraction(split_cos)
        sin = split_sin(self.cos)
        if not 0 <= self.cos <= 1 or sin is None:
            raise CheckerError(f"the split cosine must be in [0, 1] with sqrt(1 - cos^2) rational (e.g. 3/5, 7/25), "
                               f"got {self.cos}")
        self.sin = sin
        self.time_budget = time_budget
        self.max_leaves = max_leaves
        self.radius = None if radius is None else Fraction(radius)
        self.e_fraction = Fraction(e_fraction)
        self.t1 = t1
        self.seed = seed
        self.say = say
        self.on_attempt = on_attempt
        self.t0 = time.perf_counter()
        self.phase = "start"
        self.base = BasinProver(self.base_instance, time_budget=time_budget, seed=seed, t1=False, say=say)
        self.obj = ArbObjective(instance)
        self.center: list[Fraction] | None = None
        self.k: int | None = None
        self.M0: np.ndarray | None = None
        self.l2: Fraction | None = None
        self.lmax: Fraction | None = None
        self.attempts: list[OverAttempt] = []
        self.best: tuple[Fraction, list[str], list[tuple[cv.Box, Fraction]]] | None = None
        self.smallest_failed: Fraction | None = None
        self.failure: str | None = None
        self.enclosure: dict[str, Any] | None = None
        self.t1_constants: dict[str, Any] = {}
        self.seconds: dict[str, float] = {}
        self.status = "incomplete"

    def _out_of_time(self) -> bool:
        return self.time_budget is not None and time.perf_counter() - self.t0 > self.time_budget

    def setup(self) -> None:
        self.phase = "exact-width optimum"
        self.base.find_center()
        self.phase = "krawczyk"
        self.base.stationary_box()
        self.seconds.update({f"base_{k}": v for k, v in self.base.seconds.items()})
        ms, d = self.instance.m_star, self.instance.d
        self.k = split_neuron(self.instance, [self.base.center[ms + j * d: ms + (j + 1) * d] for j in range(ms)])
        self.center = split_point(self.base.center, ms, d, self.k, self.cos, self.sin)
        self.phase = "centre bounds"
        t = time.perf_counter()
        m = self.instance.m
        if not cv.neuron_norms_positive(cv.cube(self.center, Fraction(0)), m, d):
            self.failure = (f"the centre has a zero neuron (split (cos, sin) = ({self.cos}, {self.sin})): L_lambda is "
                            "not twice differentiable there, the Hessian is unbounded near it, no ball is certified")
            return
        with ctx.workprec(HESSIAN_PREC):
            H0 = self.obj.hessian([cv.frac_arb(c) for c in self.center])
        self.M0 = midpoint_matrix(H0)
        b = center_bounds(self.M0)
        self.seconds["centre_bounds"] = time.perf_counter() - t
        if b is None:
            ev = np.linalg.eigvalsh(self.M0)
            self.failure = (f"lambda_2 of the Hessian at the centre is not proved positive (float eigenvalues "
                            f"{ev[0]:.3g}, {ev[1]:.3g}): Gamma is not a non-degenerate arc of minima here")
            return
        self.l2, self.lmax = b
        # L*_lambda <= L_lambda(Gamma) <= L_lambda(center): the upper end at this centre (Arb, the instance as written)
        with ctx.workprec(HESSIAN_PREC):
            L_c = self.obj.reg_loss([cv.frac_arb(c) for c in self.center])
        up = max(upper_fraction(L_c), cv.parse_decimal(self.base.enclosure["upper"]))
        self.enclosure = dict(self.base.enclosure, upper=decimal_string(up, up=True, digits=BOUND_DIGITS + 20),
                              note=self.base.enclosure["note"].replace("L_lambda(centre)", "L_lambda(split centre)")
                              .replace("at the centre", "at the exact-width centre"))

    def t1_phase(self) -> None:
        self.phase = "t1-constants"
        t = time.perf_counter()
        self.say("T1's eps_0 and lambda_max (dual certificate of the teacher) ...")
        self.t1_constants = t1_constants(self.instance, self.seed)
        self.seconds["t1_constants"] = time.perf_counter() - t

    def _sensitivity(self, r: Fraction) -> list[float]:
        out = []
        for k in range(self.obj.n):
            box = [(c, c) for c in self.center]
            box[k] = (self.center[k] - r, self.center[k] + r)
            with ctx.workprec(HESSIAN_PREC):
                e = variation_bound(self.obj.hessian_on_box(box), self.M0)
            out.append(math.inf if e is None else float(e))
        finite = [w for w in out if math.isfinite(w)] or [1.0]
        return [w if math.isfinite(w) else max(finite) * 10 for w in out]

    def attempt(self, r: Fraction, weights: Sequence[float]) -> "OverAttempt":
        t = time.perf_counter()
        n, m, d = self.obj.n, self.instance.m, self.instance.d
        target = self.l2 * self.e_fraction
        worst: dict[str, Any] = {"e": Fraction(0), "zero": False}

        def check(box: cv.Box) -> Fraction | None:
            if not cv.neuron_norms_positive(box, m, d):
                worst["zero"] = True
                return None
            with ctx.workprec(HESSIAN_PREC):
                e = variation_bound(self.obj.hessian_on_box(box), self.M0)
            if e is None or e > target:
                if e is not None and e > worst["e"]:
                    worst["e"] = e
                return None
            return e

        def choose(box: cv.Box) -> int:
            return max(range(n), key=lambda k: (weights[k] * float(box[k][1] - box[k][0]), -k))

        res = cv.build_tree(cv.cube(self.center, r), self.center, r, check, choose, self.max_leaves,
                            deadline=self._out_of_time)
        att = OverAttempt(radius=cv.exact_decimal(r), proved=res is not None,
                          leaves=0 if res is None else len(res[1]), seconds=time.perf_counter() - t)
        if res is not None:
            att.e = decimal_string(max(e for _, e in res[1]), up=True, digits=8)  # the variation e of this cover
            if self.best is None or r > self.best[0]:
                self.best = (r, res[0], res[1])
        elif self._out_of_time():  # the deadline stopped the cover: not a failure of this radius
            self.fail_reason = "time budget exhausted"
        else:
            if self.smallest_failed is None or r < self.smallest_failed:
                self.smallest_failed = r
                self.fail_reason = ("a box reaching a zero neuron" if worst["zero"] else
                                    f"Hessian variation e up to {float(worst['e']):.3g} on a box against the accepted "
                                    f"{float(target):.3g} = lambda_2/6 with at most {self.max_leaves} boxes")
        self.attempts.append(att)
        self.on_attempt(att)
        return att

    def search(self) -> None:
        self.phase = "radius-search"
        t = time.perf_counter()
        ms, d = self.instance.m_star, self.instance.d
        base_k = self.base.center[ms + self.k * d: ms + (self.k + 1) * d]
        min_norm = min(float(self.sin), float(self.cos)) * math.sqrt(sum(float(x) ** 2 for x in base_k))
        r = self.radius or cv.round_decimal(Fraction(min_norm) / 10_000, RADIUS_DIGITS, up=False)
        weights = self._sensitivity(r)
        if self.radius is not None:
            self.say(f"cover of the ball of radius {cv.exact_decimal(self.radius)} ...")
            self.attempt(self.radius, weights)
        else:
            self.say(f"radius search (Hessian variation e <= lambda_2/6 = {float(self.l2 * self.e_fraction):.4g}) ...")
            search_radius(r, Fraction(min_norm), lambda x: self.attempt(x, weights).proved, self._out_of_time,
                          lambda: (self.best and self.best[0], self.smallest_failed))
        self.seconds["search"] = time.perf_counter() - t

    def run(self) -> dict[str, Any]:
        self.setup()
        if self.failure is None:
            if self.t1:
                self.t1_phase()
            self.search()
        self.status = "proved" if self._numbers() is not None else "not-proved"
        self.phase = "done"
        return self.certificate()

    def _numbers(self) -> dict[str, Any] | None:
        if self.best is None or self.base.rho2 is None or self.l2 is None:
            return None
        r, tokens, leaves = self.best
        e = cv.round_decimal(max(x for _, x in leaves), BOUND_DIGITS, up=True)
        nums = derived(self.l2, self.lmax, e, r, self.base.rho2)
        if nums is None:
            return None
        ms, d = self.instance.m_star, self.instance.d
        end2 = arc_end_distance_sq(self.base.center, ms, d, self.k, self.cos, self.sin)
        if not (2 * nums["R"] + 3 * self.base.rho2) ** 2 < end2:
            self.failure = "the ball reaches an end of the arc (the nearest point of Gamma may be an end)"
            return None
        return dict(nums, r=r, tokens=tokens, leaves=leaves, e=e)

    def certificate(self) -> dict[str, Any]:
        nums = self._numbers()
        proved = self.status == "proved" and nums is not None
        largest = None if self.best is None else cv.exact_decimal(self.best[0])
        dec = (lambda key: None if nums is None else cv.exact_decimal(nums[key]))  # noqa: E731
        ms, d = self.instance.m_star, self.instance.d
        center_json = None
        if self.center is not None:
            m = self.instance.m
            center_json = {"a": [cv.exact_decimal(x) for x in self.center[:m]],
                           "W": [[cv.exact_decimal(x) for x in self.center[m + j * d: m + (j + 1) * d]]
                                 for j in range(m)]}
        reason = self.failure or (None if proved else getattr(self, "fail_reason", None))
        if not proved and reason is None and self._out_of_time():
            reason = "time budget exhausted"
        cert: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "checker_version": __version__,
            "route": ROUTE,
            "claim": "a certified ball around a point of an arc of split lambda-optima: descent inequality, gradient "
                     "domination and convergence of gradient descent from the starts of statement (5)-(6)",
            "status": self.status if self.status != "proved" or proved else "not-proved",
            "proved": proved,
            "phase": self.phase,
            "instance": self.instance.to_dict(),
            "parametrization": "theta = (a_1, ..., a_m, w_1, ..., w_m) (W row by row), Euclidean norm; the last "
                               "neuron is the extra one",
            "base_center": self.base.center_json,
            "arc": None if self.k is None else {"neuron": self.k, "cos": cv.exact_decimal(self.cos),
                                                 "sin": cv.exact_decimal(self.sin)},
            "center": center_json,
            "stationary_box": None if self.base.rho is None else {
                "rho": cv.exact_decimal(self.base.rho), "rho_euclid": cv.exact_decimal(self.base.rho2),
                "meaning": "exactly one stationary point of the exact-width L_lambda in base_center + [-rho, rho]^n* "
                           "(Krawczyk; n* = m* (d + 1))"},
            "lambda2_center": None if self.l2 is None else cv.exact_decimal(self.l2),
            "lambda_max_center": None if self.lmax is None else cv.exact_decimal(self.lmax),
            "radius": dec("r"),
            "hessian_variation": dec("e"),
            "mu_N_lower": dec("mu_N"),
            "beta_upper": dec("beta"),
            "basin_radius": dec("R"),
            "step_max": dec("step"),
            "c_D": dec("c_D"),
            "c_PL": dec("c_PL"),
            "rate": dec("rate"),
            "path_constant": dec("K"),
            "gap_level": dec("gap_level"),
            "L_star_enclosure": self.enclosure,
            "eps0_checker": self.t1_constants.get("eps_0"),
            "lambda_max_checker": self.t1_constants.get("lambda_max"),
            "t1_constants": self.t1_constants,
            "cover": None if nums is None else {
                "prec_bits": HESSIAN_PREC,
                "root": "the cube [center - radius, center + radius]^n",
                "tree": nums["tokens"],
                "boxes": [dict(cv.box_to_json(box), e=decimal_string(x, up=True, digits=BOUND_DIGITS))
                          for box, x in nums["leaves"]],
            },
            "search": {"e_fraction": str(self.e_fraction), "max_leaves": self.max_leaves,
                       "largest_radius_reached": largest,
                       "smallest_radius_failed": None if self.smallest_failed is None
                       else cv.exact_decimal(self.smallest_failed),
                       "attempts": [att.__dict__ for att in self.attempts]},
            "not_proved_reason": None if proved else reason,
            "limits": LIMITS,
            "seconds": dict(self.seconds, total=time.perf_counter() - self.t0),
        }
        cert["statement"] = statement(cert) if proved else [
            "not proved: no claim is made" + ("" if reason is None else f" ({reason})")
            + ("" if largest is None else f"; the largest radius whose cover held: {largest}")]
        return cert
