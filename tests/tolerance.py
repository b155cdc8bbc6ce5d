"""The one tolerance helper of the test suite.

``assert_close(actual, expected, rel=..., abs_=..., what=...)`` checks
|actual - expected| <= abs_ + rel * |expected| elementwise, computing the
difference in mpmath at ``dps`` digits so that mp values are not rounded to
float64 before being compared.  Every call site states where its reference
comes from and why its tolerance has that size.
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np


def _flat(x: Any) -> list:
    arr = np.asarray(x, dtype=object)
    return list(arr.ravel()) if arr.ndim else [arr[()]]


def max_abs_diff(actual: Any, expected: Any, *, dps: int = 80) -> mpmath.mpf:
    a, e = _flat(actual), _flat(expected)
    assert len(a) == len(e), f"shape mismatch: {np.shape(actual)} vs {np.shape(expected)}"
    with mpmath.workdps(dps):
        return max((abs(mpmath.mpf(x) - mpmath.mpf(y)) for x, y in zip(a, e)), default=mpmath.mpf(0))


def assert_close(actual: Any, expected: Any, *, rel: float | str = 0, abs_: float | str = 0,
                 what: str = "", dps: int = 80) -> None:
    a, e = _flat(actual), _flat(expected)
    assert len(a) == len(e), f"{what}: shape mismatch {np.shape(actual)} vs {np.shape(expected)}"
    with mpmath.workdps(dps):
        rel_m, abs_m = mpmath.mpf(rel), mpmath.mpf(abs_)
        for i, (x, y) in enumerate(zip(a, e)):
            x, y = mpmath.mpf(x), mpmath.mpf(y)
            err = abs(x - y)
            bound = abs_m + rel_m * abs(y)
            assert err <= bound, (
                f"{what}[{i}]: |{mpmath.nstr(x, 20)} - {mpmath.nstr(y, 20)}| = {mpmath.nstr(err, 5)} "
                f"> {mpmath.nstr(bound, 5)} (rel={rel}, abs={abs_})")


def assert_close_scaled(actual: Any, expected: Any, *, digits: float, what: str = "", dps: int = 80) -> None:
    """Agreement to ``digits`` significant digits relative to the largest |expected| entry."""
    e = _flat(expected)
    with mpmath.workdps(dps):
        scale = max((abs(mpmath.mpf(y)) for y in e), default=mpmath.mpf(0))
        scale = scale if scale > 0 else mpmath.mpf(1)
        assert_close(actual, expected, abs_=scale * mpmath.mpf(10) ** (-digits), what=what, dps=dps)


def mass_scale(p: Any) -> Any:
    """S = sum |a_j| ||w_j|| + sum |a*_i| ||w*_i|| of a ``checker.core.problem.Problem``, in its numbers.

    |L| <= kappa(0) S^2 and so is every kernel term of L: rounding errors of the
    objective scale with S^2, which is why tolerances are stated relative to it.
    """
    e = p.engine
    with e.context():
        nw = e.sqrt((p.W * p.W).sum(axis=1))
        ns = e.sqrt((p.W_star * p.W_star).sum(axis=1))
        return sum(abs(x) * y for x, y in zip(p.a, nw)) + sum(abs(x) * y for x, y in zip(p.a_star, ns))
