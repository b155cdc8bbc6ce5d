"""``python -m checker.gd``: gradient descent alone, outside T1 (``checker.commands.gd``)."""

import sys

try:
    from checker.commands.gd import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.gd: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
