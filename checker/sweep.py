"""``python -m checker.sweep``: see ``checker.studies.sweep``."""

import sys

from .studies.sweep import main

if __name__ == "__main__":
    sys.exit(main())
