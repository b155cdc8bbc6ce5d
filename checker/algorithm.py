"""``python -m checker.algorithm``: the whole algorithm (stages 1-3) (``checker.commands.algorithm``)."""

import sys

try:
    from checker.commands.algorithm import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.algorithm: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
