"""``python -m checker.algorithm``: the three stages end to end on a teacher, over seeds.

Exit status: 0 every seed recovered the teacher; 1 a T1 conclusion failed in
stage 3 (a counterexample run file is written); 2 bad input; 3 some seed did
not recover the teacher (the JSON says which stage fell short) or stage 3 was
inconclusive; 130 interrupted (the partial result and the checkpoint are written).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from checker import __version__
from checker.commands.cli import UsageParser, run_guarded
from checker.commands.options import parse_option, resolve_engine
from checker.core.constants import EXIT_FAILED, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, EXIT_OK
from checker.core.errors import CheckerError, InstanceError
from checker.core.model import Instance, parse_json_text, read_text_file
from checker.commands.options import parse_option, resolve_engine
from checker.commands.presets import run_option
from checker.stages.algorithm import (SCHEMA_VERSION, AlgorithmOptions, check_width, describe_stage1, overall_verdict,
                                       run_seed, summarize, teacher_instance, verdict_line)

PROG = "python -m checker.algorithm"
DEFAULT_PRESET = "two-signs-d6"
#: keys of a preset's (or teacher file's) "run" object: option name -> (type, AlgorithmOptions field)
RUN_KEYS: dict[str, tuple[type, str]] = {
    "width": (int, "width"), "lambda": (str, "lam"), "lambda2": (str, "lam2"), "eta": (float, "eta_cap"),
    "stage1_scale": (float, "scale"), "stage1_eta": (float, "stage1_eta"), "stage1_steps": (int, "stage1_steps"),
    "stage1_variant": (str, "variant"), "stage1_a": (float, "a_value"), "engine": (str, "engine"),
    "dps": (int, "dps"), "schedule": (str, "schedule"), "steps": (int, "steps"),
    "gap_target": (float, "gap_target"), "time_budget": (float, "time_budget"),
    "angle_bound": (float, "angle_bound"), "orient": (bool, "orient"), "fallback": (bool, "fallback"),
}
EXTRA_RUN_KEYS = {"seeds": int}


def preset_names() -> list[str]:
    folder = resources.files("checker") / "presets" / "algorithm"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def parse_teacher_file(data: Any, source: str) -> tuple[Instance, dict[str, Any], str]:
    """(teacher, run options, description) from a preset-like object or a bare teacher object."""
    if isinstance(data, Mapping) and "run" in data or isinstance(data, Mapping) and "description" in data:
        extra = sorted(set(data) - {"description", "teacher", "run"})
        if extra:
            raise InstanceError(f"{source}: {extra[0]}", "unknown key", "expected description, teacher, run")
        run = data.get("run", {}) or {}
        if not isinstance(run, Mapping):
            raise InstanceError(f"{source}: run", "expected an object")
        unknown = sorted(set(run) - set(RUN_KEYS) - set(EXTRA_RUN_KEYS))
        if unknown:
            raise InstanceError(f"{source}: run.{unknown[0]}", "unknown key",
                                f"expected keys: {', '.join(sorted(set(RUN_KEYS) | set(EXTRA_RUN_KEYS)))}")
        desc = data.get("description", "")
        if not isinstance(desc, str):
            raise InstanceError(f"{source}: description", "expected a string")
        if "teacher" not in data:
            raise InstanceError(f"{source}: teacher", "is missing")
        return teacher_instance(data["teacher"], source), dict(run), desc
    return teacher_instance(data, source), {}, ""


def load_preset(name: str) -> tuple[Instance, dict[str, Any], str]:
    names = preset_names()
    if name not in names:
        raise CheckerError(f"unknown preset {name!r}; available presets: {', '.join(names)}")
    text = (resources.files("checker") / "presets" / "algorithm" / f"{name}.json").read_text(encoding="utf-8")
    return parse_teacher_file(parse_json_text(text, f"preset {name}"), f"preset {name}")


def build_parser() -> UsageParser:
    p = UsageParser(prog=PROG, description="The whole algorithm (stages 1, 2, 3) from a small random start.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help=f"embedded teacher (default: {DEFAULT_PRESET}); --list-presets lists them")
    src.add_argument("--teacher", help="teacher file (JSON with \"activation\" and \"teacher\")")
    src.add_argument("--teachers", help="random teachers, e.g. random:mstar=3,d=6,sep=0.6,seed=1,count=5 "
                                        "(a study: success rate with its Wilson 95%% interval)")
    p.add_argument("--list-presets", action="store_true")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", help="one seed")
    seeds.add_argument("--seeds", help="seeds 0..K-1: success rate over K seeds")
    p.add_argument("--width", help="number of student neurons m")
    p.add_argument("--engine", choices=["float64", "mp"])
    p.add_argument("--dps", help="digits for --engine mp")
    p.add_argument("--lambda", dest="lam", help="weight decay of stage 3 (and default of --lambda2)")
    p.add_argument("--lambda2", help="ridge weight of stage 2 (default: --lambda)")
    p.add_argument("--eta", help="step of stage 3 (default: min(0.5, 1/beta_0), beta_0 the smoothness at its start)")
    p.add_argument("--variant", choices=["one-step", "centred", "plain", "none"],
                   help="stage 1: one large centred step (default), multi-step centred or plain, or none")
    p.add_argument("--no-fallback", action="store_true",
                   help="keep stage 1's features even when random unit features fit better")
    p.add_argument("--no-orient", action="store_true",
                   help="keep the centred directions' signs (default: orient each by the plain correlation)")
    p.add_argument("--stage1-steps", type=int)
    p.add_argument("--stage1-eta", type=float)
    p.add_argument("--stage1-scale", type=float, help="initial row norm scale")
    p.add_argument("--steps", help="step budget of stage 3 (default: 6/(eta lambda), at most 30000)")
    p.add_argument("--schedule", help="lambda schedule of stage 3 (as checker.theorem1)")
    p.add_argument("--time-budget", help="seconds for each stage-3 descent")
    p.add_argument("--gap-seconds", help="seconds for each of T1's Arb gap certifications (a stopped search "
                                         "gives a looser rigorous bound; for studies)")
    p.add_argument("--json", help="write the result to this file")
    p.add_argument("--plots", help="write figures to this folder (created if missing)")
    p.add_argument("--checkpoint", help="per-seed results stored here (a resumed run skips finished seeds)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--counterexample-dir", default=".",
                   help="folder where a failing seed is saved (default .; created if missing)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _table(key: str, value: Any) -> Any:
    return None if value is None else parse_option(key, value)


def options_from(args: argparse.Namespace, run: Mapping[str, Any], source: str) -> tuple[AlgorithmOptions, list[int]]:
    kw: dict[str, Any] = {}
    for key, (kind, name) in RUN_KEYS.items():
        v = run_option(run, key, kind, None, source)
        if v is not None:
            kw[name] = v
    if "eta_cap" in kw:  # the table keeps a step as its decimal text
        kw["eta_cap"] = float(kw["eta_cap"])
    width, dps, steps = _table("width", args.width), _table("dps", args.dps), _table("steps", args.steps)
    cli = {"width": width, "lam": args.lam, "lam2": args.lambda2, "eta": args.eta, "variant": args.variant,
           "stage1_steps": args.stage1_steps, "stage1_eta": args.stage1_eta, "scale": args.stage1_scale,
           "engine": args.engine, "dps": dps, "steps": steps, "schedule": args.schedule,
           "time_budget": _table("time_budget", args.time_budget),
           "gap_seconds": None if args.gap_seconds is None else parse_option("time_budget", args.gap_seconds,
                                                                             "--gap-seconds")}
    kw.update({k: v for k, v in cli.items() if v is not None})
    if args.dps is not None:
        parse_option("dps", args.dps)  # the one --dps range of every command
    if args.engine == "float64":
        resolve_engine("float64", dps)  # --dps with --engine float64: refused
        kw["dps"] = None
    elif dps is not None and args.engine is None:
        kw["engine"] = "mp"
    if args.no_orient:
        kw["orient"] = False
    if args.no_fallback:
        kw["fallback"] = False
    kw["progress"] = not args.no_progress
    opts = AlgorithmOptions(**kw).validate()
    # a width whose student-student pairs are out of reach is refused at once (the objective's own
    # limit for whole pair arrays), not after minutes of work
    from checker.core.engines import make_engine
    from checker.core.objective import check_pair_memory
    try:
        check_pair_memory(make_engine(opts.engine, opts.dps), opts.width, opts.width, what="the student's pair arrays")
    except CheckerError as exc:
        raise CheckerError(f"--width {opts.width}: {exc}") from None
    if args.seed is not None:
        seeds = [parse_option("seed", args.seed)]
    else:
        k = (parse_option("seeds", args.seeds) if args.seeds is not None
             else run_option(run, "seeds", int, 1, source))
        if k < 1:
            raise CheckerError(f"--seeds must be a positive whole number, got {k}")
        seeds = list(range(k))
    return opts, seeds


def _fingerprint(teacher: Instance, opts: AlgorithmOptions) -> dict[str, Any]:
    o = {k: v for k, v in asdict(opts).items() if k != "progress"}
    return {"teacher": teacher.to_dict(), "options": o}


def _load_checkpoint(path: str, fingerprint: dict[str, Any]) -> dict[str, Any]:
    from checker.core.io import read_json

    data = read_json(path, "--checkpoint")
    if not isinstance(data, Mapping) or data.get("kind") != "algorithm-checkpoint" \
            or not isinstance(data.get("seeds"), Mapping):
        raise CheckerError(f"--checkpoint {path}: not a checkpoint of {PROG}")
    if data.get("fingerprint") != fingerprint:
        raise CheckerError(f"--checkpoint {path}: written for another teacher or other options; "
                           "give the same options or another checkpoint file")
    return dict(data["seeds"])


def print_seed(r: dict[str, Any], out: Any) -> None:
    s1, s2, s3 = r["stage1"], r["stage2"], r["stage3"]
    fl = r["feature_learning_end"]

    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.3g}"

    print(f"seed {r['seed']}: stage 1 ({s1['variant']}) span fraction min {s1['span_fraction_min']:.3f} median "
          f"{s1['span_fraction_median']:.3f}; frozen floor {s1['floor']:.3g} vs random unit features "
          f"{s1['random_floor']:.3g} (x{s1['floor_ratio']:.3g})"
          + (f" -- WORSE than random features; stage 2 used: {s1['features_used']}" if s1["worse_than_random"]
             else ""), file=out)
    print(f"        stage 2 loss {s2['loss']:.3g}, gap {f(s2['gap'])} vs threshold eps_0 {f(s2['threshold'])}; "
          f"max heavy angle {f(s2['max_angle'])}", file=out)
    rec = s3.get("recovery") or {}
    print(f"        stage 3 (eta {s3['eta'] or '-'} [{s3['eta_rule']}, beta_0 {f(s3['beta_0'])}], "
          f"{s3['steps']} steps, run by {s3['run_by'] or '-'}): final loss {f(s3['final_loss'])} "
          f"= {f(rec.get('loss_over_lambda2'))} lambda^2 at lambda {f(s3['final_lambda'])}, far mass "
          f"{f(s3['far_mass'])}, angle bound {f(rec.get('angle_bound'))}", file=out)
    print(f"        T1 covers the start: {r['t1_covered']}" + (f" ({r['t1_reason']})" if r["t1_reason"] else
                                                             f" (T1 verdict {r['t1']['verdict']})"), file=out)
    print(f"        recovered: {r['recovered']}" + (f" — fell short at {r['fell_short']}" if r["fell_short"] else ""),
          file=out)


def study_main(args: argparse.Namespace) -> int:
    """--teachers SPEC: every seed of every random teacher; per-teacher and overall rates (Wilson 95%)."""
    from checker.core.io import check_output_file, write_json_atomic
    from checker.stages.study import run_study, study_summary
    from checker.stages.teachers import parse_spec

    spec = parse_spec(args.teachers)
    for flag in ("checkpoint", "plots"):
        if getattr(args, flag):
            raise CheckerError(f"--{flag} is not available with --teachers")
    opts, seeds = options_from(args, {}, "--teachers")
    teachers = spec.teachers()
    for t in teachers:
        check_width(t, opts.width)
    if args.json:
        check_output_file("--json", args.json)
    print(f"algorithm study — {spec.text()}: {len(teachers)} teacher(s) x {len(seeds)} seed(s), width {opts.width}, "
          f"{describe_stage1(opts)}, lambda={opts.lam}")
    say = (lambda t: print(t, file=sys.stderr, flush=True)) if opts.progress else (lambda t: None)
    per: list[dict[str, Any]] = []

    def save(interrupted: bool) -> dict[str, Any]:
        out = {"version": SCHEMA_VERSION, "checker_version": __version__, "kind": "algorithm-study",
               "spec": spec.text(), "options": {k: v for k, v in asdict(opts).items() if k != "progress"},
               "seeds_list": seeds, "interrupted": interrupted, **study_summary(per), "teachers": per}
        if args.json:
            write_json_atomic(args.json, out)
        return out

    def on_seed(teacher: Instance, r: dict[str, Any]) -> None:
        print(f"{teacher.name} seed {r['seed']}: recovered {r['recovered']}, T1 covers {r['t1_covered']}"
              + (f" ({r['t1_reason'].split(':')[0]})" if r["t1_reason"] else "")
              + (f"; fell short: {r['fell_short']}" if r["fell_short"] else ""))
        save(False)

    try:
        run_study(teachers, opts, seeds, say=say, on_seed=on_seed, out=per)
    except KeyboardInterrupt:
        save(True)
        print(f"{PROG}: interrupted; partial result written", file=sys.stderr)
        return EXIT_INTERRUPTED
    out = save(False)
    for t in per:
        sm = t["summary"]
        print(f"  {t['name']}: {sm['recovered']}/{sm['seeds_run']} recovered, T1 covered {sm['t1_covered']}")
    print("\n" + verdict_line(out))
    if args.json:
        print(f"result written to {args.json}")
    return EXIT_OK if out["recovered"] == out["seeds_run"] else EXIT_INCONCLUSIVE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        if args.list_presets:
            for name in preset_names():
                print(f"{name}: {load_preset(name)[2]}")
            return EXIT_OK
        if args.teachers:
            return study_main(args)
        if args.teacher:
            teacher, run, desc = parse_teacher_file(parse_json_text(read_text_file(args.teacher), args.teacher),
                                                    args.teacher)
            source = args.teacher
        else:
            name = args.preset or DEFAULT_PRESET
            teacher, run, desc = load_preset(name)
            source = f"preset {name}"
        opts, seeds = options_from(args, run, source)
        check_width(teacher, opts.width)
        from checker.core.io import check_output_dir, check_output_file, write_json_atomic
        if args.resume and not args.checkpoint:
            raise CheckerError("--resume needs --checkpoint FILE")
        distinct = {"--teacher": args.teacher}
        if args.json:
            check_output_file("--json", args.json, distinct_from=distinct)
        if args.checkpoint:
            check_output_file("--checkpoint", args.checkpoint,
                              distinct_from={**distinct, "--json": args.json})
        if args.plots:
            from checker.commands.figures import check_plotting
            check_plotting(args.plots)
            check_output_dir("--plots", args.plots)
        check_output_dir("--counterexample-dir", args.counterexample_dir)  # probed before the seeds run
        fingerprint = _fingerprint(teacher, opts)
        done: dict[str, Any] = {}
        if args.resume:
            if Path(args.checkpoint).exists():
                done = _load_checkpoint(args.checkpoint, fingerprint)
            else:
                raise CheckerError(f"--checkpoint {args.checkpoint}: no such file to resume from")
        print(f"algorithm — {source}: {teacher.activation}, d={teacher.d}, m*={teacher.m_star}, "
              f"width {opts.width}, seeds {seeds[0]}..{seeds[-1]}, {describe_stage1(opts)}, "
              f"lambda={opts.lam}, engine {opts.engine}")
        say = (lambda t: print(t, file=sys.stderr, flush=True)) if opts.progress else (lambda t: None)
        results: list[dict[str, Any]] = []
        interrupted = False
        counterexample = None

        def save(final: bool = False) -> dict[str, Any]:
            # written after every seed: a file read before the end (or left by a killed run) says it is
            # partial ("complete": false, seeds run of seeds requested)
            complete = final and not interrupted and len(results) == len(seeds)
            out = {"version": SCHEMA_VERSION, "checker_version": __version__,
                   "verdict": overall_verdict(results, interrupted), **summarize(results),
                   "complete": complete, "seeds_requested": len(seeds),
                   "seeds": results, "teacher": teacher.to_dict(), "source": source,
                   "options": {**fingerprint["options"], "seeds": seeds},
                   "notes": ["stages 1 and 2 are this checker's reconstruction (Damian, Lee and "
                             "Soltanolkotabi 2022 style); stage 3 is T1 (checker.theorem1); "
                             "thresholds are the checker's operational choices, not the paper's"]}
            if args.json:
                write_json_atomic(args.json, out)
            if args.checkpoint:
                write_json_atomic(args.checkpoint, {"kind": "algorithm-checkpoint", "version": SCHEMA_VERSION,
                                                    "fingerprint": fingerprint,
                                                    "seeds": {str(r["seed"]): r for r in results}})
            return out

        bar = None
        if opts.progress:
            from tqdm import tqdm
            bar = tqdm(total=len(seeds), desc="seeds", file=sys.stderr, unit="seed")
        try:
            for seed in seeds:
                if str(seed) in done:
                    results.append(done[str(seed)])
                else:
                    res = run_seed(teacher, opts, seed, say=say)
                    d = res.to_dict()
                    results.append(d)
                    if res.stage3.verdict == "interrupted":
                        interrupted = True
                        results.pop()
                        break
                    if res.t1.get("verdict") == "fails" and counterexample is None:
                        from checker.commands.theorem1 import write_counterexample
                        counterexample = write_counterexample(res._run_file, res._options, res._report,
                                                              args.counterexample_dir)
                    save()
                if bar is not None:
                    bar.update(1)
                print_seed(results[-1], sys.stdout)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if bar is not None:
                bar.close()
        out = save(final=True)
        print("\n" + verdict_line(out))
        if args.json:
            print(f"result written to {args.json}")
        if args.plots and results:
            from checker.commands.algorithm_figures import make_plots
            for p in make_plots(results, teacher, args.plots):
                print(f"figure: {p}")
        if interrupted:
            print(f"{PROG}: interrupted; partial result written"
                  + (f", resume with --resume --checkpoint {args.checkpoint}" if args.checkpoint else ""),
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        if out["verdict"] == "fails":
            print(f"counterexample written to {counterexample} (reproduce: python -m checker.theorem1 "
                  f"--instance {counterexample})")
            return EXIT_FAILED
        if out["verdict"] == "recovered":
            return EXIT_OK
        return EXIT_INCONCLUSIVE

    return run_guarded(body, PROG)
