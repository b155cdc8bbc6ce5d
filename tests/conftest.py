"""Hypothesis profiles (chosen by HYPOTHESIS_PROFILE) and shared fixtures.

* ``dev``: few examples, for quick local runs (default outside CI);
* ``ci``: derandomized, no example database, no deadline (mpmath work is slow
  and its timing is noisy), prints the reproduction blob; what .ci/run uses;
* ``thorough``: many examples, run on demand; its worst ratios are reported
  in ``reports/``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
