"""``python -m checker.weight_decay``: the weight-decay study (``checker.commands.weight_decay``)."""

import sys

try:
    from checker.commands.weight_decay import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.weight_decay: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
