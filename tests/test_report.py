"""The report: t quantiles against a printed table, log-log fits against an independent
least-squares route and their coverage by seeded Monte Carlo, and the report regenerated
from a small fixed results file (tests/data/sweep-small.jsonl, hand-written values:
rho = 3 lambda^2, conv_rate = 25 lambda, threshold gaps 10 lambda and 40 lambda exactly;
||p*|| = 2.9, 3.4, 3.65 at d = 3, 4, 5)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from checker.commands import report as report_cmd
from checker.studies import report
from checker.studies.scaling import loglog_fit, t_quantile
from checker.studies.sweep import read_results
from tests.tolerance import assert_close

DATA = Path(__file__).resolve().parent / "data" / "sweep-small.jsonl"

# Two-sided 95% (and one 90%) critical values of Student's t, from the NIST/SEMATECH
# e-Handbook of Statistical Methods, table 1.3.6.7.2; printed to 3 decimals.
T_TABLE = [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 5, 2.571), (0.975, 10, 2.228),
           (0.975, 30, 2.042), (0.95, 10, 1.812)]


@pytest.mark.parametrize("p, dof, want", T_TABLE)
def test_t_quantile_matches_the_printed_table(p: float, dof: int, want: float) -> None:
    # the table is rounded to 3 decimals: half a unit of the last digit
    assert_close(t_quantile(p, dof), want, abs_=5e-4, what=f"t_{p},{dof}")


def test_fit_of_an_exact_power_law_recovers_its_exponent() -> None:
    x = [0.005, 0.01, 0.02, 0.04]
    f = loglog_fit(x, [3 * v ** 2 for v in x])
    # exact data: the slope is 2 up to the rounding of the logarithms (~1e-15 each)
    assert f.n == 4 and abs(f.slope - 2) < 1e-12 and f.stderr < 1e-12
    assert f.ci_low <= 2 <= f.ci_high


def test_fit_matches_numpy_least_squares_and_the_textbook_standard_error() -> None:
    rng = np.random.default_rng(1)
    x = np.exp(np.linspace(0, 2, 7))
    y = np.exp(0.3 + 1.7 * np.log(x) + 0.05 * rng.standard_normal(7))
    f = loglog_fit(list(x), list(y))
    X, Y = np.log(x), np.log(y)
    slope, icpt = np.polyfit(X, Y, 1)  # independent route: numpy's least squares
    res = Y - (icpt + slope * X)
    se = math.sqrt((res ** 2).sum() / (len(X) - 2) / ((X - X.mean()) ** 2).sum())
    # same quantities by two routes: rounding-level agreement (1e-10 relative is generous)
    assert_close(f.slope, slope, rel=1e-10, what="slope")
    assert_close(f.stderr, se, rel=1e-10, what="standard error")
    assert_close(f.ci_high - f.slope, 2.571 * se, rel=2e-4, what="half width = t_{0.975,5} se (table value)")


def test_the_95_percent_interval_covers_the_true_slope_95_percent_of_the_time() -> None:
    # seeded Monte Carlo: 600 replicates; the coverage fraction has standard error
    # sqrt(0.95 * 0.05 / 600) ~ 0.0089, and 4 standard errors is the tolerance
    rng = np.random.default_rng(20241201)
    X = np.linspace(0, 1.5, 6)
    hits = 0
    n_rep = 600
    for _ in range(n_rep):
        Y = -1.0 + 1.3 * X + 0.2 * rng.standard_normal(len(X))
        f = loglog_fit(list(np.exp(X)), list(np.exp(Y)))
        hits += f.ci_low <= 1.3 <= f.ci_high
    assert abs(hits / n_rep - 0.95) <= 4 * math.sqrt(0.95 * 0.05 / n_rep)


def test_fits_with_too_few_points_say_so() -> None:
    assert loglog_fit([1.0], [2.0]).slope is None
    f = loglog_fit([1.0, 2.0], [1.0, 4.0])
    assert abs(f.slope - 2) < 1e-14 and f.ci_low is None and "2 points" in f.note
    f = loglog_fit([1.0, 2.0, 4.0, 8.0], [1.0, None, 16.0, -1.0])
    assert f.n == 2 and "dropped" in f.note


def test_the_report_is_regenerated_from_a_fixed_results_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "docs" / "report.md"
    out.parent.mkdir()  # the folder of --out must exist; --figures is created
    figs = tmp_path / "docs" / "fig"
    grid = tmp_path / "grid.json"
    grid.write_text('{"version": "1.0", "base": {"lam": 0.01}}')
    code = report_cmd.main([str(DATA), "--out", str(out), "--figures", str(figs), "--grid", str(grid)])
    assert code == 0
    text = out.read_text()
    assert (figs / "axis-lam.png").is_file() and (figs / "axis-d.png").is_file()
    assert "![axis-lam](fig/axis-lam.png)" in text
    assert f"python -m checker.sweep {grid} --out {DATA}" in text
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in text.splitlines()
            if line.startswith("| lambda |") or line.startswith("| d |")}
    # rho = 3 lambda^2 exactly: slope 2 over 3 points
    # (columns n, dof, slope; 3 points leave 1 degree of freedom: marked)
    assert "| 3 | 1 | 2 |" in rows[("lambda", "rho (certificate, near)")]
    assert "(dof 1) | **few points** (dof 1)" in rows[("lambda", "rho (certificate, near)")]
    # the threshold's ends (10 lambda and 40 lambda) each scale like lambda^1
    assert "| 3 | 1 | 1 |" in rows[("lambda", "threshold_unbalance_converged")]
    assert "| 3 | 1 | 1 |" in rows[("lambda", "threshold_unbalance_failed")]
    # ||p*|| against d: slope of the hand-written values by numpy's least squares
    slope = np.polyfit(np.log([3, 4, 5]), np.log([2.9, 3.4, 3.65]), 1)[0]
    assert f"| 3 | 1 | {slope:.4g} |" in rows[("d", "‖p*‖")]
    # the regenerate line names the grid the report was given
    assert f"--figures {figs} --grid {grid}" in text
    assert "not the paper's exponent" in text and "polynomially" in text
    assert "GD diverged after 5 step(s)" in text
    # the same results give the same report (no clock, no machine in the text)
    assert report.render(sorted(read_results(DATA).values(), key=lambda r: r["key"]), source=str(DATA),
                         figures=sorted(figs.glob("*.png"), key=lambda p: report.AXES.index(p.stem[5:])),
                         out_path=out, grid=str(grid)) + "\n" == text


@pytest.mark.parametrize("args, needle", [
    (["/nonexistent.jsonl", "--out", "x.md"], "no such results file"),
    ([str(DATA)], "--out"),
    ([str(DATA), "--out", str(DATA)], "same file"),
    ([str(DATA), "--out", "/"], "--out"),
    ([str(DATA), "--out", "x.md", "--figures", str(DATA)], "--figures"),  # named as given, not --plots
])
def test_cli_bad_inputs_end_in_one_line_with_exit_2(args, needle, capsys) -> None:
    code = report_cmd.main(args)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err


def test_threshold_summary_gives_the_ratios_to_eps0_per_family() -> None:
    # Reference: values worked out by hand from three synthetic searches of one family:
    # converging gaps 2e-3, 5e-3, 1e-2 over eps_0 = 1e-3 -> ratios 2, 5 (bracketed) and
    # 10 (nothing fails); failing gaps 4e-3 and 8e-2 over 1e-3 -> 4 and 80; one of the
    # two failures had H3 unmet; none is a counterexample.
    def t(status, conv, fail, h3):
        return {"status": status, "step": "safe", "eps0_checker": 1e-3, "ratio_to_eps0": conv / 1e-3,
                "t1_at_reference": True,
                "threshold_gap": {"lower": conv, "upper": fail}, "counterexample": False,
                "failure": ({"hypotheses_unmet": ["H3"] if h3 else []} if fail else {})}

    thr = [({}, "split@safe", t("bracketed", 2e-3, 4e-3, True)),
           ({}, "split@safe", t("bracketed", 5e-3, 8e-2, False)),
           ({}, "split@safe", t("nothing-fails", 1e-2, None, False))]
    row = next(line for line in report.threshold_summary(thr) if line.startswith("| split@safe"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["split@safe", "safe", "3", "3 of 3", "bracketed 2, nothing-fails 1", "[2, 10]", "[4, 80]",
                     "0", "1 of 2", "0"]


def test_threshold_summary_counts_only_points_where_t1_applies_and_reads_old_records_under_the_rules() -> None:
    # Reference: the audit's cases, by hand.  eps_0 = 1e-3 everywhere.
    # (a) lambda above lambda_max (H2 unmet at the point, old record without t1_at_reference): its
    #     gap 100 = 1e5 eps_0 must not enter the ratios;
    # (b) an old bracket whose failing end only failed C1 with a final gap 6e-10 below the trial's target
    #     1e-9: non-monotone, not a failure; its gap 0.05 then counts as converging (ratio 50);
    # (c) a bracket whose lower end is the unperturbed start (split's lower end 0): no ratio;
    # (d) a genuine failure to converge (stalled): converging 0.01, failing 0.02 -> ratios 10 and 20.
    def rec(h2=True):
        return {"measure": {"trial_gap_target": 1e-9},
                "result": {"hypotheses": {"H1": True, "H2": h2, "H3": True}}}

    def t(conv, fail, size, failed, final_gap):
        return {"status": "bracketed", "step": "instance", "eps0_checker": 1e-3, "ratio_to_eps0": conv / 1e-3,
                "threshold_gap": {"lower": conv, "upper": fail}, "threshold_size": size, "counterexample": False,
                "failure": {"conclusions_failed": failed, "final_gap": final_gap, "gap0": fail,
                            "size": size["upper"], "hypotheses_unmet": []}}

    thr = [(rec(h2=False), "split", t(100.0, 200.0, {"lower": 0.5, "upper": 0.6}, ["C2-stalled"], 0.1)),
           (rec(), "split", t(0.04, 0.05, {"lower": 0.5, "upper": 0.6}, ["C1"], 6e-10)),
           (rec(), "split", t(1e-9, 0.03, {"lower": 0.0, "upper": 0.1}, ["C2-stalled"], 0.1)),
           (rec(), "split", t(0.01, 0.02, {"lower": 0.3, "upper": 0.4}, ["C2-stalled"], 0.1))]
    views = [report.threshold_view(r, f, x) for r, f, x in thr]
    assert [v["ratio_note"] for v in views] == ["outside T1", "", "lower end is the reference", ""]
    assert views[1]["status"] == "non-monotone" and views[1]["gap"] == {"lower": 0.05, "upper": None}
    row = next(line for line in report.threshold_summary(thr) if line.startswith("| split"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:8] == ["3 of 4", "bracketed 3, non-monotone 1", "[10, 50]", "[20, 30]", "1"]
    # the fits take only genuine brackets whose lower end is not the reference
    assert report.threshold_ends(thr[1][2], thr[1][0], "split") == (None, None)
    assert report.threshold_ends(thr[2][2], thr[2][0], "split") == (None, None)
    assert report.threshold_ends(thr[3][2], thr[3][0], "split") == (0.01, 0.02)


def test_report_refuses_to_overwrite_its_grid_and_validates_it(tmp_path: Path, capsys) -> None:
    # the audit: --out G --grid G overwrote the grid with markdown; a truncated grid or another
    # sweep's grid was accepted and named in the Regenerate line
    import json as _json

    grid = tmp_path / "g.json"
    grid.write_text('{"version": "1.0", "base": {"lam": 0.01}')  # truncated
    text = grid.read_text()
    assert report_cmd.main([str(DATA), "--out", str(grid), "--grid", str(grid)]) == 2
    assert grid.read_text() == text and "same file" in capsys.readouterr().err
    assert report_cmd.main([str(DATA), "--out", str(tmp_path / "r.md"), "--grid", str(grid)]) == 2
    assert "g.json" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()
    grid.write_text(_json.dumps({"version": "1.0", "base": {"lam": 0.03}}))  # a valid grid of other points
    assert report_cmd.main([str(DATA), "--out", str(tmp_path / "r.md"), "--grid", str(grid)]) == 0
    assert "not points of this grid" in capsys.readouterr().err


def test_concatenated_results_with_other_measure_settings_are_warned_about(tmp_path: Path, capsys) -> None:
    # the audit: two results files of different measure settings concatenated were reported silently
    # (the base point twice, fits with two points at the same x)
    import json as _json

    lines = DATA.read_text().splitlines()
    rec = _json.loads(lines[0])
    other = {**rec, "key": "f" * 20, "measure": {**rec["measure"], "max_trials": 9}}
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(lines + [_json.dumps(other)]) + "\n")
    out = tmp_path / "r.md"
    assert report_cmd.main([str(mixed), "--out", str(out)]) == 0
    assert "warning" in capsys.readouterr().err
    text = out.read_text()
    assert "mix 2 different measure settings" in text and "1 point(s) appear more than once" in text
    assert report.mixed_settings(sorted(read_results(DATA).values(), key=lambda r: r["key"])) == ""
