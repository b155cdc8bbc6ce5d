"""Random teachers: inputs nobody chose, for the algorithm and its study.

A random teacher (this checker's generator; every choice below is ours):

* directions: m* independent uniform points of the unit sphere S^{d-1} (a seeded
  ``numpy`` Generator), redrawn as a whole until every pair is at least ``sep``
  radians apart (for ``abs`` the angle between lines, min(phi, pi - phi)); at most
  ``max_draws`` draws, then a ``CheckerError`` saying that the separation was not
  met.  A separation that no m* directions of R^d can have is refused at once:
  more than pi/2 for ``abs`` lines, more than arccos(-1/(m*-1)) (the regular
  simplex) for relu rays.
* output weights: magnitudes uniform in [A_LOW, A_HIGH]; signs mixed: the first
  teacher is positive, the second negative, the others random signs.

Text form (``python -m checker.algorithm --teachers SPEC``)::

    random:mstar=3,d=6,sep=0.6,seed=1,count=5[,activation=relu]

``mstar`` >= 1 and ``d`` >= 2 whole numbers, ``sep`` in (0, pi] radians, ``seed``
in 0..2^32-1, ``count`` in 1..MAX_COUNT; the count-th teacher is drawn from seed
``seed + k`` (k = 0..count-1), so a teacher is reproducible on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from checker.core.errors import CheckerError
from checker.core.model import Instance

#: Range of the teachers' output-weight magnitudes.
A_LOW, A_HIGH = 0.5, 1.5
#: Default number of whole-set draws before the separation is declared unmet.
MAX_DRAWS = 10_000
#: Largest count of one specification (a study of more teachers gives several specs).
MAX_COUNT = 1000
#: Largest m* and d of the generator (beyond them the exact objective is not the bottleneck
#: of a run, but a typo such as d=1000000 would allocate before failing).
MAX_MSTAR, MAX_D = 64, 1000
MAX_SEED = 2**32 - 1
SPEC_KEYS = ("mstar", "d", "sep", "seed", "count", "activation")
SPEC_EXAMPLE = "random:mstar=3,d=6,sep=0.6,seed=1,count=5"


def max_separation(m_star: int, d: int, activation: str) -> float:
    """An upper bound on the separation m* directions (relu rays) or lines (abs) of R^d can have.

    Lines: pi/2.  Rays: arccos(-1/(m*-1)) for m* <= d + 1 (the regular simplex, attained);
    pi/2 beyond (more than d + 1 vectors cannot have pairwise negative inner products).
    """
    if m_star <= 1:
        return math.pi
    if activation == "abs":
        return math.pi / 2
    if m_star <= d + 1:
        return math.acos(-1.0 / (m_star - 1))
    return math.pi / 2


def _min_angle(U: np.ndarray, activation: str) -> float:
    G = np.clip(U @ U.T, -1.0, 1.0)
    if activation == "abs":
        G = np.abs(G)
    iu = np.triu_indices(len(U), 1)
    return float(np.arccos(G[iu].max())) if len(U) > 1 else math.pi


def random_teacher(m_star: int, d: int, sep: float, seed: int, *, activation: str = "relu",
                   max_draws: int = MAX_DRAWS, name: str | None = None) -> Instance:
    """One random teacher (an Instance with a zero placeholder student, as ``teacher_instance``)."""
    for key, v, low, high in (("mstar", m_star, 1, MAX_MSTAR), ("d", d, 2, MAX_D), ("seed", seed, 0, MAX_SEED)):
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise CheckerError(f"random teacher: {key} must be a whole number from {low} to {high}, got {v!r}")
    if isinstance(sep, bool) or not isinstance(sep, (int, float)) or not (0 < sep <= math.pi):
        raise CheckerError(f"random teacher: sep must be an angle in radians, 0 < sep <= pi, got {sep!r}")
    if activation not in ("relu", "abs"):
        raise CheckerError(f"random teacher: activation must be relu or abs, got {activation!r}")
    top = max_separation(m_star, d, activation)
    if sep > top + 1e-12:
        raise CheckerError(f"random teacher: no {m_star} {'lines' if activation == 'abs' else 'directions'} "
                           f"of R^{d} are {sep:g} rad apart (at most {top:.4g} rad); lower sep")
    rng = np.random.default_rng(seed)
    for _ in range(max_draws):
        U = rng.standard_normal((m_star, d))
        U /= np.linalg.norm(U, axis=1)[:, None]
        if _min_angle(U, activation) >= sep:
            break
    else:
        raise CheckerError(f"random teacher: separation {sep:g} rad not met by {m_star} random directions in "
                           f"d = {d} after {max_draws} draws (seed {seed}); lower sep or raise d")
    mags = rng.uniform(A_LOW, A_HIGH, m_star)
    signs = np.where(rng.random(m_star) < 0.5, -1.0, 1.0)
    signs[0] = 1.0
    if m_star >= 2:
        signs[1] = -1.0
    a = mags * signs
    label = name or f"random-mstar{m_star}-d{d}-sep{sep:g}-seed{seed}"
    # decimal strings of the float64 numbers; the engines normalize the rows at their precision
    return Instance.create(activation=activation, teacher_a=[repr(float(x)) for x in a],
                           teacher_W=[[repr(float(x)) for x in r] for r in U], student_a=["0"],
                           student_W=[["0"] * d], lam="0", name=label, normalize_teacher=True)


@dataclass(frozen=True)
class TeacherSpec:
    """A parsed ``random:...`` specification."""

    m_star: int
    d: int
    sep: float
    seed: int
    count: int = 1
    activation: str = "relu"

    def text(self) -> str:
        return (f"random:mstar={self.m_star},d={self.d},sep={self.sep:g},seed={self.seed},count={self.count}"
                + (f",activation={self.activation}" if self.activation != "relu" else ""))

    def teachers(self, max_draws: int = MAX_DRAWS) -> list[Instance]:
        return [random_teacher(self.m_star, self.d, self.sep, self.seed + k, activation=self.activation,
                               max_draws=max_draws) for k in range(self.count)]


def _whole(key: str, text: str, low: int, high: int) -> int:
    if not text.isdigit():
        raise CheckerError(f"--teachers: {key}={text!r} is not a whole number ({low} to {high})")
    v = int(text)
    if not low <= v <= high:
        raise CheckerError(f"--teachers: {key}={v} is out of range ({low} to {high})")
    return v


def parse_spec(text: Any) -> TeacherSpec:
    """``random:mstar=M,d=D,sep=S,seed=K,count=N[,activation=A]`` -> TeacherSpec (one-line errors)."""
    if not isinstance(text, str) or len(text) > 200:
        raise CheckerError(f"--teachers: expected text such as {SPEC_EXAMPLE!r}")
    kind, colon, params = text.strip().partition(":")
    if kind.strip() != "random" or not colon:
        raise CheckerError(f"--teachers: expected 'random:...', e.g. {SPEC_EXAMPLE!r}, got {text!r}")
    values: dict[str, str] = {}
    for item in params.split(","):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or key not in SPEC_KEYS:
            raise CheckerError(f"--teachers: bad parameter {item.strip()!r}; expected {', '.join(SPEC_KEYS)} "
                               f"as key=value (e.g. {SPEC_EXAMPLE!r})")
        if key in values:
            raise CheckerError(f"--teachers: {key} given twice")
        values[key] = value
    missing = [k for k in ("mstar", "d", "sep") if k not in values]
    if missing:
        raise CheckerError(f"--teachers: {missing[0]}= is missing (e.g. {SPEC_EXAMPLE!r})")
    m_star = _whole("mstar", values["mstar"], 1, MAX_MSTAR)
    d = _whole("d", values["d"], 2, MAX_D)
    seed = _whole("seed", values.get("seed", "0"), 0, MAX_SEED)
    count = _whole("count", values.get("count", "1"), 1, MAX_COUNT)
    try:
        sep = float(values["sep"])
    except ValueError:
        raise CheckerError(f"--teachers: sep={values['sep']!r} is not a number (radians)") from None
    if not (math.isfinite(sep) and 0 < sep <= math.pi):
        raise CheckerError(f"--teachers: sep={values['sep']} must be an angle in radians, 0 < sep <= pi")
    activation = values.get("activation", "relu")
    if activation not in ("relu", "abs"):
        raise CheckerError(f"--teachers: activation={activation!r}; expected relu or abs")
    top = max_separation(m_star, d, activation)
    if sep > top + 1e-12:
        raise CheckerError(f"--teachers: no {m_star} {'lines' if activation == 'abs' else 'directions'} of R^{d} "
                           f"are {sep:g} rad apart (at most {top:.4g} rad); lower sep")
    if seed + count - 1 > MAX_SEED:
        raise CheckerError(f"--teachers: seeds {seed}..{seed + count - 1} exceed {MAX_SEED}")
    return TeacherSpec(m_star, d, sep, seed, count, activation)
