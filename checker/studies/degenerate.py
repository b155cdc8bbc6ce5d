"""What a degenerate dual certificate does to the lambda-optimum (data only; no printing).

When the vanishing-derivative pre-certificate eta exceeds 1 in absolute value somewhere
(``checker.geometry.certificate``: ``max_abs_eta`` > 1), the argument behind T1 does not
apply, and the lambda-optimum is expected to keep atoms besides the teacher directions,
near where |eta| exceeds 1 (as in sparse spike recovery, where a degenerate pre-certificate
means the support is not stable).  ``degenerate_study`` measures it on one teacher:

* the peak of |eta| (value, direction, angles to the teachers) and eta on the great circle
  through the peak and the teacher nearest to it;
* for each lambda, a float64 estimate of the lambda-optimum: gradient descent on L_lambda
  from the teacher's neurons (plus ``extra`` small random ones), then exchange rounds (sliding
  Frank-Wolfe: an atom added at the largest peak of 2|g| / lambda above 1, masses re-solved
  on fixed directions, a short descent) until 2|g| <= lambda (1 + 1e-7) everywhere the local
  search looks (the KKT condition; ``kkt_max_ratio`` says how close each run came) or the
  time budget; the neurons the optimum keeps are
  those where the residual correlation reaches lambda (``checker.rigorous.optimum.select_atoms``,
  the KKT condition), and the *extra atoms* are the kept ones farther than Delta / 3 from
  every teacher: their direction, sign, mass and angle to the peak;
* a least-squares fit log(extra mass) = log C + p log(lambda) over the lambdas with extra atoms.

Everything here is a float64 estimate, not a certified statement.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from checker.core.model import Instance
from checker.geometry import certificate as cc


@dataclass
class DegenerateStudy:
    activation: str
    teacher_a: list[float]
    teacher_W: list[list[float]]
    separation: float
    peak: dict[str, Any]
    circle_theta: list[float]  # angle along the great circle, 0 at the peak
    circle_eta: list[float]
    circle_teacher: int  # the teacher the circle passes through
    circle_teacher_theta: float
    lambdas: list[float] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    fit: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _instance(activation: str, a_star: np.ndarray, W_star: np.ndarray, a: np.ndarray, W: np.ndarray,
              lam: float, eta: float) -> Instance:
    text = lambda M: [[repr(float(v)) for v in row] for row in M]  # noqa: E731
    return Instance.create(activation=activation, teacher_a=[repr(float(v)) for v in a_star], teacher_W=text(W_star),
                           student_a=[repr(float(v)) for v in a], student_W=text(W), lam=repr(float(lam)),
                           eta=repr(float(eta)), normalize_teacher=True)


#: A run counts as converged when 2|g| <= lambda (1 + KKT_CONVERGED) wherever the local search looks.
KKT_CONVERGED = 1e-6


def fit_extra_mass(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Least squares log(extra mass) = log C + p log(lambda) over the converged runs with extra atoms."""
    pts = [(r["lambda"], r["extra_mass"]) for r in runs
           if r["extra_mass"] > 0 and r.get("kkt_max_ratio", math.inf) <= 1 + KKT_CONVERGED]
    if len(pts) < 2:
        return {"exponent": None, "points": len(pts),
                "model": "fewer than two converged lambdas with extra atoms: no fit"}
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    p, c = np.polyfit(x, y, 1)
    return {"exponent": float(p), "constant": float(math.exp(c)), "points": len(pts),
            "lambdas": [p_[0] for p_ in pts],
            "model": "extra mass = constant * lambda^exponent (least squares in log-log, converged runs)"}


def _ratio_at(inst: Instance, a: np.ndarray, W: np.ndarray, u: np.ndarray, sign: float) -> float:
    """2 g(u) sign / lambda for the student (a, W) (float64)."""
    from checker.core import objective
    from checker.core.engines import Float64Engine
    from checker.core.problem import Problem

    fp = Problem.from_instance(inst, Float64Engine())
    V = np.concatenate([fp.W_star, W])
    c = np.concatenate([fp.a_star, -a])
    return float(2 * objective.correlation(fp.engine, fp.activation, u[None, :], V, c)[0] * sign / float(fp.lam))


def lasso_masses(activation: str, a_star: np.ndarray, W_star: np.ndarray, U: np.ndarray, lam: float,
                 sweeps: int = 20000, tol: float = 1e-15) -> np.ndarray:
    """Signed masses s minimizing ||sum_j s_j sigma(<u_j, x>) - f*||^2 + lam sum_j |s_j| (directions U fixed).

    The convex problem P of the paper's lifting restricted to atoms at U (exact kernel Gram
    matrices, cyclic coordinate descent with soft thresholding).
    """
    from checker.core import objective
    from checker.core.engines import Float64Engine

    f64 = Float64Engine()
    K = objective.gram(f64, U, U, activation)
    b = objective.gram(f64, U, W_star, activation) @ a_star
    s = np.zeros(len(U))
    for _ in range(sweeps):
        change = 0.0
        for j in range(len(U)):
            rest = b[j] - K[j] @ s + K[j, j] * s[j]
            new = np.sign(rest) * max(abs(rest) - lam / 2, 0.0) / K[j, j]
            change = max(change, abs(new - s[j]))
            s[j] = new
        if change <= tol:
            break
    return s


def _sliding_exchange(inst: Instance, a: np.ndarray, W: np.ndarray, delta: float, *, budget: float,
                      rounds: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Sliding Frank-Wolfe on the lifted problem.  Each round: merge collinear neurons; find the
    local maxima of 2|g| / lambda on the sphere; add an atom at the largest one above 1 that is not
    already an atom; solve for the masses with the directions fixed (``lasso_masses``); let float64
    gradient descent move directions and masses together.  Stops when 2|g| <= lambda (1 + 1e-7)
    everywhere the local search looks (the KKT condition), or at the budget."""
    from checker.core.engines import Float64Engine
    from checker.core.problem import Problem
    from checker.rigorous.duality import local_maxima
    from checker.rigorous.optimum import descend_float64, reduce_student

    start = time.perf_counter()
    a_star = np.array([float(x) for x in inst.teacher_a])
    W_star = np.array([[float(x) for x in r] for r in inst.teacher_W])
    W_star = W_star / np.linalg.norm(W_star, axis=1, keepdims=True)
    lam = float(inst.lam)
    done = 0
    for done in range(1, rounds + 1):
        a, W = reduce_student(a, W, merge_angle=delta / 10, drop_mass=1e-14)
        fp = Problem.from_instance(inst.replace(student_a=[repr(float(x)) for x in a],
                                                student_W=[[repr(float(x)) for x in r] for r in W]), Float64Engine())
        maxima = local_maxima(fp, a, W, starts=64)
        if 2 * float(maxima[0][0]) <= lam * (1 + 1e-7) or time.perf_counter() - start > budget:
            break
        U = W / np.linalg.norm(W, axis=1, keepdims=True)
        new = [np.asarray(u, dtype=float) for val, u in maxima
               if 2 * float(val) > lam * (1 + 1e-7) and np.all(U @ np.asarray(u, dtype=float) < math.cos(1e-3))]
        if new:
            U = np.concatenate([U, [new[0] / np.linalg.norm(new[0])]])
        s = lasso_masses(inst.activation, a_star, W_star, U, lam)
        keep = s != 0
        r = np.sqrt(np.abs(s[keep]))
        a, W = np.sign(s[keep]) * r, r[:, None] * U[keep]
        a, W = descend_float64(inst.replace(student_a=[repr(float(x)) for x in a],
                                            student_W=[[repr(float(x)) for x in row] for row in W]),
                               max_steps=200_000, time_budget=max(0.5, min(2.0, budget - (time.perf_counter() - start))))
    return a, W, done


def great_circle(cert: cc.Certificate, W_star: np.ndarray, u: np.ndarray, points: int = 721
                 ) -> tuple[np.ndarray, np.ndarray, int, float]:
    """eta on the great circle through the unit vector u and the teacher nearest to it."""
    idx, _ = cc.nearest_teacher(W_star, u[None, :], cert.activation)
    k = int(idx[0])
    v = W_star[k] - (W_star[k] @ u) * u
    if np.linalg.norm(v) < 1e-12:  # u is a teacher (or its antipode): any orthogonal direction
        v = np.linalg.svd(u[None, :])[2][1]
    v = v / np.linalg.norm(v)
    theta = np.linspace(-math.pi, math.pi, points)
    Q = np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * v
    t_k = math.atan2(float(W_star[k] @ v), float(W_star[k] @ u))
    return theta, cc.eta_values(cert, W_star, Q), k, t_k


def degenerate_study(activation: str, a_star: Sequence[float], W_star: Sequence[Sequence[float]],
                     lambdas: Sequence[float], *, eta: float = 0.2, extra: int = 0, seed: int = 0,
                     seconds_per_lambda: float = 60.0, samples: int = 20000, exchange_rounds: int = 30,
                     say: Callable[[str], None] = lambda text: None) -> DegenerateStudy:
    """The study of the module docstring on one teacher (float64 estimates)."""
    from checker.rigorous.optimum import descend_float64, select_atoms

    a_star = np.asarray(a_star, dtype=float)
    W_star = np.asarray(W_star, dtype=float)
    W_star = W_star / np.linalg.norm(W_star, axis=1, keepdims=True)
    say("pre-certificate and the peak of |eta| ...")
    cert = cc.build_certificate(activation, a_star, W_star, rigorous=False, samples=samples, seed=seed)
    peak = cert.peak()
    u = np.array(peak["direction"])
    theta, circle, k, t_k = great_circle(cert, W_star, u)
    delta = cert.separation
    out = DegenerateStudy(activation, a_star.tolist(), W_star.tolist(), delta, peak, theta.tolist(),
                          circle.tolist(), k, t_k, [float(x) for x in lambdas])
    rng = np.random.default_rng(seed)
    d = W_star.shape[1]
    sign_peak = float(np.sign(cc.eta_values(cert, W_star, u[None, :])[0]))
    for lam in lambdas:
        say(f"lambda = {lam:g}: descent to the lambda-optimum ...")
        R = rng.standard_normal((extra, d))
        R /= np.linalg.norm(R, axis=1, keepdims=True)
        r0 = 0.05
        W0 = np.concatenate([W_star, r0 * R])
        a0 = np.concatenate([a_star, r0 * rng.choice([-1.0, 1.0], extra)])
        inst = _instance(activation, a_star, W_star, a0, W0, lam, eta)
        t = time.perf_counter()
        a, W = descend_float64(inst, max_steps=2_000_000, time_budget=seconds_per_lambda / 6)
        a, W, rounds = _sliding_exchange(inst, a, W, delta, budget=seconds_per_lambda, rounds=exchange_rounds)
        ar, Wr, kept, dropped = select_atoms(inst, a, W, merge_angle=delta / 10)
        extra_atoms = []
        for rec in kept:
            v = np.array(rec["direction"])
            _, ang = cc.nearest_teacher(W_star, v[None, :], activation)
            if ang[0] > delta / 3:
                extra_atoms.append({**rec, "angle_to_nearest_teacher": float(ang[0]),
                                    "angle_to_peak": float(math.acos(max(-1.0, min(1.0, float(v @ u)))))})
        # the KKT ratio 2 g sign / lambda at the peak direction for the kept atoms: above 1 means that
        # support is not optimal there
        at_peak = _ratio_at(inst, ar, Wr, u, sign_peak)
        from checker.core.engines import Float64Engine
        from checker.core.problem import Problem
        from checker.rigorous.duality import local_maxima

        fp = Problem.from_instance(inst.replace(student_a=[repr(float(x)) for x in ar],
                                                student_W=[[repr(float(x)) for x in r] for r in Wr]), Float64Engine())
        kkt_max = 2 * float(local_maxima(fp, ar, Wr, starts=64)[0][0]) / float(lam)
        out.runs.append({"lambda": float(lam), "seconds": time.perf_counter() - t, "exchange_rounds": rounds,
                         "kept": kept,
                         "dropped": len(dropped), "dropped_atoms": dropped, "extra_atoms": extra_atoms,
                         "kkt_ratio_at_peak": at_peak, "kkt_max_ratio": kkt_max,
                         "extra_mass": float(sum(e["mass"] for e in extra_atoms))})
    out.fit = fit_extra_mass(out.runs)
    return out
