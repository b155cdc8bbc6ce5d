"""The threshold bounded above: the smallest certified gap of a spurious stationary point.

If L_lambda has a stationary point theta_s other than a global minimum, with gap
zeta_s = L_lambda(theta_s) - L*_lambda > 0, gradient descent started at theta_s never moves,
so no "gap below eps => convergence" statement can hold with eps > zeta_s.  A certified
spurious stationary point (``checker.rigorous.critical``: a box with exactly one stationary
point, its L_lambda lower end above a certified upper end of the optimum) gives a rigorous
lower bound ``gap_lower`` <= zeta_s; the threshold of the instance is then at most zeta_s,
and a checker constant eps_0 above ``gap_lower`` is certainly above zeta_s: the statement as
formalized would be contradicted.

``spurious_gaps(data, instance)`` reads a ``checker.critical`` or ``checker.landscape``
result and returns its certified spurious gaps, after checking that the point belongs to
the instance's problem: the same activation, teacher (after the instance's normalization),
lambda and width, with both layers trained (the setting of the threshold).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from checker.core.engines import Float64Engine
from checker.core.errors import CheckerError
from checker.core.model import Instance
from checker.core.problem import Problem


@dataclass
class SpuriousGap:
    gap_lower: float  # certified lower bound (decimal string rounded down, read as a float below it)
    gap_lower_text: str
    loss: float | None
    source: str


def _teacher(instance: Instance) -> tuple[str, np.ndarray, np.ndarray, float, int]:
    p = Problem.from_instance(instance, Float64Engine())
    return p.activation, np.asarray(p.a_star, dtype=float), np.asarray(p.W_star, dtype=float), float(p.lam), len(p.a)


def _float_down(text: str) -> float:
    """A float at most the decimal ``text`` (a lower bound stays a lower bound)."""
    from fractions import Fraction

    x = float(text)
    return float(np.nextafter(x, -np.inf)) if Fraction(x) > Fraction(text) else x


def _check_same(what: str, act: str, a: np.ndarray, W: np.ndarray, lam: float, width: int, train: str,
                inst: tuple[str, np.ndarray, np.ndarray, float, int]) -> None:
    iact, ia, iW, ilam, iwidth = inst
    if train != "both":
        raise CheckerError(f"--stationary {what}: its point has train = {train}; the threshold's problem trains "
                           "both layers (a stationary point of another problem bounds nothing here)")
    if act != iact or a.shape != ia.shape or W.shape != iW.shape or not (
            np.allclose(a, ia, rtol=0, atol=1e-15) and np.allclose(W, iW, rtol=0, atol=1e-15)):
        raise CheckerError(f"--stationary {what}: its teacher or activation differs from the instance's")
    if lam != ilam:
        raise CheckerError(f"--stationary {what}: lambda {lam} differs from the instance's {ilam}")
    if width != iwidth:
        raise CheckerError(f"--stationary {what}: width {width} differs from the instance's student width {iwidth}")


def spurious_gaps(data: Any, instance: Instance, what: str = "FILE") -> list[SpuriousGap]:
    """Certified spurious gaps in a ``checker.critical`` or ``checker.landscape`` result for ``instance``."""
    if not isinstance(data, Mapping):
        raise CheckerError(f"--stationary {what}: expected a JSON object")
    inst = _teacher(instance)
    fmt = data.get("format")
    out: list[SpuriousGap] = []
    if fmt == "zhou-ge-checker/critical":
        other = Instance.from_dict(data["instance"])
        act, a, W, lam, width = _teacher(other)
        train = data.get("options", {}).get("train", "both")
        lam = float(data.get("options", {}).get("lambda", lam))
        _check_same(what, act, a, W, lam, width, train, inst)
        c = data.get("certified") or {}
        if c.get("rigorous") and c.get("spurious") and c.get("gap_lower"):
            out.append(SpuriousGap(_float_down(c["gap_lower"]), c["gap_lower"], float(data["loss"]),
                                   f"{what} (checker.critical)"))
        return out
    if fmt == "zhou-ge-checker/landscape":
        s = data["spec"]
        a = np.array([float(x) for x in s["a_star"]])
        W = np.array([[float(x) for x in r] for r in s["W_star"]])
        _check_same(what, s["activation"], a, W, float(s["lam"]), int(s["width"]), s["train"], inst)
        for i, c in enumerate(data.get("classes", [])):
            cert = c.get("certified") or {}
            if cert.get("rigorous") and cert.get("spurious") and cert.get("gap_lower"):
                out.append(SpuriousGap(_float_down(cert["gap_lower"]), cert["gap_lower"], float(c["loss"]),
                                       f"{what} class {i} (checker.landscape)"))
        return out
    raise CheckerError(f"--stationary {what}: not a checker.critical or checker.landscape result "
                       f"(format {str(fmt)[:40]!r})")


def ordering(eps0: float | None, lower: float | None, upper: float | None, gap: SpuriousGap | None
             ) -> tuple[str, bool]:
    """(the printed chain eps_0 <= empirical lower end <= threshold <= smallest spurious gap, contradicted).

    ``contradicted`` is True when eps_0 is above the certified spurious gap (a certified lower
    bound of zeta_s, so eps_0 > zeta_s)."""
    def f(x: float | None) -> str:
        return "?" if x is None else f"{x:.6g}"
    chain = (f"eps_0 = {f(eps0)} <= empirical lower end {f(lower)} <= threshold <= "
             + (f"smallest certified spurious gap {gap.gap_lower_text[:14]} ({gap.source})" if gap else
                "smallest spurious gap (none certified)"))
    bad = [eps0 is not None and lower is not None and eps0 > lower,
           lower is not None and gap is not None and lower > gap.gap_lower]
    if upper is not None and gap is not None and upper > gap.gap_lower:
        chain += f"; note: the empirical upper end {f(upper)} is above the certified spurious gap"
    if any(bad):
        chain += "  (an inequality of the chain fails: see the messages)"
    return chain, bool(eps0 is not None and gap is not None and eps0 > gap.gap_lower)


# --------------------------------------------------------------------------- the threshold's own Newton search
#: Wall-time budget (seconds) of the Newton search from the failing trials, all starts together.
SEARCH_TIME = 60.0
#: Gradient-descent steps allowed per start before Newton (the trial's GD has usually stalled already).
SEARCH_STEPS = 20_000
#: Two end points are the same stationary point when their sorted neurons agree to this (max norm).
SAME_POINT = 1e-8
#: Largest number of parameters m (d + 1) certified (the Arb certificate costs O(n^3) ball operations:
#: about 3 s at n = 110, so about 20 s at this limit).
MAX_CERTIFY_PARAMS = 220


@dataclass
class NewtonSearch:
    """What the Newton search from the failing trials found (``search_failing``)."""

    gaps: list[SpuriousGap]
    points: list[dict[str, Any]]  # per failing trial searched: its end point, kind and certificate
    optimum_upper: str | None  # certified upper end of the optimum used for the gaps
    optimum_reference: str | None
    seconds: float
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"points": self.points, "optimum_upper": self.optimum_upper,
                "optimum_reference": self.optimum_reference, "seconds": round(self.seconds, 3),
                "notes": list(self.notes),
                "smallest_certified_spurious_gap": min((g.gap_lower_text for g in self.gaps),
                                                       key=lambda t: _float_down(t), default=None)}


def _point_problem(instance: Instance, a: Any, W: Any) -> Problem:
    p = Problem.from_instance(instance, Float64Engine())
    return Problem(engine=p.engine, activation=p.activation, a=np.array(a, dtype=float),
                   W=np.array(W, dtype=float), a_star=p.a_star, W_star=p.W_star, lam=p.lam, eta=p.eta)


def optimum_upper_end(instance: Instance, candidates: list[tuple[str, Any, Any]]) -> tuple[str, str]:
    """A certified upper end of the optimum of the instance's problem (both layers, its width).

    The optimum is an infimum of L_lambda, so L_lambda at any point bounds it above: the
    smallest Arb upper end of L_lambda over ``candidates`` (label, a, W) -- the reference
    student and the converged trials' final students.  The teacher and lambda are read in
    float64, as the certificates of ``checker.rigorous.critical`` read them.
    """
    from fractions import Fraction

    from checker.rigorous.critical import reg_loss_upper

    best: tuple[Fraction, str, str] | None = None
    for label, a, W in candidates:
        text = reg_loss_upper(_point_problem(instance, a, W))
        if best is None or Fraction(text) < best[0]:
            best = (Fraction(text), text, label)
    if best is None:
        raise CheckerError("no point to bound the optimum with")
    return best[1], f"the certified upper end of L_lambda at {best[2]} ({best[1][:16]}): the optimum is at most that"


def _canonical(a: np.ndarray, W: np.ndarray) -> np.ndarray:
    rows = np.column_stack([a, W])
    return rows[np.lexsort(rows.T[::-1])]


def search_failing(instance: Instance, failing: list[dict[str, Any]], bound_points: list[tuple[str, Any, Any]],
                   *, time_budget: float = SEARCH_TIME, max_steps: int = SEARCH_STEPS,
                   progress: bool = False) -> NewtonSearch:
    """Newton search to a stationary point from each failing trial's final student, then its certificate.

    ``failing``: the ``end_points`` of ``checker.studies.threshold.ThresholdResult`` whose outcome is
    "fails" ({size, stop_reason, a, W}); ``bound_points``: (label, a, W) whose L_lambda bounds the
    optimum above (``optimum_upper_end``), besides the instance's own (reference) student.  Each start: ``checker.stationary.critical.find_stationary``
    (both layers, the instance's lambda and step, float64) within what is left of ``time_budget``;
    a converged, non-degenerate end point not met before is certified
    (``checker.rigorous.critical.certify`` with that upper end of the optimum): when its certified
    L_lambda lower end is above it, the point is a certified spurious stationary point and its
    ``gap_lower`` bounds the threshold above.  A start at a zero neuron, a degenerate point or a
    failed certificate is recorded with the reason and bounds nothing.
    """
    import time

    from tqdm import tqdm

    from checker.core import hessian as hs
    from checker.rigorous.critical import certify
    from checker.stationary.critical import find_stationary

    t0 = time.perf_counter()
    notes: list[str] = []
    points: list[dict[str, Any]] = []
    gaps: list[SpuriousGap] = []
    if not failing:
        return NewtonSearch([], [], None, None, 0.0, ["no failing trial with a finite final student to search from"])
    ref = Problem.from_instance(instance, Float64Engine())
    upper, reference = optimum_upper_end(instance, [("the reference student", np.asarray(ref.a, dtype=float),
                                                     np.asarray(ref.W, dtype=float))] + list(bound_points))
    lam = float(Problem.from_instance(instance, Float64Engine()).lam)
    seen: list[tuple[np.ndarray, dict[str, Any]]] = []
    for f in tqdm(failing, file=sys.stderr, disable=not progress, desc="Newton search", unit="start",
                  leave=False):
        left = time_budget - (time.perf_counter() - t0)
        row: dict[str, Any] = {"size": f["size"], "trial_stop_reason": f.get("stop_reason")}
        points.append(row)
        if left <= 0:
            row.update(status="skipped", why=f"the search's time budget ({time_budget:g} s) is spent")
            continue
        try:
            sp = find_stationary(_point_problem(instance, f["a"], f["W"]), train="both", lam=lam,
                                 max_steps=max_steps, time_budget=left)
        except hs.NotTwiceDifferentiable as exc:
            row.update(status="zero-neuron", why=str(exc))
            continue
        a, W = np.asarray(sp.a, dtype=float), np.asarray(sp.W, dtype=float)
        row.update(status="converged" if sp.converged else sp.stop_reason, kind=sp.kind, index=int(sp.index),
                   loss=repr(float(sp.loss)), reg_loss=repr(float(sp.reg_loss)),
                   grad_norm=repr(float(sp.grad_norm)), min_eigenvalue=repr(float(sp.eigenvalues[0])),
                   gd_steps=sp.gd_steps, newton_steps=sp.newton_steps,
                   a=[repr(float(x)) for x in a], W=[[repr(float(x)) for x in r] for r in W], certified=None)
        if sp.notes:
            row["notes"] = list(sp.notes)
        if not sp.converged or sp.kind == "degenerate":
            row["why"] = ("no stationary point reached in the budget" if not sp.converged else
                          "a degenerate point (singular Hessian): no isolated stationary point to certify")
            continue
        canon = _canonical(a, W)
        twin = next((r for c, r in seen if c.shape == canon.shape and np.max(np.abs(c - canon)) <= SAME_POINT), None)
        if twin is not None:
            row["same_as_size"] = twin["size"]
            row["certified"] = twin["certified"]
            continue
        n = a.size + W.size
        if n > MAX_CERTIFY_PARAMS:
            row["why"] = (f"{n} parameters, above the {MAX_CERTIFY_PARAMS} the search certifies (the Arb certificate "
                          "costs O(n^3)); python -m checker.critical --certify on this point certifies it")
            continue
        if time.perf_counter() - t0 > time_budget:
            row["why"] = f"the search's time budget ({time_budget:g} s) is spent: not certified"
            continue
        seen.append((canon, row))
        cert = certify(_point_problem(instance, a, W), train="both", lam=lam, optimum_upper=upper,
                       optimum_reference=reference).to_dict()
        row["certified"] = cert
        if cert.get("rigorous") and cert.get("spurious") and cert.get("gap_lower"):
            gaps.append(SpuriousGap(_float_down(cert["gap_lower"]), cert["gap_lower"], float(sp.loss),
                                    f"Newton search from the failing trial at s = {f['size']:.6g}"))
    if any(p.get("status") == "skipped" for p in points):
        notes.append("the Newton search's time budget ran out before every failing trial was searched")
    return NewtonSearch(gaps, points, upper, reference, time.perf_counter() - t0, notes)
