"""Embedded instances (``checker/presets/*.json``) and the run file format.

A run file is either a bare instance (see ``checker.model``) or an object
``{"description": str, "instance": {...}, "run": {...}}`` whose ``run`` part
holds default options of ``python -m checker.theorem1`` (engine, dps, schedule,
steps, eta, gap_target, time_budget, radius, seed).  Presets use the second
form; so do the counterexample files the checker writes, which is why
``--instance COUNTEREXAMPLE.json`` reproduces a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .errors import CheckerError, InstanceError
from .model import Instance, parse_json_text, read_text_file

DEFAULT_PRESET = "default"

RUN_KEYS = {"engine", "dps", "schedule", "steps", "eta", "gap_target", "time_budget", "radius",
            "seed", "threshold", "force"}


@dataclass(frozen=True)
class RunFile:
    instance: Instance
    run: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""


def preset_names() -> list[str]:
    folder = resources.files("checker") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _parse(data: Any, source: str) -> RunFile:
    if isinstance(data, Mapping) and "instance" in data:
        extra = sorted(set(data) - {"instance", "run", "description"})
        if extra:
            raise InstanceError(f"{source}: {extra[0]}", "unknown key",
                                "a run file has keys instance, run, description")
        run = data.get("run", {}) or {}
        if not isinstance(run, Mapping):
            raise InstanceError(f"{source}: run", "expected an object")
        unknown = sorted(set(run) - RUN_KEYS)
        if unknown:
            raise InstanceError(f"{source}: run.{unknown[0]}", "unknown key",
                                f"expected keys: {', '.join(sorted(RUN_KEYS))}")
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
    """A run option from a run file, converted to ``kind`` (numbers may be strings)."""
    if key not in run or run[key] is None:
        return default
    value = run[key]
    try:
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            f = float(value)
            if f != int(f):
                raise ValueError
            return int(f)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise InstanceError(f"{source}: run.{key}", f"expected {kind.__name__}, got {value!r}") from None
    raise TypeError(kind)
