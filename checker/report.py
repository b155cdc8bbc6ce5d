"""``python -m checker.report``: see ``checker.studies.report``."""

import sys

from .studies.report import main

if __name__ == "__main__":
    sys.exit(main())
