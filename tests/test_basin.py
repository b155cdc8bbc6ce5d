"""The certified basin (checker.basin) and its verifier.

References, each independent of the code under test:

* the cover: a bisection tree's leaves must partition the cube (volumes add up to
  the cube's, exact rationals; random points lie in exactly one leaf);
* spectrum bounds: eigenvalues (numpy) of symmetric matrices sampled inside the
  ball matrix, including its corners;
* the stored certificate (tests/data/basin-exact-width-d3.json, written by
  ``python -m checker.prove exact-width-d3``): edited copies (radius, mu with the
  derived numbers made consistent, a box, the tree, the centre) must fail to verify;
* the certified contraction: gradient descent (``checker.dynamics.gd.run_gd``, mp
  engine at 40 digits, a code path that shares nothing with the proof but the
  objective) from random starts in the certified ball, at the certified step, must
  contract the distance to the centre at the certified rate at every step (up to
  rho_2, the centre's certified distance to the true stationary point).
"""

from __future__ import annotations

import copy
import json
import random
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
from flint import arb
from hypothesis import given, settings
from hypothesis import strategies as st

from checker.basin import cover as cv
from checker.basin.basin import NotApplicable, check_instance
from checker.basin.verify import CertificateError, verify_certificate
from checker.commands.presets import load_preset

DATA = Path(__file__).parent / "data" / "basin-exact-width-d3.json"


@pytest.fixture(scope="module")
def cert() -> dict:
    return json.loads(DATA.read_text())


# ---------------------------------------------------------------- exact pieces
@given(st.integers(-10**30, 10**30), st.integers(0, 40), st.integers(0, 40))
def test_exact_decimal_round_trip(num: int, twos: int, fives: int) -> None:
    q = Fraction(num, 2**twos * 5**fives)
    assert cv.parse_decimal(cv.exact_decimal(q)) == q


def test_exact_decimal_refuses_a_non_decimal() -> None:
    with pytest.raises(ValueError):
        cv.exact_decimal(Fraction(1, 3))


@given(st.lists(st.integers(0, 3), min_size=0, max_size=12), st.integers(0, 2**32 - 1))
def test_tree_leaves_partition_the_cube(splits: list[int], seed: int) -> None:
    """A random bisection tree (3 coordinates): leaf volumes sum to the cube's; each point is in one leaf."""
    rng = random.Random(seed)
    center = [Fraction(1, 10), Fraction(-3, 4), Fraction(2)]
    r = Fraction(1, 8)
    # build a random pre-order token list: each split consumes one entry of ``splits``
    tokens: list[str] = []
    todo = list(splits)

    def grow(depth: int) -> None:
        if todo and depth < 6 and rng.random() < 0.7:
            tokens.append(f"s{todo.pop() % 3}")
            grow(depth + 1)
            grow(depth + 1)
        else:
            tokens.append(rng.choice("co"))

    grow(0)
    leaves = list(cv.replay(tokens, cv.cube(center, r)))
    volume = sum(np.prod([hi - lo for lo, hi in b]) for _, b in leaves)
    assert volume == (2 * r) ** 3
    for _ in range(20):
        p = [c + Fraction(rng.randint(-1000, 1000), 1000) * r for c in center]
        inside = [b for _, b in leaves if all(lo <= x <= hi for x, (lo, hi) in zip(p, b))]
        interior = [b for b in inside if all(lo < x < hi for x, (lo, hi) in zip(p, b))]
        assert len(inside) >= 1 and len(interior) <= 1


def test_replay_refuses_malformed_trees() -> None:
    root = cv.cube([Fraction(0)] * 2, Fraction(1))
    for bad in (["s0", "c"], ["c", "c"], ["s2", "c", "c"], ["x"]):
        with pytest.raises(ValueError):
            list(cv.replay(bad, root))


def test_misses_ball_is_exact() -> None:
    c = [Fraction(0), Fraction(0)]
    box = [(Fraction(3, 5), Fraction(1)), (Fraction(4, 5), Fraction(1))]  # nearest corner at distance exactly 1
    assert not cv.misses_ball(box, c, Fraction(1))
    assert cv.misses_ball(box, c, Fraction(1) - Fraction(1, 10**30))


@given(st.integers(2, 6), st.integers(0, 2**32 - 1), st.floats(1e-6, 1e-1))
def test_spectrum_bounds_contain_sampled_spectra(n: int, seed: int, rad: float) -> None:
    """Every symmetric matrix sampled in the ball matrix (corners included) has its spectrum in [mu, beta]."""
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(n, n))
    M = (M + M.T) / 2
    R = rng.uniform(0, rad, size=(n, n))
    R = (R + R.T) / 2
    H = [[arb(M[p, q], R[p, q]) for q in range(n)] for p in range(n)]
    bounds = cv.spectrum_bounds(H)
    assert bounds is not None
    mu, beta = (float(x) for x in bounds)
    for k in range(30):
        E = rng.uniform(-1, 1, size=(n, n)) if k % 2 else rng.choice([-1.0, 1.0], size=(n, n))
        E = np.triu(E) + np.triu(E, 1).T
        S = M + E * R
        ev = np.linalg.eigvalsh(S)
        # float64 eigenvalues are accurate to ~1e-15 * ||S||: that is the tolerance
        tol = 1e-13 * (1 + np.abs(S).max())
        assert mu <= ev[0] + tol and ev[-1] <= beta + tol
    # and the bounds are not vacuous: within 2 n max(R) + rounding of the midpoint's spectrum
    ev0 = np.linalg.eigvalsh(M)
    assert mu >= ev0[0] - 2 * n * R.max() - 1e-9 and beta <= ev0[-1] + 2 * n * R.max() + 1e-9
    assert cv.check_spectrum(H, Fraction(mu), Fraction(beta)) == (True, True)


def test_neuron_norms_positive() -> None:
    # m = 1, d = 2: coordinates (a, w0, w1)
    box = [(Fraction(1), Fraction(2)), (Fraction(-1), Fraction(1)), (Fraction(-1), Fraction(1))]
    assert not cv.neuron_norms_positive(box, 1, 2)
    box[2] = (Fraction(1, 10**20), Fraction(1))
    assert cv.neuron_norms_positive(box, 1, 2)


# ---------------------------------------------------------------- the door
def test_check_instance_refuses_outside_the_setting() -> None:
    with pytest.raises(NotApplicable, match="m = m"):
        check_instance(load_preset("default").instance)  # m = 4, m* = 2
    inst = load_preset("exact-width-d3").instance
    with pytest.raises(NotApplicable, match="lambda > 0"):
        check_instance(inst.replace(lam="0"))
    with pytest.raises(NotApplicable, match="zero"):
        check_instance(inst.replace(student_W=[["0", "0", "0"], ["0.01", "0.88", "-0.02"]]))
    check_instance(inst)


def test_prove_command_bad_input_exits_2(capsys: pytest.CaptureFixture) -> None:
    from checker.commands.prove import main

    assert main(["default", "--no-progress", "--json", "/tmp/never-written.json"]) == 2
    assert "m = m*" in capsys.readouterr().err


# ---------------------------------------------------------------- the verifier
def test_stored_certificate_verifies(cert: dict) -> None:
    res = verify_certificate(cert, check_l_star=False)
    assert res.verified, (res.failed_claim, res.detail)
    assert res.boxes == len(cert["cover"]["boxes"]) > 0


def test_stored_certificate_verifies_with_l_star(cert: dict) -> None:
    res = verify_certificate(cert, check_l_star=True)
    assert res.verified, (res.failed_claim, res.detail)
    assert any("duality bound" in c for c in res.checked)


def _refresh_derived(c: dict) -> None:
    """Make step_max, rate, gap_level and gap_upper consistent with edited mu/beta (the honest way to lie)."""
    mu, beta = Fraction(c["mu_lower"]), Fraction(c["beta_upper"])
    R = Fraction(c["basin_radius"])
    step = cv.round_decimal(2 / (mu + beta), 20, up=False)
    c["step_max"] = cv.exact_decimal(step)
    c["rate"] = cv.exact_decimal(cv.round_decimal(max(abs(1 - step * mu), abs(1 - step * beta)), 20, up=True))
    c["gap_level"] = cv.exact_decimal(cv.round_decimal(mu * R * R / 2, 20, up=False))


def _fails(c: dict, claim_part: str | None = None) -> str:
    res = verify_certificate(c, check_l_star=False)
    assert not res.verified
    if claim_part is not None:
        assert claim_part in res.failed_claim, (res.failed_claim, res.detail)
    return res.failed_claim


def test_edited_radius_fails(cert: dict) -> None:
    for factor in (Fraction(3, 2), Fraction(1, 2)):
        c = copy.deepcopy(cert)
        c["radius"] = cv.exact_decimal(Fraction(c["radius"]) * factor)
        c["basin_radius"] = cv.exact_decimal(Fraction(c["basin_radius"]) * factor)
        _refresh_derived(c)
        _fails(c, "cover")


def test_edited_mu_fails(cert: dict) -> None:
    c = copy.deepcopy(cert)
    c["mu_lower"] = cv.exact_decimal(Fraction(c["mu_lower"]) * Fraction(11, 10))
    _fails(c)  # inconsistent with step_max / rate / gap_level, or with the Hessian
    _refresh_derived(c)
    _fails(c, "mu_lower")  # consistent numbers: the Hessian enclosures refute it


def test_edited_beta_fails(cert: dict) -> None:
    c = copy.deepcopy(cert)
    c["beta_upper"] = cv.exact_decimal(Fraction(c["beta_upper"]) * Fraction(9, 10))
    _refresh_derived(c)
    _fails(c, "beta_upper")


def test_edited_box_or_tree_fails(cert: dict) -> None:
    c = copy.deepcopy(cert)
    lo = Fraction(c["cover"]["boxes"][0]["lo"][0])
    c["cover"]["boxes"][0]["lo"][0] = cv.exact_decimal(lo + Fraction(1, 10**6))
    _fails(c, "cover.boxes")
    c = copy.deepcopy(cert)
    tree = c["cover"]["tree"]
    tree[tree.index("c")] = "o"  # claim that a certified box misses the ball
    _fails(c, "cover")
    c = copy.deepcopy(cert)
    c["cover"]["tree"] = c["cover"]["tree"][:-1]
    _fails(c, "cover.tree")


def test_edited_center_fails(cert: dict) -> None:
    c = copy.deepcopy(cert)
    c["center"]["a"][0] = cv.exact_decimal(Fraction(c["center"]["a"][0]) + Fraction(1, 10**8))
    _fails(c, "stationary_box")


def test_edited_step_rate_gap_fail(cert: dict) -> None:
    for key, factor in (("step_max", Fraction(101, 100)), ("rate", Fraction(99, 100)),
                        ("gap_level", Fraction(101, 100)), ("basin_radius", Fraction(101, 100))):
        c = copy.deepcopy(cert)
        c[key] = cv.exact_decimal(Fraction(c[key]) * factor)
        _fails(c, key)


def test_not_a_certificate() -> None:
    with pytest.raises(CertificateError):
        verify_certificate({"format": "something else"})


def test_verify_command_exit_codes(cert: dict, tmp_path: Path) -> None:
    from checker.commands.verify import main

    good = tmp_path / "good.json"
    good.write_text(json.dumps(cert))
    assert main([str(good), "--no-progress", "--skip-l-star"]) == 0
    c = copy.deepcopy(cert)
    c["mu_lower"] = cv.exact_decimal(Fraction(c["mu_lower"]) * 2)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(c))
    assert main([str(bad), "--no-progress", "--skip-l-star"]) == 1
    assert main([str(tmp_path / "missing.json"), "--no-progress"]) == 2


# ---------------------------------------------------------------- the claim, empirically
def test_certified_contraction_holds_for_gradient_descent(cert: dict) -> None:
    """Random starts in B(c, R - rho_2), GD at step_max (mp, 40 digits): every step contracts at the certified rate."""
    from checker.core.engines import MpEngine
    from checker.core.model import Instance
    from checker.core.problem import Problem
    from checker.dynamics.gd import StopRules, run_gd

    inst = Instance.from_dict(cert["instance"])
    m, d = inst.m, inst.d
    n = m * (d + 1)
    engine = MpEngine(40)
    rate = mpmath.mpf(cert["rate"])
    rho2 = mpmath.mpf(cert["stationary_box"]["rho_euclid"])
    R = Fraction(cert["basin_radius"]) - 2 * Fraction(cert["stationary_box"]["rho_euclid"])
    rng = np.random.default_rng(7)
    with engine.context():
        center = [mpmath.mpf(x) for x in cert["center"]["a"]] + [mpmath.mpf(x) for r in cert["center"]["W"] for x in r]
    worst = 0.0
    for trial in range(4):
        u = rng.normal(size=n)
        u /= np.linalg.norm(u)
        s = [0.999, 0.5, 0.9, 0.999][trial]
        coords = cert["center"]["a"] + [x for row in cert["center"]["W"] for x in row]
        start = [Fraction(c) + Fraction(float(s * x)) * R for c, x in zip(coords, u)]
        with mpmath.workdps(60):
            text = [mpmath.nstr(mpmath.mpf(q.numerator) / q.denominator, 45) for q in start]
        inst_t = inst.replace(student_a=text[:m], student_W=[text[m + j * d: m + (j + 1) * d] for j in range(m)],
                              eta=cert["step_max"])
        problem = Problem.from_instance(inst_t, engine)
        dists: list = []

        def on_record(problem_, a, W, lam, step) -> None:
            with engine.context():
                x = list(a) + [v for row in W for v in row]
                dists.append(mpmath.sqrt(mpmath.fsum((xi - ci) ** 2 for xi, ci in zip(x, center))))

        run_gd(problem, problem.eta, stop=StopRules(max_steps=60, gap_every=10**6, record_every=1),
               progress=False, record_at=lambda t: True, on_record=on_record)
        assert len(dists) >= 50
        with engine.context():
            # ||theta_0 - c|| <= R - rho_2 (distances to theta* and to c differ by at most rho_2)
            assert dists[0] <= mpmath.mpf(R.numerator) / R.denominator + rho2
            for before, after in zip(dists, dists[1:]):
                assert after <= rate * before + (1 + rate) * rho2
                worst = max(worst, float(after / before))
    assert worst < 1


# ---------------------------------------------------------------- the commands
def test_prove_interrupted_writes_an_incomplete_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from checker.basin.basin import BasinProver
    from checker.commands.prove import main

    def interrupted(self) -> None:
        self.phase = "optimum"
        raise KeyboardInterrupt

    monkeypatch.setattr(BasinProver, "find_center", interrupted)
    out = tmp_path / "partial.json"
    assert main(["exact-width-d3", "--no-progress", "--json", str(out)]) == 130
    partial = json.loads(out.read_text())
    assert partial["status"] == "incomplete" and partial["proved"] is False and partial["phase"] == "optimum"
    assert verify_certificate(partial, check_l_star=False).verified is False


@pytest.mark.slow
def test_prove_then_verify_end_to_end(tmp_path: Path) -> None:
    """prove at a fixed radius (exit 0), verify it (exit 0); a radius far too large is not proved (exit 3)."""
    from checker.commands.prove import main as prove
    from checker.commands.verify import main as verify

    out = tmp_path / "cert.json"
    assert prove(["exact-width-d3", "--no-progress", "--no-t1", "--radius", "0.0003", "--json", str(out)]) == 0
    assert verify([str(out), "--no-progress"]) == 0
    big = tmp_path / "big.json"
    assert prove(["exact-width-d3", "--no-progress", "--no-t1", "--radius", "0.05", "--max-leaves", "4",
                  "--json", str(big)]) == 3
    data = json.loads(big.read_text())
    assert data["proved"] is False and data["status"] == "not-proved"


@pytest.mark.slow
@settings(max_examples=3, deadline=None)
@given(st.data())
def test_random_teachers_get_a_verified_basin(data: st.DataObject) -> None:
    """Inputs nobody chose: a random relu teacher (m* <= 2, d <= 3) and a student near its optimum, m = m*."""
    from tests.strategies import near_students, teachers

    from checker.basin.basin import BasinProver
    from checker.core.model import Instance

    t = data.draw(teachers(activation="relu", min_d=2, max_d=3, min_m_star=1, max_m_star=2, min_separation=0.8,
                           a_min=0.5, a_max=1.5))
    lam = data.draw(st.sampled_from(["0.01", "0.03"]))
    s = data.draw(near_students(teacher=t, lam=lam, max_angle=0.05, max_split=1, max_small=0, max_imbalance=1.2))
    inst = Instance.create(activation="relu", teacher_a=t.a, teacher_W=t.W, student_a=s.a, student_W=s.W,
                           lam=lam, eta="0.2")
    cert = BasinProver(inst, t1=False, max_leaves=8).run()
    assert cert["proved"], cert["search"]
    res = verify_certificate(cert, check_l_star=False)
    assert res.verified, (res.failed_claim, res.detail)
    assert Fraction(cert["mu_lower"]) > 0 and Fraction(cert["gap_level"]) > 0


def test_rescaling_direction_has_curvature_two_lambda(cert: dict) -> None:
    """derivations/basin.py: v^T H v = 2 lambda ||v||^2 along v = (a_j, -w_j) at the optimum (float64 Hessian).

    The centre is stationary to ~1e-50, so the only error is float64 rounding of O(1) entries: 1e-12.
    """
    from checker.core import hessian as hs
    from checker.core.engines import Float64Engine

    inst = load_preset("exact-width-d3").instance
    a = np.array([float(x) for x in cert["center"]["a"]])
    W = np.array([[float(x) for x in r] for r in cert["center"]["W"]])
    a_star = np.array([float(x) for x in inst.teacher_a])
    W_star = np.array([[float(x) for x in r] for r in inst.teacher_W])
    lam = float(inst.lam)
    H = hs.loss_hessian(Float64Engine(), "relu", a, W, a_star, W_star, lam)
    m, d = W.shape
    for j in range(m):
        va, vW = np.zeros(m), np.zeros((m, d))
        va[j], vW[j] = a[j], -W[j]
        v = np.concatenate([va, vW.reshape(-1)])
        assert abs(v @ H @ v / (v @ v) - 2 * lam) < 1e-12
    assert abs(np.linalg.eigvalsh(H)[0] - 2 * lam) < 1e-12  # and it is the smallest eigenvalue here


def test_aligned_configuration_inside_a_certified_ball_is_covered() -> None:
    """exact-width-d4's ball holds points with student 1 exactly on teacher 1's ray (sin phi = 0):
    the leaf that holds one has an angle enclosure reaching 0 and still passes the spectrum check."""
    from flint import ctx

    from checker.basin.basin import HESSIAN_PREC, ArbObjective
    from checker.core.model import Instance
    from checker.rigorous.arb_objective import angle_triple, norm

    c = json.loads((Path(__file__).parent.parent / "docs" / "basin" / "exact-width-d4.json").read_text())
    inst = Instance.from_dict(c["instance"])
    m, d = inst.m, inst.d
    center = [Fraction(x) for x in c["center"]["a"]] + [Fraction(x) for row in c["center"]["W"] for x in row]
    r = Fraction(c["radius"])
    obj = ArbObjective(inst)
    with ctx.workprec(HESSIAN_PREC):
        _, W_star, _ = obj.teacher()
        t = np.array([float(x.mid()) for x in W_star[1]])
    w = np.array([float(x) for x in center[m + d: m + 2 * d]])
    p = list(center)
    p[m + d: m + 2 * d] = [Fraction(float(x)) for x in (w @ t) * t]  # w_1 moved onto the ray of w*_1
    assert sum((x - y) ** 2 for x, y in zip(p, center)) < r * r  # inside the certified ball
    leaves = [b for kind, b in cv.replay(c["cover"]["tree"], cv.cube(center, r))
              if kind == "c" and all(lo <= x <= hi for x, (lo, hi) in zip(p, b))]
    assert leaves
    with ctx.workprec(HESSIAN_PREC):
        X = cv.box_to_arb(leaves[0])
        w1 = X[m + d: m + 2 * d]
        n1 = norm(w1)
        _, sin_phi, _ = angle_triple([x / n1 for x in w1], list(W_star[1]))
        assert not sin_phi > 0  # the box reaches the collinear pair
        H = obj.hessian_on_box(leaves[0])
    assert cv.check_spectrum(H, Fraction(c["mu_lower"]), Fraction(c["beta_upper"])) == (True, True)
