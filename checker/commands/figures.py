"""Figures of a T1 run (matplotlib, Agg backend; ``--plots DIR``).

* ``gap_loss.png``: L, L_lambda - min and the gap estimate against steps, log scale;
* ``mass_angle.png``: neuron mass against angle to the nearest teacher, start and end;
* ``certificate.png``: the dual certificate eta along great circles through teacher directions;
* ``directions.png`` (d = 2 only): teacher and student directions on the circle;
* ``descent_direction.png``: the paper's Figure 1 ("Illustration of descent direction") reproduced
  at the starting student: each neuron w_j and the arrow of -D to its target (sqrt(q_ij) times the
  optimal neuron of its teacher, or 0 when far), in the plane itself for d = 2, else projected on
  the plane of the two leading principal directions of the teacher neurons.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from checker.core.errors import CheckerError


#: The figure files, in the order they are written (``directions.png`` only when d = 2).
FIGURES = ("gap_loss.png", "mass_angle.png", "certificate.png", "directions.png")


def figure_names(d: int) -> tuple[str, ...]:
    """The figure files a run in dimension ``d`` writes."""
    return FIGURES if d == 2 else FIGURES[:-1]


def check_plotting(folder: str, d: int | None = None, *,
                   distinct_from: Mapping[str, str | None] | None = None, flag: str = "--plots") -> None:
    """Fail early (exit 2) when figures were asked for but cannot be made or written.

    The folder is probed (created if missing) and so is every figure file of a T1 run
    in it (``d`` given: ``figure_names(d)``), with the rule of every output: a figure
    path that exists and is not a regular file is refused, never replaced; a symbolic
    link is written through.  Other commands (``d`` None) probe their own file names.
    """
    from checker.core.io import check_output_dir, check_output_file

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CheckerError(f"{flag} needs matplotlib: pip install -e \".[plots]\"") from None
    check_output_dir(flag, folder)
    for name in (figure_names(d) if d is not None else ()):
        check_output_file(flag, Path(folder) / name, distinct_from=distinct_from)


def _great_circle(e1: np.ndarray, e2: np.ndarray, n: int = 721) -> tuple[np.ndarray, np.ndarray]:
    e1 = e1 / np.linalg.norm(e1)
    e2 = e2 - e1 * (e1 @ e2)
    e2 = e2 / np.linalg.norm(e2)
    t = np.linspace(-np.pi, np.pi, n)
    return t, np.cos(t)[:, None] * e1 + np.sin(t)[:, None] * e2


def descent_direction_figure(check: Any, plt: Any) -> Any:
    """Figure 1 reproduced: students w_j, targets w-hat_j and the arrows -D_w (start of the run).

    Float64 at the instance's lambda; the construction is ``checker.geometry.descent`` (reconstructed
    details: mass-proportional q_ij, targets balanced).  For d > 2 the plane is spanned by the two
    leading right singular vectors of the teacher matrix (for m* = 1: w*_1 and the largest student
    component orthogonal to it); the projection can shorten arrows, never lengthen them.
    """
    from checker.core.engines import Float64Engine
    from checker.geometry import descent
    from checker.core.problem import Problem

    eng = Float64Engine()
    p = Problem.from_instance(check.instance, eng)
    red = descent.reduced_optimum(eng, p.activation, p.a_star, p.W_star, p.lam)
    D = descent.descent_direction(eng, p.activation, p.a, p.W, p.W_star, red, check.radius)
    Ws = np.asarray(p.W_star, float)
    d = Ws.shape[1]
    if d == 2:
        P = np.eye(2)
    else:
        basis = list(np.linalg.svd(Ws)[2][:2])
        if len(Ws) == 1:
            rest = p.W - np.outer(p.W @ Ws[0], Ws[0])
            k = int(np.argmax(np.linalg.norm(rest, axis=1)))
            e2 = rest[k] if np.linalg.norm(rest[k]) > 0 else np.roll(Ws[0], 1)
            e2 = e2 - Ws[0] * (Ws[0] @ e2)
            basis = [Ws[0], e2 / np.linalg.norm(e2)]
        P = np.array(basis)
    fig, ax = plt.subplots(figsize=(5.6, 5.6))
    for i, (w, wo) in enumerate(zip(Ws, np.asarray(red.W, float))):
        u, uo = P @ w, P @ wo
        ax.plot([0, u[0]], [0, u[1]], "k:", lw=1, label="teacher direction w*_i" if i == 0 else None)
        ax.plot([0, uo[0]], [0, uo[1]], "k-", lw=2, label="optimal neuron of teacher i" if i == 0 else None)
        ax.annotate(f"teacher {i}", uo, fontsize=8)
    for j, (a, w, wh) in enumerate(zip(p.a, p.W, D.W_hat)):
        x, y = P @ w, P @ wh
        colour = "tab:blue" if a >= 0 else "tab:red"
        ax.plot(*x, "o", color=colour, ms=5)
        ax.annotate("", xy=y, xytext=x, arrowprops=dict(arrowstyle="->", color=colour, lw=1.2))
        region = "far" if D.assignment[j] < 0 else f"q={D.q[j]:.2f}"
        ax.annotate(f"{j} ({region})", x, fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.plot([], [], "o", color="tab:blue", label="student w_j (a_j > 0)")
    ax.plot([], [], "o", color="tab:red", label="student w_j (a_j < 0)")
    ax.plot(0, 0, "k+")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="best")
    plane = "the plane itself" if d == 2 else "projection on the teachers' leading plane"
    ax.set_title(f"descent direction: arrows -D move each neuron to its target\n({plane}; start of the run, "
                 f"lambda = {float(p.lam):.3g})", fontsize=9)
    return fig


def make_plots(check: Any, report: Any, folder: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from checker.geometry.certificate import certificate_terms, eta_values

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def save(fig: Any, name: str) -> Path:
        from checker.core.io import write_bytes_atomic

        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        plt.close(fig)
        write_bytes_atomic(out / name, buf.getvalue())  # same rule as every result file
        return out / name
    hist = report.run.get("history", [])

    # gap and loss against steps
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    steps = [h["step"] for h in hist]
    ax.semilogy(steps, [max(h["loss"], 1e-300) for h in hist], label="L (loss)")
    gs = [(h["step"], h["gap"]) for h in hist if h.get("gap") not in (None, 0)]
    if gs:
        ax.semilogy([s for s, _ in gs], [max(g, 1e-300) for _, g in gs], "o-", ms=3,
                    label="gap bound (estimate)")
    for step, lam in report.run.get("lam_changes", []):
        ax.axvline(step, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("GD step")
    ax.set_ylabel("value")
    ax.set_title("loss and gap bound (vertical lines: lambda decreased)")
    ax.legend()
    paths.append(save(fig, "gap_loss.png"))

    # mass against angle, start and end
    from checker.core.io import engine_from_json

    inst = check.instance
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    a_start = np.array([float(x) for x in inst.student_a])
    W_start = np.array([[float(x) for x in r] for r in inst.student_W])
    start = certificate_terms(check.cert, check.W_star, a_start, W_start)["students"]
    a_end = np.array([float(x) for x in np.ravel(engine_from_json(check.engine, report.run["a"]))])
    W_end = np.array([[float(x) for x in r] for r in engine_from_json(check.engine, report.run["W"])])
    end = certificate_terms(check.cert, check.W_star, a_end, W_end)["students"]
    for rows, label, marker in ((start, "start", "o"), (end, "end", "x")):
        pts = [(r["angle"], r["mu"]) for r in rows if r["angle"] is not None and r["mu"] > 0]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
    ax.axvline(check.radius, color="grey", ls="--", lw=0.8, label="radius r")
    ax.set_yscale("log")
    ax.set_xlabel("angle to nearest teacher (rad)")
    ax.set_ylabel("mass |a_j| ||w_j||")
    ax.legend()
    ax.set_title("neuron mass against angle to the nearest teacher")
    paths.append(save(fig, "mass_angle.png"))

    # certificate along great circles
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    Ws = check.W_star
    pairs = [(i, i + 1) for i in range(len(Ws) - 1)] or [(0, None)]
    for i, l in pairs:
        e2 = Ws[l] if l is not None else np.roll(Ws[0], 1) + 0.3
        t, Q = _great_circle(Ws[i], e2)
        ax.plot(t, eta_values(check.cert, Ws, Q), label=f"through w*_{i}" + (f", w*_{l}" if l is not None else ""))
    ax.axhline(1, color="grey", lw=0.6)
    ax.axhline(-1, color="grey", lw=0.6)
    ax.set_xlabel("angle along the great circle from w*_i (rad)")
    ax.set_ylabel("eta(w)")
    ax.set_title("dual certificate eta (|eta| <= 1 away from the teachers)")
    ax.legend(fontsize=8)
    paths.append(save(fig, "certificate.png"))

    if inst.d == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        circ = np.linspace(0, 2 * np.pi, 361)
        ax.plot(np.cos(circ), np.sin(circ), color="grey", lw=0.6)
        for i, w in enumerate(Ws):
            ax.plot([0, w[0]], [0, w[1]], "k-", lw=2, label="teacher" if i == 0 else None)
        for j, (a, w) in enumerate(zip(a_end, W_end)):
            n = np.linalg.norm(w)
            if n > 0:
                u = w / n
                ax.plot([0, u[0]], [0, u[1]], "r--" if a < 0 else "b--",
                        label="student (end)" if j == 0 else None)
        ax.set_aspect("equal")
        ax.legend()
        ax.set_title("directions (d = 2): teacher solid, students dashed")
        paths.append(save(fig, "directions.png"))

    try:
        paths.append(save(descent_direction_figure(check, plt), "descent_direction.png"))
    except CheckerError as exc:  # the construction does not apply (a teacher dropped at this lambda)
        print(f"note: no descent_direction.png: {exc}")
    return paths
