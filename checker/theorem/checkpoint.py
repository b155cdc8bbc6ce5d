"""The checkpoint of a T1 run: its format and version, and the validation of what a resumed
checkpoint carries (monitor rows, phase results as exact text).

``checker.theorem.check.TheoremCheck`` writes and reads it (``_checkpoint_data``,
``load_resume``); the descent state inside it is ``checker.dynamics``'s.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from checker.core.errors import CheckerError

CHECKPOINT_FORMAT = "zhou-ge-checker/t1-checkpoint"
CHECKPOINT_VERSION = 1

#: Keys every monitor row (``TheoremCheck._terms``) carries, each a finite number;
#: rows may carry more keys (any JSON with finite numbers).
MONITOR_KEYS = ("lam", "zeta", "reg_loss", "loss", "far_mass", "weighted_sq_angle", "C3_bound", "C4_bound",
                "max_heavy_angle")


def _finite_json(x: Any) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, list):
        return all(_finite_json(y) for y in x)
    if isinstance(x, dict):
        return all(_finite_json(y) for y in x.values())
    return True


def validate_monitor(rows: Any, source: str) -> None:
    """One-line CheckerError naming ``source`` unless ``rows`` are monitor rows of ``_terms``."""
    if not isinstance(rows, list):
        raise CheckerError(f"{source}: its monitor must be a list; start again without --resume")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise CheckerError(f"{source}: monitor row {i} is not an object; start again without --resume")
        missing = [k for k in MONITOR_KEYS if k not in row]
        if missing:
            raise CheckerError(f"{source}: monitor row {i} lacks {missing[0]!r}; start again without --resume")
        for k in MONITOR_KEYS:
            v = row[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise CheckerError(f"{source}: monitor row {i}: {k} = {str(v)[:40]!r} is not a finite number; "
                                   "start again without --resume")
        if not _finite_json(row):
            raise CheckerError(f"{source}: monitor row {i} holds a non-finite number; start again without --resume")


def _finite_number_text(x: Any, where: str) -> float:
    """A float written by ``repr`` (checkpoint phase results)."""
    v = _finite_decimal(x, where)
    f = float(v)
    if not math.isfinite(f):
        raise CheckerError(f"{where}: {x[:40]!r} overflows float64")
    return f


def _finite_decimal(x: Any, where: str) -> str:
    try:
        ok = isinstance(x, str) and Decimal(x).is_finite()
    except InvalidOperation:
        ok = False
    if not ok:
        raise CheckerError(f"{where}: expected a finite decimal number as text, got {str(x)[:40]!r}")
    return x
