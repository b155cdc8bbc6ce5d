"""``python -m checker.report RESULTS.jsonl --out REPORT.md``: the sweep's report (``checker.commands.report``)."""

import sys

from checker.commands.report import main

if __name__ == "__main__":
    sys.exit(main())
