"""A grid of measurements, resumable: the library of ``python -m checker.sweep GRID.json --out RESULTS.jsonl``
(the command is ``checker.commands.sweep``).

A grid file (JSON)::

    {"version": "1.0", "name": "reference",
     "base": {"lam": 0.01, "delta": 1.5708, "m_star": 2, "d": 3, "a_min": 0.8, "seed": 0},
     "axes": {"lam": [0.005, 0.01, 0.02], "delta": [1.0, 1.5708, 2.0]},
     "points": [{"lam": 0.02, "d": 4}],
     "measure": {"families": ["rotate"], "max_trials": 6}}

gives the base point, the base with one axis changed at a time (one-at-a-time
variation, so each axis has its own log-log fit) and any explicit ``points``
(overrides of the base), each measured by ``checker.studies.scaling.measure_point``
with the ``measure`` settings.  A point is keyed by a canonical hash of its
parameters (spec and measure settings, JSON with sorted keys): the same point
listed twice is measured once, and a changed setting is a new point.

Results: one JSON line per point, appended to RESULTS.jsonl and flushed and
fsynced line by line from the one process that writes.  A killed sweep can
leave at most one incomplete last line; ``read_results`` drops it (and a rerun
truncates it away before appending), any other malformed line is an error.  A
rerun measures only the points whose key is not in the file yet, so a sweep
killed and rerun ends with the same set of results as an uninterrupted one.

Executors: a local process pool with ``--workers`` processes (default: every
core; 1 runs in this process), or a Dask cluster with ``--scheduler ADDRESS``
(``pip install -e ".[dask]"``).  Ctrl-C stops the sweep, keeps every completed
line and exits 130.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .. import __version__
from checker.core.allocator import tune_allocator
from checker.core.errors import CheckerError
from .scaling import AXES, MeasureConfig, PointSpec

RESULT_VERSION = "1.0"
GRID_VERSION = "1.0"
GRID_KEYS = {"version", "name", "description", "base", "axes", "points", "measure"}


# --------------------------------------------------------------------------- grid
def point_key(point: Mapping[str, Any]) -> str:
    """Canonical hash of a point's parameters (sorted-key JSON of spec and measure)."""
    text = json.dumps({"spec": point["spec"], "measure": point["measure"]}, sort_keys=True,
                      separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class Grid:
    name: str
    points: list[dict[str, Any]]  # {"key", "axes", "spec", "measure"}
    description: str = ""

    @classmethod
    def from_dict(cls, data: Any, source: str = "grid") -> "Grid":
        if not isinstance(data, Mapping):
            raise CheckerError(f"{source}: a grid is a JSON object")
        unknown = sorted(set(data) - GRID_KEYS)
        if unknown:
            raise CheckerError(f"{source}: unknown key {unknown[0]!r} (expected {', '.join(sorted(GRID_KEYS))})")
        if data.get("version", GRID_VERSION) != GRID_VERSION:
            raise CheckerError(f"{source}: unknown grid version {data.get('version')!r} (this checker reads "
                               f"{GRID_VERSION!r})")
        base = data.get("base", {})
        if not isinstance(base, Mapping):
            raise CheckerError(f"{source}: base must be an object")
        try:
            measure = MeasureConfig.from_dict(data.get("measure", {})).to_dict()
            base_spec = PointSpec.from_dict(base)
        except CheckerError as exc:
            raise CheckerError(f"{source}: {exc}") from None
        axes = data.get("axes", {})
        if not isinstance(axes, Mapping):
            raise CheckerError(f"{source}: axes must be an object")
        bad = sorted(set(axes) - set(AXES))
        if bad:
            raise CheckerError(f"{source}: unknown axis {bad[0]!r} (axes: {', '.join(AXES)})")
        extra = data.get("points", [])
        if not isinstance(extra, list):
            raise CheckerError(f"{source}: points must be a list of objects")
        by_key: dict[str, dict[str, Any]] = {}

        def add(over: Mapping[str, Any], axis: str | None, where: str) -> None:
            if not isinstance(over, Mapping):
                raise CheckerError(f"{source}: {where}: expected an object")
            try:
                spec = PointSpec.from_dict({**base_spec.to_dict(), **dict(over)}).to_dict()
            except (CheckerError, TypeError) as exc:
                raise CheckerError(f"{source}: {where}: {exc}") from None
            p = {"spec": spec, "measure": measure}
            k = point_key(p)
            rec = by_key.setdefault(k, {"key": k, "axes": [], **p})
            if axis is not None and axis not in rec["axes"]:
                rec["axes"].append(axis)

        add({}, None, "base")
        base_key = next(iter(by_key))
        by_key[base_key]["axes"] = list(axes)  # the base point lies on every axis
        for axis, values in axes.items():
            if not isinstance(values, list) or not values:
                raise CheckerError(f"{source}: axes.{axis}: expected a non-empty list of values")
            for i, v in enumerate(values):
                add({axis: v}, axis, f"axes.{axis}[{i}]")
        for i, over in enumerate(extra):
            add(over, None, f"points[{i}]")
        name = data.get("name", Path(source).stem)
        if not isinstance(name, str):
            raise CheckerError(f"{source}: name must be a string")
        return cls(name, list(by_key.values()), str(data.get("description", "")))

    @classmethod
    def from_file(cls, path: str | Path) -> "Grid":
        from checker.core.io import read_json
        return cls.from_dict(read_json(path, "grid"), str(path))


# --------------------------------------------------------------------------- results file
def read_results(path: str | Path, *, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Records of a results file by key.  An incomplete last line (a killed write) is dropped,
    and with ``repair`` cut off the file; any other malformed line is an error."""
    p = Path(path)
    if not p.exists():
        return {}
    if not p.is_file():
        raise CheckerError(f"{path}: is not a regular file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise CheckerError(f"cannot read {path}: {exc.strerror or exc}") from None
    out: dict[str, dict[str, Any]] = {}
    lines = raw.split(b"\n")
    good_end = 0
    pos = 0
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        end = pos + len(line) + (0 if last else 1)
        if not line.strip():
            pos = end
            if not last:
                good_end = end
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
            # a complete record on the last line without its newline (the write stopped just
            # before it, or the file was edited) is a record: kept, and the newline restored on repair
            ok = isinstance(rec, dict) and isinstance(rec.get("key"), str)
        except (UnicodeDecodeError, json.JSONDecodeError):
            ok = False
        if not ok:
            if last:  # unterminated or torn final line: the write was killed
                break
            raise CheckerError(f"{path}: line {i + 1} is not a result record; the file is corrupt "
                               "(only a torn last line is repaired automatically)")
        out[rec["key"]] = rec
        good_end = end
        pos = end
    if repair and good_end < len(raw):
        try:
            with open(p, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise CheckerError(f"cannot repair {path}: {exc.strerror or exc}") from None
    elif repair and raw and good_end == len(raw) and not raw.endswith(b"\n"):
        try:  # a complete last record without its newline: the next append must start a new line
            with open(p, "ab") as fh:
                fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise CheckerError(f"cannot repair {path}: {exc.strerror or exc}") from None
    return out


def append_record(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one result line: serialized first, written in one call, flushed and fsynced."""
    line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise CheckerError(f"cannot write {path}: {exc.strerror or exc}") from None


def _clean(x: Any) -> Any:
    """JSON-safe copy: non-finite floats become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def measure_grid_point(point: Mapping[str, Any]) -> dict[str, Any]:
    """Measure one grid point; a user-level error is recorded in the line, not raised.

    Runs in a pool or Dask worker process: the allocator is tuned there too
    (``checker.core.allocator.tune_allocator``; idempotent).
    """
    from .scaling import measure_point

    tune_allocator()

    try:
        result: Any = measure_point(PointSpec.from_dict(point["spec"]), MeasureConfig.from_dict(point["measure"]))
        error = None
    except CheckerError as exc:
        result, error = None, str(exc)
    return {"result": _clean(result), "error": error}


# --------------------------------------------------------------------------- running
@dataclass
class SweepSummary:
    total: int
    done_before: int
    computed: int
    errors: int
    interrupted: bool
    seconds: float
    executor: str
    keys_computed: list[str] = field(default_factory=list)


def _record(point: Mapping[str, Any], outcome: Mapping[str, Any], executor: str) -> dict[str, Any]:
    return {"version": RESULT_VERSION, "checker_version": __version__, "key": point["key"],
            "axes": point["axes"], "spec": point["spec"], "measure": point["measure"],
            "executor": executor, **outcome}


def _ignore_sigint() -> None:
    """Pool workers ignore Ctrl-C: the parent alone handles it and stops them (no worker traceback)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _local(todo: list[dict[str, Any]], workers: int, measure: Callable[[Mapping[str, Any]], dict]
           ) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    if workers == 1:
        for p in todo:
            yield p, measure(p)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint)
    finished = False
    try:
        futs = {pool.submit(measure, p): p for p in todo}
        for fut in as_completed(futs):
            yield futs[fut], fut.result()
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:  # interrupted (or an error): stop the workers now, not after their current point
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.join(timeout=10)


def _dask(todo: list[dict[str, Any]], scheduler: Any, measure: Callable[[Mapping[str, Any]], dict], *,
          warn: Callable[[str], None] = lambda text: None) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """The Dask executor: ``checker.studies.dask_executor.run_on_dask`` (connection checks, lost workers)."""
    from .dask_executor import run_on_dask

    return run_on_dask(todo, scheduler, measure, warn=warn)


def run_sweep(grid: Grid, out: str | Path, *, workers: int | None = None, scheduler: Any = None,
              progress: bool = False, warn: Callable[[str], None] = lambda text: None,
              measure: Callable[[Mapping[str, Any]], dict] = measure_grid_point) -> SweepSummary:
    """Measure the grid's points that ``out`` does not hold yet, appending one line per point.

    ``warn`` receives the Dask executor's warnings (a cluster without workers, a point that
    killed its workers; ``checker.studies.dask_executor``)."""
    from tqdm import tqdm

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise CheckerError(f"--workers must be a positive integer, got {workers!r}")
    done = read_results(out, repair=True)
    todo = [p for p in grid.points if p["key"] not in done]
    executor = f"dask:{scheduler}" if scheduler is not None and not hasattr(scheduler, "submit") else (
        "dask" if scheduler is not None else f"local:{workers or os.cpu_count() or 1}")
    t0 = time.perf_counter()
    summary = SweepSummary(len(grid.points), len(grid.points) - len(todo), 0, 0, False, 0.0, executor)
    bar = tqdm(total=len(grid.points), initial=summary.done_before, file=sys.stderr, disable=not progress,
               desc=f"sweep {grid.name}", unit="point", dynamic_ncols=True)
    try:
        if todo:
            it = (_dask(todo, scheduler, measure, warn=warn) if scheduler is not None
                  else _local(todo, workers or os.cpu_count() or 1, measure))
            try:
                for point, outcome in it:
                    append_record(out, _record(point, outcome, executor.split(":")[0]))
                    summary.computed += 1
                    summary.keys_computed.append(point["key"])
                    summary.errors += outcome.get("error") is not None
                    bar.update(1)
            finally:
                it.close()  # stops the executor's workers at once on an interrupt
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        summary.seconds = round(time.perf_counter() - t0, 2)
    return summary
