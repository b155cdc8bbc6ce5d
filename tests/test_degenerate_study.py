"""checker/studies/degenerate.py: the masses on fixed atoms and the study on a teacher with a closed form.

References: the single-teacher optimum (signed mass a* - lambda sign(a*), derivations/optimum.py) and
the two-atom optimality system K s = K a* - (lambda / 2) sign(s) solved by numpy.
"""

from __future__ import annotations

import math

import numpy as np

from checker.studies.degenerate import degenerate_study, great_circle, lasso_masses


def test_lasso_masses_single_atom_closed_form():
    for a_star in (1.5, -0.7):
        s = lasso_masses("relu", np.array([a_star]), np.array([[0.0, 1.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]), 0.1)
        assert abs(s[0] - (a_star - 0.1 * math.copysign(1, a_star))) <= 1e-14


def test_lasso_masses_two_atoms_match_the_optimality_system():
    # Atoms on two teachers at 60 degrees; K from the arc-cosine kernel written here; both masses
    # positive, so s = a* - (lambda / 2) K^-1 (1, 1) (coordinate descent to 1e-15: 1e-12 margin).
    W = np.array([[1.0, 0.0, 0.0], [0.5, math.sqrt(3) / 2, 0.0]])
    a_star = np.array([1.0, 0.6])
    t = 0.5
    kap = lambda t: (math.sqrt(1 - t * t) + (math.pi - math.acos(t)) * t) / (2 * math.pi)  # noqa: E731
    K = np.array([[0.5, kap(t)], [kap(t), 0.5]])
    ref = a_star - 0.05 * np.linalg.solve(K, np.ones(2))
    s = lasso_masses("relu", a_star, W, W, 0.1)
    assert np.max(np.abs(s - ref)) <= 1e-12


def test_study_on_a_single_teacher_finds_no_extra_atom_and_the_closed_form_mass():
    # (mass to 1e-6: the exchange rounds re-solve the masses exactly once the KKT check fails)
    st = degenerate_study("relu", [1.2], [[0.0, 0.0, 1.0, 0.0]], [0.1], seconds_per_lambda=20, samples=2000,
                          extra=2)
    run = st.runs[0]
    assert run["extra_atoms"] == [] and run["extra_mass"] == 0.0
    assert len(run["kept"]) == 1 and abs(run["kept"][0]["mass"] - 1.1) <= 1e-6
    assert st.fit["exponent"] is None
    # the circle passes through the peak (theta = 0, the teacher itself here: eta = 1)
    i = int(np.argmin(np.abs(np.array(st.circle_theta))))
    assert abs(st.circle_eta[i] - st.peak["value"]) <= 1e-9


def test_great_circle_contains_the_teacher_at_its_reported_angle():
    from checker.geometry import certificate as cc

    W = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    cert = cc.build_certificate("relu", [1.0, -0.8], W, rigorous=False, samples=500)
    u = np.array([0.6, 0.0, 0.8])
    theta, eta, k, tk = great_circle(cert, W, u)
    assert k == 0 and abs(tk - math.acos(0.6)) <= 1e-12
    j = int(np.argmin(np.abs(theta - tk)))
    assert abs(theta[j] - tk) <= math.pi / 360 and abs(eta[j] - 1.0) <= 1e-3  # eta(w*_0) = sign(a*_0)
