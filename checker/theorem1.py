"""``python -m checker.theorem1``: the local-convergence theorem T1 on one instance (``checker.commands.theorem1``)."""

import sys

try:
    from checker.commands.theorem1 import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.theorem1: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
