"""Figures of ``python -m checker.landscape --plots DIR`` (matplotlib, Agg backend).

* ``end-losses.png``: histogram of L at every run's end point (log scale; the global runs,
  at the rounding level, are drawn at the left edge and counted in the legend);
* ``spectra.png``: the Hessian eigenvalues of each class's representative (one row per
  class, symlog scale), labelled with its L_lambda, category and count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np


def make_plots(result: Mapping[str, Any], records: list[Mapping[str, Any]], folder: Path, title: str) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from checker.core.io import check_output_dir

    folder = check_output_dir("--plots", folder)  # the folder the user named: created if missing
    paths = []
    losses = np.array([float(r["loss"]) for r in records if r.get("converged") and r.get("loss") is not None])
    floor = 1e-16
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(losses):
        shown = np.maximum(losses, floor)
        lo = np.log10(shown.min()) - 0.5
        hi = np.log10(shown.max()) + 0.5
        ax.hist(shown, bins=np.logspace(lo, hi, 60), color="C0")
        ax.set_xscale("log")
        low = int(np.sum(losses <= floor))
        ax.axvline(2e-3, color="C3", ls="--", lw=1, label="L = 2e-3 (the issue's criterion, 1e-3 on half our loss)")
        ax.legend(title=f"{len(losses)} converged runs" + (f", {low} at L <= 1e-16" if low else ""))
    ax.set_xlabel("L at the end point")
    ax.set_ylabel("runs")
    ax.set_title(title)
    fig.tight_layout()
    p = folder / "end-losses.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)

    classes = result.get("classes", [])
    fig, ax = plt.subplots(figsize=(8, 0.6 * max(len(classes), 1) + 1.5))
    for i, c in enumerate(classes):
        ev = np.array([float(x) for x in c["eigenvalues"]])
        ax.plot(ev, np.full(len(ev), i), "|", ms=12, color="C3" if c["category"] == "spurious" else "C0")
    ax.set_xscale("symlog", linthresh=1e-4)
    ax.set_yticks(range(len(classes)))
    ax.set_yticklabels([f"L={c['reg_loss']:.6g} {c['category']} x{c['count']}" for c in classes], fontsize=8)
    ax.set_xlabel("Hessian eigenvalues of the class representative")
    ax.set_title(title)
    fig.tight_layout()
    p = folder / "spectra.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    return paths
