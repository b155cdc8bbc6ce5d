"""Perturbation families for the threshold search: one size parameter s each.

Each family maps a reference student (near the lambda-optimum) and a size
s >= 0 to a perturbed student; s = 0 gives the reference back exactly.  Which
perturbations to use is this checker's choice (grade "reconstructed": the
paper's basin is defined by a loss threshold, not by these families).

* ``rotate``  s = angle (radians): every near student neuron (within the
  neighbourhood radius of its nearest teacher) is rotated away from that
  teacher by s, in the plane spanned by the neuron and the teacher (a seeded
  orthogonal direction when the neuron is exactly on the teacher); its norm and
  output weight are kept, so its angle to the teacher becomes angle_j + s.
* ``far``     s = mass: one balanced neuron of mass s (a = sqrt(s), ||w|| =
  sqrt(s)) is added in the direction farthest from every teacher among 4096
  seeded random unit vectors.
* ``unbalance`` s = factor >= 1: a_j -> s a_j, w_j -> w_j / s for every
  neuron.  The network function, hence L, is unchanged; only the weight decay
  grows, so the gap measures the imbalance alone.
* ``split``   s = mass fraction: every near neuron with signed mass S_j is
  replaced by two collinear, balanced duplicates of signed masses (1 + s) S_j
  and -s S_j.  The function is unchanged; the total mass grows by 2 s |S_j|.
  (A split of one sign costs nothing: weight decay is 1-homogeneous and convex
  in the mass, so an uneven split with a cancelling part is the one that moves
  the objective.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from checker.core.errors import CheckerError
from ..geometry.certificate import nearest_teacher

#: Random candidates searched for the far direction of the ``far`` family.
FAR_CANDIDATES = 4096


@dataclass(frozen=True)
class Student:
    """A student (a, W) in float64 with its teacher, as the families see it."""

    activation: str
    a: np.ndarray
    W: np.ndarray
    a_star: np.ndarray
    W_star: np.ndarray  # unit rows
    radius: float


@dataclass(frozen=True)
class Family:
    name: str
    parameter: str  # what s is
    lo: float  # s with no perturbation
    hi: float  # default upper end of the searched range
    apply: Callable[[Student, float, int], tuple[np.ndarray, np.ndarray]]
    doc: str


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _orthogonal(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A seeded unit vector orthogonal to the unit vector t."""
    while True:
        v = rng.standard_normal(len(t))
        v -= (v @ t) * t
        n = np.linalg.norm(v)
        if n > 1e-8:
            return v / n


def _near(st: Student) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per neuron: nearest teacher, angle to it, and whether it is near (within the radius)."""
    norms = np.linalg.norm(st.W, axis=1)
    idx = np.zeros(len(st.W), dtype=int)
    ang = np.full(len(st.W), math.inf)
    nz = norms > 0
    if np.any(nz):
        idx[nz], ang[nz] = nearest_teacher(st.W_star, st.W[nz] / norms[nz, None], st.activation)
    return idx, ang, nz & (ang <= st.radius)


def rotate(st: Student, s: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotate every near neuron away from its nearest teacher by the angle s."""
    if s == 0:
        return st.a.copy(), st.W.copy()
    rng = np.random.default_rng(seed)
    W = st.W.copy()
    idx, ang, near = _near(st)
    for j in np.flatnonzero(near):
        r = np.linalg.norm(W[j])
        u = W[j] / r
        t = st.W_star[idx[j]]
        if st.activation == "abs" and u @ t < 0:
            t = -t  # the ray of the teacher's line on the neuron's side
        v = u - (u @ t) * t
        v = v / np.linalg.norm(v) if np.linalg.norm(v) > 1e-12 else _orthogonal(t, rng)
        phi = ang[j] + s
        W[j] = r * (math.cos(phi) * t + math.sin(phi) * v)
    return st.a.copy(), W


def far_direction(st: Student, seed: int) -> np.ndarray:
    """The seeded random unit vector farthest (largest min angle) from every teacher."""
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((FAR_CANDIDATES, st.W_star.shape[1]))
    Q /= np.linalg.norm(Q, axis=1)[:, None]
    _, ang = nearest_teacher(st.W_star, Q, st.activation)
    return Q[int(np.argmax(ang))]


def far(st: Student, s: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Add one balanced neuron of mass s in the direction farthest from the teachers."""
    if s == 0:
        return st.a.copy(), st.W.copy()
    u = far_direction(st, seed)
    r = math.sqrt(s)
    return np.append(st.a, r), np.vstack([st.W, r * u])


def unbalance(st: Student, s: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """a_j -> s a_j and w_j -> w_j / s: the same function, unbalanced layers."""
    if not s >= 1:
        raise CheckerError(f"unbalance: the factor must be >= 1, got {s}")
    return st.a * s, st.W / s


def split(st: Student, s: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each near neuron -> collinear duplicates of signed masses (1 + s) S_j and -s S_j."""
    if s == 0:
        return st.a.copy(), st.W.copy()
    _, _, near = _near(st)
    a, W = list(st.a), list(st.W)
    for j in np.flatnonzero(near):
        p, q = math.sqrt(1 + s), math.sqrt(s)
        a[j], W[j] = p * st.a[j], p * st.W[j]
        a.append(-q * st.a[j])
        W.append(q * st.W[j])
    return np.array(a), np.array(W)


FAMILIES: dict[str, Family] = {
    "rotate": Family("rotate", "rotation angle (radians)", 0.0, 3.0, rotate, rotate.__doc__ or ""),
    "far": Family("far", "mass of the added far neuron (times sum |a*_i|)", 0.0, 2.0, far, far.__doc__ or ""),
    "unbalance": Family("unbalance", "imbalance factor", 1.0, 30.0, unbalance, unbalance.__doc__ or ""),
    "split": Family("split", "mass fraction of the cancelling duplicate", 0.0, 4.0, split, split.__doc__ or ""),
}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise CheckerError(f"unknown family {name!r}; available: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def perturb(st: Student, name: str, s: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The student of family ``name`` at size s (float64 arrays a, W).

    For ``far`` the size is relative: the added mass is s times sum |a*_i|.
    """
    fam = family(name)
    if not (math.isfinite(s) and s >= fam.lo):
        raise CheckerError(f"{name}: the size must be a finite number >= {fam.lo}, got {s}")
    if name == "far":
        s = s * float(np.abs(st.a_star).sum())
    return fam.apply(st, s, seed)
