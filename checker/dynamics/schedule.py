"""How a gradient-descent run evolves lambda (``Schedule``) and when it ends (``StopRules``),
with the constants of its stop rules (``checker.dynamics.gd``, the module docstring)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from checker.core.errors import CheckerError


#: Which parameter blocks a run trains: both layers, the first layer W only, the output weights a only.
TRAIN_CHOICES = ("both", "first", "second")


STOP_REASONS = ("gap-target", "max-steps", "time-budget", "interrupted", "precision-floor", "diverged", "grad-tol")


#: Rounding allowance per evaluation of L_lambda and per iterate update, in ulps
#: of the scale S = |L_lambda| + ||f*||^2.  L is a sum of O((m + m*)^2) kernel
#: terms of size up to S that cancel to L (which may be far smaller than S), so
#: a computed L_lambda is off by a few ulps of S, not of L_lambda.
FLOOR_ULPS = 4


#: The gap estimate counts as "stopped improving" when it is above (1 - this)
#: times the best estimate seen at the current lambda.
GAP_STALL_FRACTION = 0.1


#: L_lambda beyond this multiple of (L_lambda(start) + ||f*||^2): divergence
#: (GD with a descent step never goes there).
DIVERGENCE_FACTOR = 1e8


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Schedule:
    """How lambda evolves along the run.

    ``fixed``: lambda stays at the instance's value.

    ``geometric``: after each gap evaluation (every ``StopRules.gap_every``
    steps), if gap <= switch_rel_gap * lambda^2 and factor * lambda >= lam_min,
    then lambda <- factor * lambda (recorded in ``GDResult.lam_changes``).  The
    final lambda of the schedule is reached once factor * lambda < lam_min; only
    there does ``StopRules.gap_target`` apply.  With lam_min = 0 lambda keeps
    decreasing and the run ends on its step or time budget.
    """

    kind: str = "fixed"
    factor: float = 0.5
    switch_rel_gap: float = 1e-2
    lam_min: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "geometric"):
            raise CheckerError(f"schedule: unknown kind {self.kind!r} (expected 'fixed' or 'geometric')")
        for name in ("factor", "switch_rel_gap", "lam_min"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise CheckerError(f"schedule: {name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not 0 < self.factor < 1:
            raise CheckerError(f"schedule: factor must be in (0, 1), got {self.factor!r}")
        if self.switch_rel_gap <= 0:
            raise CheckerError(f"schedule: switch must be positive, got {self.switch_rel_gap!r}")
        if self.lam_min < 0:
            raise CheckerError(f"schedule: min must be >= 0, got {self.lam_min!r}")

    def is_final(self, lam: float) -> bool:
        """True when lambda will not change any more."""
        return self.kind == "fixed" or lam * self.factor < self.lam_min

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Schedule":
        if not isinstance(data, Mapping):
            raise CheckerError("schedule: expected an object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise CheckerError(f"schedule: unknown key {unknown[0]!r}")
        return cls(**dict(data))

    @classmethod
    def parse(cls, text: str) -> "Schedule":
        """CLI form: ``fixed``, ``geometric`` or ``geometric:factor=0.5,switch=1e-2,min=1e-4``."""
        example = "e.g. 'fixed' or 'geometric:factor=0.5,switch=1e-2,min=1e-4'"
        if not isinstance(text, str):
            raise CheckerError(f"--schedule: expected text, {example}")
        kind, _, params = text.strip().partition(":")
        kind = kind.strip()
        if kind not in ("fixed", "geometric"):
            raise CheckerError(f"--schedule: unknown kind {kind!r} in {text!r}; {example}")
        if kind == "fixed":
            if params.strip():
                raise CheckerError(f"--schedule: 'fixed' takes no parameters, got {text!r}")
            return cls("fixed")
        keys = {"factor": "factor", "switch": "switch_rel_gap", "min": "lam_min"}
        values: dict[str, float] = {}
        if params.strip():
            for item in params.split(","):
                key, eq, value = item.partition("=")
                key, value = key.strip(), value.strip()
                if not eq or key not in keys:
                    raise CheckerError(f"--schedule: bad parameter {item.strip()!r} in {text!r}; "
                                       f"expected factor=, switch=, min= ({example})")
                if keys[key] in values:
                    raise CheckerError(f"--schedule: {key} given twice in {text!r}")
                if not _NUMBER.match(value) or not math.isfinite(float(value)):
                    raise CheckerError(f"--schedule: {key}={value!r} is not a finite number")
                values[keys[key]] = float(value)
        return cls("geometric", **values)


@dataclass(frozen=True)
class StopRules:
    """When a run ends; ``gap_every`` also sets when gap_fn is evaluated (schedule, floor)."""

    max_steps: int = 20_000
    time_budget: float | None = None
    gap_target: float | None = None
    gap_every: int = 200
    record_every: int = 10
    #: stop ("grad-tol") once the norm of the gradient of L_lambda over the trained blocks is <= this
    grad_tol: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_steps", "gap_every", "record_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise CheckerError(f"stop rules: {name} must be a whole number, got {v!r}")
        if self.max_steps < 0:
            raise CheckerError(f"stop rules: max_steps must be >= 0, got {self.max_steps}")
        if self.gap_every < 1 or self.record_every < 1:
            raise CheckerError("stop rules: gap_every and record_every must be >= 1")
        for name in ("time_budget", "gap_target", "grad_tol"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise CheckerError(f"stop rules: {name} must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, name, float(v))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "StopRules":
        if not isinstance(data, Mapping):
            raise CheckerError("stop rules: expected an object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise CheckerError(f"stop rules: unknown key {unknown[0]!r}")
        return cls(**dict(data))
