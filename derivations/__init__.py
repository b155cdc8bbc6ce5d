"""SymPy derivations of every closed form and identity the checker uses.

Each module exposes functions that return ``derivations.result.Result`` and lists
them in a module-level ``DERIVATIONS`` tuple; ``FAMILIES`` below is the registry
that ``python -m derivations`` and the tests run.
"""

from __future__ import annotations

import importlib
from typing import Callable

from .result import Result

#: Modules (one per identity family), in report order.
FAMILIES: tuple[str, ...] = (
    "kernel",
    "hermite",
    "gradients",
    "hessian",
    "balance",
    "regularizer",
    "optimum",
    "duality",
    "certificate",
    "angles",
    "early_stage",
    "descent",
    "studies",
    "basin",
    "sphere_bounds",
)


def all_derivations() -> list[Callable[[], Result]]:
    """Every registered derivation function (modules not yet present are skipped)."""
    out: list[Callable[[], Result]] = []
    for fam in FAMILIES:
        try:
            mod = importlib.import_module(f"{__name__}.{fam}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{fam}":
                continue
            raise
        out.extend(getattr(mod, "DERIVATIONS", ()))
    return out


def run_all() -> list[Result]:
    return [fn() for fn in all_derivations()]
