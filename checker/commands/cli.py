"""Pieces shared by the command-line entry points: one-line errors, exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn

from checker.core.constants import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED,  # noqa: F401
                                    EXIT_OK, EXIT_OUTSIDE_T1)
from checker.core.allocator import DEFAULT_MALLOC_ENV, tune_allocator  # noqa: F401
from checker.core.errors import CheckerError

#: Environment variable that makes an internal error show its traceback.
DEBUG_ENV = "CHECKER_DEBUG"


class UsageError(CheckerError):
    pass


class UsageParser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    #: Said under the --help of every command with an output option: which outputs create folders.
    OUTPUT_RULE = ("Outputs: the folder of an output file (--json, --out, --checkpoint, ...) must exist; "
                   "an output folder named by an option (--plots, --figures, ...-dir) is created if missing.")
    OUTPUT_FLAGS = ("--json", "--out", "--checkpoint", "--results", "--plots", "--figures",
                    "--counterexample-dir", "--failing-dir")

    def format_help(self) -> str:
        text = super().format_help()
        flags = {o for a in self._actions for o in a.option_strings}
        return text + ("\n" + self.OUTPUT_RULE + "\n" if flags & set(self.OUTPUT_FLAGS) else "")

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def run_guarded(body: Callable[[], int], prog: str) -> int:
    """Run a command body; every error ends as one line on stderr, never a bare traceback.

    User errors (``CheckerError``) and memory exhaustion: exit 2.  Ctrl-C: 130.
    A closed output pipe: 0.  Any other exception is an internal error of the
    checker: exit 1 with its type and message; ``CHECKER_DEBUG=1`` re-raises it.
    The allocator is tuned first (``tune_allocator``).
    """
    tune_allocator()
    try:
        return body()
    except CheckerError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prog}: error: out of memory: the instance is too large for this machine "
              "(fewer neurons, or the float64 engine)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # the reader of our output went away (e.g. `| head`): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:  # an internal error: one line, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        text = " ".join(str(exc).split())
        if len(text) > 200:
            text = text[:200] + " ..."
        print(f"{prog}: internal error: {type(exc).__name__}: {text} (set {DEBUG_ENV}=1 for the traceback; "
              "please report it with the command that produced it)", file=sys.stderr)
        return EXIT_FAILED
