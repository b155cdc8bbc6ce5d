"""``python -m checker.optimum INSTANCE [--dps N] [--json OUT] [--seconds S]``: the certified optimum.

L*_lambda of the instance enclosed in [lower, upper] (``checker.rigorous.optimum.certified_optimum``):
float64 descent from the instance's student, the neurons the optimum needs chosen from the
dual residual (KKT), Newton polish at N digits, duality bound certified by Arb branch and bound.
Prints one JSON object (lower, upper, width, rigorous, the kept atoms a and W as decimal strings,
timings).  Exit status: 0 when the enclosure is rigorous, 3 when it is only an estimate (the
branch and bound could not cover the search sphere), 2 on bad input (one line), 130 when
interrupted (with --json, the phase reached is written).
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from checker.commands.cli import UsageParser, run_guarded
from checker.commands.options import max_dps, parse_option
from checker.core.engines import MIN_DPS
from checker.core.errors import CheckerError
from checker.core.io import check_output_file, write_json_atomic
from checker.core.model import Instance

EXIT_INCONCLUSIVE = 3
PHASES = ("float64 descent", "Newton polish", "certifying")


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise CheckerError(f"--seconds: expected a number of seconds, got {text[:40]!r}") from None
    if not (v > 0 and v < 1e7):
        raise CheckerError(f"--seconds: expected a positive number of seconds below 1e7, got {text[:40]!r}")
    return v


def _load(name: str) -> Instance:
    """An instance file, a run file (``{"instance": ...}``) or the name of a preset."""
    import os

    from checker.commands.presets import load_preset, load_run_file, preset_names

    if not os.path.exists(name) and name in preset_names():
        return load_preset(name).instance
    return load_run_file(name).instance


def main(argv: Sequence[str] | None = None) -> int:
    parser = UsageParser(prog="python -m checker.optimum", description=__doc__.splitlines()[0])
    parser.add_argument("instance", help="instance or run file, or a preset name (its student is the start; "
                                         "needs lambda > 0 and eta)")
    parser.add_argument("--dps", help=f"digits of the Newton polish ({MIN_DPS} to {max_dps()}, default 50)")
    parser.add_argument("--json", dest="json_out", help="also write the result to this file (atomic)")
    parser.add_argument("--seconds", help="time budget of the branch and bound (default: none; the "
                                          "enclosure stays rigorous when it runs out, only wider)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    def body() -> int:
        args = parser.parse_args(argv)
        dps = 50 if args.dps is None else parse_option("dps", args.dps)
        seconds = None if args.seconds is None else _seconds(args.seconds)
        out_path = None if args.json_out is None else check_output_file("--json", args.json_out,
                                                                       distinct_from={"INSTANCE": args.instance})
        instance = _load(args.instance)
        from mpmath import mpf

        if not mpf(instance.lam) > 0:
            raise CheckerError("lambda: the certified optimum needs lambda > 0")
        if instance.eta is None:
            raise CheckerError("eta: the certified optimum needs a step size: give \"eta\" in the instance")
        from checker.rigorous.optimum import certified_optimum

        state = {"phase": "start"}
        bar = None
        if not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(PHASES), desc="optimum", file=sys.stderr, leave=False)

        def say(text: str) -> None:
            state["phase"] = text
            if bar is not None:
                bar.set_postfix_str(text[:60])
                if any(text.lower().startswith(p.lower()) for p in PHASES[1:]) and bar.n < len(PHASES) - 1:
                    bar.update(1)

        try:
            enc = certified_optimum(instance, dps=dps, say=say, certificate_seconds=seconds)
        except KeyboardInterrupt:
            if out_path is not None:
                write_json_atomic(out_path, {"interrupted": True, "phase": state["phase"]})
            raise
        finally:
            if bar is not None:
                bar.close()
        result = enc.to_dict()
        if out_path is not None:
            write_json_atomic(out_path, result)
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0 if enc.rigorous else EXIT_INCONCLUSIVE

    return run_guarded(body, "checker.optimum")
