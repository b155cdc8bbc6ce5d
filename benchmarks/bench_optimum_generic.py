"""Benchmark: the certified optimum with the KKT selection against the earlier mass threshold.

    python benchmarks/bench_optimum_generic.py            # presets and the generic teacher (several minutes)
    python benchmarks/bench_optimum_generic.py --smoke    # the single-teacher preset only
    python benchmarks/bench_optimum_generic.py --json benchmarks/results.json   # merge the keys
    python benchmarks/bench_optimum_generic.py --cases generic-d8,three-teachers-d4 --selections kkt \
        --baseline /tmp/base --json benchmarks/results.json   # against an older checkout, same run

Both reductions run in the same process on the same instances
(``checker.rigorous.optimum.certified_optimum`` with ``selection="kkt"`` and ``"mass"``):

* every preset that has a step size (the preset's student is the start);
* the generic teacher of ``generic_instance``: three random unit directions in d = 8 (seed 8,
  output weights -1, 0.8, 1.2, a non-degenerate pre-certificate, rho_far ~ 0.009), lambda = 0.002,
  the start the teacher's neurons shrunk by 5 % and perturbed, plus one small extra neuron
  (mass 0.0025) in a random direction; the branch and bound gets ``--seconds`` (default 40).

Reported per instance and selection: wall time, width of the enclosure, whether it is rigorous,
neurons kept.  ``--baseline DIR`` also runs every case (KKT selection) with the ``checker`` package
found in DIR (an older checkout, e.g. ``git worktree add /tmp/base 2e073b3``) in a subprocess, case
by case in the same run, and reports both.  Times are of one shared machine in one run: compare the
ratios.  With ``--baseline`` the rows go under ``optimum_generic_vs_baseline`` (the mass/KKT
comparison stays under ``optimum_generic_benchmark``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from checker.commands.cli import tune_allocator
from checker.commands.presets import load_preset, preset_names
from checker.core.io import merge_json_atomic
from checker.core.model import Instance
from checker.rigorous.optimum import certified_optimum


def generic_instance(seed: int = 8, d: int = 8, lam: str = "0.002", eta: str = "0.2",
                     extra: float = 0.05) -> Instance:
    """Three random unit teachers in R^d, a start near them with one small extra neuron."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((3, d))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    signs = rng.choice([1, -1], 3)
    a = np.array([-1.0, 0.8, 1.2]) if seed == 8 else np.array([1.0, 0.8, 1.2]) * signs
    rs = np.random.default_rng(seed + 1)
    Ws = W * 0.95 + 0.03 * rs.standard_normal(W.shape)
    x = rs.standard_normal(d)
    Ws = np.concatenate([Ws, extra * (x / np.linalg.norm(x))[None]])
    a_s = np.concatenate([a * 0.95, [extra]])
    text = lambda M: [[repr(float(v)) for v in row] for row in M]  # noqa: E731
    return Instance.create(activation="relu", teacher_a=[repr(float(v)) for v in a], teacher_W=text(W),
                           student_a=[repr(float(v)) for v in a_s], student_W=text(Ws), lam=lam, eta=eta,
                           normalize_teacher=True, name=f"generic-d{d}-seed{seed}")


def _one(instance: Instance, selection: str, seconds: float | None) -> dict:
    t = time.perf_counter()
    # descent_seconds=None: the float64 descent stops at its precision floor (or its step budget), not
    # after a wall-clock time, so that every code and every load certifies the same point
    enc = certified_optimum(instance, dps=50, selection=selection, certificate_seconds=seconds, descent_seconds=None)
    wall = time.perf_counter() - t
    return {"seconds": wall, "width": float(enc.width), "rigorous": enc.rigorous, "neurons": enc.neurons,
            "phases": enc.seconds, "polish_span_dim": enc.polish_span_dim,
            "detail": enc.gap.get("detail", "")[:300]}


def _baseline(root: Path, name: str, seconds: float | None) -> dict:
    """The same case with the ``checker`` package of ``root``, in a fresh interpreter."""
    code = (
        "import json, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from bench_optimum_generic import _case_instance\n"
        "from checker.rigorous.optimum import certified_optimum\n"
        f"inst = _case_instance({name!r})\n"
        "t = time.perf_counter()\n"
        f"enc = certified_optimum(inst, dps=50, selection='kkt', certificate_seconds={seconds!r}, "
        "descent_seconds=None)\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'width': float(enc.width), "
        "'rigorous': enc.rigorous, 'neurons': enc.neurons, 'detail': enc.gap.get('detail', '')[:300]}))\n")
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _case_instance(name: str) -> Instance:
    return generic_instance() if name == "generic-d8" else load_preset(name).instance


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="the single-teacher preset only")
    ap.add_argument("--json", type=Path, help="merge the results into this JSON file")
    ap.add_argument("--seconds", type=float, default=40.0, help="branch-and-bound budget on the generic teacher")
    ap.add_argument("--cases", help="comma-separated case names (presets and generic-d8); default: all")
    ap.add_argument("--selections", default="mass,kkt", help="comma-separated: mass, kkt (default both)")
    ap.add_argument("--baseline", type=Path, help="also run each case (kkt) with the checker package in this folder")
    args = ap.parse_args(argv)
    tune_allocator()
    selections = [x for x in args.selections.split(",") if x]
    if not selections or any(x not in ("mass", "kkt") for x in selections):
        ap.error("--selections: a comma-separated list of mass, kkt")
    cases: list[tuple[str, Instance, float | None]] = []
    for name in (["single-teacher"] if args.smoke else preset_names()):
        inst = load_preset(name).instance
        if inst.eta is not None:
            cases.append((name, inst, None))
    if not args.smoke:
        cases.append(("generic-d8", generic_instance(), args.seconds))
    if args.cases:
        wanted = args.cases.split(",")
        unknown = set(wanted) - {c[0] for c in cases}
        if unknown:
            ap.error(f"--cases: unknown {', '.join(sorted(unknown))}")
        cases = [c for c in cases if c[0] in wanted]
    rows = {}
    for name, inst, seconds in cases:
        rows[name] = {}
        for selection in selections:
            print(f"{name:20} {selection} ...", flush=True)
            rows[name][selection] = _one(inst, selection, seconds)
        if args.baseline is not None:
            print(f"{name:20} baseline ...", flush=True)
            rows[name]["baseline"] = _baseline(args.baseline, name, seconds)
    for name, r in rows.items():
        print(f"{name:20} " + "  ".join(f"{key}: {v['seconds']:7.1f} s width {v['width']:9.2e} "
                                        f"{'rigorous' if v['rigorous'] else 'estimate'}" for key, v in r.items()))
    # with --baseline the rows compare two codes, not two selections: a key of their own
    key = "optimum_generic_vs_baseline" if args.baseline is not None else "optimum_generic_benchmark"
    out = {key: {
        "cases": rows, "smoke": args.smoke, "baseline": str(args.baseline) if args.baseline else None,
        "python": sys.version.split()[0], "machine": platform.machine(), "platform": platform.platform(),
        "load_average": os.getloadavg()[0]}}
    if "generic-d8" in rows and "kkt" in rows["generic-d8"]:
        out["optimum_generic_d8_width"] = rows["generic-d8"]["kkt"]["width"]
        out["optimum_generic_d8_seconds"] = rows["generic-d8"]["kkt"]["seconds"]
    if args.json is not None:
        merge_json_atomic(args.json, out)
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
