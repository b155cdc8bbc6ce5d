"""``python -m checker.evaluate INSTANCE.json``: the exact objective and its gradients (``checker.commands.evaluate``)."""

import sys

try:
    from checker.commands.evaluate import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.evaluate: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
