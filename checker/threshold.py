"""``python -m checker.threshold``: the empirical threshold of the local phase along a family (``checker.commands.threshold``)."""

import sys

from checker.commands.threshold import main

if __name__ == "__main__":
    sys.exit(main())
