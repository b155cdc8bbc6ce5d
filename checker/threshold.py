"""``python -m checker.threshold``: the empirical threshold of the local phase along a family (``checker.commands.threshold``)."""

import sys

try:
    from checker.commands.threshold import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.threshold: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
