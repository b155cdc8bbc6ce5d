"""Exact boxes, the bisection tree that covers a Euclidean ball, and spectrum bounds of ball matrices.

Everything here is exact or outward rounded:

* coordinates are ``Fraction`` objects with a finite decimal expansion (a
  decimal centre plus or minus a decimal radius, halved by bisection), written
  to the certificate as exact decimal strings (``exact_decimal``);
* the cover of B(c, r) is a bisection tree of the cube [c - r, c + r]^n, kept
  as a pre-order token list: ``s<k>`` splits the current box at the midpoint of
  coordinate k (left child first), ``c`` is a leaf whose bounds are checked,
  ``o`` a leaf that misses the ball (its exact distance to c exceeds r).  The
  leaves of a bisection tree partition the cube, and the cube contains the
  ball, so replaying the tokens (``replay``) proves the cover with no further
  argument;
* ``spectrum_bounds`` encloses the spectra of every symmetric matrix in a ball
  matrix: with M the midpoint matrix (exact binary numbers) and E = H - M,
  |E_pq| <= R_pq entrywise gives ||E||_2 <= || R ||_2 <= min(||R||_F,
  sqrt(||R||_1 ||R||_inf)) (Perron-Frobenius), so by Weyl's inequality every
  eigenvalue of H lies in [lambda_min(M) - rb, lambda_max(M) + rb]; the
  inequalities lambda_min(M) > t are proved by an Arb LDL^T factorisation of
  M - t I with every pivot certainly positive.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from flint import arb

from checker.rigorous.arb_objective import _positive_definite, lower_fraction, upper_fraction

Box = list[tuple[Fraction, Fraction]]


# ---------------------------------------------------------------- exact decimals
def parse_decimal(text: str) -> Fraction:
    """The exact rational value of a decimal string (ValueError if it is not one)."""
    d = Decimal(text)
    if not d.is_finite():
        raise ValueError(f"{text!r} is not a finite decimal")
    return Fraction(d)


def exact_decimal(q: Fraction) -> str:
    """q as an exact decimal string (q must have a denominator 2^a 5^b)."""
    den = q.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        raise ValueError(f"{q} has no finite decimal expansion")
    k = max(twos, fives)
    scaled = q * 10**k
    assert scaled.denominator == 1
    digits = str(abs(scaled.numerator))
    sign = "-" if scaled.numerator < 0 else ""
    if k == 0:
        return sign + digits
    digits = digits.rjust(k + 1, "0")
    whole, frac = digits[:-k], digits[-k:].rstrip("0")
    if whole == "0" and len(frac) - len(frac.lstrip("0")) >= 4:  # small: scientific notation, still exact
        lead = len(frac) - len(frac.lstrip("0"))
        sig = frac.lstrip("0")
        return f"{sign}{sig[0]}" + (f".{sig[1:]}" if len(sig) > 1 else "") + f"e-{lead + 1}"
    return f"{sign}{whole}" + (f".{frac}" if frac else "")


def round_decimal(q: Fraction, digits: int, *, up: bool) -> Fraction:
    """q rounded to ``digits`` significant decimal digits, up (towards +inf) or down."""
    if q == 0:
        return Fraction(0)
    e = math.floor(math.log10(abs(float(q)))) if math.isfinite(float(q)) and float(q) != 0 else 0
    scale = Fraction(10) ** (digits - 1 - e)
    x = q * scale
    n = math.ceil(x) if up else math.floor(x)
    return Fraction(n) / scale


def frac_arb(q: Fraction) -> arb:
    """A ball that contains the rational q (exact when q is dyadic)."""
    return arb(q.numerator) / q.denominator


def interval_arb(lo: Fraction, hi: Fraction) -> arb:
    """A ball that contains [lo, hi]."""
    return frac_arb(lo).union(frac_arb(hi))


# ---------------------------------------------------------------- boxes and the cover tree
def cube(center: Sequence[Fraction], r: Fraction) -> Box:
    return [(c - r, c + r) for c in center]


def split(box: Box, k: int) -> tuple[Box, Box]:
    lo, hi = box[k]
    mid = (lo + hi) / 2
    left, right = list(box), list(box)
    left[k] = (lo, mid)
    right[k] = (mid, hi)
    return left, right


def distance_squared(box: Box, center: Sequence[Fraction]) -> Fraction:
    """Exact squared Euclidean distance from ``center`` to the box (0 if inside)."""
    total = Fraction(0)
    for (lo, hi), c in zip(box, center):
        gap = lo - c if c < lo else (c - hi if c > hi else Fraction(0))
        total += gap * gap
    return total


def misses_ball(box: Box, center: Sequence[Fraction], r: Fraction) -> bool:
    return distance_squared(box, center) > r * r


def replay(tokens: Sequence[str], root: Box) -> Iterator[tuple[str, Box]]:
    """The leaves (kind, box) of a pre-order bisection tree of ``root``; ValueError if malformed."""
    stack: list[Box] = [root]
    n = len(root)
    for pos, tok in enumerate(tokens):
        if not stack:
            raise ValueError(f"token {pos} ({tok!r}) after the tree is complete")
        box = stack.pop()
        if tok in ("c", "o"):
            yield tok, box
        elif isinstance(tok, str) and tok.startswith("s") and tok[1:].isdigit():
            k = int(tok[1:])
            if not 0 <= k < n:
                raise ValueError(f"token {pos}: split coordinate {k} outside 0..{n - 1}")
            left, right = split(box, k)
            stack.append(right)
            stack.append(left)  # the left child is visited first
        else:
            raise ValueError(f"token {pos}: {tok!r} is not s<k>, c or o")
    if stack:
        raise ValueError("the tree is incomplete (boxes left without a leaf)")


def replay_cover(cov: Any, center: Sequence[Fraction], r: Fraction, fail: Callable[[str, str], Exception],
                 bad: Callable[[str], Exception]) -> tuple[list[tuple[str, Box]], list[Box]]:
    """Check a certificate's ``cover`` against the ball B(center, r), from the file alone.

    Replays the token tree on the cube [c - r, c + r]^n (its leaves partition the cube), checks
    that the listed boxes are exactly its certified ('c') leaves and that every 'o' leaf misses
    the ball.  Returns (leaves, certified boxes).  A malformed cover raises ``bad(message)``, a
    claim that does not hold raises ``fail(claim, message)``.
    """
    if not isinstance(cov, dict) or not isinstance(cov.get("tree"), list) or not isinstance(cov.get("boxes"), list):
        raise bad("certificate: 'cover' must hold a 'tree' (list of tokens) and 'boxes'")
    try:
        leaves = list(replay(cov["tree"], cube(center, r)))
    except ValueError as exc:
        raise fail("cover.tree", str(exc)) from None
    certified = [b for kind, b in leaves if kind == "c"]
    listed = cov["boxes"]
    if len(listed) != len(certified):
        raise fail("cover.boxes", f"{len(listed)} boxes listed, the tree has {len(certified)} certified leaves")
    for i, (b, entry) in enumerate(zip(certified, listed)):
        try:
            listed_box = [(parse_decimal(str(lo)), parse_decimal(str(hi)))
                          for lo, hi in zip(entry["lo"], entry["hi"], strict=True)]
        except (KeyError, TypeError, ValueError, ArithmeticError):
            raise fail(f"cover.boxes[{i}]", "lo and hi must be lists of n decimal strings") from None
        if listed_box != b:
            raise fail(f"cover.boxes[{i}]", "the listed box is not the tree's leaf")
    for kind, b in leaves:
        if kind == "o" and not misses_ball(b, center, r):
            raise fail("cover.tree", "a leaf marked 'o' meets the ball B(centre, radius)")
    return leaves, certified


def box_to_arb(box: Box) -> list[arb]:
    return [interval_arb(lo, hi) for lo, hi in box]


def box_to_json(box: Box) -> dict[str, list[str]]:
    return {"lo": [exact_decimal(lo) for lo, _ in box], "hi": [exact_decimal(hi) for _, hi in box]}


def neuron_norms_positive(box: Box, m: int, d: int) -> bool:
    """True if, on the box, every neuron w_j (coordinates m + j d .. m + j d + d - 1) is non-zero.

    Exact: the minimum of ||w_j||^2 over the box is the sum over its coordinates
    of the squared distance from 0 to each interval.
    """
    for j in range(m):
        low = Fraction(0)
        for lo, hi in box[m + j * d: m + (j + 1) * d]:
            if lo > 0:
                low += lo * lo
            elif hi < 0:
                low += hi * hi
        if low <= 0:
            return False
    return True


# ---------------------------------------------------------------- spectrum of a ball matrix
def _split_ball_matrix(H: Sequence[Sequence[arb]]) -> tuple[np.ndarray, arb]:
    """(M, rb): symmetric midpoint matrix (floats, exact binary) and a ball whose upper end bounds ||H - M||_2."""
    n = len(H)
    M = np.zeros((n, n))
    for p in range(n):
        for q in range(p, n):
            M[p, q] = M[q, p] = float(H[p][q].mid())
    if not np.all(np.isfinite(M)):
        return M, arb("inf")
    frob = arb(0)
    row_max = arb(0)
    for p in range(n):
        row = arb(0)
        for q in range(n):
            e = (H[p][q] - arb(M[p, q])).abs_upper()  # an upper bound of |H_pq - M_pq| (both triangles)
            if not e.is_finite():
                return M, arb("inf")
            row += e
            frob += e * e
        row_max = row_max.max(row)
    fro = frob.sqrt()
    # for symmetric |E| the 1- and inf-norms agree, so sqrt(||R||_1 ||R||_inf) is the largest row sum
    rb = fro if fro.upper() < row_max.upper() else row_max
    return M, arb(rb.upper())


def _shifted_pd(M: np.ndarray, t: arb, sign: int) -> bool:
    """True only if sign (M - t I) is certainly positive definite."""
    n = len(M)
    A = [[(sign * (arb(M[p, q]) - (t if p == q else 0))) for q in range(n)] for p in range(n)]
    return _positive_definite(A)


def spectrum_bounds(H: Sequence[Sequence[arb]]) -> tuple[Fraction, Fraction] | None:
    """(mu, beta), exact binary rationals with mu <= lambda_min(S), lambda_max(S) <= beta for every S in H.

    None if an enclosure is not finite or the factorisations fail.
    """
    M, rb = _split_ball_matrix(H)
    if not rb.is_finite():
        return None
    ev = np.linalg.eigvalsh(M)
    scale = float(np.abs(M).max()) + 1e-300
    rbf = float(upper_fraction(rb))
    mu = beta = None
    for margin in (1e-13, 1e-10, 1e-7, 1e-4):
        cand = float(ev[0]) - rbf - margin * scale * len(M)
        if _shifted_pd(M, arb(cand) + rb, 1):
            mu = Fraction(cand)
            break
    for margin in (1e-13, 1e-10, 1e-7, 1e-4):
        cand = float(ev[-1]) + rbf + margin * scale * len(M)
        if _shifted_pd(M, arb(cand) - rb, -1):
            beta = Fraction(cand)
            break
    if mu is None or beta is None:
        return None
    return mu, beta


def check_spectrum(H: Sequence[Sequence[arb]], mu: Fraction, beta: Fraction) -> tuple[bool, bool]:
    """(mu <= lambda_min, lambda_max <= beta) proved for every symmetric matrix in the ball matrix H."""
    M, rb = _split_ball_matrix(H)
    if not rb.is_finite():
        return False, False
    return _shifted_pd(M, frac_arb(mu) + rb, 1), _shifted_pd(M, frac_arb(beta) - rb, -1)


def arb_le(x: arb, q: Fraction) -> bool:
    """True if the ball x lies certainly below or at q."""
    return x.is_finite() and upper_fraction(x) <= q


def arb_ge(x: arb, q: Fraction) -> bool:
    return x.is_finite() and lower_fraction(x) >= q


def build_tree(root: Box, center: Sequence[Fraction], r: Fraction, check: Callable[[Box], Any],
               choose: Callable[[Box], int], max_leaves: int,
               deadline: Callable[[], bool] = lambda: False) -> tuple[list[str], list[tuple[Box, Any]]] | None:
    """A bisection tree of ``root`` whose ``c`` leaves pass ``check`` (not None) and ``o`` leaves miss B(center, r).

    Depth-first; ``choose(box)`` names the coordinate to split when a box fails.
    None when more than ``max_leaves`` certified leaves would be needed or ``deadline()`` says stop.
    """
    tokens: list[str] = []
    leaves: list[tuple[Box, Any]] = []
    stack = [root]
    while stack:
        if deadline():
            return None
        box = stack.pop()
        if misses_ball(box, center, r):
            tokens.append("o")
            continue
        result = check(box)
        if result is not None:
            tokens.append("c")
            leaves.append((box, result))
            continue
        if len(leaves) + len(stack) + 2 > max_leaves:
            return None
        k = choose(box)
        tokens.append(f"s{k}")
        left, right = split(box, k)
        stack.append(right)
        stack.append(left)
    return tokens, leaves
