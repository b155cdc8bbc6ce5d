"""Benchmark: the certified basin (python -m checker.prove) and its verifier (python -m checker.verify).

    python benchmarks/bench_basin.py                 # both presets (a few minutes)
    python benchmarks/bench_basin.py --smoke         # seconds: exact-width-d3 at a fixed radius, no T1 phase
    python benchmarks/bench_basin.py --json benchmarks/results.json   # merge the keys into that file
    python benchmarks/bench_basin.py --over --json benchmarks/results.json   # only the over-parameterized preset

On the presets exact-width-d3 (m = m* = 2, d = 3, n = 8 parameters) and exact-width-d4
(m = m* = 3, d = 4, n = 15), each in one run, with the command's defaults (radius search,
T1's constants included):

* ``basin_prove_seconds_m2_d3``, ``basin_prove_seconds_m3_d4``: wall time of the whole proof
  (``checker.basin.basin.BasinProver.run``); targets 60 s and 600 s;
* ``basin_verify_fraction_m2_d3``, ``basin_verify_fraction_m3_d4``: wall time of
  ``checker.basin.verify.verify_certificate`` (every claim, the duality bound on L*_lambda
  recomputed) over the proof's; target below 0.1;
* ``basin_verify_cover_fraction_m2_d3``, ``..._m3_d4``: the same without the L*_lambda
  recomputation (``--skip-l-star``: Krawczyk, the cover, the Hessian bounds, the derived numbers);
* ``basin_benchmark``: per instance the phases, CPU times (``time.process_time``), the radius,
  the number of boxes and the certified numbers.

and on the preset over-width-d3 (m = m* + 1 = 3, d = 3, n = 12; the over-parameterized route,
``checker.basin.over.OverProver``): ``basin_over_prove_seconds_m3_d3``,
``basin_over_verify_fraction_m3_d3``, ``basin_over_verify_cover_fraction_m3_d3`` and
``basin_over_benchmark`` (kept apart so that ``--over`` alone does not replace the others).

Ratios are of times measured in the same run; the machine may be shared (the CPU times show
how much of the wall time was this process's), so compare ratios, not times.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

from checker.basin.basin import BasinProver
from checker.basin.over import OverProver
from checker.basin.verify import verify_certificate
from checker.commands.cli import tune_allocator
from checker.commands.presets import load_preset
from checker.core.io import check_output_file, merge_json_atomic

CASES = {"m2_d3": "exact-width-d3", "m3_d4": "exact-width-d4"}
OVER_CASES = {"m3_d3": "over-width-d3"}


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="exact-width-d3 at a fixed radius, no T1 phase")
    ap.add_argument("--over", action="store_true", help="only the over-parameterized preset over-width-d3")
    ap.add_argument("--json", type=Path, help="merge the results into this JSON file")
    args = ap.parse_args(argv)
    if args.json is not None:
        check_output_file("--json", args.json)
    tune_allocator()
    cases = {} if args.over else {"m2_d3": "exact-width-d3"} if args.smoke else CASES
    out: dict = {}
    detail: dict = {"smoke": args.smoke, "python": sys.version.split()[0], "machine": platform.machine(),
                    "platform": platform.platform()}
    over_detail: dict = dict(detail)
    for key, preset in [(k, p) for k, p in cases.items()] + [(f"over_{k}", p) for k, p in OVER_CASES.items()]:
        inst = load_preset(preset).instance
        print(f"prove {preset} ...", flush=True)
        if inst.m > inst.m_star:
            prover = OverProver(inst, t1=not args.smoke)
        else:
            prover = BasinProver(inst, t1=not args.smoke, radius=Fraction("0.0003") if args.smoke else None)
        cert, wall, cpu = _timed(prover.run)
        print("verify (every claim) ...", flush=True)
        ver, v_wall, v_cpu = _timed(lambda: verify_certificate(cert, check_l_star=True))
        print("verify (without the L*_lambda recomputation) ...", flush=True)
        ver2, c_wall, c_cpu = _timed(lambda: verify_certificate(cert, check_l_star=False))
        if not (cert["proved"] and ver.verified and ver2.verified):
            print(f"error: {preset}: proved {cert['proved']}, verified {ver.verified} / {ver2.verified} "
                  f"({ver.failed_claim}: {ver.detail})", file=sys.stderr)
            return 1
        over = key.startswith("over_")
        name = key[len("over_"):] if over else key
        prefix = "basin_over" if over else "basin"
        if not args.smoke:
            out[f"{prefix}_prove_seconds_{name}"] = wall
            out[f"{prefix}_verify_fraction_{name}"] = v_wall / wall
            out[f"{prefix}_verify_cover_fraction_{name}"] = c_wall / wall
        (over_detail if over else detail)[name] = {
            "preset": preset, "prove_wall": wall, "prove_cpu": cpu, "phases": cert["seconds"],
            "verify_wall": v_wall, "verify_cpu": v_cpu, "verify_cover_wall": c_wall, "verify_cover_cpu": c_cpu,
            "radius": cert["radius"], "boxes": len(cert["cover"]["boxes"]),
            "mu_lower": cert.get("mu_N_lower" if over else "mu_lower"), "beta_upper": cert["beta_upper"],
            "gap_level": cert["gap_level"], "eps0_checker": cert["eps0_checker"],
            "attempts": len(cert["search"]["attempts"]),
        }
        print(f"  proved r = {cert['radius']} ({len(cert['cover']['boxes'])} boxes) in {wall:.1f} s wall "
              f"({cpu:.1f} s CPU); verify {v_wall:.2f} s ({v_wall / wall:.3f} of proving), without L* "
              f"{c_wall:.2f} s ({c_wall / wall:.4f})", flush=True)
    if cases:
        out["basin_benchmark"] = detail
    out["basin_over_benchmark"] = over_detail
    for k, v in out.items():
        if not isinstance(v, dict):
            print(f"{k:40} {v:.4g}")
    if args.json is not None:
        merge_json_atomic(args.json, out)
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
