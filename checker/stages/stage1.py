"""Stage 1: a few large gradient steps on the first layer from a small random start.

Early-stage feature learning in the style of Damian, Lee and Soltanolkotabi
(2022), which the paper cites; the exact form of the paper's stage 1 is not
known here, so every choice below is this checker's (grade: reconstructed).

* Start: m students, rows w_j = scale * g_j / sqrt(d) with g_j ~ N(0, I_d) from
  a seeded numpy Generator; output weights a_j = a_value * s_j with s_j random
  signs (equal size), fixed during stage 1.
* Step: W <- W - eta * G(W), a few times, a unchanged.  G is the exact
  population gradient in W of

    plain:    L(a, W) = E[(f_theta(x) - f*(x))^2],
    centred:  E[(f_theta(x) - f*_c(x))^2],  f*_c = f* - E[f*] - <E[x f*], x>,

  i.e. the constant and linear (Hermite 0 and 1) parts of the teacher removed
  from the target inside the step.  For a neuron sigma(<w, x>):
  E[sigma(<w,x>)] = m_0 ||w|| and E[x sigma(<w,x>)] = m_1 w (relu: m_0 =
  1/sqrt(2 pi), m_1 = 1/2; abs: sqrt(2/pi), 0), so E[f*] = m_0 sum_i a*_i
  ||w*_i|| and E[x f*] = m_1 sum_i a*_i w*_i.  The centred gradient is the plain
  one plus 2 a_j E[(c + <b, x>) sigma'(<w_j,x>) x] = 2 a_j (c e_1 u_j + e_2 b),
  with e_1 = E[z sigma'(z)] and, since E[sigma'(<u,x>) x x^T] = e_0 (I - u u^T)
  + e_2 u u^T with e_0 = E[sigma'(z)] = e_2 = E[z^2 sigma'(z)] for relu (both
  1/2) and e_0 = e_2 = 0 for abs, simply e_2 b.  Derived in
  ``derivations/early_stage.py``.

The one-step variant (``one-step``; Damian, Lee and Soltanolkotabi 2022 take one
large gradient step on the first layer from a small random start with small fixed
output weights; the details here are this checker's, grade reconstructed): one
step of the centred gradient, W1 = W0 - eta1 G(W0), with eta1 chosen so that the
median row of the update is ``ONE_STEP_RATIO`` times the median row of W0
(``one_step_eta``): the update, whose leading term at a small start is
4 c_2^2 a_j M u_j with M = sum_i a*_i w*_i w*_i^T, then dominates the random start,
and the features are random mixtures of the teacher directions (no collapse of
many neurons onto a few fixed points, which the multi-step variant shows on
non-orthogonal teachers).  ``none`` skips stage 1 (the start's random directions
are the features).

Why the centred gradient: as W -> 0 the gradient tends to -2 a_j sum_i a*_i
(kappa'(t_ij) w*_i + (kappa - t kappa')(t_ij) u_j) (t_ij = <u_j, w*_i>); the
Hermite-1 term c_1^2 sum_i a*_i w*_i pulls every neuron towards one direction,
and the Hermite-0 term c_0^2 sum_i a*_i u_j keeps each neuron's own random
direction; the Hermite-2 term 2 c_2^2 sum_i a*_i w*_i w*_i^T u_j is the one
that spreads neurons over the teachers.  Removing the first two leaves the
second as the leading term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from checker.core import objective
from checker.core.engines import Engine
from checker.core.errors import CheckerError
from ..geometry.certificate import nearest_teacher

#: The stage-1 gradients (``stage1_gradient``).
VARIANTS = ("plain", "centred")
#: The stage-1 procedures: multi-step with either gradient, the one-step variant, none.
PROCEDURES = ("centred", "plain", "one-step", "none")
#: The one-step variant's update / start ratio (median row norms; this checker's choice):
#: 1e3 leaves the start's random direction at about 1e-3 of each feature.
ONE_STEP_RATIO = 1e3

#: Gaussian moments of each activation (z ~ N(0, 1)), derived in derivations/early_stage.py:
#: m0 = E[sigma(z)], m1 = E[z sigma(z)], e1 = E[z sigma'(z)], e2 = E[z^2 sigma'(z)].
MOMENTS: dict[str, dict[str, float]] = {
    "relu": {"m0": 1 / math.sqrt(2 * math.pi), "m1": 0.5, "e1": 1 / math.sqrt(2 * math.pi), "e2": 0.5},
    "abs": {"m0": math.sqrt(2 / math.pi), "m1": 0.0, "e1": math.sqrt(2 / math.pi), "e2": 0.0},
}


def moments(engine: Engine, activation: str) -> dict[str, Any]:
    """The moments of ``MOMENTS`` in the engine's numbers (exact expressions in pi)."""
    with engine.context():
        pi = engine.pi
        s = engine.sqrt
        if activation == "relu":
            r = 1 / s(np.array([2 * pi]))[0]
            return {"m0": r, "m1": engine.scalar("0.5"), "e1": r, "e2": engine.scalar("0.5")}
        if activation == "abs":
            r = s(np.array([2 / pi]))[0]
            return {"m0": r, "m1": engine.scalar(0), "e1": r, "e2": engine.scalar(0)}
    raise CheckerError(f"unknown activation {activation!r}")


@dataclass(frozen=True)
class Stage1Options:
    """Stage 1 settings (every default is this checker's choice)."""

    width: int
    scale: float = 1e-3
    eta: float | None = 1.0  # None: derived (one-step: ``one_step_eta``; none: unused)
    steps: int = 1
    variant: str = "centred"
    a_value: float = 1.0

    def validate(self) -> "Stage1Options":
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise CheckerError(f"--width must be a positive whole number, got {self.width!r}")
        for name in ("scale", "eta", "a_value"):
            v = getattr(self, name)
            if v is None and name == "eta" and self.variant in ("one-step", "none"):
                continue
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise CheckerError(f"stage-1 {name} must be a positive number, got {v!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise CheckerError(f"stage-1 steps must be a positive whole number, got {self.steps!r}")
        if self.variant not in PROCEDURES:
            raise CheckerError(f"stage-1 variant must be one of {', '.join(PROCEDURES)}, got {self.variant!r}")
        return self


def initial_student(rng: np.random.Generator, width: int, d: int, scale: float,
                    a_value: float) -> tuple[np.ndarray, np.ndarray]:
    """(a, W0): random signs of size a_value, rows scale * N(0, I_d / d) (float64)."""
    signs = rng.choice(np.array([-1.0, 1.0]), size=width)
    W0 = scale * rng.standard_normal((width, d)) / math.sqrt(d)
    return a_value * signs, W0


def target_parts(engine: Engine, activation: str, a_star: np.ndarray,
                 W_star: np.ndarray) -> tuple[Any, np.ndarray]:
    """(c, b): the constant E[f*] and the linear coefficient E[x f*] of the teacher."""
    mo = moments(engine, activation)
    with engine.context():
        norms = engine.sqrt((W_star * W_star).sum(axis=1))
        c = mo["m0"] * (a_star * norms).sum()
        b = mo["m1"] * (a_star[:, None] * W_star).sum(axis=0)
    return c, b


def stage1_gradient(engine: Engine, activation: str, a: np.ndarray, W: np.ndarray,
                    a_star: np.ndarray, W_star: np.ndarray, variant: str) -> np.ndarray:
    """Exact population gradient in W of the stage-1 objective (see the module docstring)."""
    if variant not in VARIANTS:
        raise CheckerError(f"stage-1 variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    with engine.context():
        ev = objective.evaluate(engine, activation, a, W, a_star, W_star, engine.scalar(0))
        G = ev.loss_grad_W
        if variant == "plain":
            return G
        mo = moments(engine, activation)
        c, b = target_parts(engine, activation, a_star, W_star)
        norms = engine.sqrt((W * W).sum(axis=1))
        nonzero = np.array([bool(n > 0) for n in norms])
        U = W / np.where(nonzero, norms, 1)[:, None]
        corr = 2 * a[:, None] * (c * mo["e1"] * U + mo["e2"] * b[None, :])
        # sigma'(0) = 0 convention at w_j = 0, as in checker.core.objective
        return G + corr * nonzero[:, None]


def run_stage1(engine: Engine, activation: str, a: np.ndarray, W0: np.ndarray, a_star: np.ndarray,
               W_star: np.ndarray, *, eta: Any, steps: int, variant: str) -> np.ndarray:
    """W after ``steps`` gradient steps of size eta on W alone (a fixed)."""
    W = W0
    with engine.context():
        for _ in range(steps):
            W = W - eta * stage1_gradient(engine, activation, a, W, a_star, W_star, variant)
    return W


def one_step_eta(engine: Engine, activation: str, a: np.ndarray, W0: np.ndarray, a_star: np.ndarray,
                 W_star: np.ndarray, ratio: float = ONE_STEP_RATIO) -> float:
    """eta1 with median_j ||eta1 G_j(W0)|| = ratio * median_j ||w0_j|| (G the centred gradient), float.

    Raises CheckerError when the gradient vanishes at the start (nothing to learn from).
    """
    G = stage1_gradient(engine, activation, a, W0, a_star, W_star, "centred")
    g = float(np.median([math.sqrt(sum(float(x) ** 2 for x in row)) for row in G]))
    w = float(np.median([math.sqrt(sum(float(x) ** 2 for x in row)) for row in W0]))
    if not (g > 0 and math.isfinite(g)):
        raise CheckerError("stage 1: the centred gradient vanishes at the start; use --variant none")
    return ratio * w / g


def span_fractions(W: np.ndarray, W_star: np.ndarray) -> np.ndarray:
    """||P w_j|| / ||w_j|| per row, P the orthogonal projector on span{w*_i} (0 for w_j = 0)."""
    Wf = np.asarray(W, dtype=float)
    Q, _ = np.linalg.qr(np.asarray(W_star, dtype=float).T)
    rank = np.linalg.matrix_rank(np.asarray(W_star, dtype=float))
    Q = Q[:, :rank]
    norms = np.linalg.norm(Wf, axis=1)
    inside = np.linalg.norm(Wf @ Q, axis=1)
    return np.where(norms > 0, inside / np.where(norms > 0, norms, 1), 0.0)


def angle_histogram(W: np.ndarray, W_star: np.ndarray, activation: str,
                    bins: int = 12) -> dict[str, list[float] | list[int]]:
    """Histogram of each neuron's angle to its nearest teacher over [0, pi] (radians)."""
    Wf = np.asarray(W, dtype=float)
    keep = np.linalg.norm(Wf, axis=1) > 0
    _, ang = nearest_teacher(np.asarray(W_star, dtype=float), Wf[keep], activation)
    counts, edges = np.histogram(ang, bins=bins, range=(0.0, math.pi))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
            "angles": [float(x) for x in ang]}


def orient(engine: Engine, activation: str, a: np.ndarray, W: np.ndarray, a_star: np.ndarray,
           W_star: np.ndarray) -> np.ndarray:
    """Each row w_j replaced by -w_j when a_j E[f*(x) sigma(<-w_j, x>)] > a_j E[f*(x) sigma(<w_j, x>)].

    The centred target sum_i a*_i (sigma - its Hermite 0 and 1 parts)(<w*_i, x>) is even in
    each w*_i for relu (relu(z) - z/2 = |z|/2), so the centred step cannot tell w*_i from
    -w*_i; the plain correlation with f* can (k(-w*_i, w*_i) = 0 < k(w*_i, w*_i)).  This
    checker's choice (reconstructed); a no-op for abs, where w and -w are one feature.
    """
    if activation == "abs":
        return W
    with engine.context():
        g_plus = objective.correlation(engine, activation, W, W_star, a_star)
        g_minus = objective.correlation(engine, activation, -W, W_star, a_star)
        flip = np.array([bool(aj * gm > aj * gp) for aj, gp, gm in zip(a, g_plus, g_minus)])
        return np.where(flip[:, None], -W, W)
