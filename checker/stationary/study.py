"""The random-start experiment: where gradient descent from random starts ends, up to symmetry.

``run_study(spec, seeds)`` runs, for each seed s, one start of the published
protocol and returns what became of it (``StudyResult``):

1. **Start** (``random_start``): ``numpy.random.default_rng(s)``; W has entries
   N(0, 1/d) (the "Xavier" start of Safran's public code, ``W = normal(size=(k, k)) / k**0.5``
   with d = k); the output weights are 1 when they are fixed (train = "first", the
   fixed-output setting), N(0, 1/m) when they train.
2. **Gradient descent**, all the starts of a chunk at once (``checker.dynamics.batch.run_batch``,
   bit for bit ``run_gd`` per start), fixed step ``eta``, until the gradient norm over the
   trained blocks is at most ``newton_entry``; then **Newton**
   (``checker.stationary.critical.newton``, Levenberg-Marquardt damped, on the exact Hessian)
   to the gradient's rounding level, and the spectrum there (``critical.describe``).
   If Newton does not end at a minimum (it may have reached a saddle that gradient
   descent would leave), gradient descent resumes from its own last iterate down to
   ``grad_tol`` (the protocol's stopping rule) and Newton is tried again from there.
3. **Classification** (``classify_runs``): a converged run is ``global`` when its gap
   L_lambda - L_ref is at the rounding level (``GAP_ULPS n eps (1 + ||f*||^2)``), with
   L_ref = 0 at lambda = 0 when the trained layers can realize the teacher
   (``checker.rigorous.critical.realizable``), else the lowest L_lambda of the study's
   minima (an estimate, labelled so in the result); otherwise ``zero-neuron`` when a
   neuron ended at w_j ~ 0 (||w_j|| <= ZERO_NEURON max ||w||: L is not twice differentiable
   there, so the Hessian's kind is meaningless; weight decay drove the neuron to zero), else
   ``spurious`` (a minimum), ``saddle`` or ``degenerate`` by the Hessian's kind; a run that
   did not converge is ``not-converged``.  The published criterion (objective >= 1e-3 on their scale, i.e.
   L >= 2e-3 on ours) is counted beside it.
4. **Classes** (``group_classes``): runs whose end points agree up to the model's
   symmetries -- permutations of the student neurons (with their output weights), and for
   an orthonormal teacher W* = I also the permutations of the input coordinates
   (x -> P x maps the teacher to itself, so W -> W P is a symmetry) -- and, for relu, the
   rescaling (a_j, w_j) -> (a_j / c, c w_j), c > 0 (for abs also w_j -> -w_j).  They are
   compared by invariants of that group: L_lambda, and with s_j = a_j ||w_j|| and
   u_j = s_j w_j / ||w_j|| (the function's own neurons), the sorted s_j and the sorted
   entries of U (orthonormal teacher; absolute values for abs) or the rows of U matched
   one to one (any other teacher).  Equal invariants within ``CLASS_TOL`` put two runs in
   one class.  A class's representative is its first run, rows (and for W* = I columns)
   sorted into a canonical order (``canonical_form``).
5. **Certificates** (``certify_classes``): each representative is certified with
   ``checker.rigorous.critical.certify`` (Arb): a box with exactly one stationary point,
   a certified lower bound of the smallest Hessian eigenvalue over it, enclosures of L
   and L_lambda, and "spurious" with a certified gap when its L_lambda lower end is above
   a certified upper end of the optimum: 0 when lambda = 0 and the teacher is realizable,
   else the certified upper end of L_lambda at the lowest certified class (a stationary
   point's value bounds the optimum from above).

Only the float64 engine runs the study (the batched engine); the certificates are Arb.
Resume (``checker.commands.landscape``): every run is one record keyed by the study's
parameters and its seed (``run_key``), so a killed study rerun computes only the
missing seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from checker.core import hessian as hs
from checker.core.engines import Float64Engine
from checker.core.errors import CheckerError
from checker.core.problem import Problem

RESULT_FORMAT = "zhou-ge-checker/landscape"
RESULT_VERSION = "1.0"
#: A gap at most GAP_ULPS n eps (1 + ||f*||^2) is at the rounding level (global).
GAP_ULPS = 1000
#: The published spurious criterion: objective >= 1e-3 on their scale (one half of ours).
PUBLISHED_SPURIOUS_LOSS = 2e-3
#: Invariants equal within this (relative to 1 + size) put two runs in one class.
CLASS_TOL = 1e-6
#: Defaults of the protocol (see docs/landscape.md).
NEWTON_ENTRY = 1e-6
GRAD_TOL = 2e-12
MAX_STEPS = 200_000
MAX_TEACHER = 100
MAX_SEEDS = 1_000_000
RUN_KINDS = ("global", "spurious", "saddle", "degenerate", "zero-neuron", "not-converged")
#: A neuron with ||w_j|| at most this (relative to the largest) counts as zero (a dead neuron).
ZERO_NEURON = 1e-6


# --------------------------------------------------------------------------- the study's parameters
@dataclass(frozen=True)
class StudySpec:
    """Everything that fixes a run but its seed (JSON-able; float entries)."""

    teacher: str  # how the teacher was named (orthonormal:K, a file, a preset)
    activation: str
    a_star: tuple[float, ...]
    W_star: tuple[tuple[float, ...], ...]
    width: int
    train: str = "first"
    lam: float = 0.0
    eta: float | None = None  # None: default_step (2.5 / width, the public code's 5 / k on half our loss)
    newton_entry: float = NEWTON_ENTRY
    grad_tol: float = GRAD_TOL
    max_steps: int = MAX_STEPS
    orthonormal: bool = False  # W* = I_d and a* = 1: the input coordinates are interchangeable

    def __post_init__(self) -> None:
        hs.check_train(self.train)
        m_star, d = len(self.a_star), len(self.W_star[0]) if self.W_star else 0
        if m_star < 1 or d < 1 or len(self.W_star) != m_star:
            raise CheckerError("the teacher needs at least one neuron")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < m_star:
            raise CheckerError(f"the student width {self.width} is below the teacher's m* = {m_star}: give "
                               f"--width {m_star} or more")
        for name in ("lam", "newton_entry", "grad_tol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise CheckerError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.eta is not None and not (math.isfinite(self.eta) and self.eta > 0):
            raise CheckerError(f"eta must be a finite positive number, got {self.eta!r}")
        if self.grad_tol <= 0 or self.newton_entry < self.grad_tol:
            raise CheckerError("need 0 < grad_tol <= newton_entry")

    @property
    def d(self) -> int:
        return len(self.W_star[0])

    @property
    def step(self) -> float:
        """``eta``, else min(2.5 / width, STEP_CAP / lambda_top) (``default_step``)."""
        if self.eta is not None:
            return self.eta
        return default_step(self.activation, self.a_star, self.W_star, self.width, self.train, float(self.lam))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["a_star"] = [repr(float(x)) for x in self.a_star]
        out["W_star"] = [[repr(float(x)) for x in r] for r in self.W_star]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StudySpec":
        d = dict(data)
        d["a_star"] = tuple(float(x) for x in d["a_star"])
        d["W_star"] = tuple(tuple(float(x) for x in r) for r in d["W_star"])
        return cls(**d)

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def problem(self, a: np.ndarray | None = None, W: np.ndarray | None = None) -> Problem:
        """The float64 problem with student (a, W) (default: zeros of the right shape)."""
        e = Float64Engine()
        m = self.width
        return Problem(engine=e, activation=self.activation,
                       a=np.ones(m) if a is None else np.asarray(a, dtype=float),
                       W=np.zeros((m, self.d)) if W is None else np.asarray(W, dtype=float),
                       a_star=np.array(self.a_star, dtype=float), W_star=np.array(self.W_star, dtype=float),
                       lam=float(self.lam), eta=self.step)


#: The default step keeps eta lambda_top below this (gradient descent is stable below 2).
STEP_CAP = 1.8


@functools.lru_cache(maxsize=64)
def default_step(activation: str, a_star: tuple, W_star: tuple, width: int, train: str, lam: float) -> float:
    """min(2.5 / width, STEP_CAP / lambda_top): the public code's 5 / k on one half of our loss,
    capped by the largest Hessian eigenvalue lambda_top of L_lambda at the teacher itself (width m*,
    the trained blocks of the study), where gradient descent must be stable to converge.  For
    orthonormal:K the cap binds only for K <= 4 (K = 4: 0.596 instead of 0.625; K >= 5: 2.5 / K)."""
    from checker.core.engines import Float64Engine as F

    a, W = np.array(a_star, dtype=float), np.array(W_star, dtype=float)
    p = Problem(engine=F(), activation=activation, a=a, W=W, a_star=a, W_star=W, lam=lam, eta=None)
    top = float(np.linalg.eigvalsh(hs.hessian(p, a, W, lam=lam, train=train))[-1])
    return min(2.5 / width, STEP_CAP / top) if top > 0 else 2.5 / width


def orthonormal_teacher(K: Any) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]:
    """(a*, W*) = (1, I_K): K orthonormal relu neurons in d = K with output weights 1."""
    if isinstance(K, bool) or not isinstance(K, int) or not 1 <= K <= MAX_TEACHER:
        raise CheckerError(f"orthonormal:K needs a whole number K from 1 to {MAX_TEACHER}, got {K!r}")
    return tuple([1.0] * K), tuple(tuple(1.0 if i == j else 0.0 for j in range(K)) for i in range(K))


def is_orthonormal_identity(a_star: Sequence[float], W_star: Sequence[Sequence[float]]) -> bool:
    """True when a* = 1 and W* is exactly the identity (the teacher the coordinate symmetry needs)."""
    W = np.asarray(W_star, dtype=float)
    return W.shape[0] == W.shape[1] and bool(np.array_equal(W, np.eye(len(W)))) and all(x == 1.0 for x in a_star)


def run_key(spec_digest: str, seed: int) -> str:
    return f"{spec_digest}-{seed}"


def random_start(spec: StudySpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded start: W entries N(0, 1/d); a = 1 when fixed, N(0, 1/m) when it trains."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(spec.width, spec.d)) / math.sqrt(spec.d)
    a = np.ones(spec.width) if spec.train == "first" else rng.normal(size=spec.width) / math.sqrt(spec.width)
    if spec.train == "second":
        a = np.ones(spec.width)
    if spec.train != "second" and np.any(np.all(W == 0, axis=1)):
        raise CheckerError(f"seed {seed}: the start has a zero neuron (L is not twice differentiable there)")
    return a, W


# --------------------------------------------------------------------------- one chunk of runs
def _f(x: Any) -> str:
    return repr(float(x))


def _finish(spec: StudySpec, a: np.ndarray, W: np.ndarray, gd_steps: int, gd_reason: str
            ) -> tuple[Any, int, bool, str]:
    """Newton from (a, W); (StationaryPoint or None, newton steps, converged, note)."""
    from checker.stationary.critical import describe, newton

    p = spec.problem(a, W)
    try:
        a2, W2, k, conv = newton(p, a, W, lam=float(spec.lam), train=spec.train)
        sp = describe(p, a2, W2, train=spec.train, lam=float(spec.lam), converged=conv, gd_steps=gd_steps,
                      newton_steps=k, stop_reason="converged" if conv else "newton-stalled")
        return sp, k, conv, ""
    except hs.NotTwiceDifferentiable as exc:
        return None, 0, False, f"not twice differentiable: {exc}"


def run_chunk(spec_data: Mapping[str, Any], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The runs of ``seeds`` (one record each, see ``run_study``); picklable for a process pool.

    Raises KeyboardInterrupt when interrupted (no partial record is returned).
    """
    from checker.dynamics.batch import run_batch
    from checker.dynamics.gd import StopRules

    spec = StudySpec.from_dict(spec_data)
    digest = spec.digest()
    t0 = time.perf_counter()
    starts = [random_start(spec, s) for s in seeds]
    a0 = np.array([s[0] for s in starts]).reshape(len(seeds), spec.width)
    W0 = np.array([s[1] for s in starts]).reshape(len(seeds), spec.width, spec.d)
    problem = spec.problem()
    no_floor = spec.max_steps + 1  # the precision floor off (dynamics.batch docstring)

    def gd(a: np.ndarray, W: np.ndarray, tol: float, steps: int) -> Any:
        res = run_batch(problem, a, W, spec.step, stop=StopRules(max_steps=steps, grad_tol=tol,
                                                                  gap_every=max(no_floor, 1)),
                        train=spec.train, lam=float(spec.lam))
        if "interrupted" in res.stop_reason:
            raise KeyboardInterrupt
        return res

    first = gd(a0, W0, spec.newton_entry, spec.max_steps)
    out: list[dict[str, Any]] = [None] * len(seeds)  # type: ignore[list-item]
    retry: list[int] = []
    results: dict[int, tuple] = {}
    for i in range(len(seeds)):
        sp, k, conv, note = _finish(spec, first.a[i], first.W[i], int(first.steps[i]), first.stop_reason[i])
        results[i] = (sp, int(first.steps[i]), first.stop_reason[i], k, note, first.a[i], first.W[i])
        if sp is None or not conv or sp.kind != "minimum":
            if first.stop_reason[i] == "grad-tol" and spec.grad_tol < spec.newton_entry:
                retry.append(i)
    if retry:
        left = spec.max_steps - int(max(first.steps[i] for i in retry))
        second = gd(first.a[retry], first.W[retry], spec.grad_tol, max(left, 0))
        for j, i in enumerate(retry):
            steps = int(first.steps[i] + second.steps[j])
            sp, k, conv, note = _finish(spec, second.a[j], second.W[j], steps, second.stop_reason[j])
            k_total = results[i][3] + k
            results[i] = (sp, steps, second.stop_reason[j], k_total, note, second.a[j], second.W[j])
    per = (time.perf_counter() - t0) / max(len(seeds), 1)
    for i, seed in enumerate(seeds):
        sp, steps, gd_reason, k, note, ga, gW = results[i]
        rec: dict[str, Any] = {"key": run_key(digest, seed), "spec": digest, "seed": int(seed),
                               "gd_steps": steps, "gd_stop": gd_reason, "newton_steps": k, "seconds": per,
                               "gd_end": {"a": [_f(x) for x in ga], "W": [[_f(x) for x in r] for r in gW]}}
        if sp is None:
            rec.update(converged=False, kind="not-differentiable", note=note, loss=None, reg_loss=None,
                       grad_norm=None, index=None, eigenvalues=None, a=None, W=None)
        else:
            rec.update(converged=bool(sp.converged), kind=sp.kind, index=int(sp.index), loss=_f(sp.loss),
                       reg_loss=_f(sp.reg_loss), grad_norm=_f(sp.grad_norm),
                       eigenvalues=[_f(x) for x in sp.eigenvalues], a=[_f(x) for x in sp.a],
                       W=[[_f(x) for x in r] for r in sp.W],
                       newton_move=_f(np.max(np.abs(np.concatenate([sp.a - ga, (sp.W - gW).ravel()])))))
        out[i] = rec
    return out


# --------------------------------------------------------------------------- classification
def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n (95% with the default z)."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def gap_tolerance(spec: StudySpec) -> float:
    """GAP_ULPS n eps (1 + ||f*||^2): a gap below this is at the rounding level."""
    p = spec.problem()
    from checker.core.objective import gram

    fstar = float(p.a_star.dot(gram(p.engine, p.W_star, p.W_star, p.activation)).dot(p.a_star))
    n = len(hs.parameter_indices(spec.width, spec.d, spec.train))
    return GAP_ULPS * n * np.finfo(float).eps * (1 + fstar)


def reference_value(spec: StudySpec, records: Sequence[Mapping[str, Any]]) -> tuple[float | None, str]:
    """(L_ref, how): 0 for lambda = 0 and a realizable teacher, else the lowest minimum found."""
    from checker.rigorous.critical import realizable

    if spec.lam == 0:
        ok, how = realizable(spec.problem(), spec.train)
        if ok:
            return 0.0, f"lambda = 0 and the teacher is realizable ({how}): the optimum is 0"
    vals = [float(r["reg_loss"]) for r in records if r.get("converged") and r.get("kind") in ("minimum", "degenerate")]
    if not vals:
        return None, "no minimum reached: no reference value"
    return min(vals), "the lowest L_lambda among the study's minima (an estimate of the optimum)"


def run_category(rec: Mapping[str, Any], ref: float | None, tol: float) -> str:
    if not rec.get("converged"):
        return "not-converged"
    if ref is not None and float(rec["reg_loss"]) - ref <= tol:
        return "global"
    if rec.get("W") is not None and rec.get("train", "first") != "second":
        norms = np.linalg.norm(np.array(rec["W"], dtype=float), axis=1)
        if norms.min() <= ZERO_NEURON * max(norms.max(), 1e-300):
            # L is not twice differentiable there: the Hessian's kind says nothing; the point is a
            # stationary point of the narrower student (weight decay drove a neuron to zero)
            return "zero-neuron"
    if rec["kind"] == "minimum":
        return "spurious"
    return rec["kind"]  # saddle or degenerate


def _invariants(spec: StudySpec, a: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(W, axis=1)
    s = a * norms
    U = (s / np.where(norms > 0, norms, 1))[:, None] * W
    if spec.activation == "abs":
        U = np.abs(U)
    return s, U


def same_point(spec: StudySpec, x: Mapping[str, Any], y: Mapping[str, Any]) -> bool:
    """True when the invariants of the two end points agree within CLASS_TOL (module docstring)."""
    lx, ly = float(x["reg_loss"]), float(y["reg_loss"])
    if abs(lx - ly) > CLASS_TOL * (1 + abs(lx)):
        return False
    sx, Ux = _invariants(spec, np.array(x["a"], dtype=float), np.array(x["W"], dtype=float))
    sy, Uy = _invariants(spec, np.array(y["a"], dtype=float), np.array(y["W"], dtype=float))
    scale = 1 + max(np.max(np.abs(Ux)), np.max(np.abs(Uy)))
    if spec.activation == "abs":
        sx, sy = np.abs(sx), np.abs(sy)
    if np.max(np.abs(np.sort(sx) - np.sort(sy))) > CLASS_TOL * scale:
        return False
    if spec.orthonormal:
        return bool(np.max(np.abs(np.sort(Ux.ravel()) - np.sort(Uy.ravel()))) <= CLASS_TOL * scale)
    # rows matched one to one (greedy nearest unused row)
    used = np.zeros(len(Uy), dtype=bool)
    for row in Ux:
        dist = np.max(np.abs(Uy - row), axis=1)
        dist[used] = np.inf
        j = int(np.argmin(dist))
        if dist[j] > CLASS_TOL * scale:
            return False
        used[j] = True
    return True


def canonical_form(spec: StudySpec, a: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A representative in a canonical order: columns (W* = I) by decreasing column sum, then rows
    lexicographically decreasing (rounded to 1e-9 for the order only).  The point is moved by a
    symmetry of the model only, so it is a stationary point of the same kind and value."""
    a, W = np.array(a, dtype=float), np.array(W, dtype=float)
    if spec.orthonormal:
        cols = np.lexsort((-np.round(np.linalg.norm(W, axis=0), 9), -np.round(W.sum(axis=0), 9)))
        W = W[:, cols]
    keys = np.round(np.column_stack([a[:, None], W]), 9)
    order = sorted(range(len(a)), key=lambda j: tuple(-keys[j]))
    return a[order], W[order]


@dataclass
class StationaryClass:
    """One distinct end point (up to symmetry) and the runs that reached it."""

    category: str
    loss: float
    reg_loss: float
    min_eigenvalue: float | None
    index: int | None
    kind: str
    count: int
    seeds: list[int]
    a: list[float]
    W: list[list[float]]
    eigenvalues: list[float]
    published_spurious: bool  # L >= 2e-3 (the published criterion)
    certified: dict[str, Any] | None = None
    continuation: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["a"] = [_f(x) for x in self.a]
        d["W"] = [[_f(x) for x in r] for r in self.W]
        d["eigenvalues"] = [_f(x) for x in self.eigenvalues]
        d["seeds"] = self.seeds[:20]
        return d


def group_classes(spec: StudySpec, records: Sequence[Mapping[str, Any]], ref: float | None, tol: float
                  ) -> list[StationaryClass]:
    """The distinct end points of the converged runs up to symmetry, by increasing L_lambda."""
    reps: list[tuple[Mapping[str, Any], list[Mapping[str, Any]]]] = []
    for r in sorted((r for r in records if r.get("converged")), key=lambda r: r["seed"]):
        for rep, members in reps:
            if same_point(spec, rep, r):
                members.append(r)
                break
        else:
            reps.append((r, [r]))
    out = []
    for rep, members in reps:
        a, W = canonical_form(spec, np.array(rep["a"], dtype=float), np.array(rep["W"], dtype=float))
        eig = [float(x) for x in rep["eigenvalues"]]
        out.append(StationaryClass(
            category=run_category(rep, ref, tol), loss=float(rep["loss"]), reg_loss=float(rep["reg_loss"]),
            min_eigenvalue=eig[0] if eig else None, index=rep["index"], kind=rep["kind"], count=len(members),
            seeds=sorted(int(m["seed"]) for m in members), a=list(a), W=[list(r) for r in W], eigenvalues=eig,
            published_spurious=float(rep["loss"]) >= PUBLISHED_SPURIOUS_LOSS))
    out.sort(key=lambda c: c.reg_loss)
    return out


# --------------------------------------------------------------------------- certificates
def certify_classes(spec: StudySpec, classes: Sequence[StationaryClass], *, which: str = "spurious",
                    say: Callable[[str], None] = lambda t: None) -> None:
    """Certify the representatives (``which``: "all", "spurious" (spurious and the lowest class,
    whose certified value bounds the optimum when it is not known), or "none"); in place."""
    from fractions import Fraction

    from checker.rigorous.critical import certify, realizable, reg_loss_upper

    if which == "none" or not classes:
        return
    upper: str | None = None
    reference: str | None = None
    realizable_zero = spec.lam == 0 and realizable(spec.problem(), spec.train)[0]
    todo = list(classes)
    if not realizable_zero:
        # any point's L_lambda bounds the optimum above (an infimum over the same parameters): the lowest
        # end point, whatever its kind (a degenerate global minimum of a wider student has no certificate)
        points = [c for c in classes if c.category != "zero-neuron"]
        lowest = min(points, key=lambda c: c.reg_loss) if points else None
        if lowest is not None:
            upper = reg_loss_upper(spec.problem(lowest.a, lowest.W))
            reference = ("the certified upper end of L_lambda at the study's lowest end point "
                         f"({upper[:20]}; {lowest.category}, {lowest.kind}): the optimum is at most that")
        # the lowest minimum first: its certificate's upper end of L_lambda bounds the optimum too
        low = next((c for c in classes if c.kind == "minimum" and c.category != "zero-neuron"), None)
        if low is not None:
            say(f"certifying the lowest minimum (L_lambda = {low.reg_loss:.10g}) ...")
            cert = certify(spec.problem(low.a, low.W), train=spec.train, lam=float(spec.lam), optimum_upper=upper,
                           optimum_reference=reference)
            low.certified = cert.to_dict()
            if cert.rigorous and cert.reg_loss_enclosure and (
                    upper is None or Fraction(cert.reg_loss_enclosure[1]) < Fraction(upper)):
                upper = cert.reg_loss_enclosure[1]
                reference = ("the certified upper end of L_lambda at the study's lowest certified stationary "
                             f"point ({upper[:20]}): the optimum is at most that")
            todo = [c for c in classes if c is not low]
    for c in todo:
        if which == "spurious" and c.category != "spurious":
            continue
        say(f"certifying the class L_lambda = {c.reg_loss:.10g} ({c.count} runs) ...")
        cert = certify(spec.problem(c.a, c.W), train=spec.train, lam=float(spec.lam), optimum_upper=upper,
                       optimum_reference=reference)
        c.certified = cert.to_dict()


# --------------------------------------------------------------------------- continuation in lambda
def continue_in_lambda(spec: StudySpec, a: Sequence[float], W: Sequence[Sequence[float]], lams: Sequence[float],
                       *, train: str | None = None, certify_each: bool = True) -> list[dict[str, Any]]:
    """Newton continuation of a stationary point in lambda: at each lambda of ``lams`` (increasing),
    Newton from the previous point; its kind, value and (``certify_each``) Arb certificate.

    Ends early when Newton no longer converges ("vanished": no stationary point reached from the
    previous one) or the point falls onto another (its gap reaches the rounding level is not judged
    here; compare the values).  ``train`` defaults to the spec's.
    """
    from checker.stationary.critical import describe, newton
    from checker.rigorous.critical import certify

    train = train or spec.train
    a_c, W_c = np.array(a, dtype=float), np.array(W, dtype=float)
    out: list[dict[str, Any]] = []
    for lam in lams:
        p = dataclasses.replace(spec.problem(a_c, W_c), lam=float(lam))
        try:
            a2, W2, k, conv = newton(p, a_c, W_c, lam=float(lam), train=train)
        except hs.NotTwiceDifferentiable as exc:
            out.append({"lambda": _f(lam), "status": "vanished", "why": str(exc)})
            break
        sp = describe(p, a2, W2, train=train, lam=float(lam), converged=conv)
        move = float(np.max(np.abs(np.concatenate([a2 - a_c, (W2 - W_c).ravel()]))))
        row: dict[str, Any] = {"lambda": _f(lam), "converged": bool(conv), "kind": sp.kind, "index": int(sp.index),
                               "loss": _f(sp.loss), "reg_loss": _f(sp.reg_loss),
                               "min_eigenvalue": _f(sp.eigenvalues[0]), "newton_steps": k, "move": _f(move),
                               "a": [_f(x) for x in a2], "W": [[_f(x) for x in r] for r in W2]}
        if not conv:
            row["status"] = "vanished"
            out.append(row)
            break
        row["status"] = sp.kind
        if certify_each:
            cert = certify(p, a2, W2, train=train, lam=float(lam))
            row["certified"] = {k2: cert.to_dict()[k2] for k2 in
                                ("rigorous", "why", "radius", "min_eigenvalue_lower", "strict_local_minimum",
                                 "saddle", "reg_loss_enclosure")}
        out.append(row)
        a_c, W_c = a2, W2
    return out


def compare_continuations(rows: list[dict[str, Any]], lowest: Sequence[Mapping[str, Any]] | None) -> None:
    """In place: at each lambda where both the continued class and the continued lowest class are
    certified, ``gap_to_lowest_lower`` = (its L_lambda lower end) - (the lowest's upper end) rounded
    down, when positive: the continued point is then certainly not a global minimum at that lambda
    (the lowest one's value bounds the optimum from above)."""
    from fractions import Fraction

    by_lam = {r["lambda"]: r for r in (lowest or [])}
    for r in rows:
        o = by_lam.get(r["lambda"])
        c, co = r.get("certified") or {}, (o or {}).get("certified") or {}
        if not (c.get("rigorous") and co.get("rigorous") and c.get("reg_loss_enclosure")
                and co.get("reg_loss_enclosure")):
            continue
        gap = Fraction(c["reg_loss_enclosure"][0]) - Fraction(co["reg_loss_enclosure"][1])
        if gap > 0:
            x = float(gap)
            if Fraction(x) > gap:
                x = float(np.nextafter(x, -np.inf))
            r["gap_to_lowest_lower"] = repr(x)
            r["spurious_certified"] = True
        else:
            r["spurious_certified"] = None


# --------------------------------------------------------------------------- the whole study
@dataclass
class StudyResult:
    spec: StudySpec
    seeds: list[int]
    records: list[dict[str, Any]]
    classes: list[StationaryClass] = field(default_factory=list)
    reference: float | None = None
    reference_how: str = ""
    gap_tol: float = 0.0
    interrupted: bool = False
    seconds: float = 0.0
    computed: int = 0
    executor: str = ""

    def counts(self) -> dict[str, int]:
        c = {k: 0 for k in RUN_KINDS}
        for r in self.records:
            cat = run_category(r, self.reference, self.gap_tol)
            c[cat if cat in c else "not-converged"] += 1
        return c

    def to_dict(self) -> dict[str, Any]:
        from checker import __version__

        n = len(self.records)
        counts = self.counts()
        k = counts["spurious"]
        published = sum(1 for r in self.records if r.get("converged") and float(r["loss"]) >= PUBLISHED_SPURIOUS_LOSS)
        lo, hi = wilson_interval(k, n)
        plo, phi = wilson_interval(published, n)
        certified_gaps = [float(c.certified["gap_lower"]) for c in self.classes
                          if c.certified and c.certified.get("rigorous") and c.certified.get("spurious")
                          and c.certified.get("gap_lower")]
        return {
            "format": RESULT_FORMAT, "version": RESULT_VERSION, "checker_version": __version__,
            "spec": self.spec.to_dict(), "eta": self.spec.step, "seeds_requested": len(self.seeds),
            "runs": n, "complete": n == len(self.seeds) and not self.interrupted, "interrupted": self.interrupted,
            "counts": counts,
            "spurious_fraction": {"value": k / n if n else None, "interval": [lo, hi], "count": k,
                                  "interval_kind": "Wilson score, 95%"},
            "published_criterion": {"rule": "L >= 2e-3 (objective >= 1e-3 on one half of our loss)",
                                    "count": published, "value": published / n if n else None,
                                    "interval": [plo, phi]},
            "reference": {"value": self.reference, "how": self.reference_how, "gap_tolerance": self.gap_tol},
            "classes": [c.to_dict() for c in self.classes],
            "smallest_certified_spurious_gap": min(certified_gaps) if certified_gaps else None,
            "seconds": self.seconds, "computed": self.computed, "executor": self.executor,
            "runs_detail": [{k2: r.get(k2) for k2 in ("seed", "kind", "loss", "reg_loss", "gd_steps",
                                                       "newton_steps", "gd_stop")}
                            | {"category": run_category(r, self.reference, self.gap_tol)} for r in self.records],
        }


def summarize(spec: StudySpec, seeds: Sequence[int], records: Sequence[Mapping[str, Any]], *,
              certify_which: str = "spurious", interrupted: bool = False,
              say: Callable[[str], None] = lambda t: None) -> StudyResult:
    """Classify the runs of ``seeds`` found in ``records``, group the classes and certify them."""
    wanted = set(int(s) for s in seeds)
    recs = sorted((dict(r) for r in records if int(r["seed"]) in wanted), key=lambda r: r["seed"])
    ref, how = reference_value(spec, recs)
    tol = gap_tolerance(spec)
    classes = group_classes(spec, recs, ref, tol)
    if not interrupted:
        certify_classes(spec, classes, which=certify_which, say=say)
    return StudyResult(spec=spec, seeds=list(seeds), records=recs, classes=classes, reference=ref,
                       reference_how=how, gap_tol=tol, interrupted=interrupted)


def chunks(seeds: Sequence[int], workers: int, max_chunk: int = 250) -> list[list[int]]:
    """The seeds cut into about ``workers`` chunks of at most ``max_chunk`` (batched GD per chunk)."""
    seeds = list(seeds)
    if not seeds:
        return []
    size = max(1, min(max_chunk, math.ceil(len(seeds) / max(workers, 1))))
    return [seeds[i:i + size] for i in range(0, len(seeds), size)]


def measure_chunk(point: Mapping[str, Any]) -> dict[str, Any]:
    """Pool/Dask task (``checker.studies.sweep``'s executors): the runs of one chunk of seeds."""
    from checker.core.allocator import tune_allocator

    tune_allocator()
    try:
        return {"records": run_chunk(point["spec"], point["seeds"]), "error": None}
    except CheckerError as exc:
        return {"records": [], "error": str(exc)}


def run_study(spec: StudySpec, seeds: Sequence[int], *, done: Mapping[str, Mapping[str, Any]] | None = None,
              workers: int = 1, scheduler: Any = None, max_chunk: int = 250,
              on_records: Callable[[list[dict[str, Any]]], None] = lambda recs: None,
              progress: Callable[[int], None] = lambda n: None,
              warn: Callable[[str], None] = lambda text: None) -> tuple[list[dict[str, Any]], int, bool, str]:
    """Run the seeds missing from ``done`` (records by key); returns (all records, computed, interrupted,
    executor).  ``on_records`` sees every completed chunk (the command appends them to its results
    file); ``progress`` the number of runs completed by each chunk; ``warn`` the Dask executor's
    warnings (``checker.studies.dask_executor``: a cluster without workers)."""
    from checker.studies.sweep import _dask, _local

    done = dict(done or {})
    digest = spec.digest()
    have = {k: r for k, r in done.items() if r.get("spec") == digest}
    todo = [s for s in seeds if run_key(digest, s) not in have]
    records = [have[run_key(digest, s)] for s in seeds if run_key(digest, s) in have]
    tasks = [{"key": f"{digest}-{c[0]}-{len(c)}", "spec": spec.to_dict(), "seeds": c}
             for c in chunks(todo, workers, max_chunk)]
    executor = "dask" if scheduler is not None else f"local:{workers}"
    computed = 0
    interrupted = False
    try:
        if tasks:
            it: Iterable = (_dask(tasks, scheduler, measure_chunk, warn=warn) if scheduler is not None
                            else _local(tasks, workers, measure_chunk))
            for task, outcome in it:
                if outcome.get("error"):
                    raise CheckerError(outcome["error"])
                recs = outcome["records"]
                on_records(recs)
                records.extend(recs)
                computed += len(recs)
                progress(len(recs))
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:  # a worker interrupted by the same Ctrl-C breaks the pool
        if type(exc).__name__ == "BrokenProcessPool":
            interrupted = True
        else:
            raise
    return records, computed, interrupted, executor
