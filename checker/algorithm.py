"""``python -m checker.algorithm``: the whole algorithm (stages 1-3); see checker/stages/cli.py."""

import sys

from .stages.cli import main

if __name__ == "__main__":
    sys.exit(main())
