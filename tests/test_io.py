"""checker/core/io.py: atomic JSON writes, guarded reads, engine numbers as exact strings."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from checker.core import io as cio
from checker.core.engines import Float64Engine, MpEngine
from checker.core.errors import CheckerError


# --------------------------------------------------------------------------- atomic writes
def test_write_reads_back_and_creates_no_folder(tmp_path):
    obj = {"a": ["1.5", "-2e-300"], "n": 3, "x": 0.1, "none": None, "nested": [[1, 2], []]}
    missing = tmp_path / "deep" / "dir" / "result.json"
    with pytest.raises(CheckerError, match="folder .*deep/dir does not exist"):
        cio.write_json_atomic(missing, obj)  # an output file never creates a folder
    assert not (tmp_path / "deep").exists()
    path = tmp_path / "dir" / "result.json"
    path.parent.mkdir()
    cio.write_json_atomic(path, obj)
    assert cio.read_json(path, "result") == obj
    assert os.listdir(path.parent) == ["result.json"]  # no temporary file left behind


def test_overwrite_replaces_whole_file_and_keeps_mode(tmp_path):
    path = tmp_path / "r.json"
    cio.write_json_atomic(path, {"v": list(range(1000))})
    os.chmod(path, 0o640)
    cio.write_json_atomic(path, {"v": 2})
    assert cio.read_json(path, "result") == {"v": 2}
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("bad, error", [({"v": {1, 2}}, TypeError),  # a set is not JSON
                                        ({"v": math.nan}, ValueError),  # NaN is not JSON
                                        ({"v": object()}, TypeError)])
def test_failing_serializer_leaves_old_file_intact(tmp_path, bad, error):
    path = tmp_path / "r.json"
    cio.write_json_atomic(path, {"v": 1})
    before = path.read_bytes()
    with pytest.raises(error):
        cio.write_json_atomic(path, bad)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["r.json"]


@pytest.mark.parametrize("victim", ["fsync", "replace"])
def test_os_failure_mid_write_leaves_old_file_intact(tmp_path, monkeypatch, victim):
    # A crash after the temporary file is written but before (or during) the rename.
    path = tmp_path / "r.json"
    cio.write_json_atomic(path, {"v": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(cio.os, victim, boom)
    with pytest.raises(CheckerError) as info:
        cio.write_json_atomic(path, {"v": 2})
    assert "\n" not in str(info.value) and "r.json" in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["r.json"]


def test_unwritable_target_is_one_line_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(CheckerError) as info:
        cio.write_json_atomic(blocker / "r.json", {})
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- guarded reads
@pytest.mark.parametrize("content, expect", [
    (None, "no such file"),
    ("dir", "is a directory"),
    (b"{\"a\": [1, 2", "not valid JSON"),  # a truncated (half-written) file
    (b"", "not valid JSON"),
    (b"{\"a\": NaN}", "NaN"),
    (b"[Infinity]", "Infinity"),
    (b"\xff\xfe\x00garbage", "UTF-8"),
])
def test_read_json_errors_are_one_line(tmp_path, content, expect):
    path = tmp_path / "in.json"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckerError) as info:
        cio.read_json(path, "checkpoint")
    msg = str(info.value)
    assert "\n" not in msg and expect in msg and msg.startswith("checkpoint ")


def test_read_json_accepts_a_utf8_byte_order_mark(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf{\"a\": [1, 2]}")
    assert cio.read_json(path, "checkpoint") == {"a": [1, 2]}


def test_write_bytes_atomic_follows_the_rule_of_every_output(tmp_path):
    # figures use it: written through a symlink (link kept), a non-regular target refused untouched
    real = tmp_path / "real.png"
    real.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    cio.write_bytes_atomic(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"
    (tmp_path / "d.png").mkdir()
    for target in (tmp_path / "d.png", os.devnull):
        with pytest.raises(CheckerError, match="not a regular file|is a directory"):
            cio.write_bytes_atomic(target, b"x")
    assert (tmp_path / "d.png").is_dir() and not list((tmp_path / "d.png").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "link.png", "real.png"]  # no temp file left


# --------------------------------------------------------------------------- exact number strings
def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=6))
@example([0.0, -0.0, 5e-324, -1.7976931348623157e308, 0.1, 1 / 3])  # signed zero, subnormal, extremes
def test_float64_round_trip_is_bit_exact(values):
    # Reference: the IEEE bit pattern itself; exact equality is the only correct tolerance.
    e = Float64Engine()
    arr = np.array(values, dtype=float)
    back = cio.engine_from_json(e, cio.engine_to_json(e, arr))
    assert back.dtype == float and back.shape == arr.shape
    assert [_bits(x) for x in back] == [_bits(x) for x in arr]


@given(dps=st.sampled_from([5, 15, 30, 50, 100]), data=st.data())
def test_mp_round_trip_is_exact_at_working_precision(dps, data):
    # Reference: the exact binary value (mantissa, exponent) of numbers with the
    # full working precision; exact equality is the only correct tolerance.
    e = MpEngine(dps)
    with e.context():
        prec = mpmath.mp.prec
        mants = data.draw(st.lists(st.integers(-(2 ** prec) + 1, 2 ** prec - 1), min_size=1, max_size=6))
        exps = data.draw(st.lists(st.integers(-prec - 300, 300), min_size=len(mants), max_size=len(mants)))
        values = [mpmath.ldexp(m, x) for m, x in zip(mants, exps)]
        values += [mpmath.sqrt(2) / 7, mpmath.mpf(1) / 3, -mpmath.pi * 10 ** 40]  # rounded results
    back = cio.engine_from_json(e, cio.engine_to_json(e, values))
    assert [x._mpf_ for x in back] == [x._mpf_ for x in values]


def test_mp_round_trip_needs_more_than_dps_digits():
    # Negative control: the engine's display strings (dps digits) lose the guard
    # digits of 1/3, so the exactness above is not a property of any string form.
    e = MpEngine(30)
    with e.context():
        third = mpmath.mpf(1) / 3
        assert mpmath.mpf(e.to_str(third)) != third
    assert cio.engine_from_json(e, cio.engine_to_json(e, [third]))[0] == third
    assert cio.mp_round_trip_digits(e) > e.work_dps


def test_nested_shapes_are_kept():
    e = MpEngine(20)
    with e.context():
        W = e.array([["1", "2.5", "-3"], ["0.1", "0", "1e-40"]])
    data = cio.engine_to_json(e, W)
    assert isinstance(data, list) and len(data) == 2 and all(len(r) == 3 for r in data)
    back = cio.engine_from_json(e, data)
    assert back.shape == (2, 3) and all(x == y for x, y in zip(back.ravel(), W.ravel()))
    scalar = cio.engine_to_json(e, W[0, 1])
    assert isinstance(scalar, str) and cio.engine_from_json(e, scalar)[()] == W[0, 1]


@pytest.mark.parametrize("data, expect", [
    ([["1", "2"], ["3"]], "different lengths"),
    (["1", "abc"], "not a finite decimal"),
    (["nan"], "not a finite decimal"),
    (["inf"], "not a finite decimal"),
    ([True], "expected a decimal string"),
    ([{"x": 1}], "expected a decimal string"),
    (["1e400"], "float64"),  # overflows float64
])
def test_engine_from_json_rejects_malformed_data(data, expect):
    with pytest.raises(CheckerError) as info:
        cio.engine_from_json(Float64Engine(), data, "state.a")
    assert expect in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- output-path guards
def test_write_json_atomic_writes_through_a_symlink(tmp_path):
    from checker.core.io import write_json_atomic

    target = tmp_path / "real.json"
    target.write_text("{}\n")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_json_atomic(link, {"x": 1})
    assert link.is_symlink(), "the link itself must stay a link"
    assert json.loads(target.read_text()) == {"x": 1}


def test_write_json_atomic_refuses_a_non_regular_target(tmp_path):
    from checker.core.io import write_json_atomic

    folder = tmp_path / "d"
    folder.mkdir()
    with pytest.raises(CheckerError, match="not a regular file|a directory"):
        write_json_atomic(folder, {"x": 1})
    assert folder.is_dir() and not any(folder.iterdir())
    with pytest.raises(CheckerError, match="not a regular file"):
        write_json_atomic("/dev/null", {"x": 1})
    assert not Path("/dev/null").is_file(), "/dev/null must stay a device"


def test_check_output_file_refuses_before_any_work(tmp_path):
    from checker.core.io import check_output_file

    inp = tmp_path / "in.json"
    inp.write_text("{}")
    with pytest.raises(CheckerError, match="--json .*same file as --instance"):
        check_output_file("--json", inp, distinct_from={"--instance": inp})
    link = tmp_path / "alias.json"
    link.symlink_to(inp)
    with pytest.raises(CheckerError, match="same file as --instance"):
        check_output_file("--json", link, distinct_from={"--instance": inp})
    with pytest.raises(CheckerError, match="--json /dev/null: exists and is not a regular file"):
        check_output_file("--json", "/dev/null")
    with pytest.raises(CheckerError, match="--json .*cannot write in folder"):
        check_output_file("--json", "/proc/x.json")
    with pytest.raises(CheckerError, match=r"--json .*new/out.json: the folder .*new does not exist"):
        check_output_file("--json", tmp_path / "new" / "out.json")
    assert not (tmp_path / "new").exists(), "the probe of an output file creates no folder"
    (tmp_path / "new").mkdir()
    ok = check_output_file("--json", tmp_path / "new" / "out.json")
    assert ok == (tmp_path / "new" / "out.json").resolve()
    assert not ok.exists() and list(ok.parent.iterdir()) == [], "the probe leaves nothing behind"
    with pytest.raises(CheckerError, match="is not a folder"):
        check_output_file("--json", inp / "x.json")  # the "folder" is a file


def test_check_output_dir(tmp_path):
    from checker.core.io import check_output_dir

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CheckerError, match="--plots .*not a folder"):
        check_output_dir("--plots", f)
    with pytest.raises(CheckerError, match="--plots .*cannot write in folder"):
        check_output_dir("--plots", "/proc/xdir")
    assert check_output_dir("--plots", tmp_path / "figs").is_dir()


def test_run_guarded_turns_internal_errors_into_one_line(capsys, monkeypatch):
    from checker.commands.cli import DEBUG_ENV, run_guarded

    def boom() -> int:
        raise ZeroDivisionError("x" * 500)

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert run_guarded(boom, "prog") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError" in err and DEBUG_ENV in err
    assert len(err) < 450, "a long message is cut"

    def oom() -> int:
        raise MemoryError

    assert run_guarded(oom, "prog") == 2
    assert "out of memory" in capsys.readouterr().err
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        run_guarded(boom, "prog")


def test_tune_allocator_sets_glibc_thresholds_and_can_be_turned_off(monkeypatch):
    # Reference: glibc's mallopt, called through ctypes with a recording stand-in:
    # tune_allocator must ask for the documented thresholds (M_MMAP_THRESHOLD = -3,
    # M_TRIM_THRESHOLD = -1), report success only if glibc accepts both, and do
    # nothing under CHECKER_DEFAULT_MALLOC=1.  run_guarded calls it before the body.
    import sys

    from checker.commands import cli
    from checker.core import allocator

    calls: list[tuple[int, int]] = []

    class Mallopt:  # a ctypes function: settable argtypes and restype, called with two ints
        argtypes = restype = None

        def __call__(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    class FakeLibc:
        mallopt = Mallopt()

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: FakeLibc())
    monkeypatch.delenv(allocator.DEFAULT_MALLOC_ENV, raising=False)
    assert allocator.tune_allocator() is True
    assert calls == [(-3, 32 * 2**20), (-1, 256 * 2**20)]
    calls.clear()
    assert cli.run_guarded(lambda: 0, "prog") == 0 and len(calls) == 2
    calls.clear()
    monkeypatch.setenv(allocator.DEFAULT_MALLOC_ENV, "1")
    assert allocator.tune_allocator() is False and calls == []

    def no_mallopt(name: str) -> object:
        raise OSError("no C library")

    monkeypatch.delenv(allocator.DEFAULT_MALLOC_ENV)
    monkeypatch.setattr(allocator.ctypes, "CDLL", no_mallopt)
    assert allocator.tune_allocator() is False


# --------------------------------------------------------------------------- folders: the command level
_REPO = Path(__file__).resolve().parents[1]
#: (command module, arguments before the output flag, output flag, the work that must never start)
_MISSING_FOLDER_CASES = [
    ("gd", [str(_REPO / "examples/relu_3d.json")], "--json", "run"),
    ("weight_decay", [], "--json", "run_study"),
    ("threshold", [str(_REPO / "examples/threshold-reference.json"), "--family", "unbalance"], "--json",
     "find_threshold"),
    ("sweep", [str(_REPO / "docs/sweeps/reference-grid.json")], "--out", "run_sweep"),
    ("report", [str(_REPO / "docs/sweeps/reference-results.jsonl")], "--out", "render"),
    ("algorithm", [], "--json", "run_seed"),
]


@pytest.mark.parametrize("command, args, flag, work", _MISSING_FOLDER_CASES,
                         ids=[c[0] for c in _MISSING_FOLDER_CASES])
def test_missing_folder_of_an_output_file_exits_2_before_any_work(command, args, flag, work, tmp_path,
                                                                  capsys, monkeypatch):
    import importlib

    mod = importlib.import_module(f"checker.commands.{command}")
    monkeypatch.setattr(mod, work, None)  # any work after the probe would crash (exit 1, not 2)
    target = tmp_path / "no_such_folder" / "out.json"
    assert mod.main(args + [flag, str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and "does not exist" in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "no_such_folder").exists(), "no folder created"


@pytest.mark.parametrize("command, folder_flags", [
    ("theorem1", ["--plots", "--counterexample-dir"]), ("algorithm", ["--plots"]), ("gd", ["--counterexample-dir"]),
    ("threshold", ["--plots", "--failing-dir"]), ("report", ["--figures"]), ("weight_decay", ["--plots"]),
    ("landscape", ["--plots"])])
def test_help_says_which_outputs_create_folders(command, folder_flags):
    import importlib

    from checker.commands.cli import UsageParser

    parser = importlib.import_module(f"checker.commands.{command}").build_parser()
    text = " ".join(parser.format_help().split())
    assert " ".join(UsageParser.OUTPUT_RULE.split()) in text
    for action in parser._actions:
        if set(action.option_strings) & set(folder_flags):
            assert "created if missing" in " ".join(action.help.split()), action.option_strings


def test_output_folder_is_created_when_named(tmp_path):
    from checker.core.io import check_output_dir

    target = tmp_path / "new" / "figs"
    assert check_output_dir("--plots", target) == target.resolve() and target.is_dir()
