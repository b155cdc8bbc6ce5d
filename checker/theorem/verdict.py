"""The verdict of T1 as data: the hypotheses and their statements, one check (``Check``), the
report (``Report``, serialized as the JSON of ``python -m checker.theorem1 --json``), and the exact
comparison of a decimal upper bound with its bound (``decimal_at_most``).

The operational choices of this checker (radius, lambda_max, eps_0, ...) are documented in
``checker.theorem.check`` and ``docs/formalization.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Sequence

import numpy as np

SCHEMA_VERSION = "1.0"

#: The hypotheses of T1 in report order, with their statements.
HYPOTHESES = {
    "H1": "teacher normalized, separation Delta > 0, a_min <= |a*_i| <= a_max",
    "H1-certificate": "the teacher has a non-degenerate dual certificate (rho > 0, rho' > 0)",
    "H2": "0 < lambda <= lambda_max = min(a_min/2, rho' a_min/||p*||^2) (checker's choice)",
    "H3": "step eta < 2/beta_0, beta_0 = Hessian norm of L_lambda at the start (estimate)",
    "H4": "initial gap zeta_0 <= eps_0 (eps_0 = lambda rho' a_min/2 - lambda^2 ||p*||^2/4, checker's choice)",
}


@dataclass
class Check:
    """One hypothesis or conclusion: measured value, its bound, and whether it held."""

    id: str
    statement: str
    holds: bool | None  # None: not applicable / undetermined (detail says why)
    value: str
    bound: str
    detail: str = ""
    rigorous: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)




@dataclass
class Report:
    version: str
    checker_version: str
    verdict: str
    instance: dict[str, Any]
    engine: str
    dps: int
    options: dict[str, Any]
    hypotheses: list[Check]
    conclusions: list[Check] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)
    certificate: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    L_star_interval: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    message: str = ""
    #: the phase reached (``PHASES``): where an interrupted or stopped run ended
    phase: str = ""
    #: which instance the rigorous enclosures describe (the engine's reading of the decimals)
    rigorous_for: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hypotheses"] = [c.to_dict() for c in self.hypotheses]
        out["conclusions"] = [c.to_dict() for c in self.conclusions]
        return out



def _fit_slope(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) < 2:
        return None
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if np.ptp(xs) == 0:
        return None
    return float(np.polyfit(xs, ys, 1)[0])


def decimal_at_most(upper: str | Decimal, bound: float | str | Decimal) -> bool:
    """upper <= bound, exactly: ``upper`` a decimal upper bound (already rounded up), ``bound``
    a float taken at its exact binary value or a decimal string.

    Never ``float(upper)``: rounding a decimal upper bound to the nearest float can move
    it below the bound it exceeds.  A non-finite or unreadable value compares False.
    """
    try:
        u = upper if isinstance(upper, Decimal) else Decimal(upper)
        b = bound if isinstance(bound, Decimal) else Decimal(bound)
    except (InvalidOperation, TypeError, ValueError):
        return False
    if u.is_nan() or b.is_nan():
        return False
    return u <= b



def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        try:
            return f"{float(x):.4g}"
        except ValueError:
            return x
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)



def _advice(unmet: list[Check]) -> str:
    tips = {
        "H1-certificate": "the teacher's dual certificate is degenerate: separate the teacher directions more",
        "H2": "lower lambda below lambda_max",
        "H3": "lower the step eta (--eta) below 2/beta_0",
        "H4": "start the student closer to the teacher's optimum, or pass --threshold if you know the theorem's",
    }
    return ("To fix: " + "; ".join(tips.get(h.id, h.id) for h in unmet)
            + " (or --force to run anyway: T1 then does not cover the run, verdict outside-T1).")
