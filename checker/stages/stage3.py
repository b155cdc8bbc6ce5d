"""Stage 3: gradient descent with weight decay from the stage-2 student, always; recovery measured.

The local phase runs whatever T1 says about its start (T1's verdict on the start is
reported apart, ``checker.stages.algorithm``): gradient descent on L_lambda
(``checker.dynamics.gd.run_gd``) with the lambda schedule, and a step that the start
allows unless one is given: eta = min(ETA_CAP, SAFE_ETA_BETA / beta_0), beta_0 the
Hessian norm of L_lambda at the start (``checker.geometry.smoothness``), as the
threshold study's safe step (``checker.studies.threshold.safe_eta``).

"Recovered" is measured on the final state (a, W) at the final lambda, with the
criteria below (this checker's choices; their scaling in lambda is the one the
certificate bounds C3/C4 of docs/formalization.md give at the lambda-optimum, where
zeta = 0 and B(0) = lambda^2 ||p*||^2 / 4):

* angle bound theta(lambda) = min(Delta/3, ANGLE_CONSTANT sqrt(lambda)).  C4 gives
  sum_near mu_j angle_j^2 <= lambda ||p*||^2 / (4 rho), so the mass farther than
  theta from its teacher is at most lambda ||p*||^2 / (4 rho theta^2): with theta
  proportional to sqrt(lambda) that fraction does not grow as lambda -> 0.
* near mass: for every teacher i, the signed mass sum_j a_j ||w_j|| of the
  students within theta(lambda) of w*_i has the sign of a*_i and at least
  NEAR_FRACTION |a*_i| in size (the lambda-optimum of a single teacher puts
  a*_i - lambda sign(a*_i) there, derivations/optimum.py);
* far mass: the mass sum_j |a_j| ||w_j|| of the students within theta(lambda) of
  no teacher is at most FAR_FRACTION sum_i |a*_i|.  C3 gives far mass <=
  lambda ||p*||^2 / (4 rho') at the optimum: O(lambda) when the certificate is
  non-degenerate;
* loss: L <= LOSS_MULTIPLE lambda^2.  At the optimum the chain of C3/C4
  (L + lambda ||nu||_TV <= lambda sum |a*_i| and ||nu||_TV >= sum |a*_i| -
  ||p*|| sqrt(L) when |eta*| <= 1) gives sqrt(L) <= lambda ||p*||, i.e.
  L <= ||p*||^2 lambda^2; LOSS_MULTIPLE is a fixed multiple above the ||p*||^2
  measured on the presets and on random teachers (docs/algorithm.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.core.problem import Problem
from ..geometry.certificate import nearest_teacher

#: theta(lambda) = min(Delta/3, ANGLE_CONSTANT * sqrt(lambda)) (radians).
ANGLE_CONSTANT = 2.0
#: Each teacher needs signed mass of its sign and at least this fraction of |a*_i| within theta.
NEAR_FRACTION = 0.5
#: The mass within theta of no teacher is at most this fraction of sum_i |a*_i|.
FAR_FRACTION = 0.1
#: The final loss is at most this multiple of lambda^2.
LOSS_MULTIPLE = 100.0
#: Default largest step of stage 3 (the step is min(ETA_CAP, SAFE_ETA_BETA / beta_0) unless given).
ETA_CAP = 0.5
#: eta * beta_0 of the safe step (H3 asks for < 2; as ``checker.studies.threshold.SAFE_ETA_BETA``).
SAFE_ETA_BETA = 1.0


def angle_bound(lam: float, separation: float) -> float:
    """theta(lambda) = min(Delta/3, ANGLE_CONSTANT sqrt(lambda))."""
    return min(separation / 3, ANGLE_CONSTANT * math.sqrt(max(lam, 0.0)))


@dataclass
class Recovery:
    """The recovery criteria measured on one state (see the module docstring)."""

    recovered: bool
    lam: float
    angle_bound: float
    loss: float
    loss_over_lambda2: float | None
    loss_multiple: float
    far_mass: float
    far_fraction: float
    far_fraction_bound: float
    near_fraction_bound: float
    teachers: list[dict[str, Any]] = field(default_factory=list)
    unmet: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def reason(self) -> str:
        return "; ".join(self.unmet)


def measure_recovery(activation: str, a_star: Any, W_star: Any, a: Any, W: Any, lam: float, loss: float,
                     separation: float) -> Recovery:
    """The recovery criteria on the state (a, W) at weight decay lambda with loss L (float64)."""
    ast = np.array([float(x) for x in np.ravel(a_star)])
    Ws = np.array([[float(x) for x in r] for r in W_star])
    Ws = Ws / np.linalg.norm(Ws, axis=1)[:, None]
    af = np.array([float(x) for x in np.ravel(a)])
    Wf = np.array([[float(x) for x in r] for r in W])
    norms = np.linalg.norm(Wf, axis=1)
    mu = np.abs(af) * norms
    signed = af * norms
    theta = angle_bound(lam, separation)
    nz = norms > 0
    idx = np.full(len(af), -1)
    ang = np.full(len(af), math.inf)
    if np.any(nz):
        i_nz, a_nz = nearest_teacher(Ws, Wf[nz], activation)
        idx[nz], ang[nz] = i_nz, a_nz
    near = ang <= theta
    unmet: list[str] = []
    rows = []
    for i, ai in enumerate(ast):
        sel = near & (idx == i)
        s_near = float(signed[sel].sum())
        mine = idx == i
        closest = float(ang[mine].min()) if np.any(mine) else None
        ok = bool(s_near * ai > 0 and abs(s_near) >= NEAR_FRACTION * abs(ai))
        rows.append({"teacher": i, "a_star": float(ai), "near_signed_mass": s_near,
                     "near_students": int(sel.sum()), "closest_angle": closest, "covered": ok})
        if not ok:
            unmet.append(f"teacher {i} (a* = {ai:.3g}) has signed mass {s_near:.3g} within {theta:.3g} rad "
                         f"(needs the same sign and >= {NEAR_FRACTION:g} |a*|)")
    total = float(np.abs(ast).sum())
    far = float(mu[~near].sum())
    if far > FAR_FRACTION * total:
        unmet.append(f"mass {far:.3g} within {theta:.3g} rad of no teacher (bound {FAR_FRACTION:g} x "
                     f"sum |a*| = {FAR_FRACTION * total:.3g})")
    ratio = loss / lam ** 2 if lam > 0 else None
    if ratio is None or ratio > LOSS_MULTIPLE:
        unmet.append(f"loss {loss:.3g} = {ratio:.3g} lambda^2 (bound {LOSS_MULTIPLE:g} lambda^2)"
                     if ratio is not None else "lambda = 0: no loss bound")
    return Recovery(not unmet, lam, theta, loss, ratio, LOSS_MULTIPLE, far, far / total, FAR_FRACTION,
                    NEAR_FRACTION, rows, unmet)


def safe_step(instance: Instance, eta: str | None, *, cap: float = ETA_CAP, seed: int = 0) -> tuple[str, float, str]:
    """(step text, beta_0, how it was chosen): ``eta`` when given, else min(cap, SAFE_ETA_BETA / beta_0).

    beta_0 is the estimated Hessian norm of L_lambda at the instance's student
    (``checker.geometry.smoothness.hessian_norm_estimate``, as H3 and the threshold
    study's safe step use it); it is measured (and reported) in both cases.
    """
    from ..geometry.smoothness import hessian_norm_estimate

    beta0 = float(hessian_norm_estimate(instance, seed=seed))
    if eta is not None:
        return eta, beta0, "given"
    if not (beta0 > 0 and math.isfinite(beta0)):
        return repr(cap), beta0, f"cap {cap:g} (beta_0 not positive)"
    step = min(cap, SAFE_ETA_BETA / beta0)
    return repr(step), beta0, (f"min({cap:g}, {SAFE_ETA_BETA:g}/beta_0)")


def gap_estimate(problem: Problem, a: np.ndarray, W: np.ndarray, lam: Any) -> float:
    """The duality gap estimate (sampled supremum, not a bound) that drives the lambda schedule."""
    from ..rigorous import duality

    gb = duality.gap_bound(problem, a, W, lam=lam, rigorous=False)
    return max(float(gb.gap_upper), 0.0)


def run_stage3(problem: Problem, eta: Any, *, schedule: str, steps: int, time_budget: float | None = None,
               gap_target: float | None = None, progress: bool = False) -> Any:
    """Gradient descent on L_lambda from the problem's student (``run_gd``); returns its GDResult."""
    from checker.dynamics import gd

    sched = gd.Schedule.parse(schedule)
    needs_gap = sched.kind != "fixed" or gap_target is not None
    stop = gd.StopRules(max_steps=steps, time_budget=time_budget, gap_target=gap_target,
                        gap_every=max(20, min(200, steps // 50 or 20)))
    if isinstance(eta, str):
        with problem.engine.context():
            eta = problem.engine.scalar(eta)
    if not needs_gap:
        return gd.run_gd(problem, eta, schedule=sched, stop=stop, progress=progress)
    return gd.run_gd(problem, eta, schedule=sched, stop=stop, gap_fn=gap_estimate, progress=progress)


