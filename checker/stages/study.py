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


def table_row(study: dict[str, Any]) -> dict[str, Any]:
    """One configuration's row of the report (docs/algorithm.md) from a study result file's content."""
    seeds = [r for t in study["teachers"] for r in t["seeds"]]
    s = study["summary"] if "summary" in study else study
    reasons: dict[str, int] = {}
    for r in seeds:
        key = r["t1_reason"].split(" ")[0] if r["t1_reason"] else "covered"
        reasons[key] = reasons.get(key, 0) + 1
    ratios = sorted(r["stage3"]["recovery"]["loss_over_lambda2"] for r in seeds
                    if r["stage3"].get("recovery") and r["stage3"]["recovery"]["loss_over_lambda2"] is not None
                    and r["recovered"])
    return {"spec": study["spec"], "width": study["options"]["width"],
            "variant": study["options"]["variant"] or "one-step",
            "teachers": len(study["teachers"]), "seeds": len(seeds), "recovered": s["recovered"],
            "interval": s["success_interval_95"], "t1_covered": s["t1_covered"],
            "t1_success": s["t1_successes"], "t1_reasons": reasons,
            "stage1_worse": s["stage1_worse_than_random"],
            "teachers_all_recovered": sum(1 for t in study["teachers"]
                                          if all(r["recovered"] for r in t["seeds"])),
            "median_loss_over_lambda2": ratios[len(ratios) // 2] if ratios else None}


def markdown_table(studies: list[dict[str, Any]]) -> str:
    """The report's table: one row per configuration."""
    head = ("| configuration | width | stage 1 | recovered (Wilson 95%) | teachers recovered on every seed | "
            "T1 covered the start (first unmet hypothesis) | T1-gated success | stage 1 worse than random | "
            "median L/lambda^2 of recovered seeds |\n|---|---|---|---|---|---|---|---|---|")
    rows = [head]
    for st in studies:
        r = table_row(st)
        lo, hi = r["interval"]
        why = ", ".join(f"{k} {v}" for k, v in sorted(r["t1_reasons"].items()))
        med = "-" if r["median_loss_over_lambda2"] is None else f"{r['median_loss_over_lambda2']:.3g}"
        rows.append(f"| `{r['spec']}` | {r['width']} | {r['variant']} | {r['recovered']}/{r['seeds']} "
                    f"[{lo:.2f}, {hi:.2f}] | {r['teachers_all_recovered']}/{r['teachers']} | "
                    f"{r['t1_covered']}/{r['seeds']} ({why}) | {r['t1_success']}/{r['seeds']} | "
                    f"{r['stage1_worse']}/{r['seeds']} | {med} |")
    return "\n".join(rows)
