"""Benchmark: the same small sweep on the local pool and on a Dask cluster of 1 and 2 worker processes.

    python benchmarks/bench_dask.py [--smoke] [--json FILE] [--pool-workers P]

The grid (``GRID`` below): four points around the threshold reference's base (lambda 0.005,
0.01, 0.02; a_min 0.6), each measured by the sweep's real measurement
(``checker.studies.sweep.measure_grid_point``: one T1 run with its certificate, no threshold
family, 3000 steps).  Three runs of ``run_sweep`` on the same points, each into a fresh results
file, in this order:

* ``local_pool_seconds``: the local process pool, ``--pool-workers`` processes (default 2, the
  machine's cores); the pool's start is inside the time, as in ``python -m checker.sweep``;
* ``workers_1_seconds``, ``workers_2_seconds``: a ``dask scheduler`` and 1 then 2 ``dask worker``
  processes (one thread each, no nanny) started on 127.0.0.1 before the clock starts (their
  start-up, a few seconds, is reported apart as ``cluster_start_seconds``), the client in this
  process (``--scheduler tcp://127.0.0.1:PORT``).

The results of the three runs are compared, every field but the wall times and the executor
(``results_equal``; the fields that differ, with their values, in ``differences_from_local_pool``).
The measurement is not a pure function of the point on a loaded machine: the certificate's
rigorous rho' runs under a wall-clock budget (``checker.geometry.certificate.RIGOROUS_SECONDS``),
and a run that hits it certifies a smaller rho' (hence lambda_max, eps_0, and H2/H4 may flip);
``sum_of_point_seconds`` (the points' own ``result.seconds``) shows the work each run did, and
``busy_fraction`` = that sum / (wall seconds x processes) the share of the wall time the
executor kept its processes measuring (1 = no overhead; the rest is start-up, scheduling and
the last point's tail).  On a machine shared with other jobs the points' own times vary from
run to run, so compare the executors by ``busy_fraction`` as much as by the wall times.  Only 127.0.0.1 processes on this machine: what a cluster of several hosts
adds (the network, the software on each host) is not measured.  Merges ``dask`` into
``benchmarks/results.json`` (``--json`` elsewhere; ``--smoke``: two points, nothing written
unless ``--json`` is given) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checker.commands.cli import tune_allocator  # noqa: E402
from checker.core.io import check_output_file, merge_json_atomic  # noqa: E402
from checker.studies import sweep  # noqa: E402
from checker.studies.dask_executor import probe_scheduler  # noqa: E402

GRID = {"name": "bench-dask", "base": {"lam": 0.01, "delta": 1.5, "m_star": 2, "d": 3, "a_min": 0.8, "seed": 1},
        "axes": {"lam": [0.005, 0.01, 0.02], "a_min": [0.6, 0.8]},
        "measure": {"families": [], "steps": 3000}}


class Processes:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (this checkout on their path)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.procs, self.workers = folder, [], []
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        info = folder / "scheduler.json"
        self.scheduler = self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                                   "--no-dashboard", "--scheduler-file", str(info)])
        deadline = time.monotonic() + 60
        while True:
            try:
                self.address = json.loads(info.read_text())["address"]
                break
            except (OSError, ValueError, KeyError):
                if time.monotonic() > deadline or self.scheduler.poll() is not None:
                    raise RuntimeError("dask scheduler did not start (see its log in " + str(folder) + ")")
                time.sleep(0.1)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "wb") as log:
            p = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT,
                                 env=self.env, cwd=self.folder, start_new_session=True)
        self.procs.append(p)
        return p

    def workers_up(self, n: int) -> None:
        while len(self.workers) < n:
            self.workers.append(self._spawn(f"worker{len(self.workers)}", [
                "worker", self.address, "--no-nanny", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"]))
        deadline = time.monotonic() + 120
        while probe_scheduler(self.address)["n_workers"] < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} dask workers did not register within 120 s")
            time.sleep(0.1)

    def stop(self) -> None:
        for p in self.procs:
            if p is not self.scheduler and p.poll() is None:
                p.send_signal(signal.SIGKILL)
        if self.scheduler.poll() is None:
            self.scheduler.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def comparable(path: Path) -> dict[str, Any]:
    """The records by key without their wall times and executor."""
    out = {}
    for key, r in sweep.read_results(path).items():
        res = dict(r["result"] or {}, seconds=None)
        out[key] = dict(r, executor=None, result=res)
    return out


def _flat(x: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(x, dict):
        out: dict[str, Any] = {}
        for k, v in x.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: x}


def differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Fields (dotted paths, the point key dropped) whose values differ between two runs, with the
    largest relative difference of the numeric ones."""
    out: dict[str, Any] = {}
    for key in sorted(set(a) | set(b)):
        fa, fb = _flat(a.get(key, {})), _flat(b.get(key, {}))
        for f in sorted(set(fa) | set(fb)):
            va, vb = fa.get(f), fb.get(f)
            if va == vb:
                continue
            out.setdefault(f, []).append({"point": key, "local_pool": va, "dask": vb})
    return out


def point_seconds(path: Path) -> float:
    """The sum of the points' own measurement times (``result.seconds``): the work, without the executor."""
    return round(sum(float((r["result"] or {}).get("seconds") or 0.0) for r in sweep.read_results(path).values()), 2)


def timed(grid: sweep.Grid, out: Path, **kw: Any) -> float:
    t0 = time.perf_counter()
    s = sweep.run_sweep(grid, out, **kw)
    wall = time.perf_counter() - t0
    if s.computed != len(grid.points) or s.interrupted or s.errors:
        raise RuntimeError(f"{out.name}: {s.computed} of {len(grid.points)} computed, {s.errors} error(s)")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="two points; nothing written unless --json is given")
    ap.add_argument("--pool-workers", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    path = args.json or (None if args.smoke else ROOT / "benchmarks" / "results.json")
    if path is not None:
        check_output_file("--json", path)
    tune_allocator()
    data = json.loads(json.dumps(GRID))
    if args.smoke:
        data["axes"] = {"lam": [0.01, 0.02]}
    grid = sweep.Grid.from_dict(data)
    load0 = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        folder = Path(tmp)
        pool = timed(grid, folder / "pool.jsonl", workers=args.pool_workers)
        print(f"local pool ({args.pool_workers} processes): {pool:.1f} s", flush=True)
        cluster = None
        try:
            t0 = time.perf_counter()
            cluster = Processes(folder)
            cluster.workers_up(1)
            start = time.perf_counter() - t0
            one = timed(grid, folder / "w1.jsonl", scheduler=cluster.address)
            print(f"dask, 1 worker: {one:.1f} s", flush=True)
            cluster.workers_up(2)
            two = timed(grid, folder / "w2.jsonl", scheduler=cluster.address)
            print(f"dask, 2 workers: {two:.1f} s", flush=True)
        finally:
            if cluster is not None:
                cluster.stop()
        ref = comparable(folder / "pool.jsonl")
        diff = {"workers_1": differences(ref, comparable(folder / "w1.jsonl")),
                "workers_2": differences(ref, comparable(folder / "w2.jsonl"))}
        equal = not diff["workers_1"] and not diff["workers_2"]
        work = {name: point_seconds(folder / f"{name}.jsonl") for name in ("pool", "w1", "w2")}
    n = len(grid.points)
    rows = [("local pool, %d processes" % args.pool_workers, pool), ("dask, 1 worker process", one),
            ("dask, 2 worker processes", two)]
    print(f"\n{'executor':<28} {'points':>6} {'wall s':>8} {'s / point':>10} {'over local pool':>16} "
          f"{'sum of point s':>15}")
    for (name, sec), w in zip(rows, work.values()):
        print(f"{name:<28} {n:6d} {sec:8.1f} {sec / n:10.1f} {sec / pool:15.2f}x {w:15.1f}")
    procs = {"pool": args.pool_workers, "w1": 1, "w2": 2}
    efficiency = {name: round(work[name] / (sec * procs[name]), 3) for name, (_, sec) in zip(work, rows)}
    print("busy fraction of the processes (sum of point s / (wall s x processes)): "
          + ", ".join(f"{name} {e:.2f}" for name, e in efficiency.items()))
    print(f"cluster start (scheduler + 1 worker, outside the times): {start:.1f} s; results equal: {equal}")
    for run, d in diff.items():
        for f, v in d.items():
            print(f"  {run} differs from the local pool in {f}: " +
                  "; ".join(f"point {x['point'][:8]}: {x['local_pool']!r} vs {x['dask']!r}" for x in v))
    out = {"dask": {
        "local_pool_seconds": round(pool, 2), "workers_1_seconds": round(one, 2), "workers_2_seconds": round(two, 2),
        "points": n, "pool_processes": args.pool_workers, "threads_per_worker": 1,
        "cluster_start_seconds": round(start, 2), "results_equal": equal,
        "differences_from_local_pool": diff,
        "sum_of_point_seconds": {"local_pool": work["pool"], "workers_1": work["w1"], "workers_2": work["w2"]},
        "busy_fraction": {"local_pool": efficiency["pool"], "workers_1": efficiency["w1"],
                          "workers_2": efficiency["w2"]},
        "grid": data,
        "where": "scheduler and workers as separate processes on 127.0.0.1 of this machine",
        "smoke": args.smoke, "load_average_before": load0, "load_average_after": list(os.getloadavg()),
        "python": sys.version.split()[0], "cpus": os.cpu_count(), "platform": platform.platform()}}
    if path is not None:
        merge_json_atomic(path, out)
        print(f"merged into {path}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
