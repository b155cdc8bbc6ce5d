"""Number engines: float64 (numpy) and mpmath at a chosen number of digits.

Both engines present one interface to the array code in ``checker/objective.py``:
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

from .errors import CheckerError

#: Guard digits carried inside the mp engine beyond the requested ``dps``; the
#: objective is a sum of O((m + m*)^2) terms of size O(1), so a few digits of
#: cancellation are lost before rounding to ``dps`` on output.
GUARD_DIGITS = 10

MIN_DPS = 5
#: Largest dps: every decimal string of a run (about dps + 25 digits at most) must stay
#: below Python's int <-> str conversion limit (4300 digits by default); see
#: checker.options.max_dps for interpreters with a lower limit.
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

    def context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

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


class MpEngine:
    """mpmath at ``dps`` significant decimal digits (plus guard digits inside)."""

    name = "mp"

    def __init__(self, dps: int = 50) -> None:
        if isinstance(dps, bool) or not isinstance(dps, int):
            raise CheckerError(f"--dps must be a whole number, got {dps!r}")
        if not MIN_DPS <= dps <= MAX_DPS:
            raise CheckerError(f"--dps must be between {MIN_DPS} and {MAX_DPS}, got {dps}")
        self.dps = dps
        self.work_dps = dps + GUARD_DIGITS
        self.eps = 10.0 ** (-dps)
        self._sqrt = np.frompyfunc(mpmath.sqrt, 1, 1)
        self._atan2 = np.frompyfunc(mpmath.atan2, 2, 1)
        self._sin = np.frompyfunc(mpmath.sin, 1, 1)
        self._cos = np.frompyfunc(mpmath.cos, 1, 1)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        with mpmath.workdps(self.work_dps):
            yield

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
        return f"mp ({self.dps} digits)"


Engine = Float64Engine | MpEngine


def make_engine(name: str = "float64", dps: int | None = None) -> Engine:
    """Engine by name: ``float64`` or ``mp`` (``dps`` digits, default 50)."""
    if name == "float64":
        if dps is not None:
            raise CheckerError("--dps applies to --engine mp only")
        return Float64Engine()
    if name == "mp":
        return MpEngine(50 if dps is None else dps)
    raise CheckerError(f"unknown engine {name!r}; expected 'float64' or 'mp'")


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
