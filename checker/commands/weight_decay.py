"""``python -m checker.weight_decay``: what weight decay buys, measured.

The command: parses, calls ``checker.studies.weight_decay.run_study``, prints the
study and draws its figure; what is measured is documented in
``checker.studies.weight_decay``.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence

from checker.commands.cli import UsageParser, run_guarded
from checker.commands.options import parse_option
from checker.commands.presets import load_preset, load_run_file, preset_names
from checker.core.constants import EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, EXIT_OK
from checker.core.errors import CheckerError
from checker.core.io import check_output_dir, check_output_file, write_json_atomic
from checker.studies.weight_decay import Law, StudyOptions, StudyResult, run_study


PROG = "python -m checker.weight_decay"


DEFAULT_PRESET = "default"


# --------------------------------------------------------------------------- output
def _fmt_law(law: Law) -> str:
    if law.model == "none":
        return f"no fit ({law.reason})"
    lo, hi = law.fit_range_steps
    if law.model == "linear-rate":
        r = law.linear_rate
        body = f"linear: rate {r['rate']:.4g} per step [95%: {r['rate_low']:.4g}, {r['rate_high']:.4g}]"
    else:
        r = law.power_law
        body = f"power law: exponent {r['exponent']:.4g} [95%: {r['exponent_low']:.4g}, {r['exponent_high']:.4g}]"
    e0, e1 = law.fit_range_excess
    return f"{body} over steps {lo}..{hi} (e {e0:.2g} -> {e1:.2g}, {law.points} rows)"


def print_study(res: StudyResult, out: Any = None) -> None:
    out = out or sys.stdout
    print(f"weight-decay study — {res.source}: lambda = {res.options['lambda']} vs 0, eta = "
          f"{res.instance.get('eta')}, m = {len(res.instance['student']['a'])} students, "
          f"m* = {len(res.instance['teacher']['a'])} teachers", file=out)
    for r in res.runs:
        print(f"\n{r.name} (lambda = {r.lam}, train = {r.train})", file=out)
        for ph in r.phases:
            eng = ph["engine"]["name"] + (f" {ph['engine']['dps']} digits" if ph["engine"]["dps"] else "")
            print(f"  {eng}: steps {ph['from_step']}..{ph['to_step']} ({ph['stop_reason']}, "
                  f"{ph['elapsed']:.1f} s)", file=out)
        print(f"  final: L = {float(r.final['loss']):.6g}, L_lambda = {float(r.final['reg_loss']):.12g}, "
              f"far mass = {float(r.final['far_mass']):.3g}", file=out)
        print(f"  {r.excess_definition}", file=out)
        print(f"  law: {_fmt_law(r.law)}", file=out)
        hits = ", ".join(f"{k}: {v if v is not None else '-'}" for k, v in r.steps_to_target.items())
        print(f"  steps to e <= target: {hits}", file=out)
        geo = "; ".join(f"t={g['step']}: far {float(g['far_mass']):.2g}, redundant "
                        f"{float(g['redundant_mass']):.3g}, angle {float(g['max_angle']):.2g}"
                        for g in r.geometry)
        print(f"  geometry: {geo}", file=out)
    for n in res.notes:
        print(f"note: {n}", file=out)
    print(f"\nverdict: {res.verdict}", file=out)


#: One colour per run, told apart also by colour-blind readers (Okabe-Ito): blue, vermillion, green, purple.
RUN_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")


def make_figure(res: StudyResult, folder: str | Path) -> Path:
    """One figure: excess against steps, log-log, every run (mp continuation dashed).

    The rows of each run's fit range are drawn again as a wide translucent band of the run's
    colour with a bar at each end, so that the range a law was fitted on reads at a glance.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = draw_figure(res, plt)
    path = check_output_dir("--plots", folder) / "weight-decay-loss.png"  # the folder: created if missing
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw_figure(res: StudyResult, plt: Any) -> tuple[Any, Any]:
    """The weight-decay figure (``make_figure``) on a new matplotlib figure; returns (fig, ax)."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    fitted = False
    for r, c in zip(res.runs, RUN_COLOURS):
        pts = [h for h in r.history if h["step"] >= 1 and h["resolved"]]
        for eng, style in (("float64", "-"), (None, "--")):
            sel = [h for h in pts if (h["engine"] == "float64") == (eng == "float64")]
            if sel:
                ax.loglog([h["step"] for h in sel], [h["excess"] for h in sel], style, color=c, lw=1.3,
                          label=f"{r.name} (lambda={r.lam})" if eng == "float64" else f"{r.name}, mp", zorder=3)
        if r.law.fit_range_steps:
            lo, hi = r.law.fit_range_steps
            fit = [h for h in pts if lo <= h["step"] <= hi]
            if fit:
                xs, ys = [h["step"] for h in fit], [h["excess"] for h in fit]
                ax.loglog(xs, ys, color=c, lw=9, alpha=0.28, solid_capstyle="butt", zorder=2)
                ax.loglog([xs[0], xs[-1]], [ys[0], ys[-1]], "|", color=c, ms=16, mew=2.2, zorder=4)
                fitted = True
    if fitted:
        ax.plot([], [], color="0.4", lw=9, alpha=0.28, label="fit range (wide band, bars at its ends)")
    ax.set_xlabel("step t")
    ax.set_ylabel("excess e(t)  (L for lambda = 0; L_lambda - L_ref for lambda > 0)")
    ax.set_title("Weight decay vs none: GD from the same start (resolved rows)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax


# --------------------------------------------------------------------------- command line
def build_parser() -> UsageParser:
    p = UsageParser(prog=PROG, description="What weight decay buys: GD with lambda > 0 and lambda = 0 "
                                            "from the same start, both layers and first layer only.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help=f"embedded start (default: {DEFAULT_PRESET})")
    src.add_argument("--instance", help="instance or run file (JSON)")
    p.add_argument("--lambda", dest="lam", help="the weight decay of the lambda > 0 runs (default: the instance's)")
    p.add_argument("--eta", help="step size (default: the instance's)")
    p.add_argument("--steps", type=int, default=100_000, help="float64 steps per run (default 100000)")
    p.add_argument("--mp-steps", type=int, default=1500,
                   help="mp steps after a float64 precision floor (default 1500; 0: none)")
    p.add_argument("--dps", type=int, default=30, help="digits of the mp continuation (default 30)")
    p.add_argument("--json", help="write the result to this file")
    p.add_argument("--plots", help="write the figure to this folder (created if missing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        if args.steps < 1:
            raise CheckerError(f"--steps must be >= 1, got {args.steps}")
        if args.mp_steps < 0:
            raise CheckerError(f"--mp-steps must be >= 0, got {args.mp_steps}")
        parse_option("dps", args.dps)  # the one --dps range of every command
        for flag, value in (("--lambda", args.lam), ("--eta", args.eta)):
            if value is not None:
                try:
                    ok = Decimal(value.strip()).is_finite() and Decimal(value.strip()) > 0
                except ArithmeticError:
                    ok = False
                if not ok:
                    raise CheckerError(f"{flag} must be a positive decimal number, got {value!r}")
        if args.instance:
            instance, source = load_run_file(args.instance).instance, args.instance
        else:
            name = args.preset or DEFAULT_PRESET
            if name not in preset_names():
                raise CheckerError(f"unknown preset {name!r}; available presets: {', '.join(preset_names())}")
            instance, source = load_preset(name).instance, f"preset {name}"
        if instance.m <= instance.m_star:
            raise CheckerError(f"the study needs more students than teachers (m = {instance.m}, "
                               f"m* = {instance.m_star})")
        if args.json:
            check_output_file("--json", args.json, distinct_from={"--instance": args.instance})
        if args.plots:
            from checker.commands.figures import check_plotting
            check_plotting(args.plots)
            check_output_dir("--plots", args.plots)
        opts = StudyOptions(lam=args.lam.strip() if args.lam else None,
                            eta=args.eta.strip() if args.eta else None, steps=args.steps,
                            mp_steps=args.mp_steps, dps=args.dps, progress=not args.no_progress)
        say = (lambda text: print(text, file=sys.stderr, flush=True)) if opts.progress else (lambda text: None)
        res = run_study(instance, opts, source, say)
        print_study(res)
        if args.json:
            write_json_atomic(args.json, res.to_dict())
            print(f"result written to {args.json}")
        if args.plots and res.runs:
            print(f"figure: {make_figure(res, args.plots)}")
        return {"complete": EXIT_OK, "interrupted": EXIT_INTERRUPTED}.get(res.verdict, EXIT_INCONCLUSIVE)

    return run_guarded(body, PROG)
