"""The record every derivation returns, used by the report and by the tests alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

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


def guarded(name: str, family: str, statement: str, method: str,
            check: Callable[[], tuple[bool, str]]) -> Result:
    """Run ``check`` (returning (verified, detail)) and wrap it in a Result.

    A derivation never raises: an exception inside the check (a SymPy failure, a
    formula under test that cannot be evaluated) becomes verified=False with the
    exception in the detail.
    """
    try:
        ok, detail = check()
    except Exception as exc:  # noqa: BLE001 -- any failure of the check is a failed derivation
        return Result(name, family, statement, method, False, f"{type(exc).__name__}: {exc}")
    return Result(name, family, statement, method, bool(ok), detail)


def bound(fn: Callable[..., Result], name: str, **kwargs: Any) -> Callable[[], Result]:
    """A zero-argument derivation ``fn(**kwargs)`` whose ``__name__`` is the Result name.

    Used to list parametrized derivations (one per activation) in ``DERIVATIONS``
    under the same name the Result carries, so tests can name them at collection.
    """
    def run() -> Result:
        return fn(**kwargs)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = fn.__doc__
    return run
