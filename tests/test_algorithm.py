"""``python -m checker.algorithm`` end to end on a small preset, checkpoint/resume, and bad input."""

from __future__ import annotations

import json

import pytest

from checker.commands import algorithm as cli

TEACHER = {"activation": "relu", "teacher": {"a": ["1", "-0.8"], "W": [["1", "0", "0"], ["0", "1", "0"]]}}


@pytest.fixture(scope="module")
def narrow_run(tmp_path_factory):
    """One seed of the too-narrow preset (the width 2 < m* = 3 cannot reach T1's basin)."""
    folder = tmp_path_factory.mktemp("alg")
    out, ckpt = folder / "out.json", folder / "run.ckpt.json"
    code = cli.main(["--preset", "too-narrow-d5", "--seeds", "1", "--json", str(out), "--checkpoint", str(ckpt),
                     "--no-progress"])
    return code, json.loads(out.read_text()), out, ckpt


def test_end_to_end_on_the_too_narrow_preset(narrow_run):
    code, res, _, _ = narrow_run
    assert code == cli.EXIT_INCONCLUSIVE
    assert res["version"] == "1.0" and res["verdict"] == "not-recovered" and res["success_rate"] == 0.0
    seed = res["seeds"][0]
    for key in ("span_fraction_min", "span_fraction_median", "floor", "random_floor"):
        assert key in seed["stage1"]
    for key in ("loss", "threshold", "below_threshold"):
        assert key in seed["stage2"]
    for key in ("verdict", "final_loss", "max_angle", "far_mass"):
        assert key in seed["stage3"]
    assert seed["recovered"] is False and seed["stage2"]["below_threshold"] is False
    assert seed["stage3"]["verdict"] == "hypotheses-unmet"
    # two neurons cannot fit three orthogonal teachers: the stage-1 floor is above T1's threshold
    assert seed["stage1"]["floor"] > seed["stage2"]["threshold"]
    assert "stage 1" in seed["fell_short"]
    assert res["options"]["width"] == 2 and res["options"]["seeds"] == [0]


def test_resume_skips_finished_seeds(narrow_run, monkeypatch, tmp_path):
    _, res, _, ckpt = narrow_run

    def boom(*args, **kwargs):
        raise AssertionError("a finished seed was run again")

    monkeypatch.setattr(cli, "run_seed", boom)
    out = tmp_path / "again.json"
    code = cli.main(["--preset", "too-narrow-d5", "--seeds", "1", "--json", str(out), "--checkpoint", str(ckpt),
                     "--resume", "--no-progress"])
    assert code == cli.EXIT_INCONCLUSIVE
    assert json.loads(out.read_text())["seeds"] == res["seeds"]


def test_resume_refuses_a_checkpoint_of_other_options(narrow_run, capsys):
    ckpt = narrow_run[3]
    code = cli.main(["--preset", "too-narrow-d5", "--seeds", "1", "--width", "3", "--checkpoint", str(ckpt),
                     "--resume", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "other options" in err[0]


def _write(tmp_path, obj, name="t.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(p)


@pytest.mark.parametrize("teacher, needle", [
    ({"activation": "relu"}, "teacher"),
    ({**TEACHER, "student": {}}, "student"),
    ({"teacher": {"a": ["1", "0"], "W": [["1", "0", "0"], ["0", "1", "0"]]}}, "teacher.a[1]"),
    ({"teacher": {"a": ["1"], "W": [["0", "0", "0"]]}}, "teacher.W[0]"),
    ({"teacher": {"a": ["1", "1"], "W": [["1", "0", "0"], ["1", "0", "0"]]}}, "teacher.W"),
    ({"teacher": {"a": ["1"], "W": [["1", "0", "0"]], "b": 1}}, "teacher.b"),
    ({"activation": "tanh", "teacher": TEACHER["teacher"]}, "activation"),
    ("{not json", "not valid JSON"),
    ({"description": "x", "teacher": TEACHER, "run": {"width": "many"}}, "run.width"),
    ({"description": "x", "teacher": TEACHER, "run": {"colour": 1}}, "run.colour"),
])
def test_teacher_file_errors_are_one_line_exit_2(tmp_path, capsys, teacher, needle):
    code = cli.main(["--teacher", _write(tmp_path, teacher), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize("flags, needle", [
    # one validation of seeds and digits for every command (checker.commands.options)
    (["--seed", "-1"], "--seed"),
    (["--seed", "99999999999999999999"], "--seed"),
    (["--engine", "float64", "--dps", "30"], "--dps"),
    (["--engine", "mp", "--dps", "5000"], "--dps"),
    (["--width", "0"], "--width"),
    (["--seeds", "0"], "--seeds"),
    (["--lambda", "-1"], "lam"),
    (["--eta", "nan"], "eta"),
    (["--stage1-steps", "0"], "steps"),
    (["--stage1-eta", "-2"], "eta"),
    (["--variant", "odd"], "variant"),
    (["--engine", "mp", "--dps", "2"], "--dps"),
    (["--seed", "1", "--seeds", "2"], "not allowed"),
    (["--resume"], "--checkpoint"),
    (["--steps", "0"], "--steps"),
    (["--width", "100000000"], "--width"),  # out of reach: refused at once, not after minutes
])
def test_bad_flags_are_one_line_exit_2(tmp_path, capsys, flags, needle):
    code = cli.main(["--teacher", _write(tmp_path, TEACHER), "--no-progress", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_output_paths_are_probed_before_any_work(tmp_path, capsys):
    folder = tmp_path / "adir"
    folder.mkdir()
    code = cli.main(["--teacher", _write(tmp_path, TEACHER), "--json", str(folder), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--json" in err[0]
    t = _write(tmp_path, TEACHER)
    code = cli.main(["--teacher", t, "--json", t, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "same file" in err[0]


def test_unknown_preset(capsys):
    assert cli.main(["--preset", "nope", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset" in err[0]


def test_list_presets(capsys):
    assert cli.main(["--list-presets"]) == 0
    out = capsys.readouterr().out
    assert "two-signs-d6" in out and "too-narrow-d5" in out


def test_ctrl_c_writes_the_partial_result_and_exits_130(narrow_run, monkeypatch, tmp_path):
    finished = narrow_run[1]["seeds"][0]

    class Done:
        class stage3:
            verdict = finished["stage3"]["verdict"]

        @staticmethod
        def to_dict():
            return finished

    calls = []

    def fake(teacher, opts, seed, say=None):
        calls.append(seed)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return Done()

    monkeypatch.setattr(cli, "run_seed", fake)
    out = tmp_path / "partial.json"
    code = cli.main(["--preset", "too-narrow-d5", "--seeds", "3", "--json", str(out), "--no-progress"])
    res = json.loads(out.read_text())
    assert code == 130 and res["verdict"] == "interrupted" and len(res["seeds"]) == 1


def test_figures_are_written(narrow_run, tmp_path):
    from checker.commands.algorithm_figures import make_plots

    teacher = cli.load_preset("too-narrow-d5")[0]
    paths = make_plots(narrow_run[1]["seeds"], teacher, str(tmp_path / "fig"))
    assert [p.name for p in paths] == ["directions.png", "losses.png", "floor_vs_stage3.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_a_result_file_read_before_the_end_is_marked_partial(narrow_run, monkeypatch, tmp_path):
    # the audit: SIGKILL during --seeds 2 left a file saying "recovered" with one seed of two run.
    # Here seed 0 comes from the checkpoint, seed 1 is a copy of it, and the run is killed in seed 2:
    # the file on disk at that moment must say it is partial.
    from types import SimpleNamespace

    import shutil

    _, res, _, shared_ckpt = narrow_run
    ckpt = tmp_path / "run.ckpt.json"  # a copy: the module's checkpoint stays as it was
    shutil.copy(shared_ckpt, ckpt)
    out = tmp_path / "k.json"
    seen = {}

    class Killed(BaseException):
        pass

    def fake_seed(teacher, opts, seed, say=None):
        if seed == 1:
            d = {**res["seeds"][0], "seed": 1}
            return SimpleNamespace(to_dict=lambda: d, stage3=SimpleNamespace(verdict=d["stage3"]["verdict"]))
        seen.update(json.loads(out.read_text()))
        raise Killed

    monkeypatch.setattr(cli, "run_seed", fake_seed)
    with pytest.raises(Killed):
        cli.main(["--preset", "too-narrow-d5", "--seeds", "3", "--json", str(out), "--checkpoint", str(ckpt),
                  "--resume", "--no-progress"])
    assert seen["complete"] is False and seen["seeds_requested"] == 3 and len(seen["seeds"]) == 2
    assert res["complete"] is True and res["seeds_requested"] == 1  # the finished run is complete
