"""The Hessian/certificate benchmark runs in its smoke mode and merges its documented keys (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_hessian_smoke_writes_its_keys(tmp_path):
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"other_key": 1}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_hessian.py"), "--smoke",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["other_key"] == 1, "merging keeps the other keys"
    for key in ("hessian_float64_ms_m10_d10", "hessian_speedup_vs_fd_m10_d10", "critical_ball_hessian_seconds_k7",
                "critical_certify_seconds_k7"):
        assert isinstance(data[key], float) and data[key] > 0
    assert data["hessian_benchmark"]["smoke"] is True
