"""``python -m checker.evaluate INSTANCE.json [--engine float64|mp] [--dps N]``

Prints one JSON object: the exact population loss L, the regularized loss
L_lambda and the gradients of L_lambda in a and W, numbers as decimal strings
carrying the engine's full precision.  Bad input: exit status 2, one line on stderr.
``--dps`` needs ``--engine mp`` (the rule of every command, ``checker.commands.options``).
A result that overflows float64 is never printed: exit 2, suggesting ``--engine mp``.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

import numpy as np

from checker.commands.cli import run_guarded, UsageParser
from checker.core.engines import MIN_DPS, make_engine, to_strings
from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.commands.options import max_dps, parse_option, resolve_engine
from checker.core.problem import Problem


def evaluate_instance(instance: Instance, engine_name: str = "float64", dps: int | None = None) -> dict:
    engine = make_engine(engine_name, dps)
    problem = Problem.from_instance(instance, engine)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, in one line
        ev = problem.evaluate()
    if engine.name == "float64":  # never print a non-finite number as a result
        for name, value in (("loss", ev.loss), ("reg_loss", ev.reg_loss), ("grad_a", ev.grad_a),
                            ("grad_W", ev.grad_W)):
            if not np.all(np.isfinite(np.asarray(value, dtype=float))):
                raise CheckerError(f"{name}: the float64 result overflows (not finite); use --engine mp")
    return {
        "loss": engine.to_str(ev.loss),
        "reg_loss": engine.to_str(ev.reg_loss),
        "grad_a": to_strings(engine, ev.grad_a),
        "grad_W": to_strings(engine, ev.grad_W),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = UsageParser(prog="python -m checker.evaluate", description=__doc__.splitlines()[2])
    parser.add_argument("instance", help="instance JSON file")
    parser.add_argument("--engine", help="'float64' (default) or 'mp'")
    parser.add_argument("--dps", help=f"digits for --engine mp ({MIN_DPS} to {max_dps()}, default 50)")

    def body() -> int:
        args = parser.parse_args(argv)
        engine = None if args.engine is None else parse_option("engine", args.engine)
        dps = None if args.dps is None else parse_option("dps", args.dps)
        engine, dps = resolve_engine(engine, dps)
        out = evaluate_instance(Instance.from_file(args.instance), engine, dps)
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0

    return run_guarded(body, "checker.evaluate")

