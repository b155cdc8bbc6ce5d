"""``python -m checker.gd``: gradient descent alone, outside T1 (``checker.commands.gd``)."""

import sys

from checker.commands.gd import main

if __name__ == "__main__":
    sys.exit(main())
