"""Hypothesis strategies for the teacher-student problem, valid by construction.

Every strategy here is a public function with keyword-only parameters that are
validated when the strategy is built (``InvalidArgument`` on a bad parameter,
e.g. a minimum above its maximum), returning a named ``@st.composite``
strategy.  Nothing is filtered after the fact: each construction meets its
parameters by design.

* ``teachers``: unit teacher neurons with separation >= Delta, built from a
  randomly rotated orthonormal frame (optionally with opposite rays for relu),
  an equiangular cone (every pairwise angle equal to a drawn value >= Delta), or
  points on a great circle whose gaps are all >= Delta; |a*_i| in
  [a_min, a_max] with the requested signs.
* ``near_students``: a student around the lambda-optimum of the teacher: each
  teacher neuron split into a few neurons rotated by at most ``max_angle``,
  masses summing to the reference mass within a relative error, layers
  unbalanced by a bounded factor, plus a few small neurons anywhere.
* ``random_students``: a student anywhere (norms and output weights in range).
* ``lambdas``, ``step_sizes`` (decimal strings, log-uniform) and ``precisions``.
* ``instances``: all of the above assembled into a ``checker.core.model.Instance``;
  ``single_teacher_optimum`` builds the exact lambda-optimum of one teacher.

Random orientations come from a numpy generator seeded by a drawn integer
(random rotations and orthogonal directions, which would otherwise need
rejection); every scalar the properties depend on (angles, masses, imbalance,
signs, sizes) is drawn by Hypothesis directly, so shrinking and ``target``
act on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Sequence

import mpmath
import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from checker.core.kernel import ACTIVATIONS, kappa_at_one
from checker.core.model import Instance

SIGNS = ("mixed", "positive", "negative")
CONSTRUCTIONS = ("frame", "cone", "circle")

#: Angles are built with this relative margin above Delta, so that rounding the
#: unit vectors to float64 (relative error ~1e-16) cannot bring any pairwise
#: angle below Delta.
_ANGLE_MARGIN = 1e-9
#: Smallest Delta accepted: well above the model's duplicate-direction threshold.
MIN_DELTA = 1e-6


# --------------------------------------------------------------------- records
@dataclass(frozen=True)
class Teacher:
    """A teacher drawn by ``teachers``: numbers as decimal strings."""

    activation: str
    a: tuple[str, ...]
    W: tuple[tuple[str, ...], ...]
    construction: str
    delta: float  # the separation the teacher was built to satisfy

    @property
    def d(self) -> int:
        return len(self.W[0])

    @property
    def m_star(self) -> int:
        return len(self.a)

    def a_array(self) -> np.ndarray:
        return np.array([float(x) for x in self.a])

    def W_array(self) -> np.ndarray:
        return np.array([[float(x) for x in r] for r in self.W])


@dataclass(frozen=True)
class Student:
    """A student drawn by ``near_students`` or ``random_students``.

    ``assignment[j]`` is the teacher index neuron j was built around, or -1 for
    a small neuron in a free direction (and for every neuron of a random student).
    """

    a: tuple[str, ...]
    W: tuple[tuple[str, ...], ...]
    assignment: tuple[int, ...]

    @property
    def m(self) -> int:
        return len(self.a)


# --------------------------------------------------------------------- helpers
def _num(x: float) -> str:
    """A float as the decimal string that reads back to the same float."""
    return repr(float(x))


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArgument(message)


def _check_int(name: str, value: Any, low: int) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an int, got {value!r}")
    _check(value >= low, f"{name} must be >= {low}, got {value}")


def _check_real(name: str, value: Any) -> float:
    _check(isinstance(value, (int, float)) and not isinstance(value, bool), f"{name} must be a number, got {value!r}")
    _check(math.isfinite(value), f"{name} must be finite, got {value!r}")
    return float(value)


def _check_range(lo_name: str, lo: float, hi_name: str, hi: float) -> None:
    _check(lo <= hi, f"{lo_name}={lo} must be <= {hi_name}={hi}")


def _activations(activation: str | None) -> tuple[str, ...]:
    if activation is None:
        return ACTIVATIONS
    _check(activation in ACTIVATIONS, f"activation must be one of {ACTIVATIONS} or None, got {activation!r}")
    return (activation,)


def _rotation(seed: int, d: int) -> np.ndarray:
    """A Haar-random orthogonal d x d matrix from a seeded generator."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))[None, :]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _circle_capacity(activation: str, delta: float) -> int:
    """How many points a great circle holds with every gap >= delta (with margin)."""
    period = 2 * math.pi if activation == "relu" else math.pi
    return max(1, int(period // (delta * (1 + _ANGLE_MARGIN))))


def _feasible_constructions(activation: str, d: int, m_star: int, delta: float) -> list[str]:
    out = []
    frame_size = 2 * d if activation == "relu" else d
    # frame and cone angles are at most pi/2; after rounding to float64 they may land just
    # below pi/2, so they serve a Delta only up to pi/2 less the margin
    right_angle_ok = delta * (1 + _ANGLE_MARGIN) <= math.pi / 2
    if m_star <= frame_size and right_angle_ok:
        out.append("frame")
    if m_star <= d and right_angle_ok:
        out.append("cone")
    if m_star <= _circle_capacity(activation, delta):
        out.append("circle")
    return out


def _log_uniform(draw: Any, lo: float, hi: float) -> float:
    if lo == hi:
        return lo
    e = draw(st.floats(math.log(lo), math.log(hi)))
    return min(max(math.exp(e), lo), hi)


# --------------------------------------------------------------------- scalars
def _decimal_in(lo: float, hi: float, digits: int = 6) -> st.SearchStrategy[str]:
    @st.composite
    def draw_decimal(draw: Any) -> str:
        v = _log_uniform(draw, lo, hi)
        s = f"{v:.{digits}g}"
        # rounding to `digits` digits may step just outside [lo, hi]
        return s if lo <= float(s) <= hi else _num(v)

    return draw_decimal()


def lambdas(*, min_value: float = 1e-3, max_value: float = 0.1) -> SearchStrategy[str]:
    """Weight decay lambda, log-uniform in [min_value, max_value], as a decimal string."""
    lo, hi = _check_real("min_value", min_value), _check_real("max_value", max_value)
    _check(lo > 0, f"min_value must be > 0, got {lo}")
    _check_range("min_value", lo, "max_value", hi)
    return _decimal_in(lo, hi)


def step_sizes(*, min_value: float = 1e-3, max_value: float = 0.2) -> SearchStrategy[str]:
    """Step size eta, log-uniform in [min_value, max_value], as a decimal string."""
    lo, hi = _check_real("min_value", min_value), _check_real("max_value", max_value)
    _check(lo > 0, f"min_value must be > 0, got {lo}")
    _check_range("min_value", lo, "max_value", hi)
    return _decimal_in(lo, hi)


def precisions(*, min_dps: int = 30, max_dps: int = 50) -> SearchStrategy[int]:
    """Decimal digits for the mp engine."""
    _check_int("min_dps", min_dps, 5)
    _check_int("max_dps", max_dps, 5)
    _check_range("min_dps", min_dps, "max_dps", max_dps)
    return st.integers(min_dps, max_dps)


# --------------------------------------------------------------------- teachers
def teachers(
    *,
    activation: str | None = None,
    min_d: int = 2,
    max_d: int = 4,
    min_m_star: int = 1,
    max_m_star: int = 3,
    min_separation: float = 0.3,
    a_min: float = 0.5,
    a_max: float = 2.0,
    signs: str = "mixed",
    constructions: Sequence[str] = CONSTRUCTIONS,
) -> SearchStrategy[Teacher]:
    """Unit teacher neurons with separation >= ``min_separation`` (radians, Delta).

    For ``abs`` the separation is between lines (w and -w are one feature).
    m* is drawn in [min_m_star, max_m_star] capped by what the drawn d and Delta
    allow; the parameters must allow min_m_star at d = min_d.  Frame and cone
    teachers serve Delta < pi/2 (their angles are pi/2 or less); a larger Delta
    is served by circles.
    """
    acts = _activations(activation)
    _check_int("min_d", min_d, 2)
    _check_int("max_d", max_d, 2)
    _check_range("min_d", min_d, "max_d", max_d)
    _check_int("min_m_star", min_m_star, 1)
    _check_int("max_m_star", max_m_star, 1)
    _check_range("min_m_star", min_m_star, "max_m_star", max_m_star)
    delta = _check_real("min_separation", min_separation)
    _check(MIN_DELTA <= delta <= math.pi, f"min_separation must be in [{MIN_DELTA}, pi], got {delta}")
    lo, hi = _check_real("a_min", a_min), _check_real("a_max", a_max)
    _check(lo > 0, f"a_min must be > 0, got {lo}")
    _check_range("a_min", lo, "a_max", hi)
    _check(signs in SIGNS, f"signs must be one of {SIGNS}, got {signs!r}")
    cons = tuple(constructions)
    _check(len(cons) > 0 and all(c in CONSTRUCTIONS for c in cons),
           f"constructions must be a non-empty subset of {CONSTRUCTIONS}, got {constructions!r}")
    for act in acts:
        ok = [c for c in _feasible_constructions(act, min_d, min_m_star, delta) if c in cons]
        _check(bool(ok), f"no construction in {cons} places {min_m_star} {act} teacher neurons in d={min_d} "
                         f"with separation {delta}")
    return _teachers(acts, min_d, max_d, min_m_star, max_m_star, delta, lo, hi, signs, cons)


@st.composite
def _teachers(draw: Any, acts: tuple[str, ...], min_d: int, max_d: int, min_m_star: int, max_m_star: int,
              delta: float, a_min: float, a_max: float, signs: str, cons: tuple[str, ...]) -> Teacher:
    act = draw(st.sampled_from(acts))
    d = draw(st.integers(min_d, max_d))
    # the largest m* in range that some allowed construction can place (min_m_star can: validated)
    cap = max(m for m in range(min_m_star, max_m_star + 1)
              if any(c in cons for c in _feasible_constructions(act, d, m, delta)))
    m_star = draw(st.integers(min_m_star, cap))
    feasible = [c for c in _feasible_constructions(act, d, m_star, delta) if c in cons]
    construction = draw(st.sampled_from(feasible))
    target = delta * (1 + _ANGLE_MARGIN)
    if construction == "frame":
        # distinct signed axes (relu: +e_k and -e_k are different directions)
        axes = [(k, s) for k in range(d) for s in ((1, -1) if act == "relu" else (1,))]
        picked = draw(st.permutations(axes))[:m_star]
        base = np.zeros((m_star, d))
        for i, (k, s) in enumerate(picked):
            base[i, k] = s
    elif construction == "cone":
        # u_i = e_i + c 1 (first m* axes): every pairwise cosine is t = (2c + m c^2)/(1 + 2c + m c^2)
        angle = draw(st.floats(min(target, math.pi / 2), math.pi / 2))
        t = max(math.cos(angle), 0.0)
        c = 0.0 if t == 0 else (-(1 - t) + math.sqrt((1 - t) ** 2 + m_star * t * (1 - t))) / (m_star * (1 - t))
        base = np.zeros((m_star, d))
        base[:, :m_star] = np.eye(m_star) + c
    else:
        period = 2 * math.pi if act == "relu" else math.pi
        slack = max(period - m_star * target, 0.0)
        weights = [draw(st.floats(0.0, 1.0)) for _ in range(m_star)]
        total = sum(weights)
        fractions = [w / total for w in weights] if total > 0 else [1.0 / m_star] * m_star
        gaps = [target + slack * f for f in fractions]
        theta0 = draw(st.floats(0.0, period))
        thetas = theta0 + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
        base = np.zeros((m_star, d))
        base[:, 0], base[:, 1] = np.cos(thetas), np.sin(thetas)
    Q = _rotation(draw(st.integers(0, 2**32 - 1)), d)
    W = np.array([_unit(Q @ row) for row in base])
    mags = [draw(st.floats(a_min, a_max)) for _ in range(m_star)]
    if signs == "positive":
        sg = [1] * m_star
    elif signs == "negative":
        sg = [-1] * m_star
    else:
        sg = [draw(st.sampled_from((1, -1))) for _ in range(m_star)]
    return Teacher(act, tuple(_num(s * x) for s, x in zip(sg, mags)),
                   tuple(tuple(_num(x) for x in row) for row in W), construction, delta)


# --------------------------------------------------------------------- students
def reference_mass(a_star: float, lam: float, activation: str) -> float:
    """Signed mass the student puts near a teacher neuron (the lambda-optimum for m* = 1).

    For a single teacher the optimum is s = a* - lam sign(a*) / (2 kappa(0))
    (relu: a* - lam sign(a*)); it is floored at |a*|/2 so that it never vanishes
    when lambda is large against |a*|.
    """
    shrink = lam / (2 * kappa_at_one(activation))
    return math.copysign(max(abs(a_star) - shrink, abs(a_star) / 2), a_star)


NEAR_DEFAULTS: dict[str, Any] = dict(
    max_angle=0.1, max_mass_error=0.1, max_split=2, max_small=1, small_mass=0.05,
    max_imbalance=1.5, zero_neuron=False,
)


def _validate_near(max_angle: float, max_mass_error: float, max_split: int, max_small: int,
                   small_mass: float, max_imbalance: float, zero_neuron: bool) -> None:
    ang = _check_real("max_angle", max_angle)
    _check(0 <= ang <= math.pi, f"max_angle must be in [0, pi], got {ang}")
    err = _check_real("max_mass_error", max_mass_error)
    _check(0 <= err < 1, f"max_mass_error must be in [0, 1), got {err}")
    _check_int("max_split", max_split, 1)
    _check_int("max_small", max_small, 0)
    sm = _check_real("small_mass", small_mass)
    _check(sm >= 0, f"small_mass must be >= 0, got {sm}")
    imb = _check_real("max_imbalance", max_imbalance)
    _check(imb >= 1, f"max_imbalance must be >= 1, got {imb}")
    _check(isinstance(zero_neuron, bool), f"zero_neuron must be a bool, got {zero_neuron!r}")


def near_students(*, teacher: Teacher, lam: str | float, max_angle: float = 0.1, max_mass_error: float = 0.1,
                  max_split: int = 2, max_small: int = 1, small_mass: float = 0.05,
                  max_imbalance: float = 1.5, zero_neuron: bool = False) -> SearchStrategy[Student]:
    """A student around the teacher's lambda-optimum.

    Teacher neuron i is split into 1..max_split neurons, each at angle
    <= max_angle from w*_i (for abs, possibly on the opposite ray of the same
    line), with the sign of a*_i and masses summing to
    reference_mass(a*_i) * (1 + e_i), |e_i| <= max_mass_error.  Each neuron is
    unbalanced by a factor gamma in [1/max_imbalance, max_imbalance]
    (a_j = +-sqrt(mu_j) gamma, ||w_j|| = sqrt(mu_j) / gamma).  Then 0..max_small
    neurons of total mass <= small_mass in free directions, and optionally one
    zero-norm neuron.  Neurons come in a drawn order.
    """
    _check(isinstance(teacher, Teacher), f"teacher must be a Teacher, got {type(teacher).__name__}")
    lam_f = _check_real("lam", float(lam))
    _check(lam_f >= 0, f"lam must be >= 0, got {lam_f}")
    _validate_near(max_angle, max_mass_error, max_split, max_small, small_mass, max_imbalance, zero_neuron)
    return _near_students(teacher, lam_f, float(max_angle), float(max_mass_error), max_split, max_small,
                          float(small_mass), float(max_imbalance), zero_neuron)


@st.composite
def _near_students(draw: Any, teacher: Teacher, lam: float, max_angle: float, max_mass_error: float,
                   max_split: int, max_small: int, small_mass: float, max_imbalance: float,
                   zero_neuron: bool) -> Student:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a_star, W_star = teacher.a_array(), teacher.W_array()
    d = teacher.d
    a_out: list[float] = []
    W_out: list[np.ndarray] = []
    assign: list[int] = []

    def add(mass: float, sign: float, direction: np.ndarray, owner: int) -> None:
        gamma = _log_uniform(draw, 1 / max_imbalance, max_imbalance)
        a_out.append(sign * math.sqrt(mass) * gamma)
        W_out.append(direction * (math.sqrt(mass) / gamma))
        assign.append(owner)

    for i in range(teacher.m_star):
        s_ref = reference_mass(a_star[i], lam, teacher.activation)
        err = draw(st.floats(-max_mass_error, max_mass_error))
        k = draw(st.integers(1, max_split))
        weights = [draw(st.floats(0.1, 1.0)) for _ in range(k)]
        for wgt in weights:
            mass = abs(s_ref) * (1 + err) * wgt / sum(weights)
            angle = draw(st.floats(0.0, max_angle))
            z = rng.standard_normal(d)
            z = _unit(z - (z @ W_star[i]) * W_star[i])
            direction = _unit(math.cos(angle) * W_star[i] + math.sin(angle) * z)
            if teacher.activation == "abs" and draw(st.booleans()):
                direction = -direction
            add(mass, math.copysign(1.0, s_ref), direction, i)
    n_small = draw(st.integers(0, max_small)) if small_mass > 0 else 0
    for _ in range(n_small):
        # strictly positive, so that a small neuron is never a zero-norm one
        mass = small_mass / n_small * draw(st.floats(1e-6, 1.0))
        add(mass, draw(st.sampled_from((1.0, -1.0))), _unit(rng.standard_normal(d)), -1)
    if zero_neuron:
        a_out.append(draw(st.floats(-1.0, 1.0)))
        W_out.append(np.zeros(d))
        assign.append(-1)
    order = draw(st.permutations(range(len(a_out))))
    return Student(tuple(_num(a_out[j]) for j in order),
                   tuple(tuple(_num(x) for x in W_out[j]) for j in order),
                   tuple(assign[j] for j in order))


def random_students(*, d: int, min_m: int = 1, max_m: int = 4, min_norm: float = 0.2, max_norm: float = 2.0,
                    a_max: float = 2.0) -> SearchStrategy[Student]:
    """A student anywhere: ||w_j|| in [min_norm, max_norm], a_j in [-a_max, a_max]."""
    _check_int("d", d, 2)
    _check_int("min_m", min_m, 1)
    _check_int("max_m", max_m, 1)
    _check_range("min_m", min_m, "max_m", max_m)
    lo, hi = _check_real("min_norm", min_norm), _check_real("max_norm", max_norm)
    _check(lo > 0, f"min_norm must be > 0, got {lo}")
    _check_range("min_norm", lo, "max_norm", hi)
    am = _check_real("a_max", a_max)
    _check(am > 0, f"a_max must be > 0, got {am}")
    return _random_students(d, min_m, max_m, lo, hi, am)


@st.composite
def _random_students(draw: Any, d: int, min_m: int, max_m: int, min_norm: float, max_norm: float,
                     a_max: float) -> Student:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m = draw(st.integers(min_m, max_m))
    W = [_unit(rng.standard_normal(d)) * draw(st.floats(min_norm, max_norm)) for _ in range(m)]
    a = [draw(st.floats(-a_max, a_max)) for _ in range(m)]
    return Student(tuple(_num(x) for x in a), tuple(tuple(_num(x) for x in w) for w in W), (-1,) * m)


# --------------------------------------------------------------------- exact optimum
def single_teacher_optimum(t_a: str, t_W: tuple, activation: str, lam: str, dps: int) -> tuple[Instance, Any]:
    """(instance at the exact lambda-optimum of one teacher, L*_lambda) at dps + 10 digits.

    m* = 1: the optimum puts signed mass s = a* - lam sign(a*) / (2 kappa(0)) on w* (relu:
    a* - lam sign(a*)), balanced, and L*_lambda = lam |a*| - lam^2 / (4 kappa(0)) (relu:
    lam |a*| - lam^2 / 2; docs/formalization.md), from minimizing kappa(0)(s - a*)^2 + lam |s|.  The teacher's
    decimal strings have unit norm only to ~1e-16, so the instance asks the engine to normalize them
    (normalize_teacher) and the optimum is built on the same unit vector.
    """
    k0 = kappa_at_one(activation)
    with mpmath.workdps(dps + 10):
        a_star = mpmath.mpf(t_a)
        lam_m = mpmath.mpf(lam)
        sgn = 1 if a_star > 0 else -1
        s = a_star - lam_m * sgn / (2 * k0)
        opt = lam_m * abs(a_star) - lam_m**2 / (4 * k0)
        root = mpmath.sqrt(abs(s))
        w_star = [mpmath.mpf(x) for x in t_W]
        n_star = mpmath.sqrt(mpmath.fsum(x * x for x in w_star))
        w = [root * x / n_star for x in w_star]
        a0 = sgn * root
        if not abs(a_star) * 2 * k0 > lam_m:
            raise ValueError(f"|a*| = {t_a} <= lambda / (2 kappa(0)): the optimum is the zero network")
    inst = Instance.create(activation=activation, teacher_a=[t_a], teacher_W=[t_W], student_a=[a0],
                           student_W=[w], lam=lam, normalize_teacher=True)
    return inst, opt


# --------------------------------------------------------------------- instances
def instances(
    *,
    teacher: SearchStrategy[Teacher] | None = None,
    student: str = "near",
    student_options: Mapping[str, Any] | None = None,
    lam: SearchStrategy[str] | None = None,
    eta: SearchStrategy[str] | None = None,
) -> SearchStrategy[Instance]:
    """A validated ``Instance``: a drawn teacher, lambda, optional eta, and a student.

    ``student`` is "near" (``near_students``) or "random" (``random_students``);
    ``student_options`` are that strategy's keyword parameters (teacher, lambda
    and d are supplied here).
    """
    _check(student in ("near", "random"), f"student must be 'near' or 'random', got {student!r}")
    opts = dict(student_options or {})
    for name, s in (("teacher", teacher), ("lam", lam), ("eta", eta)):
        _check(s is None or isinstance(s, SearchStrategy), f"{name} must be a strategy or None")
    if student == "near":
        unknown = set(opts) - set(NEAR_DEFAULTS)
        _check(not unknown, f"unknown near_students options {sorted(unknown)}")
        _validate_near(**{**NEAR_DEFAULTS, **opts})
    else:
        allowed = {"min_m", "max_m", "min_norm", "max_norm", "a_max"}
        unknown = set(opts) - allowed
        _check(not unknown, f"unknown random_students options {sorted(unknown)}")
        random_students(d=2, **opts)  # validates the options
    return _instances(teacher if teacher is not None else teachers(), student, opts,
                      lam if lam is not None else lambdas(), eta)


@st.composite
def _instances(draw: Any, teacher_s: SearchStrategy[Teacher], student: str, opts: dict[str, Any],
               lam_s: SearchStrategy[str], eta_s: SearchStrategy[str] | None) -> Instance:
    t = draw(teacher_s)
    lam = draw(lam_s)
    if student == "near":
        s = draw(near_students(teacher=t, lam=lam, **opts))
    else:
        s = draw(random_students(d=t.d, **opts))
    return Instance.create(activation=t.activation, teacher_a=t.a, teacher_W=t.W, student_a=s.a,
                           student_W=s.W, lam=lam, eta=None if eta_s is None else draw(eta_s),
                           name=f"hypothesis-{t.construction}")


# --------------------------------------------------------------------- exact numbers (rounding tests)
def non_decimal_fractions(*, max_exponent: int = 40, max_bits: int = 200) -> SearchStrategy[Fraction]:
    """Non-zero rationals that no finite decimal string equals (denominator with a prime factor
    other than 2 and 5), of either sign, magnitudes from about 10^-max_exponent to 10^max_exponent."""
    _check_int("max_exponent", max_exponent, 0)
    _check_int("max_bits", max_bits, 8)
    return _non_decimal_fractions(max_exponent, max_bits)


@st.composite
def _non_decimal_fractions(draw: Any, max_exponent: int, max_bits: int) -> Fraction:
    num = draw(st.integers(1, 2**max_bits))
    odd = draw(st.sampled_from((3, 7, 11, 13, 3 * 7, 997, 2**31 - 1)))
    # a power of ten times num / odd; num is made coprime to odd so the factor stays
    while math.gcd(num, odd) != 1:
        num += 1
    sign = draw(st.sampled_from((1, -1)))
    exp = draw(st.integers(-max_exponent, max_exponent))
    return sign * Fraction(num, odd) * Fraction(10) ** exp


def dyadic_balls(*, max_exponent: int = 200, max_bits: int = 120) -> SearchStrategy[tuple[Fraction, Fraction]]:
    """(mid, rad) of an Arb ball as exact dyadic Fractions: mid of either sign (or 0), rad >= 0 from
    exactly 0 through tiny (far below the mid's last bit) to wider than |mid|."""
    _check_int("max_exponent", max_exponent, 1)
    _check_int("max_bits", max_bits, 2)
    return _dyadic_balls(max_exponent, max_bits)


@st.composite
def _dyadic_balls(draw: Any, max_exponent: int, max_bits: int) -> tuple[Fraction, Fraction]:
    man = draw(st.integers(-2**max_bits, 2**max_bits))
    exp = draw(st.integers(-max_exponent, max_exponent // 4))
    mid = Fraction(man) * Fraction(2) ** exp
    kind = draw(st.sampled_from(("zero", "tiny", "relative", "wide")))
    if kind == "zero":
        return mid, Fraction(0)
    rman = draw(st.integers(1, 2**30 - 1))  # Arb radii carry 30 bits
    scale = max(abs(man), 1).bit_length() + exp  # about log2 |mid|
    shift = {"tiny": draw(st.integers(max_bits + 10, max_bits + 80)),
             "relative": draw(st.integers(1, max_bits)),
             "wide": draw(st.integers(-20, 0))}[kind]
    return mid, Fraction(rman) * Fraction(2) ** (scale - shift - 30)


# --------------------------------------------------------------------- early stage
@dataclass(frozen=True)
class Stage1Setting:
    """A stage-1 start: width, seed, initial scale, output-weight size."""

    width: int
    seed: int
    scale: float
    a_value: float


def stage1_settings(*, min_width: int = 1, max_width: int = 6, min_scale: float = 1e-9,
                    max_scale: float = 1e-2) -> SearchStrategy[Stage1Setting]:
    """A seeded small random start for ``checker.stages.stage1.initial_student``."""
    _check_int("min_width", min_width, 1)
    _check_int("max_width", max_width, 1)
    _check_range("min_width", min_width, "max_width", max_width)
    lo, hi = _check_real("min_scale", min_scale), _check_real("max_scale", max_scale)
    _check(lo > 0, f"min_scale must be > 0, got {lo}")
    _check_range("min_scale", lo, "max_scale", hi)
    return _stage1_settings(min_width, max_width, lo, hi)


@st.composite
def _stage1_settings(draw: Any, min_width: int, max_width: int, lo: float, hi: float) -> Stage1Setting:
    return Stage1Setting(draw(st.integers(min_width, max_width)), draw(st.integers(0, 2**32 - 1)),
                         _log_uniform(draw, lo, hi), _log_uniform(draw, 1e-3, 1.0))


def near_optimal_instances(*, max_d: int = 3, max_m_star: int = 3, min_separation: float = 0.8,
                           spread: float = 0.3, min_lambda: float = 0.01,
                           max_lambda: float = 0.1) -> SearchStrategy[Instance]:
    """Instances whose student is near the teacher's lambda-optimum, for the local-phase constants.

    ``spread`` in (0, 1) scales every perturbation of ``near_students`` together: angles up to
    spread (rad), mass error up to spread, layers unbalanced up to 1 + 3 spread, up to two small
    neurons of total mass spread / 2.  Teachers are separated by >= min_separation (their dual
    certificate and the neighbourhoods r = Delta/3 of T1 are then well defined).
    """
    sp_ = _check_real("spread", spread)
    _check(0 < sp_ < 1, f"spread must be in (0, 1), got {sp_}")
    lo, hi = _check_real("min_lambda", min_lambda), _check_real("max_lambda", max_lambda)
    _check(lo > 0, f"min_lambda must be > 0, got {lo}")
    _check_range("min_lambda", lo, "max_lambda", hi)
    return instances(teacher=teachers(max_d=max_d, max_m_star=max_m_star, min_separation=min_separation),
                     student_options=dict(max_angle=sp_, max_mass_error=sp_, max_split=3, max_small=2,
                                          small_mass=sp_ / 2, max_imbalance=1 + 3 * sp_),
                     lam=lambdas(min_value=lo, max_value=hi))
