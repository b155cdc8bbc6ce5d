"""The algorithm over several teachers (random ones from ``teachers.py``) and seeds.

One configuration is (m*, d, separation, width): ``run_study`` runs every seed of
every teacher and returns, per teacher and over all of them, the success rate
(recoveries, ``stage3.measure_recovery``) with its Wilson 95% interval, the old
T1-gated rate, how often T1 covered the start, and which stage fell short.
"""

from __future__ import annotations

from typing import Any, Callable

from checker.core.model import Instance
from .algorithm import AlgorithmOptions, run_seed, summarize


def compact(result: dict[str, Any]) -> dict[str, Any]:
    """A seed's result without the bulky parts (directions, histories, T1's checks) for study files."""
    out = {k: v for k, v in result.items() if k not in ("directions",)}
    out["stage1"] = {k: v for k, v in result["stage1"].items() if k not in ("angle_histogram", "losses")}
    out["stage3"] = {k: v for k, v in result["stage3"].items() if k != "history"}
    out["t1"] = {k: v for k, v in result["t1"].items() if k not in ("hypotheses", "conclusions")}
    return out


def shortfalls(results: list[dict[str, Any]]) -> dict[str, int]:
    """Seeds per shortfall: stage 1 worse than random features; stage 3 not recovered."""
    return {"stage 1 worse than random features": sum(1 for r in results if r["stage1"]["worse_than_random"]),
            "stage 3 not recovered": sum(1 for r in results if not r["recovered"])}


def study_summary(per_teacher: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary over every seed of every teacher, with the per-shortfall counts."""
    everything = [r for t in per_teacher for r in t["seeds"]]
    return {**summarize(everything), "teachers_run": len(per_teacher), "fell_short": shortfalls(everything)}


def run_study(teachers: list[Instance], opts: AlgorithmOptions, seeds: list[int], *,
              say: Callable[[str], None] = lambda s: None,
              on_seed: Callable[[Instance, dict[str, Any]], None] | None = None,
              out: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every seed of every teacher; ``out`` (filled as it goes) keeps the partial result on Ctrl-C."""
    per_teacher = out if out is not None else []
    for teacher in teachers:
        entry = {"name": teacher.name, "teacher": {"activation": teacher.activation,
                                                   "a": list(teacher.teacher_a),
                                                   "W": [list(r) for r in teacher.teacher_W]},
                 "separation": teacher.separation, "seeds": []}
        per_teacher.append(entry)
        for seed in seeds:
            r = compact(run_seed(teacher, opts, seed, say=say).to_dict())
            if r["stage3"]["verdict"] == "interrupted":
                raise KeyboardInterrupt
            entry["seeds"].append(r)
            entry["summary"] = summarize(entry["seeds"])
            if on_seed is not None:
                on_seed(teacher, r)
    return {"teachers": per_teacher, "summary": study_summary(per_teacher)}
