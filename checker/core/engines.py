"""Number engines: float64 (numpy) and mpmath at a chosen number of digits.

Both engines present one interface to the array code in ``checker/core/objective.py``:
numpy arrays (float64, or dtype=object holding ``mpmath.mpf``) plus the
elementwise functions sqrt, atan2, sin, cos and the constant pi.  The formulas
are written once against this interface, so the two engines cannot drift apart.

Precision in the mp engine is scoped: every computation runs inside
``engine.context()`` (``mp.workdps(dps + GUARD_DIGITS)``); the global mpmath
precision is never assigned.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import mpmath
import numpy as np
from mpmath.libmp import from_man_exp

from checker.core.errors import CheckerError

#: Guard digits carried inside the mp engine beyond the requested ``dps``; the
#: objective is a sum of O((m + m*)^2) terms of size O(1), so a few digits of
#: cancellation are lost before rounding to ``dps`` on output.
GUARD_DIGITS = 10

#: |t| = |cos phi| above which checker.core.objective computes a = ||u^ - v^|| (t > 0)
#: or b = ||u^ + v^|| (t < 0) from the difference (sum) vector instead of the Gram
#: entry.  Below it the Gram route loses at most log10(1 / (1 - ACCURATE_T)) digits
#: of relative accuracy in a, b, phi and sin phi.  Measured in float64 against 40
#: digits, pairs in d = 4, 20, 100 with 1 - |t| log-uniform in [1e-4, 1]
#: (benchmarks/bench.py, "angle_error"; runs of 3,000 and 9,000 pairs): the
#: largest relative error of phi and sin phi on the Gram route is at most 1.5e-15
#: (7 ulp) for |t| <= 0.9, against 1.7e-14 for 0.99 and 1.7e-13 for 0.999.
ACCURATE_T = 0.9

_make_mpf = mpmath.mp.make_mpf

MIN_DPS = 5
#: Largest dps: every decimal string of a run (about dps + 25 digits at most) must stay
#: below Python's int <-> str conversion limit (4300 digits by default); see
#: checker.commands.options.max_dps for interpreters with a lower limit.
MAX_DPS = 4_000


class Float64Engine:
    """numpy float64, vectorized over neuron pairs."""

    name = "float64"
    dps = 15  # decimal digits a float64 carries (for reports; not a setting)
    eps = float(np.finfo(float).eps)
    pi = math.pi
    sqrt = staticmethod(np.sqrt)
    atan2 = staticmethod(np.arctan2)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)

    #: Bytes of one number in a pair array (for the memory estimate of checker.core.objective).
    bytes_per_number = 8
    #: |cos phi| above which checker.core.objective computes the half-angle norms from vectors.
    accurate_t = ACCURATE_T

    def context(self) -> contextlib.AbstractContextManager:
        # Overflow is detected on the results (objective.evaluate raises a
        # CheckerError naming it), so numpy's warnings would only be noise.
        return np.errstate(over="ignore", invalid="ignore", under="ignore")

    @property
    def work(self) -> "Float64Engine":
        """The engine of checker.core.objective's pair arithmetic: itself."""
        return self

    def to_work(self, x: Any) -> Any:
        return x

    def from_work(self, x: Any) -> Any:
        return x

    def row_scales(self, X: np.ndarray) -> np.ndarray:
        """Per row, the power of two 2^e with max |x| in [2^(e-1), 2^e) (1 for zero rows).

        Dividing a row by it is exact and brings its squares into range, so the
        norms and unit vectors of rows from 1e-300 to 1e300 neither underflow
        nor overflow (the robust-norm scaling).
        """
        if X.shape[1] == 0:
            return np.ones(len(X))
        _, e = np.frexp(np.max(np.abs(X), axis=1))
        return np.ldexp(1.0, e)

    @staticmethod
    def all_finite(x: Any) -> bool:
        """True if every entry is finite (no overflow to inf, no nan)."""
        if np.ndim(x) == 0:
            return math.isfinite(x)
        return bool(np.all(np.isfinite(x)))

    def scalar(self, value: Any) -> float:
        x = float(value)
        if not math.isfinite(x):
            raise CheckerError(
                f"value {value} is not representable in float64 (overflow); use --engine mp"
            )
        return x

    def array(self, values: Any) -> np.ndarray:
        arr = np.asarray(values, dtype=object)
        out = np.empty(arr.shape, dtype=float)
        for idx, v in np.ndenumerate(arr):
            out[idx] = self.scalar(v)
        return out

    def zeros(self, shape: Any) -> np.ndarray:
        return np.zeros(shape, dtype=float)

    def to_str(self, x: Any) -> str:
        return repr(float(x))

    def to_float(self, x: Any) -> float:
        return float(x)

    def describe(self) -> str:
        return "float64"


class ArbWork:
    """The working numbers of the mp engine inside ``checker.core.objective``: Arb midpoints.

    python-flint ``arb`` at the mp engine's working precision (the same bits as
    ``mpmath.workdps(work_dps)``).  Arb's arithmetic, square root and atan2 run
    in C, 10-40x faster than mpmath's; the formulas of ``checker.core.objective`` and
    ``checker.core.kernel`` run unchanged on numpy arrays of arb.  Only midpoints are
    used: unit vectors are rounded to points (``point``), so rounding behaves as
    in a floating-point engine (identical rows give an exact zero difference)
    and results are returned as the ``mpmath.mpf`` of their midpoints
    (``from_work``); the radii are not a bound here (``checker.rigorous`` is
    the rigorous path).  Conversions mpf <-> arb are exact.
    """

    name = "arb-mid"
    bytes_per_number = 120
    accurate_t = ACCURATE_T

    def __init__(self, matrix_form: bool = False) -> None:
        from flint import arb, arf

        #: True: ``checker.core.objective.evaluate_work`` contracts the pair matrices with Arb
        #: matrices (``pair_matrix``; the mp engine with ``iterate="arb"``).
        self.matrix_form = matrix_form
        self._arb, self._arf = arb, arf
        self.sqrt = np.frompyfunc(arb.sqrt, 1, 1)  # unbound methods: no Python call per element
        self.atan2 = np.frompyfunc(arb.atan2, 2, 1)
        self._mid = np.frompyfunc(arb.mid, 1, 1)
        self._to = np.frompyfunc(self._to_arb, 1, 1)
        self._from = np.frompyfunc(self._to_mpf, 1, 1)

    @property
    def pi(self) -> Any:
        return self._arb.pi()  # at the caller's flint precision (MpEngine.context)

    def _to_arb(self, x: Any) -> Any:
        if isinstance(x, mpmath.mpf):
            sign, man, exp, _ = x._mpf_
            if not man:
                if exp:
                    raise CheckerError(f"cannot use the non-finite number {x}")
                return self._arb(0)
            # via arf: exact, and faster than arb((man, exp))
            return self._arb(self._arf((-int(man) if sign else int(man), int(exp))))
        return self._arb(x)  # int, float: exact

    @staticmethod
    def _to_mpf(x: Any) -> Any:
        man, exp = x.mid().man_exp()
        # exact (no rounding to the context's precision), and faster than mpf((man, exp))
        return _make_mpf(from_man_exp(int(man), int(exp)))

    def to_work(self, x: Any) -> Any:
        """mpf (scalar or object array) -> arb, exactly."""
        return self._to(x) if isinstance(x, np.ndarray) else self._to_arb(x)

    def from_work(self, x: Any) -> Any:
        """arb (scalar or object array) -> mpf of the midpoint, exactly."""
        return self._from(x) if isinstance(x, np.ndarray) else self._to_mpf(x)

    def matmul(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """X @ Y for 2-D arrays of arb, by Arb's matrix product (C) instead of numpy's object loop."""
        from flint import arb_mat

        if X.shape[0] == 0 or Y.shape[1] == 0 or X.shape[1] == 0:
            return X.dot(Y) if X.shape[1] else self.zeros((X.shape[0], Y.shape[1]))
        P = arb_mat(X.tolist()) * arb_mat(Y.tolist())
        return np.array(P.entries(), dtype=object).reshape(X.shape[0], Y.shape[1])

    def point(self, x: np.ndarray) -> np.ndarray:
        """The midpoints (radius 0) of an array of balls."""
        return self._mid(x)

    def pair_matrix(self, packed: np.ndarray, full: np.ndarray) -> Any:
        """The (n, n) Arb matrix of the midpoints of a packed pair quantity (``full``: each pair's position)."""
        from flint import arb_mat

        n = full.shape[0]
        return arb_mat(n, n, packed[full.ravel()].tolist()).mid()

    def as_matrix(self, X: np.ndarray) -> Any:
        """A 2-D array of arb as an Arb matrix of its midpoints."""
        from flint import arb_mat

        return arb_mat(X.shape[0], X.shape[1], X.ravel().tolist()).mid()

    def from_matrix(self, M: Any) -> np.ndarray:
        """An Arb matrix as a 2-D numpy array of arb."""
        out = np.empty(M.nrows() * M.ncols(), dtype=object)
        out[:] = M.entries()
        return out.reshape(M.nrows(), M.ncols())

    def zeros(self, shape: Any) -> np.ndarray:
        out = np.empty(shape, dtype=object)
        out.fill(self._arb(0))
        return out

    def context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # MpEngine.context sets the precision


#: High-precision backends: "arb" (default: Arb midpoints inside checker.core.objective)
#: and "mpmath" (pure mpmath, for cross-checks).
MP_BACKENDS = ("arb", "mpmath")
#: Numbers of a gradient-descent iterate in the mp engine: "mpf" (default) or "arb" (Arb
#: midpoints kept across steps, converted at the edges; ``MpEngine``).
MP_ITERATES = ("mpf", "arb")


class MpEngine:
    """mpmath numbers at ``dps`` significant decimal digits (plus guard digits inside).

    Arrays and results are ``mpmath.mpf`` (what every caller and ``checker.rigorous``
    reads).  With ``backend="arb"`` (the default) the objective's pair
    arithmetic runs on Arb midpoints at the same working precision (``work``,
    see ``ArbWork``); ``backend="mpmath"`` keeps it in mpmath, for cross-checks.

    ``iterate="arb"`` (Arb backend only; opt-in, ``make_engine("mp-arb")``): a
    gradient-descent run keeps its iterate (a, W), the gradients and L_lambda in
    the working numbers across steps, Arb midpoints with the radius dropped
    after every update (``checker.dynamics.gd``), and converts to mpf only at
    the edges (results, history, checkpoints, the gap estimate); its evaluations
    (``checker.core.objective.evaluate_work``) contract the pair matrices with
    Arb matrix products (``ArbWork.matrix_form``).  The numbers it shows the
    world (arrays, results, JSON) are the same mpf as with ``iterate="mpf"``,
    and so is the JSON format; the iterates agree with the default's to
    rounding (tests/test_arb_iterate.py).
    """

    name = "mp"
    #: Bytes of one mpf in an object array (pointer, object, mantissa), for memory estimates.
    bytes_per_number = 200
    accurate_t = ACCURATE_T

    def __init__(self, dps: int = 50, backend: str = "arb", iterate: str = "mpf") -> None:
        if isinstance(dps, bool) or not isinstance(dps, int):
            raise CheckerError(f"--dps must be a whole number, got {dps!r}")
        if not MIN_DPS <= dps <= MAX_DPS:
            raise CheckerError(f"--dps must be between {MIN_DPS} and {MAX_DPS}, got {dps}")
        if backend not in MP_BACKENDS:
            raise CheckerError(f"unknown mp backend {backend!r}; expected one of {MP_BACKENDS}")
        if iterate not in MP_ITERATES or (iterate == "arb" and backend != "arb"):
            raise CheckerError(f"unknown mp iterate {iterate!r} for backend {backend!r}; expected one of "
                               f"{MP_ITERATES} ('arb' with the Arb backend only)")
        self.dps = dps
        self.work_dps = dps + GUARD_DIGITS
        self.eps = 10.0 ** (-dps)
        self.backend = backend
        self.iterate = iterate
        with mpmath.workdps(self.work_dps):
            self.work_prec = mpmath.mp.prec  # bits; Arb works at the same precision
        self.work: Any = ArbWork(matrix_form=iterate == "arb") if backend == "arb" else self
        self._sqrt = np.frompyfunc(mpmath.sqrt, 1, 1)
        self._atan2 = np.frompyfunc(mpmath.atan2, 2, 1)
        self._sin = np.frompyfunc(mpmath.sin, 1, 1)
        self._cos = np.frompyfunc(mpmath.cos, 1, 1)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        from flint import ctx

        if mpmath.mp.prec == self.work_prec and ctx.prec == self.work_prec:  # already inside: nothing to set
            yield
            return
        with mpmath.workdps(self.work_dps), ctx.workprec(self.work_prec):
            yield

    # Working numbers of checker.core.objective (identity for the mpmath backend).
    def to_work(self, x: Any) -> Any:
        return x if self.work is self else self.work.to_work(x)

    def from_work(self, x: Any) -> Any:
        return x if self.work is self else self.work.from_work(x)

    # The elementwise functions are called inside ``context()``.
    def sqrt(self, x: Any) -> Any:
        return self._sqrt(x)

    def atan2(self, y: Any, x: Any) -> Any:
        return self._atan2(y, x)

    def sin(self, x: Any) -> Any:
        return self._sin(x)

    def cos(self, x: Any) -> Any:
        return self._cos(x)

    @property
    def pi(self) -> Any:
        return +mpmath.mp.pi

    def scalar(self, value: Any) -> Any:
        with self.context():
            if isinstance(value, str):
                return mpmath.mpf(value)
            return mpmath.mpf(value)

    def array(self, values: Any) -> np.ndarray:
        arr = np.asarray(values, dtype=object)
        out = np.empty(arr.shape, dtype=object)
        with self.context():
            for idx, v in np.ndenumerate(arr):
                out[idx] = mpmath.mpf(v)
        return out

    def zeros(self, shape: Any) -> np.ndarray:
        out = np.empty(shape, dtype=object)
        out.fill(mpmath.mpf(0))
        return out

    def to_str(self, x: Any) -> str:
        # mpf(x) rounds to the current precision: convert inside the context.
        with self.context():
            return mpmath.nstr(mpmath.mpf(x), self.dps, strip_zeros=False)

    def to_float(self, x: Any) -> float:
        return float(x)

    def describe(self) -> str:
        extra = ("" if self.iterate == "mpf" else ", Arb iterate") if self.backend == "arb" else ", pure mpmath"
        return f"mp ({self.dps} digits{extra})"


Engine = Float64Engine | MpEngine


def make_engine(name: str = "float64", dps: int | None = None) -> Engine:
    """Engine by name: ``float64``, ``mp`` (``dps`` digits, default 50; Arb backend),
    ``mpmath`` (the same mp engine computing in pure mpmath, for cross-checks) or
    ``mp-arb`` (the mp engine with its gradient-descent iterate kept in Arb, ``MpEngine``)."""
    if name == "float64":
        if dps is not None:
            raise CheckerError("--dps applies to --engine mp only")
        return Float64Engine()
    if name == "mp-arb":
        return MpEngine(50 if dps is None else dps, backend="arb", iterate="arb")
    if name in ("mp", "mpmath"):
        return MpEngine(50 if dps is None else dps, backend="arb" if name == "mp" else "mpmath")
    raise CheckerError(f"unknown engine {name!r}; expected 'float64', 'mp', 'mpmath' or 'mp-arb'")


def to_strings(engine: Engine, values: Any) -> Any:
    """Nested lists of decimal strings carrying the engine's full precision."""
    arr = np.asarray(values, dtype=object)
    if arr.ndim == 0:
        return engine.to_str(arr[()])
    return [to_strings(engine, row) for row in arr]


def as_floats(values: Sequence[Any]) -> np.ndarray:
    return np.array([float(v) for v in np.asarray(values, dtype=object).ravel()]).reshape(
        np.shape(values)
    )
