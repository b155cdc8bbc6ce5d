"""``python -m derivations``: run every registered derivation and print the report.

One line per result, then "N verified, M failed"; the detail of each failed
result goes to stderr.  Exit status 0 if all verified, 1 if any failed, 2 on a
usage or output error.  ``--json FILE`` also writes the list of Result dicts
with ``checker.core.io.write_json_atomic``; the path is probed before any derivation
runs (``checker.core.io.check_output_file``), so a bad path costs no work.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

from checker.commands.cli import EXIT_FAILED, EXIT_OK, UsageParser, run_guarded
from checker.core.io import check_output_file, write_json_atomic

from . import run_all
from .result import Result

PROG = "python -m derivations"


def write_json(results: Sequence[Result], path: Path) -> None:
    """Write the results as a JSON list of dicts, atomically (the shared writer)."""
    write_json_atomic(path, [r.to_dict() for r in results])


def main(argv: Sequence[str] | None = None, runner: Callable[[], list[Result]] = run_all) -> int:
    """Entry point; ``runner`` produces the results (the registry by default)."""
    parser = UsageParser(prog=PROG, description="Run the SymPy derivations and report which hold.")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results as a JSON list")

    def body() -> int:
        args = parser.parse_args(argv)
        if args.json is not None:
            check_output_file("--json", args.json)
        results = runner()
        for r in results:
            print(r.line())
            if not r.verified:
                print(f"    {r.name}: {r.detail}", file=sys.stderr)
        failed = sum(not r.verified for r in results)
        print(f"{len(results) - failed} verified, {failed} failed")
        if args.json is not None:
            write_json(results, args.json)
        return EXIT_FAILED if failed else EXIT_OK

    return run_guarded(body, PROG)


if __name__ == "__main__":
    sys.exit(main())
