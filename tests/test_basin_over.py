"""The over-parameterized route of the certified basin (checker.basin.over) and its verifier.

References, each independent of the code under test:

* the arc Gamma of split optima: at the split of the exact-width optimum the gradient is zero
  and the Hessian has the arc's tangent as a null vector (float64 exact objective and Hessian of
  ``checker.core``, not the Arb cover);
* inertia: eigenvalues of random symmetric matrices (numpy);
* the stored certificate (tests/data/basin-over-width-d3.json, written by
  ``python -m checker.prove over-width-d3``): edited copies must fail to verify at the edited claim;
* the claim, empirically: gradient descent in the mp engine at 40 digits (``checker.core.objective``,
  a code path that shares nothing with the proof but the objective) from random starts satisfying
  the hypothesis of statement (5), at the certified step: every step decreases zeta_Gamma at least by
  the certified factor, the iterates stay in B(center, R), the path is shorter than K sqrt(zeta_0),
  and <grad, D> >= c_D zeta_Gamma with D = theta minus its nearest point of Gamma, computed here in
  closed form (the arc is a quarter circle in the plane of the split neuron's two copies).
"""

from __future__ import annotations

import copy
import json
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest

from checker.basin import cover as cv
from checker.basin.over import NotApplicable, check_over_instance, inertia_below, split_sin
from checker.basin.verify import verify_certificate
from checker.commands.presets import load_preset

DATA = Path(__file__).parent / "data" / "basin-over-width-d3.json"


@pytest.fixture(scope="module")
def cert() -> dict:
    return json.loads(DATA.read_text())


# ---------------------------------------------------------------- exact pieces
def test_split_sin_is_exact() -> None:
    assert split_sin(Fraction(3, 5)) == Fraction(4, 5)
    assert split_sin(Fraction(7, 25)) == Fraction(24, 25)
    assert split_sin(Fraction(1)) == 0
    assert split_sin(Fraction(1, 2)) is None  # sqrt(3)/2 is irrational


@pytest.mark.parametrize("seed", range(6))
def test_inertia_counts_eigenvalues_below(seed: int) -> None:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(7, 7))
    M = (A + A.T) / 2
    ev = np.linalg.eigvalsh(M)
    for t in (ev[0] - 0.1, (ev[2] + ev[3]) / 2, ev[-1] + 0.1):
        assert inertia_below(M, Fraction(float(t))) == int((ev < t).sum())


def test_check_over_instance_refuses_outside_the_setting() -> None:
    inst = load_preset("over-width-d3").instance
    check_over_instance(inst)
    with pytest.raises(NotApplicable, match="m = m\\* \\+ 1"):
        check_over_instance(load_preset("default").instance)  # m = m* + 2
    with pytest.raises(NotApplicable, match="lambda > 0"):
        check_over_instance(inst.replace(lam="0"))


def test_split_of_the_optimum_is_stationary_with_a_null_tangent(cert: dict) -> None:
    """Float64 objective and Hessian at the split centre: gradient ~ 0, the arc's tangent null, lambda_2 > 0."""
    from checker.core import hessian as H
    from checker.core import objective
    from checker.core.engines import Float64Engine
    from checker.core.model import Instance

    inst = Instance.from_dict(cert["instance"])
    a = np.array([float(x) for x in cert["center"]["a"]])
    W = np.array([[float(x) for x in r] for r in cert["center"]["W"]])
    a_s = np.array([float(x) for x in inst.teacher_a])
    W_s = np.array([[float(x) for x in r] for r in inst.teacher_W])
    E = Float64Engine()
    ev = objective.evaluate(E, "relu", a, W, a_s, W_s, float(inst.lam))
    # float64 rounding of a 50-digit point
    assert np.abs(np.concatenate([ev.grad_a, ev.grad_W.ravel()])).max() < 1e-12
    Hm = np.array(H.loss_hessian(E, "relu", a, W, a_s, W_s, float(inst.lam), "both"), float)
    k, m, d = cert["arc"]["neuron"], inst.m, inst.d
    c, s = float(cert["arc"]["cos"]), float(cert["arc"]["sin"])
    # gamma(phi) = (cos phi x, sin phi x) in the two copies; gamma'(phi_c) = (-sin x, cos x) / (its scale)
    x_a, x_w = a[k] / c, W[k] / c
    tau = np.zeros(m * (d + 1))
    tau[k], tau[m - 1] = -s * x_a, c * x_a
    tau[m + k * d: m + (k + 1) * d] = -s * x_w
    tau[m + (m - 1) * d:] = c * x_w
    tau /= np.linalg.norm(tau)
    assert np.linalg.norm(Hm @ tau) < 1e-12
    spec = np.linalg.eigvalsh(Hm)
    assert abs(spec[0]) < 1e-12 and spec[1] > 0.01
    assert abs(spec[1] - float(cert["lambda2_center"])) < 1e-9


# ---------------------------------------------------------------- the verifier
def test_stored_certificate_verifies(cert: dict) -> None:
    assert cert["route"] == "over-parameterized-split-arc" and cert["proved"] is True
    res = verify_certificate(cert, check_l_star=False)
    assert res.verified, (res.failed_claim, res.detail)
    assert res.boxes == len(cert["cover"]["boxes"]) > 0


def test_stored_certificate_verifies_with_l_star(cert: dict) -> None:
    res = verify_certificate(cert, check_l_star=True)
    assert res.verified, (res.failed_claim, res.detail)
    assert any("duality bound" in c for c in res.checked)


def _scaled(c: dict, key: str, factor: Fraction) -> dict:
    c = copy.deepcopy(c)
    c[key] = cv.exact_decimal(cv.round_decimal(Fraction(c[key]) * factor, 20, up=factor > 1))
    return c


@pytest.mark.parametrize("key,factor,claim", [
    ("hessian_variation", Fraction(1, 2), "hessian_variation"),   # the boxes do not prove half the variation
    ("lambda2_center", Fraction(6, 5), "lambda2_center"),          # above the true lambda_2 of M0
    ("lambda_max_center", Fraction(9, 10), "lambda_max_center"),
    ("mu_N_lower", Fraction(11, 10), "mu_N_lower"),
    ("beta_upper", Fraction(9, 10), "beta_upper"),
    ("basin_radius", Fraction(11, 10), "basin_radius"),
    ("c_D", Fraction(11, 10), "c_D"),
    ("c_PL", Fraction(11, 10), "c_PL"),
    ("rate", Fraction(999999, 1000000), "rate"),
    ("path_constant", Fraction(9, 10), "path_constant"),
    ("gap_level", Fraction(2), "gap_level"),
])
def test_edited_number_fails(cert: dict, key: str, factor: Fraction, claim: str) -> None:
    res = verify_certificate(_scaled(cert, key, factor), check_l_star=False)
    assert not res.verified and res.failed_claim == claim, (res.failed_claim, res.detail)


def test_edited_radius_box_tree_center_fail(cert: dict) -> None:
    c = _scaled(cert, "radius", Fraction(2))
    c["basin_radius"] = cert["basin_radius"]  # keep R consistent (R <= (2r - rho_2)/2 still holds)
    res = verify_certificate(c, check_l_star=False)
    assert not res.verified and res.failed_claim.startswith("cover"), res.failed_claim
    c = copy.deepcopy(cert)
    c["cover"]["boxes"][0]["hi"][0] = cv.exact_decimal(Fraction(c["cover"]["boxes"][0]["hi"][0]) + Fraction(1, 10**9))
    assert verify_certificate(c, check_l_star=False).failed_claim == "cover.boxes[0]"
    c = copy.deepcopy(cert)
    c["cover"]["tree"] = c["cover"]["tree"][:-1]
    assert verify_certificate(c, check_l_star=False).failed_claim == "cover.tree"
    c = copy.deepcopy(cert)
    c["center"]["a"][0] = cv.exact_decimal(Fraction(c["center"]["a"][0]) + Fraction(1, 10**6))
    assert verify_certificate(c, check_l_star=False).failed_claim == "center"
    c = copy.deepcopy(cert)  # move the exact-width centre and the split consistently: Krawczyk fails
    c["base_center"]["a"][1] = cv.exact_decimal(Fraction(c["base_center"]["a"][1]) + Fraction(1, 10**6))
    c["center"]["a"][1] = c["base_center"]["a"][1]
    assert verify_certificate(c, check_l_star=False).failed_claim == "stationary_box"
    c = copy.deepcopy(cert)
    c["arc"]["cos"], c["arc"]["sin"] = "0.8", "0.6"
    assert verify_certificate(c, check_l_star=False).failed_claim == "center"
    c = copy.deepcopy(cert)
    c["L_star_enclosure"]["upper"] = c["L_star_enclosure"]["lower"]
    assert verify_certificate(c, check_l_star=False).failed_claim == "L_star_enclosure.upper"


def test_verify_command_exit_codes(cert: dict, tmp_path: Path) -> None:
    from checker.commands.verify import main

    good = tmp_path / "good.json"
    good.write_text(json.dumps(cert))
    assert main([str(good), "--no-progress", "--skip-l-star"]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_scaled(cert, "gap_level", Fraction(2))))
    assert main([str(bad), "--no-progress", "--skip-l-star"]) == 1
    c = copy.deepcopy(cert)
    c["route"] = "no-such-route"
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(c))
    assert main([str(odd), "--no-progress"]) == 2


# ---------------------------------------------------------------- the claim, empirically
def _nearest_on_arc(theta: list, base: list, k: int, m: int, d: int) -> list:
    """The nearest point of the (decimal) arc: project the two copies of neuron k onto the plane of (x, 0), (0, x)."""
    ms = m - 1
    x = [base[k]] + base[ms + k * d: ms + (k + 1) * d]
    u = [theta[k]] + theta[m + k * d: m + (k + 1) * d]
    v = [theta[m - 1]] + theta[m + (m - 1) * d:]
    xx = mpmath.fsum(t * t for t in x)
    al, be = mpmath.fsum(p * q for p, q in zip(u, x)) / xx, mpmath.fsum(p * q for p, q in zip(v, x)) / xx
    phi = mpmath.atan2(be, al)
    c, s = mpmath.cos(phi), mpmath.sin(phi)
    a = list(base[:ms]) + [s * base[k]]
    a[k] = c * base[k]
    W = [list(base[ms + j * d: ms + (j + 1) * d]) for j in range(ms)]
    W[k] = [c * t for t in x[1:]]
    return a + [t for row in W for t in row] + [s * t for t in x[1:]]


def test_certified_decrease_holds_for_gradient_descent(cert: dict) -> None:
    """Random starts with ||theta_0 - c|| + K sqrt(zeta_0) <= R, GD at step_max (mp, 40 digits): statement (4)-(5)."""
    from checker.core import objective
    from checker.core.engines import MpEngine
    from checker.core.model import Instance

    inst = Instance.from_dict(cert["instance"])
    m, d = inst.m, inst.d
    n = m * (d + 1)
    k = cert["arc"]["neuron"]
    engine = MpEngine(40)
    rng = np.random.default_rng(11)
    with engine.context():
        mp = mpmath.mpf
        R, K = mp(cert["basin_radius"]), mp(cert["path_constant"])
        eta, beta, c_PL, c_D = mp(cert["step_max"]), mp(cert["beta_upper"]), mp(cert["c_PL"]), mp(cert["c_D"])
        factor = 1 - eta * c_PL * (1 - eta * beta / 2)
        assert factor <= mp(cert["rate"])
        center = [mp(x) for x in cert["center"]["a"]] + [mp(x) for r in cert["center"]["W"] for x in r]
        base = [mp(x) for x in cert["base_center"]["a"]] + [mp(x) for r in cert["base_center"]["W"] for x in r]
        a_s = np.array([mp(x) for x in inst.teacher_a], dtype=object)
        W_s = np.array([[mp(x) for x in r] for r in inst.teacher_W], dtype=object)
        lam = mp(inst.lam)

        def ev(theta: list):
            a = np.array(theta[:m], dtype=object)
            W = np.array([theta[m + j * d: m + (j + 1) * d] for j in range(m)], dtype=object)
            e = objective.evaluate(engine, "relu", a, W, a_s, W_s, lam)
            return e.reg_loss, list(e.grad_a) + list(np.asarray(e.grad_W).reshape(-1))

        L_gamma = ev(center)[0]  # c is within rho_2 ~ 4e-57 of Gamma: L differs by < beta rho_2^2, below 40 digits
        dist = lambda p, q: mpmath.sqrt(mpmath.fsum((s - t) ** 2 for s, t in zip(p, q)))  # noqa: E731
        checked, widest = 0, 0.0
        for trial in range(5):
            # a point of the arc near c (angle offset), plus a small random displacement
            p0 = _nearest_on_arc([c + mp(float(x)) * R / 4 for c, x in zip(center, rng.normal(size=n) / np.sqrt(n))],
                                 base, k, m, d)
            u = rng.normal(size=n)
            u /= np.linalg.norm(u)
            size = [1e-7, 5e-7, 2e-7, 3e-8, 1e-9][trial]
            theta = [p + mp(float(size * x)) for p, x in zip(p0, u)]
            L0, _ = ev(theta)
            zeta0 = L0 - L_gamma
            assert zeta0 > 0
            reach = dist(theta, center) + K * mpmath.sqrt(zeta0)
            assert reach < R, "the start must satisfy the hypothesis of (5)"
            widest = max(widest, float(reach / R))
            start, zeta, path = theta, zeta0, mp(0)
            for _ in range(40):
                L, g = ev(theta)
                z = L - L_gamma
                D = [t - q for t, q in zip(theta, _nearest_on_arc(theta, base, k, m, d))]
                assert mpmath.fsum(gi * Di for gi, Di in zip(g, D)) >= c_D * z  # statement (4)
                assert mpmath.fsum(gi * gi for gi in g) >= c_PL * z
                new = [t - eta * gi for t, gi in zip(theta, g)]
                path += dist(new, theta)
                theta = new
                z_new = ev(theta)[0] - L_gamma
                assert z_new <= factor * z  # statement (5): the certified decrease
                assert dist(theta, center) <= R
                checked += 1
            assert path <= K * mpmath.sqrt(zeta0)
            assert dist(theta, start) <= path
    assert checked == 200
    assert widest > 0.5, widest  # some start uses at least half of the room the hypothesis leaves


# ---------------------------------------------------------------- the commands and the unprovable cases
def test_zero_extra_neuron_is_not_proved_with_its_reason(tmp_path: Path) -> None:
    """cos = 1: the extra neuron is zero at the centre; the command exits 3 and says why."""
    from checker.commands.prove import main

    out = tmp_path / "zero.json"
    assert main(["over-width-d3", "--no-progress", "--no-t1", "--split-cos", "1", "--json", str(out)]) == 3
    data = json.loads(out.read_text())
    assert data["proved"] is False and data["status"] == "not-proved"
    assert data["route"] == "over-parameterized-split-arc"
    assert "zero neuron" in data["not_proved_reason"] and "twice differentiable" in data["not_proved_reason"]
    assert verify_certificate(data, check_l_star=False).failed_claim == "proved"


def test_too_large_radius_is_not_proved_with_the_wide_bound(tmp_path: Path) -> None:
    from checker.commands.prove import main

    out = tmp_path / "big.json"
    assert main(["over-width-d3", "--no-progress", "--no-t1", "--radius", "0.001", "--max-leaves", "8",
                 "--json", str(out)]) == 3
    data = json.loads(out.read_text())
    assert data["proved"] is False and "Hessian variation" in data["not_proved_reason"]
    assert data["search"]["largest_radius_reached"] is None


def test_prove_command_bad_input(capsys: pytest.CaptureFixture) -> None:
    from checker.commands.prove import main

    assert main(["over-width-d3", "--no-progress", "--split-cos", "0.5", "--json", "/tmp/never-written.json"]) == 2
    assert "--split-cos" in capsys.readouterr().err


def test_prove_interrupted_writes_an_incomplete_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from checker.basin.over import OverProver
    from checker.commands.prove import main

    def interrupted(self) -> None:
        self.phase = "exact-width optimum"
        raise KeyboardInterrupt

    monkeypatch.setattr(OverProver, "setup", interrupted)
    out = tmp_path / "partial.json"
    assert main(["over-width-d3", "--no-progress", "--no-t1", "--json", str(out)]) == 130
    partial = json.loads(out.read_text())
    assert partial["status"] == "incomplete" and partial["proved"] is False
    assert partial["phase"] == "exact-width optimum"
    assert partial["route"] == "over-parameterized-split-arc"


@pytest.mark.slow
def test_random_teacher_over_route(tmp_path: Path) -> None:
    """Inputs nobody chose: random unit teachers in d = 2 and 3 (seeded), one extra neuron near teacher 0."""
    from checker.basin.over import OverProver
    from checker.core.model import Instance

    rng = np.random.default_rng(5)
    for d in (2, 3):
        while True:
            V = rng.normal(size=(2, d))
            V /= np.linalg.norm(V, axis=1)[:, None]
            if abs(V[0] @ V[1]) < 0.5:
                break
        a_s = [f"{x:.3f}" for x in (rng.uniform(0.6, 1.4), -rng.uniform(0.6, 1.4))]
        W_s = [[f"{x:.6f}" for x in row] for row in V]
        s_a = [a_s[0], a_s[1], "0.3"]
        s_W = [[f"{float(a_s[0]) * x:.6f}" for x in V[0]], [f"{-float(a_s[1]) * x:.6f}" for x in V[1]],
               [f"{0.3 * x:.6f}" for x in V[0]]]
        inst = Instance.create(activation="relu", teacher_a=a_s, teacher_W=W_s, student_a=s_a, student_W=s_W,
                               lam="0.01", eta="0.2", normalize_teacher=True)
        cert = OverProver(inst, t1=False, max_leaves=16).run()
        assert cert["proved"], cert["not_proved_reason"]
        res = verify_certificate(cert, check_l_star=False)
        assert res.verified, (res.failed_claim, res.detail)


def test_time_budget_reports_not_proved(tmp_path: Path) -> None:
    from checker.commands.prove import main

    out = tmp_path / "budget.json"
    assert main(["over-width-d3", "--no-progress", "--no-t1", "--time-budget", "0.001", "--json", str(out)]) == 3
    data = json.loads(out.read_text())
    assert data["proved"] is False and data["not_proved_reason"] == "time budget exhausted"
