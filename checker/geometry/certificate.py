"""The dual certificate of the teacher: the vanishing-derivative pre-certificate.

Grade LIKELY: the paper's Figure 2 ("Dual certificate eta") is known here only
through machine-written descriptions (eta = +1 / -1 around teacher directions
with positive / negative output weight, decaying quadratically away from them),
not through the paper's own words.  The construction below is the standard
vanishing-derivative pre-certificate that matches that description:

    p*(x)  = sum_i alpha_i sigma(<w*_i, x>) + sum_i <beta_i, x> sigma'(<w*_i, x>),   beta_i _|_ w*_i,
    eta(w) = E[p*(x) sigma(<w, x>)]
           = sum_i alpha_i k(w, w*_i) + sum_i <beta_i, grad_v k(w, v)|_{v = w*_i}>,

fixed by eta(w*_l) = sign(a*_l) and (I - w*_l w*_l^T) grad eta(w*_l) = 0.  The
system matrix is the Gram matrix in L2(N(0, I_d)) of the m* + m*(d - 1)
features, built from k, grad k and the mixed second derivative

    H(u, v) = grad_u grad_v^T k(u, v) = E[sigma'(<u,x>) sigma'(<v,x>) x x^T]
            = A(phi) I + A1 sin(phi) (s s^T - p p^T),

with A from ``kernel.grad_coefficients``, A1 = -dA/dphi, s and p the unit
bisector and unit difference of u^ and v^ (derived in
``derivations/certificate.py``).  ||p*||^2 = c^T M c for the solution c.

With |eta| <= 1 - rho angle(w, w*_i)^2 on the neighbourhood of teacher i and
|eta| <= 1 - rho_far elsewhere, every student satisfies

    lambda (rho sum_near mu_j angle_j^2 + rho_far sum_far mu_j) <= zeta + lambda^2 ||p*||^2 / 4,

which gives the bounds of conclusions C3 and C4.

Float64 is enough here: the certificate's constants enter those bounds at O(1)
relative accuracy.  "Checked over the sphere" means a float estimate (dense
sampling plus a local search) unless marked rigorous.

The span reduction.  For a unit w, eta(w) = sum_i alpha_i kappa(<w, w*_i>) +
sum_i A(phi_i) <beta_i, w> depends on w only through its projection on
span{w*_i, beta_i}, and beta_i lies in span{w*_l} (the pre-certificate is unique
and the system is invariant under the orthogonal maps that fix that span; up to
rounding, which is bounded and added to every certified figure).  With s
independent teachers and s < d, every value of eta on S^{d-1} is taken on the
unit sphere of span{w*_i} + R e (e a coordinate vector off the span), a sphere
S^s in a chart of dimension k = s + 1 (``span_chart``): max |eta| (``eta_peak``:
dense search plus local search on S^s, value, direction, angles to the teachers)
and the far-region maximum behind rho_far are searched there, and certified with
Arb ball arithmetic (``checker.rigorous.sphere.certified_max_many`` on eta and -eta)
whenever k <= RIGOROUS_MAX_DIM, whatever d is.  Otherwise (dependent teachers that are
not exact combinations of each other, or s = d) the chart is the sphere itself and
the certification runs when d <= RIGOROUS_MAX_DIM.  The enclosures are rigorous
whatever stops the search (its time budget included); when the coefficients of
eta are large and cancel (mixed signs, moderate separation) they may stay wide
within the budget, and the record says so.  rho is always an estimate (its
minimum ratio is a 0/0 limit at the teacher direction, which a box-bisection
enclosure cannot close).  The rigorous figures concern the function eta defined
by the float64 coefficients and the float64-normalized teacher, taken as exact
binary numbers.

Not every teacher has a pre-certificate.  Degenerate cases are reported
(``degenerate``, ``reason``), never raised: a system with no solution (for relu,
sigma(z) - sigma(-z) = z makes the features of opposite rays dependent, and
opposite rays with opposite output signs then admit no solution), rho <= 0 or
rho_far <= 0, or |eta| > 1 somewhere (common for random teachers at moderate
separation: the pre-certificate is a candidate, not a guarantee).
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable

import numpy as np

from checker.core import kernel, objective
from checker.core.engines import Float64Engine

#: A system whose 2-norm condition number exceeds this is reported singular.
CONDITION_LIMIT = 1e12
#: rho_far is certified with ball arithmetic only up to this dimension.
RIGOROUS_MAX_DIM = 4
#: Absolute tolerance asked of ``certified_max`` on max |eta| over the far region.
RIGOROUS_TOL = 1e-3
#: Relative cut-off of singular values in the minimum-norm (truncated SVD) solution.
TRUNCATION = 1e-9
#: Largest accepted residual of the linear system (eta(w*_l) = sign(a*_l) to this accuracy).
RESIDUAL_LIMIT = 1e-8
#: Time budget (seconds) of that certification; the bound stays rigorous if it runs out.
RIGOROUS_SECONDS = 30.0
#: |eta| above 1 + this anywhere on the sphere is reported.
ETA_EXCESS_TOL = 1e-9

_F64 = Float64Engine()


# ----------------------------------------------------------------- closed forms
def mixed_coefficients(phi: Any, sin_phi: Any, pi: Any, activation: str) -> tuple[Any, Any]:
    """(A, A1) with H(u, v) = A I + A1 sin(phi) (s s^T - p p^T); A1 = -dA/dphi.

    Generic over the number type like ``checker.core.kernel`` (SymPy symbols included).
    """
    A, _ = kernel.grad_coefficients(phi, sin_phi, pi, activation)
    if activation == "relu":
        return A, 1 / (2 * pi)
    return A, 2 / pi  # abs (grad_coefficients has validated the name)


class _ArbEngine:
    """Duck-typed engine on numpy object arrays of python-flint ``arb`` balls.

    Only what ``objective.pair_geometry`` needs: sqrt (of the non-negative part,
    so a sum of squares whose ball dips below 0 stays an enclosure), atan2, pi.
    """

    name = "arb"

    def __init__(self) -> None:
        from flint import arb

        self.arb = arb
        self.sqrt = np.frompyfunc(lambda x: x.nonnegative_part().sqrt(), 1, 1)
        self.atan2 = np.frompyfunc(arb.atan2, 2, 1)

    @property
    def pi(self) -> Any:
        return self.arb.pi()  # at the caller's working precision

    def context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def _ratio_term(engine: Any, x: np.ndarray, xb: np.ndarray, scale: np.ndarray,
                norm: np.ndarray, beta_norm: Any) -> np.ndarray:
    """x (x . beta) scale / ||x||, continuous extension 0 at x = 0.

    |x_a (x . beta)| / ||x|| <= ||x|| ||beta||, so for a ball ``norm`` that may
    contain 0 the entry is enclosed by [-b, b], b = ||x|| ||beta|| |scale|.
    """
    if getattr(engine, "name", "") != "arb":
        safe = np.where(norm > 0, norm, 1.0)
        return np.where((norm > 0)[..., None], x * (xb * scale / safe)[..., None], 0.0)
    arb = engine.arb
    out = np.empty(x.shape, dtype=object)
    for idx in np.ndindex(norm.shape):
        n = norm[idx]
        if n > 0:
            out[idx] = x[idx] * (xb[idx] * scale[idx] / n)
        else:
            b = (abs(n) * beta_norm[idx[1]] * abs(scale[idx])).upper()
            out[idx] = np.array([arb(0, b)] * x.shape[-1], dtype=object)
    return out


def mixed_apply_from(engine: Any, g: objective.PairGeometry, Beta: np.ndarray, activation: str) -> np.ndarray:
    """(m, n, d) array of H(u_j, v_l) beta_l from a pair geometry; zero where u_j = 0."""
    A, A1 = mixed_coefficients(g.phi, g.sin_phi, engine.pi, activation)
    s = g.uhat[:, None, :] + g.vhat[None, :, :]
    p = g.vhat[None, :, :] - g.uhat[:, None, :]
    ns = engine.sqrt((s * s).sum(axis=2))
    npn = engine.sqrt((p * p).sum(axis=2))
    sb = (s * Beta[None, :, :]).sum(axis=2)
    pb = (p * Beta[None, :, :]).sum(axis=2)
    beta_norm = engine.sqrt((Beta * Beta).sum(axis=1))
    # sin(phi) s^ s^T = (||p|| / (2 ||s||)) s s^T and sin(phi) p^ p^T = (||s|| / (2 ||p||)) p p^T.
    term_s = _ratio_term(engine, s, sb, npn / 2, ns, beta_norm)
    term_p = _ratio_term(engine, p, pb, ns / 2, npn, beta_norm)
    out = A[:, :, None] * Beta[None, :, :] + A1 * (term_s - term_p)
    return out * g.u_nonzero[:, None, None]


def mixed_apply(engine: Any, U: np.ndarray, V: np.ndarray, Beta: np.ndarray,
                activation: str) -> np.ndarray:
    """(m, n, d) array of H(u_j, v_l) beta_l; zero where u_j = 0 (sigma'(0) = 0)."""
    return mixed_apply_from(engine, objective.pair_geometry(engine, U, V), Beta, activation)


def mixed_hessian(U: np.ndarray, V: np.ndarray, activation: str) -> np.ndarray:
    """(m, n, d, d) float64 array of H(u_j, v_l) = E[sigma'(<u_j,x>) sigma'(<v_l,x>) x x^T]."""
    U, V = np.asarray(U, dtype=float), np.asarray(V, dtype=float)
    d = U.shape[1]
    cols = [mixed_apply(_F64, U, V, np.tile(np.eye(d)[k], (len(V), 1)), activation) for k in range(d)]
    return np.stack(cols, axis=-1)


def _eta_parts(engine: Any, activation: str, Q: np.ndarray, W_star: np.ndarray,
               alpha: np.ndarray, beta: np.ndarray, with_grad: bool) -> tuple[np.ndarray, Any]:
    """eta and (optionally) grad eta at the rows of Q, in the engine's numbers.

    One pair geometry (q, w*_i) serves every term: k(q, w*_i) = ||q|| kappa (unit w*_i),
    grad_v k(q, v)|_{v = w*_i} = ||q|| (A q^ + B w*_i) (k is symmetric, so the roles of
    grad_coefficients swap), grad_u k(q, w*_i) = A w*_i + B q^, and H(q, w*_i) beta_i.
    """
    g = objective.pair_geometry(engine, Q, W_star)
    K = objective.gram_from(engine, g, activation)  # (q, m*)
    A, B = kernel.grad_coefficients(g.phi, g.sin_phi, engine.pi, activation)
    Gt = g.nu[:, None, None] * (A[:, :, None] * g.uhat[:, None, :] + B[:, :, None] * g.vhat[None, :, :])
    eta = K.dot(alpha) + (Gt * beta[None, :, :]).sum(axis=2).sum(axis=1)
    if not with_grad:
        return eta, None
    Gq = objective.grad_gram_from(engine, g, activation)  # (q, m*, d)
    grad = (Gq * alpha[None, :, None]).sum(axis=1) + mixed_apply_from(engine, g, beta, activation).sum(axis=1)
    return eta, grad


# ----------------------------------------------------------------- the record
#: A finite decimal number written as text (``Certificate.from_json``).
_DECIMAL_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Certificate:
    """The pre-certificate of one teacher and its measured constants (float64)."""

    activation: str
    alpha: list[float]
    beta: list[list[float]]
    p_norm: float
    radius: float
    rho: float
    rho_far: float
    rho_rigorous: bool
    rho_far_rigorous: bool
    condition: float
    degenerate: bool
    reason: str
    separation: float = math.pi
    rho_far_estimate: float = math.nan
    max_abs_eta: float = math.nan  # largest |eta| found over the whole sphere (attained; see eta_peak)
    notes: list[str] = field(default_factory=list)
    # Where max |eta| is attained and what is certified about it (``EtaPeak``); nan / [] when unknown.
    max_abs_eta_lower: float = math.nan  # certified lower end (nan: not certified)
    max_abs_eta_upper: float = math.nan  # certified upper end (nan: not certified)
    max_abs_eta_direction: list[float] = field(default_factory=list)
    max_abs_eta_angles: list[float] = field(default_factory=list)  # radians, to each teacher
    max_abs_eta_detail: str = ""
    span_dim: int = 0  # dimension of span{w*_i, beta_i}; 0 when not computed
    search_dim: int = 0  # ambient dimension k of the sphere S^{k-1} searched and certified on

    def peak(self) -> dict[str, Any]:
        """``certificate.max_abs_eta`` of the reports: value, enclosure [lo, hi] or None, direction, angles."""
        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        certified = math.isfinite(self.max_abs_eta_lower) or math.isfinite(self.max_abs_eta_upper)
        return {"value": num(self.max_abs_eta),
                "enclosure": [num(self.max_abs_eta_lower), num(self.max_abs_eta_upper)] if certified else None,
                "direction": [float(x) for x in self.max_abs_eta_direction],
                "angles_to_teachers": [float(x) for x in self.max_abs_eta_angles],
                "angles_to_teachers_degrees": [math.degrees(x) for x in self.max_abs_eta_angles],
                "span_dimension": self.span_dim, "search_dimension": self.search_dim,
                "rigorous": certified, "detail": self.max_abs_eta_detail}

    def to_dict(self) -> dict:
        """JSON-ready dict; non-finite numbers become None."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, list):
                return [clean(y) for y in x]
            return x

        out = {k: clean(v) for k, v in asdict(self).items()
               if not k.startswith("max_abs_eta_") and k not in ("span_dim", "search_dim")}
        out["max_abs_eta"] = self.peak()
        return out

    def to_json(self) -> dict[str, Any]:
        """Exact JSON form (checkpoints): every float as its shortest round-tripping text.

        Unlike ``to_dict`` nothing is lost ('nan' and 'inf' are kept as text), so
        ``from_json`` rebuilds this very record, bit for bit.
        """
        def text(x: Any) -> Any:
            if isinstance(x, list):
                return [text(y) for y in x]
            if isinstance(x, (float, np.floating)):
                return repr(float(x))
            return x

        return {f.name: text(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Any, where: str = "certificate") -> "Certificate":
        """The record written by ``to_json``; anything else is a one-line ``CheckerError`` naming ``where``."""
        from checker.core.errors import CheckerError

        names = [f.name for f in fields(cls)]
        if isinstance(data, dict) and set(names) - set(data) and set(names) - set(data) <= _PEAK_FIELDS:
            # records written before the peak fields existed (older checkpoints): their defaults
            defaults = {f.name: f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
                        for f in fields(cls) if f.name not in data}
            data = {**{k: repr(v) if isinstance(v, float) else v for k, v in defaults.items()}, **data}
        if not isinstance(data, dict) or sorted(data) != sorted(names):
            missing = sorted(set(names) - set(data)) if isinstance(data, dict) else names
            extra = sorted(set(data) - set(names)) if isinstance(data, dict) else []
            raise CheckerError(f"{where}: malformed ({'missing ' + repr(missing[0]) if missing else ''}"
                               f"{'unknown key ' + repr(extra[0]) if extra and not missing else ''})")

        def number(x: Any, key: str) -> float:
            if isinstance(x, str) and (x in ("nan", "inf", "-inf") or _DECIMAL_TEXT.match(x)):
                return float(x)
            raise CheckerError(f"{where}.{key}: expected a number written as text, got {str(x)[:40]!r}")

        def parse(kind: str, x: Any, key: str) -> Any:
            if kind == "float":
                return number(x, key)
            if kind in ("bool", "str", "int"):
                if type(x).__name__ != kind:
                    raise CheckerError(f"{where}.{key}: expected {kind}, got {type(x).__name__}")
                return x
            if kind.startswith("list[") and kind.endswith("]"):
                if not isinstance(x, list):
                    raise CheckerError(f"{where}.{key}: expected a list")
                return [parse(kind[5:-1], y, key) for y in x]
            raise CheckerError(f"{where}.{key}: field of type {kind} cannot be restored")

        return cls(**{f.name: parse(str(f.type), data[f.name], f.name) for f in fields(cls)})


#: Fields added with the span reduction; a record without them (an older checkpoint) gets their defaults.
_PEAK_FIELDS = {"max_abs_eta_lower", "max_abs_eta_upper", "max_abs_eta_direction", "max_abs_eta_angles",
                "max_abs_eta_detail", "span_dim", "search_dim"}


# ----------------------------------------------------------------- validation
def _teacher(activation: str, a_star: Any, W_star: Any) -> tuple[np.ndarray, np.ndarray]:
    if activation not in kernel.ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {kernel.ACTIVATIONS}")
    try:
        a = np.asarray(a_star, dtype=float)
        W = np.asarray(W_star, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"teacher must be numbers: {exc}") from None
    if a.ndim != 1 or W.ndim != 2 or len(a) != len(W) or len(a) == 0:
        raise ValueError(f"need a_star of shape (m*,) and W_star of shape (m*, d); got {a.shape}, {W.shape}")
    if W.shape[1] < 2:
        raise ValueError("need input dimension d >= 2")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(W))):
        raise ValueError("teacher has non-finite entries")
    if np.any(a == 0):
        raise ValueError("teacher output weights must be non-zero")
    norms = np.linalg.norm(W, axis=1)
    if np.any(norms == 0):
        raise ValueError("teacher neurons must be non-zero")
    return a, W / norms[:, None]


def _matrix(W: Any, d: int, what: str) -> np.ndarray:
    try:
        Q = np.asarray(W, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers: {exc}") from None
    if Q.ndim != 2 or Q.shape[1] != d:
        raise ValueError(f"{what} must have shape (n, {d}); got {Q.shape}")
    if not np.all(np.isfinite(Q)):
        raise ValueError(f"{what} has non-finite entries")
    return Q


def nearest_teacher(W_star: np.ndarray, Q: np.ndarray, activation: str) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest teacher and the angle to it (line angle for abs) per row of Q."""
    g = objective.pair_geometry(_F64, np.asarray(Q, dtype=float), np.asarray(W_star, dtype=float))
    phi = g.phi if activation == "relu" else np.minimum(g.phi, math.pi - g.phi)
    idx = np.argmin(phi, axis=1)
    return idx, phi[np.arange(len(idx)), idx]


def separation(W_star: np.ndarray, activation: str) -> float:
    """Delta = min pairwise (ray or line) angle; pi for a single teacher, as in ``checker.core.model``."""
    if len(W_star) == 1:
        return math.pi
    g = objective.pair_geometry(_F64, W_star, W_star)
    phi = g.phi if activation == "relu" else np.minimum(g.phi, math.pi - g.phi)
    return float(np.min(phi[~np.eye(len(W_star), dtype=bool)]))


# ----------------------------------------------------------------- the system
def tangent_bases(W_star: np.ndarray) -> list[np.ndarray]:
    """Orthonormal basis (d, d-1) of the orthogonal complement of each (unit) teacher."""
    return [np.linalg.svd(w[None, :])[2][1:].T for w in W_star]


def system_matrix(activation: str, W_star: np.ndarray) -> np.ndarray:
    """Gram matrix of the features sigma(<w*_i,x>), <P_i e_a, x> sigma'(<w*_i,x>) (float64)."""
    ms, d = W_star.shape
    P = tangent_bases(W_star)
    K = objective.gram(_F64, W_star, W_star, activation)
    G = objective.grad_gram(_F64, W_star, W_star, activation)  # G[l, i] = grad_u k(w*_l, w*_i)
    H = mixed_hessian(W_star, W_star, activation)  # H[l, i] = H(w*_l, w*_i)
    n = ms * d
    M = np.zeros((n, n))
    M[:ms, :ms] = K
    for l in range(ms):
        rl = slice(ms + l * (d - 1), ms + (l + 1) * (d - 1))
        for i in range(ms):
            ri = slice(ms + i * (d - 1), ms + (i + 1) * (d - 1))
            M[i, rl] = P[l].T @ G[l, i]
            M[rl, i] = P[l].T @ G[l, i]
            M[rl, ri] = P[l].T @ H[l, i] @ P[i]
    return M


def _solve(activation: str, a: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """(alpha, beta, ||p*||, condition number, max residual of the system)."""
    ms, d = W.shape
    M = system_matrix(activation, W)
    rhs = np.zeros(len(M))
    rhs[:ms] = np.sign(a)
    cond = float(np.linalg.cond(M))
    # Exactly dependent features (relu: sigma(z) - sigma(-z) = z, so opposite teacher rays
    # make the matrix singular) leave a consistent system whose float condition number
    # may be anything from 1e9 up: when the plain solve misses the conditions, the
    # truncated-SVD minimum-norm solution is tried (every solution gives the same p*).
    candidates = []
    if math.isfinite(cond) and cond <= CONDITION_LIMIT:
        candidates.append(np.linalg.solve(M, rhs))
    candidates.append(np.linalg.lstsq(M, rhs, rcond=TRUNCATION)[0])
    residuals = [float(np.max(np.abs(M @ c - rhs))) for c in candidates]
    k = next((i for i, r in enumerate(residuals) if r <= RESIDUAL_LIMIT), int(np.argmin(residuals)))
    c, residual = candidates[k], residuals[k]
    P = tangent_bases(W)
    beta = np.array([P[i] @ c[ms + i * (d - 1): ms + (i + 1) * (d - 1)] for i in range(ms)])
    p_sq = float(c @ M @ c)
    return c[:ms], beta, math.sqrt(max(p_sq, 0.0)), cond, residual


# ----------------------------------------------------------------- sphere search
def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _hill_climb(value: Callable[[np.ndarray], np.ndarray], feasible: Callable[[np.ndarray], np.ndarray],
                starts: np.ndarray, rng: np.random.Generator, step: float,
                iters: int = 60, proposals: int = 16, min_step: float = 1e-7) -> float:
    """Minimize ``value`` over feasible unit vectors by batched random local search."""
    X = starts  # refined in place: the caller may reuse the improved points
    best = value(X)
    steps = np.full(len(X), step)
    d = X.shape[1]
    for _ in range(iters):
        if np.all(steps < min_step):
            break
        Y = _unit(np.repeat(X, proposals, axis=0)
                  + np.repeat(steps, proposals)[:, None] * rng.standard_normal((len(X) * proposals, d)))
        vals = np.where(feasible(Y), value(Y), np.inf).reshape(len(X), proposals)
        j = np.argmin(vals, axis=1)
        cand = vals[np.arange(len(X)), j]
        better = cand < best
        X[better] = Y.reshape(len(X), proposals, d)[better, j[better]]
        best = np.where(better, cand, best)
        steps = np.where(better, steps * 1.5, steps * 0.5)
    return float(np.min(best))


@dataclass(frozen=True)
class _Fn:
    activation: str
    W: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray

    def eta(self, Q: np.ndarray) -> np.ndarray:
        return _eta_parts(_F64, self.activation, Q, self.W, self.alpha, self.beta, False)[0]


def _estimate_rho(fn: _Fn, r: float, rng: np.random.Generator, samples: int) -> float:
    """min over the caps of (1 - |eta(w)|) / angle(w, nearest w*)^2 (float estimate)."""
    ms, d = fn.W.shape
    theta_min = r * 1e-3
    n_theta = 24
    thetas = np.concatenate([np.geomspace(theta_min, r, n_theta // 2), np.linspace(r / n_theta, r, n_theta // 2)])
    n_e = max(8, samples // (ms * n_theta))

    def ratio(Q: np.ndarray) -> np.ndarray:
        _, ang = nearest_teacher(fn.W, Q, fn.activation)
        return (1 - np.abs(fn.eta(Q))) / ang**2

    def feasible(Q: np.ndarray) -> np.ndarray:
        _, ang = nearest_teacher(fn.W, Q, fn.activation)
        return (ang <= r) & (ang >= theta_min)

    best = math.inf
    for i in range(ms):
        w = fn.W[i]
        E = rng.standard_normal((n_e, d))
        E = _unit(E - np.outer(E @ w, w))
        Q = (np.cos(thetas)[None, :, None] * w + np.sin(thetas)[None, :, None] * E[:, None, :]).reshape(-1, d)
        Q = Q[feasible(Q)]
        if len(Q) == 0:
            continue
        vals = ratio(Q)
        top = np.argsort(vals)[:8]
        best = min(best, float(vals[top[0]]), _hill_climb(ratio, feasible, Q[top], rng, r / 8))
    return best


def _estimate_far(fn: _Fn, r: float, rng: np.random.Generator,
                  samples: int) -> tuple[float | None, float, list[list[float]]]:
    """(max |eta| over the far region or None if no far point was found, max |eta| over all
    samples, the best far points found)."""
    d = fn.W.shape[1]
    Q = _unit(rng.standard_normal((samples, d)))
    Q = np.concatenate([Q, fn.W])
    vals = np.abs(fn.eta(Q))
    overall = float(np.max(vals))
    _, ang = nearest_teacher(fn.W, Q, fn.activation)
    far = ang > r
    if not np.any(far):
        return None, overall, []

    def neg(Qx: np.ndarray) -> np.ndarray:
        return -np.abs(fn.eta(Qx))

    def feasible(Qx: np.ndarray) -> np.ndarray:
        return nearest_teacher(fn.W, Qx, fn.activation)[1] > r

    Qf, vf = Q[far], vals[far]
    top = np.argsort(-vf)[:8]
    starts = Qf[top]
    best = max(float(vf[top[0]]), -_hill_climb(neg, feasible, starts, rng, 0.1))
    return best, overall, starts.tolist()  # _hill_climb moved the starts in place


# ----------------------------------------------------------------- the span reduction
@dataclass(frozen=True)
class _Chart:
    """A chart of the sphere in which eta is searched and certified: w = M y / ||M y||, y in S^{k-1}.

    eta(w) depends on a unit w only through <w, w*_i> and <w, beta_i>.  beta_i lies in
    span{w*_l} (the pre-certificate is unique and the system is invariant under the
    orthogonal maps fixing that span), up to rounding; ``beta_span`` is beta projected on
    it, ``beta_gap`` bounds ||beta_i - beta_span_i|| summed over i.  With independent
    teachers (s = m* < d) the generators are the teachers themselves and one coordinate
    vector e outside their span: the columns of M = V^T T^T (T lower triangular,
    invertible) span exactly span{w*_i} + R e, which holds a unit vector with any given
    projection on span{w*_i}, so the maximum of eta (with beta_span) over S^{k-1} in the
    chart is its maximum over S^{d-1}, k = s + 1.  Otherwise the chart is the identity
    (k = d, nothing reduced).
    """

    V: np.ndarray  # (k, d) generators (exact float numbers)
    T: np.ndarray  # (k, k) lower triangular
    M: np.ndarray  # (d, k) float64 product V^T T^T (near orthonormal columns)
    span_dim: int  # s, dimension of span{w*_i, beta_i}
    beta_span: np.ndarray  # (m*, d): beta projected on the teachers' span (float; coefficients exact)
    coef: np.ndarray  # (m*, m*): beta_span_i = sum_l coef_il w*_l (identity chart: unused)
    reduced: bool

    @property
    def dim(self) -> int:
        return self.V.shape[0]

    def directions(self, Y: np.ndarray) -> np.ndarray:
        """Unit vectors of R^d for the rows of Y (float64)."""
        return _unit(np.asarray(Y, dtype=float) @ self.M.T)


def span_chart(fn: "_Fn") -> _Chart:
    """The chart of ``_Chart`` for the certificate function (float64).

    Generators: a maximal independent subset of the teachers (pivoted QR) and the coordinate
    vector farthest from their span; the reduction is made only when every other teacher is
    an exact (rational) combination of the chosen ones, so that the chart's range holds every
    teacher exactly.  Otherwise, and when the teachers span R^d, the chart is the identity.
    """
    ms, d = fn.W.shape
    identity = _Chart(np.eye(d), np.eye(d), np.eye(d), _span_dim(fn), fn.beta, np.zeros((ms, ms)), False)
    _, R, piv = _pivoted_qr(fn.W.T)
    diag = np.abs(np.diag(R))
    s = int(np.sum(diag > 1e-8 * diag[0]))
    if s >= d:
        return identity
    gen = sorted(piv[:s])
    G = fn.W[gen]
    for i in range(ms):
        if i in gen:
            continue
        c0 = np.linalg.lstsq(G.T, fn.W[i], rcond=None)[0]
        # the float solution, or a nearby short dyadic one (e.g. w*_3 = -w*_1 - w*_2), must be exact
        if not any(_exact_combination(c, G, fn.W[i])
                   for c in [c0] + [np.round(c0 * 2.0**b) / 2.0**b for b in (0, 8, 16, 24, 32)]):
            return identity
    coef = np.linalg.lstsq(fn.W.T, fn.beta.T, rcond=None)[0].T  # beta_i ~ sum_l coef_il w*_l
    P = G.T @ np.linalg.pinv(G.T)
    j = int(np.argmax(np.linalg.norm(np.eye(d) - P, axis=0)))  # the coordinate least in the span
    V = np.concatenate([G, np.eye(d)[j:j + 1]])
    L = np.linalg.cholesky(V @ V.T)
    T = np.tril(np.linalg.inv(L))
    return _Chart(V, T, V.T @ T.T, s, coef @ fn.W, coef, True)


def _exact_combination(c: np.ndarray, G: np.ndarray, w: np.ndarray) -> bool:
    """True when sum_k c_k G_k == w exactly (rational arithmetic on the float numbers)."""
    return all(sum((Fraction(float(ck)) * Fraction(float(G[k, t])) for k, ck in enumerate(c)), Fraction(0))
               == Fraction(float(w[t])) for t in range(len(w)))


def _pivoted_qr(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Householder-free pivoted Gram-Schmidt of the columns of A (float64): (Q, R, pivot order)."""
    A = np.array(A, dtype=float)
    n = A.shape[1]
    Q = np.zeros_like(A)
    R = np.zeros((n, n))
    piv: list[int] = []
    rest = A.copy()
    for k in range(n):
        norms = np.linalg.norm(rest, axis=0)
        norms[piv] = -1
        j = int(np.argmax(norms))
        piv.append(j)
        R[k, k] = norms[j]
        if norms[j] <= 0:
            break
        q = rest[:, j] / norms[j]
        for _ in range(2):
            q = q - Q[:, :k] @ (Q[:, :k].T @ q)
            q = q / np.linalg.norm(q)
        Q[:, k] = q
        rest = rest - np.outer(q, q @ rest)
    return Q, R, piv


def _span_dim(fn: "_Fn") -> int:
    """Numerical dimension of span{w*_i, beta_i} (float64)."""
    X = np.concatenate([fn.W, fn.beta])
    sv = np.linalg.svd(X, compute_uv=False)
    return int(np.sum(sv > 1e-10 * sv[0]))


def _chart_eta(fn: "_Fn", chart: _Chart, Y: np.ndarray) -> np.ndarray:
    """eta (with ``beta_span``) at the unit vectors of the chart points Y (float64)."""
    return _eta_parts(_F64, fn.activation, chart.directions(Y), fn.W, fn.alpha, chart.beta_span, False)[0]


def _chart_search(fn: "_Fn", chart: _Chart, rng: np.random.Generator, samples: int,
                  feasible: Callable[[np.ndarray], np.ndarray] | None = None,
                  starts: int = 16) -> tuple[float | None, np.ndarray | None, list[list[float]]]:
    """max |eta| over the (feasible part of the) sphere in the chart: dense sampling of S^{k-1}
    plus a local search from the best points (float estimate).

    Returns (value or None if no feasible sample, best chart point, the refined starts).
    """
    k = chart.dim
    Y = _unit(rng.standard_normal((samples, k)))
    Y = np.concatenate([Y, _unit(np.linalg.lstsq(chart.M, fn.W.T, rcond=None)[0].T)])
    if feasible is not None:
        Y = Y[feasible(Y)]
    if len(Y) == 0:
        return None, None, []
    vals = np.abs(_chart_eta(fn, chart, Y))
    top = Y[np.argsort(-vals)[:starts]].copy()
    ok = feasible if feasible is not None else (lambda Z: np.ones(len(Z), dtype=bool))
    _hill_climb(lambda Z: -np.abs(_chart_eta(fn, chart, Z)), ok, top, rng, 0.05, iters=200)
    tv = np.abs(_chart_eta(fn, chart, top))
    i = int(np.argmax(tv))
    return float(max(tv[i], vals.max())), top[i] if tv[i] >= vals.max() else Y[int(np.argmax(vals))], top.tolist()


class _ArbChartEta:
    """sgn * eta(M y / ||M y||) ||y|| and its gradient in y, on Arb ball vectors (the F of
    ``certified_max_many``); beta is ``beta_span`` with its coefficients taken exact."""

    def __init__(self, fn: "_Fn", chart: _Chart, sgn: int) -> None:
        from flint import ctx

        with ctx.workprec(max(ctx.prec, 128)):
            self._setup(fn, chart, sgn)

    def _setup(self, fn: "_Fn", chart: _Chart, sgn: int) -> None:
        self.eng = _ArbEngine()
        arb = self.eng.arb
        self.activation, self.sgn = fn.activation, sgn
        self._jet_data: tuple | None = None
        self.gram_low = self.eng.arb(1)  # lower bound of the eigenvalues of M^T M (identity chart: 1)
        self.W = np.array([[arb(float(x)) for x in row] for row in fn.W], dtype=object)
        self.alpha = np.array([arb(float(x)) for x in fn.alpha], dtype=object)
        if chart.reduced:
            C = np.array([[arb(float(x)) for x in row] for row in chart.coef], dtype=object)
            self.beta = C.dot(self.W)
        else:
            self.beta = np.array([[arb(float(x)) for x in row] for row in fn.beta], dtype=object)
        V = np.array([[arb(float(x)) for x in row] for row in chart.V], dtype=object)
        T = np.array([[arb(float(x)) for x in row] for row in chart.T], dtype=object)
        self.M = V.T.dot(T.T)  # (d, k) enclosure of the exact product
        self.reduced = chart.reduced
        if chart.reduced:
            # rho(y) = ||y|| / ||M y|| lies in [lam_max^-1/2, lam_min^-1/2] of G = M^T M (Gershgorin), and
            # ||grad rho(y)|| <= rho_max 2 e / (||y|| (1 - e)), e = ||G - I||_F (see _rho_bounds).
            k = chart.dim
            Gm = self.M.T.dot(self.M)
            e = sum((((Gm[i, j] - (1 if i == j else 0)) ** 2) for i in range(k) for j in range(k)),
                    arb(0)).nonnegative_part().sqrt()
            lo = min((Gm[i, i] - sum((abs(Gm[i, j]) for j in range(k) if j != i), arb(0))).lower()
                     for i in range(k))
            hi = max((Gm[i, i] + sum((abs(Gm[i, j]) for j in range(k) if j != i), arb(0))).upper()
                     for i in range(k))
            if not (lo > 0 and e.upper() < arb(1) / 2):
                raise ValueError("the span chart is not near orthonormal")
            rmax = 1 / lo.sqrt()
            self.gram_low = lo
            self.rho = (1 / hi.sqrt()).union(rmax)
            b = (rmax * 2 * e / (1 - e)).upper()  # for ||y|| >= 1 (cube faces)
            self.grad_rho = arb(0, b)

    def _q(self, y: list) -> np.ndarray:
        return self.M.dot(np.array(y, dtype=object))

    def _away_from_zero(self, q: np.ndarray) -> bool:
        # A box whose ball of M Y may reach 0 (wide boxes) has no finite enclosure: ``objective``
        # would return an indeterminate one for that row; this shortcut says so before evaluating,
        # and the box is split.
        return bool(sum((x * x for x in q), self.eng.arb(0)) > 0)

    def value(self, y: list) -> Any:
        q = self._q(y)
        if not self._away_from_zero(q):
            return self.eng.arb("nan")
        e = _eta_parts(self.eng, self.activation, np.array([q], dtype=object), self.W, self.alpha, self.beta,
                       False)[0][0]
        return self.sgn * (e * self.rho if self.reduced else e)

    def __call__(self, y: list) -> tuple[Any, list]:
        q = self._q(y)
        if not self._away_from_zero(q):
            nan = self.eng.arb("nan")
            return nan, [nan] * len(y)
        e, g = _eta_parts(self.eng, self.activation, np.array([q], dtype=object), self.W, self.alpha, self.beta,
                          True)
        e, g = e[0], g[0]
        if not self.reduced:
            return self.sgn * e, [self.sgn * x for x in g]
        # F(y) = eta(M y) rho(y), rho(y) = ||y|| / ||M y|| (eta is 1-homogeneous, so F(y) = ||y|| eta(q^));
        # grad F = rho M^T grad eta(M y) + eta(M y) grad rho, each entry of grad rho in [-b, b].
        grad = self.M.T.dot(g) * self.rho + np.array([e * self.grad_rho] * len(y), dtype=object)
        return self.sgn * e * self.rho, [self.sgn * x for x in grad]


    def hessian(self, Y: list) -> tuple[Any, list, list]:
        """(F, grad F, Hess F) enclosed over the box Y: the second-order form of the sphere search.

        On unit u, with t_i = <u, w^_i>, s_i = <u, beta_i>, n_i = ||w*_i||, b_i = <beta_i, w^_i>,

            eta(u) = sum_i alpha_i n_i kappa(t_i) + b_i (kappa - t kappa')(t_i) + s_i kappa'(t_i)

        (``derivations/certificate.py``, ``eta_unit_sphere_form``),
        kappa(t) = c (sqrt(1 - t^2) + (a - arccos t) t), kappa'(t) = c (a - arccos t),
        kappa'' = c / sqrt(1 - t^2), kappa''' = c t / (1 - t^2)^(3/2) (relu: c = 1/(2 pi), a = pi;
        abs: c = 2/pi, a = pi/2).  F(y) = ||y|| eta(M y / ||M y||), the function ``__call__``
        encloses (eta is 1-homogeneous), differentiated twice by the jets of ``_Jet``.  Near a
        teacher (t_i -> 1) kappa'' is unbounded and the entries are not finite: the search then
        keeps its first-order bounds there.
        """
        from flint import ctx

        with ctx.workprec(max(ctx.prec, 128)):
            arb = self.eng.arb
            if self._jet_data is None:
                self._jet_data = self._jet_setup()
            Lt, Ls, G, coef_t, bcoef, c, a, bnorm = self._jet_data
            Yl = list(Y)
            n = len(Yl)
            ident = [[arb(1) if j == l else arb(0) for l in range(n)] for j in range(n)]
            ny = _quadratic_jet(ident, Yl, arb).sqrt()
            nq2 = _quadratic_jet(G, Yl, arb)
            # ||M y||^2 >= lam_min(G) ||y||^2 (Gershgorin lower end ``self.gram_low``): bounded away from 0
            # even where the ball of the quadratic form reaches it
            floor = (self.gram_low * sum((x * x for x in Yl), arb(0)).lower()).lower()
            if floor > 0:
                nq2.v = nq2.v.intersection(floor.union(nq2.v.upper())) if nq2.v.upper() >= floor else nq2.v
            inq = nq2.sqrt().inv()
            # the unit vectors u = M y / ||M y|| of the box lie within R of u_m (box centre y_m):
            # |a/|a| - b/|b|| <= 2 |a - b| / |b|, and |M (y - y_m)| <= || |M| rad(Y) ||
            ym = [arb(x.mid()) for x in Yl]
            qm = [sum((self.M[a_, j] * ym[j] for j in range(n)), arb(0)) for a_ in range(self.M.shape[0])]
            nqm = sum((x * x for x in qm), arb(0)).sqrt()
            dq = [sum((abs(self.M[a_, j]).upper() * Yl[j].rad() for j in range(n)), arb(0))
                  for a_ in range(self.M.shape[0])]
            ndq = sum((x * x for x in dq), arb(0)).sqrt()
            R = arb(0, 1) * (2 * ndq / nqm.lower()).upper() if nqm > 0 else arb("nan")
            unit_ball = arb(0, 1)
            total: _Jet | None = None
            for i in range(len(Lt)):
                t = _linear_jet(Lt[i], Yl, arb) * inq
                if R.is_finite():  # t_i = <u, w^_i>, |w^_i| = 1: within R of its value at u_m
                    tm = sum((Lt[i][j] * ym[j] for j in range(n)), arb(0)) / nqm
                    t.v = t.v.intersection(tm + R) if t.v.overlaps(tm + R) else t.v
                tv = t.v.intersection(unit_ball) if t.v.overlaps(unit_ball) else t.v  # |t| <= 1 exactly
                k0, k1, k2, k3 = _kappa_ranges(tv, c, a, self.activation == "abs")
                kap = t.apply(k0, k1, k2)
                kap1 = t.apply(k1, k2, k3)
                s = _linear_jet(Ls[i], Yl, arb) * inq
                if R.is_finite():  # s_i = <u, beta_i>: within R ||beta_i|| of its value at u_m
                    sm = sum((Ls[i][j] * ym[j] for j in range(n)), arb(0)) / nqm
                    sr = sm + R * bnorm[i]
                    s.v = s.v.intersection(sr) if s.v.overlaps(sr) else s.v
                term = kap.scale(coef_t[i]) + (kap - t * kap1).scale(bcoef[i]) + s * kap1
                total = term if total is None else total + term
            Fj = (ny * total).scale(self.sgn)
            # value and gradient: the first-order enclosures (finite near a teacher too), met with the jet's
            if Fj.v.is_finite() and all(x.is_finite() for x in Fj.g):
                return Fj.v, Fj.g, Fj.h
            # the jet's gradient is not finite next to a teacher (kappa'' unbounded; in ``__call__`` the
            # singular parts cancel): the first-order enclosures, and the jet's value if theirs is not finite
            FY, GY = self(Yl)
            return (FY if FY.is_finite() or not Fj.v.is_finite() else Fj.v), list(GY), Fj.h

    def _jet_setup(self) -> tuple:
        arb = self.eng.arb
        k = self.M.shape[1]
        n = [sum((x * x for x in row), arb(0)).sqrt() for row in self.W]
        vhat = [[x / ni for x in row] for row, ni in zip(self.W, n)]
        Lt = [[sum((vh[a_] * self.M[a_, j] for a_ in range(len(vh))), arb(0)) for j in range(k)] for vh in vhat]
        Ls = [[sum((b[a_] * self.M[a_, j] for a_ in range(len(b))), arb(0)) for j in range(k)] for b in self.beta]
        G = self.M.T.dot(self.M)
        G = [[G[j, l] for l in range(k)] for j in range(k)]
        coef_t = [al * ni for al, ni in zip(self.alpha, n)]
        bcoef = [sum((x * y for x, y in zip(b, vh)), arb(0)) for b, vh in zip(self.beta, vhat)]
        pi = arb.pi()
        c, a = (1 / (2 * pi), pi) if self.activation == "relu" else (2 / pi, pi / 2)
        bnorm = [sum((x * x for x in b), arb(0)).sqrt() for b in self.beta]
        return Lt, Ls, G, coef_t, bcoef, c, a, bnorm


class _Jet:
    """A second-order jet (value, gradient, Hessian) in the chart coordinates y, entries Arb balls.

    Evaluated on a box, every entry is an enclosure over the box (natural extension of the
    chain rule), which is what ``_ArbChartEta.hessian`` needs."""

    __slots__ = ("v", "g", "h")

    def __init__(self, v: Any, g: list, h: list) -> None:
        self.v, self.g, self.h = v, g, h

    def __add__(self, o: "_Jet") -> "_Jet":
        n = len(self.g)
        return _Jet(self.v + o.v, [self.g[j] + o.g[j] for j in range(n)],
                    [[self.h[j][l] + o.h[j][l] for l in range(n)] for j in range(n)])

    def __sub__(self, o: "_Jet") -> "_Jet":
        return self + o.scale(-1)

    def scale(self, c: Any) -> "_Jet":
        return _Jet(c * self.v, [c * x for x in self.g], [[c * x for x in row] for row in self.h])

    def __mul__(self, o: "_Jet") -> "_Jet":
        n = len(self.g)
        return _Jet(self.v * o.v, [self.v * o.g[j] + o.v * self.g[j] for j in range(n)],
                    [[self.v * o.h[j][l] + o.v * self.h[j][l] + self.g[j] * o.g[l] + o.g[j] * self.g[l]
                      for l in range(n)] for j in range(n)])

    def apply(self, f0: Any, f1: Any, f2: Any) -> "_Jet":
        """f(self) from the enclosures f0, f1, f2 of f, f', f'' at the value's ball."""
        n = len(self.g)
        return _Jet(f0, [f1 * x for x in self.g],
                    [[f1 * self.h[j][l] + f2 * self.g[j] * self.g[l] for l in range(n)] for j in range(n)])

    def sqrt(self) -> "_Jet":
        x = self.v.nonnegative_part()
        r = x.sqrt()
        return self.apply(r, 1 / (2 * r), -1 / (4 * x * r))

    def inv(self) -> "_Jet":
        return self.apply(1 / self.v, -1 / (self.v * self.v), 2 / (self.v * self.v * self.v))


def _kappa_ranges(tv: Any, c: Any, a: Any, even: bool) -> tuple[Any, Any, Any, Any]:
    """Enclosures of kappa and its first three derivatives over the ball tv (inside [-1, 1]) from their
    exact values at its ends and their shapes (``eta_unit_sphere_form``): kappa' = c (a - acos t) and
    kappa''' increase, kappa (kappa'' > 0) and kappa'' are convex, kappa'' = c / sqrt(1 - t^2) is least
    at t = 0, and kappa is least at an end, or at t = 0 (value c) for abs when tv holds 0.  Non-finite
    (no bound) for kappa'' and kappa''' when tv reaches +-1."""
    from flint import arb

    lo = tv.lower().max(arb(-1))
    hi = tv.upper().min(arb(1))

    def at(t: Any) -> tuple[Any, Any, Any, Any]:
        om = 1 - t * t
        sq = om.nonnegative_part().sqrt() if om > 0 else arb(0)
        acs = t.acos()
        k2 = c / sq if sq > 0 else arb("nan")
        k3 = c * t / (om * sq) if sq > 0 else arb("nan")
        return c * (sq + (a - acs) * t), c * (a - acs), k2, k3

    (k0l, k1l, k2l, k3l), (k0h, k1h, k2h, k3h) = at(lo), at(hi)
    k0 = k0l.union(k0h)
    if even and lo < 0 < hi:
        k0 = k0.union(c)  # the least value of the abs kappa, at t = 0
    k2 = k2l.union(k2h) if k2l.is_finite() and k2h.is_finite() else arb("nan")
    if k2.is_finite() and lo < 0 < hi:
        k2 = k2.union(c)
    k3 = k3l.union(k3h) if k3l.is_finite() and k3h.is_finite() else arb("nan")
    return k0, k1l.union(k1h), k2, k3


def _linear_jet(row: list, Y: list, arb: Any) -> _Jet:
    """The jet of y -> row . y (exact linear form with Arb coefficients)."""
    n = len(Y)
    return _Jet(sum((c * y for c, y in zip(row, Y)), arb(0)), list(row), [[arb(0)] * n for _ in range(n)])


def _quadratic_jet(G: list, Y: list, arb: Any) -> _Jet:
    """The jet of y -> y^T G y, G symmetric."""
    n = len(Y)
    Gy = [sum((G[j][l] * Y[l] for l in range(n)), arb(0)) for j in range(n)]
    return _Jet(sum((y * g for y, g in zip(Y, Gy)), arb(0)), [2 * g for g in Gy],
                [[2 * G[j][l] for l in range(n)] for j in range(n)])


def _beta_gap(fn: "_Fn", chart: _Chart) -> float:
    """Upper bound (float >= the Arb bound) of Lip * sum_i ||beta_i - beta_span_i||: the largest
    change of eta on the unit sphere from replacing beta by beta_span (|<b, grad_v k(w, v)>| <=
    Lip ||b|| for unit w, Lip as in ``checker.rigorous.duality._lipschitz``)."""
    if not chart.reduced:
        return 0.0
    from flint import arb

    W = np.array([[arb(float(x)) for x in row] for row in fn.W], dtype=object)
    C = np.array([[arb(float(x)) for x in row] for row in chart.coef], dtype=object)
    B = np.array([[arb(float(x)) for x in row] for row in fn.beta], dtype=object)
    D = B - C.dot(W)
    total = arb(0)
    for row in D:
        total += sum((x * x for x in row), arb(0)).nonnegative_part().sqrt()
    lip = arb(1) if kernel.kappa_at_one(fn.activation) == 1.0 else (arb(1) / 2).sqrt()
    return math.nextafter(float((total * lip).upper()), math.inf)


def _chart_certified(fn: "_Fn", chart: _Chart, tol: float, seeds: list[list[float]], max_seconds: float,
                     radius: float | None = None, prec: int = 128):
    """Certified max |eta| over the sphere (or over its far region when ``radius`` is given), in the chart.

    Returns (SphereMax, perturbation) with the enclosure of the maximum for the float-coefficient
    eta being [lower - perturbation, upper + perturbation]; None when the search is unavailable.
    """
    try:
        from ..rigorous.sphere import certified_max_many
    except ImportError:
        return None, 0.0
    from flint import arb

    keep = None
    if radius is not None:
        cos_r = arb(radius).cos()
        rows = [[arb(float(x)) for x in row] for row in fn.W]
        F0 = _ArbChartEta(fn, chart, 1)

        def keep(u: list) -> bool:
            w = list(F0._q(u))
            nw = sum((x * x for x in w), arb(0)).nonnegative_part().sqrt()
            for row in rows:
                c = sum((x * y for x, y in zip(w, row)), arb(0))
                if (c - cos_r * nw) > 0 or (fn.activation == "abs" and (-c - cos_r * nw) > 0):
                    return False  # certainly inside a neighbourhood
            return True

    Fs = [_ArbChartEta(fn, chart, 1), _ArbChartEta(fn, chart, -1)]
    if radius is not None:
        # the far region's maximum sits on the cap's edge, where the concave regions the search builds
        # from a Hessian (for interior maxima) only loosen the bound: first-order bounds there
        for F in Fs:
            F.hessian = None  # type: ignore[assignment, method-assign]
    res = certified_max_many(Fs, chart.dim, tol=tol,
                             keep=keep, seeds=seeds, max_seconds=max_seconds, prec=prec)
    return res, _beta_gap(fn, chart)


@dataclass(frozen=True)
class EtaPeak:
    """max |eta| over the unit sphere: the value found, its certified enclosure and where it is."""

    value: float  # attained (float search in the chart)
    lower: float  # certified: max |eta| >= lower (nan when not certified)
    upper: float  # certified: max |eta| <= upper (nan when not certified)
    direction: list[float]  # a unit w of R^d where |eta| = value (any w with the same projection on the span)
    sign: int  # sign of eta there
    angles: list[float]  # angle (radians; line angle for abs) from direction to each teacher
    span_dim: int
    search_dim: int  # ambient dimension of the searched sphere S^{search_dim - 1}
    rigorous: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {"value": num(self.value),
                "enclosure": [num(self.lower), num(self.upper)] if self.rigorous else None,
                "direction": [float(x) for x in self.direction], "sign": self.sign,
                "angles_to_teachers": [float(x) for x in self.angles],
                "angles_to_teachers_degrees": [math.degrees(x) for x in self.angles],
                "span_dimension": self.span_dim, "search_dimension": self.search_dim,
                "rigorous": self.rigorous, "detail": self.detail}


def eta_peak(fn: "_Fn", *, rng: np.random.Generator | None = None, samples: int = 20000, rigorous: bool = True,
             tol: float = RIGOROUS_TOL, max_seconds: float = RIGOROUS_SECONDS, certify_above: float = -math.inf,
             chart: _Chart | None = None) -> EtaPeak:
    """max |eta| over S^{d-1}: dense search plus local search on the sphere of the span chart, certified
    with Arb branch and bound when that sphere lies in R^k, k <= RIGOROUS_MAX_DIM, and the value found
    exceeds ``certify_above``.  The enclosure is rigorous whatever stops the search (time budget
    included); ``detail`` says whether it reached ``tol``."""
    rng = np.random.default_rng(0) if rng is None else rng
    chart = span_chart(fn) if chart is None else chart
    value, y, starts = _chart_search(fn, chart, rng, samples)
    # the float search on the chart uses beta_span; the value at the point is re-measured with beta
    w = chart.directions(y[None, :])[0]
    e = float(fn.eta(w[None, :])[0])
    value = abs(e)
    lower = upper = math.nan
    rig = False
    detail = (f"dense search on S^{chart.dim - 1} (span dimension {chart.span_dim}"
              + (f", reduced from d = {fn.W.shape[1]})" if chart.reduced else ", no reduction)"))
    if rigorous and chart.dim <= RIGOROUS_MAX_DIM and not value > certify_above:
        detail += f"; not certified (value {value:.6g} does not exceed {certify_above:.6g})"
    elif rigorous and chart.dim <= RIGOROUS_MAX_DIM:
        res, pert = _chart_certified(fn, chart, tol, starts, max_seconds)
        if res is not None and res.rigorous:
            lower = math.nextafter(float(res.lower) - pert, -math.inf) if res.lower != "-inf" else -math.inf
            upper = math.nextafter(_decimal_up(res.upper) + pert, math.inf)
            rig = True
            detail += (f"; certified by Arb branch and bound: {res.boxes} boxes, {res.seconds:.1f} s, "
                       f"beta-projection perturbation <= {pert:.2g}"
                       + ("" if res.converged else f", stopped before tol ({res.extra.get('stopped', '')})"))
            yb = np.array(res.argmax, dtype=float)
            wb = chart.directions(yb[None, :])[0]
            eb = float(fn.eta(wb[None, :])[0])
            if abs(eb) > value:
                w, e, value = wb, eb, abs(eb)
        elif res is not None:
            detail += f"; certification gave no finite bound ({res.reason})"
    elif rigorous:
        detail += f"; not certified (the branch and bound covers spheres in R^k, k <= {RIGOROUS_MAX_DIM})"
    _, ang = nearest_teacher(fn.W, w[None, :], fn.activation)
    g = objective.pair_geometry(_F64, w[None, :], fn.W)
    phi = g.phi[0] if fn.activation == "relu" else np.minimum(g.phi[0], math.pi - g.phi[0])
    return EtaPeak(value=value, lower=lower, upper=upper, direction=w.tolist(), sign=1 if e >= 0 else -1,
                   angles=[float(x) for x in phi], span_dim=chart.span_dim, search_dim=chart.dim,
                   rigorous=rig, detail=detail)


# ----------------------------------------------------------------- rigorous far max
def _decimal_up(text: str) -> float:
    """A float >= the decimal number ``text``."""
    x = float(text)
    return x if Decimal(x) >= Decimal(text) else math.nextafter(x, math.inf)


def _rigorous_far_chart(fn: _Fn, chart: _Chart, r: float, tol: float, seeds: list[list[float]],
                        max_seconds: float) -> tuple[float | None, str]:
    """Certified upper bound of max |eta| over the far region, on the sphere of the span chart (Arb)."""
    res, pert = _chart_certified(fn, chart, tol, seeds, max_seconds, radius=r)
    if res is None:
        return None, "checker.rigorous.sphere is not available"
    if not res.rigorous:
        return None, f"certified_max_many gave no finite bound ({res.reason})"
    stopped = res.extra.get("stopped", "")
    where = (f"S^{chart.dim - 1}, span dimension {chart.span_dim} of d = {fn.W.shape[1]}, beta-projection "
             f"perturbation <= {pert:.2g}" if chart.reduced else f"S^{chart.dim - 1}")
    return (math.nextafter(_decimal_up(str(res.upper)) + pert, math.inf),
            f"{where}; {res.boxes} boxes, {res.seconds:.1f} s" + (f", {stopped}" if stopped else ""))


# ----------------------------------------------------------------- public API
def build_certificate(activation: str, a_star: Any, W_star: Any, *, radius: float | None = None,
                      rigorous: bool = True, seed: int = 0, samples: int = 20000,
                      rigorous_tol: float = RIGOROUS_TOL,
                      rigorous_seconds: float = RIGOROUS_SECONDS) -> Certificate:
    """Solve for the pre-certificate and measure rho, rho_far and ||p*|| (see module docstring).

    ``samples`` sets the density of the float search; ``rigorous_tol`` and
    ``rigorous_seconds`` the accuracy and time budget of the ball-arithmetic bound
    on max |eta| over the far region (d <= 4).  The certified figure replaces the
    estimate only when it proves rho_far > 0.  Never raises on a degenerate teacher
    (it is reported); raises ValueError on invalid arguments.
    """
    a, W = _teacher(activation, a_star, W_star)
    delta = separation(W, activation)
    if radius is None:
        radius = delta / 3
    radius = float(radius)
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a positive number, got {radius}")
    if samples < 100:
        raise ValueError("samples must be at least 100")
    # One teacher is often certified many times in a process (one T1 check per seed of the
    # algorithm): the record is a pure function of the arguments, so it is built once.
    key = (activation, a.tobytes(), W.tobytes(), W.shape, radius, bool(rigorous), int(seed), int(samples),
           float(rigorous_tol), float(rigorous_seconds))
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    cert = _build(activation, a, W, delta, radius, rigorous, seed, samples, rigorous_tol, rigorous_seconds)
    if len(_CACHE) >= 32:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = cert
    return cert


#: build_certificate's records by argument (at most 32, oldest dropped first).
_CACHE: dict[tuple, Certificate] = {}


def _build(activation: str, a: np.ndarray, W: np.ndarray, delta: float, radius: float, rigorous: bool, seed: int,
           samples: int, rigorous_tol: float, rigorous_seconds: float) -> Certificate:
    rng = np.random.default_rng(seed)
    reasons: list[str] = []
    notes: list[str] = ["rho: float estimate (dense sampling + local search)"]
    alpha, beta, p_norm, cond, residual = _solve(activation, a, W)
    singular = not (math.isfinite(cond) and cond <= CONDITION_LIMIT)
    if not (math.isfinite(cond) and cond * TRUNCATION <= 1) and residual <= RESIDUAL_LIMIT:
        # Linearly dependent features (e.g. relu, d = 2, opposite rays: sigma(z) - sigma(-z) = z)
        # but a consistent system: every solution gives the same p* in L2, hence the same eta.
        notes.append(f"features linearly dependent (condition number {cond:.3g}); the "
                     "minimum-norm solution is used (p* and eta are unique)")
    if not residual <= RESIDUAL_LIMIT:
        if singular:
            reasons.append(f"singular system (condition number {cond:.3g})")
        # eta(w*_l) = sign(a*_l) fails: the constants below would describe another function
        reasons.append(f"the system has no solution (residual {residual:.3g})")
        return Certificate(
            activation=activation, alpha=[float(x) for x in alpha], beta=beta.tolist(), p_norm=p_norm,
            radius=radius, rho=math.nan, rho_far=math.nan, rho_rigorous=False, rho_far_rigorous=False,
            condition=cond, degenerate=True, reason="; ".join(reasons), separation=delta,
            notes=["rho and rho_far not computed: the interpolation conditions do not hold"])
    fn = _Fn(activation, W, alpha, beta)
    rho = _estimate_rho(fn, radius, rng, samples)
    far_max, overall, far_points = _estimate_far(fn, radius, rng, samples)
    chart = span_chart(fn)

    def far_in_chart(Y: np.ndarray) -> np.ndarray:
        return nearest_teacher(fn.W, chart.directions(Y), fn.activation)[1] > radius

    chart_far, _, chart_points = _chart_search(fn, chart, rng, samples, feasible=far_in_chart)
    if chart_far is not None:
        far_max = chart_far if far_max is None else max(far_max, chart_far)
    if far_max is None:
        rho_far_est = 1.0
        notes.append("no far direction found by sampling: rho_far = 1 (far region empty or tiny)")
    else:
        rho_far_est = 1 - far_max
    rho_far, far_rig = rho_far_est, False
    d = W.shape[1]
    if rigorous and chart.dim <= RIGOROUS_MAX_DIM and far_max is not None and rho_far_est > 0:
        upper, info = _rigorous_far_chart(fn, chart, radius, rigorous_tol, chart_points, rigorous_seconds)
        lower = -math.inf if upper is None else math.nextafter(1 - upper, -math.inf)
        if lower > 0:
            rho_far, far_rig = lower, True
            notes.append(f"rho_far: certified lower bound (Arb; {info})")
        else:
            notes.append(f"rho_far: certification inconclusive (certified max |eta| "
                         f"{'none' if upper is None else f'{upper:.6g}'}; {info})")
    if not far_rig:
        why = (f" (span dimension {chart.span_dim}: the search sphere S^{chart.dim - 1} lies in "
               f"R^{chart.dim}, beyond R^{RIGOROUS_MAX_DIM})" if rigorous and chart.dim > RIGOROUS_MAX_DIM else "")
        notes.append(f"rho_far: float estimate{why}")
    peak = eta_peak(fn, rng=rng, samples=samples, rigorous=rigorous, tol=rigorous_tol,
                    max_seconds=rigorous_seconds, certify_above=1 + ETA_EXCESS_TOL, chart=chart)
    overall = max(overall, peak.value)
    if overall > 1 + ETA_EXCESS_TOL:
        where = ", ".join(f"{math.degrees(x):.1f}" for x in peak.angles)
        enc = f" (certified in [{peak.lower:.6g}, {peak.upper:.6g}])" if peak.rigorous else ""
        reasons.append(f"|eta| reaches 1 + {overall - 1:.3g} > 1 on the sphere{enc}, at angles "
                       f"({where}) degrees from the teachers")
    # eta is a sum of 2 m* terms of size up to |alpha_i|, ||beta_i||: a margin below a few
    # dozen ulps of that sum (the decay 1 - |eta| across a cap, or off the caps) is noise.
    noise = 64 * _F64.eps * (1 + float(np.abs(alpha).sum()) + float(np.linalg.norm(beta, axis=1).sum()))
    if not rho > 0:
        reasons.append(f"rho = {rho:.3g} <= 0")
    elif rho * radius**2 <= noise:
        reasons.append(f"rho r^2 = {rho * radius**2:.3g} is below the rounding level of eta ({noise:.2g})")
    if not rho_far > 0:
        reasons.append(f"rho_far = {rho_far:.3g} <= 0")
    elif rho_far <= noise:
        reasons.append(f"rho_far = {rho_far:.3g} is below the rounding level of eta ({noise:.2g})")
    return Certificate(
        activation=activation, alpha=[float(x) for x in alpha], beta=beta.tolist(),
        p_norm=p_norm, radius=radius, rho=rho, rho_far=rho_far, rho_rigorous=False,
        rho_far_rigorous=far_rig, condition=cond, degenerate=bool(reasons), reason="; ".join(reasons),
        separation=delta, rho_far_estimate=rho_far_est, max_abs_eta=overall, notes=notes,
        max_abs_eta_lower=peak.lower, max_abs_eta_upper=peak.upper, max_abs_eta_direction=peak.direction,
        max_abs_eta_angles=peak.angles, max_abs_eta_detail=peak.detail, span_dim=chart.span_dim,
        search_dim=chart.dim)


def _fn_of(cert: Certificate, W_star: Any) -> _Fn:
    W = np.asarray(W_star, dtype=float)
    if W.ndim != 2 or len(W) != len(cert.alpha):
        raise ValueError(f"W_star must have shape ({len(cert.alpha)}, d); got {W.shape}")
    norms = np.linalg.norm(W, axis=1)
    if np.any(norms == 0) or not np.all(np.isfinite(W)):
        raise ValueError("W_star must have finite non-zero rows")
    return _Fn(cert.activation, W / norms[:, None], np.asarray(cert.alpha, dtype=float),
               np.asarray(cert.beta, dtype=float).reshape(W.shape))


def eta_values(cert: Certificate, W_star: Any, Q: Any) -> np.ndarray:
    """eta(q) = E[p*(x) sigma(<q, x>)] at the rows of Q (float64; 1-homogeneous in q)."""
    fn = _fn_of(cert, W_star)
    return fn.eta(_matrix(Q, fn.W.shape[1], "Q"))


def eta_gradients(cert: Certificate, W_star: Any, Q: Any) -> np.ndarray:
    """grad eta(q) = sum_i alpha_i grad_u k(q, w*_i) + sum_i H(q, w*_i) beta_i (float64)."""
    fn = _fn_of(cert, W_star)
    Q = _matrix(Q, fn.W.shape[1], "Q")
    return _eta_parts(_F64, fn.activation, Q, fn.W, fn.alpha, fn.beta, True)[1]


def c4_bound(cert: Certificate, lam: float, zeta: float) -> float:
    """Upper bound of sum_near mu_j angle_j^2: (zeta + lam^2 ||p*||^2 / 4) / (lam rho); inf if rho <= 0."""
    return _bound(cert.rho, cert.p_norm, lam, zeta)


def c3_bound(cert: Certificate, lam: float, zeta: float) -> float:
    """Upper bound of the far mass: (zeta + lam^2 ||p*||^2 / 4) / (lam rho_far); inf if rho_far <= 0."""
    return _bound(cert.rho_far, cert.p_norm, lam, zeta)


def _bound(rho: float, p_norm: float, lam: float, zeta: float) -> float:
    if not lam > 0:
        raise ValueError(f"lambda must be positive, got {lam}")
    if not rho > 0:
        return math.inf
    return (zeta + lam**2 * p_norm**2 / 4) / (lam * rho)


def certificate_terms(cert: Certificate, W_star: Any, a: Any, W: Any, *,
                      lam: float | None = None, zeta: float | None = None) -> dict:
    """Per-student terms of the certificate inequality and their totals (JSON-ready).

    Per student j: mu_j = |a_j| ||w_j||, nearest teacher, angle to it, region
    ("near" if angle <= radius, "far", or "zero" for w_j = 0) and 1 - |eta(u_j)|.
    Totals: weighted_sq_angle = sum_near mu_j angle_j^2, far_mass = sum_far mu_j,
    pairing = <p*, f_theta> = sum_j a_j ||w_j|| eta(u_j).  With lam and zeta
    (an upper bound of the gap) also the C3/C4 bounds and whether they hold.
    """
    fn = _fn_of(cert, W_star)
    d = fn.W.shape[1]
    Wm = _matrix(W, d, "W")
    av = np.asarray(a, dtype=float)
    if av.shape != (len(Wm),) or not np.all(np.isfinite(av)):
        raise ValueError(f"a must be a finite vector of length {len(Wm)}")
    norms = np.linalg.norm(Wm, axis=1)
    nz = norms > 0
    U = np.where(nz[:, None], Wm / np.where(nz, norms, 1)[:, None], 0.0)
    students = []
    near_sq = far_mass = pairing = slack = 0.0
    if np.any(nz):
        idx, ang = nearest_teacher(fn.W, U[nz], fn.activation)
        eta_u = fn.eta(U[nz])
    pos = 0
    for j in range(len(Wm)):
        mu = float(abs(av[j]) * norms[j])
        if not nz[j]:
            students.append({"mu": mu, "nearest": None, "angle": None, "region": "zero",
                             "one_minus_abs_eta": None})
            continue
        i, th, e = int(idx[pos]), float(ang[pos]), float(eta_u[pos])
        pos += 1
        region = "near" if th <= cert.radius else "far"
        if region == "near":
            near_sq += mu * th**2
        else:
            far_mass += mu
        pairing += float(av[j] * norms[j]) * e
        slack += mu * (1 - abs(e))
        students.append({"mu": mu, "nearest": i, "angle": th, "region": region,
                         "one_minus_abs_eta": 1 - abs(e)})
    out: dict[str, Any] = {
        "students": students,
        "total_mass": float(np.sum(np.abs(av) * norms)),
        "weighted_sq_angle": near_sq,
        "far_mass": far_mass,
        "pairing": pairing,
        "certificate_slack": slack,  # sum_j mu_j (1 - |eta(u_j)|) >= rho S_near + rho_far S_far
    }
    if lam is not None and zeta is not None:
        # A bound exists only with rho > 0 (resp. rho_far > 0); otherwise "holds" is None.
        c4, c3 = c4_bound(cert, lam, zeta), c3_bound(cert, lam, zeta)
        rhs = zeta + lam**2 * cert.p_norm**2 / 4
        usable = cert.rho > 0 and cert.rho_far > 0
        lhs = lam * (cert.rho * near_sq + cert.rho_far * far_mass) if usable else None
        out.update({
            "lam": lam, "zeta": zeta, "rhs": rhs, "combined_lhs": lhs,
            "combined_holds": lhs <= rhs if usable else None,
            "c4_bound": c4 if math.isfinite(c4) else None,
            "c4_holds": near_sq <= c4 if math.isfinite(c4) else None,
            "c3_bound": c3 if math.isfinite(c3) else None,
            "c3_holds": far_mass <= c3 if math.isfinite(c3) else None,
        })
    return out
