"""The certified basin of the lambda-optimum at exact width (m = m*), both layers trained.

A computer-assisted proof on one instance, in Arb ball arithmetic.  With theta =
(a_1..a_m, vec W) in R^n, n = m (d + 1) (W row by row), Euclidean norm:

1. **Centre and stationary point.**  The centre c is the lambda-optimum found by
   ``checker.rigorous.optimum.certified_optimum`` (float64 descent, Newton polish at
   50 digits; its neurons put back in the order of the instance's student), with
   decimal coordinates.  A Krawczyk test on the box X = c + [-rho, rho]^n,
   K(X) = c - Y grad L_lambda(c) + (I - Y Hess L_lambda(X)) (X - c) inside the
   interior of X, proves that L_lambda has exactly one stationary point theta* in
   X, so ||theta* - c|| <= rho_2 = rho sqrt(n).
2. **Hessian bounds on a ball.**  The ball B(c, r) is covered by the leaves of a
   bisection tree of the cube [c - r, c + r]^n (``checker.basin.cover``); on every
   leaf that meets the ball, the Hessian of L_lambda is enclosed in Arb and
   ``spectrum_bounds`` proves mu <= every eigenvalue <= beta.  The largest r is
   searched by bisection (the prover's work); the verifier only re-checks the
   final tree.  ``mu_fraction`` sets the smallest mu accepted, as a fraction of
   the smallest eigenvalue at c: maximising r alone drives mu to 0 and with it
   the gap level mu r^2/2; with a Hessian enclosure whose width grows linearly
   in r, mu r^2 is largest near a third (the default).
3. **Consequences** (``statement``), for R = r - rho_2 (B(theta*, R) lies in B(c, r)).

Only what is listed in ``statement`` is claimed: nothing about starts outside
B(theta*, R), other widths, other instances or the paper's own threshold.  eps_0
and lambda_max of T1 (``checker.theorem1``) are copied next to it for comparison;
they are operational constants of this project's formalization T1, not claims of
the certificate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np
from flint import arb, ctx

from checker import __version__
from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.rigorous.arb_objective import decimal_string, loss_enclosure, lower_fraction, upper_fraction

from . import cover as cv
from .hessian_source import gradient_enclosure, hessian_enclosure

FORMAT = "zhou-ge-checker/basin-certificate"
VERSION = 1
#: The route of an exact-width certificate (``route``; a certificate without the key is one).
ROUTE_EXACT = "exact-width-hessian-ball"
#: Arb precision (bits) of the Hessian enclosures over the cover's boxes.
HESSIAN_PREC = 128
#: Arb precision (bits) of the Krawczyk test (the centre is a 50-digit point).
KRAWCZYK_PREC = 320
#: Digits of the high-precision engine of the optimum and of the duality bound.
OPTIMUM_DPS = 50
#: Tolerance on the certified sup of the duality bound at the centre (its width is far below the
#: gap bounds of the certificate; a tighter one only makes the verifier slower).
L_STAR_TOL = 1e-20
#: Significant digits of the radius r (the cube's corners stay short decimals).
RADIUS_DIGITS = 3
#: Significant digits of the decimal bounds written to the certificate.
BOUND_DIGITS = 20
#: Default smallest accepted mu, as a fraction of the smallest eigenvalue at the centre.
MU_FRACTION = Fraction(1, 3)
#: Default largest number of certified leaves of one cover.
MAX_LEAVES = 64
#: The bisection on r stops when r_fail / r_ok is below this.
RADIUS_RATIO = 1.03


class NotApplicable(CheckerError):
    """The instance is outside the setting of the certified basin (exit 2 in the commands)."""


def check_instance(instance: Instance) -> None:
    """Refuse instances the certificate does not cover (NotApplicable naming the reason)."""
    if instance.m != instance.m_star:
        raise NotApplicable(f"the certified basin needs exact width m = m*; this instance has m = {instance.m}, "
                            f"m* = {instance.m_star} (one extra neuron, m = m* + 1, is the route of checker.basin.over)")
    if Fraction(cv.parse_decimal(instance.lam)) <= 0:
        raise NotApplicable("the certified basin needs lambda > 0 (weight decay makes the optimum isolated)")
    for j, (aj, wj) in enumerate(zip(instance.student_a, instance.student_W)):
        if cv.parse_decimal(aj) == 0 or all(cv.parse_decimal(x) == 0 for x in wj):
            raise NotApplicable(f"student neuron {j} is zero (a_{j} = 0 or w_{j} = 0): give a student near the "
                                "optimum with every neuron non-zero")
    if instance.eta is None:
        raise NotApplicable("the descent to the optimum needs a step size: give \"eta\" in the instance")


# ---------------------------------------------------------------- the objective in Arb
class ArbObjective:
    """The instance's teacher and lambda as Arb balls (per precision), and Hessian/gradient enclosures."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.m, self.d = instance.m, instance.d
        self.n = self.m * (self.d + 1)
        self._cache: dict[int, tuple] = {}

    def teacher(self) -> tuple[list[arb], list[list[arb]], arb]:
        prec = ctx.prec
        if prec not in self._cache:
            inst = self.instance
            a_star = [cv.frac_arb(cv.parse_decimal(x)) for x in inst.teacher_a]
            W_star = [[cv.frac_arb(cv.parse_decimal(x)) for x in row] for row in inst.teacher_W]
            if inst.normalize_teacher:
                W_star = [[x / sum((y * y for y in row), arb(0)).sqrt() for x in row] for row in W_star]
            self._cache[prec] = (a_star, W_star, cv.frac_arb(cv.parse_decimal(inst.lam)))
        return self._cache[prec]

    def split(self, theta: Sequence[arb]) -> tuple[list[arb], list[list[arb]]]:
        m, d = self.m, self.d
        return list(theta[:m]), [list(theta[m + j * d: m + (j + 1) * d]) for j in range(m)]

    def hessian(self, theta: Sequence[arb]) -> list[list[arb]]:
        a_star, W_star, lam = self.teacher()
        a, W = self.split(theta)
        return hessian_enclosure(self.instance.activation, a, W, a_star, W_star, lam)

    def gradient(self, theta: Sequence[arb]) -> list[arb]:
        a_star, W_star, lam = self.teacher()
        a, W = self.split(theta)
        return gradient_enclosure(self.instance.activation, a, W, a_star, W_star, lam)

    def reg_loss(self, theta: Sequence[arb]) -> arb:
        a_star, W_star, lam = self.teacher()
        a, W = self.split(theta)
        return loss_enclosure(self.instance.activation, a, W, a_star, W_star, lam).reg_loss

    def hessian_on_box(self, box: cv.Box) -> list[list[arb]]:
        return self.hessian(cv.box_to_arb(box))


# ---------------------------------------------------------------- Krawczyk
class _ArbProblem:
    """What ``checker.rigorous.critical.krawczyk`` reads of a problem: the teacher as exact-decimal balls."""

    def __init__(self, obj: "ArbObjective") -> None:
        a_star, W_star, self.lam = obj.teacher()
        self.activation = obj.instance.activation
        self.a_star = np.array(a_star, dtype=object)
        self.W_star = np.array(W_star, dtype=object)


def krawczyk(obj: "ArbObjective", center: Sequence[Fraction], rho: Fraction) -> tuple[bool, float]:
    """(proved, excess): ``checker.rigorous.critical.krawczyk`` on X = c + [-rho, rho]^n, theta = (a, vec W).

    The centre enters as balls around its decimal coordinates (for every point c' of
    those balls K(c' + [-rho, rho]^n) lies inside the computed enclosure), the teacher
    and lambda as balls around the instance's exact decimals.  ``rho`` must be a binary
    number (a float): the test compares with it exactly.  excess = max |K_i - c_i| / rho
    (below 1: contained).
    """
    from checker.rigorous.critical import krawczyk as critical_krawczyk

    rho_f = float(rho)
    if Fraction(rho_f) != rho:
        raise ValueError("rho must be a binary (float) number")
    with ctx.workprec(KRAWCZYK_PREC):
        prob = _ArbProblem(obj)
        a, W = obj.split([cv.frac_arb(c) for c in center])
        res = critical_krawczyk(prob, np.array(a, dtype=object), np.array(W, dtype=object), train="both",
                                lam=prob.lam, r=rho_f)
    return bool(res.contained), float(res.excess)


def sqrt_upper(q: Fraction, digits: int = BOUND_DIGITS) -> Fraction:
    """A decimal s >= sqrt(q) (checked exactly: s^2 >= q)."""
    s = cv.round_decimal(Fraction(math.sqrt(float(q))) * (1 + Fraction(1, 10**12)), digits, up=True)
    while s * s < q:
        s = cv.round_decimal(s * (1 + Fraction(1, 10**9)), digits, up=True)
    return s


# ---------------------------------------------------------------- the statement
def statement(cert: dict[str, Any]) -> list[str]:
    """The claims of a proved certificate, in words, with its numbers (and nothing stronger)."""
    return [
        "theta = (a, vec W) in R^n, n = m (d + 1), W row by row; ||.|| the Euclidean norm; "
        "c = center, L_lambda(theta) = E[(f_theta - f*)^2] + (lambda/2)(||a||^2 + ||W||_F^2), "
        "zeta(theta) = L_lambda(theta) - L*_lambda with L*_lambda the infimum over every width.",
        f"(1) L_lambda has exactly one stationary point theta* in the box c + [-rho, rho]^n, "
        f"rho = {cert['stationary_box']['rho']} (Krawczyk); hence ||theta* - c|| <= rho_2 = "
        f"{cert['stationary_box']['rho_euclid']}.",
        f"(2) On the closed ball B(c, r), r = {cert['radius']}, every student neuron w_j is non-zero, "
        f"L_lambda is twice continuously differentiable and every eigenvalue of its Hessian lies in "
        f"[mu, beta] = [{cert['mu_lower']}, {cert['beta_upper']}], mu > 0.",
        f"(3) Hence theta* is the only stationary point of L_lambda in B(c, r) and its strict minimiser "
        f"there; B(theta*, R) lies in B(c, r) for R = {cert['basin_radius']} <= r - rho_2.",
        f"(4) For every step 0 < eta <= step_max = {cert['step_max']} (<= 2/(mu + beta)), gradient descent "
        f"theta_(t+1) = theta_t - eta grad L_lambda(theta_t) from every theta_0 in B(theta*, R) stays in "
        f"B(theta*, R) and ||theta_(t+1) - theta*|| <= max(|1 - eta mu|, |1 - eta beta|) ||theta_t - theta*|| "
        f"= (1 - eta mu) ||theta_t - theta*||; at eta = step_max the factor is at most rate = {cert['rate']}.",
        f"(5) For theta in B(theta*, R): (mu/2)||theta - theta*||^2 <= L_lambda(theta) - L_lambda(theta*) <= "
        f"(beta/2)||theta - theta*||^2; the gap at every start in B(theta*, R) is at most beta R^2/2 plus "
        f"the width of the L*_lambda enclosure: zeta <= gap_upper = {cert['gap_upper']}.",
        f"(6) Every start in B(theta*, R) whose gap is below gap_level = mu R^2/2 = {cert['gap_level']} "
        f"converges as in (4) (as does every start in B(theta*, R)); the connected component of "
        f"{{theta : zeta(theta) < gap_level}} that contains theta* lies inside B(theta*, R).",
        "Nothing is claimed for starts outside B(theta*, R), for other widths or instances, or about the "
        "paper's threshold: this is a proof on one instance. eps0_checker and lambda_max_checker are T1's "
        "operational constants for the same instance, reported for comparison, not claims of this certificate.",
    ]


# ---------------------------------------------------------------- the prover
@dataclass
class Attempt:
    radius: str
    proved: bool
    leaves: int
    seconds: float
    mu: str | None = None
    beta: str | None = None


def _order_like(a: list[str], W: list[list[str]], instance: Instance) -> tuple[list[str], list[list[str]]]:
    """The centre's neurons in the order of the instance's student (nearest direction, greedy)."""
    Wc = np.array([[float(x) for x in r] for r in W])
    Ws = np.array([[float(x) for x in r] for r in instance.student_W])
    Uc = Wc / np.linalg.norm(Wc, axis=1)[:, None]
    Us = Ws / np.linalg.norm(Ws, axis=1)[:, None]
    sim = Us @ Uc.T
    order = [-1] * len(Ws)
    free = set(range(len(Wc)))
    for j in np.argsort(-sim.max(axis=1)):
        k = max(free, key=lambda t: sim[j, t])
        order[j] = k
        free.discard(k)
    return [a[k] for k in order], [W[k] for k in order]


class BasinProver:
    """Search and proof of the basin; ``certificate()`` at any time gives the JSON so far."""

    def __init__(self, instance: Instance, *, time_budget: float | None = None, mu_fraction: Fraction = MU_FRACTION,
                 max_leaves: int = MAX_LEAVES, seed: int = 0, t1: bool = True, radius: Fraction | None = None,
                 say: Callable[[str], None] = lambda text: None,
                 on_attempt: Callable[[Attempt], None] = lambda att: None) -> None:
        check_instance(instance)
        self.instance = instance
        self.obj = ArbObjective(instance)
        self.time_budget = time_budget
        self.mu_fraction = Fraction(mu_fraction)
        self.max_leaves = max_leaves
        self.radius = None if radius is None else Fraction(radius)
        if self.radius is not None and not self.radius > 0:
            raise CheckerError("the radius must be positive")
        self.seed = seed
        self.t1 = t1
        self.say = say
        self.on_attempt = on_attempt
        self.t0 = time.perf_counter()
        self.phase = "start"
        self.seconds: dict[str, float] = {}
        self.center: list[Fraction] | None = None
        self.center_json: dict[str, Any] | None = None
        self.rho: Fraction | None = None
        self.rho2: Fraction | None = None
        self.enclosure: dict[str, Any] | None = None
        self.t1_constants: dict[str, Any] = {}
        self.attempts: list[Attempt] = []
        self.best: tuple[Fraction, list[str], list[tuple[cv.Box, Any]]] | None = None
        self.smallest_failed: Fraction | None = None
        self.notes: list[str] = []
        self.status = "incomplete"

    def _out_of_time(self) -> bool:
        return self.time_budget is not None and time.perf_counter() - self.t0 > self.time_budget

    # -------------------------------------------------------- phases
    def find_center(self) -> None:
        from checker.rigorous.optimum import certified_optimum

        self.phase = "optimum"
        t = time.perf_counter()
        self.say("certified lambda-optimum (descent, Newton polish, duality bound) ...")
        # only its point is used here (the enclosure below is recomputed at the centre): a loose sup tolerance
        enc = certified_optimum(self.instance, dps=OPTIMUM_DPS, tol=1e-9)
        self.seconds["optimum"] = time.perf_counter() - t
        if enc.neurons != self.instance.m:
            raise NotApplicable(f"the optimum found has {enc.neurons} neurons, not m = {self.instance.m}: the "
                                "reduction merged or dropped student neurons (is each student neuron near its own "
                                "teacher neuron?)")
        a, W = _order_like(enc.a, enc.W, self.instance)
        self.center_json = {"a": a, "W": W}
        self.center = [cv.parse_decimal(x) for x in a] + [cv.parse_decimal(x) for row in W for x in row]
        with ctx.workprec(HESSIAN_PREC):
            L_c = self.obj.reg_loss([cv.frac_arb(c) for c in self.center])
        t = time.perf_counter()
        self.say("duality lower bound on L*_lambda at the centre ...")
        D = l_star_lower(self.instance, self.center_json, OPTIMUM_DPS, L_STAR_TOL)
        self.seconds["l_star_lower"] = time.perf_counter() - t
        if D is None:
            raise CheckerError("the duality bound at the centre could not be certified")
        self.enclosure = {
            "lower": decimal_string(D, up=False, digits=BOUND_DIGITS + 20),
            "upper": decimal_string(upper_fraction(L_c), up=True, digits=BOUND_DIGITS + 20),
            "rigorous": True, "dps": OPTIMUM_DPS, "sup_tol": L_STAR_TOL,
            "note": "L*_lambda in [lower, upper]: upper = L_lambda(centre) (Arb, exact instance), lower = the "
                    "duality bound at the centre (checker.rigorous.duality.gap_bound) for the instance as read "
                    f"at {OPTIMUM_DPS} digits (each decimal input rounded once)"}

    def stationary_box(self) -> None:
        self.phase = "krawczyk"
        t = time.perf_counter()
        self.say("Krawczyk box around the centre ...")
        n = self.obj.n
        with ctx.workprec(KRAWCZYK_PREC):
            g = self.obj.gradient([cv.frac_arb(c) for c in self.center])
            H = self.obj.hessian([cv.frac_arb(c) for c in self.center])
            M = np.array([[float(x.mid()) for x in row] for row in H])
            gn = max(float(abs(x).mid()) for x in g)
        lam_min = float(np.linalg.eigvalsh(M)[0])
        if not lam_min > 0:
            raise CheckerError(f"the Hessian at the centre is not positive definite (smallest eigenvalue "
                               f"{lam_min:.3g}): no basin to certify")
        step = max(gn / lam_min, 1e-80)
        rho = Fraction(float(cv.round_decimal(Fraction(10 * step), 2, up=True)))  # a float: exact in the test
        for _ in range(8):
            ok, _ = krawczyk(self.obj, self.center, rho)
            if ok:
                break
            rho = Fraction(float(rho * 100))
        else:
            raise CheckerError("the Krawczyk test failed around the centre: the optimum is not isolated at "
                               "this precision")
        self.rho = rho
        self.rho2 = sqrt_upper(rho * rho * n)
        self.seconds["krawczyk"] = time.perf_counter() - t

    def t1_phase(self) -> None:
        """T1's eps_0 and lambda_max for the same instance (``checker.theorem.check.t1_thresholds``)."""
        self.phase = "t1-constants"
        t = time.perf_counter()
        self.say("T1's eps_0 and lambda_max (dual certificate of the teacher) ...")
        self.t1_constants = t1_constants(self.instance, self.seed)
        self.seconds["t1_constants"] = time.perf_counter() - t

    # -------------------------------------------------------- the radius search
    def _bounds(self, box: cv.Box) -> tuple[Fraction, Fraction] | None:
        with ctx.workprec(HESSIAN_PREC):
            return cv.spectrum_bounds(self.obj.hessian_on_box(box))

    def _sensitivity(self, r: Fraction) -> list[float]:
        """Width of the Hessian enclosure when only coordinate k spans [c_k - r, c_k + r] (split priority)."""
        out = []
        for k in range(self.obj.n):
            box = [(c, c) for c in self.center]
            box[k] = (self.center[k] - r, self.center[k] + r)
            with ctx.workprec(HESSIAN_PREC):
                _, rb = cv._split_ball_matrix(self.obj.hessian_on_box(box))
            out.append(float(upper_fraction(rb)) if rb.is_finite() else math.inf)
        return out

    def attempt(self, r: Fraction, target: Fraction, weights: Sequence[float]) -> Attempt:
        t = time.perf_counter()
        n = self.obj.n
        m, d = self.obj.m, self.obj.d

        def check(box: cv.Box) -> tuple[Fraction, Fraction] | None:
            if not cv.neuron_norms_positive(box, m, d):
                return None
            b = self._bounds(box)
            return b if b is not None and b[0] >= target else None

        def choose(box: cv.Box) -> int:
            return max(range(n), key=lambda k: (weights[k] * float(box[k][1] - box[k][0]), -k))

        res = cv.build_tree(cv.cube(self.center, r), self.center, r, check, choose, self.max_leaves,
                            deadline=self._out_of_time)
        att = Attempt(radius=cv.exact_decimal(r), proved=res is not None, leaves=0 if res is None else len(res[1]),
                      seconds=time.perf_counter() - t)
        if res is not None:
            tokens, leaves = res
            mu = min(b[0] for _, b in leaves)
            beta = max(b[1] for _, b in leaves)
            att.mu = decimal_string(mu, up=False, digits=8)
            att.beta = decimal_string(beta, up=True, digits=8)
            if self.best is None or r > self.best[0]:
                self.best = (r, tokens, leaves)
        elif self.smallest_failed is None or r < self.smallest_failed:
            self.smallest_failed = r
        self.attempts.append(att)
        self.on_attempt(att)
        return att

    def search(self) -> None:
        self.phase = "radius-search"
        t = time.perf_counter()
        with ctx.workprec(HESSIAN_PREC):
            H0 = self.obj.hessian([cv.frac_arb(c) for c in self.center])
        b0 = cv.spectrum_bounds(H0)
        if b0 is None or b0[0] <= 0:
            raise CheckerError("the Hessian at the centre is not certified positive definite")
        target = b0[0] * self.mu_fraction
        min_norm = min(math.sqrt(sum(float(x) ** 2 for x in row)) for row in self.center_json["W"])
        r = cv.round_decimal(Fraction(min_norm) * Fraction(1, 10_000), RADIUS_DIGITS, up=False)
        weights = self._sensitivity(self.radius or r)
        weights = [w if math.isfinite(w) else max(x for x in weights if math.isfinite(x)) * 10 for w in weights]
        self.target = target
        self.mu_center = b0[0]
        if self.radius is not None:
            self.say(f"cover of the ball of radius {cv.exact_decimal(self.radius)} ...")
            self.attempt(self.radius, target, weights)
            self.seconds["search"] = time.perf_counter() - t
            return
        self.say(f"radius search (mu >= {float(target):.4g}, a fraction {self.mu_fraction} of the centre's "
                 f"{float(b0[0]):.4g}) ...")
        search_radius(r, Fraction(min_norm), lambda x: self.attempt(x, target, weights).proved,
                      self._out_of_time, lambda: (self.best and self.best[0], self.smallest_failed))
        self.seconds["search"] = time.perf_counter() - t

    def run(self) -> dict[str, Any]:
        self.find_center()
        self.stationary_box()
        if self.t1:
            self.t1_phase()
        self.search()
        self.status = "proved" if self.best is not None and self._numbers() is not None else "not-proved"
        self.phase = "done"
        return self.certificate()

    # -------------------------------------------------------- the certificate
    def _numbers(self) -> dict[str, Any] | None:
        """The derived numbers of the best cover (exact rationals rounded the safe way), or None."""
        if self.best is None or self.rho2 is None:
            return None
        r, tokens, leaves = self.best
        mu_f = min(b[0] for _, b in leaves)
        beta_f = max(b[1] for _, b in leaves)
        mu = cv.round_decimal(mu_f, BOUND_DIGITS, up=False)
        beta = cv.round_decimal(beta_f, BOUND_DIGITS, up=True)
        if not mu > 0 or not r > self.rho2:
            return None
        R = cv.round_decimal(r - self.rho2, RADIUS_DIGITS + 6, up=False)
        step = cv.round_decimal(2 / (mu + beta), BOUND_DIGITS, up=False)
        rate = cv.round_decimal(max(abs(1 - step * mu), abs(1 - step * beta)), BOUND_DIGITS, up=True)
        gap_level = cv.round_decimal(mu * R * R / 2, BOUND_DIGITS, up=False)
        width = cv.parse_decimal(self.enclosure["upper"]) - cv.parse_decimal(self.enclosure["lower"])
        gap_upper = cv.round_decimal(beta * R * R / 2 + width, BOUND_DIGITS, up=True)
        return {"r": r, "tokens": tokens, "leaves": leaves, "mu": mu, "beta": beta, "R": R, "step": step,
                "rate": rate, "gap_level": gap_level, "gap_upper": gap_upper}

    def certificate(self) -> dict[str, Any]:
        nums = self._numbers()
        proved = self.status == "proved" and nums is not None
        largest = None if self.best is None else cv.exact_decimal(self.best[0])
        cert: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "checker_version": __version__,
            "route": ROUTE_EXACT,
            "status": self.status if self.status != "proved" or proved else "not-proved",
            "proved": proved,
            "phase": self.phase,
            "instance": self.instance.to_dict(),
            "parametrization": "theta = (a_1, ..., a_m, w_1, ..., w_m) (W row by row), Euclidean norm",
            "center": self.center_json,
            "stationary_box": None if self.rho is None else {
                "rho": cv.exact_decimal(self.rho), "rho_euclid": cv.exact_decimal(self.rho2),
                "prec_bits": KRAWCZYK_PREC,
                "meaning": "exactly one stationary point of L_lambda in center + [-rho, rho]^n (Krawczyk)"},
            "radius": None if nums is None else cv.exact_decimal(nums["r"]),
            "basin_radius": None if nums is None else cv.exact_decimal(nums["R"]),
            "mu_lower": None if nums is None else cv.exact_decimal(nums["mu"]),
            "beta_upper": None if nums is None else cv.exact_decimal(nums["beta"]),
            "step_max": None if nums is None else cv.exact_decimal(nums["step"]),
            "rate": None if nums is None else cv.exact_decimal(nums["rate"]),
            "gap_level": None if nums is None else cv.exact_decimal(nums["gap_level"]),
            "gap_upper": None if nums is None else cv.exact_decimal(nums["gap_upper"]),
            "L_star_enclosure": self.enclosure,
            "eps0_checker": self.t1_constants.get("eps_0"),
            "lambda_max_checker": self.t1_constants.get("lambda_max"),
            "t1_constants": self.t1_constants,
            "cover": None if nums is None else {
                "prec_bits": HESSIAN_PREC,
                "root": "the cube [center - radius, center + radius]^n",
                "tree": nums["tokens"],
                "boxes": [dict(cv.box_to_json(box), mu=decimal_string(b[0], up=False, digits=BOUND_DIGITS),
                               beta=decimal_string(b[1], up=True, digits=BOUND_DIGITS)) for box, b in nums["leaves"]],
            },
            "search": {
                "mu_fraction": str(self.mu_fraction),
                "mu_target": None if not hasattr(self, "target") else decimal_string(self.target, up=False, digits=8),
                "mu_center": None if not hasattr(self, "mu_center") else decimal_string(self.mu_center, up=False,
                                                                                       digits=8),
                "max_leaves": self.max_leaves,
                "largest_radius_reached": largest,
                "smallest_radius_failed": None if self.smallest_failed is None else cv.exact_decimal(self.smallest_failed),
                "attempts": [att.__dict__ for att in self.attempts],
            },
            "seconds": dict(self.seconds, total=time.perf_counter() - self.t0),
            "notes": self.notes,
        }
        cert["statement"] = statement(cert) if proved else [
            "not proved: no claim is made" + ("" if largest is None else
                                              f" (the largest radius whose cover held: {largest})")]
        return cert


def l_star_lower(instance: Instance, center: dict[str, Any], dps: int, tol: float) -> Fraction | None:
    """The rigorous duality lower bound on L*_lambda at the centre, or None if it could not be certified.

    ``checker.rigorous.duality.gap_bound`` on the instance with the centre as student, in the
    mp engine at ``dps`` digits, tolerance ``tol`` on the certified sup: D(p) <= L*_lambda for the
    instance as read at those digits.
    """
    from checker.core.engines import MpEngine
    from checker.core.problem import Problem
    from checker.rigorous.duality import gap_bound

    inst = instance.replace(student_a=center["a"], student_W=center["W"])
    gb = gap_bound(Problem.from_instance(inst, MpEngine(dps)), rigorous=True, tol=tol)
    return cv.parse_decimal(gb.dual) if gb.rigorous else None


def t1_constants(instance: Instance, seed: int) -> dict[str, Any]:
    """T1's eps_0 and lambda_max for the instance (``checker.theorem.check.t1_thresholds``), for a
    certificate: non-finite floats as None (JSON).  Reported beside the certified numbers, not claims."""
    from checker.theorem.check import t1_thresholds

    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in t1_thresholds(instance, seed=seed).items()}


def search_radius(r: Fraction, ceiling: Fraction, attempt: Callable[[Fraction], bool],
                  out_of_time: Callable[[], bool],
                  bracket: Callable[[], tuple[Fraction | None, Fraction | None]]) -> None:
    """The radius search of both provers: from ``r``, grow or shrink by 4 until one radius holds and
    another fails (never at or above ``ceiling``, never below 1e-30), then bisect the bracket by
    geometric means until its ends are within ``RADIUS_RATIO``.  ``attempt(r)`` proves a radius (and
    records it); ``bracket()`` returns the largest radius proved and the smallest that failed so far."""
    while not out_of_time():
        ok = attempt(r)
        best, failed = bracket()
        if ok and failed is None:
            r = cv.round_decimal(r * 4, RADIUS_DIGITS, up=False)
            if r >= ceiling:
                break
        elif not ok and best is None:
            r = cv.round_decimal(r / 4, RADIUS_DIGITS, up=False)
            if r < Fraction(1, 10**30):
                break
        else:
            break
    while not out_of_time():
        lo, hi = bracket()
        if lo is None or hi is None or hi / lo < Fraction(RADIUS_RATIO).limit_denominator(1000):
            break
        mid = cv.round_decimal(Fraction(math.sqrt(float(lo) * float(hi))), RADIUS_DIGITS, up=False)
        if not lo < mid < hi:
            break
        attempt(mid)
