"""``python -m checker.report RESULTS.jsonl --out REPORT.md``: the sweep's report (``checker.commands.report``)."""

import sys

try:
    from checker.commands.report import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: one line, exit 130
    if __name__ != "__main__":
        raise
    print("python -m checker.report: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
