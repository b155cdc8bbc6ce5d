"""Run options of the commands: one validation table for command-line flags and run-file keys.

Every option of ``python -m checker.theorem1`` enters through ``parse_option``,
whether it comes from the command line (``--gap-target 1e-12``, named by its
flag) or from the ``"run"`` object of a run file or preset (``"gap_target":
1e-12``, named ``SOURCE: run.gap_target``).  A value outside its documented
range is an ``InstanceError`` naming that field, in the same style as instance
errors, and quoting at most a short prefix of a long value.

Engine and digits follow one rule in every command (``resolve_engine``):
``--dps`` belongs to the mp engine; asking for digits with the float64 engine is
refused (exit 2) rather than silently switching engines.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from checker.core.engines import GUARD_DIGITS, MAX_DPS, MIN_DPS
from checker.core.errors import CheckerError, InstanceError, quote

#: Largest seed: the seeds feed numpy's generators, which take 32-bit seeds in the
#: legacy interface; one range for every command keeps runs reproducible everywhere.
MAX_SEED = 2**32 - 1
#: Largest step budget (a run of 10^9 steps would take years even in float64).
MAX_STEPS = 10**9
#: Largest student width of ``python -m checker.algorithm``: every step forms (m + m*)^2 pair
#: arrays (about 20 float64 arrays of that size), so m = 1000 takes ~160 MB and ~0.2 s per step.
MAX_WIDTH = 1000
#: Largest number of seeds of one run (--seeds K runs seeds 0..K-1).
MAX_SEEDS = 10_000
#: Decimal digits beyond ``dps`` that the longest string a run converts carries (the
#: engine's guard digits, the round-trip digits of checker.core.io and the Arb path's
#: outward-rounded bounds; measured at most dps + 23, margin kept).
_DPS_STRING_MARGIN = GUARD_DIGITS + 40


def max_dps() -> int:
    """The largest ``--dps`` that every number conversion of a run supports in this interpreter.

    Python limits int <-> decimal-string conversions (``sys.get_int_max_str_digits``,
    4300 digits by default, set by PYTHONINTMAXSTRDIGITS); the Arb path converts
    decimal strings of about dps + 25 digits to fractions, so the maximum keeps
    below that limit.  ``MAX_DPS`` (engines) is the maximum under the default limit.
    """
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    if limit == 0:
        return MAX_DPS
    return max(MIN_DPS, min(MAX_DPS, limit - _DPS_STRING_MARGIN))


@dataclass(frozen=True)
class OptionSpec:
    """One option: its kind and its documented range (``doc`` is quoted in errors)."""

    key: str
    kind: str  # "choice", "int", "float", "decimal", "str", "bool"
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


def _table() -> dict[str, OptionSpec]:
    specs = [
        OptionSpec("engine", "choice", "'float64' or 'mp'", choices=("float64", "mp")),
        # the upper end of dps is max_dps(), read when a value is checked (see parse_option)
        OptionSpec("dps", "int", "a whole number from {low} to {high} (mp engine only)", low=MIN_DPS),
        OptionSpec("schedule", "str", "'fixed' or 'geometric:factor=0.5,switch=1e-2,min=1e-4'"),
        OptionSpec("steps", "int", f"a whole number from 1 to {MAX_STEPS}", low=1, high=MAX_STEPS),
        OptionSpec("eta", "decimal", "a finite positive number", low=0, low_open=True),
        OptionSpec("gap_target", "float", "a finite positive number", low=0, low_open=True),
        OptionSpec("time_budget", "float", "a finite positive number of seconds", low=0, low_open=True),
        OptionSpec("radius", "float", "an angle in radians, 0 < r <= pi", low=0, high=math.pi, low_open=True),
        OptionSpec("threshold", "float", "a finite positive number", low=0, low_open=True),
        OptionSpec("seed", "int", f"a whole number from 0 to {MAX_SEED}", low=0, high=MAX_SEED),
        OptionSpec("force", "bool", "true or false"),
        OptionSpec("hybrid", "bool", "true or false (mp engine: float64 steps to float64's floor first)"),
    ]
    return {s.key: s for s in specs}


#: The options of ``python -m checker.theorem1`` (run-file key -> spec); the run-file
#: keys accepted by ``checker.commands.presets`` are exactly these.
OPTIONS: dict[str, OptionSpec] = _table()
#: Options of other commands validated by the same rules (not run-file keys of checker.theorem1).
COMMAND_OPTIONS: dict[str, OptionSpec] = {s.key: s for s in [
    OptionSpec("width", "int", f"a whole number from 1 to {MAX_WIDTH}", low=1, high=MAX_WIDTH),
    OptionSpec("seeds", "int", f"a whole number from 1 to {MAX_SEEDS}", low=1, high=MAX_SEEDS),
]}


def _number(value: Any) -> Decimal:
    """A finite decimal from a JSON number/string or a command-line string (ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError
    text = value.strip() if isinstance(value, str) else repr(value)
    if len(text) > 100:  # no option needs more digits; keeps every conversion cheap
        raise ValueError
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ValueError from None
    if not d.is_finite():
        raise ValueError
    return d


def parse_option(key: str, value: Any, field: str | None = None) -> Any:
    """Validate one option value; returns it typed (int, float, str, bool).

    ``field`` names the option in messages (default: its flag, e.g. ``--seed``).
    Numbers may be JSON numbers or strings (run files keep numbers as text).
    """
    spec = OPTIONS[key] if key in OPTIONS else COMMAND_OPTIONS[key]
    if key == "dps":  # the interpreter's int-string limit fixes the maximum at run time
        high = max_dps()
        spec = OptionSpec(key, spec.kind, spec.doc.format(low=MIN_DPS, high=high), low=MIN_DPS, high=high)
    field = field or spec.flag

    def bad(problem: str = "") -> InstanceError:
        return InstanceError(field, problem or f"expected {spec.doc}, got {quote(value)}")

    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if spec.kind in ("str", "choice"):
        if not isinstance(value, str) or len(value) > 200:  # no valid value is longer
            raise bad()
        if spec.kind == "choice" and value not in spec.choices:
            raise bad()
        if key == "schedule":
            from checker.dynamics.gd import Schedule  # imported here: gd imports the engines and io
            try:
                Schedule.parse(value)
            except CheckerError as exc:
                problem = str(exc).removeprefix("--schedule: ")
                raise InstanceError(field, problem) from None
        return value
    try:
        d = _number(value)
    except ValueError:
        raise bad() from None
    if spec.low is not None and (d <= Decimal(repr(spec.low)) if spec.low_open else d < Decimal(repr(spec.low))):
        raise bad()
    if spec.high is not None and d > Decimal(repr(spec.high)):
        raise bad()
    if spec.kind == "int":
        if d != d.to_integral_value():
            raise bad()
        return int(d)
    if spec.kind == "decimal":  # kept as written, so that the mp engine reads it exactly
        return value.strip() if isinstance(value, str) else repr(value)
    out = float(d)
    if not math.isfinite(out) or (spec.low_open and out <= (spec.low or 0)):
        raise bad()  # finite as a decimal but not as a float64 (e.g. 1e-400 rounds to 0)
    return out


def parse_run(run: Any, source: str) -> dict[str, Any]:
    """Validate the ``"run"`` object of a run file; returns the typed options it sets."""
    if not isinstance(run, Mapping):
        raise InstanceError(f"{source}: run", "expected an object")
    unknown = sorted(set(run) - set(OPTIONS))
    if unknown:
        raise InstanceError(f"{source}: run.{quote(unknown[0], quotes=False)}", "unknown key",
                            f"expected keys: {', '.join(sorted(OPTIONS))}")
    out = {k: parse_option(k, v, f"{source}: run.{k}") for k, v in run.items() if v is not None}
    resolve_engine(out.get("engine"), out.get("dps"), dps_field=f"{source}: run.dps")
    return out


def resolve_engine(engine: str | None, dps: int | None, *, dps_field: str = "--dps") -> tuple[str, int | None]:
    """The one rule for engine and digits: float64 unless asked; digits only with mp.

    ``dps`` given with the float64 engine (explicit or by default) is refused,
    naming ``dps_field``: every command behaves the same way.
    """
    name = engine or "float64"
    if name == "float64" and dps is not None:
        raise InstanceError(dps_field, "digits apply to the mp engine only",
                            "use --engine mp (in a run file \"engine\": \"mp\"), or drop them")
    return name, dps


def layer_engine(cli_engine: str | None, cli_dps: int | None,
                 file_engine: str | None, file_dps: int | None) -> tuple[str, int | None]:
    """Engine and digits when command-line flags override a run file's (both validated).

    A run file's digits belong to its mp engine: ``--engine float64`` drops them,
    ``--engine mp`` without ``--dps`` keeps them, ``--dps`` alone applies only when
    the resulting engine is mp.
    """
    engine = cli_engine or file_engine or "float64"
    if cli_dps is not None:
        return resolve_engine(engine, cli_dps)
    return engine, (file_dps if engine == "mp" and (file_engine or "float64") == "mp" else None)
