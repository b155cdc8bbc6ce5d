"""``python -m checker.optimum``: the certified optimum L*_lambda (code in checker/commands/optimum.py)."""
import sys

from checker.commands.optimum import main

if __name__ == "__main__":
    sys.exit(main())
