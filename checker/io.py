"""Result files: atomic JSON writes, guarded reads, and engine numbers as exact strings.

A result or checkpoint file is either the old complete file or the new complete
file, never a half-written one: the text is serialized first, written to a
temporary file in the same directory, flushed and fsynced, then moved over the
target with ``os.replace`` (atomic on POSIX and Windows within one filesystem).

Engine numbers are stored as decimal strings that read back to the very same
number in that engine: float64 through ``repr`` (shortest round-tripping
string), mp with enough digits for the binary working precision.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import mpmath
import numpy as np

from .engines import Engine
from .errors import CheckerError

_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

#: Decimal digits beyond ceil(prec * log10(2)) written for an mp number.  That
#: many digits already identify a binary number of ``prec`` bits; the extra ones
#: cover the last-digit rounding of the decimal conversion.
_MP_EXTRA_DIGITS = 3


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically; parent directories are created.

    Serialization happens before any file is touched, so an object that cannot
    be serialized (``TypeError``/``ValueError``, NaN included) leaves the old
    file as it was.  Operating-system failures become a one-line ``CheckerError``.
    """
    text = json.dumps(obj, indent=1, allow_nan=False) + "\n"
    target = Path(path)
    tmp_name: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
            try:
                mode = target.stat().st_mode & 0o777
            except FileNotFoundError:
                mode = 0o666 & ~_umask()
            os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
        tmp_name = None
        _fsync_dir(target.parent)
    except OSError as exc:
        raise CheckerError(f"cannot write {target}: {exc.strerror or exc} (check the path and permissions)") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable where the platform allows opening a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; every failure is a one-line ``CheckerError`` naming ``what``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckerError(f"{what} {p}: no such file (check the path)") from None
    except IsADirectoryError:
        raise CheckerError(f"{what} {p}: is a directory (give a JSON file)") from None
    except UnicodeDecodeError:
        raise CheckerError(f"{what} {p}: is not UTF-8 text (give a JSON file)") from None
    except OSError as exc:
        raise CheckerError(f"{what} {p}: cannot be read ({exc.strerror or exc})") from None

    def reject_constant(name: str) -> Any:
        raise CheckerError(f"{what} {p}: contains {name} (numbers must be finite)")

    try:
        return json.loads(text, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise CheckerError(f"{what} {p}: is not valid JSON ({exc.msg} at line {exc.lineno} "
                           f"column {exc.colno})") from None
    except RecursionError:
        raise CheckerError(f"{what} {p}: is nested too deeply to be a result file") from None


def mp_round_trip_digits(engine: Engine) -> int:
    """Significant digits that identify every number of the mp engine's working precision."""
    with engine.context():
        prec = mpmath.mp.prec
    return int(math.ceil(prec * math.log10(2))) + _MP_EXTRA_DIGITS


def engine_to_json(engine: Engine, arr: Any) -> Any:
    """Nested lists of decimal strings that read back exactly with ``engine_from_json``.

    float64: ``repr`` (shortest exact string).  mp: ``mp_round_trip_digits``
    significant digits of the working precision (``work_dps`` plus a few).
    """
    values = np.asarray(arr, dtype=object)
    if engine.name == "float64":
        def fmt(x: Any) -> str:
            return repr(float(x))
    else:
        digits = mp_round_trip_digits(engine)

        def fmt(x: Any) -> str:
            return mpmath.nstr(mpmath.mpf(x), digits, strip_zeros=True)

    def walk(v: np.ndarray) -> Any:
        if v.ndim == 0:
            return fmt(v[()])
        if v.ndim == 1:
            return [fmt(x) for x in v]
        return [walk(v[i]) for i in range(v.shape[0])]

    with engine.context():
        return walk(values)


def _shape_of(data: Any, where: str) -> tuple[int, ...]:
    if isinstance(data, list):
        if not data:
            return (0,)
        shapes = {_shape_of(x, f"{where}[{i}]") for i, x in enumerate(data)}
        if len(shapes) != 1:
            raise CheckerError(f"{where}: rows of different lengths (not an array)")
        return (len(data),) + shapes.pop()
    if isinstance(data, str):
        if not _DECIMAL.match(data.strip()):
            raise CheckerError(f"{where}: {data!r} is not a finite decimal number")
        return ()
    if isinstance(data, bool) or not isinstance(data, (int, float)):
        raise CheckerError(f"{where}: expected a decimal string, got {type(data).__name__}")
    if not math.isfinite(data):
        raise CheckerError(f"{where}: {data} is not finite")
    return ()


def engine_from_json(engine: Engine, data: Any, what: str = "array") -> np.ndarray:
    """Engine array from ``engine_to_json`` output; malformed data is a ``CheckerError``."""
    shape = _shape_of(data, what)
    flat: list[Any] = []

    def collect(v: Any) -> None:
        if isinstance(v, list):
            for x in v:
                collect(x)
        else:
            flat.append(v.strip() if isinstance(v, str) else v)

    collect(data)
    out = engine.array(flat)
    return out.reshape(shape)
