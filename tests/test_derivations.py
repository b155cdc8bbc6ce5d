"""Tests of the SymPy derivations (derivations/) and of ``python -m derivations``.

Every check here is exact (SymPy identities, exact integrals, sign arguments):
there is no floating-point tolerance anywhere in this file.  The references are
the derivations' own independent routes (Gaussian integrals, Hermite moments,
differentiation of the closed form, dual certificates); the negative tests feed
a deliberately wrong formula through the optional formula parameter and
require verified=False, so a derivation that always says "verified" fails here.

The whole registry is run once per session, through the real command line
(a subprocess with --json), and the parametrized tests read that run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sympy as sp

from checker.core import kernel as ck
from derivations import all_derivations
from derivations.__main__ import main
from derivations.gradients import arb_objective_hessian, euler_identity, gradient_closed_form, hessian_closed_form
from derivations.hermite import hermite_series
from derivations.kernel import kappa_abs_from_relu, kappa_at_zero_angle, kappa_gaussian_integral
from derivations.optimum import kappa_monotone, single_teacher_optimum
from derivations.result import METHODS, Result
from tests.outputs import bad_output_cases, device_intact, tree_state

REPO = Path(__file__).resolve().parent.parent
REGISTERED = [fn.__name__ for fn in all_derivations()]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of ``python -m derivations --json FILE``: exit status, stdout lines, results by name."""
    out = tmp_path_factory.mktemp("derivations") / "results.json"
    proc = subprocess.run([sys.executable, "-m", "derivations", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    results = [Result(**d) for d in json.loads(out.read_text())] if out.exists() else []
    return {"returncode": proc.returncode, "stdout": proc.stdout.splitlines(), "stderr": proc.stderr,
            "results": results, "by_name": {r.name: r for r in results}}


@pytest.mark.parametrize("name", REGISTERED)
def test_derivation_verified(cli_run: dict[str, Any], name: str) -> None:
    result = cli_run["by_name"].get(name)
    assert result is not None, f"{name} missing from the run (stderr: {cli_run['stderr'][-2000:]})"
    assert result.method in METHODS
    assert result.verified, f"{name} failed: {result.detail}"


def test_registry_names_unique_and_match_results(cli_run: dict[str, Any]) -> None:
    assert len(set(REGISTERED)) == len(REGISTERED), "two derivations share a name"
    assert [r.name for r in cli_run["results"]] == REGISTERED


def test_cli_exits_0_and_prints_one_line_per_result(cli_run: dict[str, Any]) -> None:
    results, lines = cli_run["results"], cli_run["stdout"]
    assert cli_run["returncode"] == 0, cli_run["stderr"][-2000:]
    assert lines == [r.line() for r in results] + [f"{len(results)} verified, 0 failed"]


def test_cli_reports_failure_with_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = Result("good", "kernel", "holds", "symbolic", True, "")
    bad = Result("bad", "kernel", "does not hold", "symbolic", False, "difference = x")
    out = tmp_path / "r.json"
    assert main(["--json", str(out)], runner=lambda: [good, bad]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [good.line(), bad.line(), "1 verified, 1 failed"]
    assert "difference = x" in captured.err
    assert json.loads(out.read_text()) == [good.to_dict(), bad.to_dict()]


@pytest.mark.parametrize("case", ["dev-null", "symlink-to-device", "directory-at-target", "proc",
                                  "under-a-regular-file", "missing-folder"])
def test_cli_bad_json_destination_exits_2_before_any_derivation(
        case: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = bad_output_cases(tmp_path)
    (tmp_path / "plain.txt").write_text("keep me")
    cases["under-a-regular-file"] = str(tmp_path / "plain.txt" / "r.json")
    before = tree_state(tmp_path)
    calls: list[int] = []

    def runner() -> list[Result]:  # must never run: the path is refused first
        calls.append(1)
        return [Result("good", "kernel", "holds", "symbolic", True, "")]

    assert main(["--json", cases[case]], runner=runner) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--json" in err and "Traceback" not in err
    assert calls == []
    assert tree_state(tmp_path) == before and device_intact()


def test_cli_json_writes_through_a_symlink_and_creates_missing_folders(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ok = Result("good", "kernel", "holds", "symbolic", True, "")
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert main(["--json", str(link)], runner=lambda: [ok]) == 0
    assert link.is_symlink() and json.loads(real.read_text()) == [ok.to_dict()]
    (tmp_path / "new").mkdir()  # an output file never creates its folder (tests/test_io.py)
    assert main(["--json", str(tmp_path / "new" / "r.json")], runner=lambda: [ok]) == 0
    assert json.loads((tmp_path / "new" / "r.json").read_text()) == [ok.to_dict()]


# ---- negative tests: a wrong formula must give verified=False ---------------------------------

def _kappa_without_sin(phi: Any, sin_phi: Any, cos_phi: Any, pi: Any, activation: str) -> Any:
    """A plausible slip: the sin(phi) term dropped (right at phi = pi, wrong elsewhere)."""
    return ck.kappa(phi, 0 * sin_phi, cos_phi, pi, activation)


def _kappa_perturbed(phi: Any, sin_phi: Any, cos_phi: Any, pi: Any, activation: str) -> Any:
    """Right at phi = 0, pi/2 and pi; wrong in between by sin^3 cos / 10."""
    return ck.kappa(phi, sin_phi, cos_phi, pi, activation) + sin_phi**3 * cos_phi / 10


def _kappa_raises(*args: Any) -> Any:
    raise ZeroDivisionError("formula under test cannot be evaluated")


@pytest.mark.parametrize("activation", ["relu", "abs"])
@pytest.mark.parametrize("wrong", [_kappa_without_sin, _kappa_perturbed])
def test_wrong_kappa_fails_gaussian_integral(activation: str, wrong: Any) -> None:
    result = kappa_gaussian_integral(activation, kappa_fn=wrong)
    assert not result.verified, result.detail


def test_wrong_kappa_fails_hermite_series() -> None:
    # sin^3 cos / 10 has a t^1 term in its expansion at t = 0, so the series differs at order 1.
    assert not hermite_series("relu", kappa_fn=_kappa_perturbed).verified


def test_wrong_kappa_at_zero_angle_and_abs_relation() -> None:
    doubled = lambda phi, s, c, pi, act: 2 * ck.kappa(phi, s, c, pi, act)  # noqa: E731
    assert not kappa_at_zero_angle("relu", kappa_fn=doubled).verified
    assert not kappa_abs_from_relu(kappa_fn=_kappa_perturbed).verified


def test_non_monotone_kappa_fails() -> None:
    # kappa(t) = 2 t^2 - 1 (cos 2 phi) is monotone on each half but negative at t = 0.
    assert not kappa_monotone("relu", kappa_fn=lambda phi, s, c, pi, act: 2 * c**2 - 1).verified


def test_exception_in_formula_becomes_failed_result() -> None:
    result = kappa_gaussian_integral("relu", kappa_fn=_kappa_raises)
    assert not result.verified
    assert "ZeroDivisionError" in result.detail


@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_wrong_gradient_coefficient_fails(activation: str) -> None:
    def b_doubled(phi: Any, sin_phi: Any, pi: Any, act: str) -> tuple[Any, Any]:
        a, b = ck.grad_coefficients(phi, sin_phi, pi, act)
        return a, 2 * b

    def a_off(phi: Any, sin_phi: Any, pi: Any, act: str) -> tuple[Any, Any]:
        a, b = ck.grad_coefficients(phi, sin_phi, pi, act)
        return a + phi / (4 * pi), b

    assert not gradient_closed_form(activation, grad_fn=b_doubled).verified
    assert not gradient_closed_form(activation, grad_fn=a_off).verified
    assert not euler_identity(activation, grad_fn=b_doubled).verified


def _hessian_without_dyad(w_hat: Any, v_hat: Any, nw: Any, nv: Any, phi: Any, s: Any, c: Any, act: str) -> Any:
    """A plausible slip: the e e^T term dropped, leaving (||v|| B/||w||) P (right only along w^)."""
    _, b = ck.grad_coefficients(phi, s, sp.pi, act)
    return nv * b / nw * (sp.eye(len(w_hat)) - w_hat * w_hat.T)


def _hessian_unnormalized_tangent(w_hat: Any, v_hat: Any, nw: Any, nv: Any, phi: Any, s: Any, c: Any,
                                  act: str) -> Any:
    """Another slip: P v^ (P v^)^T without the 1/sin^2 phi that makes e a unit vector."""
    _, b = ck.grad_coefficients(phi, s, sp.pi, act)
    p = v_hat - c * w_hat
    return nv * b / nw * (sp.eye(len(w_hat)) - w_hat * w_hat.T + p * p.T)


def _hessian_b_doubled(w_hat: Any, v_hat: Any, nw: Any, nv: Any, phi: Any, s: Any, c: Any, act: str) -> Any:
    return 2 * arb_objective_hessian(w_hat, v_hat, nw, nv, phi, s, c, act)


@pytest.mark.parametrize("activation", ["relu", "abs"])
@pytest.mark.parametrize("wrong", [_hessian_without_dyad, _hessian_unnormalized_tangent, _hessian_b_doubled])
def test_wrong_hessian_fails(activation: str, wrong: Any) -> None:
    result = hessian_closed_form(activation, hessian_fn=wrong)
    assert not result.verified, result.detail


def test_wrong_single_teacher_value_fails() -> None:
    # The abs value lambda|a*| - lambda^2/4 is not the relu one, and vice versa.
    relu_wrong = single_teacher_optimum("relu", claimed_value=lambda alpha, lam: lam * alpha - lam**2 / 4)
    assert not relu_wrong.verified, relu_wrong.detail
    abs_wrong = single_teacher_optimum("abs", claimed_value=lambda alpha, lam: lam * alpha - lam**2 / 2)
    assert not abs_wrong.verified, abs_wrong.detail
    mass_wrong = single_teacher_optimum("relu", claimed_mass=lambda a_star, s, lam: a_star - lam * s / 2)
    assert not mass_wrong.verified, mass_wrong.detail



def test_duality_derivations_prove_the_checkers_own_scale_and_dual_value() -> None:
    # The derivations call checker.rigorous.duality.dual_scale / dual_objective with SymPy
    # symbols: a planted wrong scale (lambda/U: p = 2 s r no longer feasible; the conservative
    # lambda/(4U); the former cap min(1, lambda/(2U)), feasible but not the best; the peak
    # without its clip at 0) or a wrong dual value (s instead of s^2 on ||r||^2) must make
    # them fail, and the real ones verify.
    from checker.rigorous import duality as cd
    from derivations.duality import optimal_dual_scale, scaled_dual_feasible, scaled_dual_value

    def scale(factor: int, *, capped: bool = False, clip: bool = True):
        def fn(lam, U, rt, loss, one=1, *, round_down=None, minimum=min, maximum=max):
            down = (lambda x: x) if round_down is None else round_down
            if lam == 0:
                return 0 * one
            peak = (maximum(0 * one, down(rt / loss)) if clip else down(rt / loss)) if loss > 0 else 0 * one
            if U == 0:
                return one if capped else peak
            q = down(lam / (factor * U))
            if capped:
                return maximum(0 * one, minimum(one, q))
            return maximum(0 * one, minimum(q, peak)) if clip else minimum(q, peak)
        return fn

    assert scaled_dual_feasible(cd.dual_scale).verified
    assert optimal_dual_scale(cd.dual_scale).verified
    assert scaled_dual_feasible(scale(2)).verified  # the same formula written out: verified
    assert optimal_dual_scale(scale(2)).verified
    assert not scaled_dual_feasible(scale(1)).verified
    assert not optimal_dual_scale(scale(4)).verified
    assert not optimal_dual_scale(scale(2, capped=True)).verified  # feasible, not optimal
    assert not optimal_dual_scale(scale(2, clip=False)).verified  # s < 0 when <r, f*> < 0
    assert scaled_dual_value(cd.dual_objective).verified
    assert not scaled_dual_value(lambda s, rt, loss: 2 * s * rt - s * loss).verified


def test_certificate_chain_premises_are_separate_results(cli_run: dict[str, Any]) -> None:
    # Each premise of the certificate inequality is its own verified Result in the report.
    premises = ("certificate_premise_optimum_below_teacher", "certificate_premise_pairing_with_teacher",
                "certificate_premise_cauchy_schwarz", "certificate_premise_eta_bounds",
                "certificate_premise_am_gm", "certificate_quadratic_step", "certificate_inequality_chain",
                "scaled_dual_feasible", "optimal_dual_scale", "scaled_dual_value")
    for name in premises:
        assert cli_run["by_name"][name].verified, name
    assert not _single_teacher_negative().verified


def _single_teacher_negative() -> Result:
    # A kappa that is not decreasing-with-decreasing-ratio (relu kappa with (pi - phi) -> phi)
    # must fail the single-teacher constants derivation.
    from derivations.certificate import single_teacher_constants

    return single_teacher_constants("relu", kappa_fn=lambda phi, s, c, pi, act: (s + phi * c) / (2 * pi))
