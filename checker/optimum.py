"""``python -m checker.optimum``: the certified optimum L*_lambda (code in checker/commands/optimum.py)."""

import sys

try:
    from checker.commands.optimum import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.optimum: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
