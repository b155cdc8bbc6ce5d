"""Benchmark: many short gradient descents at once (``checker.dynamics.batch``) against one at a time.

    python benchmarks/bench_batch.py [--smoke] [--json FILE] [--single-starts N] [--table-starts N]

The landscape protocol (Safran-Shamir): k orthonormal relu teachers e_i in d = k,
output weights fixed at 1 (teacher and student), student width n = k, lambda = 0,
the first layer trained alone from entries N(0, 1/k), a fixed step, until the
gradient norm over W is at most ``--grad-tol`` (1e-10) or ``--step-cap`` steps
(20000; see below), the precision floor off.  The step is 2.5/k on L = E[(f - f*)^2]:
the protocol's 5/k on (1/2) E[(f - f*)^2] (the same iterates).

Part 1, k = n = 8, measured in the same run on the same seeded starts:

* batched: ``run_batch`` on the first B starts, B = 64, 256, 500;
* project one at a time: ``gd.run_gd`` on each of the first ``--single-starts``
  starts (64), with its usual monitoring (history, balance residual);
* naive numpy: the plain loop a user would write for fixed output weights (the
  closed-form relu kernel gradient with angles from the clipped cosine), same rule.

Figures: starts per second of each (starts / wall seconds), the speedup of the
batch over the one-at-a-time engine at each B (``batched_starts_speedup``: the best
B's ratio, and the raw figures) and the wall seconds per start
(``landscape_gd_per_start_seconds``).  The batch's results are checked bit for bit
against run_gd's on the single starts (``identical_to_run_gd``).

Part 2, k = n = 6..10: 500 starts per k to the same rule, EXTRAPOLATED from
``--table-starts`` (64) measured starts per k: seconds(500) = (500 / 64) x the
measured seconds of one batch of 64 (i.e. as batches of 64; one batch of 500 runs
faster per start), for one core and for two processes on two cores.

The step cap: in this protocol the slowest start seen (k = 6..10, 64 starts each, and
500 at k = 8) needed about 3800 steps; 20000 leaves a factor 5, and a start that
reaches the cap is reported (``max_steps_hit``), not hidden.

Writes (merges into) ``benchmarks/results.json``; ``--smoke`` (k = 4, a few starts)
writes nothing unless ``--json`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from checker.core.engines import make_engine  # noqa: E402
from checker.core.io import check_output_file, merge_json_atomic  # noqa: E402
from checker.core.problem import Problem  # noqa: E402
from checker.dynamics import batch, gd  # noqa: E402


def tune_allocator() -> bool:
    """checker.commands.cli.tune_allocator, as every command of the checker runs it."""
    from checker.commands.cli import tune_allocator as tune

    return tune()


def landscape_problem(k: int) -> Problem:
    return Problem(engine=make_engine("float64"), activation="relu", a=np.ones(k), W=np.eye(k),
                   a_star=np.ones(k), W_star=np.eye(k), lam=0.0, eta=None)


def starts(k: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.ones((count, k)), rng.standard_normal((count, k, k)) / math.sqrt(k)


def naive_gd(W: np.ndarray, eta: float, tol: float, max_steps: int) -> tuple[np.ndarray, int, float]:
    """Plain numpy GD on L(W) = E[(sum_i relu(<w_i, x>) - sum_i relu(x_i))^2] (a = a* = 1, teacher I).

    grad_{w_i} L = 2 sum_j (g(w_i, w_j) - g(w_i, e_j)),
    g(w, v) = ((pi - theta) v + ||v|| sin(theta) w / ||w||) / (2 pi).
    """
    k = W.shape[0]
    V = np.eye(k)
    for step in range(max_steps + 1):
        nW = np.linalg.norm(W, axis=1)
        U = W / nW[:, None]
        tww = np.arccos(np.clip(U @ U.T, -1.0, 1.0))
        twv = np.arccos(np.clip(U @ V.T, -1.0, 1.0))
        gww = ((np.pi - tww) @ W + (np.sin(tww) @ nW)[:, None] * U) / (2 * np.pi)
        gwv = ((np.pi - twv) @ V + np.sin(twv).sum(axis=1)[:, None] * U) / (2 * np.pi)
        G = 2 * (gww - gwv)
        g = float(np.linalg.norm(G))
        if g <= tol or step == max_steps:
            return W, step, g
        W = W - eta * G
    raise AssertionError("unreachable")


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def part1(k: int, sizes: list[int], n_single: int, stop: gd.StopRules, eta: float, seed: int) -> dict:
    p = landscape_problem(k)
    a0, W0 = starts(k, max(sizes + [n_single]), seed)
    out: dict = {"k": k, "eta": eta, "grad_tol": stop.grad_tol, "step_cap": stop.max_steps, "batched": {}}
    first = None
    for B in sizes:
        r, wall, cpu = timed(lambda: batch.run_batch(p, a0[:B], W0[:B], eta, stop=stop, train="first"))
        if B == sizes[0]:
            first = r
        out["batched"][str(B)] = {
            "starts": B, "wall_seconds": wall, "cpu_seconds": cpu, "starts_per_second": B / wall,
            "mean_steps": float(r.steps.mean()), "max_steps": int(r.steps.max()),
            "max_steps_hit": r.stop_reason.count("max-steps"),
            "per_start_step_us": wall / r.steps.sum() * 1e6}
        print(f"  batched B={B:4d}: {wall:8.2f} s  {B / wall:8.2f} starts/s  mean steps {r.steps.mean():.0f}",
              flush=True)

    def singles():
        return [gd.run_gd(dataclasses.replace(p, a=a0[i], W=W0[i]), eta, stop=stop, train="first", progress=False)
                for i in range(n_single)]
    res, wall, cpu = timed(singles)
    steps = np.array([g.steps for g in res])
    out["project_single"] = {"starts": n_single, "wall_seconds": wall, "cpu_seconds": cpu,
                             "starts_per_second": n_single / wall, "mean_steps": float(steps.mean()),
                             "per_step_us": wall / steps.sum() * 1e6}
    print(f"  run_gd one at a time ({n_single} starts): {wall:8.2f} s  {n_single / wall:8.2f} starts/s", flush=True)
    assert first is not None
    same = all(np.array_equal(first.W[i], g.W) and first.stop_reason[i] == g.stop_reason
               and int(first.steps[i]) == g.steps for i, g in enumerate(res) if i < len(first))
    out["identical_to_run_gd"] = bool(same) and n_single <= len(first)
    nv, wall, cpu = timed(lambda: [naive_gd(W0[i], eta, stop.grad_tol, stop.max_steps) for i in range(n_single)])
    nsteps = np.array([s for _, s, _ in nv])
    out["naive_numpy"] = {"starts": n_single, "wall_seconds": wall, "cpu_seconds": cpu,
                          "starts_per_second": n_single / wall, "mean_steps": float(nsteps.mean()),
                          "per_step_us": wall / nsteps.sum() * 1e6,
                          "reached_tolerance": int(sum(g <= stop.grad_tol for _, _, g in nv))}
    print(f"  naive numpy one at a time ({n_single} starts): {wall:8.2f} s  {n_single / wall:8.2f} starts/s",
          flush=True)
    return out


def part2(ks: list[int], n: int, target: int, stop: gd.StopRules, seed: int) -> dict:
    rows = {}
    for k in ks:
        p = landscape_problem(k)
        a0, W0 = starts(k, n, seed + k)
        eta = 2.5 / k
        r, wall, cpu = timed(lambda: batch.run_batch(p, a0, W0, eta, stop=stop, train="first"))
        gl = [bool(np.linalg.norm(r.W[i].T @ r.W[i] - np.eye(k)) < 1e-6) for i in range(n)]
        rows[str(k)] = {"measured_starts": n, "measured_wall_seconds": wall, "measured_cpu_seconds": cpu,
                        "mean_steps": float(r.steps.mean()), "max_steps": int(r.steps.max()),
                        "max_steps_hit": r.stop_reason.count("max-steps"),
                        "global_fraction_measured": sum(gl) / n,
                        "extrapolated_seconds_500": wall * target / n,
                        "extrapolated_cpu_seconds_500": cpu * target / n}
        print(f"  k = n = {k:2d}: {n} starts in {wall:7.2f} s (mean steps {r.steps.mean():.0f}, max "
              f"{r.steps.max()}, cap hit {r.stop_reason.count('max-steps')}) -> {target} starts ~ "
              f"{wall * target / n:7.1f} s (extrapolated)", flush=True)
    total = sum(v["extrapolated_seconds_500"] for v in rows.values())
    cpu_total = sum(v["extrapolated_cpu_seconds_500"] for v in rows.values())
    return {"per_k": rows, "total_seconds_one_core": total, "total_seconds_two_cores": total / 2,
            "total_cpu_seconds": cpu_total,
            "target_seconds": 1800.0, "starts_per_k": target,
            "note": f"EXTRAPOLATION: {target}/{n} x the measured wall time of one batch of {n} starts per k "
                    "(as batches of that size); two cores = two processes splitting the k's or the starts"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="k = 4, a few starts (a quick check of the script)")
    ap.add_argument("--json", type=Path, help="merge into this file (default benchmarks/results.json)")
    ap.add_argument("--single-starts", type=int, default=64, help="starts run one at a time (default 64)")
    ap.add_argument("--table-starts", type=int, default=64, help="measured starts per k of the table (64)")
    ap.add_argument("--grad-tol", type=float, default=1e-10)
    ap.add_argument("--step-cap", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=2018)
    args = ap.parse_args()
    path = args.json if args.json is not None else (None if args.smoke else ROOT / "benchmarks" / "results.json")
    if path is not None:
        check_output_file("--json", path)
    tuned = tune_allocator()
    stop = gd.StopRules(max_steps=args.step_cap, grad_tol=args.grad_tol, gap_every=args.step_cap + 1)
    k = 4 if args.smoke else 8
    sizes = [4, 8] if args.smoke else [64, 256, 500]
    n_single = 4 if args.smoke else args.single_starts
    t0 = time.perf_counter()
    print(f"k = n = {k}, train first, lambda 0, eta = 2.5/k, ||grad|| <= {args.grad_tol:g} or {args.step_cap} steps")
    p1 = part1(k, sizes, n_single, stop, 2.5 / k, args.seed)
    single = p1["project_single"]["starts_per_second"]
    naive = p1["naive_numpy"]["starts_per_second"]
    ratios = {B: v["starts_per_second"] / single for B, v in p1["batched"].items()}
    best = max(ratios, key=ratios.get)
    print("\ntable of 500 starts per k (extrapolated)")
    p2 = part2([4, 5] if args.smoke else [6, 7, 8, 9, 10], 4 if args.smoke else args.table_starts, 500, stop,
               args.seed)
    best_sps = p1["batched"][best]["starts_per_second"]
    out = {
        "batched_starts_speedup": {
            "value": ratios[best], "best_B": int(best), "target": 10.0, "k": k,
            "speedup_vs_project_single": {B: r for B, r in ratios.items()},
            "speedup_vs_naive_numpy": {B: v["starts_per_second"] / naive for B, v in p1["batched"].items()},
            # the same ratios from CPU seconds (time.process_time), which other jobs on a shared
            # machine inflate less than wall time
            "speedup_vs_project_single_cpu": {
                B: (p1["project_single"]["cpu_seconds"] / p1["project_single"]["starts"])
                / (v["cpu_seconds"] / v["starts"]) for B, v in p1["batched"].items()},
            "speedup_vs_naive_numpy_cpu": {
                B: (p1["naive_numpy"]["cpu_seconds"] / p1["naive_numpy"]["starts"])
                / (v["cpu_seconds"] / v["starts"]) for B, v in p1["batched"].items()},
            "raw": p1, "smoke": args.smoke, "allocator_tuned": tuned,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": sys.version.split()[0], "numpy": np.__version__, "machine": platform.machine(),
            "platform": platform.platform(), "cpus": os.cpu_count(),
        },
        "landscape_gd_per_start_seconds": {"batched": 1 / best_sps, "project_single": 1 / single,
                                           "naive_numpy": 1 / naive, "batch_size": int(best), "k": k},
        "landscape_table_500_starts_seconds_extrapolated": p2,
    }
    sp = out["batched_starts_speedup"]
    print(f"\n{'engine':28} {'starts/s':>9} {'s/start':>9} {'vs run_gd':>10} {'(cpu)':>7} {'vs naive':>9} {'(cpu)':>7}")
    for B, v in p1["batched"].items():
        s = v["starts_per_second"]
        cpu_single, cpu_naive = sp["speedup_vs_project_single_cpu"][B], sp["speedup_vs_naive_numpy_cpu"][B]
        print(f"{'batched B=' + B:28} {s:9.2f} {1 / s:9.4f} {s / single:10.1f} {cpu_single:7.1f} "
              f"{s / naive:9.1f} {cpu_naive:7.1f}")
    print(f"{'run_gd one at a time':28} {single:9.2f} {1 / single:9.4f} {1.0:10.1f} {'':7} {single / naive:9.2f}")
    print(f"{'naive numpy one at a time':28} {naive:9.2f} {1 / naive:9.4f} {naive / single:10.2f} {'':7} {1.0:9.1f}")
    print(f"batch bit for bit run_gd on the {n_single} single starts: {p1['identical_to_run_gd']}")
    print(f"table (EXTRAPOLATED): {p2['total_seconds_one_core']:.0f} s on one core, "
          f"{p2['total_seconds_two_cores']:.0f} s on two (target {p2['target_seconds']:.0f} s); "
          f"{p2['total_cpu_seconds']:.0f} CPU seconds")
    print(f"benchmark wall time {time.perf_counter() - t0:.0f} s")
    if path is not None:
        merge_json_atomic(path, out)
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
