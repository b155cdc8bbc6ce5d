"""``python -m checker.critical``: a stationary point of L_lambda, its kind and certificate (checker.commands.critical)."""

import sys

from checker.commands.critical import main

if __name__ == "__main__":
    sys.exit(main())
