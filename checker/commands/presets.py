"""Embedded instances (``checker/presets/*.json``) and the run file format.

A run file is either a bare instance (see ``checker.core.model``) or an object
``{"description": str, "instance": {...}, "run": {...}}`` whose ``run`` part
holds default options of ``python -m checker.theorem1`` (the keys and ranges of
``checker.commands.options.OPTIONS``: engine, dps, schedule, steps, eta, gap_target,
time_budget, radius, threshold, seed, force), validated when the file is read.  Presets use the second
form; so do the counterexample files the checker writes, which is why
``--instance COUNTEREXAMPLE.json`` reproduces a failure.
"""

from __future__ import annotations

import math

from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from checker.core.errors import CheckerError, InstanceError, quote
from checker.core.model import Instance, parse_json_text, read_text_file
from checker.core.runfile import RunFile  # noqa: F401  (the run file as data, read here)
from checker.commands.options import OPTIONS, parse_option, parse_run

DEFAULT_PRESET = "default"

RUN_KEYS = set(OPTIONS)


def preset_names() -> list[str]:
    folder = resources.files("checker") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _parse(data: Any, source: str) -> RunFile:
    if isinstance(data, Mapping) and "instance" in data:
        extra = sorted(set(data) - {"instance", "run", "description"})
        if extra:
            raise InstanceError(f"{source}: {quote(extra[0], quotes=False)}", "unknown key",
                                "a run file has keys instance, run, description")
        run = parse_run(data.get("run", {}) or {}, source)
        description = data.get("description", "")
        if not isinstance(description, str):
            raise InstanceError(f"{source}: description", "expected a string")
        return RunFile(Instance.from_dict(data["instance"]), dict(run), description, source)
    return RunFile(Instance.from_dict(data), {}, "", source)


def load_preset(name: str) -> RunFile:
    names = preset_names()
    if name not in names:
        raise CheckerError(f"unknown preset {name!r}; available presets: {', '.join(names)}")
    text = (resources.files("checker") / "presets" / f"{name}.json").read_text(encoding="utf-8")
    return _parse(parse_json_text(text, f"preset {name}"), f"preset {name}")


def load_run_file(path: str | Path) -> RunFile:
    return _parse(parse_json_text(read_text_file(path), str(path)), str(path))


def run_option(run: Mapping[str, Any], key: str, kind: type, default: Any, source: str) -> Any:
    """A run option from a run file, validated by the one table of ``checker.commands.options``.

    The table fixes the type and range of the options of ``checker.theorem1``; a key
    of another command's run file (e.g. ``width`` of ``checker.algorithm``) is
    converted to ``kind`` (numbers may be strings), with the same one-line errors.
    """
    if key not in run or run[key] is None:
        return default
    if key in OPTIONS:
        return parse_option(key, run[key], f"{source}: run.{key}")
    value = run[key]
    try:
        if isinstance(value, bool) and kind is not bool:
            raise ValueError
        if kind is int:
            f = float(value)
            if not math.isfinite(f) or f != int(f):
                raise ValueError
            return int(f)
        if kind is float:
            f = float(value)
            if not math.isfinite(f):
                raise ValueError
            return f
        if kind is bool and isinstance(value, bool) or kind is str and isinstance(value, str):
            return value
        raise ValueError
    except (TypeError, ValueError, OverflowError):
        shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
        raise InstanceError(f"{source}: run.{key}", f"expected {kind.__name__}, got {shown!r}") from None
