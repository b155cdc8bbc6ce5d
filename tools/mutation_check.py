"""Mutation check: break the objective on purpose and show that the property suite notices.

    python tools/mutation_check.py            # full property suite, every mutation (~4 min on 2 cores)
    python tools/mutation_check.py --quick    # a fast subset of the properties (~20 s)

Each mutation is applied by monkeypatching ``checker`` in a fresh subprocess, which
then runs pytest on the property tests (tests/test_properties_objective.py and
tests/test_properties_theorem.py) under the CI profile without shrinking (a
failing example only has to be found, not minimized).  The unmutated code runs
first and must pass; every mutation must make at least one test fail.  The
table says which tests caught each one.  Exit status: 0 when the clean run
passed and every mutation was caught, 1 otherwise (2 on a usage error).

Mutations:

* ``gradient-sign``: the sign of the B term of grad_u k = ||v|| (A v^ + B u^) flipped
  (``checker.kernel.grad_coefficients`` returns (A, -B));
* ``no-regularizer``: the weight-decay term dropped from L_lambda and from both
  gradients (``objective.evaluate`` returns the unregularized objective);
* ``wrong-kappa``: relu kappa with (pi - phi) replaced by phi, i.e.
  (sin phi + phi cos phi) / (2 pi) (``checker.kernel.kappa``);
* ``no-balance-term``: lambda W dropped from the W-gradient only, which breaks the
  balance law and leaves the loss unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["tests/test_properties_objective.py", "tests/test_properties_theorem.py"]
#: Fast properties for --quick (the CI test): identities, finite differences, quadrature, optimum, descent.
QUICK = ("test_euler_identity or test_balance_law_of_the_gradient or test_gradient_matches_central_differences "
         "or test_am_gm_and_rebalancing or test_single_teacher_optimum "
         "or test_loss_against_polar_quadrature or test_descent_lemma_with_certified_curvature")


# ----------------------------------------------------------------------------- mutations
def _gradient_sign() -> None:
    from checker import kernel

    original = kernel.grad_coefficients

    def mutated(phi, sin_phi, pi, activation):
        A, B = original(phi, sin_phi, pi, activation)
        return A, -B

    kernel.grad_coefficients = mutated


def _no_regularizer() -> None:
    from checker import objective

    original = objective.evaluate

    def mutated(*args, **kwargs):
        ev = original(*args, **kwargs)
        return dataclasses.replace(ev, reg_loss=ev.loss, grad_a=ev.loss_grad_a, grad_W=ev.loss_grad_W)

    objective.evaluate = mutated


def _wrong_kappa() -> None:
    from checker import kernel

    original = kernel.kappa

    def mutated(phi, sin_phi, cos_phi, pi, activation):
        if activation == "relu":
            return (sin_phi + phi * cos_phi) / (2 * pi)
        return original(phi, sin_phi, cos_phi, pi, activation)

    kernel.kappa = mutated


def _no_balance_term() -> None:
    from checker import objective

    original = objective.evaluate

    def mutated(*args, **kwargs):
        ev = original(*args, **kwargs)
        return dataclasses.replace(ev, grad_W=ev.loss_grad_W)

    objective.evaluate = mutated


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    apply: Callable[[], None]


MUTATIONS: dict[str, Mutation] = {m.name: m for m in (
    Mutation("none", "unmutated code (must pass)", lambda: None),
    Mutation("gradient-sign", "sign of the B (sin phi) term of grad_u k flipped", _gradient_sign),
    Mutation("no-regularizer", "weight decay dropped from L_lambda and both gradients", _no_regularizer),
    Mutation("wrong-kappa", "relu kappa with (pi - phi) replaced by phi", _wrong_kappa),
    Mutation("no-balance-term", "lambda W dropped from the W-gradient only", _no_balance_term),
)}


# ----------------------------------------------------------------------------- child process
def _child(name: str, pytest_args: list[str]) -> int:
    """Apply one mutation, then run pytest in this process (called in a subprocess)."""
    from hypothesis import Phase, settings

    import tests.conftest  # noqa: F401  registers the dev / ci / thorough profiles

    base = os.environ.get("MUTATION_BASE_PROFILE", "ci")
    settings.register_profile("mutation", settings.get_profile(base),
                              phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target])
    # tests.conftest is imported once (pytest reuses the module), so load the profile here too
    os.environ["HYPOTHESIS_PROFILE"] = "mutation"
    settings.load_profile("mutation")
    MUTATIONS[name].apply()
    import pytest

    return pytest.main(pytest_args)


# ----------------------------------------------------------------------------- driver
@dataclass
class Outcome:
    mutation: Mutation
    exit_code: int
    failed: list[str]
    seconds: float

    @property
    def verdict(self) -> str:
        if self.mutation.name == "none":
            return "passed" if self.exit_code == 0 else "FAILED"
        if self.exit_code == 1 and self.failed:
            return "caught"
        if self.exit_code == 0:
            return "SURVIVED"
        return f"error ({self.exit_code})"

    @property
    def ok(self) -> bool:
        return self.verdict in ("passed", "caught")


def _failed_tests(junit: Path) -> list[str]:
    if not junit.exists():
        return []
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            out.append(case.get("name", "?"))
    return out


def run_one(mutation: Mutation, *, quick: bool, first_failure: bool, base_profile: str,
            timeout: float) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        args = [*SUITE, "-q", "-p", "no:cacheprovider", "-p", "no:warnings", f"--junitxml={junit}"]
        if quick:
            args += ["-k", QUICK]
        if first_failure and mutation.name != "none":
            args.append("-x")
        env = {k: v for k, v in os.environ.items() if k != "WORST_RATIOS_FILE"}
        env["MUTATION_BASE_PROFILE"] = base_profile
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", mutation.name,
                                   "--", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -1
        return Outcome(mutation, code, _failed_tests(junit), time.perf_counter() - start)


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("mutation", "what it breaks", "result", "time", "failing tests")]
    for o in outcomes:
        names = ", ".join(n.removeprefix("test_") for n in o.failed[:4])
        if len(o.failed) > 4:
            names += f", ... ({len(o.failed)} in all)"
        rows.append((o.mutation.name, o.mutation.description, o.verdict, f"{o.seconds:.0f} s", names or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 13)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        name, rest = argv[1], argv[2:]
        if rest[:1] == ["--"]:
            rest = rest[1:]
        return _child(name, rest)
    parser = argparse.ArgumentParser(prog="python tools/mutation_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run a fast subset of the properties")
    parser.add_argument("--first-failure", action="store_true",
                        help="stop each mutated run at its first failing test (faster; lists one catcher)")
    parser.add_argument("--profile", default="ci", help="Hypothesis profile the runs are based on (default ci)")
    parser.add_argument("--only", nargs="+", choices=sorted(MUTATIONS), help="run only these mutations")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per run (default 900)")
    args = parser.parse_args(argv)
    names = ["none"] + [n for n in MUTATIONS if n != "none" and (args.only is None or n in args.only)]
    outcomes = []
    for name in names:
        o = run_one(MUTATIONS[name], quick=args.quick, first_failure=args.first_failure,
                    base_profile=args.profile, timeout=args.timeout)
        outcomes.append(o)
        print(f"{name}: {o.verdict} ({o.seconds:.0f} s)", file=sys.stderr, flush=True)
    print(table(outcomes))
    for o in outcomes:
        if o.failed:
            print(f"\n{o.mutation.name} failed {len(o.failed)} tests: {', '.join(o.failed)}")
    print()
    ok = all(o.ok for o in outcomes)
    print("every mutation was caught and the unmutated code passed" if ok else
          "MUTATION CHECK FAILED: see the table")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
