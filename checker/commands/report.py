"""``python -m checker.report RESULTS.jsonl --out REPORT.md [--figures DIR]``: the sweep's report.

The command: parses, reads the results (``checker.studies.sweep.read_results``),
draws the figures, renders the markdown (``checker.studies.report.render``) and
writes it; what the report holds is documented in ``checker.studies.report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from checker.commands.cli import UsageParser, run_guarded
from checker.core.constants import EXIT_OK
from checker.core.errors import CheckerError
from checker.studies.report import AXIS_LABEL, QUANTITY_LABEL, _axis_points, _quantities, render
from checker.studies.scaling import AXES


def make_figures(records: list[Mapping[str, Any]], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for axis in AXES:
        pts = _axis_points(records, axis)
        if len({r["spec"][axis] for r in pts}) < 2:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.6))
        xs = [float(r["spec"][axis]) for r in pts]
        names = sorted({k for r in pts for k in _quantities(r)})
        for name in names:
            ys = [_quantities(r).get(name) for r in pts]
            xy = [(x, y) for x, y in zip(xs, ys) if isinstance(y, (int, float)) and y > 0]
            if len(xy) >= 2:
                ax.loglog([p[0] for p in xy], [p[1] for p in xy], "o-", ms=3, label=QUANTITY_LABEL.get(name, name))
        ax.set_xlabel(AXIS_LABEL[axis])
        ax.set_ylabel("measured value")
        ax.set_title(f"measured constants against {AXIS_LABEL[axis]} (log-log)")
        ax.legend(fontsize=6, loc="best")
        fig.tight_layout()
        p = folder / f"axis-{axis}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def build_parser() -> UsageParser:
    p = UsageParser(prog="python -m checker.report", description="Markdown report of a sweep's results.")
    p.add_argument("results", help="results file of python -m checker.sweep (JSON lines)")
    p.add_argument("--out", required=True, help="markdown file to write")
    p.add_argument("--figures", help="folder for the figures (matplotlib)")
    p.add_argument("--grid", help="grid file of the sweep (named in the regenerate command)")
    p.add_argument("--note", help="a paragraph placed at the top (e.g. when and where the sweep ran)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        from checker.core.io import check_output_dir, check_output_file
        from checker.studies.sweep import read_results

        args = parser.parse_args(argv)
        if not Path(args.results).is_file():
            raise CheckerError(f"{args.results}: no such results file")
        distinct = {"RESULTS": args.results, **({"--grid": args.grid} if args.grid else {})}
        out = check_output_file("--out", args.out, distinct_from=distinct)
        if args.grid:
            from checker.studies.sweep import Grid
            grid = Grid.from_file(args.grid)  # missing, truncated or invalid: refused here
        if args.figures:
            from checker.commands.figures import check_plotting
            check_plotting(args.figures, flag="--figures")
            check_output_dir("--figures", args.figures)
        records = sorted(read_results(args.results).values(), key=lambda r: r["key"])
        if not records:
            raise CheckerError(f"{args.results}: no results")
        if args.grid:
            keys = {p["key"] for p in grid.points}
            foreign = [r for r in records if r["key"] not in keys]
            if foreign:  # said, not refused: a results file may hold an earlier grid's points too
                import sys
                print(f"python -m checker.report: warning: --grid {args.grid}: {len(foreign)} of {len(records)} "
                      "results are not points of this grid (another sweep's grid, or an earlier grid's points "
                      "in the same results file); the Regenerate line names it anyway", file=sys.stderr)
        from checker.studies.report import mixed_settings
        mixed = mixed_settings(records)
        if mixed:
            import sys
            print(f"python -m checker.report: warning: {mixed} (see the warning in the report)", file=sys.stderr)
        figs = make_figures(records, Path(args.figures)) if args.figures else None
        text = render(records, source=args.results, figures=figs, out_path=Path(args.out), grid=args.grid,
                      note=args.note)
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            tmp.write_text(text + "\n", encoding="utf-8")
            tmp.replace(out)
        except OSError as exc:
            raise CheckerError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(f"report written to {args.out}" + (f", {len(figs)} figure(s) in {args.figures}" if figs else ""))
        return EXIT_OK

    return run_guarded(body, "python -m checker.report")
