"""The batch benchmark runs in its smoke mode and writes the documented keys (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_batch_smoke_writes_its_keys(tmp_path):
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"other_key": 1}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_batch.py"), "--smoke",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["other_key"] == 1, "merging keeps the other benchmarks' keys"
    speed = data["batched_starts_speedup"]
    assert isinstance(speed["value"], float) and speed["value"] > 0 and speed["smoke"] is True
    assert speed["raw"]["identical_to_run_gd"] is True  # the batch ended where run_gd did, start by start
    per = data["landscape_gd_per_start_seconds"]
    assert all(isinstance(per[k], float) and per[k] > 0 for k in ("batched", "project_single", "naive_numpy"))
    table = data["landscape_table_500_starts_seconds_extrapolated"]
    assert "EXTRAPOLATION" in table["note"] and table["total_seconds_one_core"] > 0
