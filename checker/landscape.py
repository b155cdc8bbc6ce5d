"""``python -m checker.landscape``: random starts to stationary points (see ``checker.commands.landscape``)."""

import sys

from checker.commands.landscape import main

if __name__ == "__main__":
    sys.exit(main())
