"""Benchmark: steps per second of each engine, and the exact gradient against Monte Carlo.

    python benchmarks/bench_engines.py [--repeat N] [--json FILE]

Reference instances are fixed (built below, seeded).  All ratios are measured in
the same run, so machine noise affects both sides alike.  For Monte Carlo, the
gradient a user would otherwise write (sample x, average the pathwise gradient)
is timed at several sample sizes; its error against the exact gradient gives
the constant C in err ~ C / sqrt(n), from which the samples (and time) needed
to reach a given accuracy are extrapolated.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import numpy as np

from checker.engines import make_engine
from checker.model import Instance
from checker.problem import Problem


def reference_instance(m_star: int, m: int, d: int, seed: int = 0) -> Instance:
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    Wt = Q[:m_star]
    a_t = rng.uniform(0.5, 1.5, m_star) * rng.choice([-1, 1], m_star)
    idx = np.arange(m) % m_star
    W = Wt[idx] + 0.1 * rng.standard_normal((m, d))
    a = a_t[idx] / np.bincount(idx, minlength=m_star)[idx]
    return Instance.create(teacher_a=[repr(float(x)) for x in a_t], teacher_W=Wt.tolist(),
                           student_a=a.tolist(), student_W=W.tolist(), lam="0.01", eta="0.1",
                           normalize_teacher=True)


def best_time(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def gd_steps_per_second(inst: Instance, engine_name: str, dps: int | None, steps: int, repeat: int) -> float:
    engine = make_engine(engine_name, dps)
    P = Problem.from_instance(inst, engine)

    def run() -> None:
        a, W = P.a, P.W
        with engine.context():
            for _ in range(steps):
                ev = P.evaluate(a, W)
                a = a - P.eta * ev.grad_a
                W = W - P.eta * ev.grad_W

    return steps / best_time(run, repeat)


def mc_gradient(P: Problem, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((n, P.W.shape[1]))
    Zs, Zt = X @ P.W.T, X @ P.W_star.T
    act = (lambda z: np.maximum(z, 0)) if P.activation == "relu" else np.abs
    dact = (lambda z: (z > 0).astype(float)) if P.activation == "relu" else np.sign
    r = act(Zs) @ P.a - act(Zt) @ P.a_star  # f_theta - f*
    ga = 2 * (act(Zs) * r[:, None]).mean(axis=0)
    gW = 2 * P.a[:, None] * ((dact(Zs) * r[:, None]).T @ X) / n
    return ga, gW


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()
    results: dict[str, object] = {"engines": [], "monte_carlo": []}
    print("GD steps per second (exact population gradient)")
    for (m_star, m, d) in [(3, 6, 4), (5, 20, 10)]:
        inst = reference_instance(m_star, m, d)
        row = {"m_star": m_star, "m": m, "d": d}
        row["float64"] = gd_steps_per_second(inst, "float64", None, 500, args.repeat)
        row["mp30"] = gd_steps_per_second(inst, "mp", 30, 5, args.repeat)
        row["mp50"] = gd_steps_per_second(inst, "mp", 50, 5, args.repeat)
        row["float64_over_mp50"] = row["float64"] / row["mp50"]
        results["engines"].append(row)
        print(f"  m*={m_star} m={m} d={d}: float64 {row['float64']:.0f}/s, mp30 {row['mp30']:.1f}/s, "
              f"mp50 {row['mp50']:.1f}/s (float64/mp50 = {row['float64_over_mp50']:.0f}x)")

    print("\nExact gradient vs Monte Carlo gradient (float64, m*=3 m=6 d=4)")
    inst = reference_instance(3, 6, 4)
    P = Problem.from_instance(inst, make_engine("float64"))
    ev = P.evaluate()
    exact = np.concatenate([ev.loss_grad_a, ev.loss_grad_W.ravel()])
    t_exact = best_time(lambda: P.evaluate(), max(args.repeat, 20))
    scale = float(np.max(np.abs(exact)))
    Pm = Problem.from_instance(inst, make_engine("mp", 50))
    evm = Pm.evaluate()
    exact_mp = np.concatenate([evm.loss_grad_a, evm.loss_grad_W.ravel()])
    err_exact = max(abs(float(x - y)) for x, y in zip(exact_mp, exact)) / scale
    results["exact_float64_rel_error"] = err_exact
    rng = np.random.default_rng(1)
    consts = []
    for n in (10_000, 100_000, 1_000_000):
        t = time.perf_counter()
        ga, gW = mc_gradient(P, n, rng)
        t_mc = time.perf_counter() - t
        err = float(np.max(np.abs(np.concatenate([ga, gW.ravel()]) - exact))) / scale
        consts.append(err * np.sqrt(n))
        results["monte_carlo"].append({"n": n, "time_s": t_mc, "rel_error": err,
                                       "time_over_exact": t_mc / t_exact})
        print(f"  n={n:>9,}: rel. error {err:.2e}, time {t_mc * 1e3:.1f} ms "
              f"({t_mc / t_exact:.0f}x the exact gradient's {t_exact * 1e6:.0f} us)")
    C = float(np.median(consts))
    per_sample = results["monte_carlo"][-1]["time_s"] / 1_000_000
    for target in (1e-3, 1e-6, 1e-12):
        n_need = (C / target) ** 2
        print(f"  to reach rel. error {target:g}: about {n_need:.2g} samples, "
              f"{n_need * per_sample:.2g} s (exact float64: {t_exact * 1e6:.0f} us, "
              f"rel. error {err_exact:.1e} against mp at 50 digits)")
        results["monte_carlo"].append({"target_rel_error": target, "samples_needed": n_need,
                                       "time_needed_s": n_need * per_sample})
    results["exact_gradient_time_s"] = t_exact
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
