"""The run file as data: an instance, the run options that came with it, where it came from.

Read and validated by the command layer (``checker.commands.presets``: presets and
``--instance FILE``); the theorem check and the studies take it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checker.core.model import Instance


@dataclass(frozen=True)
class RunFile:
    instance: Instance
    run: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""
