"""The test suite catches bugs planted in every layer (tools/mutation_check.py).

CI runs the quick mode: one source mutation per layer (kernel, objective,
engines, gradient descent, duality, sphere search, Arb rounding, certificate
bounds, theorem1's verdict), each against its named tests in a temporary copy
of the project, first failure only.  The full check (every mutation, all their
tests, after a clean run) is marked slow.  The anchors of every mutation are
checked here without running anything, so that code that moved under a
mutation is reported by name ("anchor not found") instead of as a survivor.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "mutation_check.py"


def _tool():
    spec = importlib.util.spec_from_file_location("mutation_check", TOOL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutation_check", mod)
    spec.loader.exec_module(mod)
    return mod


def _run(*args: str, timeout: float) -> tuple[int, dict[str, str], str]:
    proc = subprocess.run([sys.executable, str(TOOL), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    verdicts = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\S+)\s{2,}\S+\s{2,}(passed|caught|SURVIVED|FAILED|anchor|error \(-?\d+\))\s{2,}", line)
        if m:
            verdicts[m.group(1)] = m.group(2)
    return proc.returncode, verdicts, proc.stdout + proc.stderr


def test_mutations_are_anchored_and_name_existing_tests():
    mc = _tool()
    assert len(mc.MUTATIONS) >= 12
    assert len({m.name for m in mc.MUTATIONS}) == len(mc.MUTATIONS)
    assert {m.layer for m in mc.MUTATIONS} == set(mc.LAYERS)
    assert {m.layer for m in mc.MUTATIONS if m.quick} == set(mc.LAYERS)  # one quick mutation per layer
    for m in mc.MUTATIONS:
        assert mc.check_anchor(ROOT, m) == "", m.name
        assert m.old != m.new and m.tests, m.name
        for node in m.tests:
            path, _, name = node.partition("::")
            assert (ROOT / path).is_file(), f"{m.name}: {path}"
            if name:
                assert f"def {name}(" in (ROOT / path).read_text(), f"{m.name}: {node}"


def test_a_missing_anchor_is_reported_as_a_failure_of_the_tool(tmp_path):
    mc = _tool()
    (tmp_path / "checker" / "core").mkdir(parents=True)
    (tmp_path / "checker" / "core" / "kernel.py").write_text("nothing to see\nx = 1\nx = 1\n")
    m = mc.Mutation("probe", "kernel", "checker/core/kernel.py", "absent text", "y", ("tests/x.py",), "probe")
    assert mc.check_anchor(tmp_path, m).startswith("anchor not found in checker/core/kernel.py")
    twice = mc.Mutation("probe", "kernel", "checker/core/kernel.py", "x = 1", "y", ("tests/x.py",), "probe")
    assert mc.check_anchor(tmp_path, twice).startswith("anchor ambiguous")
    outcome = mc.run_mutation(tmp_path, m, first_failure=True, timeout=10)
    assert outcome.verdict == "anchor" and not outcome.ok


def test_quick_mutation_check_catches_one_mutation_per_layer():
    mc = _tool()
    code, verdicts, output = _run("--quick", timeout=900)
    quick = [m.name for m in mc.MUTATIONS if m.quick]
    for name in quick:
        assert verdicts.get(name) == "caught", output
    assert code == 0, output


@pytest.mark.slow
def test_every_mutation_is_caught_by_its_tests():
    mc = _tool()
    code, verdicts, output = _run(timeout=3600)
    assert verdicts.get("none") == "passed", output
    for m in mc.MUTATIONS:
        assert verdicts.get(m.name) == "caught", output
    assert code == 0, output
