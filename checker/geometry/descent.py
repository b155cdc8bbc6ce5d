"""The descent direction of the local phase (the paper's Figure 1) and the measured constants c_D, c_PL.

Grade LIKELY for the picture (a machine-written description of Figure 1, "Illustration of
descent direction": each student neuron near teacher i moves towards a fraction q_ij of that
teacher's neuron, each far neuron towards 0); every detail below is RECONSTRUCTED, this
checker's choice, and graded so in ``paper_map.md``.

The construction, for a student theta = (a, W) at regularization lambda:

1. **Reduced optimum** (``reduced_optimum``).  At lambda > 0 the optimal neuron of teacher i
   is not the teacher's own: its signed mass s_i and unit direction v_i shift with lambda and
   with the other teachers.  They are the minimizer of L_lambda over students with exactly one
   neuron per teacher, started at the balanced teacher (a_i = sign(a*_i) sqrt|a*_i|,
   w_i = sqrt|a*_i| w*_i) and computed by damped Newton steps in the engine's own numbers (the
   gradient is exact; the Hessian is a central difference of it, which only slows the
   quadratic convergence, not the accuracy of the fixed point).  A stationary point of L_lambda
   is balanced (a_i^2 = ||w_i||^2, from the balance law), so the optimal neuron is
   (sign(s_i) sqrt|s_i|, sqrt|s_i| v_i).  When the measure sum_i s_i delta_{v_i} solves the
   convex problem over signed measures (one atom per teacher neighbourhood, nothing else), every
   student that splits s_i among balanced neurons on v_i is a global lambda-optimum.
2. **Assignment**: neuron j goes to its nearest teacher i when the angle is at most the radius
   r (default Delta/3; line angle for abs), as T1's neighbourhoods T_i do
   (``certificate.nearest_teacher``); otherwise to the far set (zero neurons too).
3. **Fractions q_ij** (reconstructed rule): among the neurons of T_i whose output weight has
   the sign of s_i, q_ij = mu_j / sum_l mu_l (mass-proportional, sum_j q_ij = 1); neurons of T_i
   of the opposite sign get q_ij = 0 and are moved to 0 like far neurons.  A teacher with no
   neuron of the right sign in T_i is *uncovered*: theta-hat then misses its mass, the point is
   not near the optimum in the sense of the construction, and ``complete`` is False.
4. **Target** theta-hat: near neuron j of teacher i -> sqrt(q_ij) times the optimal neuron
   (balanced, signed mass q_ij s_i; for abs, w-hat_j points along the end of the line w_j is
   on); far neuron -> 0.  The figure's words "q_ij w*_i" leave open whether q scales the neuron
   or its mass; here q is the mass fraction.  Then sum_j q_ij s_i = s_i: theta-hat is a
   lambda-optimum whenever the reduced optimum is the global one.
5. **D = theta - theta-hat**; GD moves along -grad L_lambda and the direction -D moves every
   neuron to its target.  The measured inequalities are

       <grad L_lambda(theta), D> >= c_D zeta(theta),     ||grad L_lambda(theta)||^2 >= c_PL zeta(theta),

   with zeta the gap estimate of the run's monitor.  The closed form of the directional
   derivative (``directional_derivative``, derived in ``derivations/descent.py``) follows from
   d/dt L along theta + t D = 2 E[r d_t f] + lambda <theta, D> and Euler's identity
   <grad_w E[r sigma(<w,x>)], w> = E[r sigma(<w,x>)] (r = f_theta - f*):

       <grad L_lambda, D> = sum_j 2 [(2 a_j - a-hat_j) g_j - a_j h_j] + lambda (<a, D_a> + <W, D_W>),
       g_j = E[r sigma(<w_j,x>)] = sum_l c_l k(w_j, v_l),
       h_j = <grad_w g(w_j), w-hat_j> = sum_l c_l ||v_l|| (A_jl <v-hat_l, w-hat_j> + B_jl <u_j, w-hat_j>),

   over the neurons v_l of student and teacher with c = (a, -a*).

A ratio is measured only where zeta is above the rounding level of L_lambda: zeta >
``ZETA_FLOOR_ULPS`` ulps of S = |L_lambda| + ||f*||^2 (the scale of the cancelling kernel sum that
L_lambda is, ``checker.gd``); below it both sides are rounding noise and the ratio means nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np

from checker.core import objective
from checker.core.engines import Engine
from checker.core.errors import CheckerError
from checker.core.io import engine_to_json
from .certificate import nearest_teacher

#: A ratio against zeta is recorded only when zeta exceeds this many ulps of |L_lambda| + ||f*||^2.
ZETA_FLOOR_ULPS = 1000
#: The two kinds of zeta a ratio can divide by: the rigorous duality bound (Arb, certified sup) at
#: the start and the end of a run, the estimate (same bound with a sampled sup, engine arithmetic)
#: at the points monitored along it.
ZETA_BOUND = "rigorous bound"
ZETA_ESTIMATE = "estimate"
ZETA_KINDS = (ZETA_BOUND, ZETA_ESTIMATE)
#: Newton stops when ||grad|| is below this many ulps of the scale S (or stops improving).
GRAD_TOL_ULPS = 100
MAX_NEWTON = 60


# --------------------------------------------------------------------------- small helpers
def _flat(a: np.ndarray, W: np.ndarray) -> np.ndarray:
    return np.concatenate([a, W.ravel()])


def _unflat(x: np.ndarray, m: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    return x[:m], x[m:].reshape(m, d)


def _sqnorm(x: np.ndarray) -> Any:
    return (x * x).sum()


def _solve(engine: Engine, H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """H^{-1} g in the engine's numbers (numpy for float64, mpmath LU otherwise)."""
    if engine.name == "float64":
        return np.linalg.solve(np.asarray(H, float), np.asarray(g, float))
    with engine.context():
        sol = mpmath.lu_solve(mpmath.matrix(H.tolist()), mpmath.matrix(list(g)))
        return np.array([sol[i] for i in range(len(g))], dtype=object)


def _fd_step(engine: Engine) -> Any:
    """Central-difference step of the Hessian: ~eps^(1/3) balances truncation and rounding."""
    if engine.name == "float64":
        return 1e-5
    with engine.context():
        return mpmath.mpf(10) ** (-(engine.work_dps // 3))


def rounding_scale(engine: Engine, activation: str, a_star: np.ndarray, W_star: np.ndarray,
                   reg_loss: Any) -> float:
    """eps (|L_lambda| + ||f*||^2): the rounding level of a computed L_lambda (as in ``checker.gd``)."""
    with engine.context():
        energy = a_star.dot(objective.gram(engine, W_star, W_star, activation).dot(a_star))
    return engine.eps * (abs(float(reg_loss)) + abs(float(energy)))


# --------------------------------------------------------------------------- reduced optimum
@dataclass
class ReducedOptimum:
    """The lambda-optimum with one neuron per teacher: signed masses s_i, directions v_i, neurons."""

    lam: Any
    a: np.ndarray  # (m*,) balanced optimal output weights, engine numbers
    W: np.ndarray  # (m*, d) optimal neurons
    signed_mass: list[float]
    angle_to_teacher: list[float]  # angle(v_i, w*_i): how far lambda moved the direction
    grad_norm: float
    min_hessian_eig: float  # local strong convexity of the reduced problem (float estimate)
    iterations: int
    converged: bool

    def to_dict(self, engine: Engine) -> dict[str, Any]:
        return {"lambda": float(self.lam), "a": engine_to_json(engine, self.a), "W": engine_to_json(engine, self.W),
                "signed_mass": self.signed_mass, "angle_to_teacher": self.angle_to_teacher,
                "grad_norm": self.grad_norm, "min_hessian_eig": self.min_hessian_eig,
                "iterations": self.iterations, "converged": self.converged}


def reduced_optimum(engine: Engine, activation: str, a_star: np.ndarray, W_star: np.ndarray, lam: Any,
                    *, max_iter: int = MAX_NEWTON) -> ReducedOptimum:
    """Minimize L_lambda over one neuron per teacher by damped Newton steps from the balanced teacher.

    Arrays in the engine's numbers (``Problem.a_star``, ``Problem.W_star``).  Raises CheckerError when
    the iteration leaves the teacher's neighbourhood or a neuron's mass vanishes (lambda too large
    against |a*_i|: the optimum then drops that teacher and the construction does not apply).
    """
    ms, d = W_star.shape
    with engine.context():
        lam_e = engine.scalar(lam) if not isinstance(lam, (np.ndarray,)) else lam
        roots = np.array([engine.sqrt(abs(x)) for x in a_star], dtype=object if engine.name != "float64" else float)
        a0 = np.array([r if x > 0 else -r for r, x in zip(roots, a_star)], dtype=roots.dtype)
        W0 = roots[:, None] * W_star
        x = _flat(a0, W0)

        def ev(x: np.ndarray, grad: bool = True) -> objective.Evaluation:
            a, W = _unflat(x, ms, d)
            return objective.evaluate(engine, activation, a, W, a_star, W_star, lam_e, with_gradient=grad)

        def grad_of(e: objective.Evaluation) -> np.ndarray:
            return _flat(e.grad_a, e.grad_W)

        e0 = ev(x)
        scale = rounding_scale(engine, activation, a_star, W_star, e0.reg_loss)
        tol = GRAD_TOL_ULPS * scale
        h = _fd_step(engine)
        n = len(x)
        g = grad_of(e0)
        f = e0.reg_loss
        best = (float(engine.sqrt(_sqnorm(g))), x)
        it, H = 0, None
        for it in range(1, max_iter + 1):
            if best[0] <= tol:
                break
            H = np.empty((n, n), dtype=x.dtype)
            for k in range(n):
                ek = np.zeros(n, dtype=x.dtype) if engine.name == "float64" else engine.zeros(n)
                ek[k] = h
                H[:, k] = (grad_of(ev(x + ek)) - grad_of(ev(x - ek))) / (2 * h)
            H = (H + H.T) / 2
            try:
                step = _solve(engine, H, g)
            except (np.linalg.LinAlgError, ZeroDivisionError):
                step = g
            if float(step.dot(g)) <= 0:  # not a descent direction: fall back to the gradient
                step = g
            t = 1
            for _ in range(40):
                xn = x - t * step
                en = ev(xn)
                if float(en.reg_loss - f) <= 16 * scale:
                    break
                t = t / 2
            else:
                break
            x, f, g = xn, en.reg_loss, grad_of(en)
            gn = float(engine.sqrt(_sqnorm(g)))
            if gn < best[0]:
                best = (gn, x)
            elif gn > 4 * best[0] and best[0] <= 1e6 * tol:
                break  # at the rounding floor: further steps only wander
        x = best[1]
        a, W = _unflat(x, ms, d)
        norms = [float(engine.sqrt((W[i] * W[i]).sum())) for i in range(ms)]
        if min(norms) <= math.sqrt(1e3 * engine.eps):
            raise CheckerError("the reduced lambda-optimum drops a teacher (its mass vanishes): "
                               "lambda is too large against |a*_i|; the descent direction is undefined")
        Wf = np.array([[float(y) for y in row] for row in W])
        Wsf = np.array([[float(y) for y in row] for row in W_star])
        signed = [float(a[i]) * norms[i] for i in range(ms)]
        angles = [float(np.arccos(np.clip(Wf[i] @ Wsf[i] / (np.linalg.norm(Wf[i]) * np.linalg.norm(Wsf[i])),
                                          -1, 1))) for i in range(ms)]
        if H is None:  # converged at the start (only if the teacher itself is the optimum)
            H = np.zeros((n, n))
        eig = float(np.min(np.linalg.eigvalsh(np.array(H, dtype=float))))
    return ReducedOptimum(lam_e, a, W, signed, angles, best[0], eig, it, best[0] <= tol * 1e3)


# --------------------------------------------------------------------------- the direction
@dataclass
class DescentDirection:
    """D = theta - theta-hat at one student, with the assignment and the fractions used."""

    D_a: np.ndarray
    D_W: np.ndarray
    a_hat: np.ndarray
    W_hat: np.ndarray
    assignment: list[int]  # nearest teacher within the radius, -1 far, -2 zero neuron
    q: list[float]  # q_ij of the neuron's teacher (0 for far neurons and opposite-sign near neurons)
    covered: list[bool]  # teacher i has at least one near neuron of the sign of s_i
    complete: bool
    angles: list[float | None] = field(default_factory=list)

    def to_dict(self, engine: Engine) -> dict[str, Any]:
        return {"D": {"a": engine_to_json(engine, self.D_a), "W": engine_to_json(engine, self.D_W)},
                "theta_hat": {"a": engine_to_json(engine, self.a_hat), "W": engine_to_json(engine, self.W_hat)},
                "assignment": self.assignment, "q": self.q, "covered": self.covered, "complete": self.complete,
                "angles": self.angles,
                "note": "assignment: nearest teacher within the radius, -1 far, -2 zero neuron; "
                        "q: mass fraction of the teacher's optimal signed mass (this checker's rule)"}


def descent_direction(engine: Engine, activation: str, a: np.ndarray, W: np.ndarray, W_star: np.ndarray,
                      reduced: ReducedOptimum, radius: float) -> DescentDirection:
    """theta-hat and D = theta - theta-hat for the student (a, W) (engine arrays); see the module docstring."""
    if not (radius > 0 and math.isfinite(radius)):
        raise CheckerError(f"radius must be a positive number, got {radius}")
    m, d = W.shape
    ms = len(reduced.a)
    with engine.context():
        Wf = np.array([[float(y) for y in row] for row in W])
        af = np.array([float(y) for y in a])
        Wsf = np.array([[float(y) for y in row] for row in W_star])
        norms = np.linalg.norm(Wf, axis=1)
        assign = [-2] * m
        angles: list[float | None] = [None] * m
        nz = np.flatnonzero(norms > 0)
        if len(nz):
            idx, ang = nearest_teacher(Wsf, Wf[nz], activation)
            for k, j in enumerate(nz):
                angles[j] = float(ang[k])
                assign[j] = int(idx[k]) if ang[k] <= radius else -1
        q = [0.0] * m
        covered = []
        a_hat = engine.zeros(m) if engine.name != "float64" else np.zeros(m)
        W_hat = engine.zeros((m, d)) if engine.name != "float64" else np.zeros((m, d))
        for i in range(ms):
            s_i = reduced.signed_mass[i]
            mine = [j for j in range(m) if assign[j] == i and af[j] != 0 and (af[j] > 0) == (s_i > 0)]
            covered.append(bool(mine))
            # q in the engine's numbers, so that sum_j q_ij = 1 (theta-hat's mass s_i) to working precision
            mu_e = {j: abs(a[j]) * engine.sqrt((W[j] * W[j]).sum()) for j in mine}
            total = sum(mu_e.values())
            for j in mine:
                q_e = mu_e[j] / total
                q[j] = float(q_e)
                root = engine.sqrt(q_e)
                orient = 1
                if activation == "abs" and float(Wf[j] @ np.array([float(y) for y in reduced.W[i]])) < 0:
                    orient = -1
                a_hat[j] = root * reduced.a[i]
                W_hat[j] = orient * root * reduced.W[i]
        D_a, D_W = a - a_hat, W - W_hat
    return DescentDirection(D_a, D_W, a_hat, W_hat, assign, q, covered, all(covered), angles)


def directional_derivative(engine: Engine, activation: str, a: np.ndarray, W: np.ndarray,
                           a_hat: np.ndarray, W_hat: np.ndarray, a_star: np.ndarray, W_star: np.ndarray,
                           lam: Any) -> Any:
    """<grad L_lambda(theta), theta - theta-hat> in closed form through the kernel (module docstring).

    Generic over the number type (engine arrays; SymPy objects in ``derivations/descent.py``).
    """
    with engine.context():
        V = np.concatenate([W, W_star], axis=0)
        c = np.concatenate([a, -a_star])
        geo = objective.pair_geometry(engine, W, V)
        g = objective.gram_from(engine, geo, activation).dot(c)
        G = objective.grad_gram_from(engine, geo, activation)
        h = ((G * c[None, :, None]).sum(axis=1) * W_hat).sum(axis=1)
        D_a, D_W = a - a_hat, W - W_hat
        return (2 * ((2 * a - a_hat) * g - a * h)).sum() + lam * ((a * D_a).sum() + (W * D_W).sum())


# --------------------------------------------------------------------------- measured constants
@dataclass
class DescentTerms:
    """The two sides of the descent and gradient-domination inequalities at one point."""

    dir_deriv: float  # <grad L_lambda, D>
    grad_sq: float  # ||grad L_lambda||^2
    zeta: float
    zeta_floor: float  # ratios are measured only when zeta > zeta_floor
    complete: bool
    c_D: float | None  # dir_deriv / zeta where measured
    c_PL: float | None  # grad_sq / zeta where measured
    D_norm: float
    excluded: str = ""  # why no ratio was measured here
    zeta_kind: str = ZETA_ESTIMATE  # which zeta the ratios divide by (ZETA_KINDS)
    zeta_engine: str = ""  # the arithmetic zeta (and its floor) comes from

    def to_dict(self) -> dict[str, Any]:
        return {"dir_deriv": self.dir_deriv, "grad_sq": self.grad_sq, "zeta_floor": self.zeta_floor,
                "descent_complete": self.complete, "c_D_ratio": self.c_D, "c_PL_ratio": self.c_PL,
                "D_norm": self.D_norm, "descent_excluded": self.excluded, "zeta_kind": self.zeta_kind,
                "zeta_engine": self.zeta_engine}


def descent_terms(engine: Engine, activation: str, a: np.ndarray, W: np.ndarray, a_star: np.ndarray,
                  W_star: np.ndarray, lam: Any, zeta: float, reduced: ReducedOptimum,
                  radius: float, *, zeta_kind: str = ZETA_ESTIMATE) -> tuple[DescentTerms, DescentDirection]:
    """<grad L_lambda, D>, ||grad L_lambda||^2 and their ratios to zeta at one point (see the exclusion rule).

    Everything is computed in ``engine``, which must be the arithmetic zeta was computed in: the
    floor that excludes points at the rounding level is that engine's (a float64 gap estimate is
    noise below ~1000 float64 ulps however precise the engine that reads its iterate).
    """
    if zeta_kind not in ZETA_KINDS:
        raise CheckerError(f"zeta_kind must be one of {ZETA_KINDS}, got {zeta_kind!r}")
    direction = descent_direction(engine, activation, a, W, W_star, reduced, radius)
    with engine.context():
        ev = objective.evaluate(engine, activation, a, W, a_star, W_star, lam)
        grad_sq = float((ev.grad_a * ev.grad_a).sum() + (ev.grad_W * ev.grad_W).sum())
        dd = float((ev.grad_a * direction.D_a).sum() + (ev.grad_W * direction.D_W).sum())
        D_norm = math.sqrt(float(_sqnorm(direction.D_a) + _sqnorm(direction.D_W)))
    floor = ZETA_FLOOR_ULPS * rounding_scale(engine, activation, a_star, W_star, ev.reg_loss)
    excluded = ""
    if not direction.complete:
        excluded = "a teacher has no near neuron of its optimal sign (theta-hat undefined)"
    elif not zeta > floor:
        excluded = f"zeta {zeta:.3g} at or below the rounding floor {floor:.3g}"
    c_D = dd / zeta if not excluded else None
    c_PL = grad_sq / zeta if not excluded else None
    return (DescentTerms(dd, grad_sq, zeta, floor, direction.complete, c_D, c_PL, D_norm, excluded, zeta_kind,
                         engine.describe()), direction)


def monitored_terms(state: dict[str, Any], problem: Any, run_engine: Engine, a: np.ndarray, W: np.ndarray,
                    lam: float, zeta: float, radius: float, *, lam_exact: Any = None,
                    zeta_rigorous: bool = False) -> dict[str, Any]:
    """The C6/C7 terms of one monitored point of a run, as a monitor row's keys (``DescentTerms.to_dict``).

    ``problem`` (a ``checker.core.problem.Problem``) is the one whose engine computed zeta: the
    run's own, or the float64 twin during the float64 phase of a hybrid run.  The terms, the
    reduced lambda-optimum and the rounding floor are all computed in that engine, so that a gap
    estimated in float64 is compared with float64's rounding level.  ``lam_exact`` is the
    schedule's lambda in that engine's numbers (else the problem's own lambda when ``lam`` is it,
    or the lambda last recorded for the run's engine).  ``state`` is the run's cache:
    ``state["lam"]`` and ``state["reduced"]`` (float lambda -> engine lambda, reduced optimum or
    the reason it does not exist) for the run's engine, ``state["reduced:<engine>"]`` for another.
    ``zeta_rigorous``: zeta is the rigorous duality bound (else an estimate; the row says which).
    """
    zeta_kind = ZETA_BOUND if zeta_rigorous else ZETA_ESTIMATE
    engine = problem.engine
    own = engine.name == run_engine.name
    if own and lam_exact is not None:
        state["lam"][lam] = lam_exact
    lam_e = lam_exact if lam_exact is not None else (
        problem.lam if lam == float(problem.lam) else state["lam"].get(lam) if own else None)
    if lam_e is None:
        with engine.context():
            lam_e = engine.scalar(lam)
    store = state["reduced"] if own else state.setdefault(f"reduced:{engine.name}", {})
    if lam not in store:
        try:
            store[lam] = reduced_optimum(engine, problem.activation, problem.a_star, problem.W_star, lam_e)
        except CheckerError as exc:
            store[lam] = str(exc)
    red = store[lam]
    if isinstance(red, str):
        return {"dir_deriv": None, "grad_sq": None, "c_D_ratio": None, "c_PL_ratio": None,
                "descent_excluded": red, "zeta_kind": zeta_kind, "zeta_engine": engine.describe()}
    terms, _ = descent_terms(engine, problem.activation, a, W, problem.a_star, problem.W_star, lam_e, zeta,
                             red, radius, zeta_kind=zeta_kind)
    return terms.to_dict()


def zeta_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Which zeta the measured ratios of C6/C7 divide by: counts per kind and engine, and the kind at
    the points where the smallest c_D and c_PL were seen (rows: monitor rows with ``c_D_ratio``)."""
    used = [m for m in rows if m.get("c_D_ratio") is not None]
    counts: dict[str, int] = {}
    for m in used:
        key = f"{m.get('zeta_kind', ZETA_ESTIMATE)} ({m.get('zeta_engine') or 'run engine'})"
        counts[key] = counts.get(key, 0) + 1
    out: dict[str, Any] = {"points": counts}
    for name, key in (("c_D", "c_D_ratio"), ("c_PL", "c_PL_ratio")):
        best = min(used, key=lambda m: m[key]) if used else None
        out[name] = None if best is None else best.get("zeta_kind", ZETA_ESTIMATE)
    text = ", ".join(f"{n} point(s) with zeta the {k}" for k, n in counts.items()) or "no point"
    out["text"] = (f"zeta: {text}; the smallest c_D uses the {out['c_D']}, the smallest c_PL the {out['c_PL']}"
                   if used else "zeta: no point measured")
    return out


def implied_rate(c_PL: float, eta: float, beta: float) -> float | None:
    """Per-step contraction of the gap that gradient domination implies for GD with step eta.

    Descent lemma (beta bounds the Hessian norm of L_lambda on the segments between iterates):
    L(theta - eta g) <= L(theta) - eta (1 - eta beta / 2) ||g||^2, and ||g||^2 >= c_PL zeta, so
    zeta_{t+1} <= (1 - eta c_PL (1 - eta beta / 2)) zeta_t.  None unless 0 < eta beta < 2 and c_PL > 0.
    """
    if not (c_PL > 0 and 0 < eta * beta < 2):
        return None
    return max(0.0, 1 - eta * c_PL * (1 - eta * beta / 2))
