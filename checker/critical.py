"""``python -m checker.critical``: a stationary point of L_lambda, its kind and certificate (checker.commands.critical)."""

import sys

try:
    from checker.commands.critical import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.critical: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
