"""``python -m checker.landscape``: random starts to stationary points (see ``checker.commands.landscape``)."""

import sys

try:
    from checker.commands.landscape import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.landscape: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
