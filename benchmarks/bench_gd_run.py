"""Benchmark: cost per step of ``python -m checker.gd`` (run_gd with its monitoring) against a bare loop.

    python benchmarks/bench_gd_run.py [--steps N] [--mp-steps N] [--json FILE]

On the preset ``default`` (m = 4 students, m* = 2 teachers, d = 3) with lambda = 0:
CPU seconds per step (``time.process_time``, which a machine shared with other
jobs inflates less than wall time) and wall seconds per step of

* the bare loop a = a - eta grad_a, W = W - eta grad_W (``objective.evaluate`` only);
* ``checker.studies.gd_run.run`` (run_gd: descent check, balance residual, floor
  test, geometric history with far mass and max angle);

in float64 and in mp (40 digits), and the extrapolated time of a million float64 steps.
"""

from __future__ import annotations

import argparse
import json
import time

from checker.core.engines import make_engine
from checker.commands.presets import load_preset
from checker.core.problem import Problem
from checker.studies import gd_run


def timed(fn) -> tuple[float, float]:
    c, w = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c, time.perf_counter() - w


def bare(inst, engine_name: str, dps: int | None, steps: int) -> tuple[float, float]:
    engine = make_engine(engine_name, dps)
    P = Problem.from_instance(inst, engine)

    def run() -> None:
        a, W = P.a, P.W
        with engine.context():
            for _ in range(steps):
                ev = P.evaluate(a, W)
                a = a - P.eta * ev.grad_a
                W = W - P.eta * ev.grad_W
    return timed(run)


def command(inst, engine_name: str, dps: int | None, steps: int) -> tuple[float, float]:
    opts = gd_run.Options(engine=engine_name, dps=dps, steps=steps, floor_stop=False, progress=False)
    return timed(lambda: gd_run.run(inst, opts))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--mp-steps", type=int, default=200)
    p.add_argument("--json")
    args = p.parse_args()
    inst = load_preset("default").instance.replace(lam="0")
    out = {}
    for engine_name, dps, n in (("float64", None, args.steps), ("mp", 40, args.mp_steps)):
        for label, fn in (("bare loop", bare), ("checker.gd", command)):
            cpu, wall = fn(inst, engine_name, dps, n)
            key = f"{engine_name} {label}"
            out[key] = {"steps": n, "cpu_us_per_step": 1e6 * cpu / n, "wall_us_per_step": 1e6 * wall / n}
            print(f"{key:<22} {n:>7} steps: {1e6 * cpu / n:8.1f} us/step CPU, {1e6 * wall / n:8.1f} us/step wall")
    per = out["float64 checker.gd"]
    print(f"a million float64 steps of checker.gd: ~{per['cpu_us_per_step']:.0f} s CPU, "
          f"~{per['wall_us_per_step']:.0f} s wall on this machine now")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
