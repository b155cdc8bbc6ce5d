"""Record of the worst ratio (measured quantity / its bound) found by the property search.

``tests/test_properties_theorem.py`` steers Hypothesis towards near-violations
with ``hypothesis.target`` on each ratio (C3, C4, the descent condition, ...)
and feeds every ratio it sees to a ``WorstRatios``.  Under the thorough profile
(``HYPOTHESIS_PROFILE=thorough pytest tests/test_properties_theorem.py``) the
record is written to ``reports/worst_ratios.json`` when the module finishes; any
profile writes it when ``WORST_RATIOS_FILE`` names a path.  A ratio above 1 is a
violation (the test that measured it fails); the file keeps the instance that
reached the worst ratio of each kind so that it can be replayed.

Several test modules record into the one file (``tests/test_descent.py`` adds the
measured constants c_D and c_PL): ``write`` replaces the kinds it measured and keeps
the others already in the file, each entry with the command that produced it.
"""

from __future__ import annotations

import datetime
import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "zhou-ge-checker/worst-ratios"
VERSION = 1
DEFAULT_PATH = Path(__file__).with_name("worst_ratios.json")


@dataclass
class Entry:
    """The worst ratio of one kind seen so far."""

    bound: str  # the inequality, in words (and how the ratio is formed when it is not measured / bound)
    worst: float = -math.inf
    examples: int = 0
    instance: dict[str, Any] | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class WorstRatios:
    """Keeps, per kind, the largest ratio seen and the instance that produced it."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def update(self, kind: str, ratio: float, *, bound: str, instance: dict[str, Any] | None = None,
               detail: dict[str, Any] | None = None) -> None:
        entry = self.entries.setdefault(kind, Entry(bound=bound))
        entry.examples += 1
        if math.isfinite(ratio) and ratio > entry.worst:
            entry.worst = float(ratio)
            entry.instance = instance
            entry.detail = dict(detail or {})

    def to_dict(self, *, profile: str, command: str) -> dict[str, Any]:
        import hypothesis

        ratios = {}
        for kind, e in sorted(self.entries.items()):
            d = asdict(e)
            d["worst"] = e.worst if math.isfinite(e.worst) else None
            d["command"] = command
            ratios[kind] = d
        return {
            "format": FORMAT,
            "version": VERSION,
            "profile": profile,
            "command": command,
            "hypothesis": hypothesis.__version__,
            "python": platform.python_version(),
            "date": datetime.date.today().isoformat(),
            "note": "ratio = measured quantity / its bound; <= 1 means the inequality held. "
                    "Each count is the number of examples that reached the measurement.",
            "ratios": ratios,
        }

    def write(self, path: str | Path, *, profile: str, command: str) -> None:
        """Atomic JSON write (temporary file, then rename), keeping the other kinds of an existing record."""
        import json

        from checker.core.io import write_json_atomic

        out = self.to_dict(profile=profile, command=command)
        try:
            old = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old.get("format") == FORMAT and isinstance(old.get("ratios"), dict):
            kept = {k: v for k, v in old["ratios"].items() if k not in out["ratios"] and isinstance(v, dict)}
            for v in kept.values():
                v.setdefault("command", old.get("command"))
            out["ratios"] = dict(sorted({**kept, **out["ratios"]}.items()))
        write_json_atomic(path, out)

    def write_at_end(self, test_file: str) -> None:
        """What a test module does after its last test: write the record under the thorough
        profile (to ``DEFAULT_PATH``) or to ``$WORST_RATIOS_FILE`` when set; nothing otherwise."""
        import os

        profile = os.environ.get("HYPOTHESIS_PROFILE", "dev")
        path = os.environ.get("WORST_RATIOS_FILE") or (str(DEFAULT_PATH) if profile == "thorough" else None)
        if path and self.entries:
            self.write(path, profile=profile, command=f"HYPOTHESIS_PROFILE={profile} python -m pytest {test_file}")
