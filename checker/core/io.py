"""Result files: atomic JSON writes, guarded reads, and engine numbers as exact strings.

A result or checkpoint file is either the old complete file or the new complete
file, never a half-written one: the text is serialized first, written to a
temporary file in the same directory, flushed and fsynced, then moved over the
target with ``os.replace`` (atomic on POSIX and Windows within one filesystem).

Folders: a write creates none.  A missing parent folder of an output file is a bad
input, refused by the probe ``check_output_file`` before any work; only a folder the
user names as an output folder (``--plots DIR``, ``--figures DIR``,
``--counterexample-dir DIR``, ``--failing-dir DIR``) is created, with its missing
parents, by ``check_output_dir``.

Engine numbers are stored as decimal strings that read back to the very same
number in that engine: float64 through ``repr`` (shortest round-tripping
string), mp with enough digits for the binary working precision.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import mpmath
import numpy as np

from checker.core.engines import Engine
from checker.core.errors import CheckerError, quote

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


def _resolved(path: str | Path) -> Path:
    """The file a write to ``path`` lands in: symbolic links are followed to their target."""
    return Path(os.path.realpath(Path(path).expanduser()))


def _refuse_non_regular(flag: str, shown: str | Path, target: Path) -> None:
    if target.exists() and not target.is_file():
        kind = "a directory" if target.is_dir() else "not a regular file"
        raise CheckerError(f"{flag} {shown}: exists and is {kind}; give the name of a regular file "
                           "(it is never replaced)")


def check_output_file(flag: str, path: str | Path, *,
                      distinct_from: Mapping[str, str | Path | None] | None = None) -> Path:
    """Probe an output file before any long work; return the path a write will land in.

    Refused with a one-line ``CheckerError`` naming ``flag``: an empty name; a
    path that exists and is not a regular file (a directory, a device such as
    /dev/null, a socket: never replaced); the same file as another input or
    output (``distinct_from`` maps a flag to its path, e.g. ``{"--instance":
    path}``); a folder that cannot be created or written (probed by creating
    and removing a temporary file in it).  A symbolic link is written through
    to its target, as ``write_json_atomic`` does.  A missing parent folder is
    refused too: an output file never creates a folder (give an existing one,
    or create it first).
    """
    if not str(path).strip():
        raise CheckerError(f"{flag}: empty file name")
    target = _resolved(path)
    _refuse_non_regular(flag, path, target)
    for other_flag, other in (distinct_from or {}).items():
        if other is not None and str(other).strip() and _resolved(other) == target:
            raise CheckerError(f"{flag} {path}: is the same file as {other_flag} {other}; "
                               "give another name (it would be overwritten)")
    if target.exists() and not os.access(target, os.W_OK):
        raise CheckerError(f"{flag} {path}: the file is not writable")
    parent = target.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise CheckerError(f"{flag} {path}: the folder {parent} {what}; give an existing folder "
                           "(output files never create folders)")
    _probe_folder(flag, path, parent)
    return target


def check_output_dir(flag: str, path: str | Path) -> Path:
    """Probe an output folder before any long work; the user named it, so it is created if missing
    (with its missing parents).  The only place where an output creates a folder."""
    if not str(path).strip():
        raise CheckerError(f"{flag}: empty folder name")
    target = _resolved(path)
    if target.exists() and not target.is_dir():
        raise CheckerError(f"{flag} {path}: exists and is not a folder; give a folder name")
    _probe_folder(flag, path, target)
    return target


def _probe_folder(flag: str, shown: str | Path, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CheckerError(f"{flag} {shown}: cannot write in folder {folder} "
                           f"({exc.strerror or exc}); check the path and permissions") from None


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically; the parent folder must exist (none is created).

    Serialization happens before any file is touched, so an object that cannot
    be serialized (``TypeError``/``ValueError``, NaN included) leaves the old
    file as it was.  A symbolic link is written through to its target (the link
    stays); a target that exists and is not a regular file (a directory, a
    device such as /dev/null) is refused, never replaced.  Operating-system
    failures become a one-line ``CheckerError``.
    """
    text = json.dumps(obj, indent=1, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def merge_json_atomic(path: str | Path, update: Mapping[str, Any]) -> None:
    """Set the top-level keys ``update`` in the JSON object at ``path`` (the file created if missing), atomically.

    Keys not in ``update`` are kept (the benchmarks merge their figures into one results file).
    """
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data.update(update)
    write_json_atomic(path, data)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename); used for figures too.

    A symbolic link is written through to its target (the link stays); a target
    that exists and is not a regular file is refused, never replaced; the mode of
    an existing file is kept.  Operating-system failures become a one-line
    ``CheckerError``.
    """
    target = _resolved(path)
    _refuse_non_regular("cannot write", path, target)
    tmp_name: str | None = None
    if not target.parent.is_dir():
        raise CheckerError(f"cannot write {target}: the folder {target.parent} does not exist "
                           "(output files never create folders)")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
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
        text = p.read_text(encoding="utf-8-sig")  # a leading UTF-8 byte-order mark is allowed
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


#: Key of the digest that ``seal`` adds to a checkpoint.
DIGEST_KEY = "digest"


def json_digest(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj`` (sorted keys, no spaces, ASCII): ``"sha256:<hex>"``.

    A JSON file read back gives the same digest (floats round-trip exactly through
    their shortest repr), so the digest identifies the content, not its layout.
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def seal(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with ``DIGEST_KEY`` set to the digest of every other top-level key.

    Every key takes part, so a key added to a format later is covered without
    changing the digest rule.
    """
    body = {k: v for k, v in data.items() if k != DIGEST_KEY}
    return {**body, DIGEST_KEY: json_digest(body)}


def check_sealed_format(data: Any, source: str, fmt: str, version: int, what: str, remedy: str) -> None:
    """One-line ``CheckerError`` naming ``source`` unless ``data`` is a sealed file of format ``fmt``,
    version ``version`` (``what`` names the kind of file, ``remedy`` says what to do instead)."""
    if not isinstance(data, Mapping) or data.get("format") != fmt:
        raise CheckerError(f"{source}: not a {what} of this program; {remedy}")
    if data.get("version") != version:
        raise CheckerError(f"{source}: checkpoint version {data.get('version')!r} is not supported "
                           f"(this program reads version {version}); {remedy}")
    check_seal(data, source)


def check_seal(data: Any, source: str) -> None:
    """One-line ``CheckerError`` naming ``source`` unless ``data`` matches the digest it carries."""
    if not isinstance(data, Mapping) or not isinstance(data.get(DIGEST_KEY), str):
        raise CheckerError(f"{source}: has no digest (not a checkpoint of this version); "
                           "start again without --resume")
    body = {k: v for k, v in data.items() if k != DIGEST_KEY}
    try:
        ok = json_digest(body) == data[DIGEST_KEY]
    except (TypeError, ValueError):  # e.g. 1e999 read as inf: never written by seal
        ok = False
    if not ok:
        raise CheckerError(f"{source}: its content does not match its digest (edited or corrupted); "
                           "start again without --resume")


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
            raise CheckerError(f"{where}: {quote(data)} is not a finite decimal number")
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
