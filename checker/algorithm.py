"""``python -m checker.algorithm``: the whole algorithm (stages 1-3) (``checker.commands.algorithm``)."""

import sys

from checker.commands.algorithm import main

if __name__ == "__main__":
    sys.exit(main())
