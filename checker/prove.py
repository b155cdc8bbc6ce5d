"""``python -m checker.prove``: see ``checker.commands.prove``."""

import sys

from checker.commands.prove import main

if __name__ == "__main__":
    sys.exit(main())
