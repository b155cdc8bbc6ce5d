"""Tests of the random-start study (checker/stationary/study.py), ``python -m checker.landscape``
and the threshold's upper end (checker/stationary/upper.py, ``checker.threshold --stationary``).

References: the k = 7 spurious minimum of the fixed-output setting as stored with Safran's
public code (its README gives the distinct entries -0.6327039049, 0.2616910758,
0.1859910463, 0.9969227988, -0.0350801559 of W, 10 digits: tolerance 1e-9, and its
loss 0.0232027149 on their half loss, 0.0464054298 here); the Wilson interval's closed
forms at k = 0 (upper end z^2 / (n + z^2)) and its defining quadratic (the score test's
boundary, solved here with numpy.roots); the model's symmetries applied by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from checker.commands.landscape import main
from checker.core.objective import evaluate
from checker.core.engines import Float64Engine
from checker.stationary import study as st

PUBLISHED_ENTRIES_K7 = sorted([-0.6327039049, 0.2616910758, 0.1859910463, 0.9969227988, -0.0350801559])
PUBLISHED_LOSS_K7 = 2 * 0.0232027149
#: seeds 0..9 at k = 7 under the default protocol: seed 5 ends at the spurious minimum
K7_SPURIOUS_SEED = 5
Z = 1.959963984540054


def spec(K: int = 7, **kw) -> st.StudySpec:
    a, W = st.orthonormal_teacher(K)
    return st.StudySpec(teacher=f"orthonormal:{K}", activation="relu", a_star=a, W_star=W,
                        width=kw.pop("width", K), orthonormal=True, **kw)


def test_wilson_interval_against_score_boundary() -> None:
    for k, n in [(0, 20), (3, 20), (23, 500), (500, 500), (1, 1)]:
        lo, hi = st.wilson_interval(k, n)
        # the interval's ends solve (p_hat - p)^2 = z^2 p (1 - p) / n in p
        ph = k / n
        c = Z * Z / n
        roots = sorted(np.roots([1 + c, -(2 * ph + c), ph * ph]).real)
        assert abs(lo - max(0.0, roots[0])) <= 1e-12 and abs(hi - min(1.0, roots[1])) <= 1e-12
    assert abs(st.wilson_interval(0, 500)[1] - Z * Z / (500 + Z * Z)) <= 1e-15


@pytest.fixture(scope="module")
def k7_runs() -> list[dict]:
    return st.run_chunk(spec().to_dict(), [0, 1, K7_SPURIOUS_SEED])


def test_k7_runs_reach_global_and_the_published_spurious_minimum(k7_runs) -> None:
    s = spec()
    ref, _ = st.reference_value(s, k7_runs)
    assert ref == 0.0
    tol = st.gap_tolerance(s)
    cats = {r["seed"]: st.run_category(r, ref, tol) for r in k7_runs}
    assert cats[0] == "global" and cats[1] == "global" and cats[K7_SPURIOUS_SEED] == "spurious"
    r = next(r for r in k7_runs if r["seed"] == K7_SPURIOUS_SEED)
    assert abs(float(r["loss"]) - PUBLISHED_LOSS_K7) <= 1e-9
    W = np.array(r["W"], dtype=float)
    # 49 entries, 5 distinct values up to 1e-9, those of the stored minimum
    vals = np.sort(W.ravel())
    groups = np.split(vals, np.flatnonzero(np.diff(vals) > 1e-6) + 1)
    assert len(groups) == 5
    assert np.max(np.abs(np.array([g.mean() for g in groups]) - PUBLISHED_ENTRIES_K7)) <= 1e-9
    # the loss there recomputed independently: E[(sum relu(w_j x) - sum relu(x_i))^2] with the
    # arc-cosine closed form written out here
    def k(u, v):
        nu, nv = np.linalg.norm(u), np.linalg.norm(v)
        t = np.clip(u.dot(v) / (nu * nv), -1, 1)
        phi = math.acos(t)
        return nu * nv * (math.sin(phi) + (math.pi - phi) * t) / (2 * math.pi)
    V = np.vstack([W, np.eye(7)])
    c = np.r_[np.ones(7), -np.ones(7)]
    L = sum(c[i] * c[j] * k(V[i], V[j]) for i in range(14) for j in range(14))
    assert abs(L - PUBLISHED_LOSS_K7) <= 1e-9


def test_classes_symmetry_and_certificate(k7_runs) -> None:
    s = spec()
    ref, _ = st.reference_value(s, k7_runs)
    classes = st.group_classes(s, k7_runs, ref, st.gap_tolerance(s))
    assert [c.category for c in classes] == ["global", "spurious"]
    assert classes[0].count == 2 and classes[1].count == 1
    st.certify_classes(s, classes, which="spurious")
    cert = classes[1].certified
    assert cert["rigorous"] and cert["strict_local_minimum"] and cert["spurious"]
    assert 0.046 < float(cert["gap_lower"]) <= PUBLISHED_LOSS_K7 + 1e-9
    # a symmetry image (rows and input coordinates permuted) is the same class; the canonical
    # form is such an image: same loss (recomputed), same class
    r = next(r for r in k7_runs if r["seed"] == K7_SPURIOUS_SEED)
    rng = np.random.default_rng(1)
    W = np.array(r["W"], dtype=float)
    P, Q = rng.permutation(7), rng.permutation(7)
    img = dict(r, W=W[P][:, Q].tolist())
    assert st.same_point(s, r, img)
    e = Float64Engine()
    ev = evaluate(e, "relu", np.ones(7), W[P][:, Q], np.ones(7), np.eye(7), 0.0)
    assert abs(float(ev.loss) - float(r["loss"])) <= 1e-15
    a_c, W_c = st.canonical_form(s, np.ones(7), W)
    assert st.same_point(s, r, dict(r, a=list(a_c), W=W_c.tolist()))
    # a different point (a global minimum) is not the same class, nor a small distortion
    g = next(r for r in k7_runs if r["seed"] == 0)
    assert not st.same_point(s, r, dict(r, W=np.array(g["W"], dtype=float).tolist()))
    W2 = W.copy()
    W2[0, 0] += 1e-4
    assert not st.same_point(s, r, dict(r, W=W2.tolist()))


def test_continuation_in_lambda_stays_certified_minimum(k7_runs) -> None:
    s = spec()
    r = next(r for r in k7_runs if r["seed"] == K7_SPURIOUS_SEED)
    rows = st.continue_in_lambda(s, r["a"], r["W"], [1e-3, 1e-2])
    assert [row["status"] for row in rows] == ["minimum", "minimum"]
    for row in rows:
        assert row["certified"]["rigorous"] and row["certified"]["strict_local_minimum"]
        # stationary at that lambda: the gradient of L_lambda in W vanishes (objective.evaluate)
        ev = evaluate(Float64Engine(), "relu", np.ones(7), np.array(row["W"], dtype=float), np.ones(7),
                      np.eye(7), float(row["lambda"]))
        assert np.max(np.abs(ev.grad_W)) <= 1e-12
    assert float(rows[0]["reg_loss"]) < float(rows[1]["reg_loss"])


def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_command_resume_computes_only_missing_seeds(tmp_path, capsys) -> None:
    res = tmp_path / "runs.jsonl"
    out = tmp_path / "out.json"
    base = ["orthonormal:3", "--results", str(res), "--json", str(out), "--no-progress", "--chunk", "2"]
    code, text, _ = _run(base + ["--seeds", "3"], capsys)
    assert code == 0
    first = json.loads(out.read_text())
    assert first["computed"] == 3 and first["runs"] == 3
    # a torn last line (a killed write) is dropped and recomputed
    res.write_bytes(res.read_bytes() + b'{"key": "torn')
    code, text, _ = _run(base + ["--seeds", "5"], capsys)
    assert code == 0
    second = json.loads(out.read_text())
    assert second["computed"] == 2 and second["runs"] == 5 and second["complete"]
    assert len(res.read_text().splitlines()) == 5
    # the same runs give the same end points
    a = {r["seed"]: r["loss"] for r in first["runs_detail"]}
    b = {r["seed"]: r["loss"] for r in second["runs_detail"]}
    assert all(a[s] == b[s] for s in a)
    # another lambda is another study: nothing reused
    code, text, _ = _run(base + ["--seeds", "2", "--lambda", "0.01"], capsys)
    assert json.loads(out.read_text())["computed"] == 2


def test_command_interrupted_writes_partial_result(tmp_path, capsys, monkeypatch) -> None:
    calls = {"n": 0}
    real = st.run_chunk

    def flaky(spec_data, seeds):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(spec_data, seeds)

    monkeypatch.setattr(st, "run_chunk", flaky)
    out = tmp_path / "out.json"
    code, text, _ = _run(["orthonormal:3", "--seeds", "4", "--chunk", "2", "--json", str(out), "--no-progress"],
                         capsys)
    assert code == 130
    d = json.loads(out.read_text())
    assert d["interrupted"] and d["runs"] == 2 and not d["complete"]


@pytest.mark.parametrize("argv, words", [
    (["orthonormal:0"], "orthonormal:K"),
    (["orthonormal:2.5"], "orthonormal:K"),
    (["orthonormal:101"], "orthonormal:K"),
    (["orthonormal"], "orthonormal:K"),
    (["orthonormal:4", "--width", "3"], "below the teacher"),
    (["orthonormal:4", "--lambda", "-0.1"], "lambda must be >= 0"),
    (["orthonormal:4", "--seeds", "0"], "--seeds"),
    (["orthonormal:4", "--seeds", "100000000"], "--seeds"),
    (["orthonormal:4", "--eta", "0"], "--eta"),
    (["orthonormal:4", "--continuation", "0.1,0.01"], "increase"),
    (["no-such-teacher"], "neither"),
])
def test_bad_input_one_line_exit_2(argv, words, capsys) -> None:
    code, _, err = _run(argv + ["--no-progress"], capsys)
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --------------------------------------------------------------------------- the threshold's upper end
def _instance(lam: str = "0.01"):
    from checker.core.model import Instance

    return Instance.from_dict({"activation": "relu", "teacher": {"a": ["1", "1"], "W": [["1", "0"], ["0", "1"]]},
                               "student": {"a": ["1", "1"], "W": [["1", "0.1"], ["0.1", "1"]]}, "lambda": lam})


def _critical(gap: str, lam: str = "0.01", train: str = "both") -> dict:
    return {"format": "zhou-ge-checker/critical", "instance": _instance(lam).to_dict(),
            "options": {"train": train, "lambda": lam}, "loss": "0.5",
            "certified": {"rigorous": True, "spurious": True, "gap_lower": gap}}


def test_spurious_gaps_reads_critical_and_checks_the_problem() -> None:
    from checker.core.errors import CheckerError
    from checker.stationary.upper import ordering, spurious_gaps

    inst = _instance()
    gaps = spurious_gaps(_critical("0.1"), inst)
    assert len(gaps) == 1 and gaps[0].gap_lower <= 0.1 and gaps[0].gap_lower_text == "0.1"
    for bad in (_critical("0.1", lam="0.02"), _critical("0.1", train="first"), {"format": "other"}):
        with pytest.raises(CheckerError):
            spurious_gaps(bad, inst)
    # the chain, and the contradiction only when eps_0 is above the certified gap
    chain, contradicted = ordering(0.01, 0.05, 0.08, gaps[0])
    assert not contradicted and "eps_0 = 0.01 <= empirical lower end 0.05" in chain
    assert ordering(0.2, 0.05, 0.08, gaps[0])[1] is True
    assert ordering(0.2, 0.05, 0.08, None)[1] is False


def test_spurious_gaps_of_a_landscape_result_needs_both_layers(tmp_path) -> None:
    from checker.core.errors import CheckerError
    from checker.stationary.upper import spurious_gaps

    s = spec(2)
    d = st.summarize(s, [0], st.run_chunk(s.to_dict(), [0]), certify_which="none").to_dict()
    from checker.core.model import Instance

    inst = Instance.from_dict({"activation": "relu", "teacher": {"a": ["1", "1"], "W": [["1", "0"], ["0", "1"]]},
                               "student": {"a": ["1", "1"], "W": [["1", "0.1"], ["0.1", "1"]]}, "lambda": "0"})
    with pytest.raises(CheckerError, match="train = first"):
        spurious_gaps(d, inst)


def test_threshold_refuses_a_wrong_stationary_file_before_work(tmp_path, capsys) -> None:
    from checker.commands.threshold import main as threshold_main

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    code = threshold_main(["preset:default", "--family", "rotate", "--stationary", str(bad), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--stationary" in err and len(err.strip().splitlines()) == 1


def test_zero_neuron_end_point_is_its_own_category() -> None:
    s = spec(3, train="both", lam=0.01)
    W = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1e-12, 0.0, 0.0]]
    rec = {"converged": True, "reg_loss": "0.5", "kind": "saddle", "W": W, "a": [1.0, 1.0, 0.0]}
    assert st.run_category(rec, 0.1, 1e-10) == "zero-neuron"
    assert st.run_category(dict(rec, reg_loss="0.1"), 0.1, 1e-10) == "global"
    assert st.run_category(dict(rec, W=[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], kind="minimum"), 0.1,
                           1e-10) == "spurious"
