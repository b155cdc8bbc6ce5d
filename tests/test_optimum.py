"""Tests of checker/rigorous/optimum.py: L*_lambda enclosed by a polished point and the duality bound.

References: the single-teacher optimum in closed form, L*_lambda = lambda |a*| - lambda^2 / 2
(derivations/optimum.py), and exact constructions for the reduction.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest

from checker.core.engines import MpEngine
from checker.core.model import Instance
from checker.core.problem import Problem
from checker.rigorous.optimum import certified_optimum, newton_polish, reduce_student


def test_reduce_merges_collinear_same_sign_neurons_into_one_balanced_neuron():
    u = np.array([0.6, 0.8, 0.0])
    a = np.array([0.5, 2.0, -1.0, 1e-12])
    W = np.array([0.4 * u, 0.1 * u, 0.7 * u, [0.0, 0.0, 1e-12]])
    ar, Wr = reduce_student(a, W)
    # the two positive neurons on u merge (signed mass 0.5*0.4 + 2*0.1 = 0.4); the negative
    # one on u stays apart; the 1e-24-mass neuron is dropped
    assert len(ar) == 2
    pos = int(np.argmax(ar))
    assert ar[pos] == pytest.approx(np.sqrt(0.4), rel=1e-15)
    assert np.allclose(Wr[pos], np.sqrt(0.4) * u, rtol=1e-15, atol=0)
    neg = 1 - pos
    assert ar[neg] * np.linalg.norm(Wr[neg]) == pytest.approx(-0.7, rel=1e-15)
    # balanced: |a| = ||w||
    assert np.allclose(np.abs(ar), np.linalg.norm(Wr, axis=1), rtol=1e-15)


def test_reduce_projects_on_the_teacher_span_only_when_nearly_inside():
    T = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    a = np.array([1.0])
    inside = np.array([[0.6, 0.8, 1e-12, 0.0]])
    _, Wr = reduce_student(a, inside, teacher_W=T)
    assert Wr[0, 2] == 0.0 and Wr[0, 3] == 0.0
    outside = np.array([[0.6, 0.8, 1e-3, 0.0]])
    _, Wr = reduce_student(a, outside, teacher_W=T)
    assert Wr[0, 2] != 0.0


def _single(lam: str) -> Instance:
    return Instance.create(teacher_a=["1.5"], teacher_W=[["0", "1", "0"]], student_a=["0.9", "0.4"],
                           student_W=[["0.3", "0.8", "0.1"], ["0.2", "0.5", "-0.2"]], lam=lam, eta="0.4")


def test_newton_polish_reaches_the_closed_form_single_teacher_optimum():
    """At the optimum the signed mass on w* is a* - lambda sign(a*) (derivations/optimum.py)."""
    inst = _single("0.1")
    e = MpEngine(40)
    p = Problem.from_instance(inst.replace(student_a=["1.1"], student_W=[["0.01", "1.1", "0"]]), e)
    a, W, steps, gnorm = newton_polish(p, p.a, p.W)
    with mpmath.workdps(60):
        mass = a[0] * mpmath.sqrt(sum(x * x for x in W[0]))
        assert abs(mass - mpmath.mpf("1.4")) < mpmath.mpf(10) ** -35
    assert gnorm < mpmath.mpf(10) ** -35 and 0 < steps < 30


def _fraction(x: mpmath.mpf) -> Fraction:
    sign, man, exp, _ = x._mpf_
    q = Fraction(int(man)) * (Fraction(2) ** int(exp))
    return -q if sign else q


def test_certified_optimum_encloses_the_closed_form_value():
    """The enclosure is of the instance as the 50-digit engine reads it: lambda = 0.1 rounded to
    its working precision (about 4e-63 from 1/10, which moves L* by about 5e-63, more than the
    width of the enclosure): the reference is the closed form at that binary lambda, exactly."""
    e = MpEngine(50)
    lam = _fraction(e.scalar("0.1"))
    exact = lam * Fraction(3, 2) - lam * lam / 2  # lambda |a*| - lambda^2 / 2, a* = 1.5
    enc = certified_optimum(_single("0.1"), dps=50, descent_seconds=10)
    assert enc.rigorous and enc.neurons == 1
    lo, hi = Fraction(enc.lower), Fraction(enc.upper)
    assert lo <= exact <= hi
    assert hi - lo < Fraction(1, 10**30), f"width {float(hi - lo):.3g}"
    # The enclosure names the lambda it is about: the engine's binary number, written out
    # exactly, not the decimal input (whose L* = 0.145 moves by ~5e-63: outside an interval
    # that narrow); the input is kept apart.
    assert Fraction(enc.lam) == lam != Fraction(1, 10) and enc.lam_input == "0.1"
