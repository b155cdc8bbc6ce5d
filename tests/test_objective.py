"""Tests of checker/core/objective.py: the exact population objective and its gradients.

References, each independent of checker/: the 90-digit double-sum reference of
tests/reference.py (gradients by mpmath.diff), central finite differences of the
engine's own loss, seeded Monte Carlo, and exact values.
"""

from __future__ import annotations

import json
import math

import mpmath
import numpy as np
import pytest

from checker.core import objective
from checker.core.engines import Float64Engine, MpEngine
from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.core.problem import Problem
from tests import reference
from tests.tolerance import assert_close, assert_close_scaled

ACTS = ("relu", "abs")
FIELDS = ("grad_a", "grad_W", "loss_grad_a", "loss_grad_W")


def _dec(x: float) -> str:
    return f"{x:.17g}"


def random_instance(seed: int, activation: str, *, m: int = 5, m_star: int = 3, d: int = 4,
                    lam: str = "0.01") -> Instance:
    """A generic instance from a seeded generator, numbers as 17-digit decimal strings.

    The teacher rows are not unit vectors; ``normalize_teacher`` lets every engine
    (and the reference) normalize them at its own precision.
    """
    rng = np.random.default_rng(seed)
    return Instance.create(
        activation=activation,
        teacher_a=[_dec(x) for x in rng.uniform(0.5, 1.5, m_star) * rng.choice([-1, 1], m_star)],
        teacher_W=[[_dec(x) for x in row] for row in rng.normal(size=(m_star, d))],
        student_a=[_dec(x) for x in rng.normal(size=m)],
        student_W=[[_dec(x) for x in row] for row in rng.normal(size=(m, d))],
        lam=lam, normalize_teacher=True)


# Teacher with exactly unit rows written as exact decimals.
TEACHER_A = ["1.0", "-0.7"]
TEACHER_W = [["1", "0", "0"], ["0", "0.6", "0.8"]]
# sqrt(2) * 1e-9: a row (1, eps, 0) has t = 1/sqrt(1 + eps^2) = 1 - 1e-18 (to 1e-36) with (1, 0, 0).
EPS = "1.4142135623730950488016887242096980785697e-9"

DEGENERATE = {
    # t = 1 exactly: student rows on the ray of teacher 0 and of teacher 1, and with each other.
    "collinear": (["0.4", "0.3", "-0.5"], [["2", "0", "0"], ["0.5", "0", "0"], ["0", "1.2", "1.6"]]),
    # t = -1 exactly: rows opposite to teacher rows and to each other.
    "antipodal": (["0.4", "-0.3", "0.6"], [["-1.5", "0", "0"], ["0", "-0.3", "-0.4"], ["0.7", "0", "0"]]),
    # t = 1 - 1e-18 with teacher 0 and t = -1 + 1e-18 with teacher 1: angle ~ 1.4e-9 from the ray / its opposite.
    "nearly-collinear": (["0.9", "0.5"], [["1", EPS, "0"], [EPS, "-0.6", "-0.8"]]),
}


def degenerate_instance(name: str, activation: str) -> Instance:
    sa, sW = DEGENERATE[name]
    return Instance.create(activation=activation, teacher_a=TEACHER_A, teacher_W=TEACHER_W,
                           student_a=sa, student_W=sW, lam="0.01")


def reference_of(inst: Instance, **kw) -> reference.ReferenceEvaluation:
    """The 90-digit reference of an instance, from its decimal strings."""
    return reference.evaluate(inst.activation, inst.student_a, inst.student_W, inst.teacher_a,
                              inst.teacher_W, inst.lam, normalize_teacher=inst.normalize_teacher, **kw)


def compare(ev: objective.Evaluation, ref, digits: float, what: str) -> None:
    """Loss, reg_loss and every gradient agree to ``digits`` relative to their largest entry."""
    assert_close_scaled(ev.loss, ref.loss, digits=digits, what=f"{what} loss")
    assert_close_scaled(ev.reg_loss, ref.reg_loss, digits=digits, what=f"{what} reg_loss")
    for f in FIELDS:
        assert_close_scaled(getattr(ev, f), getattr(ref, f), digits=digits, what=f"{what} {f}")


def compare_entrywise(ev: objective.Evaluation, ref, digits: float, what: str) -> None:
    """Each entry to ``digits`` significant digits of its own; entries that vanish
    (a gradient component killed by symmetry) to 10 more digits below the largest entry."""
    for f in ("loss", "reg_loss") + FIELDS:
        expected = np.asarray(getattr(ref, f), dtype=object)
        with mpmath.workdps(80):
            scale = max(abs(mpmath.mpf(x)) for x in expected.ravel())
            assert_close(getattr(ev, f), expected, rel=mpmath.mpf(10) ** -digits,
                         abs_=scale * mpmath.mpf(10) ** -(digits + 10), what=f"{what} {f}")


GENERIC = [(seed, act) for seed in (0, 1, 2) for act in ACTS]


@pytest.mark.parametrize("seed,activation", GENERIC)
def test_float64_matches_mp50(seed, activation):
    # Reference: the mp engine at 50 digits (itself checked against the 90-digit
    # reference below).  float64 loses a few digits to cancellation in sums of
    # O((m + m*)^2) terms and in the angle, so it must keep >= 11 significant
    # digits relative to the largest entry of each quantity.
    inst = random_instance(seed, activation)
    ev64 = Problem.from_instance(inst, Float64Engine()).evaluate()
    evmp = Problem.from_instance(inst, MpEngine(50)).evaluate()
    compare(ev64, evmp, 11, f"float64 vs mp seed={seed} {activation}")


@pytest.mark.parametrize("seed,activation", GENERIC)
def test_mp50_matches_reference_generic(seed, activation):
    # Reference: tests/reference.py at 90 digits (t-form kernel, explicit double
    # sum, gradients by mpmath.diff).  The engine carries 50 + 10 guard digits,
    # so >= 40 significant digits per entry is the requirement, with 10 digits of margin.
    inst = random_instance(seed, activation)
    compare_entrywise(Problem.from_instance(inst, MpEngine(50)).evaluate(), reference_of(inst), 40,
            f"mp50 vs reference seed={seed} {activation}")


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_degenerate_geometry_matches_reference(name, activation):
    # Reference: tests/reference.py at 90 digits; at t = +-1 and t = +-(1 - 1e-18)
    # the textbook acos(t) is exact enough at 90 digits (t is known to 1e-90, so
    # the angle to ~1e-81).  mp at 50 digits must give >= 40 digits; float64 must
    # still give 11 digits (its angle comes from atan2 of two norms, see below).
    inst = degenerate_instance(name, activation)
    ref = reference_of(inst)
    compare_entrywise(Problem.from_instance(inst, MpEngine(50)).evaluate(), ref, 40, f"mp50 {name} {activation}")
    compare(Problem.from_instance(inst, Float64Engine()).evaluate(), ref, 11, f"float64 {name} {activation}")


def test_float64_angle_is_accurate_near_collinear():
    # Reference: the 90-digit arccos of the exact decimal rows, angle ~ sqrt(2e-18)
    # ~ 1.414e-9.  The engine's phi = 2 atan2(||u^-v^||, ||u^+v^||) keeps full relative
    # accuracy (a few ulp: 1e-14 relative); the naive float64 arccos(<u,v>/(|u||v|))
    # rounds t = 1 - 1e-18 to 1 and returns 0 (100% error), shown here so the check
    # has teeth.  The relative accuracy of small angles is what the squared-angle
    # conclusions of the theorem need.
    sa, sW = DEGENERATE["nearly-collinear"]
    eng = Float64Engine()
    U = eng.array(sW)
    V = eng.array(TEACHER_W)
    geo = objective.pair_geometry(eng, U, V)
    with mpmath.workdps(reference.REF_DPS):
        phi_ref = [[reference.angle(u, v) for v in TEACHER_W] for u in sW]
        sin_ref = [[mpmath.sin(p) for p in row] for row in phi_ref]
    assert 1.41e-9 < geo.phi[0, 0] < 1.42e-9
    assert_close(geo.phi, phi_ref, rel="1e-14", what="float64 phi near t = +-1")
    assert_close(geo.sin_phi, sin_ref, rel="1e-14", what="float64 sin(phi) near t = +-1")
    naive = np.arccos(np.clip(U[0] @ V[0] / (np.linalg.norm(U[0]) * np.linalg.norm(V[0])), -1, 1))
    assert abs(naive - float(phi_ref[0][0])) > 0.5 * float(phi_ref[0][0])


@pytest.mark.parametrize("activation", ACTS)
def test_zero_norm_student_neuron_contributes_nothing(activation):
    # Reference: the 90-digit reference of the same instance without the zero
    # neuron (for the loss and the other neurons' gradients) and with it (for
    # grad_a, where the loss does not depend on a_j).  Tolerance: 40 digits as for
    # every mp-vs-reference comparison.  At w_j = 0, k is not differentiable; the
    # documented convention (checker/core/objective.py) is grad_{w_j} L = 0 and
    # dL/da_j = 0, hence grad_{w_j} L_lambda = lambda * 0 = 0 and
    # dL_lambda/da_j = lambda a_j: one product rounded once at the engine's working
    # precision (exactly the float64 product; in mp the product is formed in the Arb
    # working numbers, rounded once in Arb's direction, mpmath's reference product
    # once to nearest: the two differ by at most 2^(1 - prec) relative).
    sa = ["0.4", "0.8", "-0.5"]
    sW = [["0.9", "0.1", "0.2"], ["0", "0", "0"], ["0.1", "-0.7", "0.5"]]
    inst = Instance.create(activation=activation, teacher_a=TEACHER_A, teacher_W=TEACHER_W,
                           student_a=sa, student_W=sW, lam="0.01")
    reduced = inst.replace(student_a=[sa[0], sa[2]], student_W=[sW[0], sW[2]])
    for eng in (MpEngine(50), Float64Engine()):
        digits = 40 if eng.name == "mp" else 11
        prob = Problem.from_instance(inst, eng)
        ev = prob.evaluate()
        ref_red = reference_of(reduced)
        assert_close_scaled(ev.loss, ref_red.loss, digits=digits, what=f"{eng.name} loss without zero neuron")
        assert_close_scaled(ev.grad_W[[0, 2]], ref_red.grad_W, digits=digits, what=f"{eng.name} other rows")
        assert all(x == 0 for x in ev.loss_grad_W[1]) and all(x == 0 for x in ev.grad_W[1])
        assert ev.loss_grad_a[1] == 0
        with eng.context():
            if eng.name == "float64":
                assert ev.grad_a[1] == prob.lam * prob.a[1]
            else:
                p = prob.lam * prob.a[1]
                assert abs(ev.grad_a[1] - p) <= abs(p) * mpmath.ldexp(1, 1 - eng.work_prec)
        ref_full = reference_of(inst)
        assert_close_scaled(ev.grad_a, ref_full.grad_a, digits=digits, what=f"{eng.name} grad_a")
        assert_close_scaled(ev.reg_loss, ref_full.reg_loss, digits=digits, what=f"{eng.name} reg_loss")


FD_CASES = [("generic", 0, "relu"), ("generic", 1, "abs"), ("collinear", None, "relu"),
            ("nearly-collinear", None, "abs")]


@pytest.mark.parametrize("kind,seed,activation", FD_CASES)
def test_mp_gradient_matches_central_differences_at_60_digits(kind, seed, activation):
    # Reference: central differences (L_lambda(x + h) - L_lambda(x - h)) / (2h) of
    # the engine's own regularized loss at 60 digits (70 working), h = 1e-20, for
    # every coordinate of a and W.  Truncation error h^2 |f'''| / 6 ~ 1e-41 |f'''|
    # (f''' is bounded even at t = +-1, where k has a |angle|^3 term), rounding
    # ~ 1e-70 / 1e-20 = 1e-50.  Requiring 35 digits relative to the largest entry
    # leaves room for |f'''| up to ~1e5.
    inst = random_instance(seed, activation) if kind == "generic" else degenerate_instance(kind, activation)
    eng = MpEngine(60)
    prob = Problem.from_instance(inst, eng)
    ev = prob.evaluate()
    with eng.context():
        h = mpmath.mpf("1e-20")

        def reg_loss(a, W):
            return prob.evaluate(a, W, with_gradient=False).reg_loss

        fd_a = []
        for j in range(len(prob.a)):
            ap, am = prob.a.copy(), prob.a.copy()
            ap[j] += h
            am[j] -= h
            fd_a.append((reg_loss(ap, prob.W) - reg_loss(am, prob.W)) / (2 * h))
        fd_W = np.empty(prob.W.shape, dtype=object)
        for idx in np.ndindex(*prob.W.shape):
            Wp, Wm = prob.W.copy(), prob.W.copy()
            Wp[idx] += h
            Wm[idx] -= h
            fd_W[idx] = (reg_loss(prob.a, Wp) - reg_loss(prob.a, Wm)) / (2 * h)
    assert_close_scaled(ev.grad_a, fd_a, digits=35, what=f"grad_a vs FD {kind}")
    assert_close_scaled(ev.grad_W, fd_W, digits=35, what=f"grad_W vs FD {kind}")


@pytest.mark.parametrize("activation", ACTS)
def test_loss_and_gradient_match_seeded_monte_carlo(activation):
    # Reference: seeded Monte Carlo with n = 400,000 Gaussian inputs of
    # L = E[r^2], dL/da_j = 2 E[r sigma(<w_j,x>)], grad_{w_j} L = 2 a_j E[r sigma'(<w_j,x>) x]
    # with r = f_theta - f*.  Each estimate must lie within 5 standard errors
    # (sample std / sqrt(n)) of the closed form: under the CLT a 5-sigma miss has
    # probability 6e-7 per entry (< 1e-5 over the 13 entries), so this fixed seed
    # is not a lucky pick; and the 5-sigma band is checked to be < 2% of the loss,
    # so the comparison has teeth.
    inst = random_instance(7, activation, m=3, m_star=2, d=3, lam="0")
    prob = Problem.from_instance(inst, Float64Engine())
    ev = prob.evaluate()
    rng = np.random.default_rng(20240601)
    n = 400_000
    x = rng.standard_normal((n, 3))
    sig = (lambda z: np.maximum(z, 0)) if activation == "relu" else np.abs
    dsig = (lambda z: (z > 0).astype(float)) if activation == "relu" else np.sign
    zs = x @ prob.W.T
    r = sig(zs) @ prob.a - sig(x @ prob.W_star.T) @ prob.a_star
    samples = {"loss": (r * r)[:, None],
               "grad_a": 2 * r[:, None] * sig(zs),
               "grad_W": (2 * prob.a[None, :, None] * (r[:, None] * dsig(zs))[:, :, None]
                          * x[:, None, :]).reshape(n, -1)}
    exact = {"loss": [ev.loss], "grad_a": ev.loss_grad_a, "grad_W": ev.loss_grad_W.ravel()}
    for key, s in samples.items():
        mean = s.mean(axis=0)
        se = s.std(axis=0, ddof=1) / np.sqrt(n)
        assert np.all(np.abs(mean - np.asarray(exact[key], dtype=float)) <= 5 * se), (
            f"{key}: MC {mean} vs exact {exact[key]}, 5 SE = {5 * se}")
    assert 5 * samples["loss"].std(ddof=1) / np.sqrt(n) < 0.02 * ev.loss


@pytest.mark.parametrize("activation", ACTS)
def test_exact_values(activation):
    # Reference: exact values.  (1) Student equal to the teacher: L = 0 and
    # grad L = 0.  (2) Student with zero output weights: L = sum_il a*_i a*_l k(w*_i, w*_l);
    # for orthogonal unit teachers k = kappa(pi/2) = 1/(2 pi) (relu) or 2/pi (abs) off the
    # diagonal and kappa(0) = 1/2 or 1 on it.  mp at 50 digits: 1e-45 absolute (O(1) values).
    W_star = [["1", "0", "0"], ["0", "1", "0"]]
    a_star = ["1.0", "-0.7"]
    same = Instance.create(activation=activation, teacher_a=a_star, teacher_W=W_star,
                           student_a=a_star, student_W=W_star, lam="0.5")
    ev = Problem.from_instance(same, MpEngine(50)).evaluate()
    assert_close(ev.loss, 0, abs_="1e-45", what="L(teacher) = 0")
    assert_close(ev.loss_grad_a, [0, 0], abs_="1e-45", what="grad_a L(teacher) = 0")
    assert_close(ev.loss_grad_W, np.zeros((2, 3)), abs_="1e-45", what="grad_W L(teacher) = 0")
    # L_lambda = lambda/2 (||a*||^2 + ||W*||^2) = 0.25 * (1.49 + 2).
    assert_close(ev.reg_loss, "0.8725", abs_="1e-45", what="L_lambda(teacher)")
    silent = same.replace(student_a=["0", "0"])
    ev0 = Problem.from_instance(silent, MpEngine(50)).evaluate()
    with mpmath.workdps(60):
        diag, off = {"relu": (mpmath.mpf(1) / 2, 1 / (2 * mpmath.pi)),
                     "abs": (mpmath.mpf(1), 2 / mpmath.pi)}[activation]
        expected = (1 + mpmath.mpf("0.49")) * diag + 2 * (1 * mpmath.mpf("-0.7")) * off
    assert_close(ev0.loss, expected, abs_="1e-45", what="L(a = 0)")


@pytest.mark.parametrize("activation", ACTS)
def test_correlation_and_its_gradient_match_reference(activation):
    # Reference: g(q) = sum_l c_l k(q, v_l) from the t-form kernel at 90 digits, and
    # its gradient by mpmath.diff of that sum.  mp at 50 digits: 40 digits scaled.
    rng = np.random.default_rng(3)
    Q = [[_dec(x) for x in row] for row in rng.normal(size=(4, 3))]
    Q.append(["0.5", "0", "0"])  # collinear with V[0]
    V = [["1", "0", "0"], ["0", "0.6", "0.8"], ["-0.3", "0.2", "0.9"]]
    c = ["0.8", "-1.1", "0.4"]
    eng = MpEngine(50)
    g = objective.correlation(eng, activation, eng.array(Q), eng.array(V), eng.array(c))
    gg = objective.correlation_grad(eng, activation, eng.array(Q), eng.array(V), eng.array(c))
    with mpmath.workdps(reference.REF_DPS):
        Vm = [[mpmath.mpf(x) for x in row] for row in V]
        cm = [mpmath.mpf(x) for x in c]

        def g_ref(q):
            return mpmath.fsum(cl * reference.kernel_k(q, vl, activation) for cl, vl in zip(cm, Vm))

        ref_g, ref_gg = [], []
        for row in Q:
            q = [mpmath.mpf(x) for x in row]
            ref_g.append(g_ref(q))
            ref_gg.append([mpmath.diff(lambda x, k=k: g_ref(q[:k] + [x] + q[k + 1:]), q[k]) for k in range(3)])
    assert_close_scaled(g, ref_g, digits=40, what="correlation")
    assert_close_scaled(gg, ref_gg, digits=40, what="correlation_grad")


# ---------------------------------------------------------------- Gram route and accurate route
def _rows_at_angles(angles: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """u = e1 and v = (cos theta, sin theta, 0.3 sin theta) / ||.|| for each theta, in float64.

    Both engines read the same binary rows, so any difference is the engine's own.
    """
    U = np.array([[1.0, 0.0, 0.0]])
    V = np.array([[math.cos(t), math.sin(t), 0.3 * math.sin(t)] for t in angles])
    return U, V


def _mp_geometry(U: np.ndarray, V: np.ndarray) -> objective.PairGeometry:
    eng = MpEngine(50)
    with eng.context():
        return objective.pair_geometry(eng, eng.array(U.tolist()), eng.array(V.tolist()))


@pytest.mark.parametrize("theta", [1e-9, 1e-12, math.pi - 1e-9, math.pi - 1e-12])
def test_float64_angle_near_pm1_matches_mp(theta):
    # Reference: the mp engine at 50 digits on the same binary rows (its angle route
    # is exact to 1e-50 at any t).  float64 must keep full relative accuracy of phi
    # and of sin phi (the small quantity near t = +-1): a few ulp, so 1e-14.
    # These pairs have |t| > ACCURATE_T and take the difference / sum vector route.
    U, V = _rows_at_angles([theta])
    g64 = objective.pair_geometry(Float64Engine(), U, V)
    gmp = _mp_geometry(U, V)
    assert abs(g64.cos_phi[0, 0]) > objective.ACCURATE_T
    assert_close(g64.phi, gmp.phi, rel="1e-14", what=f"phi at {theta}")
    assert_close(g64.sin_phi, gmp.sin_phi, rel="1e-14", what=f"sin phi at {theta}")


@pytest.mark.parametrize("side", [-1, 1])
def test_gram_route_and_accurate_route_agree_at_the_threshold(side):
    # Reference: mp at 50 digits.  Pairs with |t| just below ACCURATE_T take the Gram
    # route (a^2 = 2 - 2t), just above it the difference vector.  Measured
    # (benchmarks/bench.py, angle error): the Gram route's relative error for
    # |t| <= 0.9 is below 2e-15 in d = 4..100, so 1e-14 on both sides of the
    # threshold, for phi and sin phi, leaves a factor 5.
    tau = objective.ACCURATE_T
    angles = [math.acos(side * tau) + dt for dt in (-1e-6, -1e-12, 1e-12, 1e-6)]
    U, V = _rows_at_angles(angles)
    g64 = objective.pair_geometry(Float64Engine(), U, V)
    gmp = _mp_geometry(U, V)
    assert_close(g64.phi, gmp.phi, rel="1e-14", what="phi at the threshold")
    assert_close(g64.sin_phi, gmp.sin_phi, rel="1e-14", what="sin phi at the threshold")


@pytest.mark.parametrize("activation", ACTS)
def test_grad_gram_dot_is_the_contraction_of_grad_gram(activation):
    # Reference: the (m, n, d) array grad_gram_from contracted with c by an explicit
    # sum, at 50 digits (60 working); grad_gram_dot uses two matrix products
    # instead.  Same numbers up to summation order: 45 digits relative to the
    # largest entry.  Includes a zero row (its entries must be exactly 0).
    eng = MpEngine(50)
    rng = np.random.default_rng(3)
    with eng.context():
        U = eng.array(np.vstack([rng.normal(size=(3, 4)), np.zeros((1, 4))]).tolist())
        V = eng.array(rng.normal(size=(5, 4)).tolist())
        c = eng.array(rng.normal(size=5).tolist())
        g = objective.pair_geometry(eng, U, V)
        fast = objective.grad_gram_dot(eng, g, activation, c)
        slow = (objective.grad_gram_from(eng, g, activation) * c[None, :, None]).sum(axis=1)
    assert_close_scaled(fast, slow, digits=45, what="grad_gram_dot")
    assert all(x == 0 for x in fast[3])


def _clustered_rows(seed: int, d: int, n: int) -> np.ndarray:
    """Rows near +-3 directions (many pairs with |t| > ACCURATE_T, both signs), a duplicate and a zero row."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, d))
    X = centers[rng.integers(0, 3, n)] * rng.choice([-1.0, 1.0], (n, 1)) + 1e-3 * rng.normal(size=(n, d))
    X[1] = X[0]  # identical rows: a = 0 exactly off the diagonal
    X[2] = 0.0
    return X


@pytest.mark.parametrize("engine", [Float64Engine(), MpEngine(30), MpEngine(30, backend="mpmath")],
                         ids=["float64", "mp", "mpmath"])
@pytest.mark.parametrize("activation", ACTS)
def test_packed_geometry_equals_the_general_route(engine, activation, monkeypatch):
    # Reference: the same rows taken as two different sets (``_geometry``: every pair on
    # its own, the Gram route from t_jl).  The packed route computes each pair j <= l
    # once from t_jl and spreads it; kappa, A and B must agree to rounding of the Gram
    # entry (t_jl and t_lj may differ in the last place: 1e-13 relative to the largest
    # entry in float64, 1e-35 at 30 digits) and exactly on the diagonal, with chunks of
    # 7 close pairs, on rows with many close pairs of both signs, duplicates and a zero row.
    X = _clustered_rows(5, 6, 40)
    w = getattr(engine, "work", engine)
    monkeypatch.setattr(objective, "CLOSE_PAIR_CHUNK", 7 * X.shape[1])
    with engine.context():
        vu = objective._norms_and_units(w, objective._to_work(engine, engine.array(X.tolist())))
        packed = objective.kernel_terms(w, objective._packed_geometry(w, vu), activation)
        general = objective.kernel_terms(w, objective._geometry(w, vu, vu), activation)
        to_mpf = (lambda x: objective._from_work(engine, x))
        p = [np.array([float(v) if engine.name == "float64" else v for v in to_mpf(x).ravel()], dtype=object)
             for x in packed]
        g = [np.array([float(v) if engine.name == "float64" else v for v in to_mpf(x).ravel()], dtype=object)
             for x in general]
    t = np.array([[float(v) for v in r] for r in objective._from_work(engine, objective._matmul(w, vu[1], vu[1].T))])
    assert (np.abs(t) > objective.ACCURATE_T).sum() > 200 and (t < -objective.ACCURATE_T).any()
    digits = 13 if engine.name == "float64" else 35
    for x, y, name in zip(p, g, ("kappa", "A", "B")):
        assert_close_scaled(x.tolist(), y.tolist(), digits=digits, what=name)
        assert all(x[j * 41] == y[j * 41] for j in range(40)), f"{name}: diagonal"


def test_evaluate_with_small_close_pair_chunks_equals_one_chunk(monkeypatch):
    # Reference: the same evaluation with all close pairs in one chunk.  Chunks only
    # split the list of close pairs, each computed by the same formula: identical bits.
    inst = random_instance(6, "relu", m=30, d=5)
    P = Problem.from_instance(inst, Float64Engine())
    X = _clustered_rows(6, 5, 30)
    one = P.evaluate(P.a, X)
    monkeypatch.setattr(objective, "CLOSE_PAIR_CHUNK", 3 * 5)
    many = P.evaluate(P.a, X)
    assert one.loss == many.loss
    assert np.array_equal(one.grad_W, many.grad_W) and np.array_equal(one.grad_a, many.grad_a)


def test_evaluate_in_blocks_equals_one_block(monkeypatch):
    # Reference: the same evaluation with one block.  Blocks only split the rows of
    # the pair arrays, so the results agree to rounding: 14 digits relative to the
    # largest entry (float64, sums of ~10 terms).
    inst = random_instance(4, "relu", m=7)
    prob = Problem.from_instance(inst, Float64Engine())
    whole = prob.evaluate()
    monkeypatch.setattr(objective, "PAIR_BLOCK_BYTES", 1)  # one row per block
    assert len(list(objective._row_blocks(prob.engine, 7, 10))) == 7
    blocks = prob.evaluate()
    compare(blocks, whole, 14, "blocks")


# ---------------------------------------------------------------- float64 range and memory
def _scaled_instance(scale: str) -> Instance:
    """Generic 3-student instance whose student neuron 1 has norm ~ scale (exact decimals)."""
    sW = [["0.9", "0.1", "0.2"], ["0.3", "-0.7", "0.5"], ["0.1", "0.8", "-0.6"]]
    sW[1] = [f"{x}e{scale.split('e')[1]}" for x in sW[1]]
    return Instance.create(activation="relu", teacher_a=TEACHER_A, teacher_W=TEACHER_W,
                           student_a=["0.4", "0.8", "-0.5"], student_W=sW, lam="0.01")


@pytest.mark.parametrize("scale", ["1e-300", "1e-200", "1e-160", "1e-20", "1e20", "1e100"])
def test_float64_agrees_with_mp_for_tiny_and_large_neurons(scale):
    # Reference: the mp engine at 50 digits (exponent range unbounded).  With rows
    # scaled by a power of two before squaring, float64 keeps the direction of a
    # neuron of norm 1e-300 (before: its gradient in W was ~1e-202 instead of O(1)).
    # Every entry to 1e-11 relative to itself (the float64 target of the issue), with
    # an absolute floor 1e-21 of the largest entry for entries that cancel.
    inst = _scaled_instance(scale)
    ev64 = Problem.from_instance(inst, Float64Engine()).evaluate()
    evmp = Problem.from_instance(inst, MpEngine(50)).evaluate()
    compare_entrywise(ev64, evmp, 11, f"float64 vs mp, neuron norm {scale}")
    assert abs(float(evmp.loss_grad_W[1][0])) > 1e-3  # the tiny neuron's O(1) gradient is tested


@pytest.mark.parametrize("scale", ["1e160", "1e200", "1e300"])
def test_float64_refuses_an_objective_that_overflows(scale):
    # Contract: a non-finite float64 result from finite inputs is a CheckerError
    # naming the overflow and suggesting --engine mp, never inf or nan.  Reference:
    # the mp engine gives a finite loss of order scale^2 (beyond 1.8e308 for these).
    inst = _scaled_instance(scale)
    evmp = Problem.from_instance(inst, MpEngine(30)).evaluate()
    assert mpmath.isfinite(evmp.loss) and abs(evmp.reg_loss) > 1e308
    # Refused at the door (checker.core.problem.check_float64_range: the squares exceed 1e300) ...
    with pytest.raises(CheckerError, match="overflows float64.*--engine mp"):
        Problem.from_instance(inst, Float64Engine())
    # ... and, behind it, by the objective itself on arrays that bypass the door check.
    f = Float64Engine()
    p = Problem(engine=f, activation=inst.activation, a=f.array(inst.student_a), W=f.array(inst.student_W),
                a_star=f.array(inst.teacher_a), W_star=f.array(inst.teacher_W), lam=f.scalar(inst.lam), eta=None)
    with pytest.raises(objective.NonFiniteResult) as info:  # a CheckerError: exit 2 in every command
        p.evaluate()
    assert isinstance(info.value, CheckerError)
    msg = str(info.value)
    assert "overflow" in msg and "--engine mp" in msg and "\n" not in msg


def test_evaluate_command_exits_2_on_overflow(tmp_path, capsys):
    # Contract of the command line: exit 2 and one line on stderr, nothing on stdout
    # (before: exit 0 printing "loss": "nan").
    from checker.commands.evaluate import main

    path = tmp_path / "i.json"
    path.write_text(json.dumps(_scaled_instance("1e300").to_dict()))
    assert main([str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "--engine mp" in err


def test_pair_memory_is_refused_before_allocating(monkeypatch):
    # Contract: the functions that return whole pair arrays estimate their memory
    # first and refuse above PAIR_MEMORY_LIMIT (10,000 x 10,000 pairs in float64
    # would need ~12 GiB); evaluate() never needs the limit: it works in row blocks
    # of at most PAIR_BLOCK_BYTES.
    eng = Float64Engine()
    assert objective.pair_bytes(eng, 10_000, 10_003) > objective.PAIR_MEMORY_LIMIT
    with pytest.raises(CheckerError, match="PAIR_MEMORY_LIMIT"):
        objective.check_pair_memory(eng, 10_000, 10_003)
    monkeypatch.setattr(objective, "PAIR_MEMORY_LIMIT", 1000)
    U = np.ones((20, 3))
    for fn in (objective.gram, objective.grad_gram):
        with pytest.raises(CheckerError, match="GiB"):
            fn(eng, U, U, "relu")
    # evaluate stays within its block budget whatever the size.
    for m, n in [(10_000, 10_003), (5, 8), (1, 10**7)]:
        for rows in objective._row_blocks(eng, m, n):
            assert rows.stop > rows.start
            size = rows.stop - rows.start
            assert size == 1 or objective.pair_bytes(eng, size, n) <= objective.PAIR_BLOCK_BYTES
    inst = _scaled_instance("1e-20")
    Problem.from_instance(inst, eng).evaluate()  # fine under the tiny limit: blocks, no refusal
