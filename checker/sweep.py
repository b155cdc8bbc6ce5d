"""``python -m checker.sweep GRID.json --out RESULTS.jsonl``: a grid of measurements (``checker.commands.sweep``)."""

import sys

try:
    from checker.commands.sweep import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.sweep: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
