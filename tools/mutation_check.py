"""Mutation check: plant one bug at a time in a copy of the project and show that the tests notice.

    python tools/mutation_check.py              # every mutation, each until the first of its tests fails
    python tools/mutation_check.py --all-failures   # ... running all its tests (lists every catcher)
    python tools/mutation_check.py --quick      # one mutation per layer, no clean run (the CI test)
    python tools/mutation_check.py --list       # the mutations, their layers, anchors (found?) and tests
    python tools/mutation_check.py --only arb-rounding-swapped cert-bound-lambda-power

How it works: the tracked files (``git ls-files``, with the working tree's
content) are copied into a temporary folder once; for each mutation one exact
string of one source file is replaced (the anchor must occur exactly once, else
the tool reports ``anchor not found`` / ``anchor ambiguous``: a failure of the
tool, not of the tests, printed with the file and the anchor so that it can be
re-anchored after the code moved), ``python -m pytest`` runs the mutation's
named tests from the copy (so the copy's ``checker`` is imported: PYTHONPATH is
cleared, no byte code is written) under the CI Hypothesis profile without
shrinking (a failing example only has to be found), and the file is restored.
Source mutations reach what monkeypatching cannot: inline comparisons,
tolerances, rounding modes, constants.

A mutation is "caught" when at least one of its tests fails; "SURVIVED" when all
pass.  The full run first runs the union of all named tests on the unmutated
copy, which must pass; each mutated run stops at its first failing test unless
``--all-failures``.  ``--quick`` runs only the mutations marked quick (at least
one per layer) and skips the clean run (in CI the same tests run unmutated in
the suite itself).

Exit status: 0 every selected mutation caught (and the clean run passed);
1 a mutation survived, a run errored, or an anchor was not found; 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]

#: Appended to the copy's tests/conftest.py (which loads HYPOTHESIS_PROFILE=ci first): the CI
#: profile without the shrink phase, loaded last.
_PROFILE = '''

# --- added by tools/mutation_check.py in its temporary copy ---
from hypothesis import Phase as _Phase
settings.register_profile("mutation", settings.get_profile("ci"),
                          phases=[_Phase.explicit, _Phase.reuse, _Phase.generate, _Phase.target])
settings.load_profile("mutation")
'''

LAYERS = ("kernel", "objective", "engines", "gd", "duality", "sphere", "arb", "certificate", "theorem1")


@dataclass(frozen=True)
class Mutation:
    name: str
    layer: str
    path: str  # file relative to the project root
    old: str  # exact text, must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest node ids (file or file::test) expected to catch it
    description: str
    quick: bool = False


T_KERNEL = "tests/test_kernel.py"
T_OBJECTIVE = "tests/test_objective.py"
T_ENGINES = "tests/test_engines.py"
T_GD = "tests/test_gd.py"
T_DUALITY = "tests/test_duality.py"
T_SPHERE = "tests/test_sphere.py"
T_ARB = "tests/test_arb_objective.py"
T_CERT = "tests/test_certificate.py"
T_REFS = "tests/test_theorem1_references.py"
T_T1 = "tests/test_theorem1.py"

MUTATIONS: tuple[Mutation, ...] = (
    # ---------------------------------------------------------------- kernel
    Mutation("kernel-kappa-relu", "kernel", "checker/core/kernel.py",
             "return (sin_phi + (pi - phi) * cos_phi) / (2 * pi)",
             "return (sin_phi + phi * cos_phi) / (2 * pi)",
             (f"{T_KERNEL}::test_kappa_matches_t_form_at_80_digits",),
             "relu kappa with (pi - phi) replaced by phi", quick=True),
    Mutation("kernel-grad-sign", "kernel", "checker/core/kernel.py",
             "return (pi - phi) / (2 * pi), sin_phi / (2 * pi)",
             "return (pi - phi) / (2 * pi), -sin_phi / (2 * pi)",
             (f"{T_KERNEL}::test_grad_coefficients_match_derivative_of_reference_kernel",),
             "sign of the B (sin phi) term of the relu grad_u k flipped"),
    # ---------------------------------------------------------------- objective
    Mutation("objective-no-decay-in-W-gradient", "objective", "checker/core/objective.py",
             "ga, gW = lga + aw * lam_w, lgW + Ww * lam_w",
             "ga, gW = lga + aw * lam_w, lgW",
             (f"{T_OBJECTIVE}::test_mp_gradient_matches_central_differences_at_60_digits",),
             "lambda W dropped from the W-gradient of L_lambda", quick=True),
    Mutation("objective-regularizer-factor", "objective", "checker/core/objective.py",
             "return ((a * a).sum() + (W * W).sum()) / 2",
             "return ((a * a).sum() + (W * W).sum())",
             (f"{T_OBJECTIVE}::test_mp50_matches_reference_generic", f"{T_OBJECTIVE}::test_exact_values"),
             "weight decay lambda (||a||^2 + ||W||^2) instead of lambda/2 (...)"),
    # ---------------------------------------------------------------- engines
    Mutation("engines-mp-guard-digits", "engines", "checker/core/engines.py",
             "self.work_dps = dps + GUARD_DIGITS",
             "self.work_dps = 16",
             (f"{T_OBJECTIVE}::test_mp50_matches_reference_generic", f"{T_ENGINES}"),
             "mp engine computing at 16 digits whatever dps was asked", quick=True),
    Mutation("engines-float64-to-str", "engines", "checker/core/engines.py",
             "return repr(float(x))",
             'return f"{float(x):.12g}"',
             (f"{T_ENGINES}::test_to_str_carries_the_engines_precision",),
             "float64 results printed with 12 digits (no longer the exact binary number)"),
    # ---------------------------------------------------------------- gradient descent
    Mutation("gd-step-drops-decay", "gd", "checker/dynamics/gd.py",
             "a2, W2 = step_update(train, s.a, s.W, ev.grad_a, ev.grad_W, eta_it)",
             "a2, W2 = step_update(train, s.a, s.W, ev.loss_grad_a, ev.grad_W, eta_it)",
             (f"{T_GD}::test_balance_identity_residual_is_at_rounding_level",
              f"{T_GD}::test_fixed_schedule_stops_at_the_first_gap_below_target"),
             "the a-step uses the gradient of L instead of L_lambda", quick=True),
    Mutation("gd-schedule-switch", "gd", "checker/dynamics/gd.py",
             "gap <= schedule.switch_rel_gap * _to_float(lam) ** 2",
             "gap <= schedule.switch_rel_gap * _to_float(lam)",
             (f"{T_GD}::test_geometric_schedule_follows_its_documented_rule",),
             "the schedule switches lambda at gap <= c lambda instead of c lambda^2"),
    Mutation("gd-stop-rule", "gd", "checker/dynamics/gd.py",
             "gap is not None and gap <= stop.gap_target:",
             "gap is not None and gap <= 10 * stop.gap_target:",
             (f"{T_GD}::test_fixed_schedule_stops_at_the_first_gap_below_target",),
             "the run stops at 10x the gap target"),
    # ---------------------------------------------------------------- duality
    Mutation("duality-scale-factor", "duality", "checker/rigorous/duality.py",
             "return maximum(zero, minimum(down(lam / (2 * U)), peak))",
             "return maximum(zero, minimum(down(lam / U), peak))",
             (f"{T_DUALITY}::test_dual_scale_and_value_against_exact_rationals",
              f"{T_DUALITY}::test_rigorous_bound_dominates_true_gap_off_optimum"),
             "dual scale s = min(lambda/U, peak): p = 2 s r is not dual feasible", quick=True),
    Mutation("duality-scale-capped", "duality", "checker/rigorous/duality.py",
             "return maximum(zero, minimum(down(lam / (2 * U)), peak))",
             "return maximum(zero, minimum(down(lam / (2 * U)), minimum(one, peak)))",
             (f"{T_DUALITY}::test_gap_bound_equals_the_true_gap_near_the_optimal_mass",),
             "dual scale capped at 1 (feasible, not the best: a first-order gap bound above the optimal mass)"),
    Mutation("duality-sup-lower-end", "duality", "checker/rigorous/duality.py",
             "U_q = Fraction(cert.upper)",
             "U_q = Fraction(cert.lower)",
             (f"{T_DUALITY}::test_dual_scale_and_value_against_exact_rationals",),
             "the dual scale uses the lower end of the certified sup enclosure"),
    Mutation("duality-scale-rounding", "duality", "checker/rigorous/duality.py",
             "enc.loss, Fraction(1), round_down=lower_fraction)",
             "enc.loss, Fraction(1), round_down=upper_fraction)",
             (f"{T_DUALITY}::test_dual_scale_and_value_against_exact_rationals",),
             "lambda/(2U) rounded up (upper end of its ball) instead of down"),
    # ---------------------------------------------------------------- sphere branch and bound
    Mutation("sphere-box-width", "sphere", "checker/rigorous/sphere.py",
             "arb((next(free), -level), (1, -level))",
             "arb((next(free), -level), (1, -level - 3))",
             (f"{T_SPHERE}::test_pruning_keeps_every_box_that_could_hold_the_maximum",
              f"{T_SPHERE}::test_single_kernel_max_is_c_kappa0",
              f"{T_SPHERE}::test_enclosure_contains_dense_sample_maximum"),
             "boxes an eighth of their width: the enclosures no longer cover the sphere", quick=True),
    Mutation("sphere-pruning", "sphere", "checker/rigorous/sphere.py",
             "if up is None or (self.best is not None and up <= self.best):",
             "if up is None or (self.best is not None and up <= self.best + self.tol):",
             (f"{T_SPHERE}::test_pruning_keeps_every_box_that_could_hold_the_maximum",),
             "children whose bound is within tol above the best value are dropped"),
    # ---------------------------------------------------------------- Arb conversions and rounding
    Mutation("arb-rounding-swapped", "arb", "checker/rigorous/arb_objective.py",
             "rounding=decimal.ROUND_CEILING if up else decimal.ROUND_FLOOR",
             "rounding=decimal.ROUND_FLOOR if up else decimal.ROUND_CEILING",
             (f"{T_ARB}::test_decimal_string_rounds_outward_by_at_most_one_unit",),
             "decimal strings of upper ends rounded down and of lower ends up", quick=True),
    Mutation("arb-lower-end", "arb", "checker/rigorous/arb_objective.py",
             "return _exact_fraction(x.mid()) - _exact_fraction(x.rad())",
             "return _exact_fraction(x.mid())",
             (f"{T_ARB}::test_ball_ends_are_exact_and_outermost",),
             "the lower end of a ball read as its mid-point"),
    Mutation("arb-digits", "arb", "checker/rigorous/arb_objective.py",
             "return max(20, math.ceil(prec * math.log10(2)) + 2)",
             "return max(20, math.ceil(prec * math.log10(2)) - 2)",
             (f"{T_ARB}::test_digits_for_carry_the_precision",),
             "too few decimal digits to carry a prec-bit enclosure"),
    # ---------------------------------------------------------------- certificate bounds
    Mutation("cert-bound-lambda-power", "certificate", "checker/geometry/certificate.py",
             "return (zeta + lam**2 * p_norm**2 / 4) / (lam * rho)",
             "return (zeta + lam * p_norm**2 / 4) / (lam * rho)",
             (f"{T_CERT}::test_c3_c4_bounds_match_an_independent_formula",
              f"{T_CERT}::test_certificate_terms_bounds_and_flags_against_independent_geometry"),
             "C3/C4 bound with lambda instead of lambda^2 (looser: C3/C4 hold more easily)", quick=True),
    Mutation("cert-near-region", "certificate", "checker/geometry/certificate.py",
             'region = "near" if th <= cert.radius else "far"',
             'region = "near" if th <= 2 * cert.radius else "far"',
             (f"{T_CERT}::test_certificate_terms_bounds_and_flags_against_independent_geometry",),
             "neighbourhoods of twice the radius (far mass under-counted)"),
    # ---------------------------------------------------------------- verdict logic of theorem1
    Mutation("theorem1-c3-direction", "theorem1", "checker/theorem/check.py",
             "w3 <= 1, f\"{w3:.4g}\"",
             "w3 >= 1, f\"{w3:.4g}\"",
             (f"{T_T1}::test_budget_stop_above_the_target_is_inconclusive_not_convergence",
              f"{T_REFS}::test_c1_c2_c3_c4_flags_match_independent_bounds"),
             "C3 holds when the worst ratio is >= 1 (comparison reversed)", quick=True),
    Mutation("theorem1-c1-tolerance", "theorem1", "checker/theorem/check.py",
             "tol = 16 * result.rounding_scale",
             "tol = 16e9 * result.rounding_scale",
             (f"{T_REFS}::test_c1_c2_c3_c4_flags_match_independent_bounds",),
             "C1 tolerates increases of 16e9 ulps instead of 16"),
    Mutation("theorem1-lambda-max", "theorem1", "checker/theorem/check.py",
             "return min(a_min / 2, cert.rho_far * a_min / p2)",
             "return min(a_min / 2, cert.rho * a_min / p2)",
             (f"{T_REFS}::test_thresholds_and_hypothesis_flags_match_independent_formulas",),
             "lambda_max with rho instead of rho'"),
    Mutation("theorem1-eps0", "theorem1", "checker/theorem/check.py",
             "return lam * cert.rho_far * a_min / 2 - lam ** 2 * cert.p_norm ** 2 / 4",
             "return lam * cert.rho_far * a_min / 2 - lam * cert.p_norm ** 2 / 4",
             (f"{T_REFS}::test_thresholds_and_hypothesis_flags_match_independent_formulas",),
             "threshold eps_0 with lambda instead of lambda^2"),
)

NONE = Mutation("none", "-", "", "", "", (), "unmutated code (must pass)")


# ----------------------------------------------------------------------------- the copy
def make_copy(dest: Path) -> None:
    """Copy the tracked files (working-tree content) into ``dest``; add the mutation profile."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if not name:
            continue
        src = ROOT / name
        if not src.is_file():  # deleted in the working tree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    conftest = dest / "tests" / "conftest.py"
    conftest.write_text(conftest.read_text() + _PROFILE)


def check_anchor(root: Path, m: Mutation) -> str:
    """'' when the anchor occurs exactly once in the file under ``root``, else what is wrong."""
    path = root / m.path
    if not path.is_file():
        return f"anchor not found: file {m.path} does not exist"
    n = path.read_text().count(m.old)
    if n == 0:
        return f"anchor not found in {m.path}: {m.old!r}"
    if n > 1:
        return f"anchor ambiguous in {m.path} ({n} matches): {m.old!r}"
    return ""


# ----------------------------------------------------------------------------- one run
@dataclass
class Outcome:
    mutation: Mutation
    verdict: str  # passed / FAILED (clean run); caught / SURVIVED / error (n) / anchor ...
    failed: list[str]
    seconds: float
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict in ("passed", "caught")


def _failed_tests(junit: Path) -> list[str]:
    if not junit.exists():
        return []
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            out.append(f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name', '?')}")
    return out


def _pytest(copy: Path, tests: Sequence[str], *, first_failure: bool, timeout: float) -> tuple[int, list[str], str]:
    junit = copy / ".mutation-junit.xml"
    junit.unlink(missing_ok=True)
    args = [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", "-p", "no:warnings",
            "-m", "not slow", f"--junitxml={junit}"]
    if first_failure:
        args.append("-x")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WORST_RATIOS_FILE")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["HYPOTHESIS_PROFILE"] = "ci"  # the copy's conftest then switches to "mutation"
    try:
        proc = subprocess.run(args, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        code, out = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired:
        code, out = -1, f"timed out after {timeout:.0f} s"
    return code, _failed_tests(junit), out


def run_clean(copy: Path, mutations: Sequence[Mutation], timeout: float) -> Outcome:
    tests = sorted({t for m in mutations for t in m.tests})
    start = time.perf_counter()
    code, failed, out = _pytest(copy, tests, first_failure=False, timeout=timeout)
    return Outcome(NONE, "passed" if code == 0 else "FAILED", failed, time.perf_counter() - start, out)


def run_mutation(copy: Path, m: Mutation, *, first_failure: bool, timeout: float) -> Outcome:
    problem = check_anchor(copy, m)
    if problem:
        return Outcome(m, "anchor", [], 0.0, problem)
    path = copy / m.path
    original = path.read_text()
    start = time.perf_counter()
    try:
        path.write_text(original.replace(m.old, m.new, 1))
        code, failed, out = _pytest(copy, m.tests, first_failure=first_failure, timeout=timeout)
    finally:
        path.write_text(original)
    if code == 1 and failed:
        verdict = "caught"
    elif code == 0:
        verdict = "SURVIVED"
    else:
        verdict = f"error ({code})"
    return Outcome(m, verdict, failed, time.perf_counter() - start, out)


# ----------------------------------------------------------------------------- report
def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("mutation", "layer", "result", "time", "caught by (failing tests)")]
    for o in outcomes:
        if o.verdict == "anchor":
            names = o.output
        else:
            names = ", ".join(o.failed[:3]) + (f", ... ({len(o.failed)} in all)" if len(o.failed) > 3 else "")
        rows.append((o.mutation.name, o.mutation.layer, o.verdict, f"{o.seconds:.0f} s", names or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 25)
    return "\n".join(lines)


def listing() -> tuple[str, bool]:
    """The mutations with the state of each anchor in the project; True when every anchor is found."""
    out = []
    found = True
    for m in MUTATIONS:
        problem = check_anchor(ROOT, m)
        found = found and not problem
        out.append(f"{m.name} [{m.layer}{', quick' if m.quick else ''}]: {m.description}\n"
                   f"    {m.path}: {m.old!r} -> {m.new!r}\n    anchor: {problem or 'found (once)'}\n"
                   f"    tests: {' '.join(m.tests)}")
    return "\n".join(out), found


def select(names: Sequence[str] | None, quick: bool) -> list[Mutation]:
    chosen = [m for m in MUTATIONS if (names is None or m.name in names) and (not quick or m.quick or names)]
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/mutation_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one mutation per layer, first failure only, no clean run (the CI test)")
    parser.add_argument("--all-failures", action="store_true",
                        help="run every named test of each mutation (lists every catcher; slower) instead of "
                             "stopping at the first failure")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per pytest run (default 900)")
    args = parser.parse_args(argv)
    if args.list:
        text, found = listing()
        print(text)
        return 0 if found else 1
    known = {m.name for m in MUTATIONS}
    if args.only:
        unknown = [n for n in args.only if n not in known]
        if unknown:
            parser.error(f"unknown mutation(s): {', '.join(unknown)} (see --list)")
    mutations = select(args.only, args.quick)
    first_failure = not args.all_failures
    total_start = time.perf_counter()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        copy = Path(tmp)
        make_copy(copy)
        anchors = [(m, check_anchor(copy, m)) for m in mutations]
        for m, problem in anchors:
            if problem:
                print(f"{m.name}: {problem}", file=sys.stderr, flush=True)
        if not args.quick:
            o = run_clean(copy, mutations, args.timeout)
            outcomes.append(o)
            print(f"none: {o.verdict} ({o.seconds:.0f} s)", file=sys.stderr, flush=True)
        for m in mutations:
            o = run_mutation(copy, m, first_failure=first_failure, timeout=args.timeout)
            outcomes.append(o)
            print(f"{m.name}: {o.verdict} ({o.seconds:.0f} s)", file=sys.stderr, flush=True)
    total = time.perf_counter() - total_start
    print(table(outcomes))
    for o in outcomes:
        if not o.ok and o.verdict != "anchor":
            tail = "\n".join(o.output.strip().splitlines()[-15:])
            print(f"\n{o.mutation.name}: {o.verdict}\n{tail}")
    layers = sorted({o.mutation.layer for o in outcomes if o.verdict == "caught"})
    missing = [x for x in LAYERS if x not in layers] if not args.only else []
    print(f"\n{sum(o.verdict == 'caught' for o in outcomes)} of {len(mutations)} mutations caught; layers covered: "
          f"{', '.join(layers)}" + (f"; layers without a caught mutation: {', '.join(missing)}" if missing else ""))
    print(f"total time {total:.0f} s")
    ok = all(o.ok for o in outcomes)
    print("every mutation was caught" + ("" if args.quick else " and the unmutated code passed") if ok
          else "MUTATION CHECK FAILED: see the table")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
