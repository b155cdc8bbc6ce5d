"""Pieces shared by the command-line entry points: one-line errors, exit codes."""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from typing import Callable, NoReturn

from checker.core.constants import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED,  # noqa: F401
                                    EXIT_OK, EXIT_OUTSIDE_T1)
from checker.core.errors import CheckerError

#: Environment variable that makes an internal error show its traceback.
DEBUG_ENV = "CHECKER_DEBUG"
#: Environment variable that keeps the C library's default allocator settings (see tune_allocator).
DEFAULT_MALLOC_ENV = "CHECKER_DEFAULT_MALLOC"
#: glibc mallopt parameters and the values set by tune_allocator.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 256 * 2**20


def tune_allocator() -> bool:
    """Keep freed memory in the heap for reuse (glibc only); True if the settings were applied.

    The objective allocates short-lived numpy arrays of the pair matrices on every
    evaluation.  With glibc's defaults every array above 128 KiB is mapped
    anew and unmapped when freed, and a heap top above 128 KiB is returned to
    the system: each evaluation then pays page faults on all of its memory
    (on this project's reference machine a float64 gradient step of the large
    benchmark instance, m = 512, takes 3.7x longer; ``benchmarks/bench.py``).
    Raising the mmap threshold to 32 MiB and the trim threshold to 256 MiB keeps
    that memory in the process.  Called by every command (``run_guarded``) and
    by the benchmark, never on import; set CHECKER_DEFAULT_MALLOC=1 to keep the
    defaults.  A no-op where the C library has no ``mallopt`` (not glibc).
    """
    if os.environ.get(DEFAULT_MALLOC_ENV) == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)


class UsageError(CheckerError):
    pass


class UsageParser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

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
