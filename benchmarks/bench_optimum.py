"""Benchmark: the certified optimum and the hybrid run against high-precision gradient descent alone.

    python benchmarks/bench_optimum.py                # the reference run (several minutes)
    python benchmarks/bench_optimum.py --smoke        # a few seconds: checks that it runs
    python benchmarks/bench_optimum.py --json benchmarks/results.json   # merge the keys into that file

On the preset three-teachers-d4 (relu, m* = 3, m = 6, d = 4, lambda = 0.01), each in one run:

* ``certified_optimum_seconds_1e-30``: ``checker.rigorous.optimum.certified_optimum`` at
  50 digits, wall time to an enclosure of L*_lambda of width <= 1e-30 (the width reached
  is reported);
* ``certified_optimum_speedup_vs_hp_gd_1e-20``: the time of high-precision gradient
  descent alone (30 digits, from the preset's student) until its iterate's certified
  duality gap is <= 1e-20 (descent to a gap estimate of 1e-21, then the rigorous bound),
  over the time of the certified optimum to width 1e-20;
* ``hybrid_gd_speedup_to_1e-20``: pure high-precision descent over the hybrid run
  (``checker.dynamics.hybrid.run_hybrid``), both to a gap estimate of 1e-20 (same stop rule).

Ratios are of times measured in the same run; the machine may be shared, so compare ratios,
not times.  ``--json`` merges the keys into an existing results file (the engine benchmark
writes the others) or creates it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

from checker.dynamics import gd, hybrid
from checker.commands.cli import tune_allocator
from checker.core.engines import MpEngine
from checker.core.io import check_output_file, merge_json_atomic
from checker.core.model import Instance
from checker.commands.presets import load_preset
from checker.core.problem import Problem
from checker.rigorous.duality import gap_bound
from checker.rigorous.optimum import certified_optimum


def _gap_estimate(problem, a, W, lam) -> float:
    return max(float(gap_bound(problem, a, W, lam=lam, rigorous=False).gap_upper), 0.0)


def _descend(run, problem, target: float, max_steps: int):
    t = time.perf_counter()
    res = run(problem, problem.eta, stop=gd.StopRules(max_steps=max_steps, gap_target=target, gap_every=100),
              gap_fn=_gap_estimate, progress=False)
    return res, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny targets: check that everything runs")
    ap.add_argument("--json", type=Path, help="merge the results into this JSON file")
    args = ap.parse_args(argv)
    if args.json is not None:
        check_output_file("--json", args.json)
    tune_allocator()  # as every command of the checker does
    if args.smoke:  # two teachers in d = 3, three students: seconds, not minutes
        inst = Instance.create(teacher_a=["1", "-0.6"], teacher_W=[["1", "0", "0"], ["0", "1", "0"]],
                               student_a=["0.6", "0.5", "-0.4"],
                               student_W=[["0.5", "0.2", "0"], ["0.4", "-0.1", "0.1"], ["0.1", "0.5", "0.1"]],
                               lam="0.05", eta="0.5")
    else:
        inst = load_preset("three-teachers-d4").instance
    width_30, width_20 = (1e-8, 1e-6) if args.smoke else (1e-30, 1e-20)
    max_steps = 400 if args.smoke else 40_000
    out: dict = {}

    print("certified optimum (50 digits) ...", flush=True)
    t = time.perf_counter()
    enc30 = certified_optimum(inst, dps=50, tol=width_30 / 100)
    t30 = time.perf_counter() - t
    w30 = float(Fraction(enc30.upper) - Fraction(enc30.lower))
    t = time.perf_counter()
    enc20 = certified_optimum(inst, dps=30, tol=width_20 / 100)
    t20 = time.perf_counter() - t
    w20 = float(Fraction(enc20.upper) - Fraction(enc20.lower))
    print(f"  width {w30:.3g} in {t30:.1f} s (target {width_30:g}); width {w20:.3g} in {t20:.1f} s "
          f"(target {width_20:g})", flush=True)

    print("high-precision gradient descent alone (30 digits) ...", flush=True)
    mp = Problem.from_instance(inst, MpEngine(30))
    res, t_gd = _descend(gd.run_gd, mp, width_20 / 10, max_steps)
    t = time.perf_counter()
    gb = gap_bound(mp, res.a, res.W, lam=res.lam, rigorous=True)
    t_cert = time.perf_counter() - t
    print(f"  {res.steps} steps in {t_gd:.1f} s, then certified gap {float(gb.gap_upper):.3g} "
          f"({'rigorous' if gb.rigorous else 'estimate'}) in {t_cert:.1f} s", flush=True)

    print("hybrid run and pure high-precision run to a gap estimate of the target ...", flush=True)
    res_h, t_h = _descend(hybrid.run_hybrid, mp, width_20, max_steps)
    res_p, t_p = _descend(gd.run_gd, mp, width_20, max_steps)
    print(f"  hybrid {res_h.steps} steps in {t_h:.1f} s; pure {res_p.steps} steps in {t_p:.1f} s", flush=True)

    out = {
        "certified_optimum_seconds_1e-30": t30,
        "certified_optimum_width_reached": w30,
        "certified_optimum_speedup_vs_hp_gd_1e-20": (t_gd + t_cert) / t20,
        "hp_gd_certified_gap_reached": float(gb.gap_upper),
        "hp_gd_certified_gap_rigorous": gb.rigorous,
        "hybrid_gd_speedup_to_1e-20": t_p / t_h,
        "optimum_benchmark": {
            "instance": "smoke (two teachers, d = 3)" if args.smoke else "three-teachers-d4",
            "smoke": args.smoke,
            "certified_optimum": {"seconds_width_1e-30": t30, "width": w30, "seconds_width_1e-20": t20,
                                  "width_1e-20_run": w20, "neurons": enc30.neurons,
                                  "phases_1e-30": enc30.seconds},
            "hp_gd_alone": {"steps": res.steps, "descent_seconds": t_gd, "certificate_seconds": t_cert,
                            "certified_gap": gb.gap_upper, "rigorous": gb.rigorous},
            "hybrid": {"steps": res_h.steps, "seconds": t_h},
            "pure_hp": {"steps": res_p.steps, "seconds": t_p},
            "python": sys.version.split()[0], "machine": platform.machine(), "platform": platform.platform(),
        },
    }
    for k, v in out.items():
        if not isinstance(v, dict):
            print(f"{k:45} {v:.4g}" if isinstance(v, float) else f"{k:45} {v}")
    if args.json is not None:
        merge_json_atomic(args.json, out)
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
