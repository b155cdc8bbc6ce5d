"""The figures read at a glance: their structure, checked on the matplotlib objects (Agg backend).

Each test draws a figure from small synthetic data (or a fixed results file) and checks what a
reader needs: axis labels, the events of the run marked, no text overlapping other text, one
quantity per panel, distinguishable colours.  The drawing functions are the ones the commands
save (``checker.commands.figures``, ``algorithm_figures``, ``report``, ``weight_decay``).
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from checker.commands import algorithm_figures as alg_fig  # noqa: E402
from checker.commands import figures  # noqa: E402
from checker.commands import report as report_cmd  # noqa: E402
from checker.commands import weight_decay as wd_cmd  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "sweep-small.jsonl"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(fig) -> list[str]:
    """Every text of a figure: titles, labels, legend entries, annotations, figure texts."""
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def _overlaps(texts) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts whose drawn boxes intersect (after a draw)."""
    fig = texts[0].figure if texts else None
    if fig is None:
        return []
    renderer = fig.canvas.get_renderer()
    # the box of the text itself (an annotation's own extent also covers its arrow or leader line)
    boxes = [(t.get_text(), matplotlib.text.Text.get_window_extent(t, renderer)) for t in texts
             if t.get_visible() and t.get_text()]
    return [(a, b) for (a, ba), (b, bb) in combinations(boxes, 2)
            if ba.x0 < bb.x1 and bb.x0 < ba.x1 and ba.y0 < bb.y1 and bb.y0 < ba.y1]


def _history(n: int, lam: float = 0.1, increase_at: int | None = None) -> list[dict]:
    rows = []
    for k in range(n):
        step = 10 * k
        rows.append({"step": step, "lam": lam, "loss": 5e-3 + 1e-3 * 0.5 ** k, "reg_loss": 0.095 + 2e-3 * 0.5 ** k,
                     "gap": 1e-2 * 0.1 ** k if k % 3 == 0 else None,
                     "max_increase": 1e3 if step == increase_at else 0.0})
    return rows


# --------------------------------------------------------------------------- gap_loss.png
def test_gap_loss_of_a_fixed_lambda_run_says_no_lambda_decrease_and_has_a_real_y_label():
    fig = figures.gap_loss_figure({"history": _history(8), "lam_changes": []}, None, plt)
    ax = fig.axes[0]
    assert not any("lambda decreased" in t for t in _texts(fig))
    assert ax.get_ylabel().strip() and ax.get_ylabel().strip() != "value"
    assert ax.get_xlabel().strip()
    assert "fixed" in ax.get_title()


def test_gap_loss_marks_lambda_decreases_when_there_are_some():
    run = {"history": _history(8), "lam_changes": [[20, 0.05], [40, 0.025]]}
    fig = figures.gap_loss_figure(run, None, plt)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels.count("lambda decreased") == 1  # one legend entry for every decrease line
    vlines = [ln for ln in fig.axes[0].lines if list(ln.get_xdata()) in ([20, 20], [40, 40])]
    assert len(vlines) == 2


def test_gap_loss_marks_the_float64_to_mp_switch_of_a_hybrid_run():
    run = {"history": _history(8), "lam_changes": [], "float64_phase": {"steps": 40, "increases": 0}}
    fig = figures.gap_loss_figure(run, None, plt)
    switch = [ln for ln in fig.axes[0].lines if "float64 -> mp" in ln.get_label()]
    assert len(switch) == 1 and list(switch[0].get_xdata()) == [40, 40]
    plain = figures.gap_loss_figure({"history": _history(8), "lam_changes": []}, None, plt)
    assert not any("float64 -> mp" in ln.get_label() for ln in plain.axes[0].lines)


def test_gap_loss_of_a_c1_failure_plots_the_l_lambda_that_went_up():
    hist = _history(8, increase_at=50)
    c1 = SimpleNamespace(id="C1", holds=False, bound=1e-8)
    fig = figures.gap_loss_figure({"history": hist, "lam_changes": []}, c1, plt)
    lines = {ln.get_label(): ln for ln in fig.axes[0].lines}
    objective = next(ln for label, ln in lines.items() if label.startswith("L_lambda (the objective"))
    assert np.allclose(objective.get_ydata(), [h["reg_loss"] for h in hist])  # L_lambda, not L
    rose = next(ln for label, ln in lines.items() if "rose" in label)
    assert list(rose.get_xdata()) == [50] and np.allclose(rose.get_ydata(), [hist[5]["reg_loss"]])
    held = figures.gap_loss_figure({"history": hist, "lam_changes": []}, SimpleNamespace(holds=True, bound=1e-8), plt)
    assert not any("rose" in ln.get_label() for ln in held.axes[0].lines)


# --------------------------------------------------------------------------- mass_angle.png
def test_mass_angle_ticks_are_plain_numbers_on_a_narrow_range():
    start = [{"angle": 0.07, "mu": 0.900009}]
    end = [{"angle": 0.0, "mu": 0.9}]
    fig = figures.mass_angle_figure(start, end, 1.047, plt)
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(labels) >= 3
    for text in labels:  # e.g. "0.900004", never "9.00004 x 10^-1"
        float(text.replace("\u2212", "-"))
    assert not _overlaps(ax.get_yticklabels() + ax.yaxis.get_minorticklabels())
    wide = figures.mass_angle_figure([{"angle": 0.1, "mu": 1e-4}], [{"angle": 0.0, "mu": 0.9}], 1.0, plt)
    assert wide.axes[0].get_yscale() == "log" and "log" in wide.axes[0].get_ylabel()


# --------------------------------------------------------------------------- descent_direction.png
def _descent(plt_, P_students: np.ndarray, assignment, q):
    teachers = np.array([[1.0, 0.0], [0.0, 1.0]])
    optimal = 0.9 * teachers
    targets = np.array([optimal[:, max(i, 0)] * np.sqrt(qq) if i >= 0 else [0.0, 0.0]
                        for i, qq in zip(assignment, q)]).T
    a = np.array([0.5] * P_students.shape[1])
    return figures.draw_descent_direction(plt_, teachers, optimal, a, P_students, targets, list(assignment), list(q),
                                          ("component along e1", "component along e2"), "the plane itself", 0.01)


def test_descent_direction_has_axis_labels_explains_q_and_no_overlapping_labels():
    # a split pair close together near teacher 0 (their labels would sit on each other), one far
    students = np.array([[0.70, 0.08], [0.69, 0.06], [0.03, 0.85], [-0.5, -0.5]]).T
    fig = _descent(plt, students, [0, 0, 1, -1], [0.55, 0.45, 1.0, 0.0])
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_xlabel().strip() and ax.get_ylabel().strip()
    assert any("q_ij" in t and "target" in t for t in _texts(fig)), "q explained in the figure"
    labels = [t for t in ax.texts if t.get_text()]
    assert {t.get_text() for t in labels} >= {"0: T0, q=0.55", "1: T0, q=0.45", "3: far", "teacher 0"}
    assert not _overlaps(labels), _overlaps(labels)
    assert not _overlaps([t for t in fig.findobj(matplotlib.text.Text) if t.get_text()
                          and t not in ax.get_xticklabels() + ax.get_yticklabels()])


# --------------------------------------------------------------------------- the algorithm's figures
def _alg_result(seed: int, floor: float, stage3: float) -> dict:
    rng = np.random.default_rng(seed)
    W0 = rng.standard_normal((8, 4))
    W1 = np.array([[1, 0.02, 0, 0]] * 4 + [[0.02, 1, 0, 0]] * 4, float)
    a = np.linspace(0.05, 0.4, 8)
    return {"seed": seed,
            "directions": {"W0": W0.tolist(), "W1": W1.tolist(), "W2": W1.tolist(), "a2": a.tolist(),
                           "W3": W1.tolist(), "a3": a.tolist()},
            "stage1": {"losses": [1.0, 0.5, 0.2], "floor": 0.1}, "stage2": {"loss": 0.05},
            "stage3": {"history": [{"step": 0, "loss": 0.05}, {"step": 10, "loss": 1e-4}]},
            "feature_learning_end": {"frozen_floor": floor, "stage3_loss": stage3}}


def test_algorithm_directions_have_axis_labels_and_a_marker_size_key():
    W_star = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    fig = alg_fig.directions_figure(_alg_result(0, 1e-7, 5e-8), W_star, plt)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 4
    for ax in panels:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip()
    for ax in panels[2:]:  # after stages 2 and 3 the marker area is the mass: a key of sizes
        legend = ax.get_legend()
        assert legend is not None and "mass" in legend.get_title().get_text()
        sizes = [h.get_sizes()[0] for h in legend.legend_handles]
        assert len(sizes) >= 2 and len(set(sizes)) == len(sizes)


def test_floor_vs_stage3_tick_labels_do_not_overlap():
    results = [_alg_result(k, f, 5e-8) for k, f in enumerate((1e-7, 4.9e-7, 8e-7))]
    fig = alg_fig.floor_figure(results, plt)
    fig.canvas.draw()
    ax = fig.axes[0]
    for axis in (ax.xaxis, ax.yaxis):
        ticks = [t for t in axis.get_majorticklabels() + axis.get_minorticklabels() if t.get_text()]
        assert len(ticks) >= 2 and not _overlaps(ticks), [t.get_text() for t in ticks]
    assert ax.get_xlabel().strip() and ax.get_ylabel().strip()


# --------------------------------------------------------------------------- the report's axis figures
def test_report_axis_figures_are_small_multiples_one_quantity_per_panel_with_its_unit():
    from checker.studies.report import _axis_points
    from checker.studies.scaling import QUANTITIES
    from checker.studies.sweep import read_results

    records = sorted(read_results(DATA).values(), key=lambda r: r["key"])
    fig = report_cmd.axis_figure(records, "lam", plt)
    assert fig is not None
    panels = [ax for ax in fig.axes if ax.get_visible()]
    expected = report_cmd._panels(_axis_points(records, "lam"))
    assert len(panels) == len(expected) >= len(QUANTITIES)  # one panel per quantity (and threshold family)
    assert [ax.get_title() for ax in panels] == [title for title, _ in expected]
    for ax, (title, series) in zip(panels, expected):
        drawn = [ln for ln in ax.lines if len(ln.get_xdata()) >= 2]
        assert len(drawn) <= len(series), title  # never several quantities on one axis
        if drawn:
            assert ax.get_ylabel().strip(), f"{title}: no unit"
            assert ax.get_legend() is None or len(series) > 1
        else:
            assert any("not drawn" in t.get_text() for t in ax.texts), title


# --------------------------------------------------------------------------- the weight-decay figure
def _wd_result():
    runs = []
    for k, (name, lam) in enumerate((("weight-decay/both", "0.01"), ("weight-decay/first", "0.01"),
                                     ("no-decay/both", "0"), ("no-decay/first", "0"))):
        steps = np.unique(np.geomspace(1, 1e4, 60).astype(int))
        hist = [{"step": int(t), "excess": float(1e-3 * t ** -(1 + 0.2 * k)), "resolved": True,
                 "engine": "float64"} for t in steps]
        law = SimpleNamespace(fit_range_steps=[1000, 10000])
        runs.append(SimpleNamespace(name=name, lam=lam, history=hist, law=law))
    return SimpleNamespace(runs=runs)


def _lab(colour) -> np.ndarray:
    """CIE L*a*b* of an sRGB colour (D65), the textbook formulas; distance = Delta E 1976."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(colour))
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_weight_decay_figure_colours_are_distinct_and_the_fit_range_is_visible():
    fig, ax = wd_cmd.draw_figure(_wd_result(), plt)
    curves = [ln for ln in ax.lines if not ln.get_label().startswith("_") and "fit range" not in ln.get_label()]
    assert len(curves) == 4
    # Delta E 1976 between every two runs: the pairs the audit could not tell apart, tab:blue/tab:cyan
    # and tab:red/tab:orange, are at 41.9 and 40.3; 50 asks for clearly more
    assert np.linalg.norm(_lab("tab:blue") - _lab("tab:cyan")) < 50
    for c1, c2 in combinations([ln.get_color() for ln in curves], 2):
        assert np.linalg.norm(_lab(c1) - _lab(c2)) >= 50, (c1, c2)
    bands = [ln for ln in ax.lines if ln.get_linewidth() >= 6 and len(ln.get_xdata()) > 2]
    assert len(bands) == 4 and all(ln.get_alpha() >= 0.25 for ln in bands)
    ends = [ln for ln in ax.lines if ln.get_marker() == "|"]
    assert len(ends) == 4 and all(ln.get_markersize() >= 12 for ln in ends)
    assert any("fit range" in t for t in _texts(fig))
