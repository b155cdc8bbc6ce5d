"""Certify where the failed seeds of a ``python -m checker.algorithm`` result ended.

    python tools/certify_failures.py RESULT.json [--json OUT.json]

For a one-teacher result (``--teacher`` or ``--preset``; not ``--teachers``): every seed that was
not recovered is taken from its final state (``directions.a3``, ``directions.W3``) by Newton to a
stationary point of L_lambda (both layers, the run's lambda, its width) and certified in Arb
(``checker.stationary.upper.search_failing``: Krawczyk box, smallest Hessian eigenvalue,
L_lambda enclosure); the optimum is bounded above by the certified L_lambda of the recovered
seeds' final states (any point's value bounds it).  A failed seed whose point is certified
spurious ended at a proved non-global strict local minimum (or stationary point) of the problem
the algorithm's stage 3 solves.  Prints one line per failed seed; ``--json`` writes the search.
Exit status: 0 done, 2 bad input (no failed or no recovered seed, or a study of many teachers).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def floats(seed: dict[str, Any]) -> tuple[list[float], list[list[float]]]:
    d = seed["directions"]
    return [float(x) for x in d["a3"]], [[float(x) for x in r] for r in d["W3"]]


def main(argv: list[str] | None = None) -> int:
    from checker.core.model import Instance
    from checker.stationary.upper import search_failing

    p = argparse.ArgumentParser(prog="python tools/certify_failures.py", description=__doc__.splitlines()[0])
    p.add_argument("result")
    p.add_argument("--json")
    p.add_argument("--time", type=float, default=300.0, help="wall-time budget of the search (seconds)")
    args = p.parse_args(argv)
    with open(args.result, encoding="utf-8") as fh:
        data = json.load(fh)
    if "seeds" not in data or "teacher" not in data:
        print(f"{args.result}: not a one-teacher checker.algorithm result", file=sys.stderr)
        return 2
    seeds = data["seeds"]
    rec = [s for s in seeds if s["recovered"]]
    fail = [s for s in seeds if not s["recovered"]]
    if not rec or not fail:
        print(f"{args.result}: needs at least one recovered and one failed seed "
              f"({len(rec)} recovered, {len(fail)} failed)", file=sys.stderr)
        return 2
    t = data["teacher"]
    a0, W0 = floats(rec[0])
    inst = Instance.from_dict({"activation": t["activation"], "teacher": t["teacher"],
                               "student": {"a": [repr(x) for x in a0], "W": [[repr(x) for x in r] for r in W0]},
                               "lambda": data["options"]["lam"]})
    ends = [{"size": s["seed"], "stop_reason": s["stage3"]["stop_reason"], **dict(zip(("a", "W"), floats(s)))}
            for s in fail]
    bound = [(f"the final state of the recovered seed {s['seed']}", *floats(s)) for s in rec[1:]]
    res = search_failing(inst, ends, bound, time_budget=args.time)
    print(f"{args.result}: {len(fail)} failed seed(s); optimum <= {res.optimum_upper[:14]} ({res.optimum_reference})")
    for q in res.points:
        c = q.get("certified") or {}
        what = ("certified " + ("strict local minimum" if c.get("strict_local_minimum") else "stationary point")
                + (f", spurious, gap >= {c['gap_lower'][:10]}" if c.get("spurious") else ", not decided spurious")
                if c.get("rigorous") else (c.get("why") or q.get("why") or q.get("status")))
        print(f"  seed {q['size']}: {q.get('kind', q.get('status'))}, L = {float(q.get('loss', 'nan')):.10g}, "
              f"L_lambda = {float(q.get('reg_loss', 'nan')):.10g}: {what}")
    if args.json:
        from checker.core.io import write_json_atomic
        write_json_atomic(args.json, {"result": args.result, **res.to_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
