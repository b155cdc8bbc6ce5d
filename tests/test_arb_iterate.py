"""The mp engine with its iterate kept in Arb (``MpEngine(iterate="arb")``, ``make_engine("mp-arb")``).

Reference everywhere: the default mp engine (``MpEngine``, iterate in mpf), whose
objective is tested against quadrature, Monte Carlo and pure mpmath elsewhere.
The Arb-iterate path must give the same numbers up to rounding at the working
precision: its evaluation (``objective.evaluate_work`` with the pair matrices
contracted as Arb matrices, ``objective._loss_parts_matrix``) and its
gradient-descent runs (``checker.dynamics.gd``), whose results, history and
checkpoints must have the default's format.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given, strategies as st

from checker.core import objective
from checker.core.engines import MpEngine, make_engine
from checker.core.errors import CheckerError
from checker.core.io import read_json
from checker.core.model import Instance
from checker.core.problem import Problem
from checker.dynamics import gd
from tests import strategies as S
from tests.test_gd import ONE_TEACHER, SCHEDULE, assert_same_run, exact_gap, strings
from tests.tolerance import assert_close, assert_close_scaled, mass_scale

FIELDS = ("loss", "reg_loss", "grad_a", "grad_W", "loss_grad_a", "loss_grad_W")


def test_engine_names_and_validation():
    e = make_engine("mp-arb", 40)
    assert isinstance(e, MpEngine) and e.name == "mp" and e.iterate == "arb" and e.dps == 40
    assert e.work.matrix_form and not make_engine("mp").work.matrix_form
    assert make_engine("mp").iterate == "mpf" and "Arb iterate" in e.describe()
    with pytest.raises(CheckerError, match="unknown mp iterate"):
        MpEngine(30, iterate="quad")
    with pytest.raises(CheckerError, match="Arb backend only"):
        MpEngine(30, backend="mpmath", iterate="arb")


def _in_work(p: Problem) -> tuple:
    e = p.engine
    with e.context():
        return tuple(e.to_work(x) for x in (p.a, p.W, p.a_star, p.W_star, p.lam))


def _evaluate_arb(p: Problem) -> objective.Evaluation:
    """The Arb-iterate evaluation of p's student, converted to mpf for comparison."""
    e = p.engine
    a, W, a_star, W_star, lam = _in_work(p)
    with e.context():
        ev = objective.evaluate_work(e, p.activation, a, W, a_star, W_star, lam)
        return objective.Evaluation(*(e.from_work(getattr(ev, f)) for f in FIELDS))


def _assert_agrees(inst: Instance, dps: int) -> None:
    old = Problem.from_instance(inst, MpEngine(dps))
    new = Problem.from_instance(inst, MpEngine(dps, iterate="arb"))
    ref, got = old.evaluate(), _evaluate_arb(new)
    # Tolerance: both paths compute the same norms, unit rows and Gram entries t (the same
    # functions; t from the same unit rows).  They differ (i) in the angle route where |t| <= 0.9:
    # sqrt(1 - t^2) and atan2(sqrt(1 - t^2), t) against sqrt(2 -+ 2t) and 2 atan2(a, b), each a
    # function of the same t computed with at most 7 roundings, conditioned by at most
    # 1 / sqrt(1 - 0.9^2) < 2.3: phi and sin phi within 32 ulps (|phi| <= pi); and (ii) in the order
    # of the roundings of the contractions over the n = m + m* neurons (A = A_0 + A_1 phi and
    # kappa = B + A t summed as B cn + <v^, A (cn v^)>, each sum rounded once by Arb's dot
    # product, A_0, A_1, B_1 with a few roundings each).  Every term of L is at most S^2
    # (S = mass_scale) and every term of a gradient entry at most 2 S max(1, |a_j|, ||w_j||); a
    # few roundings per term at the working precision (2^-work_prec), and the 32 ulps of (i) per
    # term times the kernel's Lipschitz factor in (phi, sin phi) (<= 1), bound the difference by
    # 16 n ulps of that scale (n >= 2).  (Measured on random and near-threshold instances: below
    # 0.2 n ulps.)
    n = len(inst.student_a) + len(inst.teacher_a)
    with old.engine.context():
        S2 = (1 + mass_scale(old)) ** 2
        size = max([1] + [abs(x) for x in old.a] + [mpmath.sqrt(sum(x * x for x in w)) for w in old.W])
        ulp = mpmath.mpf(2) ** -old.engine.work_prec
        tol = 16 * n * ulp * S2 * 2 * size
    for f in FIELDS:
        x = getattr(got, f)
        assert all(isinstance(v, mpmath.mpf) for v in np.asarray(x, dtype=object).ravel())
        assert_close(x, getattr(ref, f), abs_=tol, what=f"arb iterate vs mp {f} at {dps} digits")


@given(teacher=S.teachers(max_d=5, max_m_star=3), seed=st.integers(0, 2**32 - 1), dps=S.precisions(min_dps=20, max_dps=60),
       data=st.data())
def test_evaluation_agrees_with_the_mp_engine(teacher, seed, dps, data):
    student = data.draw(S.random_students(d=teacher.d, min_m=1, max_m=6))
    inst = Instance.create(activation=teacher.activation, teacher_a=list(teacher.a),
                           teacher_W=[list(r) for r in teacher.W], student_a=list(student.a),
                           student_W=[list(r) for r in student.W], lam="0.01", normalize_teacher=True)
    _assert_agrees(inst, dps)


@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_evaluation_agrees_on_close_pairs_and_zero_neurons(activation):
    # Both angle routes (two nearly collinear rows, 1 - t ~ 1e-19; a row opposite a teacher) and a
    # zero neuron (k(0, v) = 0, gradient 0 by convention): the paths share them, so they agree.
    rng = np.random.default_rng(3)
    W = np.vstack([rng.normal(size=(3, 4)), np.ones((1, 4)), np.ones((1, 4)) + 1e-9, np.zeros((1, 4)),
                   -np.eye(4)[:1] * 0.7])
    inst = Instance.create(activation=activation, teacher_a=["1.2", "-0.8"], teacher_W=np.eye(4)[:2].tolist(),
                           student_a=[f"{x:.17g}" for x in rng.normal(size=len(W))],
                           student_W=[[f"{x:.17g}" for x in r] for r in W], lam="0.01")
    _assert_agrees(inst, 50)


@pytest.mark.parametrize("activation", ["relu", "abs"])
@pytest.mark.parametrize("cosine", ["0.9", "-0.9", "0.8999999", "-0.9000001", "0", "0.3"])
def test_evaluation_agrees_on_both_sides_of_the_route_threshold(activation, cosine):
    # Students at the given cosine to a teacher row, on either side of accurate_t = 0.9 (the
    # one-root Gram route against the vector route) and away from it: the same numbers as the
    # mp engine (whose angles take sqrt(2 -+ 2t) or the vectors) to the tolerance of _assert_agrees.
    t = mpmath.mpf(cosine)
    with mpmath.workdps(40):
        s = mpmath.sqrt(1 - t * t)
        rows = [[t, s, 0], [t, 0, s], [s, t, 0]]
    inst = Instance.create(activation=activation, teacher_a=["1", "-0.7"], teacher_W=[["1", "0", "0"], ["0", "1", "0"]],
                           student_a=["0.8", "-0.5", "0.3"],
                           student_W=[[mpmath.nstr(x, 30) for x in r] for r in rows], lam="0.01")
    _assert_agrees(inst, 50)


def test_the_default_evaluation_is_evaluate_work_between_exact_conversions():
    # evaluate(x) = from_work(evaluate_work(to_work(x))), entry for entry (the refactor of evaluate).
    inst = Instance.create(teacher_a=["1", "-0.5"], teacher_W=[["1", "0", "0"], ["0", "1", "0"]],
                           student_a=["0.7", "-0.4", "0.2"],
                           student_W=[["0.9", "0.1", "0"], ["0.1", "0.8", "0.2"], ["0.3", "-0.2", "0.5"]], lam="0.05")
    p = Problem.from_instance(inst, MpEngine(40))
    a, W, a_star, W_star, lam = _in_work(p)
    with p.engine.context():
        ev = objective.evaluate_work(p.engine, p.activation, a, W, a_star, W_star, lam)
        ref = p.evaluate()
        for f in FIELDS:
            got = np.asarray(p.engine.from_work(getattr(ev, f)), dtype=object).ravel()
            assert list(got) == list(np.asarray(getattr(ref, f), dtype=object).ravel()), f


def test_evaluate_work_is_evaluate_for_float64():
    p = Problem.from_instance(ONE_TEACHER, make_engine("float64"))
    ev, ref = p.evaluate_work(p.a, p.W, lam=p.lam), p.evaluate()
    assert all(np.array_equal(getattr(ev, f), getattr(ref, f)) for f in FIELDS)


# --------------------------------------------------------------------------- gradient descent
@pytest.mark.parametrize("train", ["both", "first", "second"])
def test_gd_iterates_agree_with_the_mp_engine(train):
    # The same run in both iterates.  Each step differs by a few ulps at the working precision
    # (Arb rounds midpoints toward zero, mpmath to nearest; the contractions round in another
    # order), and the steps of a descent at eta < 1/beta do not amplify them by more than a
    # modest factor over 60 steps: the runs must agree to the engine's dps digits (its 10 guard
    # digits absorb the accumulation; measured: 5e-60 apart after 200 steps at 60 working digits).
    dps = 30
    old = Problem.from_instance(ONE_TEACHER, MpEngine(dps))
    new = Problem.from_instance(ONE_TEACHER, MpEngine(dps, iterate="arb"))
    rules = gd.StopRules(max_steps=60, gap_every=5, record_every=5)
    r_old = gd.run_gd(old, old.eta, schedule=SCHEDULE, gap_fn=exact_gap, stop=rules, progress=False, train=train)
    r_new = gd.run_gd(new, new.eta, schedule=SCHEDULE, gap_fn=exact_gap, stop=rules, progress=False, train=train)
    assert all(isinstance(x, mpmath.mpf) for x in np.concatenate([r_new.a, r_new.W.ravel()]))
    assert isinstance(r_new.lam, mpmath.mpf)
    assert_close_scaled(r_new.a, r_old.a, digits=dps, what="a")
    assert_close_scaled(r_new.W, r_old.W, digits=dps, what="W")
    assert (r_new.steps, r_new.stop_reason, r_new.lam_changes) == (r_old.steps, r_old.stop_reason, r_old.lam_changes)
    assert r_new.increases == r_old.increases
    assert len(r_new.history) == len(r_old.history)
    for h_new, h_old in zip(r_new.history, r_old.history):
        # float64 summaries of numbers equal to 30 digits: equal to float64 rounding
        for f in ("lam", "loss", "reg_loss", "gap", "grad_norm", "max_abs_balance"):
            x, y = getattr(h_new, f), getattr(h_old, f)
            assert (x is None and y is None) or abs(x - y) <= 4e-16 * max(abs(y), 1e-300) + 1e-300, f
        # the balance residual is itself rounding noise of the working precision in both
        assert h_new.balance_identity_residual <= 1e-35 and h_old.balance_identity_residual <= 1e-35


def test_checkpoint_format_is_the_mp_engines_and_resume_is_exact(tmp_path):
    # The same checkpoint format (keys, engine record, decimal strings that read back exactly),
    # and a resumed Arb-iterate run replays the same arithmetic: bit for bit the uninterrupted run.
    def p_new() -> Problem:
        return Problem.from_instance(ONE_TEACHER, make_engine("mp-arb", 30))

    def rules(n: int) -> gd.StopRules:
        return gd.StopRules(max_steps=n, gap_every=5, record_every=5)

    old = Problem.from_instance(ONE_TEACHER, make_engine("mp", 30))
    ck_old, ck_new = tmp_path / "old.json", tmp_path / "new.json"
    gd.run_gd(old, old.eta, schedule=SCHEDULE, gap_fn=exact_gap, stop=rules(20), checkpoint=ck_old, progress=False)
    p = p_new()
    first = gd.run_gd(p, p.eta, schedule=SCHEDULE, gap_fn=exact_gap, stop=rules(20), checkpoint=ck_new,
                      progress=False)
    d_old, d_new = read_json(ck_old, "checkpoint"), read_json(ck_new, "checkpoint")
    assert d_new.keys() == d_old.keys() and d_new["state"].keys() == d_old["state"].keys()
    assert d_new["engine"] == d_old["engine"] == {"name": "mp", "dps": 30}
    assert d_new["eta"] == d_old["eta"] and d_new["problem"] == d_old["problem"]
    assert all(isinstance(x, str) for x in d_new["state"]["a"])
    assert strings(p, first)  # the result's arrays are mpf with full-precision strings
    straight = gd.run_gd(p_new(), p.eta, schedule=SCHEDULE, gap_fn=exact_gap, stop=rules(45), progress=False)
    resumed = gd.run_gd(p_new(), p.eta, schedule=SCHEDULE, gap_fn=exact_gap, stop=rules(45),
                        resume=gd.load_checkpoint(ck_new, p_new()), progress=False)
    assert_same_run(p, resumed, straight)


def test_hybrid_run_with_the_arb_iterate_matches_the_mp_engine():
    # checker.dynamics.hybrid: float64 steps to float64's floor, then the high-precision engine from
    # that iterate.  The float64 phase is the same in both (same problem numbers); the mp phase
    # differs by rounding at the working precision only (test above): the ends agree to 25 digits
    # relative to the largest entry, far below float64's 1e-16 that the switch carries in.
    from checker.dynamics import hybrid

    inst = Instance.create(teacher_a=["1", "-0.6"], teacher_W=[["1", "0", "0"], ["0", "1", "0"]],
                           student_a=["0.6", "0.5", "-0.4"],
                           student_W=[["0.5", "0.2", "0"], ["0.4", "-0.1", "0.1"], ["0.1", "0.5", "0.1"]],
                           lam="0.05", eta="0.5")
    stop = gd.StopRules(max_steps=700, gap_every=50)
    ends = [hybrid.run_hybrid(p, p.eta, stop=stop, gap_fn=lambda q, a, W, lam: 1.0, progress=False)
            for p in (Problem.from_instance(inst, make_engine(n, 30)) for n in ("mp", "mp-arb"))]
    assert ends[0].steps == ends[1].steps == 700
    assert all(isinstance(x, mpmath.mpf) for x in ends[1].a)
    assert_close_scaled(ends[1].a, ends[0].a, digits=25, what="a")
    assert_close_scaled(ends[1].W, ends[0].W, digits=25, what="W")
