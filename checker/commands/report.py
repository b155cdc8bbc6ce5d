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


#: What each plotted quantity is measured in (the y label of its panel).
QUANTITY_UNIT = {
    "rho": "certificate margin, 1", "rho_far": "certificate margin, 1", "p_norm": "norm of the dual vector",
    "eps_0": "loss units", "lambda_max": "units of lambda", "conv_rate": "per unit time eta t",
    "C3_worst_ratio": "ratio, T1 needs <= 1", "C4_worst_ratio": "ratio, T1 needs <= 1",
    "angle_over_lambda": "rad per unit lambda", "loss_over_lambda2": "loss / lambda^2",
}


def _panels(pts: list[Mapping[str, Any]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The panels of an axis figure: (title, [(quantity key, series label)]), one quantity per panel.

    Every constant of ``QUANTITIES`` gets its panel; a threshold family gets one (its two bracket
    ends, same unit) only when some point of the axis bracketed it.
    """
    from checker.studies.scaling import QUANTITIES

    out = [(QUANTITY_LABEL.get(q, q), [(q, "")]) for q in QUANTITIES]
    fams = sorted({k[len("threshold_"):].rsplit("_", 1)[0] for r in pts for k in _quantities(r)
                   if k.startswith("threshold_")})
    for fam in fams:
        keys = [(f"threshold_{fam}_converged", "largest converging gap"),
                (f"threshold_{fam}_failed", "smallest failing gap")]
        if any(isinstance(_quantities(r).get(k), (int, float)) for r in pts for k, _ in keys):
            out.append((f"threshold along {fam}", keys))
    return out


def axis_figure(records: list[Mapping[str, Any]], axis: str, plt: Any) -> Any | None:
    """Small multiples against one grid axis: one quantity per panel, its unit on the y label.

    None when the axis has fewer than 2 distinct values.  A panel whose quantity has fewer than 2
    positive values says so instead of drawing; log scales only where the values span a decade
    (``checker.commands.figures.value_scale``).
    """
    from checker.commands.figures import FLAT, value_scale

    pts = _axis_points(records, axis)
    if len({r["spec"][axis] for r in pts}) < 2:
        return None
    xs = [float(r["spec"][axis]) for r in pts]
    panels = _panels(pts)
    ncols = 4
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.7 * nrows + 0.6), squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels):
        drawn = []
        for k, (name, label) in enumerate(series):
            ys = [_quantities(r).get(name) for r in pts]
            xy = [(x, y) for x, y in zip(xs, ys) if isinstance(y, (int, float)) and y > 0]
            if len(xy) >= 2:
                ax.plot([p[0] for p in xy], [p[1] for p in xy], "os"[k % 2] + "-", ms=4, color=f"C{k}",
                        label=label or None)
                drawn += [p[1] for p in xy]
        ax.set_title(title, fontsize=9)
        unit = QUANTITY_UNIT.get(series[0][0], "gap, loss units" if series[0][0].startswith("threshold") else "")
        if not drawn:
            ax.text(0.5, 0.5, "fewer than 2 positive values:\nnot drawn (see the table)", ha="center",
                    va="center", fontsize=8, color="0.4", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        value_scale(ax, drawn, "y", flat=FLAT)
        value_scale(ax, xs, "x", decades=0.5)
        from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

        ticks = sorted(set(xs))  # the grid's own values, each labelled
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FixedFormatter([f"{t:g}" for t in ticks]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_ylabel(unit, fontsize=8)
        ax.set_xlabel(AXIS_LABEL[axis], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="major", alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=6.5, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"measured constants against {AXIS_LABEL[axis]} ({len(pts)} point(s); "
                 "log scale where a quantity spans a decade)", fontsize=10)
    fig.tight_layout()
    return fig


def make_figures(records: list[Mapping[str, Any]], folder: Path) -> list[Path]:
    """One small-multiples figure ``axis-AXIS.png`` per grid axis with at least 2 values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from checker.core.io import check_output_dir

    check_output_dir("--figures", folder)  # the folder the user named: created if missing
    paths = []
    for axis in AXES:
        fig = axis_figure(records, axis, plt)
        if fig is None:
            continue
        p = folder / f"axis-{axis}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths


def build_parser() -> UsageParser:
    p = UsageParser(prog="python -m checker.report", description="Markdown report of a sweep's results.")
    p.add_argument("results", help="results file of python -m checker.sweep (JSON lines)")
    p.add_argument("--out", required=True, help="markdown file to write")
    p.add_argument("--figures", help="folder for the figures (matplotlib; created if missing)")
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
