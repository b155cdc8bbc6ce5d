"""Smoke test of benchmarks/bench.py: it runs and writes valid JSON with the documented keys.

No timing is asserted (speed is measured by the benchmark itself, not by CI).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_bench_smoke_writes_the_documented_keys(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke", "--repeat", "1", "--json", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["version"] == 1 and data["smoke"] is True
    assert set(data["float64_over_floor"]) == {"medium", "large"}
    assert all(_number(v) for v in data["float64_over_floor"].values())
    for key in ("hp_speedup_vs_naive_mpmath_50dps", "hp_speedup_vs_naive_mpmath_100dps"):
        assert set(data[key]) == {"small", "medium"} and all(_number(v) for v in data[key].values())
    types = data["hp_number_types_50dps"]
    assert all(_number(types[op][k]) for op in ("mul", "sqrt", "atan2", "acos") for k in ("arb_us", "mpfr_us"))
    assert isinstance(data["mc_samples_for_1e-3"], int) and isinstance(data["mc_samples_for_1e-6"], int)
    assert data["mc_samples_for_1e-6"] > data["mc_samples_for_1e-3"] > 0
    for key in ("certified_optimum_seconds_1e-30", "certified_optimum_speedup_vs_hp_gd_1e-20",
                "hybrid_gd_speedup_to_1e-20"):
        assert key in data and data[key] is None  # filled by the integrator's benchmarks
    versions = data["machine"]["versions"]
    assert {"python", "numpy", "mpmath", "python-flint"} <= set(versions)
    for row in data["engines"].values():
        assert _number(row["float64_steps_per_s"]) and _number(row["float64_over_floor"])
    assert "mpmath50_steps_per_s" in data["engines"]["small"] and "mp50_steps_per_s" in data["engines"]["small"]


def test_bench_refuses_a_bad_flag(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke", "--repeat", "0"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke", "--json", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stdout == ""
