"""``python -m checker.landscape TEACHER``: where gradient descent from random starts ends.

TEACHER is ``orthonormal:K`` (K orthonormal relu neurons W* = I_K in d = K, output
weights 1), an instance or run file (its teacher; its student is not used) or a
preset name.  Each of ``--seeds S`` runs (seeds ``--seed`` .. ``--seed`` + S - 1)
starts at a seeded random point, descends, polishes with Newton and is classified;
the distinct end points up to symmetry are grouped into classes, each certified in
Arb (``checker.stationary.study``; docs/landscape.md).

Resume: with ``--results FILE.jsonl`` every completed run is appended as one line
(as ``checker.sweep`` does); a rerun with the same parameters computes only the
seeds the file does not hold.  Executors: ``--workers W`` local processes, or a
Dask scheduler (``--scheduler ADDRESS``).

Exit status: 0 done; 2 bad input; 130 interrupted (the partial result is written).
"""

from __future__ import annotations

import re
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Sequence

from checker.commands.cli import EXIT_OK, UsageParser, run_guarded
from checker.core import hessian as hs
from checker.core.errors import CheckerError, InstanceError

PROG = "python -m checker.landscape"
EXIT_INTERRUPTED = 130
MAX_WIDTH = 1000


def build_parser() -> UsageParser:
    p = UsageParser(prog=PROG, description="Random starts, gradient descent and Newton to stationary points, "
                                           "their classes up to symmetry and Arb certificates.")
    p.add_argument("teacher", help="orthonormal:K, an instance or run file (its teacher), or a preset name")
    p.add_argument("--width", help="student width N (default: the teacher's m*)")
    p.add_argument("--train", choices=list(hs.TRAIN_CHOICES), default="first",
                   help="trained blocks (default first: W only, output weights fixed at 1)")
    p.add_argument("--lambda", dest="lam", default="0", help="weight decay lambda >= 0 (default 0)")
    p.add_argument("--seeds", default="100", help="number of random starts S (default 100)")
    p.add_argument("--seed", default="0", help="first seed (default 0)")
    p.add_argument("--eta", help="gradient descent step (default min(2.5 / N, 1.8 / lambda_top at the teacher): "
                                      "the public code's 5 / k on one half of our loss)")
    p.add_argument("--steps", help="gradient descent step budget per run (default 200000)")
    p.add_argument("--newton-entry", help="gradient norm at which Newton takes over (default 1e-6)")
    p.add_argument("--grad-tol", help="the protocol's gradient tolerance (default 2e-12)")
    p.add_argument("--certify", choices=["none", "spurious", "all"], default="spurious",
                   help="which class representatives to certify (default spurious)")
    p.add_argument("--continuation", help="comma-separated increasing lambda values: continue each spurious "
                                          "class by Newton in lambda")
    p.add_argument("--workers", default="1", help="local worker processes (default 1)")
    p.add_argument("--scheduler", help="Dask scheduler address (instead of --workers; docs/dask.md): checked first, "
                                       "a dead worker's chunks rerun on the others, no workers: waits and warns")
    p.add_argument("--chunk", default="250", help="largest batch of starts run together (default 250)")
    p.add_argument("--results", help="JSONL file of the runs (appended; a rerun computes only missing seeds)")
    p.add_argument("--json", help="write the study's result here")
    p.add_argument("--plots", help="folder for the figures (end-loss histogram, spectra; created if missing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _int(flag: str, text: str, low: int, high: int) -> int:
    try:
        d = Decimal(text.strip()) if len(text) <= 30 else None
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite() or d != d.to_integral_value() or not low <= d <= high:
        raise InstanceError(flag, f"expected a whole number from {low} to {high}, got {text[:40]!r}")
    return int(d)


def _float(flag: str, text: str, *, positive: bool = False) -> float:
    try:
        d = Decimal(text.strip()) if len(text) <= 100 else None
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite() or d < 0 or (positive and d == 0) or float(d) == float("inf"):
        what = "a finite number > 0" if positive else "a finite number >= 0"
        if d is not None and d.is_finite() and d < 0 and flag == "--lambda":
            raise InstanceError(flag, f"lambda must be >= 0, got {text.strip()}")
        raise InstanceError(flag, f"expected {what}, got {text[:40]!r}")
    return float(d)


def resolve_teacher(text: str) -> tuple[str, str, Any, Any, bool]:
    """(name, activation, a*, W*, orthonormal) from ``orthonormal:K``, a file or a preset."""
    from checker.core.engines import Float64Engine
    from checker.core.problem import Problem
    from checker.stationary.study import MAX_TEACHER, is_orthonormal_identity, orthonormal_teacher

    t = text.strip()
    if t.lower().startswith("orthonormal"):
        m = re.fullmatch(r"orthonormal:(\d{1,4})", t)
        if not m or not 1 <= int(m.group(1)) <= MAX_TEACHER:
            raise InstanceError("TEACHER", f"expected orthonormal:K with K a whole number from 1 to {MAX_TEACHER} "
                                           f"(K orthonormal neurons in d = K), got {t[:40]!r}")
        a, W = orthonormal_teacher(int(m.group(1)))
        return t, "relu", a, W, True
    from checker.commands.presets import load_preset, load_run_file, preset_names

    if Path(t).exists():
        inst = load_run_file(t).instance
    elif t in preset_names():
        inst = load_preset(t).instance
    else:
        raise InstanceError("TEACHER", f"{t[:60]!r} is neither orthonormal:K, an existing file, nor a preset "
                                       f"({', '.join(preset_names())})")
    p = Problem.from_instance(inst, Float64Engine())
    a = tuple(float(x) for x in p.a_star)
    W = tuple(tuple(float(x) for x in r) for r in p.W_star)
    return t, inst.activation, a, W, is_orthonormal_identity(a, W)


def _lams(text: str) -> list[float]:
    parts = [s for s in text.split(",") if s.strip()]
    if not parts or len(parts) > 100:
        raise InstanceError("--continuation", "expected 1 to 100 comma-separated lambda values")
    vals = [_float("--continuation", s) for s in parts]
    if any(b <= a for a, b in zip(vals, vals[1:])):
        raise InstanceError("--continuation", "the lambda values must increase")
    return vals


def print_summary(d: dict[str, Any], out: Any = None) -> None:
    out = out or sys.stdout
    sf = d["spurious_fraction"]
    c = d["counts"]
    spec = d["spec"]
    print(f"{PROG}: teacher {spec['teacher']}, width {spec['width']}, train {spec['train']}, "
          f"lambda {spec['lam']}, eta {d['eta']:.6g}: {d['runs']} of {d['seeds_requested']} runs", file=out)
    val = "n/a" if sf["value"] is None else f"{sf['value']:.4f}"
    print(f"spurious fraction {val} (95% Wilson [{sf['interval'][0]:.4f}, {sf['interval'][1]:.4f}]); "
          + ", ".join(f"{k} {v}" for k, v in c.items()), file=out)
    pc = d["published_criterion"]
    print(f"published criterion (L >= 2e-3): {pc['count']} runs", file=out)
    print(f"reference value: {d['reference']['value']} ({d['reference']['how']})", file=out)
    for i, cl in enumerate(d["classes"]):
        cert = cl.get("certified")
        cs = "not certified"
        if cert:
            if cert.get("rigorous"):
                cs = ("certified: strict local minimum" if cert.get("strict_local_minimum") else
                      "certified: saddle" if cert.get("saddle") else "certified: unique stationary point")
                if cert.get("spurious"):
                    cs += f", spurious, gap >= {cert['gap_lower'][:12]}"
            else:
                cs = f"not rigorous ({cert.get('why')})"
        me = "n/a" if cl["min_eigenvalue"] is None else f"{cl['min_eigenvalue']:.4g}"
        print(f"  class {i}: {cl['category']:<13} L = {cl['loss']:.10g}  L_lambda = {cl['reg_loss']:.10g}  "
              f"min eig {me}  runs {cl['count']}  [{cs}]", file=out)
        for row in cl.get("continuation") or []:
            cc = row.get("certified") or {}
            gap = row.get("gap_to_lowest_lower")
            print(f"      lambda {row['lambda']}: {row['status']}, L_lambda {row.get('reg_loss', 'n/a')}, "
                  f"min eig {row.get('min_eigenvalue', 'n/a')}"
                  + (f", above the continued lowest class by >= {gap} (certified)" if gap else "")
                  + (f", certified {_certified_kind(cc)}" if cc.get("rigorous") else ""), file=out)


def _certified_kind(cc: dict[str, Any]) -> str:
    return "minimum" if cc.get("strict_local_minimum") else "saddle" if cc.get("saddle") else "n/a"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def say(text: str) -> None:
        print(f"{PROG}: {text}", file=sys.stderr)

    def body() -> int:
        from tqdm import tqdm

        from checker.core.io import check_output_dir, check_output_file, write_json_atomic
        from checker.stationary import study as st
        from checker.studies.sweep import append_record, read_results

        args = parser.parse_args(argv)
        name, activation, a_star, W_star, ortho = resolve_teacher(args.teacher)
        width = _int("--width", args.width, 1, MAX_WIDTH) if args.width is not None else len(a_star)
        if width < len(a_star):
            raise InstanceError("--width", f"the student width {width} is below the teacher's m* = {len(a_star)}")
        lam = _float("--lambda", args.lam)
        seeds_n = _int("--seeds", args.seeds, 1, st.MAX_SEEDS)
        base = _int("--seed", args.seed, 0, 2**32 - 1)
        eta = _float("--eta", args.eta, positive=True) if args.eta is not None else None
        steps = _int("--steps", args.steps, 1, 10**8) if args.steps is not None else st.MAX_STEPS
        entry = _float("--newton-entry", args.newton_entry, positive=True) if args.newton_entry else st.NEWTON_ENTRY
        gtol = _float("--grad-tol", args.grad_tol, positive=True) if args.grad_tol else st.GRAD_TOL
        workers = _int("--workers", args.workers, 1, 256)
        if args.scheduler is not None and not args.scheduler.strip():
            raise InstanceError("--scheduler", "empty address")
        chunk = _int("--chunk", args.chunk, 1, 100_000)
        lams = _lams(args.continuation) if args.continuation else None
        if lams and lams[0] <= lam:
            raise InstanceError("--continuation", f"the lambda values must be above the study's lambda {lam}")
        if gtol > entry:
            raise InstanceError("--grad-tol", f"must be at most --newton-entry ({entry})")
        spec = st.StudySpec(teacher=name, activation=activation, a_star=a_star, W_star=W_star, width=width,
                            train=args.train, lam=lam, eta=eta, newton_entry=entry, grad_tol=gtol,
                            max_steps=steps, orthonormal=ortho)
        paths = {}
        if args.json:
            check_output_file("--json", args.json)
            paths["--json"] = args.json
        if args.results:
            check_output_file("--results", args.results, distinct_from=paths)
        plots = check_output_dir("--plots", args.plots) if args.plots else None
        seeds = list(range(base, base + seeds_n))
        done = read_results(args.results, repair=True) if args.results else {}
        bar = tqdm(total=seeds_n, file=sys.stderr, disable=args.no_progress or not sys.stderr.isatty(),
                   desc="landscape", unit="run", dynamic_ncols=True)
        import time

        t0 = time.perf_counter()
        try:
            records, computed, interrupted, executor = st.run_study(
                spec, seeds, done=done, workers=workers, scheduler=args.scheduler, max_chunk=chunk,
                on_records=(lambda recs: [append_record(args.results, r) for r in recs]) if args.results
                else (lambda recs: None),
                progress=bar.update,
                warn=lambda text: tqdm.write(f"{PROG}: warning: {text}", file=sys.stderr))
        finally:
            bar.close()
        try:
            res = st.summarize(spec, seeds, records, certify_which=args.certify, interrupted=interrupted, say=say)
            if lams and not interrupted:
                low = next((c for c in res.classes if c.kind == "minimum" and c.category != "zero-neuron"), None)
                spurious = [c for c in res.classes if c.category == "spurious" and c is not low]
                if low is not None and spurious:
                    say(f"continuation of the lowest class L_lambda = {low.reg_loss:.10g} in lambda ...")
                    low.continuation = st.continue_in_lambda(spec, low.a, low.W, lams)
                for c in spurious:
                    say(f"continuation of the class L_lambda = {c.reg_loss:.10g} in lambda ...")
                    c.continuation = st.continue_in_lambda(spec, c.a, c.W, lams)
                    if low is not None:
                        st.compare_continuations(c.continuation, low.continuation)
        except KeyboardInterrupt:
            interrupted = True
            res = st.summarize(spec, seeds, records, certify_which="none", interrupted=True)
        res.seconds, res.computed, res.executor = time.perf_counter() - t0, computed, executor
        res.interrupted = interrupted
        d = res.to_dict()
        d["options"] = {"continuation": lams, "certify": args.certify, "workers": workers,
                        "results": args.results}
        print_summary(d)
        if interrupted:
            print(f"{PROG}: interrupted: {d['runs']} of {seeds_n} runs done"
                  + (f"; rerun the same command to compute the missing ones" if args.results else ""))
        if args.json:
            write_json_atomic(args.json, d)
            print(f"result written to {args.json}")
        if plots is not None and not interrupted:
            from checker.commands.landscape_figures import make_plots

            for p in make_plots(d, res.records, plots, f"{name}, N = {width}, train {args.train}, lambda {lam}"):
                print(f"figure {p}")
        return EXIT_INTERRUPTED if interrupted else EXIT_OK

    return run_guarded(body, PROG)
