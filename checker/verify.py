"""``python -m checker.verify``: see ``checker.commands.verify``."""

import sys

try:
    from checker.commands.verify import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.verify: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
