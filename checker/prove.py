"""``python -m checker.prove``: see ``checker.commands.prove``."""

import sys

try:
    from checker.commands.prove import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.prove: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
