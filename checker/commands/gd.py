"""``python -m checker.gd INSTANCE``: gradient descent alone, outside T1, for studies.

The command: parses, calls ``checker.studies.gd_run.run`` and prints; what the run
does, its history and its exit status are documented in ``checker.studies.gd_run``.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from pathlib import Path
from typing import Any, Sequence

from checker.commands.cli import UsageParser, run_guarded
from checker.commands.options import parse_option
from checker.commands.presets import load_preset, load_run_file, preset_names
from checker.core.constants import EXIT_FAILED, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, EXIT_OK
from checker.core.errors import CheckerError
from checker.core.io import check_output_dir, check_output_file, write_json_atomic
from checker.core.model import Instance
from checker.studies.gd_run import PROG, GDRunResult, Options, parse_history, run


def build_parser() -> UsageParser:
    p = UsageParser(prog=PROG, description="Gradient descent on L_lambda alone (outside T1), for studies.")
    p.add_argument("instance", nargs="?",
                   help="instance or run file (JSON; a run file's \"run\" options are not used); or --preset")
    p.add_argument("--preset", help="embedded instance instead of a file")
    p.add_argument("--lambda", dest="lam", help="weight decay lambda >= 0 (0 allowed: no weight decay); "
                                                "default: the instance's")
    p.add_argument("--eta", help="step size (default: the instance's)")
    p.add_argument("--train", choices=["both", "first", "second"], default="both",
                   help="trained blocks: both layers, the first layer W only (a fixed), the second a only")
    p.add_argument("--engine", choices=["float64", "mp"])
    p.add_argument("--dps", type=int, help="digits for --engine mp (default 50)")
    p.add_argument("--steps", type=int, default=10_000, help="step budget (default 10000)")
    p.add_argument("--time-budget", type=float, help="seconds of wall time")
    p.add_argument("--history", default="geometric", help="'geometric' (default) or 'every:N'")
    p.add_argument("--no-floor-stop", action="store_true",
                   help="run the whole step budget past the engine's precision floor (rows whose loss is "
                        "below ~100 ulps of ||f*||^2 are then rounding-limited)")
    p.add_argument("--start", help="start from the final a, W of a previous result of this command")
    p.add_argument("--json", help="write the result to this file")
    p.add_argument("--checkpoint", help="checkpoint file (written every 30 s, on Ctrl-C and at the end)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--counterexample-dir", default=".",
                   help="folder where a diverging run is saved (default .; created if missing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _options(args: argparse.Namespace) -> Options:
    engine = args.engine or ("mp" if args.dps is not None else "float64")
    if args.dps is not None and engine != "mp":
        raise CheckerError("--dps applies to --engine mp only")
    if args.dps is not None:
        parse_option("dps", args.dps)  # the one --dps range of every command
    parse_option("steps", args.steps)  # 1 to MAX_STEPS, as every command
    if args.time_budget is not None and not (args.time_budget > 0 and math.isfinite(args.time_budget)):
        raise CheckerError(f"--time-budget must be a positive number of seconds, got {args.time_budget}")
    for flag, value, positive in (("--lambda", args.lam, False), ("--eta", args.eta, True)):
        if value is None:
            continue
        try:
            v = float(value)
        except ValueError:
            v = math.nan
        if not re.fullmatch(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*", value) or not math.isfinite(v) \
                or (v <= 0 if positive else v < 0):
            raise CheckerError(f"{flag} must be a {'positive' if positive else 'non-negative'} decimal number, "
                               f"got {value!r}")
    if args.resume and not args.checkpoint:
        raise CheckerError("--resume needs --checkpoint FILE")
    return Options(engine=engine, dps=args.dps if engine == "mp" else None, lam=args.lam, eta=args.eta,
                   train=args.train, steps=args.steps, history=parse_history(args.history),
                   time_budget=args.time_budget, start=args.start, floor_stop=not args.no_floor_stop,
                   progress=not args.no_progress)


def exit_status(result: GDRunResult) -> int:
    return {"max-steps": EXIT_OK, "diverged": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}.get(
        result.stop_reason, EXIT_INCONCLUSIVE)


def load_instance(args: argparse.Namespace) -> tuple[Instance, str]:
    if args.instance and args.preset:
        raise CheckerError("give an INSTANCE file or --preset, not both")
    if args.instance:
        return load_run_file(args.instance).instance, args.instance
    if args.preset:
        if args.preset not in preset_names():
            raise CheckerError(f"unknown preset {args.preset!r}; available presets: {', '.join(preset_names())}")
        return load_preset(args.preset).instance, f"preset {args.preset}"
    raise CheckerError("no instance: give INSTANCE (a JSON file) or --preset NAME")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        opts = _options(args)
        instance, source = load_instance(args)
        changes: dict[str, Any] = {}
        if opts.lam is not None:
            changes["lam"] = opts.lam.strip()
        if opts.eta is not None:
            changes["eta"] = opts.eta.strip()
        if changes:
            instance = instance.replace(**changes)
        if instance.eta is None:
            raise CheckerError("no step size: give \"eta\" in the instance or --eta")
        inputs = {"INSTANCE": args.instance, "--start": args.start}
        if args.json:
            check_output_file("--json", args.json, distinct_from={**inputs, "--checkpoint": args.checkpoint})
        if args.checkpoint and not args.resume:
            check_output_file("--checkpoint", args.checkpoint, distinct_from=inputs)
        elif args.checkpoint:
            if not Path(args.checkpoint).is_file():
                raise CheckerError(f"--resume: no checkpoint file {args.checkpoint}")
            check_output_file("--checkpoint", args.checkpoint, distinct_from=inputs)
        check_output_dir("--counterexample-dir", args.counterexample_dir)
        result = run(instance, opts, checkpoint=args.checkpoint, resume=args.resume)
        last = result.final
        print(f"{PROG}: {source}, lambda={instance.lam}, eta={instance.eta}, train={opts.train}, "
              f"engine={result.engine['name']}" + (f" ({result.engine['dps']} digits)" if result.engine['dps'] else ""))
        print(f"steps {result.steps} ({result.stop_reason}), L = {float(last['loss']):.6g}, "
              f"L_lambda = {float(last['reg_loss']):.15g}, |grad| = {float(last['grad_norm']):.3g}, "
              f"far mass = {float(last['far_mass']):.4g}, "
              f"max angle = {float(last['max_angle']):.4g}, {len(result.history)} history rows, "
              f"{result.elapsed:.1f} s")
        for n in result.notes[2:]:
            print(f"note: {n}")
        if args.json:
            write_json_atomic(args.json, result.to_dict())
            print(f"result written to {args.json}")
        status = exit_status(result)
        if status == EXIT_FAILED:
            path = Path(args.counterexample_dir) / f"gd-diverged-{time.strftime('%Y%m%d-%H%M%S')}.json"
            write_json_atomic(path, {"description": f"{PROG}: the run diverged at step {result.steps} "
                                                    f"(options: {result.options})",
                                     "instance": result.instance})
            print(f"the run diverged; reproduce with: {PROG} {path} --train {opts.train} --steps {opts.steps}"
                  + (f" --engine mp --dps {opts.dps}" if opts.engine == "mp" else ""))
        return status

    return run_guarded(body, PROG)
