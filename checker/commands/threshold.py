"""``python -m checker.threshold``: the empirical threshold of the local phase along a family.

The command: parses, calls ``checker.studies.threshold.find_threshold`` and prints;
the trials, their classification and the exit status are documented in
``checker.studies.threshold``.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from checker.commands.cli import UsageParser, run_guarded
from checker.commands.options import parse_option
from checker.commands.presets import RunFile, load_preset, load_run_file, preset_names
from checker.core.constants import EXIT_FAILED, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, EXIT_OK
from checker.core.errors import CheckerError
from checker.studies import families as fam
from checker.studies.threshold import (STEP_POLICIES, ThresholdResult, TrialConfig, failing_run_file,
                                       find_threshold)


# --------------------------------------------------------------------------- command line
def build_parser() -> UsageParser:
    p = UsageParser(prog="python -m checker.threshold",
                    description="Empirical threshold of the local phase along a perturbation family.")
    p.add_argument("instance", help="run or instance file (JSON) of a reference student near the optimum, "
                                    "or preset:NAME")
    p.add_argument("--family", required=True, help=f"one of {', '.join(fam.FAMILIES)}")
    p.add_argument("--engine", choices=["float64", "mp"], default="float64")
    p.add_argument("--dps", type=int, help="digits for --engine mp")
    p.add_argument("--range", nargs=2, type=float, metavar=("LO", "HI"), help="size range searched")
    p.add_argument("--rel-tol", type=float, default=0.05, help="bracket width in size, relative to the range")
    p.add_argument("--max-trials", type=int, default=10, help="trials of the bisection (default 10)")
    p.add_argument("--steps", type=int, default=20_000, help="step budget per trial")
    p.add_argument("--trial-time", type=float, default=60.0, help="wall-time budget per trial (seconds)")
    p.add_argument("--gap-target", type=float, default=1e-9, help="gap a trial must reach to converge")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", choices=STEP_POLICIES, default="instance",
                   help="step of each trial: the instance's eta (default), or 'safe': min(eta, 1/beta_0) with "
                        "beta_0 the smoothness at the trial's start, so that a failure is not the step's")
    p.add_argument("--json", help="write the result here")
    p.add_argument("--plots", help="figures of the failing run go to this folder (created if missing)")
    p.add_argument("--failing-dir",
                   help="folder where the failing run file goes (default: the --json folder or .; created if missing)")
    p.add_argument("--stationary", help="a checker.critical or checker.landscape result (JSON) of this instance: "
                                        "its smallest certified spurious gap bounds the threshold above")
    p.add_argument("--no-newton-search", action="store_true",
                   help="skip the Newton search from the failing trials (by default each failing trial's final "
                        "student is taken by Newton to a stationary point, certified in Arb, and a certified "
                        "spurious gap bounds the threshold above)")
    p.add_argument("--newton-time", type=float, default=60.0,
                   help="wall-time budget of that Newton search and its certificates, all failing trials "
                        "together (seconds, default 60)")
    p.add_argument("--no-progress", action="store_true")
    return p


def failing_name(name: str) -> str:
    """A file-name part from an instance name: [A-Za-z0-9._-] only (others become _), at most 60 characters
    (a descriptive name up to its first ':' or ';', as the examples' names are written)."""
    head = re.split(r"[:;]", name, maxsplit=1)[0].strip() or "instance"
    return re.sub(r"[^A-Za-z0-9._-]", "_", head)[:60]


def load_reference(text: str) -> RunFile:
    if text.startswith("preset:"):
        name = text[len("preset:"):]
        if name not in preset_names():
            raise CheckerError(f"unknown preset {name!r}; available: {', '.join(preset_names())}")
        return load_preset(name)
    return load_run_file(text)


def print_result(r: ThresholdResult, out: Any = None) -> None:
    out = out or sys.stdout
    print(f"threshold search — family {r.family} ({r.parameter}), range [{r.size_range['lo']:g}, "
          f"{r.size_range['hi']:g}], lambda = {r.lambda_:g}", file=out)
    for t in r.trials:
        print(f"  s = {t['size']:<10.5g} {t['outcome']:<13} gap0 <= {t['gap0']:.4g}  L0 = {t['loss0']:.4g}  "
              f"eta {t['eta'] or math.nan:.3g}, {t['stop_reason']} after {t['steps']} steps ({t['seconds']:.1f} s)"
              + (f"  failed: {', '.join(t['failed'])}" if t["failed"] else ""), file=out)
    if r.eps0_checker is not None and r.lambda_max_checker is not None:
        print(f"checker's eps_0 = {r.eps0_checker:.4g}, lambda_max = {r.lambda_max_checker:.4g} "
              "(operational choices of checker.theorem1)", file=out)
    if r.ratio_to_eps0 is not None:
        print(f"empirical threshold (lower end) / eps_0 = {r.ratio_to_eps0:.4g}", file=out)
    elif r.ratio_status == "outside T1":
        print("empirical threshold / eps_0: outside T1 (H1-H3 do not all hold at the reference)", file=out)
    elif r.ratio_status == "lower end is the reference":
        print("empirical threshold / eps_0: none (the lower end is the unperturbed reference start)", file=out)
    if r.non_monotone:
        nm = r.non_monotone
        print(f"non-monotone from s = {nm['size']:.5g} (gap0 <= {nm['gap0']:.4g}, eta {nm['eta']:.3g}): GD "
              "converged but L_lambda rose on some steps (C1); a limit of the step, not of the basin", file=out)
    if r.failure:
        unmet = r.failure["hypotheses_unmet"]
        print(f"failing start at s = {r.failure['size']:.5g} (failed: {', '.join(r.failure['conclusions_failed'])}"
              + (f"; {', '.join(unmet)} unmet there" if unmet else "") + "): "
              + "; ".join(r.failure["diagnosis"] or r.failure["conclusions_failed"]), file=out)
    for n in r.notes:
        print(f"note: {n}", file=out)
    print(("\n!!! " if r.counterexample else "\n") + r.message, file=out)


def print_search(search: Any, out: Any = None) -> None:
    """One line per failing trial searched by Newton: the stationary point reached and its certificate."""
    out = out or sys.stdout
    if not search.points:
        for n in search.notes:
            print(f"Newton search: {n}", file=out)
        return
    print(f"Newton search from the failing trials ({search.seconds:.1f} s; optimum <= "
          f"{(search.optimum_upper or '?')[:14]}):", file=out)
    for p in search.points:
        head = f"  s = {p['size']:<10.5g} "
        if "kind" not in p:
            print(head + f"{p['status']}: {p.get('why', '')}", file=out)
            continue
        c = p.get("certified") or {}
        if p.get("same_as_size") is not None:
            what = f"the same point as from s = {p['same_as_size']:.5g}"
        elif not c:
            what = p.get("why", "not certified")
        elif not c.get("rigorous"):
            what = f"not certified ({c.get('why')})"
        elif c.get("spurious"):
            what = (f"certified {'strict local minimum' if c.get('strict_local_minimum') else 'stationary point'}, "
                    f"SPURIOUS, gap >= {c['gap_lower'][:12]}")
        else:
            what = "certified stationary point, not above the optimum's upper end (not spurious as far as known)"
        print(head + f"{p['kind']} (index {p['index']}), L_lambda = {float(p['reg_loss']):.10g}, "
              f"min eig {float(p['min_eigenvalue']):.4g}: {what}", file=out)
    for n in search.notes:
        print(f"note: {n}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        from checker.core.io import check_output_dir, check_output_file, write_json_atomic

        args = parser.parse_args(argv)
        fam.family(args.family)
        cfg = TrialConfig(engine=args.engine, dps=args.dps, steps=args.steps, time_budget=args.trial_time,
                          gap_target=args.gap_target, seed=args.seed, step=args.step)
        if cfg.engine == "float64" and cfg.dps is not None:
            raise CheckerError("--dps needs --engine mp")
        if cfg.dps is not None:
            parse_option("dps", cfg.dps)  # the one --dps range of every command
        parse_option("seed", args.seed)  # the one seed range of every command
        parse_option("steps", args.steps)
        cfg.validate()
        if not (args.newton_time > 0 and math.isfinite(args.newton_time)):
            raise CheckerError(f"--newton-time must be a positive number of seconds, got {args.newton_time}")
        if not 0 < args.rel_tol < 1:
            raise CheckerError(f"--rel-tol must be in (0, 1), got {args.rel_tol}")
        if args.max_trials < 2:
            raise CheckerError(f"--max-trials must be at least 2, got {args.max_trials}")
        rf = load_reference(args.instance)
        if args.json:
            check_output_file("--json", args.json, distinct_from={"instance": args.instance})
        if args.plots:
            from checker.commands.figures import check_plotting
            check_plotting(args.plots)
            check_output_dir("--plots", args.plots)
        fail_dir = args.failing_dir or (str(Path(args.json).resolve().parent) if args.json else ".")
        check_output_dir("--failing-dir", fail_dir)
        gaps = []
        if args.stationary:
            from checker.core.io import read_json
            from checker.stationary.upper import spurious_gaps
            gaps = spurious_gaps(read_json(args.stationary, "--stationary"), rf.instance, args.stationary)
        lo, hi = args.range if args.range else (None, None)
        result, failing = find_threshold(rf, args.family, cfg, lo=lo, hi=hi, rel_tol=args.rel_tol,
                                         max_trials=args.max_trials, progress=not args.no_progress,
                                         keep_failing=True)
        if failing is not None:
            trial, check, report = failing
            name = failing_name(rf.instance.name or Path(args.instance).stem or "instance")
            path = Path(fail_dir) / f"failing-{name}-{args.family}.json"
            write_json_atomic(path, failing_run_file(trial, cfg, result))
            result.failing_run = str(path)
            if args.plots:
                from checker.commands.figures import make_plots
                folder = Path(args.plots) / f"failing-{args.family}"
                result.failure["figures"] = [str(p) for p in make_plots(check, report, str(folder))]
        upper_end = None
        search = None
        if not args.no_newton_search and not result.interrupted:
            from checker.stationary.upper import search_failing

            failing_ends = [e for e in result.end_points if e["outcome"] == "fails"]
            bound = [(f"the final student of the converged trial s = {e['size']:.6g}", e["a"], e["W"])
                for e in result.end_points if e["outcome"] in ("converges", "non-monotone")]
            try:
                search = search_failing(rf.instance, failing_ends, bound, time_budget=args.newton_time,
                                        progress=not args.no_progress)
            except KeyboardInterrupt:
                result.interrupted = True
                result.notes.append("the Newton search from the failing trials was interrupted")
            if search is not None:
                gaps = gaps + search.gaps
        if args.stationary or (search is not None and search.points):
            from checker.stationary.upper import ordering
            gap = min(gaps, key=lambda g: g.gap_lower) if gaps else None
            chain, contradicted = ordering(result.eps0_checker, result.threshold_gap.get("lower"),
                                           result.threshold_gap.get("upper"), gap)
            upper_end = {"stationary": args.stationary, "chain": chain, "contradicted": contradicted,
                         "smallest_certified_spurious_gap": None if gap is None else gap.gap_lower_text,
                         "source": None if gap is None else gap.source,
                         "newton_search": None if search is None else search.to_dict()}
        if args.json:
            write_json_atomic(args.json, {**result.to_dict(), **({"upper_end": upper_end} if upper_end else {})})
        print_result(result)
        if search is not None:
            print_search(search)
        if upper_end is not None:
            print(f"ordering: {upper_end['chain']}")
            if upper_end["contradicted"]:
                print(f"!!! eps_0 = {result.eps0_checker:.6g} is ABOVE the certified gap "
                      f"{upper_end['smallest_certified_spurious_gap'][:14]} of a spurious stationary point: "
                      "gradient descent started there never moves, so T1 as formalized (convergence from every "
                      "start with gap below eps_0) is CONTRADICTED")
        if result.failing_run:
            print(f"failing run written to {result.failing_run} "
                  f"(reproduce: python -m checker.theorem1 --instance {result.failing_run})")
        for p in result.failure.get("figures", []):
            print(f"figure: {p}")
        if args.json:
            print(f"result written to {args.json}")
        if result.interrupted:
            return EXIT_INTERRUPTED
        if upper_end is not None and upper_end["contradicted"]:
            return EXIT_FAILED
        if result.counterexample:
            print("python -m checker.threshold: COUNTEREXAMPLE to T1 (see above)", file=sys.stderr)
            return EXIT_FAILED
        if result.status.startswith("reference"):
            return EXIT_INCONCLUSIVE
        return EXIT_OK

    return run_guarded(body, "python -m checker.threshold")
