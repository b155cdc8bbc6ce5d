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
