"""Figures of ``python -m checker.algorithm --plots DIR`` (matplotlib, Agg backend).

* ``directions.png``: student directions (first seed) at the start and after each
  stage, projected on the plane of the first two teachers (the teachers drawn as
  arrows; axes: the components along that plane's orthonormal basis; after stages 2 and 3
  the marker area is proportional to the neuron mass, with a key of three sizes);
* ``losses.png``: the loss across the three stages on one axis (stage-1 steps,
  stage 2 as one step, then the stage-3 descent), log scale;
* ``floor_vs_stage3.png``: per seed, the frozen-feature floor after stage 1
  against the loss after stage 3 (points below the diagonal: the first layer
  kept learning features in stage 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from checker.commands.figures import value_scale
from checker.core.io import check_output_dir
from checker.core.model import Instance


def _plane(W_star: np.ndarray) -> np.ndarray:
    """Orthonormal (d, 2) basis of the plane of the first two teachers (or any plane with the first)."""
    d = W_star.shape[1]
    cols = [W_star[0]] + ([W_star[1]] if len(W_star) > 1 else []) + [np.eye(d)[k] for k in range(d)]
    Q, _ = np.linalg.qr(np.array(cols).T)
    return Q[:, :2]


#: Marker area (points^2) of a neuron before a is trained, and the range of the mass-proportional areas.
FIXED_SIZE = 12.0
MIN_SIZE, MAX_SIZE = 8.0, 208.0


def marker_area(mass: np.ndarray, top: float) -> np.ndarray:
    """Marker area of each neuron: affine in its mass, MIN_SIZE at 0 and MAX_SIZE at ``top``."""
    return MIN_SIZE + (MAX_SIZE - MIN_SIZE) * np.asarray(mass, float) / top


def make_plots(results: list[dict[str, Any]], teacher: Instance, folder: str) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = check_output_dir("--plots", folder)  # the folder the user named: created if missing
    W_star = np.array([[float(x) for x in r] for r in teacher.teacher_W])
    W_star /= np.linalg.norm(W_star, axis=1)[:, None]
    paths = []
    for name, fig in (("directions.png", directions_figure(results[0], W_star, plt)),
                      ("losses.png", losses_figure(results[0], plt)),
                      ("floor_vs_stage3.png", floor_figure(results, plt))):
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def directions_figure(r0: dict[str, Any], W_star: np.ndarray, plt: Any) -> Any:
    """Directions at the start and after each stage (seed ``r0``), on the plane of the first two teachers."""
    P = _plane(W_star)
    dirs = r0["directions"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.9))
    panels = [("start", dirs["W0"], None), ("after stage 1", dirs["W1"], None),
              ("after stage 2", dirs["W2"], dirs["a2"]), ("after stage 3", dirs["W3"], dirs["a3"])]
    names = ("e1 = w*_1", "e2 (w*_2's part orthogonal to w*_1)") if len(W_star) > 1 else ("e1 = w*_1", "e2")
    for ax, (title, W, a) in zip(axes, panels):
        ax.set_title(f"seed {r0['seed']}: {title}", fontsize=10)
        ax.set_aspect("equal")
        t = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(t), np.sin(t), color="0.85", lw=0.8)
        for i, w in enumerate(W_star @ P):
            ax.annotate("", xy=w, xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color="C3", lw=1.5))
            ax.annotate(f"w*_{i + 1}", w, xytext=(-22, 5), textcoords="offset points", fontsize=8, color="C3")
        ax.set_xlim(-1.2, 1.2)
        ax.set_ylim(-1.2, 1.2)
        ax.set_xlabel(f"component along {names[0]}", fontsize=8)
        ax.set_ylabel(f"component along {names[1]}", fontsize=8)
        if W is None:
            ax.text(0, 0, "not run", ha="center")
            continue
        W = np.asarray(W)
        n = np.linalg.norm(W, axis=1)
        U = (W / np.where(n > 0, n, 1)[:, None]) @ P
        if a is None:
            ax.scatter(U[:, 0], U[:, 1], s=FIXED_SIZE, alpha=0.6)
            ax.text(0.02, 0.02, "marker size fixed\n(a not trained yet)", transform=ax.transAxes, fontsize=7,
                    va="bottom")
        else:
            mass = np.abs(np.asarray(a)) * n
            top = max(float(np.max(mass)), 1e-300)
            ax.scatter(U[:, 0], U[:, 1], s=marker_area(mass, top), alpha=0.6)
            for frac in (1.0, 0.5, 0.1):
                ax.scatter([], [], s=marker_area(np.array([frac * top]), top), color="C0", alpha=0.6,
                           label=f"mass {frac * top:.2g}")
            ax.legend(title="mass |a_j| ||w_j||", fontsize=7, title_fontsize=7, loc="lower left",
                      labelspacing=1.1, borderpad=0.8, framealpha=0.8)
    fig.suptitle("unit directions w_j/||w_j|| projected on the plane of the first two teachers (red arrows); "
                 "after stages 2 and 3 the marker area is proportional to the neuron's mass")
    fig.tight_layout()
    return fig



def losses_figure(r0: dict[str, Any], plt: Any) -> Any:
    """The loss of seed ``r0`` across the three stages on one axis, log scale."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    s1 = r0["stage1"]["losses"]
    k1 = len(s1) - 1
    ax.semilogy(range(len(s1)), s1, "o-", label="stage 1 (W only, a fixed)")
    ax.semilogy([k1 + 1], [r0["stage2"]["loss"]], "s", label="stage 2 (ridge on a)")
    h = r0["stage3"]["history"]
    if h:
        ax.semilogy([k1 + 2 + row["step"] for row in h], [max(row["loss"], 1e-300) for row in h],
                    label="stage 3 (T1 descent)")
    ax.axhline(r0["stage1"]["floor"], color="k", ls="--", lw=0.8, label="frozen-feature floor after stage 1")
    ax.set_xscale("symlog", linthresh=max(k1 + 2, 2))
    ax.set_xlim(left=0)
    ax.set_xlabel("step (stage 1 | stage 2 | stage 3)")
    ax.set_ylabel("L")
    ax.legend(fontsize=8)
    ax.set_title(f"loss across the stages, seed {r0['seed']}")
    fig.tight_layout()
    return fig



def floor_figure(results: list[dict[str, Any]], plt: Any) -> Any:
    """Per seed: the frozen-feature floor after stage 1 against the loss after stage 3."""
    fig, ax = plt.subplots(figsize=(5, 5))
    fl = [r["feature_learning_end"]["frozen_floor"] for r in results]
    s3 = [r["feature_learning_end"]["stage3_loss"] for r in results]
    pts = [(x, y) for x, y in zip(fl, s3) if y is not None and y > 0 and x > 0]
    if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, "o", label="one seed")
        lo, hi = min(xs + ys), max(xs + ys)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="stage-3 loss = floor")
        pad = (hi / lo) ** 0.05 if lo > 0 else 1.0
        for which in ("x", "y"):
            value_scale(ax, [lo / pad, hi * pad], which)
        ax.set_xlim(lo / pad, hi * pad)
        ax.set_ylim(lo / pad, hi * pad)
        ax.set_aspect("equal", adjustable="box") if ax.get_xscale() == "linear" else None
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no seed reached stage 3's descent", ha="center", transform=ax.transAxes)
    ax.set_xlabel("frozen-feature floor after stage 1")
    ax.set_ylabel("loss after stage 3")
    ax.set_title("feature learning at the end of training")
    fig.tight_layout()
    return fig
