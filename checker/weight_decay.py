"""``python -m checker.weight_decay``: the weight-decay study (``checker.commands.weight_decay``)."""

import sys

from checker.commands.weight_decay import main

if __name__ == "__main__":
    sys.exit(main())
