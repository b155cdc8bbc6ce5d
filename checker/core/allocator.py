"""The C library's allocator tuned for the objective's short-lived pair arrays (glibc ``mallopt``).

Called by every command (``checker.commands.cli.run_guarded``), by the sweep's worker
processes and by the benchmarks; never on import.
"""

from __future__ import annotations

import ctypes
import os
import sys

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
