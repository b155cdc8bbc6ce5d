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


# --------------------------------------------------------------------------- the threshold's own Newton search
REPO = Path(__file__).resolve().parents[1]
#: the preset exact-width-d3's teacher at lambda = 0.01 with its negative neuron turned away from e_2:
#: gradient descent from here stops at the spurious strict local minimum of docs/basin.md
D3_SPURIOUS_START = {"a": [0.97, -0.5], "W": [[0.97, 0.02, 0.01], [0.01, -0.5, 0.05]]}
D3_REFERENCE = REPO / "examples" / "threshold-spurious-d3.json"
#: the certified L*_lambda of exact-width-d3 (docs/basin/exact-width-d3.json, checker.prove), upper end
D3_OPTIMUM_UPPER = 0.0176967455059571


def _relu_loss(a, W, a_star, W_star, lam) -> float:
    """L_lambda from the arc-cosine kernel written here (E relu(<u,x>) relu(<v,x>) =
    |u||v| (sin t + (pi - t) cos t) / (2 pi), Cho and Saul 2009), independent of checker.core."""
    def k(u, v):
        nu, nv = np.linalg.norm(u), np.linalg.norm(v)
        t = math.acos(max(-1.0, min(1.0, float(u @ v) / (nu * nv))))
        return nu * nv * (math.sin(t) + (math.pi - t) * math.cos(t)) / (2 * math.pi)
    P = np.vstack([W, W_star])
    c = np.concatenate([a, -np.asarray(a_star)])
    L = sum(c[i] * c[j] * k(P[i], P[j]) for i in range(len(c)) for j in range(len(c)))
    return L + lam / 2 * (float(np.sum(np.square(a))) + float(np.sum(np.square(W))))


def test_newton_search_certifies_the_d3_spurious_minimum_from_a_failing_end_point() -> None:
    from checker.commands.presets import load_preset
    from checker.core.model import Instance
    from checker.stationary.upper import search_failing

    inst = Instance.from_file(D3_REFERENCE)
    near = load_preset("exact-width-d3").instance  # its student is near the optimum: its L_lambda bounds it
    bound = [("the preset's student", [float(x) for x in near.student_a],
              [[float(x) for x in r] for r in near.student_W])]
    s = search_failing(inst, [{"size": 3.0, "stop_reason": "precision-floor", **D3_SPURIOUS_START}], bound)
    assert len(s.points) == 1 and len(s.gaps) == 1 and "preset" in s.optimum_reference
    p = s.points[0]
    c = p["certified"]
    assert p["kind"] == "minimum" and c["rigorous"] and c["strict_local_minimum"] and c["spurious"] is True
    # the point's L_lambda from the independent kernel, and the optimum's certified upper end from checker.prove
    a = np.array([float(x) for x in p["a"]])
    W = np.array([[float(x) for x in r] for r in p["W"]])
    val = _relu_loss(a, W, [1.0, -0.8], np.eye(3)[:2], 0.01)
    lo, hi = (float(x) for x in c["reg_loss_enclosure"])
    assert lo - 1e-12 <= val <= hi + 1e-12  # float64 evaluation of the test's kernel: 1e-12 covers its rounding
    gap = s.gaps[0].gap_lower
    # the optimum bound used is the reference student's L_lambda: above L*_lambda, so the gap is below the true one
    assert float(s.optimum_upper) >= D3_OPTIMUM_UPPER
    assert 0.2 < gap <= val - D3_OPTIMUM_UPPER + 1e-12
    assert json.dumps(s.to_dict())


def test_newton_search_is_not_spurious_when_the_only_bound_is_the_point_itself() -> None:
    from checker.core.model import Instance
    from checker.stationary.upper import search_failing

    inst = Instance.from_file(D3_REFERENCE)
    # a reference student far up (so that its L_lambda bounds nothing below the spurious value)
    far = inst.replace(student_a=[0.5, 0.5], student_W=[[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    s = search_failing(far, [{"size": 3.0, "stop_reason": "precision-floor", **D3_SPURIOUS_START}], [])
    assert s.gaps == [] and s.points[0]["certified"]["rigorous"] and not s.points[0]["certified"]["spurious"]
    # a zero neuron end point is recorded, not certified
    z = search_failing(inst, [{"size": 1.0, "stop_reason": "precision-floor", "a": [0.97, 0.0],
                               "W": [[0.97, 0.0, 0.0], [0.0, 0.0, 0.0]]}], [])
    assert z.gaps == [] and z.points[0]["status"] == "zero-neuron"
    assert search_failing(inst, [], []).points == []


def _fake_failing_search(monkeypatch, eps0: float) -> None:
    from checker.studies import threshold as thr

    from checker.commands.presets import load_preset

    near = load_preset("exact-width-d3").instance  # a converged trial ends near the optimum: like this student

    def fake_trial(rf, family, size, cfg, *, eps0, keep=False):
        fails = size > 0
        end = D3_SPURIOUS_START if fails else {"a": [float(x) for x in near.student_a],
                                               "W": [[float(x) for x in r] for r in near.student_W]}
        t = thr.Trial(size=size, outcome="fails" if fails else "converges", gap0=0.3 * size + 1e-3,
                      gap0_rigorous=True, loss0=0.3 * size, final_gap=0.2 if fails else 1e-10,
                      stop_reason="precision-floor", steps=1, seconds=0.0, hypotheses_unmet=[],
                      failed=["C2-stalled"] if fails else [], diagnosis=[], instance=rf.instance.to_dict(),
                      end=end)
        return t, None

    monkeypatch.setattr(thr, "run_trial", fake_trial)
    monkeypatch.setattr(thr, "checker_thresholds",
                        lambda rf, cfg: {"eps_0": eps0, "lambda_max": 0.02, "reference_gap0": 0.0,
                                         "hypotheses": {"H1": True, "H2": True, "H3": True}})


def test_threshold_prints_the_gap_its_newton_search_certifies(monkeypatch, tmp_path, capsys) -> None:
    from checker.commands.threshold import main as threshold_main

    _fake_failing_search(monkeypatch, eps0=4e-4)
    out = tmp_path / "r.json"
    code = threshold_main([str(D3_REFERENCE), "--family", "rotate", "--max-trials", "2", "--json", str(out),
                           "--no-progress", "--failing-dir", str(tmp_path)])
    text = capsys.readouterr().out
    assert code == 0
    assert "SPURIOUS, gap >= 0.21" in text and "smallest certified spurious gap 0.21" in text
    up = json.loads(out.read_text())["upper_end"]
    assert up["contradicted"] is False and float(up["smallest_certified_spurious_gap"]) > 0.2
    assert up["newton_search"]["points"][0]["certified"]["spurious"] is True
    # opt out: no search, no ordering
    code = threshold_main([str(D3_REFERENCE), "--family", "rotate", "--max-trials", "2", "--no-newton-search",
                           "--no-progress", "--failing-dir", str(tmp_path)])
    text = capsys.readouterr().out
    assert code == 0 and "Newton search" not in text and "ordering:" not in text


def test_threshold_exits_1_when_eps0_is_above_the_gap_it_certified(monkeypatch, tmp_path, capsys) -> None:
    from checker.commands.threshold import main as threshold_main

    _fake_failing_search(monkeypatch, eps0=0.5)  # an eps_0 above the certified gap (0.2187 with this bound of the optimum)
    code = threshold_main([str(D3_REFERENCE), "--family", "rotate", "--max-trials", "2", "--no-progress",
                           "--failing-dir", str(tmp_path)])
    text = capsys.readouterr().out
    assert code == 1 and "CONTRADICTED" in text and "ABOVE the certified gap 0.21" in text


def test_threshold_newton_time_is_checked_at_the_door(capsys) -> None:
    from checker.commands.threshold import main as threshold_main

    code = threshold_main([str(D3_REFERENCE), "--family", "rotate", "--newton-time", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--newton-time" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # two real T1 trials: about 15 s idle, more under load
def test_threshold_finds_and_certifies_the_d3_spurious_minimum_itself(tmp_path, capsys) -> None:
    from checker.commands.threshold import main as threshold_main

    out = tmp_path / "r.json"
    code = threshold_main([str(D3_REFERENCE), "--family", "rotate", "--range", "0", "3", "--max-trials", "2",
                           "--trial-time", "60", "--json", str(out), "--no-progress"])
    capsys.readouterr()
    d = json.loads(out.read_text())
    assert code == 0 and [t["outcome"] for t in d["trials"]] == ["converges", "fails"]
    gap = float(d["upper_end"]["smallest_certified_spurious_gap"])
    assert 0.2 < gap <= 0.2383918285745 - D3_OPTIMUM_UPPER  # the point's certified L_lambda (docs/basin.md)
    assert d["upper_end"]["contradicted"] is False


# --------------------------------------------------------------------------- a k = 6 spurious minimum
K6_EXAMPLE = REPO / "examples" / "spurious-k6.json"


def test_k6_spurious_minimum_is_certified_and_symmetric() -> None:
    from checker.core.model import Instance
    from checker.core.problem import Problem
    from checker.rigorous.critical import certify
    from checker.stationary.critical import find_stationary

    p = Problem.from_instance(Instance.from_file(K6_EXAMPLE), Float64Engine())
    sp = find_stationary(p, train="first", lam=0.0)
    assert sp.converged and sp.kind == "minimum"
    c = certify(p, sp.a, sp.W, train="first", lam=0.0)
    assert c.rigorous and c.unique_stationary_point and c.strict_local_minimum and c.spurious is True
    W = np.asarray(sp.W, dtype=float)
    # L from the independent kernel of this file, inside the certified enclosure (lambda = 0: L* = 0)
    val = _relu_loss(np.ones(6), W, np.ones(6), np.eye(6), 0.0)
    lo, hi = (float(x) for x in c.loss_enclosure)
    assert lo - 1e-12 <= val <= hi + 1e-12 and float(c.gap_lower) > 0.05
    # its shape: five neurons swapped into each other by permutations of five coordinates (the
    # symmetry of the teacher), the sixth fixed by them: one coordinate is special
    j6 = int(np.argmin(W.max(axis=1)))  # the neuron without a large entry
    rest = [j for j in range(6) if j != j6]
    big = [int(np.argmax(W[j])) for j in rest]
    assert len(set(big)) == 5
    c6 = next(i for i in range(6) if i not in big)
    for j, i in zip(rest, big):
        other = [q for q in range(6) if q not in (i, c6)]
        assert np.ptp(W[j, other]) < 1e-9  # the small entries equal
        assert abs(W[j, i] - W[rest[0], big[0]]) < 1e-9 and abs(W[j, c6] - W[rest[0], c6]) < 1e-9
    assert np.ptp(W[j6, big]) < 1e-9


def test_failing_run_file_name_from_a_long_descriptive_instance_name() -> None:
    from checker.commands.threshold import failing_name

    assert failing_name("threshold-spurious-d3: the teacher (relu, a* = (1, -0.8)); student") == "threshold-spurious-d3"
    assert failing_name("a/b c") == "a_b_c" and len(failing_name("x" * 500)) == 60


def test_certify_classes_bounds_the_optimum_by_the_lowest_end_point_of_any_kind() -> None:
    """A study whose lowest class is degenerate (no certificate: the continuum of global minima of a
    wider student) still decides a spurious minimum above it: any point's L_lambda bounds the optimum."""
    from checker.commands.presets import load_preset
    from checker.rigorous.critical import reg_loss_upper
    from checker.stationary.critical import find_stationary

    s = st.StudySpec(teacher="d3", activation="relu", a_star=(1.0, -0.8), W_star=((1.0, 0, 0), (0, 1.0, 0)),
                     width=2, train="both", lam=0.01)
    near = load_preset("exact-width-d3").instance
    glob = find_stationary(s.problem([float(x) for x in near.student_a],
                                     [[float(x) for x in r] for r in near.student_W]), train="both")
    spur = find_stationary(s.problem(D3_SPURIOUS_START["a"], D3_SPURIOUS_START["W"]), train="both")

    def cls(category, kind, sp):
        return st.StationaryClass(category, float(sp.loss), float(sp.reg_loss), float(sp.eigenvalues[0]), 0, kind,
                                  1, [0], [float(x) for x in sp.a], [[float(x) for x in r] for r in sp.W], [], True)

    classes = [cls("global", "degenerate", glob), cls("spurious", "minimum", spur)]
    st.certify_classes(s, classes)
    c = classes[1].certified
    assert classes[0].certified is None
    assert c["rigorous"] and c["spurious"] is True and "lowest end point" in c["optimum_reference"]
    # the bound used: L_lambda at the global point, checked against the kernel of this file
    up = float(reg_loss_upper(s.problem(glob.a, glob.W)))
    assert abs(up - _relu_loss(np.asarray(glob.a), np.asarray(glob.W), [1.0, -0.8], np.eye(3)[:2], 0.01)) < 1e-12
    assert 0.2 < float(c["gap_lower"]) <= float(c["reg_loss_enclosure"][0]) - up + 1e-15


def test_newton_search_does_not_certify_above_its_size_limit(monkeypatch) -> None:
    from checker.core.model import Instance
    from checker.stationary import upper

    monkeypatch.setattr(upper, "MAX_CERTIFY_PARAMS", 7)  # the d3 point has 2 (3 + 1) = 8 parameters
    s = upper.search_failing(Instance.from_file(D3_REFERENCE),
                             [{"size": 3.0, "stop_reason": "precision-floor", **D3_SPURIOUS_START}], [])
    assert s.gaps == [] and s.points[0]["certified"] is None and "8 parameters" in s.points[0]["why"]
