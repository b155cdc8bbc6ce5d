"""checker/studies/weight_decay.py: the weight-decay study (fits, summaries, the command end to end)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from checker.core import objective
from checker.core.io import read_json
from checker.commands import weight_decay as wd_cmd
from checker.studies import weight_decay as wd


# --------------------------------------------------------------------------- fits
@pytest.mark.parametrize("p, df, expected", [
    # Student t quantiles from standard tables (e.g. Abramowitz & Stegun, table 26.10),
    # given to 10 digits there; the bisection is run to ~1e-20, so 1e-9 relative.
    (0.975, 1, 12.70620474),
    (0.975, 10, 2.228138852),
    (0.975, 30, 2.042272456),
    (0.95, 5, 2.015048373),
])
def test_t_quantile_matches_tables(p, df, expected):
    assert wd.t_quantile(p, df) == pytest.approx(expected, rel=1e-9)


def test_fit_line_against_numpy_polyfit_and_an_exact_line():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 5, 40)
    y = 2.0 - 0.5 * x + 0.01 * rng.standard_normal(40)
    f = wd.fit_line(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    # the same least-squares problem solved two ways: agreement to rounding (~1e-12)
    assert f.slope == pytest.approx(slope, rel=1e-10) and f.intercept == pytest.approx(intercept, rel=1e-10)
    # the 95% interval is slope +- t se with se = sigma / sqrt(Sxx), sigma ~ 0.01 here:
    # half-width ~ 2.02 * 0.01 / sqrt(83) ~ 2.2e-3, and it covers the true slope -0.5
    assert f.slope_low < -0.5 < f.slope_high and 1e-3 < f.slope_high - f.slope_low < 1e-2
    exact = wd.fit_line([1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 7.0, 9.0])
    assert exact.slope == pytest.approx(2.0, rel=1e-14) and exact.rms < 1e-14


def test_fit_law_chooses_the_model_that_generated_the_data():
    steps = sorted({int(round(10 ** (k / 20))) for k in range(20, 101)})  # 10 .. 1e5, geometric
    expo = wd.fit_law(steps, [math.exp(-1e-4 * t) * 1e-3 for t in steps])
    assert expo.model == "linear-rate"
    assert expo.linear_rate["rate"] == pytest.approx(1e-4, rel=1e-9)  # exact data: rounding only
    assert expo.fit_range_steps == [10_000, 100_000]  # the last decade of steps
    power = wd.fit_law(steps, [0.3 * t ** -1.7 for t in steps])
    assert power.model == "power-law" and power.power_law["exponent"] == pytest.approx(1.7, rel=1e-9)
    short = wd.fit_law([10, 20, 30], [1e-3, 1e-4, 1e-5])
    assert short.model == "none" and "fewer than" in short.reason


# --------------------------------------------------------------------------- end to end
def _tiny(tmp_path, *extra: str) -> tuple[int, dict]:
    # lambda = 0.04 and 700 float64 steps: the first-layer run with weight decay reaches
    # float64's floor (step 600 on the default preset) and continues 20 steps in mp.
    out = tmp_path / "study.json"
    code = wd_cmd.main(["--lambda", "0.04", "--steps", "700", "--mp-steps", "20", "--dps", "20", "--json", str(out),
                    "--no-progress", *extra])
    return code, (read_json(out, "study") if out.exists() else {})


def test_tiny_study_end_to_end(tmp_path, capsys):
    code, r = _tiny(tmp_path, "--plots", str(tmp_path / "fig"))
    assert code == 0 and r["verdict"] == "complete" and r["version"] == wd.RESULT_VERSION
    assert [x["name"] for x in r["runs"]] == [s.name for s in wd.RUNS]
    assert (tmp_path / "fig" / "weight-decay-loss.png").stat().st_size > 10_000
    by = {x["name"]: x for x in r["runs"]}
    assert [p["engine"]["name"] for p in by["weight-decay/first"]["phases"]] == ["float64", "mp"]
    for name in ("weight-decay/both", "weight-decay/first"):
        run = by[name]
        assert run["lam"] == "0.04"
        phases = run["phases"]
        assert phases[0]["stop_reason"] in ("precision-floor", "max-steps")
        assert len(phases) == (2 if phases[0]["stop_reason"] == "precision-floor" else 1)
        # the reference is the last L_lambda of the last phase, so its own row has e = 0
        assert run["history"][-1]["excess"] == 0.0 and not run["history"][-1]["resolved"]
        assert run["reference"] == run["final"]["reg_loss"]
        assert [h["step"] for h in run["history"]] == sorted({h["step"] for h in run["history"]})
    for name in ("no-decay/both", "no-decay/first"):
        run = by[name]
        assert run["lam"] == "0" and len(run["phases"]) == 1
        assert all(h["excess"] == float(h["loss"]) for h in run["history"])
    # the first-layer-only runs never change the output weights
    start_a = r["instance"]["student"]["a"]
    for name in ("weight-decay/first", "no-decay/first"):
        assert [float(x) for x in by[name]["final"]["a"]] == [float(x) for x in start_a]
    # every run has a law (the measurements themselves are not asserted: no predicted exponent)
    assert all(x["law"]["model"] in ("linear-rate", "power-law") for x in r["runs"])
    assert all(list(x["steps_to_target"]) == [f"{t:.0e}" for t in wd.TARGETS] for x in r["runs"])
    text = capsys.readouterr().out
    assert "law:" in text and "verdict: complete" in text


def test_ctrl_c_ends_the_study_with_the_partial_result(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = objective.evaluate

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 200:  # inside the first run
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(objective, "evaluate", flaky)
    code, r = _tiny(tmp_path)
    assert code == 130 and r["verdict"] == "interrupted" and len(r["runs"]) == 1
    assert r["runs"][0]["phases"][0]["stop_reason"] == "interrupted"


@pytest.mark.parametrize("args, expect", [
    (["--lambda", "0"], "--lambda"),
    (["--lambda", "x"], "--lambda"),
    (["--eta", "-1"], "--eta"),
    (["--steps", "0"], "--steps"),
    (["--mp-steps", "-1"], "--mp-steps"),
    (["--dps", "3"], "--dps"),
    (["--preset", "nope"], "unknown preset"),
    (["--preset", "single-teacher", "--instance", "x.json"], "not allowed"),
])
def test_bad_flags_are_refused_with_one_line(capsys, args, expect):
    assert wd_cmd.main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1


def test_a_start_without_extra_students_is_refused(tmp_path, capsys):
    from checker.commands.presets import load_preset
    import json

    inst = load_preset("default").instance
    few = inst.replace(student_a=inst.student_a[:2], student_W=inst.student_W[:2])
    path = tmp_path / "few.json"
    path.write_text(json.dumps(few.to_dict()))
    assert wd_cmd.main(["--instance", str(path), "--no-progress"]) == 2
    assert "more students than teachers" in capsys.readouterr().err


def test_bad_output_paths_are_refused_before_any_run(tmp_path, capsys):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    assert wd_cmd.main(["--plots", str(afile), "--no-progress"]) == 2  # a file, not a folder
    assert wd_cmd.main(["--json", str(tmp_path), "--no-progress"]) == 2  # a folder, not a file
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith(wd_cmd.PROG) for line in err)
