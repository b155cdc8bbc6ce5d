"""Figures of ``python -m checker.algorithm --plots DIR`` (matplotlib, Agg backend).

* ``directions.png``: student directions (first seed) at the start and after each
  stage, projected on the plane of the first two teachers (the teachers drawn as
  arrows; marker size ~ neuron mass after stages 2 and 3);
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

from checker.core.io import check_output_dir
from checker.core.model import Instance


def _plane(W_star: np.ndarray) -> np.ndarray:
    """Orthonormal (d, 2) basis of the plane of the first two teachers (or any plane with the first)."""
    d = W_star.shape[1]
    cols = [W_star[0]] + ([W_star[1]] if len(W_star) > 1 else []) + [np.eye(d)[k] for k in range(d)]
    Q, _ = np.linalg.qr(np.array(cols).T)
    return Q[:, :2]


def make_plots(results: list[dict[str, Any]], teacher: Instance, folder: str) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = check_output_dir("--plots", folder)
    out.mkdir(parents=True, exist_ok=True)
    W_star = np.array([[float(x) for x in r] for r in teacher.teacher_W])
    W_star /= np.linalg.norm(W_star, axis=1)[:, None]
    P = _plane(W_star)
    r0 = results[0]
    dirs = r0["directions"]
    paths = []

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    panels = [("start", dirs["W0"], None), ("after stage 1", dirs["W1"], None),
              ("after stage 2", dirs["W2"], dirs["a2"]), ("after stage 3", dirs["W3"], dirs["a3"])]
    for ax, (title, W, a) in zip(axes, panels):
        ax.set_title(f"seed {r0['seed']}: {title}")
        ax.set_aspect("equal")
        t = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(t), np.sin(t), color="0.85", lw=0.8)
        for i, w in enumerate(W_star @ P):
            ax.annotate("", xy=w, xytext=(0, 0), arrowprops=dict(color="C3", lw=1.5))
        if W is None:
            ax.text(0, 0, "not run", ha="center")
            continue
        W = np.asarray(W)
        n = np.linalg.norm(W, axis=1)
        U = (W / np.where(n > 0, n, 1)[:, None]) @ P
        size = 12 if a is None else 8 + 200 * np.abs(np.asarray(a)) * n / max(float(np.max(np.abs(np.asarray(a)) * n)), 1e-300)
        ax.scatter(U[:, 0], U[:, 1], s=size, alpha=0.6)
        ax.set_xlim(-1.2, 1.2)
        ax.set_ylim(-1.2, 1.2)
    fig.suptitle("unit directions projected on the plane of the first two teachers (red arrows)")
    fig.tight_layout()
    paths.append(out / "directions.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

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
    paths.append(out / "losses.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    fl = [r["feature_learning_end"]["frozen_floor"] for r in results]
    s3 = [r["feature_learning_end"]["stage3_loss"] for r in results]
    pts = [(x, y) for x, y in zip(fl, s3) if y is not None and y > 0 and x > 0]
    if pts:
        xs, ys = zip(*pts)
        ax.loglog(xs, ys, "o")
        lo, hi = min(xs + ys), max(xs + ys)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="stage-3 loss = floor")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no seed reached stage 3's descent", ha="center", transform=ax.transAxes)
    ax.set_xlabel("frozen-feature floor after stage 1")
    ax.set_ylabel("loss after stage 3")
    ax.set_title("feature learning at the end of training")
    fig.tight_layout()
    paths.append(out / "floor_vs_stage3.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
