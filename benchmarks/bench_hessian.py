"""Benchmark: the exact Hessian (float64) and the certificate of a stationary point (Arb).

    python benchmarks/bench_hessian.py                # the reference run (about a minute)
    python benchmarks/bench_hessian.py --smoke        # seconds: checks that it runs
    python benchmarks/bench_hessian.py --json benchmarks/results.json   # merge the keys into that file

Keys, each measured in one run:

* ``hessian_float64_ms_m10_d10``: ``checker.core.hessian.loss_hessian`` (train both,
  110 x 110) on a random relu instance with m = m* = d = 10, milliseconds per call;
* ``hessian_speedup_vs_fd_m10_d10``: the time of the Hessian a user would otherwise form,
  central differences of the exact float64 gradient (2 n gradient evaluations), over the
  time of the exact Hessian, same instance, same run;
* ``critical_ball_hessian_seconds_k7``: the Arb Hessian (128 bits) over a Krawczyk box
  at the k = 7 spurious minimum of examples/spurious-k7.json (train first, 49 x 49);
* ``critical_certify_seconds_k7``: ``checker.rigorous.critical.certify`` there (float64
  centre, 128 bits), with its phases in ``hessian_benchmark``; and
  ``critical_certify_seconds_k7_mp40`` from a 40-digit centre (233 bits).

Ratios are of times measured in the same run; the machine may be shared.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from flint import arb, ctx

from checker.commands.cli import tune_allocator
from checker.core import hessian as hs
from checker.core import objective
from checker.core.engines import Float64Engine, MpEngine
from checker.core.io import check_output_file, merge_json_atomic
from checker.core.model import Instance
from checker.core.problem import Problem
from checker.stationary.critical import find_stationary
from checker.rigorous.critical import BallEngine, _arb_array, certify

ROOT = Path(__file__).resolve().parents[1]


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="small sizes: check that everything runs")
    ap.add_argument("--json", type=Path, help="merge the results into this JSON file")
    args = ap.parse_args(argv)
    if args.json is not None:
        check_output_file("--json", args.json)
    tune_allocator()
    e = Float64Engine()
    m = 4 if args.smoke else 10
    rng = np.random.default_rng(0)
    a, W = rng.normal(size=m), rng.normal(size=(m, m))
    As, Ws = rng.normal(size=m), np.eye(m)
    repeat = 3 if args.smoke else 20
    t_h = _best(lambda: hs.loss_hessian(e, "relu", a, W, As, Ws, 0.01), repeat)

    def fd() -> np.ndarray:
        x = hs.flatten(a, W)
        h = 1e-6
        cols = []
        for i in range(len(x)):
            xp, xm = x.copy(), x.copy()
            xp[i] += h
            xm[i] -= h
            gp = hs.gradient_vector(objective.evaluate(e, "relu", *hs.unflatten(xp, a, W), As, Ws, 0.01))
            gm = hs.gradient_vector(objective.evaluate(e, "relu", *hs.unflatten(xm, a, W), As, Ws, 0.01))
            cols.append((gp - gm) / (2 * h))
        return np.array(cols).T

    t_fd = _best(fd, max(1, repeat // 5))
    print(f"Hessian m = m* = d = {m} ({m * (m + 1)} x {m * (m + 1)}): {t_h * 1e3:.3g} ms; "
          f"central differences of the gradient {t_fd * 1e3:.3g} ms", flush=True)

    inst = Instance.from_file(ROOT / "examples" / "spurious-k7.json")
    p = Problem.from_instance(inst, e)
    sp = find_stationary(p, train="first", lam=0.0)
    with ctx.workprec(128):
        a0, W0 = _arb_array(sp.a), _arb_array(sp.W)
        Wb = np.array([[x + arb(0, 1e-14) for x in row] for row in W0], dtype=object)
        t_ball = _best(lambda: hs.loss_hessian(BallEngine(), "relu", a0, Wb, _arb_array(p.a_star),
                                               _arb_array(p.W_star), arb(0), "first"), 1 if args.smoke else 3)
    t = time.perf_counter()
    cert = certify(p, sp.a, sp.W, train="first", lam=0.0)
    t_cert = time.perf_counter() - t
    print(f"k = 7: Arb Hessian over a box {t_ball:.3g} s; certificate {t_cert:.3g} s "
          f"(rigorous {cert.rigorous}, spurious {cert.spurious}); phases {cert.seconds}", flush=True)
    out_mp = {}
    if not args.smoke:
        pm = Problem.from_instance(inst, MpEngine(40))
        spm = find_stationary(pm, train="first", lam=0)
        t = time.perf_counter()
        certm = certify(pm, spm.a, spm.W, train="first", lam=spm.lam)
        out_mp = {"critical_certify_seconds_k7_mp40": time.perf_counter() - t}
        print(f"k = 7, 40-digit centre: certificate {out_mp['critical_certify_seconds_k7_mp40']:.3g} s "
              f"(phases {certm.seconds})", flush=True)
    out = {
        "hessian_float64_ms_m10_d10": t_h * 1e3,
        "hessian_speedup_vs_fd_m10_d10": t_fd / t_h,
        "critical_ball_hessian_seconds_k7": t_ball,
        "critical_certify_seconds_k7": t_cert,
        **out_mp,
        "hessian_benchmark": {"smoke": args.smoke, "m": m, "certify_phases_k7": cert.seconds,
                              "python": sys.version.split()[0], "machine": platform.machine()},
    }
    for k, v in out.items():
        if not isinstance(v, dict):
            print(f"{k:45} {v:.4g}")
    if args.json is not None:
        merge_json_atomic(args.json, out)
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
