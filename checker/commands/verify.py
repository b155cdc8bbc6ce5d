"""``python -m checker.verify CERT``: re-check a basin certificate of ``python -m checker.prove``.

Every claim is recomputed with this command's own Arb evaluations from the file
alone (``checker.basin.verify``).  Exit status: 0 verified; 1 a claim fails (the
first one is named); 2 the file is not a readable certificate; 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from checker.commands.cli import EXIT_FAILED, EXIT_OK, UsageParser, run_guarded
from checker.core.errors import CheckerError


def build_parser() -> UsageParser:
    p = UsageParser(prog="python -m checker.verify", description="Re-check a basin certificate from the file alone.")
    p.add_argument("certificate", help="certificate file written by python -m checker.prove")
    p.add_argument("--json", help="write the verification result here")
    p.add_argument("--skip-l-star", action="store_true",
                   help="do not recompute the duality lower bound on L*_lambda (the check of gap_upper's "
                        "lower end is then reported as skipped)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        from checker.basin.verify import verify_certificate
        from checker.core.io import check_output_file, read_json, write_json_atomic

        args = parser.parse_args(argv)
        if args.json:
            check_output_file("--json", args.json, distinct_from={"CERT": args.certificate})
        data = read_json(args.certificate, "certificate")
        bar = None
        if not args.no_progress:
            from tqdm import tqdm
            bar = tqdm(total=None, desc="verify", unit="box", file=sys.stderr, leave=False)

        def progress(done: int, total: int) -> None:
            if bar is not None:
                bar.total = total
                bar.update(1)

        try:
            res = verify_certificate(data, check_l_star=not args.skip_l_star, progress=progress)
        finally:
            if bar is not None:
                bar.close()
        if args.json:
            write_json_atomic(args.json, res.to_dict())
        for c in res.checked:
            print(f"  ok  {c}")
        if args.skip_l_star:
            print("  --  L*_lambda's lower end: not recomputed (--skip-l-star)")
        print("  --  eps0_checker, lambda_max_checker: T1's constants, reported for comparison, not claims "
              "(not re-checked)")
        if res.verified:
            print(f"verified: every claim of {args.certificate} re-checked ({res.boxes} boxes, {res.seconds:.2f} s)")
            return EXIT_OK
        print(f"NOT verified: claim {res.failed_claim!r} fails: {res.detail}")
        return EXIT_FAILED

    return run_guarded(body, "python -m checker.verify")
