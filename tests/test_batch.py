"""A batch of students at once: ``objective.evaluate_batch`` and ``dynamics.batch.run_batch``.

The reference everywhere is the single-student code run on each start alone
(``objective.evaluate``, ``gd.run_gd``), and the comparison is exact
(np.array_equal, ==): the batch is meant to be the same computation, not an
approximation of it, so there is no tolerance.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from checker.core import objective
from checker.core.engines import make_engine
from checker.core.errors import CheckerError
from checker.core.problem import Problem
from checker.dynamics import batch, gd
from tests import strategies as S

F64 = make_engine("float64")
FIELDS = ("loss", "reg_loss", "grad_a", "grad_W", "loss_grad_a", "loss_grad_W")


def assert_batch_is_single(activation, a, W, a_star, W_star, lam, with_gradient=True):
    """Row i of evaluate_batch is bit for bit evaluate on student i (or both refuse it)."""
    be = objective.evaluate_batch(F64, activation, a, W, a_star, W_star, lam, with_gradient=with_gradient)
    for i in range(len(a)):
        try:
            with np.errstate(all="ignore"):  # evaluate's own finiteness test on an overflowing student
                ev = objective.evaluate(F64, activation, a[i], W[i], a_star, W_star, lam,
                                        with_gradient=with_gradient)
        except objective.NonFiniteResult:
            assert not be.finite[i], f"student {i}: evaluate refuses it, the batch calls it finite"
            continue
        assert be.finite[i], f"student {i}: finite alone, not in the batch"
        for f in FIELDS:
            assert np.array_equal(getattr(ev, f), getattr(be, f)[i]), f"student {i}: {f} differs"
    return be


def hard_batch(rng, m, W_star, B):
    """Random students with the cases evaluate treats specially, one kind per row."""
    k, d = W_star.shape
    a = rng.standard_normal((B, m))
    W = rng.standard_normal((B, m, d))
    for i in range(B):
        kind = i % 8
        if kind == 1:  # close pairs with a teacher (vector route of the half-angle norms)
            W[i, 0] = W_star[i % k] * 1.7 + 1e-9 * rng.standard_normal(d)
        elif kind == 2 and m > 1:  # two students nearly opposite, and nearly equal
            W[i, 1] = -0.3 * W[i, 0] + 1e-13 * rng.standard_normal(d)
            W[i, -1] = 2.0 * W[i, 0] + 1e-15 * rng.standard_normal(d)
        elif kind == 3:  # a zero neuron
            W[i, 0] = 0.0
        elif kind == 4:  # a tiny row: evaluate scales this student's rows by powers of two
            W[i, -1] *= 1e-160
        elif kind == 5:  # a huge row: scaled, and overflows
            W[i, 0] *= 1e155
        elif kind == 6:  # exactly a teacher row, exactly opposite to it
            W[i, 0] = W_star[0]
            W[i, -1] = -W_star[0]
    return a, W


@pytest.mark.parametrize("activation", ["relu", "abs"])
@pytest.mark.parametrize("seed", range(6))
def test_evaluate_batch_is_evaluate_bit_for_bit(activation, seed):
    rng = np.random.default_rng(seed)
    d, k, m = int(rng.integers(2, 9)), int(rng.integers(1, 6)), int(rng.integers(1, 9))
    W_star = rng.standard_normal((k, d))
    W_star /= np.linalg.norm(W_star, axis=1)[:, None]
    a_star = rng.standard_normal(k)
    a, W = hard_batch(rng, m, W_star, 24)
    for lam in (0.0, 0.03):
        assert_batch_is_single(activation, a, W, a_star, W_star, lam)
    assert_batch_is_single(activation, a, W, a_star, W_star, 0.03, with_gradient=False)


def test_evaluate_batch_orthonormal_teachers_and_overflow():
    """The landscape's instances (k orthonormal teachers, a = 1) and a student that overflows float64."""
    rng = np.random.default_rng(11)
    k = 8
    a = np.ones((40, k))
    W = rng.standard_normal((40, k, k)) / math.sqrt(k)
    W[7] *= 1e160  # L ~ 1e320: evaluate raises NonFiniteResult
    be = assert_batch_is_single("relu", a, W, np.ones(k), np.eye(k), 0.0)
    assert not be.finite[7] and be.finite[np.arange(40) != 7].all()


@given(inst=S.instances(student="near", student_options={"max_angle": 1e-6, "max_split": 3, "max_small": 2}),
       seed=st.integers(0, 2**32 - 1))
def test_evaluate_batch_near_students(inst, seed):
    """Students near the optimum (many close pairs), with perturbations from 1e-14 to 1, in one batch."""
    p = Problem.from_instance(inst, F64)
    rng = np.random.default_rng(seed)
    scales = np.array([0.0, 1e-14, 1e-9, 1e-4, 1.0])
    a = p.a[None, :] * (1 + scales[:, None] * rng.standard_normal((5, len(p.a))))
    W = p.W[None] + scales[:, None, None] * rng.standard_normal((5,) + p.W.shape)
    assert_batch_is_single(p.activation, a, W, p.a_star, p.W_star, p.lam)


def test_evaluate_batch_in_chunks_and_beyond_one_row_block(monkeypatch):
    """A batch cut into chunks of 3 students, and a width whose single evaluation needs several row
    blocks (then the batch is evaluate student by student): the same bits."""
    rng = np.random.default_rng(9)
    W_star = np.eye(5)[:3]
    a, W = hard_batch(rng, 4, W_star, 10)
    n = 4 + 3
    monkeypatch.setattr(objective, "PAIR_BLOCK_BYTES", objective.pair_bytes(F64, n, n) * 3)
    assert_batch_is_single("relu", a, W, np.ones(3), W_star, 0.05)
    monkeypatch.setattr(objective, "PAIR_BLOCK_BYTES", objective.pair_bytes(F64, 2, n))
    assert_batch_is_single("relu", a, W, np.ones(3), W_star, 0.05)


def test_evaluate_batch_input_layouts():
    """Column-major or strided inputs give the same bits (the batch works on its own row-major copies)."""
    rng = np.random.default_rng(5)
    W_star = np.eye(4)[:3]
    a, W = hard_batch(rng, 5, W_star, 16)
    ref = objective.evaluate_batch(F64, "relu", a, W, np.ones(3), W_star, 0.1)
    for a2, W2 in ((np.asfortranarray(a), np.asfortranarray(W)),
                   (np.repeat(a, 2, axis=0)[::2], np.repeat(W, 2, axis=0)[::2])):
        got = objective.evaluate_batch(F64, "relu", a2, W2, np.ones(3), W_star, 0.1)
        for f in FIELDS:
            assert np.array_equal(getattr(ref, f), getattr(got, f))


def test_evaluate_batch_refuses_other_engines_and_shapes():
    with pytest.raises(CheckerError, match="float64"):
        objective.evaluate_batch(make_engine("mp", 20), "relu", np.ones((1, 1)), np.ones((1, 1, 2)),
                                 np.ones(1), np.eye(2)[:1], 0)
    with pytest.raises(CheckerError, match="expected a"):
        objective.evaluate_batch(F64, "relu", np.ones((2, 1)), np.ones((2, 1, 3)), np.ones(1), np.eye(2)[:1], 0)


# --------------------------------------------------------------------------- gradient descent
def orthonormal_problem(k, lam=0.0, activation="relu"):
    return Problem(engine=F64, activation=activation, a=np.ones(k), W=np.eye(k), a_star=np.ones(k),
                   W_star=np.eye(k), lam=lam, eta=None)


def assert_batch_is_run_gd(p, a0, W0, eta, stop, train):
    """Each start of run_batch ends bit for bit where run_gd from that start alone ends."""
    r = batch.run_batch(p, a0, W0, eta, stop=stop, train=train)
    for i in range(len(a0)):
        g = gd.run_gd(dataclasses.replace(p, a=a0[i], W=W0[i]), eta, stop=stop, train=train, progress=False)
        assert (int(r.steps[i]), r.stop_reason[i]) == (g.steps, g.stop_reason), f"start {i}"
        assert np.array_equal(r.a[i], g.a) and np.array_equal(r.W[i], g.W), f"start {i}: iterate differs"
        last = g.history[-1]
        assert (r.loss[i], r.reg_loss[i]) == (last.loss, last.reg_loss), f"start {i}"
        ev = p.evaluate(g.a, g.W)
        assert r.grad_norm[i] == math.sqrt(gd.grad_norm_sq(train, ev.grad_a, ev.grad_W))
        assert (r.increases[i], r.max_increase[i]) == (g.increases, g.max_increase), f"start {i}"
    return r


def test_run_batch_landscape_protocol_is_run_gd():
    """k = 4 orthonormal teachers, first layer only, lambda 0: starts stop at different steps
    (gradient tolerance), one diverges (a start far out with the protocol's step), one hits the step cap."""
    k = 4
    rng = np.random.default_rng(2)
    a0 = np.ones((7, k))
    W0 = rng.standard_normal((7, k, k)) / math.sqrt(k)
    W0[1] *= 30
    W0[4] *= 1e-3  # starts near 0: slower
    stop = gd.StopRules(max_steps=190, grad_tol=1e-8, gap_every=10**9)
    r = assert_batch_is_run_gd(orthonormal_problem(k), a0, W0, 2.5 / k, stop, "first")
    assert {"grad-tol", "diverged", "max-steps"} <= set(r.stop_reason)
    assert len(set(r.steps[np.array(r.stop_reason) == "grad-tol"])) > 2  # stopped at different steps
    assert np.array_equal(r.a, a0)  # the fixed block is untouched


@pytest.mark.parametrize("train", ["both", "second"])
def test_run_batch_precision_floor_and_weight_decay_is_run_gd(train):
    """lambda > 0, both layers or the second only, the precision floor on (no gradient tolerance)."""
    k = 3
    rng = np.random.default_rng(7)
    p = orthonormal_problem(k, lam=0.01)
    a0 = 1 + 0.3 * rng.standard_normal((5, k))
    W0 = np.eye(k)[None] + 0.2 * rng.standard_normal((5, k, k))
    stop = gd.StopRules(max_steps=1500, gap_every=50)
    r = assert_batch_is_run_gd(p, a0, W0, 0.4, stop, train)
    assert "precision-floor" in r.stop_reason
    if train == "second":
        assert np.array_equal(r.W, W0)


def test_run_batch_random_teacher_is_run_gd():
    """A teacher nobody chose: random unit rows, signed output weights, d != k, abs activation."""
    rng = np.random.default_rng(13)
    k, d, m = 3, 5, 4
    W_star = rng.standard_normal((k, d))
    W_star /= np.linalg.norm(W_star, axis=1)[:, None]
    p = Problem(engine=F64, activation="abs", a=np.ones(m), W=np.ones((m, d)), a_star=np.array([1.0, -0.7, 0.4]),
                W_star=W_star, lam=0.002, eta=None)
    a0 = rng.standard_normal((6, m))
    W0 = rng.standard_normal((6, m, d)) / math.sqrt(d)
    stop = gd.StopRules(max_steps=120, grad_tol=1e-3, gap_every=40)
    assert_batch_is_run_gd(p, a0, W0, 0.05, stop, "both")


def test_run_gd_grad_tol_stops_at_the_first_small_gradient():
    k = 4
    rng = np.random.default_rng(3)
    p = dataclasses.replace(orthonormal_problem(k), W=rng.standard_normal((k, k)) / 2)
    stop = gd.StopRules(max_steps=5000, grad_tol=1e-6, gap_every=10**9)
    g = gd.run_gd(p, 2.5 / k, stop=stop, train="first", progress=False)
    assert g.stop_reason == "grad-tol"
    ev = p.evaluate(g.a, g.W)
    assert math.sqrt(gd.grad_norm_sq("first", ev.grad_a, ev.grad_W)) <= 1e-6
    before = gd.run_gd(p, 2.5 / k, stop=dataclasses.replace(stop, max_steps=g.steps - 1), train="first",
                       progress=False)
    ev = p.evaluate(before.a, before.W)
    assert math.sqrt(gd.grad_norm_sq("first", ev.grad_a, ev.grad_W)) > 1e-6


def test_run_batch_interrupt_returns_the_last_completed_steps(monkeypatch):
    k = 4
    rng = np.random.default_rng(4)
    p = orthonormal_problem(k)
    a0, W0 = np.ones((5, k)), rng.standard_normal((5, k, k)) / 2
    stop = gd.StopRules(max_steps=10_000, grad_tol=1e-12, gap_every=10**9)
    real, calls = objective.evaluate_batch, [0]

    def interrupting(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 40:  # the evaluation of step 39's trial point
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(objective, "evaluate_batch", interrupting)
    r = batch.run_batch(p, a0, W0, 2.5 / k, stop=stop, train="first")
    monkeypatch.undo()
    assert r.stop_reason == ["interrupted"] * 5 and list(r.steps) == [38] * 5
    ref = batch.run_batch(p, a0, W0, 2.5 / k, stop=dataclasses.replace(stop, max_steps=38), train="first")
    assert np.array_equal(ref.W, r.W) and np.array_equal(ref.reg_loss, r.reg_loss)


def test_run_batch_time_budget_and_a_start_that_overflows():
    k = 3
    p = orthonormal_problem(k)
    a0, W0 = np.ones((3, k)), np.stack([np.eye(k) * 0.5] * 3)
    W0[1] *= 1e160  # L_lambda overflows float64 at the start: run_gd refuses it, the batch marks it
    r = batch.run_batch(p, a0, W0, 0.3, stop=gd.StopRules(max_steps=50), train="first")
    assert r.stop_reason == ["max-steps", "diverged", "max-steps"] and list(r.steps) == [50, 0, 50]
    assert np.array_equal(r.W[1], W0[1]) and math.isnan(r.loss[1])
    with pytest.raises(objective.NonFiniteResult):
        gd.run_gd(dataclasses.replace(p, a=a0[1], W=W0[1]), 0.3, stop=gd.StopRules(max_steps=50), train="first",
                  progress=False)
    r = batch.run_batch(p, a0, W0, 0.3, stop=gd.StopRules(max_steps=50, time_budget=0.0), train="first")
    assert r.stop_reason == ["time-budget", "diverged", "time-budget"] and list(r.steps) == [0, 0, 0]


def test_run_batch_refuses_what_it_cannot_do():
    p = orthonormal_problem(2)
    a0, W0 = np.ones((2, 2)), np.ones((2, 2, 2))
    with pytest.raises(CheckerError, match="gap target"):
        batch.run_batch(p, a0, W0, 0.1, stop=gd.StopRules(gap_target=1e-3))
    with pytest.raises(CheckerError, match="fixed"):
        batch.run_batch(p, a0, W0, 0.1, schedule=gd.Schedule("geometric"))
    with pytest.raises(CheckerError, match="expected a0"):
        batch.run_batch(p, a0, np.ones((2, 2, 3)), 0.1)
    with pytest.raises(CheckerError, match="eta"):
        batch.run_batch(p, a0, W0, 0.0)
    with pytest.raises(CheckerError, match="train"):
        batch.run_batch(p, a0, W0, 0.1, train="all")
    mp = Problem.from_instance(S_instance(), make_engine("mp", 20))
    with pytest.raises(CheckerError, match="float64"):
        batch.run_batch(mp, np.ones((1, 1)), np.ones((1, 1, 2)), 0.1)


def test_run_batch_result_to_dict_round_trips_the_iterate():
    k = 2
    r = batch.run_batch(orthonormal_problem(k), np.ones((2, k)), np.eye(k)[None].repeat(2, 0) * 0.9, 0.5,
                        stop=gd.StopRules(max_steps=3), train="first")
    data = r.to_dict()
    assert [s["stop_reason"] for s in data["starts"]] == ["max-steps"] * 2
    assert np.array_equal(np.array([[float(x) for x in row] for row in data["starts"][1]["W"]]), r.W[1])


def S_instance():
    from checker.core.model import Instance

    return Instance.create(activation="relu", teacher_a=["1"], teacher_W=[["1", "0"]], student_a=["0.5"],
                           student_W=[["0.3", "0.1"]], lam="0.1", eta=None)
