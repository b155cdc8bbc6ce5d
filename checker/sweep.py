"""``python -m checker.sweep GRID.json --out RESULTS.jsonl``: a grid of measurements (``checker.commands.sweep``)."""

import sys

from checker.commands.sweep import main

if __name__ == "__main__":
    sys.exit(main())
