"""End-to-end tests of ``python -m checker.theorem1`` (the main job).

References: the single-teacher optimum L*_lambda = lambda |a*| - lambda^2 / 2 is
the closed form proved in ``derivations/optimum.py``; exit codes and the JSON
schema are those documented in README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from checker import theorem1
from checker.presets import load_preset, preset_names
from tests.outputs import bad_output_cases, device_intact, tree_state

REPO = Path(__file__).resolve().parents[1]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = theorem1.main(args + ["--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_presets_listed_and_loadable() -> None:
    names = preset_names()
    for required in ("default", "single-teacher", "three-teachers-d4", "abs", "above-threshold"):
        assert required in names
    for name in names:
        assert load_preset(name).description


def test_default_preset_holds_and_writes_the_documented_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    code, stdout, err = run_main(["--json", str(out), "--plots", str(tmp_path / "fig")], capsys)
    assert code == 0, stdout + err
    assert "verdict: holds" in stdout
    data = json.loads(out.read_text())
    assert data["version"] == theorem1.SCHEMA_VERSION
    assert data["verdict"] == "holds"
    assert [h["id"] for h in data["hypotheses"]] == ["H1", "H1-certificate", "H2", "H3", "H4"]
    assert [c["id"] for c in data["conclusions"]] == ["C1", "C2", "C3", "C4", "C5"]
    for item in data["hypotheses"] + data["conclusions"]:
        assert set(item) >= {"id", "holds", "value", "bound"}
    assert all(c["holds"] is True for c in data["conclusions"])  # default runs a schedule: C5 applies
    for key in ("loss", "reg_loss", "gap_upper"):
        assert isinstance(data["final"][key], str)
        Decimal(data["final"][key])  # a decimal string
    assert data["final"]["gap_rigorous"] is True
    assert data["engine"] == "float64" and data["dps"] == 15
    for key in ("C3_worst_ratio", "C4_worst_ratio", "gap_rate_per_step", "rho", "rho_far", "p_norm"):
        assert key in data["constants"]
    for fig in ("gap_loss.png", "mass_angle.png", "certificate.png"):
        assert (tmp_path / "fig" / fig).stat().st_size > 0


def test_single_teacher_mp_reaches_the_closed_form_optimum(tmp_path: Path, capsys) -> None:
    # Reference: L*_lambda = lambda|a*| - lambda^2/2 = 0.1 - 0.005 = 0.095 exactly for a* = 1,
    # lambda = 0.1 (derivations/optimum.py).  The issue asks for 1e-25 at 50 digits.
    out = tmp_path / "single.json"
    code, stdout, err = run_main(["--preset", "single-teacher", "--engine", "mp", "--dps", "50",
                                  "--json", str(out)], capsys)
    assert code == 0, stdout + err
    data = json.loads(out.read_text())
    assert data["engine"] == "mp" and data["dps"] == 50
    assert abs(Decimal(data["final"]["reg_loss"]) - Decimal("0.095")) <= Decimal("1e-25")
    assert Decimal(data["final"]["gap_upper"]) <= Decimal("1e-25")
    assert data["final"]["gap_rigorous"] is True
    lo, hi = Decimal(data["L_star_interval"]["lower"]), Decimal(data["L_star_interval"]["upper"])
    assert lo <= Decimal("0.095") <= hi  # the certified interval contains the exact optimum


def test_above_threshold_is_reported_as_unmet_hypothesis(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    code, stdout, err = run_main(["--preset", "above-threshold", "--json", str(out)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "H4 fails" in err and "Traceback" not in err
    data = json.loads(out.read_text())
    assert data["verdict"] == "hypotheses-unmet"
    h4 = next(h for h in data["hypotheses"] if h["id"] == "H4")
    assert h4["holds"] is False and float(h4["value"]) > float(h4["bound"])


@pytest.mark.parametrize("args, needle", [
    (["--preset", "no-such-preset"], "unknown preset"),
    (["--engine", "mp", "--dps", "3"], "--dps"),
    (["--gap-target", "1e-30"], "use --engine mp"),
    (["--eta", "-1"], "--eta"),
    (["--eta", "abc"], "--eta"),
    (["--steps", "0"], "--steps"),
    (["--resume"], "--resume needs --checkpoint"),
    (["--schedule", "geometric:factor=2x"], "--schedule"),
    (["--preset", "default", "--instance", "x.json"], "not allowed with"),
    (["--instance", "/nonexistent/instance.json"], "no such file"),
    (["--radius", "-1"], "--radius"),
    (["--json", "/proc/no/such/folder/r.json"], "--json"),
])
def test_bad_arguments_exit_2_with_one_line(args: list[str], needle: str, capsys) -> None:
    code, stdout, err = run_main(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not valid JSON"),
    ('{"instance": {"teacher": {"a": [1], "W": [[1, 0]]}, "student": {"a": [1], "W": [[1, 0]]}, '
     '"lambda": -1}}', "lambda"),
    ('{"instance": {"teacher": {"a": [1, 1], "W": [[1, 0], [1, 0]]}, "student": {"a": [1], '
     '"W": [[1, 0]]}, "lambda": 0.1, "eta": 0.1}}', "Delta = 0"),
    ('{"instance": {"teacher": {"a": [1], "W": [[0, 0]]}, "student": {"a": [1], "W": [[1, 0]]}, '
     '"lambda": 0.1, "eta": 0.1}}', "zero vector"),
    ('{"instance": {"teacher": {"a": [1], "W": [[1, 0]]}, "student": {"a": [1], "W": [[1, 0]]}, '
     '"lambda": 0.1}}', "no step size"),
    ('{"instance": {"teacher": {"a": [1], "W": [[1, 0]]}, "student": {"a": [1], "W": [[1, 0]]}, '
     '"lambda": 0.1, "eta": 0.1}, "run": {"steps": "many"}}', "run.steps"),
    ('{"instance": {"teacher": {"a": [1], "W": [[1, 0]]}, "student": {"a": [1], "W": [[1, 0]]}, '
     '"lambda": 0.1, "eta": 0.1}, "run": {"force": "yes"}}', "run.force"),
])
def test_bad_instance_files_exit_2(tmp_path: Path, content: str, needle: str, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, stdout, err = run_main(["--instance", str(path)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_failing_conclusion_writes_a_counterexample_that_reproduces(tmp_path: Path, capsys) -> None:
    # A step far above 2/beta_0 (H3 unmet, forced): L_lambda increases, so C1 must fail.
    args = ["--preset", "default", "--eta", "4", "--force", "--steps", "200", "--schedule", "fixed",
            "--counterexample-dir", str(tmp_path)]
    code, stdout, err = run_main(args, capsys)
    assert code == 1, stdout + err
    files = list(tmp_path.glob("counterexample-*.json"))
    assert len(files) == 1
    code2, stdout2, _ = run_main(["--instance", str(files[0]), "--counterexample-dir", str(tmp_path / "again")],
                                 capsys)
    assert code2 == 1 and "C1" in stdout2 and "FAILS" in stdout2


def _final_state(path: Path) -> tuple:
    data = json.loads(path.read_text())
    return data["run"]["a"], data["run"]["W"], data["run"]["steps"], data["final"]["gap_upper"]


def test_interrupt_then_resume_reaches_the_uninterrupted_result(tmp_path: Path, capsys, monkeypatch) -> None:
    # A plain step budget (1200 steps, 6 gap evaluations at every 200) so both runs stop at the same step.
    base = ["--preset", "abs", "--steps", "1200", "--schedule", "fixed"]
    straight = tmp_path / "straight.json"
    code, stdout, err = run_main(base + ["--json", str(straight)], capsys)
    assert code in (0, 3), stdout + err

    calls = {"n": 0}
    real_observe = theorem1.TheoremCheck.observe

    def interrupting(self, *a, **k):  # Ctrl-C on the third gap evaluation
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_observe(self, *a, **k)

    ckpt = tmp_path / "run.ckpt.json"
    partial = tmp_path / "partial.json"
    monkeypatch.setattr(theorem1.TheoremCheck, "observe", interrupting)
    code, stdout, err = run_main(base + ["--checkpoint", str(ckpt), "--json", str(partial)], capsys)
    assert code == 130
    assert json.loads(partial.read_text())["verdict"] == "interrupted"
    assert ckpt.exists()
    monkeypatch.setattr(theorem1.TheoremCheck, "observe", real_observe)
    resumed = tmp_path / "resumed.json"
    code, stdout, err = run_main(base + ["--checkpoint", str(ckpt), "--resume", "--json", str(resumed)], capsys)
    assert code in (0, 3), stdout + err
    assert _final_state(resumed) == _final_state(straight)


def test_command_line_runs_as_documented(tmp_path: Path) -> None:
    # The README's main command, as a real process: exit 0 and a verdict line.
    proc = subprocess.run([sys.executable, "-m", "checker.theorem1", "--preset", "abs", "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: holds" in proc.stdout


@pytest.mark.slow
def test_three_teachers_mp_certifies_a_gap_beyond_float64(tmp_path: Path, capsys) -> None:
    # Issue target: the mp run on the three-teacher preset in d = 4 ends with a rigorous gap
    # bound <= 1e-15 (float64 cannot resolve a gap below ~1e-14 of L_lambda) and every
    # conclusion holding, with its measured constants in the JSON.  About 2.5 minutes.
    out = tmp_path / "three.json"
    code, stdout, err = run_main(["--preset", "three-teachers-d4", "--json", str(out)], capsys)
    assert code == 0, stdout + err
    data = json.loads(out.read_text())
    assert data["engine"] == "mp" and data["instance"]["name"] == "three-teachers-d4"
    assert data["final"]["gap_rigorous"] is True
    assert Decimal(data["final"]["gap_upper"]) <= Decimal("1e-15")
    assert all(c["holds"] in (True, None) for c in data["conclusions"])
    for key in ("C3_worst_ratio", "C4_worst_ratio", "gap_rate_per_step", "final_max_angle"):
        assert data["constants"][key] is not None


def test_budget_stop_above_the_target_is_inconclusive_not_convergence(capsys) -> None:
    # 100 steps cannot bring the default instance from gap ~1e-5 to 1e-12 (the measured rate is
    # ~0.998 per step), so C2 is undetermined and the verdict says so with exit status 3.
    code, stdout, err = run_main(["--steps", "100", "--gap-target", "1e-12", "--schedule", "fixed"], capsys)
    assert code == theorem1.EXIT_INCONCLUSIVE
    assert "verdict: inconclusive" in stdout and "raise --steps" in stdout


def test_d2_instance_gets_the_directions_figure_and_forced_runs_say_so(tmp_path: Path, capsys) -> None:
    inst = tmp_path / "d2.json"
    inst.write_text(json.dumps({
        "activation": "relu",
        "teacher": {"a": ["1", "1"], "W": [["1", "0"], ["-0.5", "0.8660254037844386"]]},
        "student": {"a": ["0.7", "0.7", "0.95"], "W": [["0.69", "0.05"], ["0.7", "-0.04"], ["-0.45", "0.85"]]},
        "lambda": "0.01", "eta": "0.3"}))
    code, stdout, err = run_main(["--instance", str(inst), "--force", "--steps", "600",
                                  "--plots", str(tmp_path / "fig")], capsys)
    assert code in (0, 3), stdout + err
    assert "H4" in stdout and "T1 does not cover this run" in stdout  # H4 fails here: the start is far
    assert (tmp_path / "fig" / "directions.png").stat().st_size > 0


# ---------------------------------------------------------------- input, paths and options (issue 7)
def _instance_file(tmp_path: Path) -> Path:
    path = tmp_path / "i.json"
    path.write_text((REPO / "examples" / "readme.json").read_text())
    return path


def _assert_refused(code: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


_PATH_CASES = [(flag, case) for flag in ("--json", "--checkpoint", "--plots-file", "--counterexample-dir")
               for case in ("dev-null", "symlink-to-device", "directory-at-target", "proc")
               if (flag, case) != ("--counterexample-dir", "directory-at-target")]  # a folder is right there


@pytest.mark.parametrize("flag, case", _PATH_CASES)
def test_bad_output_paths_are_refused_before_any_work(flag: str, case: str, tmp_path: Path, capsys,
                                                      monkeypatch) -> None:
    inst = _instance_file(tmp_path)
    target = bad_output_cases(tmp_path)[case]
    if flag == "--plots-file":  # a figure file inside the --plots folder
        if case == "proc":
            args = ["--plots", "/proc/xdir"]
        else:
            fig = tmp_path / "fig"
            fig.mkdir()
            (fig / "gap_loss.png").symlink_to(target) if case != "directory-at-target" else \
                (fig / "gap_loss.png").mkdir()
            args = ["--plots", str(fig)]
        flag = "--plots"
    else:
        args = [flag, target]
    before = tree_state(tmp_path)
    monkeypatch.setattr(theorem1, "TheoremCheck", None)  # any work after the probe would crash
    code, _, err = run_main(["--instance", str(inst)] + args, capsys)
    _assert_refused(code, err, flag)
    assert tree_state(tmp_path) == before and device_intact()


@pytest.mark.parametrize("args, needle", [
    (["--json", "{inst}"], "same file as --instance"),
    (["--json", "{tmp}/c.json", "--checkpoint", "{tmp}/c.json"], "same file as --checkpoint"),
    (["--checkpoint", "{inst}"], "same file as --instance"),
    (["--plots", "{tmp}", "--json", "{tmp}/gap_loss.png"], "same file as --json"),
])
def test_outputs_may_not_overwrite_the_input_or_each_other(args: list[str], needle: str, tmp_path: Path,
                                                           capsys, monkeypatch) -> None:
    inst = _instance_file(tmp_path)
    (tmp_path / "c.json").write_text("checkpoint to keep")
    (tmp_path / "gap_loss.png").write_text("figure to keep")
    before = tree_state(tmp_path)
    monkeypatch.setattr(theorem1, "TheoremCheck", None)
    code, _, err = run_main(["--instance", str(inst)] + [a.format(inst=inst, tmp=tmp_path) for a in args], capsys)
    _assert_refused(code, err, needle)
    assert tree_state(tmp_path) == before


def test_json_through_a_symlink_is_written_to_its_target(tmp_path: Path, capsys, monkeypatch) -> None:
    def quick_run(self, on_hypotheses=None):  # the writing path of main without the long phases
        return theorem1.Report(theorem1.SCHEMA_VERSION, "test", "hypotheses-unmet", self.instance.to_dict(),
                               self.engine.name, self.engine.dps, {}, [], message="H4 fails (stub)")

    monkeypatch.setattr(theorem1.TheoremCheck, "run", quick_run)
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    code, _, err = run_main(["--preset", "above-threshold", "--json", str(link)], capsys)
    assert code == 2 and "H4" in err  # the unmet-hypotheses outcome; the result is still written
    assert link.is_symlink() and json.loads(real.read_text())["verdict"] == "hypotheses-unmet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]  # no temporary left


RUN_FILE = ('{{"instance": {{"teacher": {{"a": [1], "W": [[1, 0]]}}, "student": {{"a": [1], "W": [[1, 0]]}}, '
            '"lambda": 0.1, "eta": 0.1}}, "run": {{{run}}}}}')


@pytest.mark.parametrize("key, value", [
    ("seed", "-1"), ("seed", str(2**32)), ("seed", "1.5"),
    ("dps", "4001"), ("dps", "1e999"), ("steps", "1e999"), ("steps", "0"), ("steps", "many"),
    ("gap_target", "nan"), ("gap_target", "-1"), ("gap_target", "1e-400"),
    ("time_budget", "inf"), ("time_budget", "0"),
    ("radius", "-1"), ("radius", "4"), ("radius", "nan"),
    ("threshold", "-1"), ("threshold", "inf"),
    ("eta", "0"), ("eta", "abc"), ("engine", "quad"), ("schedule", "geometric:factor=2x"),
])
def test_every_option_is_validated_the_same_on_the_command_line_and_in_a_run_file(
        key: str, value: str, tmp_path: Path, capsys) -> None:
    flag = "--" + key.replace("_", "-")
    extra = ["--engine", "mp"] if key == "dps" else []
    code, _, err = run_main(["--preset", "default", flag, value] + extra, capsys)
    _assert_refused(code, err, flag)
    run = f'"{key}": {json.dumps(value)}' + (', "engine": "mp"' if key == "dps" else "")
    path = tmp_path / "run.json"
    path.write_text(RUN_FILE.format(run=run))
    code, _, err = run_main(["--instance", str(path)], capsys)
    _assert_refused(code, err, f"run.{key}")


def test_messages_from_the_flag_and_the_run_file_are_the_same(tmp_path: Path, capsys) -> None:
    code, _, flag_err = run_main(["--preset", "default", "--steps", "1e999"], capsys)
    path = tmp_path / "run.json"
    path.write_text(RUN_FILE.format(run='"steps": "1e999"'))
    code2, _, file_err = run_main(["--instance", str(path)], capsys)
    assert code == code2 == 2
    assert flag_err.split("--steps: ", 1)[1] == file_err.split("run.steps: ", 1)[1]


@pytest.mark.parametrize("args", [["--dps", "40"], ["--engine", "float64", "--dps", "40"]])
def test_dps_with_the_float64_engine_is_refused_as_in_every_command(args: list[str], capsys) -> None:
    code, _, err = run_main(["--preset", "default"] + args, capsys)
    _assert_refused(code, err, "--dps")
    assert "--engine mp" in err


def test_float64_overflow_is_refused_at_once_naming_the_field(tmp_path: Path, capsys) -> None:
    data = json.loads((REPO / "examples" / "readme.json").read_text())
    data["student"]["W"][0][1] = "1e300"
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data))
    for engine in ("float64", "mp"):
        code, _, err = run_main(["--instance", str(path), "--engine", engine], capsys)
        _assert_refused(code, err, "student.W[0][1]")
        assert "overflows float64" in err


# ---------------------------------------------------------------- the project documents itself
def _readme_instance_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Instance files", 1)[1]
    return section.split("```json", 1)[1].split("```", 1)[0]


def test_the_readme_example_is_the_shipped_file_and_meets_the_hypotheses() -> None:
    # Runs the hypotheses only (H1-H4: certificate, smoothness estimate, certified initial gap);
    # the whole command on this file exits 0 (measured for the README).
    shown = json.loads(_readme_instance_block())
    assert shown == json.loads((REPO / "examples" / "readme.json").read_text(encoding="utf-8"))
    rf = theorem1.load_run_file(REPO / "examples" / "readme.json")
    checks, _ = theorem1.TheoremCheck(rf, theorem1.Options()).hypotheses()
    assert [c.id for c in checks] == ["H1", "H1-certificate", "H2", "H3", "H4"]
    assert all(c.holds is True for c in checks), [(c.id, c.value, c.bound) for c in checks]


def test_documentation_links_resolve_inside_the_repository() -> None:
    import re

    docs = [REPO / "README.md", REPO / "paper_map.md", *sorted((REPO / "docs").glob("*.md"))]
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        assert "shared/spec" not in text, doc
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            resolved = (doc.parent / target).resolve()
            assert resolved.is_relative_to(REPO) and resolved.exists(), f"{doc.name}: {target}"
    for path in list((REPO / "checker").rglob("*.py")) + list((REPO / "derivations").rglob("*.py")):
        assert "shared/spec" not in path.read_text(encoding="utf-8"), path
