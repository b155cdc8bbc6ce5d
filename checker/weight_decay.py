"""``python -m checker.weight_decay``: the weight-decay study (code in checker/studies/weight_decay.py)."""

from __future__ import annotations

import sys

from .studies.weight_decay import main

if __name__ == "__main__":
    sys.exit(main())
