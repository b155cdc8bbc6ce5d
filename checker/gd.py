"""``python -m checker.gd``: gradient descent alone, outside T1 (see ``checker.studies.gd_run``)."""

import sys

from checker.studies.gd_run import main

if __name__ == "__main__":
    sys.exit(main())
