"""Benchmark of the exact objective: engines, arithmetic floor, Monte Carlo, naive mpmath.

    python benchmarks/bench.py [--smoke] [--repeat N] [--json FILE] [--no-progress]

Prints a table and writes JSON (default benchmarks/results.json; --smoke writes
nothing unless --json is given).  Every ratio is measured in the same run, so
machine load affects both sides alike; each figure is the median over
``--repeat`` repeats.  Reference instances (seeded, built below): small (d=4,
m*=3, m=8), medium (d=20, m*=5, m=64), large (d=100, m*=10, m=512; float64 only).

Sections:

* steps/s: gradient-descent steps (one evaluation of L_lambda and its gradient
  plus the update) per second of each engine;
* float64 over floor: the float64 engine's time per step over the time numpy
  needs just for the arithmetic on all neuron pairs once (norms, one Gram
  product, arccos, kappa, the gradient coefficients, the two products that
  assemble the gradient: ``floor_step`` below); measured on the reference
  instance and on its clustered variant (students = teacher rows + 0.01 N(0, I),
  as at the end of training: many more pairs take the accurate vector route of
  the angle);
* Monte Carlo: the numpy gradient a user would otherwise write (sample x,
  average the pathwise gradient) against the exact one, on the small instance:
  the constant C of err = C / sqrt(n) is measured, the samples for a relative
  gradient error of 1e-3 are run and timed, those for 1e-6 are extrapolated
  from the 1/sqrt(n) law (labelled so).  PyTorch is used too if installed;
* high precision: the default high-precision engine against the
  straightforward mpmath implementation of ``naive_mpmath.py`` (scalar loops
  over pairs) at 50 and 100 digits, on the small and medium instances; one
  evaluation of L_lambda and its gradient from the engine's iterate: mpf for
  "mp" and "mpmath", the Arb midpoints of the Arb-iterate engine for "mp-arb"
  (``MpEngine(iterate="arb")``, ``Problem.evaluate_work``: no conversion; the
  arrays are converted once, outside the timing, as a run converts them once);
  timed as the median CPU time of the thread per call, the evaluations taking
  turns (robust to a shared machine's load; ``interleaved_cpu_times``);
  ``--hp-only`` runs this section alone and merges its keys into the JSON;
* angle error: the largest relative error of phi and sin phi on the Gram route
  of ``checker.core.objective.half_angle_norms`` for |t| <= threshold, against 40
  digits, which justifies ``checker.core.objective.ACCURATE_T``.

The allocator is tuned as every command of the checker tunes it
(``checker.commands.cli.tune_allocator``; recorded as ``allocator_tuned``); run with
CHECKER_DEFAULT_MALLOC=1 to measure glibc's defaults instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
#: The checker measured: this checkout's, or (for --baseline) the one in BENCH_CHECKER_SRC.
SRC = Path(os.environ.get("BENCH_CHECKER_SRC") or ROOT)
sys.path.insert(0, str(SRC))  # that checkout's checker, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))

import mpmath  # noqa: E402
import numpy as np  # noqa: E402

import naive_mpmath  # noqa: E402
from checker.core import objective  # noqa: E402
from checker.core.engines import make_engine  # noqa: E402
from checker.core.io import write_json_atomic  # noqa: E402
from checker.core.model import Instance  # noqa: E402
from checker.core.problem import Problem  # noqa: E402


def tune_allocator() -> bool:
    """checker.commands.cli.tune_allocator, as every command of the checker runs it (False if absent or off)."""
    try:
        from checker.commands.cli import tune_allocator as tune
    except ImportError:  # a baseline checkout from before it existed
        return False
    return tune()

VERSION = 1
SIZES = {"small": (3, 8, 4), "medium": (5, 64, 20), "large": (10, 512, 100)}
SMOKE_SIZES = {"small": (2, 3, 3), "medium": (3, 6, 4), "large": (3, 12, 8)}
#: Keys filled by other benchmarks (the certified optimum, the hybrid run): null here.
PLACEHOLDERS = ("certified_optimum_seconds_1e-30", "certified_optimum_speedup_vs_hp_gd_1e-20",
                "hybrid_gd_speedup_to_1e-20")


def reference_instance(m_star: int, m: int, d: int, seed: int = 0, noise: float = 0.1) -> Instance:
    """Orthonormal teacher, students = teacher rows + noise N(0, I) (0.1), mass split evenly."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    Wt = Q[:m_star]
    a_t = rng.uniform(0.5, 1.5, m_star) * rng.choice([-1, 1], m_star)
    idx = np.arange(m) % m_star
    W = Wt[idx] + noise * rng.standard_normal((m, d))
    a = a_t[idx] / np.bincount(idx, minlength=m_star)[idx]
    return Instance.create(teacher_a=[repr(float(x)) for x in a_t], teacher_W=Wt.tolist(),
                           student_a=a.tolist(), student_W=W.tolist(), lam="0.01", eta="0.1",
                           normalize_teacher=True)


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def iterate_numbers(P: Problem) -> Any:
    """checker.dynamics.gd.IterateNumbers of P if its engine keeps the iterate in Arb, else None."""
    try:
        from checker.dynamics.gd import IterateNumbers
    except ImportError:  # a baseline checkout from before the Arb iterate
        return None
    nums = IterateNumbers(P)
    return nums if nums.work else None


def gd_step_time(P: Problem, steps: int, repeat: int) -> float:
    """Median seconds of one gradient-descent step of the problem's engine.

    The median over all ``steps * repeat`` steps timed one by one: robust to the
    moments the process is descheduled on a shared machine (as is the floor's).
    An Arb-iterate engine steps in its own numbers, as ``checker.dynamics.gd`` does.
    """
    engine = P.engine
    times: list[float] = []
    nums = iterate_numbers(P)

    def run(record: bool) -> None:
        a, W = P.a, P.W
        with engine.context():
            if nums is not None:
                a, W, eta, lam = nums.to(a), nums.to(W), nums.to(P.eta), nums.to(P.lam)
            for _ in range(steps):
                t = time.perf_counter()
                if nums is None:
                    ev = P.evaluate(a, W)
                    a = a - ev.grad_a * P.eta  # array on the left: mpf * ndarray is slow in mpmath
                    W = W - ev.grad_W * P.eta
                else:
                    ev = nums.evaluate(a, W, lam)
                    a, W = nums.round(a - ev.grad_a * eta), nums.round(W - ev.grad_W * eta)
                if record:
                    times.append(time.perf_counter() - t)

    run(False)  # warm-up
    for _ in range(repeat):
        run(True)
    return statistics.median(times)


def floor_step(a: np.ndarray, W: np.ndarray, a_star: np.ndarray, W_star: np.ndarray) -> np.ndarray:
    """The arithmetic floor of one relu evaluation: what numpy needs at the least on all pairs."""
    V = np.concatenate([W, W_star])
    c = np.concatenate([a, -a_star])
    nv = np.sqrt(np.einsum("ij,ij->i", V, V))
    Vh = V / nv[:, None]
    m = len(a)
    t = Vh[:m] @ Vh.T
    np.clip(t, -1, 1, out=t)
    phi = np.arccos(t)
    s = np.sqrt(1 - t * t)
    K = nv[:m, None] * nv[None, :] * ((s + (math.pi - phi) * t) / (2 * math.pi))
    A = (math.pi - phi) / (2 * math.pi)
    B = s / (2 * math.pi)
    cn = c * nv
    G = (A * cn) @ Vh + (B @ cn)[:, None] * Vh[:m]
    return K @ c + G.sum()


#: Noise of the "clustered" variant of a reference instance (students = teacher rows + CLUSTERED_NOISE N(0, I)).
CLUSTERED_NOISE = 0.01


def close_pair_fraction(P: Problem) -> float:
    """Share of neuron pairs (students and teachers) with |cos| above ACCURATE_T."""
    V = np.concatenate([P.W, P.W_star])
    Vh = V / np.linalg.norm(V, axis=1)[:, None]
    return float(np.mean(np.abs(Vh @ Vh.T) > objective.ACCURATE_T))


def engine_names() -> list[str]:
    """The high-precision engines this checkout has: "mp" and, if present, "mpmath" and "mp-arb"."""
    names = ["mp"]
    for name in ("mpmath", "mp-arb"):
        try:
            make_engine(name, 30)
            names.append(name)
        except Exception:  # an older checkout without that engine name
            pass
    return names


# ---------------------------------------------------------------- sections
def bench_engines(sizes: dict, repeat: int, smoke: bool, log: Callable[[str], None]) -> dict:
    out: dict[str, Any] = {}
    hp = engine_names()
    for label, (m_star, m, d) in sizes.items():
        inst = reference_instance(m_star, m, d)
        row: dict[str, Any] = {"m_star": m_star, "m": m, "d": d}
        P = Problem.from_instance(inst, make_engine("float64"))
        f64 = gd_step_time(P, 3 if smoke else (200 if label == "small" else 100 if label == "medium" else 5),
                           repeat)
        row["float64_steps_per_s"] = 1 / f64
        with np.errstate(all="ignore"):
            fl = median_time(lambda: floor_step(P.a, P.W, P.a_star, P.W_star),
                             max(repeat, 5) * (50 if label != "large" else 3))
        row["floor_s"] = fl
        row["float64_over_floor"] = f64 / fl
        if label != "small":
            # The same ratio on the clustered variant: students gathered around their teachers
            # (as at the end of training), so many pairs take the accurate vector route.
            Pc = Problem.from_instance(reference_instance(m_star, m, d, noise=CLUSTERED_NOISE),
                                       make_engine("float64"))
            f64c = gd_step_time(Pc, 3 if smoke else (100 if label == "medium" else 5), repeat)
            with np.errstate(all="ignore"):
                flc = median_time(lambda: floor_step(Pc.a, Pc.W, Pc.a_star, Pc.W_star),
                                  max(repeat, 5) * (50 if label != "large" else 3))
            row["close_pair_fraction"] = close_pair_fraction(P)
            row["close_pair_fraction_clustered"] = close_pair_fraction(Pc)
            row["float64_over_floor_clustered"] = f64c / flc
        if label != "large":
            for name in hp:
                for dps in (30, 50):
                    Ph = Problem.from_instance(inst, make_engine(name, dps))
                    steps = 1 if (smoke or label == "medium") else 3
                    row[f"{name}{dps}_steps_per_s"] = 1 / gd_step_time(Ph, steps, repeat)
        out[label] = row
        log(f"  {label:<7} m*={m_star:<3} m={m:<4} d={d:<4} float64 {row['float64_steps_per_s']:9.1f}/s "
            f"(floor {fl * 1e3:.3f} ms, ratio {row['float64_over_floor']:.2f})  "
            + "  ".join(f"{k.replace('_steps_per_s', '')} {v:.2f}/s" for k, v in row.items()
                        if k.endswith("_steps_per_s") and not k.startswith("float64")))
    return out


def mc_gradient(P: Problem, n: int, rng: np.random.Generator, batch: int = 500_000) -> np.ndarray:
    """The numpy Monte-Carlo gradient of L a user would write: mean of the pathwise gradient."""
    ga = np.zeros(len(P.a))
    gW = np.zeros(P.W.shape)
    done = 0
    while done < n:
        k = min(batch, n - done)
        X = rng.standard_normal((k, P.W.shape[1]))
        Zs = X @ P.W.T
        act = np.maximum(Zs, 0)
        r = act @ P.a - np.maximum(X @ P.W_star.T, 0) @ P.a_star  # f_theta - f*
        ga += 2 * act.T @ r
        gW += 2 * P.a[:, None] * (((Zs > 0) * r[:, None]).T @ X)
        done += k
    return np.concatenate([ga, gW.ravel()]) / n


def bench_monte_carlo(size: tuple, repeat: int, smoke: bool, log: Callable[[str], None]) -> dict:
    P = Problem.from_instance(reference_instance(*size), make_engine("float64"))
    ev = P.evaluate()
    exact = np.concatenate([ev.loss_grad_a, ev.loss_grad_W.ravel()])
    t_exact = median_time(lambda: P.evaluate(), max(repeat, 20))
    norm = float(np.linalg.norm(exact))
    rng = np.random.default_rng(1)
    n0 = 2_000 if smoke else 100_000
    consts = []
    for _ in range(max(repeat, 5)):
        err = float(np.linalg.norm(mc_gradient(P, n0, rng) - exact)) / norm
        consts.append(err * math.sqrt(n0))
    C = statistics.median(consts)
    out: dict[str, Any] = {"instance": "small" if not smoke else "smoke", "error_constant_C": C,
                           "exact_gradient_s": t_exact, "error_measure": "||g_mc - g|| / ||g||"}
    target = 1e-2 if smoke else 1e-3
    n_need = math.ceil((C / target) ** 2)
    times, errs = [], []
    for _ in range(1 if smoke else repeat):
        t = time.perf_counter()
        g = mc_gradient(P, n_need, rng)
        times.append(time.perf_counter() - t)
        errs.append(float(np.linalg.norm(g - exact)) / norm)
    t_need = statistics.median(times)
    out["measured"] = {"target_rel_error": target, "samples": n_need, "seconds": t_need,
                       "rel_error_reached": statistics.median(errs), "over_exact": t_need / t_exact}
    n6 = math.ceil((C / 1e-6) ** 2)
    out["extrapolated_1e-6"] = {"samples": n6, "seconds": t_need * n6 / n_need,
                                "note": "extrapolated from the measured 1/sqrt(n) law"}
    log(f"  exact gradient {t_exact * 1e6:.0f} us; Monte Carlo err = {C:.2f}/sqrt(n): "
        f"{target:g} needs {n_need:.3g} samples, {t_need:.2f} s (measured, error reached "
        f"{out['measured']['rel_error_reached']:.2g}); 1e-6 needs {n6:.3g} samples, "
        f"{out['extrapolated_1e-6']['seconds']:.3g} s (extrapolated)")
    try:
        import torch  # noqa: F401
    except ImportError:
        out["torch"] = "not installed: skipped"
        log("  PyTorch not installed: skipped")
    return out


def naive_evaluation(inst: Instance, dps: int) -> Callable[[], object]:
    """One call of the naive mpmath evaluation (naive_mpmath.py) of the instance at dps digits."""
    with mpmath.workdps(dps):
        a = [mpmath.mpf(x) for x in inst.student_a]
        W = [[mpmath.mpf(x) for x in row] for row in inst.student_W]
        a_star = [mpmath.mpf(x) for x in inst.teacher_a]
        W_star = [[mpmath.mpf(x) for x in row] for row in inst.teacher_W]
        W_star = [[x / mpmath.sqrt(sum(y * y for y in row)) for x in row] for row in W_star]
        lam = mpmath.mpf(inst.lam)

    def run() -> object:
        with mpmath.workdps(dps):
            return naive_mpmath.evaluate(a, W, a_star, W_star, lam)
    return run


def engine_evaluation(inst: Instance, name: str, dps: int) -> Callable[[], object]:
    """One evaluation of L_lambda and its gradient by the engine ``name`` from its iterate's numbers.

    mpf arrays for "mp" and "mpmath" (``Problem.evaluate``: converted to the working
    numbers and back inside); the Arb midpoints for "mp-arb" (``Problem.evaluate_work``,
    converted once here, outside the timing, as a run converts its iterate once).
    """
    P = Problem.from_instance(inst, make_engine(name, dps))
    nums = iterate_numbers(P)
    with P.engine.context():
        if nums is None:
            def run() -> object:
                with P.engine.context():
                    return P.evaluate()
        else:
            a, W, lam = nums.to(P.a), nums.to(P.W), nums.to(P.lam)

            def run() -> object:
                with P.engine.context():
                    return P.evaluate_work(a, W, lam=lam)
    return run


def interleaved_cpu_times(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median CPU seconds of this thread per call of each function, the functions taking turns.

    One warm-up call each, then ``rounds`` rounds of one call of every function:
    the thread's CPU time (``time.thread_time``) does not count the time the
    process waits for a core on a shared machine, and the turns give every
    function the same share of what load does to the caches and clock.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.thread_time()
            fn()
            times[k].append(time.thread_time() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_high_precision(sizes: dict, repeat: int, smoke: bool, log: Callable[[str], None]) -> dict:
    """Each engine's evaluation against naive mpmath: the ratio of CPU times per call, interleaved."""
    out: dict[str, Any] = {}
    for label in ("small", "medium"):
        inst = reference_instance(*sizes[label])
        for dps in (50, 100):
            fns = {"naive_mpmath": naive_evaluation(inst, dps)}
            fns.update({name: engine_evaluation(inst, name, dps) for name in engine_names()})
            rounds = 1 if smoke else (5 * repeat if label == "small" else repeat)
            t = interleaved_cpu_times(fns, rounds)
            row: dict[str, Any] = {"naive_mpmath_s": t["naive_mpmath"], "rounds": rounds,
                                   "clock": "thread CPU time, interleaved rounds, median"}
            for name in engine_names():
                row[f"{name}_s"] = t[name]
                row[f"{name}_speedup"] = row["naive_mpmath_s"] / row[f"{name}_s"]
            out[f"{label}_{dps}dps"] = row
            log(f"  {label:<7} {dps:>3} digits: naive mpmath {row['naive_mpmath_s'] * 1e3:8.1f} ms, "
                + ", ".join(f"{n} {row[f'{n}_s'] * 1e3:.2f} ms ({row[f'{n}_speedup']:.1f}x)"
                            for n in engine_names()))
    return out


def bench_angle_error(pairs: int, log: Callable[[str], None]) -> dict:
    """Largest relative error of phi, sin phi on the Gram route, by |t| threshold, vs 40 digits."""
    e = make_engine("float64")
    rng = np.random.default_rng(0)
    errs_all, onemt_all = [], []
    for d in (4, 20, 100):
        U = rng.standard_normal((pairs, d))
        delta = 10 ** rng.uniform(-4, 0, pairs)  # 1 - |t| log-uniform in [1e-4, 1]
        phi0 = np.arccos(1 - delta)
        phi0 = np.where(rng.random(pairs) < 0.5, phi0, np.pi - phi0)
        Uh = U / np.linalg.norm(U, axis=1)[:, None]
        R = rng.standard_normal((pairs, d))
        R -= (R * Uh).sum(1)[:, None] * Uh
        V = np.cos(phi0)[:, None] * Uh + np.sin(phi0)[:, None] * (R / np.linalg.norm(R, axis=1)[:, None])
        _, uh, _ = objective._norms_and_units(e, U)
        _, vh, _ = objective._norms_and_units(e, V)
        for k in range(pairs):
            t = uh[k:k + 1] @ vh[k:k + 1].T
            a, b = objective.half_angle_norms(e, uh[k:k + 1], vh[k:k + 1], t, threshold=2.0)
            phi, sp = float(2 * np.arctan2(a, b)[0, 0]), float((a * b / 2)[0, 0])
            with mpmath.workdps(40):
                u = [mpmath.mpf(float(x)) for x in U[k]]
                v = [mpmath.mpf(float(x)) for x in V[k]]
                nu, nv = mpmath.sqrt(mpmath.fsum(x * x for x in u)), mpmath.sqrt(mpmath.fsum(x * x for x in v))
                dd = mpmath.sqrt(mpmath.fsum((x / nu - y / nv) ** 2 for x, y in zip(u, v)))
                ss = mpmath.sqrt(mpmath.fsum((x / nu + y / nv) ** 2 for x, y in zip(u, v)))
                ref = 2 * mpmath.atan2(dd, ss)
                errs_all.append(float(max(abs(phi - ref) / ref, abs(sp - mpmath.sin(ref)) / mpmath.sin(ref))))
            onemt_all.append(1 - abs(float(t[0, 0])))
    errs, onemt = np.array(errs_all), np.array(onemt_all)
    out = {"pairs": len(errs), "reference": "40-digit mpmath of the same float64 rows"}
    for tau in (0.5, 0.9, 0.99, 0.999):
        sel = onemt >= 1 - tau
        out[f"max_rel_error_t_le_{tau}"] = float(errs[sel].max()) if sel.any() else None
    out["threshold_used"] = objective.ACCURATE_T
    log("  Gram-route max rel. error of phi, sin phi for |t| <= tau: "
        + ", ".join(f"tau={tau}: {out[f'max_rel_error_t_le_{tau}']:.1e}" for tau in (0.5, 0.9, 0.99, 0.999)
                    if out[f"max_rel_error_t_le_{tau}"] is not None)
        + f"  (ACCURATE_T = {objective.ACCURATE_T})")
    return out


def hp_arb_iterate_figures(hp: dict) -> dict:
    """The Arb-iterate engine's figures (same run as naive mpmath and the mp engine), if it was measured."""
    if "mp-arb_speedup" not in hp.get("small_50dps", {}):
        return {}
    return {f"hp_arb_iterate_speedup_vs_naive_mpmath_{dps}dps": {k: hp[f"{k}_{dps}dps"]["mp-arb_speedup"]
                                                                  for k in ("small", "medium")}
            for dps in (50, 100)} | {
        "hp_arb_iterate_over_mp_50dps": {k: hp[f"{k}_50dps"]["mp_s"] / hp[f"{k}_50dps"]["mp-arb_s"]
                                         for k in ("small", "medium")}}


def bench_number_types(dps: int, rounds: int, log: Callable[[str], None]) -> dict:
    """CPU time per call of the per-pair operations in python-flint arb and gmpy2 mpfr, at the
    mp engine's working precision for ``dps`` digits (why the iterate's numbers are arb: the atan2)."""
    import gmpy2
    from flint import arb, ctx

    prec = make_engine("mp", dps).work_prec
    calls = 2000
    with ctx.workprec(prec), gmpy2.context(precision=prec):
        xa, ya = arb(2) / 3, arb(5) / 7
        xm, ym = gmpy2.mpfr(2) / 3, gmpy2.mpfr(5) / 7
        ops = {"mul": (lambda: xa * ya, lambda: xm * ym),
               "sqrt": (lambda: xa.sqrt(), lambda: gmpy2.sqrt(xm)),
               "atan2": (lambda: arb.atan2(xa, ya), lambda: gmpy2.atan2(xm, ym)),
               "acos": (lambda: xa.acos(), lambda: gmpy2.acos(xm))}

        def loop(f: Callable[[], object]) -> Callable[[], None]:
            def run() -> None:
                for _ in range(calls):
                    f()
            return run

        fns = {f"{op}_{kind}": loop(f) for op, pair in ops.items() for kind, f in zip(("arb", "mpfr"), pair)}
        t = interleaved_cpu_times(fns, rounds)
    out: dict[str, Any] = {"working_bits": prec, "clock": "thread CPU time per call, interleaved rounds, median"}
    for op in ops:
        out[op] = {"arb_us": t[f"{op}_arb"] / calls * 1e6, "mpfr_us": t[f"{op}_mpfr"] / calls * 1e6}
    log(f"  per call at {prec} bits: " + ", ".join(
        f"{op} arb {out[op]['arb_us']:.2f} us / mpfr {out[op]['mpfr_us']:.2f} us" for op in ops))
    return out


def run_hp_only(smoke: bool, repeat: int, log: Callable[[str], None]) -> dict:
    """The high-precision section alone: the keys it sets in results.json (merged, the rest kept)."""
    t0 = time.perf_counter()
    log("High-precision engines against naive mpmath (scalar loops over pairs), one evaluation")
    hp = bench_high_precision(SMOKE_SIZES if smoke else SIZES, repeat, smoke, log)
    out: dict[str, Any] = {"high_precision": hp, "hp_engine": "mp"}
    for dps in (50, 100):
        out[f"hp_speedup_vs_naive_mpmath_{dps}dps"] = {k: hp[f"{k}_{dps}dps"]["mp_speedup"]
                                                       for k in ("small", "medium")}
    out.update(hp_arb_iterate_figures(hp))
    out["hp_number_types_50dps"] = bench_number_types(50, 1 if smoke else 5 * repeat, log)
    out["high_precision_run"] = {"repeat": repeat, "smoke": smoke, "machine": machine(),
                                 "seconds": time.perf_counter() - t0}
    out["high_precision_run"]["machine"]["load_average_at_end"] = (os.getloadavg() if hasattr(os, "getloadavg")
                                                                   else None)
    return out


def machine() -> dict:
    import flint

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:
        import gmpy2
        gmpy = gmpy2.version()
    except ImportError:
        gmpy = None
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "load_average_at_start": load,
            "versions": {"python": platform.python_version(), "numpy": np.__version__,
                         "mpmath": mpmath.__version__, "mpmath_backend": mpmath.libmp.BACKEND,
                         "gmpy2": gmpy, "python-flint": flint.__version__}}


def bench_baseline(src: str, smoke: bool, repeat: int, log: Callable[[str], None]) -> dict:
    """The engines section run against another checkout's checker (e.g. a worktree of main)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "baseline.json")
        cmd = [sys.executable, __file__, "--engines-only", "--repeat", str(repeat), "--json", out]
        proc = subprocess.run(cmd + (["--smoke"] if smoke else []), capture_output=True, text=True,
                              env={**os.environ, "BENCH_CHECKER_SRC": src})
        if proc.returncode != 0:
            log(f"  baseline failed: {proc.stderr.strip().splitlines()[-1:]}")
            return {"source": src, "error": proc.stderr.strip()[-500:]}
        with open(out, encoding="utf-8") as fh:
            data = json.load(fh)
    log(proc.stdout.rstrip())
    head = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True)
    return {"source": src, "commit": head.stdout.strip() or None, "engines": data["engines"]}


def run(smoke: bool, repeat: int, log: Callable[[str], None]) -> dict:
    sizes = SMOKE_SIZES if smoke else SIZES
    res: dict[str, Any] = {"version": VERSION, "smoke": smoke, "repeat": repeat, "machine": machine()}
    t0 = time.perf_counter()
    log("Steps per second (gradient descent, exact population gradient), float64 over the floor")
    res["engines"] = bench_engines(sizes, repeat, smoke, log)
    log("Exact gradient against the Monte-Carlo gradient (numpy), small instance")
    res["monte_carlo"] = bench_monte_carlo(sizes["small"], repeat, smoke, log)
    log("High-precision engine against naive mpmath (scalar loops over pairs), one evaluation")
    res["high_precision"] = bench_high_precision(sizes, repeat, smoke, log)
    log("Accuracy of the Gram route of the angle (the threshold ACCURATE_T)")
    res["angle_error"] = bench_angle_error(20 if smoke else 1000, log)
    res["float64_over_floor"] = {k: res["engines"][k]["float64_over_floor"] for k in ("medium", "large")}
    res["float64_over_floor_clustered"] = {k: res["engines"][k]["float64_over_floor_clustered"]
                                           for k in ("medium", "large")}
    res["hp_engine"] = "mp"
    res["hp_speedup_vs_naive_mpmath_50dps"] = {k: res["high_precision"][f"{k}_50dps"]["mp_speedup"]
                                               for k in ("small", "medium")}
    res["hp_speedup_vs_naive_mpmath_100dps"] = {k: res["high_precision"][f"{k}_100dps"]["mp_speedup"]
                                                for k in ("small", "medium")}
    res.update(hp_arb_iterate_figures(res["high_precision"]))
    res["hp_number_types_50dps"] = bench_number_types(50, 1 if smoke else 5 * repeat, log)
    res["mc_samples_for_1e-3"] = (res["monte_carlo"]["measured"]["samples"] if not smoke else
                                  math.ceil((res["monte_carlo"]["error_constant_C"] / 1e-3) ** 2))
    res["mc_samples_for_1e-6"] = res["monte_carlo"]["extrapolated_1e-6"]["samples"]
    for key in PLACEHOLDERS:
        res[key] = None
    res["seconds"] = time.perf_counter() - t0
    res["machine"]["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return res


def before_after(res: dict, log: Callable[[str], None]) -> dict:
    """Steps/s of this checkout over the baseline's, per instance and engine, from the same run."""
    base = res["baseline"].get("engines")
    if not base:
        return {}
    out: dict[str, dict] = {}
    for label, row in res["engines"].items():
        b = base.get(label, {})
        out[label] = {k.replace("_steps_per_s", ""): {"before": b[k], "after": v, "speedup": v / b[k]}
                      for k, v in row.items() if k.endswith("_steps_per_s") and k in b}
        if "float64_over_floor" in b:
            out[label]["float64_over_floor"] = {"before": b["float64_over_floor"],
                                                "after": row["float64_over_floor"]}
    log("Before -> after (steps/s, same run): " + "; ".join(
        f"{label} " + ", ".join(f"{k} {v['before']:.3g} -> {v['after']:.3g}" for k, v in r.items())
        for label, r in out.items()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny instances, a few seconds (for CI)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats per figure (median), 1..50")
    ap.add_argument("--json", help="output file (default benchmarks/results.json; none with --smoke)")
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    ap.add_argument("--no-progress", action="store_true", help="print only the final JSON path")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also time the engines of the checker in DIR (e.g. a worktree of main): before/after")
    ap.add_argument("--engines-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hp-only", action="store_true",
                    help="only the high-precision section; its keys are merged into the JSON (the rest kept)")
    args = ap.parse_args(argv)
    if args.baseline is not None and not (Path(args.baseline) / "checker" / "objective.py").is_file():
        print(f"bench: --baseline {args.baseline}: no checker/core/objective.py there", file=sys.stderr)
        return 2
    if not 1 <= args.repeat <= 50:
        print("bench: --repeat must be between 1 and 50", file=sys.stderr)
        return 2
    path = args.json or (None if args.smoke else str(ROOT / "benchmarks" / "results.json"))
    if path is not None:
        from checker.core.io import check_output_file
        from checker.core.errors import CheckerError
        try:
            check_output_file("--json", path)
        except CheckerError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
    log = (lambda s: None) if args.no_progress else (lambda s: print(s, flush=True))
    allocator = tune_allocator()
    if args.hp_only:
        res = run_hp_only(args.smoke, args.repeat, log)
        res["high_precision_run"]["note"] = args.note
        if path is not None:
            from checker.core.io import merge_json_atomic
            merge_json_atomic(path, res)
            log(f"merged the high-precision keys into {path}")
        return 0
    if args.engines_only:
        log(f"Baseline engines ({SRC})")
        res = {"engines": bench_engines(SMOKE_SIZES if args.smoke else SIZES, args.repeat, args.smoke, log)}
    else:
        res = run(args.smoke, args.repeat, log)
        if args.baseline:
            res["baseline"] = bench_baseline(args.baseline, args.smoke, args.repeat, log)
            res["before_after"] = before_after(res, log)
    res["note"] = args.note
    res["allocator_tuned"] = allocator
    if path is not None:
        write_json_atomic(path, res)
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
