"""The certified optimum's reduction from the dual residual (KKT), and the ``checker.optimum`` command.

References written here: the residual correlation from the arc-cosine kernel in closed form
(numpy), the single-teacher optimum L*_lambda = lambda |a*| - lambda^2 / 2 (derivations/optimum.py),
and constructions whose needed atoms are known.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from checker.core.model import Instance
from checker.rigorous.optimum import kkt_ratios, reduce_student, select_atoms


def _kappa(t):
    t = np.clip(t, -1.0, 1.0)
    return (np.sqrt(1 - t * t) + (math.pi - np.arccos(t)) * t) / (2 * math.pi)


def _k(U, V):
    nu, nv = np.linalg.norm(U, axis=1), np.linalg.norm(V, axis=1)
    return nu[:, None] * nv[None, :] * _kappa((U / nu[:, None]) @ (V / nv[:, None]).T)


def _inst(a_star, W_star, a, W, lam, eta="0.2"):
    text = lambda M: [[repr(float(v)) for v in r] for r in M]  # noqa: E731
    return Instance.create(teacher_a=[repr(float(v)) for v in a_star], teacher_W=text(W_star),
                           student_a=[repr(float(v)) for v in a], student_W=text(W), lam=repr(float(lam)), eta=eta)


def test_kkt_ratios_match_the_closed_form_residual_correlation():
    # 2 g(u_j) sign(a_j) / lambda with g(u) = sum_i a*_i k(u, w*_i) - sum_l a_l k(u, w_l) (unit u):
    # one kernel sum of a few O(1) terms in float64, both routes: 1e-12 relative to lambda^-1.
    rng = np.random.default_rng(4)
    Ws = np.eye(4)[:3]
    a_s = np.array([1.0, -0.8, 0.6])
    W = Ws + 0.1 * rng.standard_normal((3, 4))
    W = np.concatenate([W, 0.05 * rng.standard_normal((2, 4))])
    a = np.concatenate([a_s * 0.9, [0.03, -0.02]])
    lam = 0.01
    got = kkt_ratios(_inst(a_s, Ws, a, W, lam), a, W)
    U = W / np.linalg.norm(W, axis=1)[:, None]
    g = _k(U, Ws) @ a_s - _k(U, W) @ a
    ref = 2 * g * np.sign(a) / lam
    assert np.max(np.abs(got - ref)) <= 1e-12 / lam


def test_a_needed_atom_of_tiny_mass_is_kept_and_a_decaying_neuron_is_dropped():
    # Two orthogonal teachers, the second with output weight 5e-9, lambda = 1e-9.  With atoms on
    # the teachers, the optimal signed masses solve K s = K a* - (lambda / 2) sign(s), K the 2 x 2
    # kernel matrix (kappa(1) = 1/2, kappa(0) = 1/(2 pi)): s_2 ~ 4.2e-9, below the old mass
    # threshold (1e-8 of the largest mass).  At that point the KKT ratio is 1 on both atoms; a far
    # neuron of mass 1e-14 (it moves the ratios by ~1e-5) has a ratio well below 1.
    lam = 1e-9
    Ws = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    a_s = np.array([1.0, 5e-9])
    K = np.array([[0.5, 1 / (2 * math.pi)], [1 / (2 * math.pi), 0.5]])
    s_opt = a_s - (lam / 2) * np.linalg.solve(K, np.ones(2))
    assert 4e-9 < s_opt[1] < 4.5e-9
    far = np.array([-0.6, -0.6, 0.529150262212918])
    r = np.sqrt(s_opt)
    a = np.array([r[0], r[1], 1e-7])
    W = np.array([r[0] * Ws[0], r[1] * Ws[1], 1e-7 * far])
    inst = _inst(a_s, Ws, a, W, lam)
    ar_old, _ = reduce_student(a, W)
    assert len(ar_old) == 1  # the mass threshold drops the needed atom (and the far neuron)
    ar, Wr, kept, dropped = select_atoms(inst, a, W, merge_angle=0.1)
    assert len(ar) == 2 and len(dropped) == 1
    dirs = Wr / np.linalg.norm(Wr, axis=1)[:, None]
    assert sorted(int(np.argmax(np.abs(v))) for v in dirs) == [0, 1]
    assert dropped[0]["kkt_ratio"] < 0.99
    assert all(abs(k["kkt_ratio"] - 1) < 1e-3 for k in kept), kept


def _single_file(tmp_path, lam="0.1", eta="0.4"):
    inst = {"activation": "relu", "teacher": {"a": ["1.5"], "W": [["0", "1", "0"]]},
            "student": {"a": ["0.9", "0.4"], "W": [["0.3", "0.8", "0.1"], ["0.2", "0.5", "-0.2"]]},
            "lambda": lam}
    if eta is not None:
        inst["eta"] = eta
    p = tmp_path / "single.json"
    p.write_text(json.dumps(inst))
    return p


def _run(*args):
    return subprocess.run([sys.executable, "-m", "checker.optimum", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_command_encloses_the_single_teacher_closed_form(tmp_path):
    out = tmp_path / "o.json"
    res = _run(_single_file(tmp_path), "--json", out, "--no-progress", "--dps", "40")
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data == json.loads(res.stdout)
    for key in ("lower", "upper", "width", "rigorous", "a", "W", "atoms"):
        assert key in data
    # lambda = 0.1 as the 40-digit engine reads it differs from 1/10 by ~1e-41, moving L* by ~1.5e-41:
    # compare with a margin of 1e-38 (the width reached is far smaller than that margin is not needed).
    exact = Fraction(1, 10) * Fraction(3, 2) - Fraction(1, 200)
    lo, hi = Fraction(data["lower"]), Fraction(data["upper"])
    assert data["rigorous"] is True and lo <= hi
    assert lo - Fraction(1, 10**38) <= exact <= hi + Fraction(1, 10**38)
    assert Fraction(data["width"]) < Fraction(1, 10**30)
    assert len(data["a"]) == 1 and len(data["W"]) == 1 and isinstance(data["a"][0], str)


@pytest.mark.parametrize("change,match", [
    (dict(eta=None), "eta"),
    (dict(lam="0"), "lambda"),
])
def test_command_refuses_bad_input_in_one_line(tmp_path, change, match):
    res = _run(_single_file(tmp_path, **change), "--no-progress")
    assert res.returncode == 2 and match in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_command_refuses_bad_options_in_one_line(tmp_path):
    for args in (["--dps", "2"], ["--seconds", "-1"], ["--json", str(tmp_path)]):
        res = _run(_single_file(tmp_path), "--no-progress", *args)
        assert res.returncode == 2 and "Traceback" not in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1
