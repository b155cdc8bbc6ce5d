"""Pieces shared by the command-line entry points: one-line errors, exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn

from .errors import CheckerError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class UsageError(CheckerError):
    pass


class UsageParser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def run_guarded(body: Callable[[], int], prog: str) -> int:
    """Run a command body; user errors become one line on stderr and exit status 2."""
    try:
        return body()
    except CheckerError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (e.g. `| head`): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
