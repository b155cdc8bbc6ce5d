"""An instance in one engine's numbers: the arrays every computation works on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import objective
from .engines import Engine
from .model import Instance


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

    @classmethod
    def from_instance(cls, instance: Instance, engine: Engine) -> "Problem":
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

    def evaluate(self, a: np.ndarray | None = None, W: np.ndarray | None = None,
                 *, lam: Any = None, with_gradient: bool = True) -> objective.Evaluation:
        return objective.evaluate(
            self.engine, self.activation,
            self.a if a is None else a, self.W if W is None else W,
            self.a_star, self.W_star, self.lam if lam is None else lam,
            with_gradient=with_gradient)
