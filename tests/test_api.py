"""The library surface: ``examples/api.py`` runs end to end, ``import checker`` is lazy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_examples_api_runs_and_reads_the_report() -> None:
    proc = _run(["examples/api.py"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4, proc.stdout
    before = float(re.fullmatch(r"L = \S+, L_lambda = (\S+)", lines[0]).group(1))
    m = re.fullmatch(r"after 100 steps \(max-steps\): L_lambda = (\S+)", lines[1])
    assert m, lines[1]
    # gradient descent at this step size decreases L_lambda (C1 of T1, checked at every step there)
    assert float(m.group(1)) < before
    # 50 steps do not reach the gap target of this instance: the budget stops the run (exit 3 of the command)
    assert lines[2] == "T1 verdict: inconclusive"
    eps0, lam_max = re.fullmatch(r"eps_0 = (\S+), lambda_max = (\S+)", lines[3]).groups()
    # H2 holds on this instance: lambda = 0.005 <= lambda_max; eps_0 > 0 by the choice of lambda_max
    assert float(eps0) > 0 and float(lam_max) >= 0.005


def test_import_checker_is_lazy() -> None:
    # nothing below the root is imported until a name is used; then every exported name resolves
    code = ("import sys, checker; before = sorted(m for m in sys.modules if m.startswith('checker.')); "
            "missing = [n for n in checker.__all__ if getattr(checker, n, None) is None]; "
            "print(before, missing, 'run_gd' in dir(checker))")
    proc = _run(["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[] [] True"
