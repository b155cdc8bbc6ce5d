"""The instance: activation, teacher (a*, W*), student (a, W), lambda, step.

Numbers are kept as canonical decimal strings so that the mp engine reads them
exactly as written (JSON numbers are read as text too, never through a float).
Validation happens once, on construction; each error names the field and the fix.

JSON form::

    {"activation": "relu",
     "teacher": {"a": ["1.0", "-0.7"], "W": [["1", "0", "0"], ["0", "1", "0"]]},
     "student": {"a": ["0.9", "0.1"], "W": [["0.9", "0.1", "0"], ["0", "0.2", "0.3"]]},
     "lambda": "0.01",
     "eta": "0.05"}

Optional keys: ``"name"`` (a label) and ``"normalize_teacher"`` (true: the
engines divide each teacher neuron by its norm at their own precision; false,
the default: each teacher neuron must already have unit norm to 1e-12).
"""

from __future__ import annotations

import decimal
import json
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

import mpmath
import numpy as np

from checker.core.errors import InstanceError, quote
from checker.core.kernel import ACTIVATIONS

_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

#: A teacher neuron counts as unit-norm when | ||w*|| - 1 | <= this (unless normalized).
UNIT_NORM_TOL = 1e-12
#: Teacher directions closer than this (radians) count as duplicates (Delta = 0).
MIN_SEPARATION = 1e-12

TOP_KEYS = {"activation", "teacher", "student", "lambda", "eta", "name", "normalize_teacher"}

#: Longest decimal string accepted for one number: a little more than the digits the
#: largest --dps (checker.core.engines.MAX_DPS = 4000, plus guard digits) can use; longer
#: text could only be rounded away, and Python refuses int <-> str conversions beyond
#: 4300 digits.
MAX_NUMBER_CHARS = 4100
#: Decimal exponents beyond this are refused: the rigorous path turns numbers into exact
#: fractions, and 1e999999999 would be an integer of a billion digits.
MAX_EXPONENT = 10_000


def canonical_number(value: Any, field_name: str) -> str:
    """A finite number given as str/int/float/Decimal/mpf -> canonical decimal string."""
    if isinstance(value, bool) or value is None:
        raise InstanceError(field_name, f"expected a number, got {json.dumps(value)}",
                            "write a finite decimal number such as 0.5 or \"0.5\"")
    if isinstance(value, str):
        s = value.strip()
        if len(s) > MAX_NUMBER_CHARS:
            raise InstanceError(field_name, f"the number {quote(s)} is too long",
                                f"give at most {MAX_NUMBER_CHARS} characters per number")
        if not _DECIMAL.match(s):
            raise InstanceError(field_name, f"{quote(value)} is not a finite decimal number",
                                "write it like 0.25, -1, 3e-4; NaN and infinities are not allowed")
        _check_exponent(s, field_name)
        return s
    if isinstance(value, int):
        if value.bit_length() > MAX_NUMBER_CHARS * 3:  # more than MAX_NUMBER_CHARS digits
            raise InstanceError(field_name, f"an integer of {value.bit_length()} bits is too long",
                                f"give at most {MAX_NUMBER_CHARS} characters per number")
        return canonical_number(str(value), field_name)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InstanceError(field_name, f"{value} is not finite",
                                "NaN and infinities are not allowed")
        # float(): numpy's float64 is a float whose repr is "np.float64(...)" under numpy 2
        return canonical_number(repr(float(value)), field_name)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise InstanceError(field_name, f"{value} is not finite", "NaN and infinities are not allowed")
        return canonical_number(str(value), field_name)
    if isinstance(value, Fraction):
        raise InstanceError(field_name, "fractions are not accepted", "give a decimal string")
    if isinstance(value, mpmath.mpf):
        if not mpmath.isfinite(value):
            raise InstanceError(field_name, f"{value} is not finite", "NaN and infinities are not allowed")
        bits = max(53, int(value.man).bit_length() if value != 0 else 1)
        digits = int(math.ceil(bits * math.log10(2))) + 2
        return mpmath.nstr(value, digits, strip_zeros=True, min_fixed=1, max_fixed=0)
    if isinstance(value, (np.floating, np.integer)):
        return canonical_number(value.item(), field_name)
    raise InstanceError(field_name, f"expected a number, got {type(value).__name__}",
                        "write a finite decimal number")


def _check_exponent(s: str, field_name: str) -> None:
    """Refuse a decimal string whose magnitude is beyond 1e+-MAX_EXPONENT (zero is fine)."""
    d = decimal.Decimal(s)
    if d != 0 and abs(d.adjusted()) > MAX_EXPONENT:
        raise InstanceError(field_name, f"{quote(s)} is outside the supported range",
                            f"give numbers between 1e-{MAX_EXPONENT} and 1e{MAX_EXPONENT} in magnitude")


def _vector(value: Any, field_name: str) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not isinstance(value, np.ndarray):
        raise InstanceError(field_name, "expected a list of numbers", "write it as [x1, x2, ...]")
    items = list(value)
    if not items:
        raise InstanceError(field_name, "is empty", "give at least one number")
    return tuple(canonical_number(v, f"{field_name}[{i}]") for i, v in enumerate(items))


def _matrix(value: Any, field_name: str) -> tuple[tuple[str, ...], ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not isinstance(value, np.ndarray):
        raise InstanceError(field_name, "expected a list of rows", "write it as [[w11, w12, ...], ...]")
    rows = list(value)
    if not rows:
        raise InstanceError(field_name, "has no rows", "give one row per neuron")
    out = tuple(_vector(r, f"{field_name}[{i}]") for i, r in enumerate(rows))
    widths = {len(r) for r in out}
    if len(widths) != 1:
        raise InstanceError(field_name, f"rows have different lengths {sorted(widths)}",
                            "every neuron needs the same input dimension d")
    return out


def _mp_rows(rows: Sequence[Sequence[str]]) -> list[list[mpmath.mpf]]:
    return [[mpmath.mpf(x) for x in r] for r in rows]


def line_or_ray_angle(u: Sequence[Any], v: Sequence[Any], activation: str) -> float:
    """Angle between two non-zero vectors (relu) or lines (abs), in float, computed at 30 digits."""
    with mpmath.workdps(30):
        uu = [mpmath.mpf(x) for x in u]
        vv = [mpmath.mpf(x) for x in v]
        nu = mpmath.sqrt(mpmath.fsum(x * x for x in uu))
        nv = mpmath.sqrt(mpmath.fsum(x * x for x in vv))
        a = mpmath.sqrt(mpmath.fsum((x / nu - y / nv) ** 2 for x, y in zip(uu, vv)))
        b = mpmath.sqrt(mpmath.fsum((x / nu + y / nv) ** 2 for x, y in zip(uu, vv)))
        phi = 2 * mpmath.atan2(a, b)
        if activation == "abs":
            phi = min(phi, mpmath.pi - phi)
        return float(phi)


def read_text_file(path: str | Path) -> str:
    """The text of an input file; every failure is an InstanceError naming the path."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8-sig")  # a leading UTF-8 byte-order mark is allowed
    except FileNotFoundError:
        raise InstanceError(str(p), "no such file", "check the path") from None
    except IsADirectoryError:
        raise InstanceError(str(p), "is a directory", "give a JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InstanceError(str(p), f"cannot be read ({exc.__class__.__name__}: {exc})") from None


def parse_json_text(text: str, source: str) -> Any:
    """JSON with every number kept as its decimal text (read exactly by the mp engine).

    NaN / Infinity become float nan / inf, so that the validator of the field they
    sit in rejects them and the message names that field.
    """
    try:
        return json.loads(text, parse_float=str, parse_int=str, parse_constant=float)
    except json.JSONDecodeError as exc:
        raise InstanceError(source, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                            "fix the JSON syntax") from None
    except RecursionError:
        raise InstanceError(source, "is nested too deeply", "give an instance file") from None


@dataclass(frozen=True)
class Instance:
    """A validated problem instance (numbers as decimal strings)."""

    activation: str
    teacher_a: tuple[str, ...]
    teacher_W: tuple[tuple[str, ...], ...]
    student_a: tuple[str, ...]
    student_W: tuple[tuple[str, ...], ...]
    lam: str
    eta: str | None = None
    name: str = ""
    normalize_teacher: bool = False
    separation: float = field(default=0.0, compare=False)

    # ----------------------------------------------------------------- building
    @classmethod
    def create(
        cls,
        *,
        activation: str = "relu",
        teacher_a: Any,
        teacher_W: Any,
        student_a: Any,
        student_W: Any,
        lam: Any,
        eta: Any = None,
        name: str = "",
        normalize_teacher: bool = False,
    ) -> "Instance":
        """Validate and build an instance from Python values (str, int, float, mpf)."""
        if activation not in ACTIVATIONS:
            raise InstanceError("activation", f"unknown activation {quote(activation)}",
                                f"use one of {', '.join(ACTIVATIONS)}")
        if not isinstance(normalize_teacher, bool):
            raise InstanceError("normalize_teacher", "expected true or false")
        ta = _vector(teacher_a, "teacher.a")
        tW = _matrix(teacher_W, "teacher.W")
        sa = _vector(student_a, "student.a")
        sW = _matrix(student_W, "student.W")
        if len(ta) != len(tW):
            raise InstanceError("teacher", f"teacher.a has {len(ta)} entries but teacher.W has {len(tW)} rows",
                                "give one output weight per teacher neuron")
        if len(sa) != len(sW):
            raise InstanceError("student", f"student.a has {len(sa)} entries but student.W has {len(sW)} rows",
                                "give one output weight per student neuron")
        d = len(tW[0])
        if d < 2:
            raise InstanceError("teacher.W", f"input dimension d = {d}", "the setting needs d >= 2")
        if len(sW[0]) != d:
            raise InstanceError("student.W", f"rows have length {len(sW[0])} but teacher rows have length {d}",
                                "student and teacher neurons live in the same R^d")
        for i, x in enumerate(ta):
            if mpmath.mpf(x) == 0:
                raise InstanceError(f"teacher.a[{i}]", "is zero", "drop that teacher neuron: a*_i must be non-zero")
        for i, row in enumerate(_mp_rows(tW)):
            with mpmath.workdps(30):
                norm = mpmath.sqrt(mpmath.fsum(x * x for x in row))
            if norm == 0:
                raise InstanceError(f"teacher.W[{i}]", "is the zero vector",
                                    "every teacher neuron needs a direction")
            if not normalize_teacher and abs(norm - 1) > UNIT_NORM_TOL:
                raise InstanceError(
                    f"teacher.W[{i}]", f"has norm {mpmath.nstr(norm, 17)}, not 1",
                    "normalize it, or add \"normalize_teacher\": true to the instance "
                    "to let each engine normalize at its own precision")
        separation = math.pi if len(tW) == 1 else min(
            line_or_ray_angle(tW[i], tW[l], activation)
            for i in range(len(tW)) for l in range(i + 1, len(tW)))
        if separation < MIN_SEPARATION:
            pairs = [(i, l) for i in range(len(tW)) for l in range(i + 1, len(tW))
                     if line_or_ray_angle(tW[i], tW[l], activation) < MIN_SEPARATION]
            i, l = pairs[0]
            what = "direction" if activation == "relu" else "line (for abs, w and -w are one feature)"
            raise InstanceError("teacher.W", f"neurons {i} and {l} have the same {what}: separation Delta = 0",
                                "merge them into one neuron by adding their output weights")
        lam_s = canonical_number(lam, "lambda")
        if mpmath.mpf(lam_s) < 0:
            raise InstanceError("lambda", f"is negative ({lam_s})", "weight decay needs lambda >= 0")
        eta_s = None
        if eta is not None:
            eta_s = canonical_number(eta, "eta")
            if mpmath.mpf(eta_s) <= 0:
                raise InstanceError("eta", f"must be positive, got {eta_s}", "give a step size such as 0.05")
        if not isinstance(name, str):
            raise InstanceError("name", "expected a string")
        return cls(activation, ta, tW, sa, sW, lam_s, eta_s, name, normalize_teacher, separation)

    @classmethod
    def from_dict(cls, data: Any) -> "Instance":
        if not isinstance(data, Mapping):
            raise InstanceError("", "the instance must be a JSON object", "see README.md for the format")
        unknown = sorted(set(data) - TOP_KEYS)
        if unknown:
            raise InstanceError(quote(unknown[0], quotes=False), "unknown key",
                                f"expected keys: {', '.join(sorted(TOP_KEYS))}")
        for key in ("teacher", "student", "lambda"):
            if key not in data:
                raise InstanceError(key, "is missing", "see README.md for the instance format")
        parts = {}
        for key in ("teacher", "student"):
            part = data[key]
            if not isinstance(part, Mapping):
                raise InstanceError(key, "expected an object with keys \"a\" and \"W\"")
            extra = sorted(set(part) - {"a", "W"})
            if extra:
                raise InstanceError(f"{key}.{quote(extra[0], quotes=False)}", "unknown key",
                                    "expected \"a\" and \"W\"")
            for sub in ("a", "W"):
                if sub not in part:
                    raise InstanceError(f"{key}.{sub}", "is missing")
            parts[key] = part
        return cls.create(
            activation=data.get("activation", "relu"),
            teacher_a=parts["teacher"]["a"], teacher_W=parts["teacher"]["W"],
            student_a=parts["student"]["a"], student_W=parts["student"]["W"],
            lam=data["lambda"], eta=data.get("eta"),
            name=data.get("name", ""), normalize_teacher=data.get("normalize_teacher", False),
        )

    @classmethod
    def from_json(cls, text: str, source: str = "instance") -> "Instance":
        return cls.from_dict(parse_json_text(text, source))

    @classmethod
    def from_file(cls, path: str | Path) -> "Instance":
        return cls.from_json(read_text_file(path), source=str(path))

    # ----------------------------------------------------------------- views
    @property
    def d(self) -> int:
        return len(self.teacher_W[0])

    @property
    def m(self) -> int:
        return len(self.student_a)

    @property
    def m_star(self) -> int:
        return len(self.teacher_a)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "activation": self.activation,
            "teacher": {"a": list(self.teacher_a), "W": [list(r) for r in self.teacher_W]},
            "student": {"a": list(self.student_a), "W": [list(r) for r in self.student_W]},
            "lambda": self.lam,
        }
        if self.eta is not None:
            out["eta"] = self.eta
        if self.name:
            out["name"] = self.name
        if self.normalize_teacher:
            out["normalize_teacher"] = True
        return out

    def replace(self, **changes: Any) -> "Instance":
        """A new validated instance with some fields changed (Python values accepted)."""
        kw: dict[str, Any] = dict(
            activation=self.activation, teacher_a=self.teacher_a, teacher_W=self.teacher_W,
            student_a=self.student_a, student_W=self.student_W, lam=self.lam, eta=self.eta,
            name=self.name, normalize_teacher=self.normalize_teacher)
        kw.update(changes)
        return Instance.create(**kw)
