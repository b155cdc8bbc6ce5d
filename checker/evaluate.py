"""``python -m checker.evaluate INSTANCE.json [--engine float64|mp] [--dps N]``

Prints one JSON object: the exact population loss L, the regularized loss
L_lambda and the gradients of L_lambda in a and W, numbers as decimal strings
carrying the engine's full precision.  Bad input: exit status 2, one line on stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from .cli import run_guarded, UsageParser
from .engines import make_engine, to_strings
from .model import Instance
from .problem import Problem


def evaluate_instance(instance: Instance, engine_name: str = "float64", dps: int | None = None) -> dict:
    engine = make_engine(engine_name, dps)
    problem = Problem.from_instance(instance, engine)
    ev = problem.evaluate()
    return {
        "loss": engine.to_str(ev.loss),
        "reg_loss": engine.to_str(ev.reg_loss),
        "grad_a": to_strings(engine, ev.grad_a),
        "grad_W": to_strings(engine, ev.grad_W),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = UsageParser(prog="python -m checker.evaluate", description=__doc__.splitlines()[2])
    parser.add_argument("instance", help="instance JSON file")
    parser.add_argument("--engine", default="float64", choices=["float64", "mp"])
    parser.add_argument("--dps", type=int, default=None, help="digits for --engine mp (default 50)")

    def body() -> int:
        args = parser.parse_args(argv)
        out = evaluate_instance(Instance.from_file(args.instance), args.engine, args.dps)
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0

    return run_guarded(body, "checker.evaluate")


if __name__ == "__main__":
    sys.exit(main())
