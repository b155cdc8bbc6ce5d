"""The record every derivation returns, used by the report and by the tests alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: How a result was established.
METHODS = (
    "symbolic",   # SymPy: simplify(lhs - rhs) == 0, exact integral, series to order N
    "interval",   # certified with interval/ball arithmetic on a stated box
    "algebraic",  # an exact algebraic argument (e.g. a sum of squares) checked by SymPy
    "numeric",    # a floating-point check only (never called a proof)
)


@dataclass(frozen=True)
class Result:
    """One derivation: what it states, how it was established, and whether it held."""

    name: str
    family: str
    statement: str
    method: str
    verified: bool
    detail: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        mark = "verified" if self.verified else "FAILED  "
        return f"{mark}  [{self.family}] {self.name} ({self.method}): {self.statement}"
