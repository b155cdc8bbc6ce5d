"""The optimum/hybrid benchmark runs in its smoke mode and writes the documented keys (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_optimum_smoke_writes_its_keys(tmp_path):
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"other_key": 1}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_optimum.py"), "--smoke",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["other_key"] == 1, "merging keeps the keys the engine benchmark wrote"
    for key in ("certified_optimum_seconds_1e-30", "certified_optimum_speedup_vs_hp_gd_1e-20",
                "hybrid_gd_speedup_to_1e-20"):
        assert isinstance(data[key], float) and data[key] > 0
    assert data["optimum_benchmark"]["smoke"] is True
    assert data["hp_gd_certified_gap_rigorous"] is True


def test_bench_optimum_generic_smoke_with_a_baseline_writes_its_keys(tmp_path):
    # The --baseline path runs the case again in a subprocess with the checker package of the given
    # folder (here this checkout itself) and files both rows under their own key; no timing asserted.
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"other_key": 1}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_optimum_generic.py"), "--smoke",
                           "--selections", "kkt", "--baseline", str(ROOT), "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["other_key"] == 1
    row = data["optimum_generic_vs_baseline"]["cases"]["single-teacher"]
    assert set(row) == {"kkt", "baseline"}
    for r in row.values():
        assert r["rigorous"] is True and float(r["width"]) < 1e-40
