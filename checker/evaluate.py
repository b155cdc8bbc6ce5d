"""``python -m checker.evaluate INSTANCE.json``: the exact objective and its gradients (``checker.commands.evaluate``)."""

import sys

from checker.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
