"""The property suite catches deliberate breakage of the objective (tools/mutation_check.py).

The quick form (a subset of the properties, ~15 s on 2 cores) runs in CI; the full
suite against every mutation takes a few minutes and is marked slow.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "mutation_check.py"
MUTATIONS = ("gradient-sign", "no-regularizer", "wrong-kappa", "no-balance-term")


def _run(*args: str, timeout: float) -> tuple[int, dict[str, str], str]:
    proc = subprocess.run([sys.executable, str(TOOL), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    verdicts = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\S+)\s{2,}.*?\s{2,}(passed|caught|SURVIVED|FAILED|error \(-?\d+\))\s{2,}", line)
        if m:
            verdicts[m.group(1)] = m.group(2)
    return proc.returncode, verdicts, proc.stdout + proc.stderr


def _check(code: int, verdicts: dict[str, str], output: str) -> None:
    assert verdicts.get("none") == "passed", output
    for name in MUTATIONS:
        assert verdicts.get(name) == "caught", output
    assert code == 0, output


def test_every_mutation_is_caught_by_the_quick_properties():
    _check(*_run("--quick", "--first-failure", timeout=600))


@pytest.mark.slow
def test_every_mutation_is_caught_by_the_full_property_suite():
    _check(*_run(timeout=3600))
