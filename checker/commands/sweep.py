"""``python -m checker.sweep GRID.json --out RESULTS.jsonl``: a grid of measurements, resumable.

The command: parses, calls ``checker.studies.sweep.run_sweep`` and prints; the grid
format, the results file and the executors are documented in ``checker.studies.sweep``.
"""

from __future__ import annotations

import sys
from typing import Sequence

from checker.commands.cli import UsageParser, run_guarded
from checker.core.constants import EXIT_INTERRUPTED, EXIT_OK
from checker.core.errors import CheckerError
from checker.studies.sweep import Grid, read_results, run_sweep


# --------------------------------------------------------------------------- command line
def build_parser() -> UsageParser:
    p = UsageParser(prog="python -m checker.sweep", description="Run a grid of threshold and constant measurements.")
    p.add_argument("grid", help="grid file (JSON)")
    p.add_argument("--out", required=True, help="results file (JSON lines); a rerun adds only the missing points")
    p.add_argument("--workers", type=int, help="local processes (default: every core)")
    p.add_argument("--scheduler", help="address of a Dask scheduler (e.g. tcp://host:8786; docs/dask.md): checked "
                                       "first (one-line error within about 15 s if nothing or something else answers "
                                       "there); a dead worker's points are rerun on the others; while the cluster "
                                       "has no workers the sweep keeps waiting and warns on stderr every minute")
    p.add_argument("--no-progress", action="store_true")
    return p


def _warn(text: str) -> None:
    """One warning line on stderr, above the progress bar."""
    from tqdm import tqdm

    tqdm.write(f"python -m checker.sweep: warning: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        from checker.core.io import check_output_file

        args = parser.parse_args(argv)
        if args.workers is not None and args.workers < 1:
            raise CheckerError(f"--workers must be at least 1, got {args.workers}")
        if args.workers is not None and args.scheduler:
            raise CheckerError("--workers and --scheduler exclude each other (the cluster has its own workers)")
        if args.scheduler is not None and not args.scheduler.strip():
            raise CheckerError("--scheduler: empty address")
        grid = Grid.from_file(args.grid)
        check_output_file("--out", args.out, distinct_from={"GRID": args.grid})
        read_results(args.out)  # a corrupt results file is refused before any work
        summary = run_sweep(grid, args.out, workers=args.workers, scheduler=args.scheduler,
                            progress=not args.no_progress, warn=_warn)
        print(f"sweep {grid.name}: {summary.total} point(s), {summary.done_before} already in {args.out}, "
              f"{summary.computed} computed ({summary.errors} with an error) in {summary.seconds:.1f} s "
              f"on {summary.executor}")
        if summary.interrupted:
            print("python -m checker.sweep: interrupted; completed points are kept, rerun the same command "
                  "to measure the missing ones", file=sys.stderr)
            return EXIT_INTERRUPTED
        return EXIT_OK

    return run_guarded(body, "python -m checker.sweep")
