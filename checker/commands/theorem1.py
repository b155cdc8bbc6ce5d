"""``python -m checker.theorem1``: the local-convergence theorem (formalization T1) on one instance.

Parsing, printing, figures and the counterexample file.  What is checked (H1-H4, C1-C7), the
operational definitions, the phases of a run and its checkpoints, and what is rigorous are
described once, in ``checker.theorem.check`` (and ``docs/formalization.md``).  Exit statuses:
0 every conclusion held, 1 a conclusion failed (a counterexample file is written), 2 bad input
or unmet hypotheses, 3 inconclusive, 4 outside T1 (``--force``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from checker.commands.cli import UsageParser, run_guarded
from checker.commands.options import MAX_SEED, MAX_STEPS, OPTIONS, layer_engine, max_dps, parse_option
from checker.commands.presets import DEFAULT_PRESET, RunFile, load_preset, load_run_file, preset_names
from checker.core.constants import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, EXIT_OK,
                                    EXIT_OUTSIDE_T1)
from checker.core.engines import MIN_DPS
from checker.core.model import Instance
from checker.theorem.check import Options, TheoremCheck
from checker.theorem.verdict import Check, Report, _fmt


# --------------------------------------------------------------------------- printing
def print_header(report_instance: Instance, check: TheoremCheck, source: str, out: Any = None) -> None:
    out = out or sys.stdout
    inst = report_instance
    print(f"T1 check — {source}: {inst.activation}, d={inst.d}, m*={inst.m_star}, m={inst.m}, "
          f"lambda={inst.lam}, eta={inst.eta}, engine={check.engine.describe()}", file=out)


def print_checks(title: str, checks: list[Check], out: Any = None) -> None:
    out = out or sys.stdout
    print(f"\n{title}", file=out)
    for c in checks:
        mark = {True: "holds", False: "FAILS", None: "n/a"}[c.holds]
        rig = " [rigorous]" if c.rigorous else ""
        print(f"  {c.id:<15} {mark:<6} {c.value} (bound {c.bound}){rig}", file=out)
        print(f"  {'':<15}        {c.statement}", file=out)
        if c.detail:
            print(f"  {'':<15}        {c.detail}", file=out)


def print_report(report: Report, out: Any = None) -> None:
    out = out or sys.stdout
    if report.conclusions:
        print_checks("Conclusions", report.conclusions, out)
    if report.final:
        f = report.final
        print(f"\nFinal: L = {f['loss']}, L_lambda = {f['reg_loss']}, gap <= {f['gap_upper']} "
              f"({'rigorous' if f['gap_rigorous'] else 'estimate'})", file=out)
        lo, hi = report.L_star_interval["lower"], report.L_star_interval["upper"]
        print(f"L*_lambda in [{lo}, {hi}]", file=out)
    if report.constants:
        print("\nMeasured constants (this checker's measurements, not the paper's constants):", file=out)
        for k, v in report.constants.items():
            if k in ("stages", "reduced_optimum"):
                continue
            print(f"  {k:<30} {_fmt(v)}", file=out)
    red = report.constants.get("reduced_optimum")
    if red:
        print(f"\nReduced lambda-optimum (one neuron per teacher, lambda = {red['lambda']:.4g}; the target of D): "
              f"signed masses {[f'{x:.6g}' for x in red['signed_mass']]}, angles to the teachers "
              f"{[f'{x:.3g}' for x in red['angle_to_teacher']]} rad", file=out)
    for n in report.notes:
        print(f"note: {n}", file=out)
    print(f"\nverdict: {report.verdict}" + (f" — {report.message}" if report.message else ""), file=out)


# --------------------------------------------------------------------------- command line
def build_parser() -> UsageParser:
    p = UsageParser(prog="python -m checker.theorem1",
                    description="Check the local-convergence theorem (T1) on one instance.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help=f"embedded instance (default: {DEFAULT_PRESET}); --list-presets lists them")
    src.add_argument("--instance", help="instance or run file (JSON)")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    # Option values are read as text and validated by the one table of checker.commands.options
    # (the same ranges and messages as the keys of a run file).
    p.add_argument("--engine", help="'float64' (default) or 'mp'")
    p.add_argument("--dps", help=f"digits for --engine mp ({MIN_DPS} to {max_dps()}, default 50)")
    p.add_argument("--schedule", help="'fixed' or 'geometric:factor=0.5,switch=1e-2,min=1e-4'")
    p.add_argument("--steps", help=f"step budget (1 to {MAX_STEPS})")
    p.add_argument("--eta", help="step size (overrides the instance)")
    p.add_argument("--gap-target", help="stop when the gap bound is below this (> 0)")
    p.add_argument("--time-budget", help="seconds of wall time for the descent (> 0)")
    p.add_argument("--radius", help="neighbourhood radius r in radians, 0 < r <= pi (default Delta/3)")
    p.add_argument("--threshold", help="eps_0 of H4, > 0 (default: the checker's choice)")
    p.add_argument("--json", help="write the result (schema in README) to this file")
    p.add_argument("--plots", help="write figures to this folder (created if missing)")
    p.add_argument("--seed", help=f"seed of the randomized searches, 0 to {MAX_SEED} (default 0)")
    p.add_argument("--checkpoint", help="checkpoint file (written periodically, on Ctrl-C and at the end)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--force", action="store_true", help="run even when hypotheses are unmet")
    p.add_argument("--no-hybrid", action="store_true",
                   help="mp engine: every step in mp (default: float64 steps until float64's precision "
                        "floor, then mp from that iterate; checker.dynamics.hybrid)")
    p.add_argument("--counterexample-dir", default=".",
                   help="folder where a failing instance is saved (default .; created if missing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def options_from(args: argparse.Namespace, rf: RunFile) -> Options:
    """The run options: command-line flags over the run file's, each validated by the one table."""
    run = rf.run  # validated when the run file was read (checker.commands.presets)
    cli = {key: parse_option(key, getattr(args, key)) for key in OPTIONS
           if key not in ("force", "hybrid") and getattr(args, key, None) is not None}

    def pick(key: str, default: Any) -> Any:
        return cli.get(key, run.get(key, default))

    engine, dps = layer_engine(cli.get("engine"), cli.get("dps"), run.get("engine"), run.get("dps"))
    return Options(
        engine=engine, dps=dps,
        schedule=pick("schedule", "fixed"),
        steps=pick("steps", 20_000),
        eta=pick("eta", None),
        gap_target=pick("gap_target", None),
        time_budget=pick("time_budget", None),
        radius=pick("radius", None),
        threshold=pick("threshold", None),
        seed=pick("seed", 0),
        force=args.force or run.get("force", False), checkpoint=args.checkpoint, resume=args.resume,
        progress=not args.no_progress,
        hybrid=not args.no_hybrid and run.get("hybrid", True),
    )


def check_outputs(args: argparse.Namespace, d: int) -> None:
    """Probe every file and folder the run will write, before any computation (exit 2).

    The result may not be the instance or the checkpoint; the checkpoint may not be
    the instance; figures and counterexamples follow the same rule (a path that exists
    and is not a regular file is refused, never replaced; symbolic links are written
    through).
    """
    from checker.core.io import check_output_dir, check_output_file

    if args.json:
        check_output_file("--json", args.json,
                          distinct_from={"--instance": args.instance, "--checkpoint": args.checkpoint})
    if args.checkpoint:
        check_output_file("--checkpoint", args.checkpoint, distinct_from={"--instance": args.instance})
    if args.plots:
        from checker.commands.figures import check_plotting
        check_plotting(args.plots, d, distinct_from={"--instance": args.instance, "--json": args.json,
                                                     "--checkpoint": args.checkpoint})
    check_output_dir("--counterexample-dir", args.counterexample_dir)


def write_counterexample(rf: RunFile, opts: Options, report: Report, folder: str) -> Path:
    from checker.core.io import write_json_atomic

    run = {k: v for k, v in asdict(opts).items()
           if k in ("engine", "dps", "schedule", "steps", "eta", "gap_target", "time_budget", "radius",
                    "seed", "threshold", "force", "hybrid") and v is not None}
    name = (rf.instance.name or "instance").replace("/", "_")
    path = Path(folder) / f"counterexample-{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json_atomic(path, {"description": f"T1 counterexample: {report.message}",
                             "instance": rf.instance.to_dict(), "run": run})
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        if args.list_presets:
            for name in preset_names():
                print(f"{name}: {load_preset(name).description}")
            return EXIT_OK
        if args.instance:
            rf = load_run_file(args.instance)
            source = args.instance
        else:
            rf = load_preset(args.preset or DEFAULT_PRESET)
            source = f"preset {args.preset or DEFAULT_PRESET}"
        opts = options_from(args, rf)
        check_outputs(args, rf.instance.d)
        check = TheoremCheck(rf, opts)
        if opts.progress:
            check.say = lambda text: print(text, file=sys.stderr, flush=True)
        print_header(check.instance, check, source)
        report = check.run(on_hypotheses=lambda hyps: print_checks("Hypotheses", hyps))
        sys.stdout.flush()
        print_report(report)
        if args.json:
            from checker.core.io import write_json_atomic
            write_json_atomic(args.json, report.to_dict())
            print(f"result written to {args.json}")
        if args.plots and report.run:
            from checker.commands.figures import make_plots
            for p in make_plots(check, report, args.plots):
                print(f"figure: {p}")
        if report.verdict == "fails":
            path = write_counterexample(rf, opts, report, args.counterexample_dir)
            print(f"counterexample written to {path} (reproduce: python -m checker.theorem1 --instance {path})")
            return EXIT_FAILED
        if report.verdict == "hypotheses-unmet":
            print(f"python -m checker.theorem1: error: hypotheses unmet: {report.message}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if report.verdict == "inconclusive":
            return EXIT_INCONCLUSIVE
        if report.verdict == "outside-T1":
            return EXIT_OUTSIDE_T1
        if report.verdict == "interrupted":
            return EXIT_INTERRUPTED
        return EXIT_OK

    return run_guarded(body, "python -m checker.theorem1")
