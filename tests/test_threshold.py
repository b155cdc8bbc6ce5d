"""The threshold search: exact geometry of the families, bisection on a synthetic oracle,
the search logic on synthetic trials, and the command line's bad inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from checker.core.engines import Float64Engine
from checker.core.errors import CheckerError
from checker.core.model import line_or_ray_angle
from checker.commands.presets import load_run_file
from checker.core.problem import Problem
from checker.studies import families as fam
from checker.commands import threshold as thr_cmd
from checker.studies import threshold as thr
from checker.studies.scaling import PointSpec, start_instance
from tests.tolerance import assert_close

REFERENCE = Path(__file__).resolve().parent.parent / "examples" / "threshold-reference.json"

#: Generated instances the family checks run on (cheap: no descent, one Hessian estimate each).
SPECS = [PointSpec(), PointSpec(m_star=3, d=4, delta=1.2, seed=3), PointSpec(activation="abs", seed=5),
         PointSpec(m_star=1, d=2, seed=7)]


def _with(inst, a, W):
    # plain floats: Instance.create would write a numpy scalar through repr()
    return inst.replace(student_a=[float(x) for x in a], student_W=[[float(x) for x in r] for r in W])


def _reg(inst) -> tuple[float, float]:
    ev = Problem.from_instance(inst, Float64Engine()).evaluate(with_gradient=False)
    return float(ev.loss), float(ev.reg_loss)


@pytest.fixture(scope="module", params=range(len(SPECS)), ids=lambda i: f"spec{i}")
def student(request):
    inst = start_instance(SPECS[request.param])
    # move each neuron slightly off its teacher (a seeded tilt), so that rotations have their own plane
    st = thr.student_of(inst)
    a, W = fam.rotate(st, 0.05, seed=11)
    return inst, fam.Student(st.activation, a, W, st.a_star, st.W_star, st.radius)


# --------------------------------------------------------------------------- families
@pytest.mark.parametrize("s", [0.0, 0.3, 1.0, 2.5])
def test_rotate_moves_each_near_neuron_away_by_exactly_s(student, s: float) -> None:
    _, st = student
    idx, ang, near = fam._near(st)
    a, W = fam.rotate(st, s, seed=0)
    assert np.array_equal(a, st.a)
    for j in range(len(W)):
        if not near[j]:
            assert np.array_equal(W[j], st.W[j])
            continue
        # reference: the angle recomputed at 30 digits from the float64 rows (independent of the
        # construction); rows are built from cos/sin in float64, so ~1e-15 relative error in W,
        # i.e. ~1e-15 / sin(angle) in the angle: 1e-11 absolute is ample away from 0 and pi.
        got = line_or_ray_angle(W[j], st.W_star[idx[j]], st.activation)
        want = ang[j] + s
        if st.activation == "abs":
            want = min(want, math.pi - want)
        assert_close(got, want, abs_=1e-11, what=f"angle of neuron {j}")
        assert_close(np.linalg.norm(W[j]), np.linalg.norm(st.W[j]), rel=1e-14, what="norm kept")


@pytest.mark.parametrize("s", [0.1, 1.0, 2.0])
def test_far_adds_one_balanced_neuron_of_the_given_mass_away_from_every_teacher(student, s: float) -> None:
    _, st = student
    a, W = fam.perturb(st, "far", s, seed=0)
    assert np.array_equal(a[:-1], st.a) and np.array_equal(W[:-1], st.W)
    mass = abs(a[-1]) * np.linalg.norm(W[-1])
    # reference: s times sum |a*| by definition of the family; sqrt then square: a few ulps
    assert_close(mass, s * np.abs(st.a_star).sum(), rel=1e-14, what="far mass")
    assert_close(abs(a[-1]), np.linalg.norm(W[-1]), rel=1e-14, what="balanced")
    for t in st.W_star:
        assert line_or_ray_angle(W[-1], t, st.activation) > st.radius


@pytest.mark.parametrize("c", [1.0, 2.0, 10.0])
def test_unbalance_keeps_the_network_function_and_scales_the_layers(student, c: float) -> None:
    inst, st = student
    a, W = fam.unbalance(st, c, seed=0)
    # a_j w_j is the function's parameter: unchanged up to one rounding of the multiply/divide
    assert_close(a[:, None] * W, st.a[:, None] * st.W, rel=1e-15, abs_=1e-300, what="a_j w_j")
    assert_close(np.linalg.norm(W, axis=1), np.linalg.norm(st.W, axis=1) / c, rel=1e-15, what="||w_j||/c")
    ref = _with(inst, st.a, st.W)
    new = _with(inst, a, W)
    (L0, R0), (L1, R1) = _reg(ref), _reg(new)
    # same function: the loss agrees to the rounding of the kernel sums (~1e-15 of its O(1) terms)
    assert_close(L1, L0, abs_=1e-13, what="loss")
    lam = float(inst.lam)
    want = L0 + lam / 2 * (c * c * (st.a ** 2).sum() + (st.W ** 2).sum() / (c * c))
    assert_close(R1, want, rel=1e-12, what="L_lambda = L + weight decay of the scaled layers")


@pytest.mark.parametrize("s", [0.25, 1.0, 3.0])
def test_split_makes_collinear_duplicates_with_signed_masses_1_plus_s_and_minus_s(student, s: float) -> None:
    inst, st = student
    _, _, near = fam._near(st)
    a, W = fam.split(st, s, seed=0)
    pos = len(st.a)
    for j in np.flatnonzero(near):
        S = st.a[j] * np.linalg.norm(st.W[j])
        k = pos
        pos += 1
        assert_close(a[j] * np.linalg.norm(W[j]), (1 + s) * S, rel=1e-14, what="signed mass (1+s)S")
        assert_close(a[k] * np.linalg.norm(W[k]), -s * S, rel=1e-14, what="signed mass -sS")
        assert line_or_ray_angle(W[j], W[k], "relu") < 1e-7  # same ray (float64 sqrt scalings only)
    assert pos == len(a)
    ref = _with(inst, st.a, st.W)
    new = _with(inst, a, W)
    (L0, _), (L1, _) = _reg(ref), _reg(new)
    assert_close(L1, L0, abs_=1e-12, what="the function is unchanged: same loss up to kernel-sum rounding")


def test_families_at_their_lower_end_give_the_reference_back(student) -> None:
    _, st = student
    for name in ("rotate", "far", "split", "unbalance"):
        a, W = fam.perturb(st, name, fam.FAMILIES[name].lo)
        assert np.array_equal(a, st.a) and np.array_equal(W, st.W), name


def test_perturb_refuses_a_size_below_the_family_range(student) -> None:
    _, st = student
    from checker.core.errors import CheckerError
    with pytest.raises(CheckerError):
        fam.perturb(st, "unbalance", 0.5)
    with pytest.raises(CheckerError):
        fam.perturb(st, "rotate", float("nan"))
    with pytest.raises(CheckerError):
        fam.perturb(st, "nope", 1.0)


# --------------------------------------------------------------------------- bisection
@pytest.mark.parametrize("t_star", [0.013, 0.37, 0.999])
def test_bisection_finds_a_known_threshold_within_its_tolerance(t_star: float) -> None:
    calls: list[float] = []

    def oracle(s: float) -> str:  # synthetic, monotone, independent of GD
        calls.append(s)
        return "converges" if s < t_star else "fails"

    tol = 1e-3
    b = thr.bisect(oracle, 0.0, 1.0, tol=tol, max_trials=40)
    assert b.status == "bracketed"
    assert b.good < t_star <= b.bad and b.bad - b.good <= tol
    assert len(calls) <= 2 + math.ceil(math.log2(1.0 / tol))  # bisection halves the interval per trial


def test_bisection_keeps_an_inconclusive_band_inside_the_bracket() -> None:
    def oracle(s: float) -> str:
        return "converges" if s < 0.4 else ("inconclusive" if s < 0.55 else "fails")

    b = thr.bisect(oracle, 0.0, 1.0, tol=1e-3, max_trials=40)
    assert b.good < 0.4 and b.bad >= 0.55
    assert 0.4 - b.good <= 1e-3
    assert b.inconclusive_inside and all(0.4 <= s < 0.55 for s in b.inconclusive_inside)


def test_bisection_reports_nothing_failing_and_a_failing_reference() -> None:
    b = thr.bisect(lambda s: "converges", 0.0, 2.0, tol=0.01, max_trials=10)
    assert (b.status, b.good, b.bad, len(b.trials)) == ("nothing-fails", 2.0, None, 2)
    b = thr.bisect(lambda s: "fails", 0.0, 2.0, tol=0.01, max_trials=10)
    assert (b.status, b.good, b.bad, len(b.trials)) == ("reference-fails", None, 0.0, 1)
    b = thr.bisect(lambda s: "converges" if s < 1 else "fails", 0.0, 2.0, tol=1e-9, max_trials=5)
    assert len(b.trials) == 5 and b.status == "bracketed"  # the trial budget stops it


# --------------------------------------------------------------------------- search logic (synthetic trials)
def _synthetic(monkeypatch, *, eps0: float, t_star: float, unmet: list[str] | None = None,
               ref_hyps: dict | None = None) -> None:
    """Trials whose gap is 10 s and which fail from s >= t_star: no GD is run."""
    def fake_trial(rf, family, size, cfg, *, eps0, keep=False):
        out = "converges" if size < t_star else "fails"
        t = thr.Trial(size=size, outcome=out, gap0=10 * size, gap0_rigorous=True, loss0=20 * size,
                      final_gap=None, stop_reason="precision-floor", steps=1, seconds=0.0,
                      hypotheses_unmet=list(unmet or []), failed=[] if out == "converges" else ["C2-stalled"],
                      diagnosis=[] if out == "converges" else ["teacher 0 missed"], instance=rf.instance.to_dict())
        return t, None

    monkeypatch.setattr(thr, "run_trial", fake_trial)
    monkeypatch.setattr(thr, "checker_thresholds",
                        lambda rf, cfg: {"eps_0": eps0, "lambda_max": 0.02, "reference_gap0": 0.0,
                                         "hypotheses": ref_hyps or {"H1": True, "H2": True, "H3": True}})


def test_search_reports_gap_and_loss_brackets_and_the_ratio_to_eps0(monkeypatch) -> None:
    _synthetic(monkeypatch, eps0=0.5, t_star=1.0)
    rf = load_run_file(REFERENCE)
    res, _ = thr.find_threshold(rf, "rotate", thr.TrialConfig(), lo=0.0, hi=3.0, rel_tol=1e-3, max_trials=30)
    assert res.status == "bracketed" and not res.counterexample
    lo, hi = res.threshold_gap["lower"], res.threshold_gap["upper"]
    assert lo < 10.0 <= hi and hi - lo <= 10 * 3e-3  # gap = 10 s, bracket in s of width <= 3e-3
    assert res.threshold_loss["lower"] == 2 * lo and res.threshold_loss["upper"] == 2 * hi
    assert res.ratio_to_eps0 == lo / 0.5
    assert res.failure["diagnosis"] == ["teacher 0 missed"]
    d = res.to_dict()
    for key in ("family", "threshold_gap", "threshold_loss", "eps0_checker", "lambda_max_checker",
                "ratio_to_eps0", "failing_run", "version"):
        assert key in d
    json.dumps(d, allow_nan=False)


def test_a_failure_below_eps0_is_a_counterexample_and_exits_1(monkeypatch, tmp_path: Path, capsys) -> None:
    _synthetic(monkeypatch, eps0=5.0, t_star=0.2)  # failing gaps from 2.0 < eps_0 = 5
    out = tmp_path / "r.json"
    code = thr_cmd.main([str(REFERENCE), "--family", "rotate", "--json", str(out), "--no-progress"])
    cap = capsys.readouterr()
    assert code == 1
    assert "COUNTEREXAMPLE" in cap.out and "COUNTEREXAMPLE" in cap.err
    assert json.loads(out.read_text())["counterexample"] is True


def test_a_failure_below_eps0_with_h3_unmet_is_not_a_counterexample(monkeypatch) -> None:
    _synthetic(monkeypatch, eps0=5.0, t_star=0.2, unmet=["H3"])
    res, _ = thr.find_threshold(load_run_file(REFERENCE), "rotate", thr.TrialConfig(), lo=0.0, hi=3.0,
                                max_trials=8)
    assert not res.counterexample
    assert any("H3" in n and "not a counterexample" in n for n in res.notes)


def test_nothing_failing_says_so_and_gives_the_range(monkeypatch, capsys) -> None:
    _synthetic(monkeypatch, eps0=0.1, t_star=math.inf)
    code = thr_cmd.main([str(REFERENCE), "--family", "far", "--range", "0", "1.5", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "nothing fails within the family's range [0, 1.5]" in out
    # only a lower end along this family: never "the threshold is above gap X" for every start
    assert "the threshold is above gap" not in out
    assert "threshold along the far family is above" in out and "other directions may fail" in out


def test_the_failing_run_file_is_a_theorem1_run_file(tmp_path: Path) -> None:
    rf = load_run_file(REFERENCE)
    inst = thr.perturbed_instance(rf.instance, "unbalance", 3.0)
    t = thr.Trial(3.0, "fails", 1.0, True, 0.1, 0.5, "diverged", 10, 0.1, ["H3"], ["C1"], ["step too large"],
                  inst.to_dict())
    res = thr.ThresholdResult("1.0", "x", "unbalance", "f", {"lo": 1, "hi": 30}, {}, "float64", {}, "bracketed",
                              {}, {}, {}, 0.1, 0.01, 0.01, 1.0, 1.0, False, None, {}, [], {}, [], "")
    from checker.core.io import write_json_atomic
    path = tmp_path / "failing.json"
    write_json_atomic(path, thr.failing_run_file(t, thr.TrialConfig(), res))
    back = load_run_file(path)
    assert back.instance == inst and back.run["force"] is True and back.run["schedule"] == "fixed"


# --------------------------------------------------------------------------- command line
@pytest.mark.parametrize("args, needle", [
    ([str(REFERENCE), "--family", "spin"], "unknown family"),
    ([str(REFERENCE)], "--family"),
    (["/nonexistent/ref.json", "--family", "rotate"], "nonexistent"),
    ([str(REFERENCE), "--family", "rotate", "--range", "2", "1"], "--range"),
    ([str(REFERENCE), "--family", "unbalance", "--range", "0.5", "2"], "--range"),
    ([str(REFERENCE), "--family", "rotate", "--max-trials", "1"], "--max-trials"),
    ([str(REFERENCE), "--family", "rotate", "--rel-tol", "0"], "--rel-tol"),
    ([str(REFERENCE), "--family", "rotate", "--trial-time", "-1"], "--trial-time"),
    ([str(REFERENCE), "--family", "rotate", "--dps", "30"], "--dps"),
    ([str(REFERENCE), "--family", "rotate", "--steps", "0"], "--steps"),
    ([str(REFERENCE), "--family", "rotate", "--json", "/"], "--json"),
    ([str(REFERENCE), "--family", "rotate", "--step", "tiny"], "--step"),
    (["preset:nope", "--family", "rotate"], "unknown preset"),
    # one seed range and one --dps range for every command (checker.commands.options)
    ([str(REFERENCE), "--family", "rotate", "--seed", "-1"], "--seed"),
    ([str(REFERENCE), "--family", "rotate", "--seed", "99999999999999999999"], "--seed"),
    ([str(REFERENCE), "--family", "rotate", "--engine", "mp", "--dps", "5000"], "--dps"),
])
def test_bad_inputs_end_in_one_line_with_exit_2(args, needle, capsys, monkeypatch) -> None:
    # no trial may start: a bad input is refused before any work
    monkeypatch.setattr(thr, "checker_thresholds", lambda *a, **k: pytest.fail("work started"))
    code = thr_cmd.main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_an_instance_without_a_step_size_is_refused(tmp_path: Path, capsys) -> None:
    data = json.loads(REFERENCE.read_text())["instance"]
    data.pop("eta")
    p = tmp_path / "noeta.json"
    p.write_text(json.dumps(data))
    code = thr_cmd.main([str(p), "--family", "rotate"])
    err = capsys.readouterr().err
    assert code == 2 and "eta" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- end to end (slow)
@pytest.mark.slow
def test_unbalance_search_on_the_reference_brackets_and_saves_a_reproducible_failing_run(tmp_path: Path,
                                                                                          capsys) -> None:
    out = tmp_path / "u.json"
    code = thr_cmd.main([str(REFERENCE), "--family", "unbalance", "--max-trials", "5", "--trial-time", "60",
                     "--json", str(out), "--plots", str(tmp_path / "fig"), "--no-progress"])
    res = json.loads(out.read_text())
    assert code in (0, 1)
    assert res["trials"][0]["outcome"] == "converges"  # the reference is near the optimum
    if res["failing_run"]:
        rf = load_run_file(res["failing_run"])
        assert rf.run["force"] is True
        assert res["failure"]["figures"]


def test_ctrl_c_writes_the_partial_result_and_exits_130(monkeypatch, tmp_path: Path, capsys) -> None:
    _synthetic(monkeypatch, eps0=0.1, t_star=1.0)
    fake, calls = thr.run_trial, [0]

    def interrupted_third(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return fake(*args, **kwargs)

    monkeypatch.setattr(thr, "run_trial", interrupted_third)
    out = tmp_path / "r.json"
    code = thr_cmd.main([str(REFERENCE), "--family", "rotate", "--json", str(out), "--no-progress"])
    capsys.readouterr()
    res = json.loads(out.read_text())
    assert code == 130 and res["interrupted"] is True and len(res["trials"]) == 2
    assert res["threshold_size"] == {"lower": 0.0, "upper": 3.0}  # the two completed trials


def test_reference_probe_reads_h4_even_when_h3_fails_first(tmp_path):
    # T1 stops at the first unmet hypothesis; the threshold probe must still evaluate H4
    # (its gap is the reference point of every bracket).  A step eta = 5 fails H3 on the
    # README example (beta_0 ~ 1), which comes before H4 in T1's order.
    rf = load_run_file(Path(__file__).resolve().parents[1] / "examples" / "readme.json")
    rf = type(rf)(rf.instance.replace(eta="5"), rf.run, rf.description, rf.source)
    out = thr.checker_thresholds(rf, thr.TrialConfig())
    assert out["hypotheses"]["H3"] is False
    assert out["hypotheses"]["H4"] is not None and out["reference_gap0"] is not None


# --------------------------------------------------------------------------- step policy
def test_safe_step_is_the_smaller_of_eta_and_one_over_beta0(monkeypatch) -> None:
    # Reference: the rule itself, min(eta, 1 / beta_0), with beta_0 replaced by known
    # values (the estimate of beta_0 has its own tests in test_smoothness.py).
    import checker.geometry.smoothness as sm

    inst = load_run_file(REFERENCE).instance.replace(eta="0.5")
    for beta0, want in ((4.0, 0.25), (1.0, 0.5), (0.5, 0.5)):
        monkeypatch.setattr(sm, "hessian_norm_estimate", lambda *a, b=beta0, **k: b)
        assert thr.safe_eta(inst) == want


def test_a_safe_trial_runs_with_the_smaller_step_and_records_it(monkeypatch) -> None:
    # Reference: the instance handed to the T1 check.  Under "safe" an unbalanced start
    # (beta_0 pinned at 10 here) must run with eta = 1/10 instead of the reference's step,
    # and the trial must record the step it ran with; under "instance" the step is kept.
    import checker.geometry.smoothness as sm
    import checker.theorem.check as t1

    seen: list[str] = []

    class Stop(Exception):
        pass

    def fake_check(rf, options):
        seen.append(rf.instance.eta)
        raise Stop

    monkeypatch.setattr(sm, "hessian_norm_estimate", lambda *a, **k: 10.0)
    monkeypatch.setattr(t1, "TheoremCheck", fake_check)
    rf = load_run_file(REFERENCE)
    for step in ("safe", "instance"):
        with pytest.raises(Stop):
            thr.run_trial(rf, "unbalance", 3.0, thr.TrialConfig(step=step), eps0=1e-4)
    assert float(seen[0]) == 0.1 and seen[1] == rf.instance.eta
    with pytest.raises(CheckerError, match="--step"):
        thr.TrialConfig(step="tiny").validate()


def test_the_reference_is_probed_and_tried_once_for_all_families(monkeypatch) -> None:
    # Reference: a count of the trials run.  Every family's lower end gives the reference
    # back bit for bit, so with a shared dict the reference trial runs once for four
    # families; every other size runs its own trial.
    runs: list[tuple[str, float]] = []
    probes: list[int] = []

    def fake_trial(rf, family, size, cfg, *, eps0, keep=False):
        runs.append((family, size))
        t = thr.Trial(size=size, outcome="converges", gap0=1.0 + size, gap0_rigorous=True, loss0=1.0,
                      final_gap=None, stop_reason="gap-target", steps=1, seconds=0.0, hypotheses_unmet=[],
                      failed=[], diagnosis=[], instance=rf.instance.to_dict())
        return t, None

    monkeypatch.setattr(thr, "run_trial", fake_trial)
    monkeypatch.setattr(thr, "checker_thresholds",
                        lambda rf, cfg: probes.append(1) or {"eps_0": 1e-3, "lambda_max": 0.1, "hypotheses": {}})
    rf, shared = load_run_file(REFERENCE), {}
    for name in ("rotate", "far", "split", "unbalance"):
        res, _ = thr.find_threshold(rf, name, thr.TrialConfig(), max_trials=3, shared=shared)
        assert res.status == "nothing-fails" and len(res.trials) == 2
    assert runs == [("rotate", 0.0), ("rotate", 3.0), ("far", 2.0), ("split", 4.0), ("unbalance", 30.0)]
    assert len(probes) == 1  # the checker's eps_0 for the reference: once


# --------------------------------------------------------------------------- classification of a trial
class _Item:
    def __init__(self, id, holds, value="0.5", detail="", rigorous=True):
        self.id, self.holds, self.value, self.detail, self.rigorous = id, holds, value, detail, rigorous


class _FakeReport:
    def __init__(self, c1, c2, stop, final_gap, verdict="ok", h4_value="0.5"):
        self.hypotheses = [_Item("H3", True), _Item("H4", True, value=h4_value)]
        self.conclusions = [_Item("C1", c1, detail="12 step(s) increased L_lambda"), _Item("C2", c2)]
        self.run = {"stop_reason": stop, "steps": 1200, "history": [{"loss": 0.1}]}
        self.final = {"gap_upper": repr(final_gap)}
        self.constants = {}
        self.verdict = verdict


def _classify(monkeypatch, report) -> str:
    import checker.theorem.check as t1

    class FakeCheck:
        def __init__(self, rf, options):
            pass

        def run(self):
            return report

    monkeypatch.setattr(t1, "TheoremCheck", FakeCheck)
    trial, _ = thr.run_trial(load_run_file(REFERENCE), "unbalance", 1.5, thr.TrialConfig(), eps0=1e-4)
    return trial.outcome


def test_reaching_the_gap_target_with_l_lambda_rising_is_non_monotone_not_a_failure(monkeypatch) -> None:
    # The audit's case: final gap 6.4e-10 after 1,200 steps with 12 increases of L_lambda (C1 fails,
    # C2 holds): descent is not monotone at that step, GD did converge.
    assert _classify(monkeypatch, _FakeReport(False, True, "gap-target", 6.4e-10)) == "non-monotone"
    assert _classify(monkeypatch, _FakeReport(True, True, "gap-target", 6.4e-10)) == "converges"
    # a failure to converge: stalled on a stationary point far above the target
    assert _classify(monkeypatch, _FakeReport(False, None, "precision-floor", 0.1)) == "fails"
    # the budget ran out with L_lambda rising: neither way
    assert _classify(monkeypatch, _FakeReport(False, None, "max-steps", 1e-6)) == "inconclusive"


def test_a_t1_run_interrupted_before_the_descent_is_an_interrupt_not_an_error(monkeypatch) -> None:
    # H4's value is "-" when the T1 run was interrupted before computing it
    with pytest.raises(KeyboardInterrupt):
        _classify(monkeypatch, _FakeReport(None, None, "", 0.0, verdict="interrupted", h4_value="-"))


def test_non_monotone_trials_count_as_converging_in_the_bracket() -> None:
    b = thr.bisect(lambda s: "converges" if s < 0.5 else ("non-monotone" if s < 1.0 else "fails"), 0.0, 2.0,
                   tol=1e-6, max_trials=40)
    assert b.status == "bracketed" and b.good < 1.0 <= b.bad and b.bad - b.good < 1e-5


def test_non_monotone_is_reported_apart_from_the_threshold(monkeypatch) -> None:
    def fake_trial(rf, family, size, cfg, *, eps0, keep=False):
        out = "converges" if size < 0.5 else "non-monotone" if size < 1.0 else "fails"
        t = thr.Trial(size=size, outcome=out, gap0=10 * size, gap0_rigorous=True, loss0=20 * size,
                      final_gap=1e-10, stop_reason="gap-target", steps=1, seconds=0.0, hypotheses_unmet=[],
                      failed={"converges": [], "non-monotone": ["C1"], "fails": ["C2-stalled"]}[out],
                      diagnosis=[], instance=rf.instance.to_dict(), eta=0.3)
        return t, None

    monkeypatch.setattr(thr, "run_trial", fake_trial)
    monkeypatch.setattr(thr, "checker_thresholds", lambda rf, cfg: {
        "eps_0": 0.5, "lambda_max": 0.02, "hypotheses": {"H1": True, "H2": True, "H3": True}})
    res, _ = thr.find_threshold(load_run_file(REFERENCE), "rotate", thr.TrialConfig(), lo=0.0, hi=3.0,
                                rel_tol=1e-3, max_trials=30)
    assert res.status == "bracketed" and res.threshold_gap["upper"] >= 10.0 > res.threshold_gap["lower"] >= 9.9
    assert 0.5 <= res.non_monotone["size"] < 1.0  # the smallest non-monotone size tried
    assert any("non-monotone" in n and "not where the basin ends" in n for n in res.notes)


def test_no_ratio_to_eps0_where_h1_h3_fail_at_the_reference(monkeypatch) -> None:
    # The audit's case: lambda above lambda_max (H2 unmet) while eps_0 > 0.
    _synthetic(monkeypatch, eps0=0.5, t_star=1.0, ref_hyps={"H1": True, "H2": False, "H3": True})
    res, _ = thr.find_threshold(load_run_file(REFERENCE), "rotate", thr.TrialConfig(), lo=0.0, hi=3.0,
                                max_trials=8)
    assert res.ratio_to_eps0 is None and res.ratio_status == "outside T1" and res.t1_at_reference is False
    assert any("H2 unmet at the reference" in n for n in res.notes)


def test_a_bracket_whose_lower_end_is_the_reference_prints_no_ratio(monkeypatch, capsys) -> None:
    # Everything perturbed fails: the lower end is the unperturbed start (rotate's lower end 0).
    _synthetic(monkeypatch, eps0=0.5, t_star=1e-12)
    code = thr_cmd.main([str(REFERENCE), "--family", "rotate", "--range", "0", "1", "--max-trials", "4",
                         "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "/ eps_0 =" not in out
    assert "lower end is the unperturbed reference start" in out


def test_ctrl_c_while_probing_the_reference_writes_the_partial_result_and_exits_130(monkeypatch, tmp_path: Path,
                                                                                   capsys) -> None:
    # the audit: an interrupt before the first trial exited 130 without the partial JSON
    def interrupted(rf, cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(thr, "checker_thresholds", interrupted)
    monkeypatch.setattr(thr, "run_trial", lambda *a, **k: pytest.fail("a trial ran after the interrupt"))
    out = tmp_path / "r.json"
    code = thr_cmd.main([str(REFERENCE), "--family", "rotate", "--json", str(out), "--no-progress"])
    cap = capsys.readouterr()
    res = json.loads(out.read_text())
    assert code == 130 and res["interrupted"] is True and res["trials"] == [] and "internal error" not in cap.err
