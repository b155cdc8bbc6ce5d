"""Figures of a T1 run (matplotlib, Agg backend; ``--plots DIR``).

* ``gap_loss.png``: L_lambda, L and the gap estimate against steps, log scale, with the lambda
  decreases (if any), the float64-to-mp switch of a hybrid run and C1's increases marked;
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


def _tick(x: float, _pos: Any = None) -> str:
    """A log-axis tick at 1, 2 or 5 times a power of ten: 0.05, 2, 500, or 2e-7 and 5e+6 out of [1e-3, 1e4)."""
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:g}"
    return f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e+")


#: A quantity whose values agree to this relative spread is drawn as a flat line (``value_scale``).
FLAT = 1e-5


def value_scale(ax: Any, values: Any, which: str = "y", *, decades: float = 1.0, flat: float | None = None) -> str:
    """Log scale when the positive ``values`` span at least ``decades`` decades, else linear with plain ticks.

    A log axis over less than a decade has one labelled tick or none and minor labels such as
    ``9.00008 x 10^-1``; a linear axis with plain numbers reads at a glance there.  On a y axis,
    values equal to a relative ``flat`` (given: e.g. ``FLAT``) are drawn flat (limits +-5% around
    them), with the spread said in the panel.  Returns the scale set (``"log"`` or ``"linear"``).
    """
    from matplotlib.ticker import ScalarFormatter

    v = np.asarray([x for x in np.ravel(np.asarray(values, float)) if np.isfinite(x)], float)
    axis = ax.yaxis if which == "y" else ax.xaxis
    if len(v) and v.min() > 0 and np.log10(v.max() / v.min()) >= decades:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        (ax.set_yscale if which == "y" else ax.set_xscale)("log")
        axis.set_minor_formatter(NullFormatter())  # minor labels overlap on a range of a few decades
        if np.log10(v.max() / v.min()) < 2.5:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(_tick))
        return "log"
    (ax.set_yscale if which == "y" else ax.set_xscale)("linear")
    fmt = ScalarFormatter(useOffset=False)
    fmt.set_scientific(len(v) > 0 and (np.abs(v).max() < 1e-3 or np.abs(v).max() >= 1e5))
    axis.set_major_formatter(fmt)
    if flat is not None and which == "y" and len(v) > 1 and v.max() != 0:
        size = float(np.abs(v).max())
        spread = float(v.max() - v.min()) / size
        if spread < flat:  # equal up to rounding: drawn flat, not as a zig-zag on 12-digit ticks
            mid = float(v.mean())
            ax.set_ylim(mid - 0.05 * size, mid + 0.05 * size)
            ax.text(0.02, 0.95, f"constant to {spread:.1g} relative" if spread else "constant",
                    transform=ax.transAxes, fontsize=7, va="top", color="0.35")
    return "linear"


def _spread_labels(ax: Any, points: list[tuple[float, float]], texts: list[str], fontsize: int = 8) -> None:
    """Annotate each point with its text, moving a label up until its drawn box meets no label placed before."""
    ax.apply_aspect()  # the final axes box (an equal aspect shrinks it at draw time)
    renderer = ax.figure.canvas.get_renderer()
    placed: list[Any] = []
    for (x, y), text in zip(points, texts):
        ann = ax.annotate(text, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=fontsize)
        dy = 3.0
        for _ in range(40):
            box = ann.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            dy += fontsize * 0.8
            ann.xyann = (4, dy)
        if dy > 3.0:  # moved: redrawn with a thin leader line to its point
            ann.remove()
            ann = ax.annotate(text, (x, y), xytext=(4, dy), textcoords="offset points", fontsize=fontsize,
                              arrowprops=dict(arrowstyle="-", color="0.6", lw=0.5, shrinkA=0, shrinkB=2))
        placed.append(ann.get_window_extent(renderer))


Q_CAPTION = ("q_ij (this checker's rule): the share of teacher i's optimal signed mass given to student j, "
             "mass-proportional among the neurons near teacher i with the teacher's sign (sum_j q_ij = 1); "
             "the target of neuron j is sqrt(q_ij) times the optimal neuron of teacher i. "
             "\"far\": outside every radius r, or of the opposite sign; target 0.")


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
        axes_names = ("first coordinate of w", "second coordinate of w")
    else:
        basis = list(np.linalg.svd(Ws)[2][:2])
        axes_names = ("component along e1 (leading direction of the teachers W*)",
                      "component along e2 (second leading direction of W*)")
        if len(Ws) == 1:
            rest = p.W - np.outer(p.W @ Ws[0], Ws[0])
            k = int(np.argmax(np.linalg.norm(rest, axis=1)))
            e2 = rest[k] if np.linalg.norm(rest[k]) > 0 else np.roll(Ws[0], 1)
            e2 = e2 - Ws[0] * (Ws[0] @ e2)
            basis = [Ws[0], e2 / np.linalg.norm(e2)]
            axes_names = ("component along e1 = w*_0", "component along e2 (students' largest part orthogonal to w*_0)")
        P = np.array(basis)
    return draw_descent_direction(plt, P @ Ws.T, P @ np.asarray(red.W, float).T, np.asarray(p.a, float),
                                  P @ np.asarray(p.W, float).T, P @ np.asarray(D.W_hat, float).T,
                                  list(D.assignment), list(D.q), axes_names,
                                  "the plane itself" if d == 2 else "projected on the plane (e1, e2)",
                                  float(p.lam))


def draw_descent_direction(plt: Any, teachers: np.ndarray, optimal: np.ndarray, a: np.ndarray,
                           students: np.ndarray, targets: np.ndarray, assignment: list[int], q: list[float],
                           axes_names: tuple[str, str], plane: str, lam: float) -> Any:
    """The descent-direction figure from plane coordinates (columns: teachers, optimal neurons, students, targets)."""
    fig, ax = plt.subplots(figsize=(6.4, 7.4))
    for i in range(teachers.shape[1]):
        u, uo = teachers[:, i], optimal[:, i]
        ax.plot([0, u[0]], [0, u[1]], "k:", lw=1, label="teacher direction w*_i (unit)" if i == 0 else None)
        ax.plot([0, uo[0]], [0, uo[1]], "k-", lw=2, label="optimal neuron of teacher i" if i == 0 else None)
    pts, texts = [], []
    for j in range(students.shape[1]):
        x, y = students[:, j], targets[:, j]
        colour = "tab:blue" if a[j] >= 0 else "tab:red"
        ax.plot(*x, "o", color=colour, ms=5)
        ax.annotate("", xy=y, xytext=x, arrowprops=dict(arrowstyle="->", color=colour, lw=1.2))
        region = "far" if assignment[j] < 0 else f"T{assignment[j]}, q={q[j]:.2f}"
        pts.append((float(x[0]), float(x[1])))
        texts.append(f"{j}: {region}")
    for i in range(teachers.shape[1]):
        pts.append((float(optimal[0, i]), float(optimal[1, i])))
        texts.append(f"teacher {i}")
    ax.plot([], [], "o", color="tab:blue", label="student w_j (a_j > 0)")
    ax.plot([], [], "o", color="tab:red", label="student w_j (a_j < 0)")
    ax.plot([], [], "-", marker=r"$\rightarrow$", color="0.3", ms=10, lw=0, label="arrow -D_w: w_j to its target")
    ax.plot(0, 0, "k+")
    every = np.concatenate([teachers, optimal, students, targets, np.zeros((2, 1))], axis=1)
    lo, hi = every.min(axis=1), every.max(axis=1)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 0.05) * 1.15
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(axes_names[0])
    ax.set_ylabel(axes_names[1])
    ax.grid(True, alpha=0.25)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.92, bottom=0.25)  # before the labels: their spacing is measured
    _spread_labels(ax, pts, texts, fontsize=7)
    ax.set_title(f"descent direction at the start of the run (lambda = {lam:.3g})\n"
                 f"arrows -D move each neuron to its target; {plane}", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2, frameon=False)
    import textwrap
    fig.text(0.5, 0.01, "\n".join(textwrap.wrap(Q_CAPTION, 105)), ha="center", va="bottom", fontsize=6.5)
    return fig


def gap_loss_figure(run: Mapping[str, Any], c1: Any, plt: Any) -> Any:
    """L_lambda, L and the gap against steps (log scale), with the run's events marked.

    ``run`` is the report's ``run`` (history rows, ``lam_changes``, ``float64_phase`` of a hybrid
    run); ``c1`` the report's C1 check or None.  Marked: a vertical line at each lambda decrease
    (only when lambda changed), the float64-to-mp switch of a hybrid run, and, when C1 fails,
    the rows after which L_lambda rose by more than C1's tolerance.
    """
    hist = list(run.get("history", []))
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    steps = [h["step"] for h in hist]
    ax.semilogy(steps, [max(h["reg_loss"], 1e-300) for h in hist], "-", color="C0", lw=1.8,
                label="L_lambda (the objective GD descends; C1)")
    ax.semilogy(steps, [max(h["loss"], 1e-300) for h in hist], "--", color="C2", lw=1.2, label="L (loss)")
    gs = [(h["step"], h["gap"]) for h in hist if h.get("gap") not in (None, 0)]
    if gs:
        ax.semilogy([s for s, _ in gs], [max(g, 1e-300) for _, g in gs], "o-", ms=3, color="C1",
                    label="gap zeta_t = L_lambda - L*_lambda (estimate)")
    if c1 is not None and getattr(c1, "holds", None) is False:
        tol = getattr(c1, "bound", None)
        tol = float(tol) if isinstance(tol, (int, float)) else 0.0
        up = [h for h in hist if (h.get("max_increase") or 0.0) > tol]
        if up:
            ax.semilogy([h["step"] for h in up], [max(h["reg_loss"], 1e-300) for h in up], "v", color="C3", ms=7,
                        label="L_lambda rose since the previous row (C1 fails)")
    changes = run.get("lam_changes") or []
    for k, (step, lam) in enumerate(changes):
        ax.axvline(step, color="grey", lw=0.8, ls=":", label="lambda decreased" if k == 0 else None)
    phase = run.get("float64_phase")
    if phase:
        n = int(phase["steps"])
        ax.axvline(n, color="C4", lw=1.2, ls="-.", label=f"float64 -> mp switch (step {n})")
    lams = sorted({h["lam"] for h in hist if h.get("lam") is not None})
    ax.set_xlabel("GD step")
    ax.set_ylabel("value (log scale; L, L_lambda and the gap are losses)", fontsize=9)
    if changes:
        title = f"L_lambda, L and the gap (lambda decreased {len(changes)} time(s))"
    else:
        title = "L_lambda, L and the gap" + (f" (lambda = {lams[0]:.3g}, fixed)" if len(lams) == 1 else "")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.25)
    ax.legend(fontsize=7.5, loc="best")
    return fig


def mass_angle_figure(start: list[Mapping[str, Any]], end: list[Mapping[str, Any]], radius: float, plt: Any) -> Any:
    """Neuron mass against the angle to the nearest teacher, start and end (rows of ``certificate_terms``)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    masses = []
    for rows, label, marker in ((start, "start", "o"), (end, "end", "x")):
        pts = [(r["angle"], r["mu"]) for r in rows if r["angle"] is not None and r["mu"] > 0]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
            masses += [p[1] for p in pts]
    ax.axvline(radius, color="grey", ls="--", lw=0.8, label="radius r")
    scale = value_scale(ax, masses)
    ax.set_xlabel("angle to nearest teacher (rad)")
    ax.set_ylabel("mass mu_j = |a_j| ||w_j||" + (" (log scale)" if scale == "log" else ""))
    ax.legend()
    ax.set_title("neuron mass against angle to the nearest teacher")
    return fig


def make_plots(check: Any, report: Any, folder: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from checker.geometry.certificate import certificate_terms, eta_values

    from checker.core.io import check_output_dir

    out = check_output_dir("--plots", folder)  # the folder the user named: created if missing
    paths: list[Path] = []

    def save(fig: Any, name: str, layout: bool = True) -> Path:
        from checker.core.io import write_bytes_atomic

        if layout:
            fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        plt.close(fig)
        write_bytes_atomic(out / name, buf.getvalue())  # same rule as every result file
        return out / name

    c1 = next((c for c in getattr(report, "conclusions", []) if getattr(c, "id", None) == "C1"), None)
    paths.append(save(gap_loss_figure(report.run, c1, plt), "gap_loss.png"))

    # mass against angle, start and end
    from checker.core.io import engine_from_json

    inst = check.instance
    a_start = np.array([float(x) for x in inst.student_a])
    W_start = np.array([[float(x) for x in r] for r in inst.student_W])
    start = certificate_terms(check.cert, check.W_star, a_start, W_start)["students"]
    a_end = np.array([float(x) for x in np.ravel(engine_from_json(check.engine, report.run["a"]))])
    W_end = np.array([[float(x) for x in r] for r in engine_from_json(check.engine, report.run["W"])])
    end = certificate_terms(check.cert, check.W_star, a_end, W_end)["students"]
    paths.append(save(mass_angle_figure(start, end, check.radius, plt), "mass_angle.png"))

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
        ax.set_xlabel("first coordinate (unit direction)")
        ax.set_ylabel("second coordinate (unit direction)")
        ax.legend(fontsize=8, loc="lower left")
        ax.set_title("directions (d = 2): teacher solid, students dashed\n"
                     "(students at the end: blue a_j > 0, red a_j < 0)", fontsize=9)
        paths.append(save(fig, "directions.png"))

    try:
        paths.append(save(descent_direction_figure(check, plt), "descent_direction.png", layout=False))
    except CheckerError as exc:  # the construction does not apply (a teacher dropped at this lambda)
        print(f"note: no descent_direction.png: {exc}")
    return paths
