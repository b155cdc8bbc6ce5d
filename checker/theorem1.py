"""``python -m checker.theorem1``: the local-convergence theorem T1 on one instance (``checker.commands.theorem1``)."""

import sys

from checker.commands.theorem1 import main

if __name__ == "__main__":
    sys.exit(main())
