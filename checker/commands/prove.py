"""``python -m checker.prove INSTANCE``: the certified basin of the lambda-optimum (lambda > 0).

INSTANCE is a run or instance file (JSON), or a preset (NAME or preset:NAME).
Writes a versioned JSON certificate (``--json``, default basin-NAME.json) that
``python -m checker.verify`` re-checks.  Two routes, named in the certificate's
``route``: at exact width (m = m*) the Hessian ball of ``checker.basin.basin``;
with one extra neuron (m = m* + 1) the certified ball around a split optimum of
``checker.basin.over`` (``--split-cos``).  docs/basin.md has what each proves and
the numbers on the presets.

Exit status: 0 proved; 2 bad input (m not m* or m* + 1, lambda <= 0, a zero
neuron, no step size, unreadable file); 3 not proved within the budget (the
certificate records the largest radius reached and, on the over-parameterized
route, the reason); 130 interrupted (the partial certificate is written, marked
incomplete).
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from checker.commands.cli import EXIT_OK, UsageParser, run_guarded
from checker.commands.options import parse_option
from checker.commands.presets import RunFile, load_preset, load_run_file, preset_names
from checker.core.errors import CheckerError

EXIT_NOT_PROVED = 3
EXIT_INTERRUPTED = 130


def load_instance_arg(text: str) -> RunFile:
    """A file path, or a preset given as NAME or preset:NAME."""
    name = text[len("preset:"):] if text.startswith("preset:") else text
    if text.startswith("preset:") or (not Path(text).exists() and name in preset_names()):
        if name not in preset_names():
            raise CheckerError(f"unknown preset {name!r}; available: {', '.join(preset_names())}")
        return load_preset(name)
    return load_run_file(text)


def build_parser() -> UsageParser:
    p = UsageParser(prog="python -m checker.prove",
                    description="Prove, in ball arithmetic, a basin of the lambda-optimum (m = m*: Hessian ball; "
                                "m = m* + 1: a ball around a split optimum).")
    p.add_argument("instance", help="run or instance file (JSON), or a preset NAME / preset:NAME")
    p.add_argument("--json", help="certificate file to write (default: basin-NAME.json)")
    p.add_argument("--time-budget", help="seconds for the whole proof (default: none)")
    p.add_argument("--mu-fraction", default="1/3",
                   help="m = m* only: smallest accepted mu as a fraction of the smallest Hessian eigenvalue at "
                        "the centre (0 < F < 1, default 1/3)")
    p.add_argument("--max-leaves", type=int, default=64, help="largest number of boxes of one cover (default 64)")
    p.add_argument("--radius", help="prove the ball of this radius only (no search; a positive decimal)")
    p.add_argument("--seed", default="0", help="seed of T1's certificate search (default 0)")
    p.add_argument("--no-t1", action="store_true", help="skip T1's eps_0 and lambda_max (reported as null)")
    p.add_argument("--split-cos", default="0.6",
                   help="m = m* + 1 only: the split of the teacher's optimal neuron at the centre, neuron k times "
                        "cos and the extra neuron sin times it; a decimal in [0, 1] with sqrt(1 - cos^2) rational "
                        "(default 0.6, sin 0.8; 0.28 gives 0.96)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _fraction(text: str) -> Fraction:
    try:
        q = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise CheckerError(f"--mu-fraction: expected a number in (0, 1), got {text!r}") from None
    if not 0 < q < 1 or q.denominator > 10**6:
        raise CheckerError(f"--mu-fraction: expected a number in (0, 1), got {text!r}")
    return q


def _split_cos(text: str) -> Fraction:
    from checker.basin.over import split_sin

    try:
        q = Fraction(text.strip()) if len(text) <= 40 else None
    except (ValueError, ZeroDivisionError):
        q = None
    if q is None or not 0 <= q <= 1 or split_sin(q) is None:
        raise CheckerError(f"--split-cos: expected a decimal in [0, 1] with sqrt(1 - cos^2) rational (such as 0.6 or "
                           f"0.28), got {text!r}")
    return q


def print_summary(cert: dict[str, Any], path: str, out: Any = None) -> None:
    out = out or sys.stdout
    print(f"basin certificate ({cert['status']}, route {cert.get('route')}) written to {path}", file=out)
    if cert.get("route") == "over-parameterized-split-arc":
        if cert["proved"]:
            for key in ("radius", "basin_radius", "hessian_variation", "lambda2_center", "mu_N_lower", "beta_upper",
                        "c_D", "c_PL", "step_max", "rate", "path_constant", "gap_level"):
                print(f"  {key:<18} {cert[key]}", file=out)
            print(f"  boxes              {len(cert['cover']['boxes'])}", file=out)
        else:
            print(f"  not proved: {cert['not_proved_reason']}", file=out)
            print(f"  largest radius reached: {cert['search']['largest_radius_reached']}", file=out)
    elif cert["proved"]:
        for key in ("radius", "basin_radius", "mu_lower", "beta_upper", "step_max", "rate", "gap_level",
                    "gap_upper"):
            print(f"  {key:<14} {cert[key]}", file=out)
        enc = cert["L_star_enclosure"]
        print(f"  L*_lambda in   [{enc['lower'][:24]}, {enc['upper'][:24]}]", file=out)
        print(f"  boxes          {len(cert['cover']['boxes'])}", file=out)
    else:
        print(f"  largest radius reached: {cert['search']['largest_radius_reached']}", file=out)
    if cert.get("eps0_checker") is not None:
        print(f"  T1: eps_0 = {cert['eps0_checker']:.6g}, lambda_max = {cert['lambda_max_checker']:.6g} "
              "(operational constants of checker.theorem1, for comparison)", file=out)
    print(f"  {cert['seconds']['total']:.1f} s", file=out)
    print("\n".join("  " + s for s in cert["statement"]), file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        from checker.basin.basin import BasinProver
        from checker.core.io import check_output_file, write_json_atomic

        args = parser.parse_args(argv)
        budget = None if args.time_budget is None else parse_option("time_budget", args.time_budget, "--time-budget")
        seed = parse_option("seed", args.seed, "--seed")
        mu_fraction = _fraction(args.mu_fraction)
        if not 1 <= args.max_leaves <= 100_000:
            raise CheckerError(f"--max-leaves: expected a whole number from 1 to 100000, got {args.max_leaves}")
        radius = None
        if args.radius is not None:
            try:
                from checker.basin.cover import parse_decimal
                radius = parse_decimal(args.radius)
            except (ValueError, ArithmeticError):
                radius = None
            if radius is None or not 0 < radius < 1e6 or len(args.radius) > 40:
                raise CheckerError(f"--radius: expected a positive decimal number, got {args.radius!r}")
        rf = load_instance_arg(args.instance)
        name = (rf.instance.name or Path(args.instance).stem or "instance").replace("/", "_").replace(":", "_")
        path = args.json or f"basin-{name}.json"
        check_output_file("--json", path, distinct_from={"INSTANCE": args.instance})
        bar = None

        def say(text: str) -> None:
            if bar is not None:
                bar.set_description(text[:60])
            else:
                print(text, file=sys.stderr)

        def on_attempt(att: Any) -> None:
            if bar is not None:
                bar.update(1)
                bar.set_postfix(r=att.radius, ok=att.proved, boxes=att.leaves)

        split_cos = _split_cos(args.split_cos)
        if rf.instance.m > rf.instance.m_star:
            from checker.basin.over import OverProver

            prover = OverProver(rf.instance, time_budget=budget, max_leaves=args.max_leaves, seed=seed,
                                t1=not args.no_t1, radius=radius, split_cos=split_cos, say=say, on_attempt=on_attempt)
        else:
            prover = BasinProver(rf.instance, time_budget=budget, mu_fraction=mu_fraction,
                                 max_leaves=args.max_leaves, seed=seed, t1=not args.no_t1, radius=radius, say=say,
                                 on_attempt=on_attempt)
        if not args.no_progress:  # after the instance passed the door (BasinProver checks it)
            from tqdm import tqdm
            bar = tqdm(total=None, desc="prove", unit="cover", file=sys.stderr, leave=False)
        try:
            cert = prover.run()
        except KeyboardInterrupt:
            cert = prover.certificate()
            write_json_atomic(path, cert)
            if bar is not None:
                bar.close()
            print(f"python -m checker.prove: interrupted in phase {prover.phase}; partial certificate "
                  f"(status incomplete) written to {path}", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            if bar is not None:
                bar.close()
        write_json_atomic(path, cert)
        print_summary(cert, path)
        return EXIT_OK if cert["proved"] else EXIT_NOT_PROVED

    return run_guarded(body, "python -m checker.prove")
