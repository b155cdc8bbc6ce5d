"""Benchmark: the landscape table (``checker.landscape``) against a per-start numpy gradient descent.

    python benchmarks/bench_landscape.py [--starts N] [--naive-starts M] [--workers W] [--ks 6,7,8,9,10]

For each k = n in ``--ks`` (orthonormal teacher I_k, output weights fixed at 1, lambda 0,
the default protocol of ``checker.stationary.study``: entries N(0, 1/k), step 2.5/k):

* the study: ``run_study`` over seeds 0 .. N-1 (batched gradient descent to
  ||grad|| <= 1e-6, then Newton to the gradient's rounding level, then resumed descent
  where Newton did not end at a minimum) with ``--workers`` processes, then ``summarize``
  (classes and the Arb certificates of the spurious ones): wall and CPU seconds, per start;
* the straightforward alternative, in the same run, on the first M of the same starts:
  plain numpy gradient descent one start at a time (``bench_batch.naive_gd``: the closed-form
  relu gradient with angles from the clipped cosine) with the same step, to the protocol's
  stopping rule ||grad L|| <= 2e-12 (the end point the study reaches by Newton).

Figures: seconds per start of each and their ratio per k; the table's total (sum over k of
the study's wall time; the whole table at N = 500).  Merges ``landscape_table`` into
``benchmarks/results.json`` (``--json`` elsewhere).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from bench_batch import naive_gd  # noqa: E402
from checker.commands.cli import tune_allocator  # noqa: E402
from checker.core.io import check_output_file, merge_json_atomic  # noqa: E402
from checker.stationary import study as st  # noqa: E402


def spec(k: int) -> st.StudySpec:
    a, W = st.orthonormal_teacher(k)
    return st.StudySpec(teacher=f"orthonormal:{k}", activation="relu", a_star=a, W_star=W, width=k,
                        orthonormal=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=500)
    ap.add_argument("--naive-starts", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ks", default="6,7,8,9,10")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    path = args.json or ROOT / "benchmarks" / "results.json"
    check_output_file("--json", path)
    tune_allocator()
    ks = [int(x) for x in args.ks.split(",")]
    rows = {}
    t_all = time.perf_counter()
    print(f"{'k':>3} {'starts':>6} {'study s':>9} {'s/start':>9} {'cpu s/start':>11} {'naive s/start':>13} "
          f"{'ratio':>7} {'spurious':>8}")
    for k in ks:
        s = spec(k)
        seeds = list(range(args.starts))
        w0, c0 = time.perf_counter(), time.process_time()
        recs, _, _, _ = st.run_study(s, seeds, workers=args.workers)
        res = st.summarize(s, seeds, recs)
        wall = time.perf_counter() - w0
        cpu_main = time.process_time() - c0
        d = res.to_dict()
        # the same starts, one at a time, plain numpy GD to the protocol's rule
        nv0 = time.perf_counter()
        naive = [naive_gd(st.random_start(s, seed)[1], s.step, st.GRAD_TOL, st.MAX_STEPS)
                 for seed in seeds[:args.naive_starts]]
        nwall = time.perf_counter() - nv0
        per, nper = wall / len(seeds), nwall / max(len(naive), 1)
        # did the naive loop end at the same points (same loss class) on its starts?
        ours = {r["seed"]: float(r["loss"]) for r in recs}
        agree = 0
        for seed, (W, steps, g) in zip(seeds, naive):
            from checker.core.engines import Float64Engine
            from checker.core.objective import evaluate
            L = float(evaluate(Float64Engine(), "relu", np.ones(k), W, np.ones(k), np.eye(k), 0.0).loss)
            agree += abs(L - ours[seed]) <= 1e-9
        rows[str(k)] = {"starts": len(seeds), "study_wall_seconds": wall, "study_seconds_per_start": per,
                        "main_process_cpu_seconds": cpu_main, "workers": args.workers,
                        "naive_starts": len(naive), "naive_wall_seconds": nwall, "naive_seconds_per_start": nper,
                        "naive_over_study_per_start": nper / per, "naive_same_end_loss": agree,
                        "naive_mean_steps": float(np.mean([x[1] for x in naive])) if naive else None,
                        "spurious_fraction": d["spurious_fraction"], "classes": len(d["classes"])}
        print(f"{k:3d} {len(seeds):6d} {wall:9.1f} {per:9.4f} {cpu_main / len(seeds):11.4f} {nper:13.4f} "
              f"{nper / per:7.1f} {d['spurious_fraction']['count']:8d}", flush=True)
    total = sum(r["study_wall_seconds"] for r in rows.values())
    out = {"landscape_table": {
        "per_k": rows, "total_study_seconds": total, "target_seconds": 1800.0, "starts_per_k": args.starts,
        "full_table": args.starts >= 500 and ks == [6, 7, 8, 9, 10],
        "benchmark_wall_seconds": time.perf_counter() - t_all,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0], "numpy": np.__version__, "cpus": os.cpu_count(),
        "platform": platform.platform()}}
    print(f"table: {total:.0f} s for {args.starts} starts per k (target 1800 s for 500)")
    merge_json_atomic(path, out)
    print(f"merged into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
