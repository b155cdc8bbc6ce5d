"""An instance in one engine's numbers: the arrays every computation works on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np

from checker.core import objective
from checker.core.engines import Engine
from checker.core.errors import InstanceError, quote
from checker.core.model import Instance

#: Largest size of a float64 intermediate allowed at the door: squares of entries,
#: the kernel products a_j a_l ||w_j|| ||w_l|| and their sums stay below this, which
#: leaves a factor ~1e8 before float64 overflows (1.8e308) for sums over neuron pairs
#: and for the gradient steps of a run.
FLOAT64_LIMIT = 1e300


@dataclass
class Problem:
    """Engine arrays of an instance.  The student (a, W) is what GD changes."""

    engine: Engine
    activation: str
    a: np.ndarray
    W: np.ndarray
    a_star: np.ndarray
    W_star: np.ndarray
    lam: Any
    eta: Any | None
    #: (a*, W*, their working numbers): the teacher converted once (``teacher_work``).
    _teacher_work: tuple | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_instance(cls, instance: Instance, engine: Engine) -> "Problem":
        """Engine arrays of ``instance``; the float64 engine first refuses an instance it would overflow."""
        if engine.name == "float64":
            check_float64_range(instance)
        with engine.context():
            W_star = engine.array(instance.teacher_W)
            if instance.normalize_teacher:
                norms = engine.sqrt((W_star * W_star).sum(axis=1))
                W_star = W_star / norms[:, None]
            return cls(
                engine=engine,
                activation=instance.activation,
                a=engine.array(instance.student_a),
                W=engine.array(instance.student_W),
                a_star=engine.array(instance.teacher_a),
                W_star=W_star,
                lam=engine.scalar(instance.lam),
                eta=None if instance.eta is None else engine.scalar(instance.eta),
            )

    def teacher_work(self) -> tuple[Any, Any] | None:
        """The teacher (a*, W*) in the engine's working numbers (None if they are its own numbers).

        Converted once and kept while ``a_star`` and ``W_star`` are the same arrays
        (the cache holds them, so a rebound attribute is seen; they are never
        changed in place).
        """
        if getattr(self.engine, "work", self.engine) is self.engine:
            return None
        c = self._teacher_work
        if c is None or c[0] is not self.a_star or c[1] is not self.W_star:
            with self.engine.context():
                c = (self.a_star, self.W_star, (self.engine.to_work(self.a_star), self.engine.to_work(self.W_star)))
            self._teacher_work = c
        return c[2]

    def evaluate(self, a: np.ndarray | None = None, W: np.ndarray | None = None,
                 *, lam: Any = None, with_gradient: bool = True) -> objective.Evaluation:
        return objective.evaluate(
            self.engine, self.activation,
            self.a if a is None else a, self.W if W is None else W,
            self.a_star, self.W_star, self.lam if lam is None else lam,
            with_gradient=with_gradient, teacher_work=self.teacher_work())

    def evaluate_work(self, a: np.ndarray, W: np.ndarray, *, lam: Any,
                      with_gradient: bool = True) -> objective.Evaluation:
        """``evaluate`` at (a, W, lam) given in the engine's working numbers, the result in them
        (``objective.evaluate_work``: no conversion; the iterate of ``MpEngine(iterate="arb")``)."""
        tw = self.teacher_work()
        a_star, W_star = (self.a_star, self.W_star) if tw is None else tw
        return objective.evaluate_work(self.engine, self.activation, a, W, a_star, W_star, lam,
                                       with_gradient=with_gradient)

    def evaluate_batch(self, a: np.ndarray, W: np.ndarray, *, lam: Any = None,
                       with_gradient: bool = True) -> objective.BatchEvaluation:
        """``evaluate`` for B students a (B, m), W (B, m, d) at once (float64; ``objective.evaluate_batch``)."""
        return objective.evaluate_batch(
            self.engine, self.activation, a, W, self.a_star, self.W_star, self.lam if lam is None else lam,
            with_gradient=with_gradient)


def check_float64_range(instance: Instance, fix: str = "use --engine mp, or rescale the instance") -> None:
    """Refuse (InstanceError naming the field) an instance whose float64 objective would overflow.

    The population objective is a sum of kernel terms c_j c_l ||w_j|| ||w_l|| kappa
    (kappa <= 1) over student and teacher neurons, plus (lambda/2)(||a||^2 +
    ||W||_F^2); its gradients are of size ||w_j|| S and |a_j| S with S the total
    mass sum_j |a_j| ||w_j|| + sum_i |a*_i| ||w*_i||.  All of these, and the squares
    of the entries, are bounded here at 30 digits (no float64 arithmetic) against
    ``FLOAT64_LIMIT``.  The field named is the largest entry of the offending neuron.
    """
    with mpmath.workdps(30):
        neurons = [("student", j, instance.student_a[j], instance.student_W[j]) for j in range(instance.m)]
        neurons += [("teacher", i, instance.teacher_a[i], instance.teacher_W[i])
                    for i in range(instance.m_star)]
        rows = []  # (size of the largest entry or norm, |a|, norm as used, field, value)
        for who, j, a_text, w_text in neurons:
            a = abs(mpmath.mpf(a_text))
            w = [mpmath.mpf(x) for x in w_text]
            norm = mpmath.sqrt(mpmath.fsum(x * x for x in w))
            used = 1 if who == "teacher" and instance.normalize_teacher else norm
            k = max(range(len(w)), key=lambda t: abs(w[t]))
            field, value = (f"{who}.a[{j}]", a_text) if a >= abs(w[k]) else (f"{who}.W[{j}][{k}]", w_text[k])
            rows.append((max(a, norm), a, used, field, value))
        total = mpmath.fsum(a * used for _, a, used, _, _ in rows)
        lam = mpmath.mpf(instance.lam)
        for size, a, used, field, value in sorted(rows, key=lambda r: -r[0]):
            if max(size ** 2, used * total, a * total, total ** 2) > FLOAT64_LIMIT:
                raise InstanceError(field, f"{quote(value)} overflows float64 (a square or a kernel product "
                                    f"of the objective exceeds {FLOAT64_LIMIT:.0e})", fix)
        # entries are in range here, so only lambda > 1 can push the weight-decay term over
        if lam * max(r[0] for r in rows) ** 2 > FLOAT64_LIMIT:
            raise InstanceError("lambda", f"{quote(instance.lam)} overflows float64 in the weight-decay term", fix)
        if instance.eta is not None and mpmath.mpf(instance.eta) > FLOAT64_LIMIT:
            raise InstanceError("eta", f"{quote(instance.eta)} overflows float64", fix)
