"""``python -m checker.verify``: see ``checker.commands.verify``."""

import sys

from checker.commands.verify import main

if __name__ == "__main__":
    sys.exit(main())
