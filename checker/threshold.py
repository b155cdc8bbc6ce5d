"""``python -m checker.threshold``: see ``checker.studies.threshold``."""

import sys

from .studies.threshold import main

if __name__ == "__main__":
    sys.exit(main())
