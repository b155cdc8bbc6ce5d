"""The sweep: grid expansion and keys, resume after a kill, torn last lines, the local pool
and the Dask path (a small LocalCluster), and the command line's bad inputs.

The measurement is replaced by a cheap deterministic function of the point (module level,
so that pool and Dask workers can import it): what is tested is the sweep machinery.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import pytest

from checker.core.errors import CheckerError
from checker.commands import sweep as sweep_cmd
from checker.studies import sweep

GRID = {
    "name": "tiny",
    "base": {"lam": 0.01, "delta": 1.5, "m_star": 2, "d": 3, "a_min": 0.8, "seed": 1},
    "axes": {"lam": [0.005, 0.01, 0.02], "d": [3, 4], "a_min": [0.5, 0.8]},
    "points": [{"lam": 0.02, "d": 4}, {"lam": 0.005}],
    "measure": {"families": ["rotate"], "max_trials": 4},
}


def fake_measure(point: Mapping[str, Any]) -> dict[str, Any]:
    """Deterministic stand-in for measure_grid_point: a power law of the point's parameters."""
    s = point["spec"]
    return {"result": {"constants": {"rho": 2.0 * s["lam"] ** 1.5, "p_norm": s["d"] * 1.0},
                       "threshold": {}, "seconds": 0.0}, "error": None}


class Interrupt:
    """fake_measure that raises KeyboardInterrupt (Ctrl-C) on its call number ``at``."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, point: Mapping[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return fake_measure(point)


def _canon(path: Path) -> set[str]:
    """The result set of a file, independent of line order and of the executor that wrote it."""
    recs = sweep.read_results(path).values()
    return {json.dumps({k: v for k, v in r.items() if k != "executor"}, sort_keys=True) for r in recs}


# --------------------------------------------------------------------------- grid
def test_grid_is_the_base_plus_one_axis_at_a_time_without_duplicates() -> None:
    g = sweep.Grid.from_dict(GRID)
    # base; lam 0.005, 0.02 (0.01 is the base); d 4; a_min 0.5; points: (0.02, d 4); (lam 0.005) is a duplicate
    assert len(g.points) == 6
    base = g.points[0]
    assert base["axes"] == ["lam", "d", "a_min"]
    specs = [(p["spec"]["lam"], p["spec"]["d"], p["spec"]["a_min"]) for p in g.points]
    assert len(set(specs)) == 6
    assert (0.005, 3, 0.8) in specs and (0.02, 4, 0.8) in specs
    on_lam = [p for p in g.points if "lam" in p["axes"]]
    assert sorted(p["spec"]["lam"] for p in on_lam) == [0.005, 0.01, 0.02]


def test_point_keys_are_canonical() -> None:
    g1 = sweep.Grid.from_dict(GRID)
    reordered = json.loads(json.dumps(GRID))
    reordered["base"] = dict(reversed(list(reordered["base"].items())))
    g2 = sweep.Grid.from_dict(reordered)
    assert [p["key"] for p in g1.points] == [p["key"] for p in g2.points]
    changed = json.loads(json.dumps(GRID))
    changed["measure"]["max_trials"] = 5  # another setting is another point
    assert not {p["key"] for p in g1.points} & {p["key"] for p in sweep.Grid.from_dict(changed).points}


@pytest.mark.parametrize("patch, needle", [
    ({"axes": {"width": [1]}}, "unknown axis"),
    ({"base": {"m_star": 3, "delta": 3.0, "d": 3}}, "cannot be pairwise"),
    ({"axes": {"lam": []}}, "non-empty"),
    ({"measure": {"families": ["spin"]}}, "unknown family"),
    ({"measure": {"max_trials": 1}}, "max_trials"),
    ({"measure": {"trial_step": "tiny"}}, "trial_step"),
    ({"base": {"lam": -1}}, "lam"),
    ({"extra": 1}, "unknown key"),
    # the audit: ranges and angles that each point would only fail on later, never retried
    ({"measure": {"families": ["rotate"], "ranges": {"rotate": [3, 0]}}}, "measure.ranges.rotate"),
    ({"measure": {"families": ["far"], "ranges": {"far": [-1, 2]}}}, "measure.ranges.far"),
    ({"axes": {"delta": [4.0]}}, "delta must be an angle"),
    ({"version": "2.0"}, "unknown grid version"),
])
def test_bad_grids_are_refused_with_a_message(patch, needle) -> None:
    data = {**json.loads(json.dumps(GRID)), **patch}
    with pytest.raises(CheckerError, match=needle):
        sweep.Grid.from_dict(data)


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("k", [1, 3, 5])
def test_a_killed_sweep_rerun_computes_only_the_missing_points_and_ends_with_the_same_results(
        tmp_path: Path, k: int) -> None:
    g = sweep.Grid.from_dict(GRID)
    full = tmp_path / "full.jsonl"
    s_full = sweep.run_sweep(g, full, workers=1, measure=fake_measure)
    assert s_full.computed == len(g.points) and not s_full.interrupted

    part = tmp_path / "part.jsonl"
    s1 = sweep.run_sweep(g, part, workers=1, measure=Interrupt(at=k + 1))  # Ctrl-C after k points
    assert s1.interrupted and s1.computed == k
    assert len(sweep.read_results(part)) == k

    calls: list[str] = []

    def counting(point: Mapping[str, Any]) -> dict[str, Any]:
        calls.append(point["key"])
        return fake_measure(point)

    s2 = sweep.run_sweep(g, part, workers=1, measure=counting)
    assert s2.done_before == k and s2.computed == len(g.points) - k
    assert set(calls) == {p["key"] for p in g.points} - set(s1.keys_computed) and len(calls) == len(set(calls))
    assert _canon(part) == _canon(full)
    s3 = sweep.run_sweep(g, part, workers=1, measure=counting)  # nothing left to do
    assert s3.computed == 0 and len(calls) == len(g.points) - k


def test_a_torn_last_line_is_dropped_and_repaired(tmp_path: Path) -> None:
    g = sweep.Grid.from_dict(GRID)
    full = tmp_path / "full.jsonl"
    sweep.run_sweep(g, full, workers=1, measure=fake_measure)
    text = full.read_text()
    lines = text.splitlines(keepends=True)
    torn = tmp_path / "torn.jsonl"
    torn.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed mid-write
    assert len(sweep.read_results(torn)) == 2
    sweep.run_sweep(g, torn, workers=1, measure=fake_measure)
    assert _canon(torn) == _canon(full)
    assert all(json.loads(x) for x in torn.read_text().splitlines())  # no torn line left


def test_a_complete_last_line_without_its_newline_is_kept_not_recomputed(tmp_path: Path) -> None:
    g = sweep.Grid.from_dict(GRID)
    full = tmp_path / "full.jsonl"
    sweep.run_sweep(g, full, workers=1, measure=fake_measure)
    lines = full.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:2]) + lines[2].rstrip("\n"))  # stopped just before the newline
    assert len(sweep.read_results(cut)) == 3
    calls: list[str] = []

    def counting(point):
        calls.append(point["key"])
        return fake_measure(point)

    sweep.run_sweep(g, cut, workers=1, measure=counting)
    assert len(calls) == len(g.points) - 3 and _canon(cut) == _canon(full)
    assert all(json.loads(x) for x in cut.read_text().splitlines())


def test_a_malformed_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(CheckerError, match="line 2"):
        sweep.read_results(p)


# --------------------------------------------------------------------------- executors
def test_the_local_pool_gives_the_same_results_as_one_process(tmp_path: Path) -> None:
    g = sweep.Grid.from_dict(GRID)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    sweep.run_sweep(g, one, workers=1, measure=fake_measure)
    s = sweep.run_sweep(g, two, workers=2, measure=fake_measure)
    assert s.computed == len(g.points) and s.executor == "local:2"
    assert _canon(one) == _canon(two)


def test_the_dask_path_on_a_local_cluster(tmp_path: Path, monkeypatch) -> None:
    distributed = pytest.importorskip("dask.distributed")
    g = sweep.Grid.from_dict(GRID)
    one, dsk = tmp_path / "one.jsonl", tmp_path / "dask.jsonl"
    sweep.run_sweep(g, one, workers=1, measure=fake_measure)
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=2,
                                  dashboard_address=None) as cluster:
        # Ctrl-C reaches the client (this process) while it writes the third line
        real_append, n = sweep.append_record, [0]

        def append_then_interrupt(path: Any, record: Any) -> None:
            n[0] += 1
            if n[0] == 3:
                raise KeyboardInterrupt
            real_append(path, record)

        monkeypatch.setattr(sweep, "append_record", append_then_interrupt)
        s1 = sweep.run_sweep(g, dsk, scheduler=cluster.scheduler_address, measure=fake_measure)
        assert s1.interrupted and s1.computed == 2
        monkeypatch.setattr(sweep, "append_record", real_append)
        s2 = sweep.run_sweep(g, dsk, scheduler=cluster.scheduler_address, measure=fake_measure)
    assert s2.executor.startswith("dask") and s1.computed + s2.computed == len(g.points)
    assert _canon(one) == _canon(dsk)
    assert {r["executor"] for r in sweep.read_results(dsk).values()} == {"dask"}


# --------------------------------------------------------------------------- command line
def test_cli_bad_inputs_end_in_one_line_with_exit_2(tmp_path: Path, capsys) -> None:
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps(GRID))
    corrupt = tmp_path / "c.jsonl"
    corrupt.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    cases = [
        (["/nonexistent.json", "--out", str(tmp_path / "r.jsonl")], "nonexistent"),
        ([str(grid), "--out", str(tmp_path)], "--out"),
        ([str(grid), "--out", str(grid)], "same file"),
        ([str(grid), "--out", str(tmp_path / "r.jsonl"), "--workers", "0"], "--workers"),
        ([str(grid), "--out", str(tmp_path / "r.jsonl"), "--workers", "2", "--scheduler", "tcp://x:1"], "exclude"),
        ([str(grid), "--out", str(corrupt)], "corrupt"),
        ([str(grid)], "--out"),
    ]
    for args, needle in cases:
        code = sweep_cmd.main(args)
        err = capsys.readouterr().err
        assert code == 2, args
        assert len(err.strip().splitlines()) == 1 and needle in err, (args, err)


def test_cli_runs_the_sweep_and_a_rerun_adds_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sweep, "measure_grid_point", fake_measure)
    monkeypatch.setattr(sweep.run_sweep, "__kwdefaults__", {**sweep.run_sweep.__kwdefaults__,
                                                             "measure": fake_measure})
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps(GRID))
    out = tmp_path / "r.jsonl"
    assert sweep_cmd.main([str(grid), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert "6 computed" in capsys.readouterr().out
    assert sweep_cmd.main([str(grid), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert "6 already in" in capsys.readouterr().out and len(out.read_text().splitlines()) == 6


def test_cli_ctrl_c_keeps_the_completed_lines_and_exits_130(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sweep.run_sweep, "__kwdefaults__", {**sweep.run_sweep.__kwdefaults__,
                                                             "measure": Interrupt(at=3)})
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps(GRID))
    out = tmp_path / "r.jsonl"
    assert sweep_cmd.main([str(grid), "--out", str(out), "--workers", "1", "--no-progress"]) == 130
    assert "interrupted" in capsys.readouterr().err and len(sweep.read_results(out)) == 2


# --------------------------------------------------------------------------- Ctrl-C inside a real measurement
class _Interrupted:
    verdict = "interrupted"
    constants: dict = {}
    conclusions: list = []
    hypotheses: list = []
    final = None


def test_ctrl_c_inside_the_t1_run_of_a_point_is_not_recorded_as_a_measurement(monkeypatch) -> None:
    # TheoremCheck turns Ctrl-C into a report with verdict "interrupted"; the point must not be
    # measured from it (the audit: every constant null and "error": null, never recomputed).
    from checker.studies import scaling

    monkeypatch.setattr(scaling, "reference_run", lambda spec, **kw: (None, None, _Interrupted(), None))
    point = sweep.Grid.from_dict(GRID).points[0]
    with pytest.raises(KeyboardInterrupt):
        sweep.measure_grid_point(point)


def test_an_interrupted_threshold_search_is_not_recorded_as_a_measurement(monkeypatch) -> None:
    from checker.studies import scaling
    from checker.studies import threshold as thr

    class Report:
        verdict, constants, conclusions, hypotheses, final = "ok", {}, [], [], None

    class Res:
        interrupted = True

    class Start:
        eta, name = "0.3", "start"

    class Check:
        cert = None

    monkeypatch.setattr(scaling, "reference_run", lambda spec, **kw: (Start(), Check(), Report(), Start()))
    monkeypatch.setattr(thr, "find_threshold", lambda *a, **k: (Res(), None))
    point = sweep.Grid.from_dict(GRID).points[0]
    with pytest.raises(KeyboardInterrupt):
        scaling.measure_point(scaling.PointSpec.from_dict(point["spec"]),
                              scaling.MeasureConfig.from_dict(point["measure"]))


def sleepy_measure(point: Mapping[str, Any]) -> dict[str, Any]:
    """A point that takes 60 s; writes the worker's pid first (module level: picklable)."""
    import os
    import time

    Path(os.environ["SWEEP_PID_DIR"], str(os.getpid())).write_text("")
    time.sleep(60)
    return fake_measure(point)


def test_ctrl_c_on_the_local_pool_stops_the_workers_within_seconds(tmp_path: Path, monkeypatch) -> None:
    import os
    import signal
    import threading
    import time

    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setenv("SWEEP_PID_DIR", str(pids))

    def interrupt_when_busy() -> None:
        t0 = time.time()
        while len(list(pids.iterdir())) < 2 and time.time() - t0 < 30:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_busy, daemon=True).start()
    t0 = time.perf_counter()
    s = sweep.run_sweep(sweep.Grid.from_dict(GRID), tmp_path / "r.jsonl", workers=2, measure=sleepy_measure)
    assert s.interrupted and s.computed == 0
    assert time.perf_counter() - t0 < 40  # the points take 60 s each
    time.sleep(0.5)
    for p in pids.iterdir():  # every worker is gone
        with pytest.raises(ProcessLookupError):
            os.kill(int(p.name), 0)
    assert not (tmp_path / "r.jsonl").exists() or sweep.read_results(tmp_path / "r.jsonl") == {}


def test_ctrl_c_while_the_command_loads_is_one_line_and_exit_130(tmp_path: Path) -> None:
    # Ctrl-C arriving during the imports (raised here by an import hook, deterministically)
    import subprocess
    import sys

    code = ("import sys, runpy\n"
            "class Hook:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'checker.commands.sweep':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Hook())\n"
            "runpy.run_module('checker.sweep', run_name='__main__')\n")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert r.returncode == 130 and r.stderr.strip() == "python -m checker.sweep: interrupted", r.stderr
