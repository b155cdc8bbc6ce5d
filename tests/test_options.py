"""The one validation table of ``checker.commands.options`` (flags and run-file keys of checker.theorem1)."""

from __future__ import annotations

import sys
from fractions import Fraction

import mpmath
import pytest

from checker.core.engines import MAX_DPS, MpEngine
from checker.core.errors import InstanceError
from checker.core.io import engine_from_json, engine_to_json
from checker.core.model import Instance
from checker.commands.options import (MAX_SEED, OPTIONS, layer_engine, max_dps, parse_option, parse_run,
                             resolve_engine)
from checker.commands.presets import RUN_KEYS, preset_names, load_preset
from checker.core.problem import Problem


def test_the_table_is_the_run_file_format_and_every_preset_passes_it() -> None:
    assert set(OPTIONS) == RUN_KEYS == {"engine", "dps", "schedule", "steps", "eta", "gap_target", "time_budget",
                                        "radius", "threshold", "seed", "force", "hybrid"}
    for name in preset_names():
        parse_run(load_preset(name).run, name)


@pytest.mark.parametrize("key, good, expect", [
    ("seed", "0", 0), ("seed", str(MAX_SEED), MAX_SEED), ("steps", "2e4", 20_000), ("steps", 7, 7),
    ("dps", str(MAX_DPS), MAX_DPS), ("gap_target", "1e-12", 1e-12), ("radius", "0.5", 0.5),
    ("eta", "0.05", "0.05"), ("force", True, True), ("engine", "mp", "mp"), ("schedule", "fixed", "fixed"),
])
def test_values_in_range_are_returned_typed(key: str, good: object, expect: object) -> None:
    assert parse_option(key, good) == expect


@pytest.mark.parametrize("key, bad", [
    ("seed", "-1"), ("seed", str(MAX_SEED + 1)), ("steps", "1e999"), ("steps", "0.5"), ("steps", True),
    ("dps", str(MAX_DPS + 1)), ("dps", "4"), ("gap_target", "nan"), ("gap_target", "0"), ("gap_target", "1e-400"),
    ("time_budget", "-inf"), ("radius", "3.2"), ("threshold", "-1e-3"), ("eta", "-0.1"), ("force", "yes"),
    ("engine", "float32"), ("schedule", "sometimes"), ("seed", "9" * 10_000), ("schedule", "fixed" * 2000),
])
def test_values_out_of_range_name_the_field_and_quote_a_short_prefix(key: str, bad: object) -> None:
    with pytest.raises(InstanceError) as exc:
        parse_option(key, bad, f"run.{key}")
    msg = str(exc.value)
    assert exc.value.field == f"run.{key}" and "\n" not in msg
    assert len(msg) < 250  # a 10,000-character value is quoted by a short prefix only


def test_digits_belong_to_the_mp_engine_in_every_combination() -> None:
    assert resolve_engine(None, None) == ("float64", None)
    assert resolve_engine("mp", None) == ("mp", None)
    for engine in (None, "float64"):
        with pytest.raises(InstanceError, match="--dps"):
            resolve_engine(engine, 40)
    with pytest.raises(InstanceError, match=r"x\.json: run\.dps"):
        parse_run({"dps": 40}, "x.json")
    # flags over a run file: the file's digits go with its mp engine
    assert layer_engine(None, None, "mp", 30) == ("mp", 30)
    assert layer_engine("float64", None, "mp", 30) == ("float64", None)
    assert layer_engine("mp", None, "mp", 30) == ("mp", 30)
    assert layer_engine(None, 60, "mp", 30) == ("mp", 60)
    assert layer_engine("mp", None, None, None) == ("mp", None)
    with pytest.raises(InstanceError):
        layer_engine(None, 60, None, None)


def test_max_dps_follows_the_interpreter_limit(monkeypatch) -> None:
    assert max_dps() == MAX_DPS  # the default limit (4300 digits) admits MAX_DPS
    monkeypatch.setattr(sys, "get_int_max_str_digits", lambda: 1000)
    assert max_dps() < 1000
    with pytest.raises(InstanceError, match="--dps"):
        parse_option("dps", "1000")


def test_every_conversion_works_at_the_maximum_dps() -> None:
    # The conversions a run makes on engine numbers (decimal strings of the result and the
    # checkpoint, exact fractions of the Arb path) at MAX_DPS; above ~4280 digits Python's
    # int-string limit broke them.  Reference for the values: the exact decimal input.
    engine = MpEngine(MAX_DPS)
    inst = Instance.create(teacher_a=["1"], teacher_W=[["1", "0"]], student_a=["0.9"],
                           student_W=[["0.9", "0." + "1" * 3990]], lam="0.1", eta="0.1")
    problem = Problem.from_instance(inst, engine)
    with engine.context():
        ev = problem.evaluate()
        text = engine.to_str(ev.loss)
        assert len(text) >= MAX_DPS
        Fraction(text)  # the conversion the rigorous path makes
        back = engine_from_json(engine, engine_to_json(engine, problem.W))
        assert all(x == y for x, y in zip(back.ravel(), problem.W.ravel()))  # exact round trip
        assert problem.W[0, 1] == mpmath.mpf("0." + "1" * 3990)  # the input read at full precision


@pytest.mark.slow
def test_the_rigorous_gap_at_the_maximum_dps() -> None:
    # ~40 s on 2 cores: the Arb branch and bound at 4000 digits on the single-teacher preset.
    from checker.rigorous import duality

    inst = load_preset("single-teacher").instance
    gb = duality.gap_bound(Problem.from_instance(inst, MpEngine(MAX_DPS)), rigorous=True, seed=0)
    assert gb.rigorous and Fraction(gb.gap_upper) >= 0


@pytest.mark.parametrize("key, value, expected", [("width", "60", 60), ("width", "1000", 1000), ("seeds", "5", 5)])
def test_command_options_share_the_table(key, value, expected):
    assert parse_option(key, value) == expected


@pytest.mark.parametrize("key, value", [("width", "0"), ("width", "1001"), ("width", "2.5"), ("seeds", "0"),
                                        ("seeds", "10001"), ("seeds", "x")])
def test_command_options_refuse_out_of_range(key, value):
    with pytest.raises(InstanceError, match=f"--{key}"):
        parse_option(key, value)
