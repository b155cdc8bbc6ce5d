"""Exact reference checker for the local-convergence theorem of Zhou and Ge
(NeurIPS 2024, arXiv:2406.01766): two-layer networks, Gaussian input, population
objective in closed form, gradient descent with weight decay.

The library, for a script or a notebook (``examples/api.py``); each name is imported
on first use, so ``import checker`` stays cheap:

* ``Instance`` -- teacher, student, activation, lambda, eta (``Instance.from_file``);
* ``make_engine`` -- the float64 or the high-precision (``"mp"``) numbers;
* ``Problem`` -- an instance in an engine's numbers (``Problem.from_instance``;
  ``problem.evaluate()``: L, L_lambda and their gradients);
* ``evaluate_objective`` -- the exact objective from its parts (``checker.core.objective.evaluate``;
  named so because ``checker.evaluate`` is the entry of ``python -m checker.evaluate``);
* ``run_gd``, ``Schedule``, ``StopRules`` -- gradient descent on L_lambda;
* ``check_theorem1`` -- T1 on one instance, as a ``Report`` (``TheoremCheck``, ``Options``
  for the phased run itself);
* ``certified_optimum`` -- an Arb enclosure of L*_lambda;
* the studies: ``run_gd_study`` (gradient descent alone, outside T1), ``run_weight_decay_study``,
  ``find_threshold``, ``measure_point`` and ``run_sweep``, and ``run_seed`` (the whole algorithm
  on one seed).

The commands (``python -m checker.NAME``) are ``checker.commands.NAME``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: Exported name -> (module, attribute): the one table of the lazy exports.
_EXPORTS: dict[str, tuple[str, str]] = {
    "Instance": ("checker.core.model", "Instance"),
    "Problem": ("checker.core.problem", "Problem"),
    "make_engine": ("checker.core.engines", "make_engine"),
    "evaluate_objective": ("checker.core.objective", "evaluate"),
    "run_gd": ("checker.dynamics.gd", "run_gd"),
    "Schedule": ("checker.dynamics.gd", "Schedule"),
    "StopRules": ("checker.dynamics.gd", "StopRules"),
    "check_theorem1": ("checker.theorem.check", "check_theorem1"),
    "TheoremCheck": ("checker.theorem.check", "TheoremCheck"),
    "Options": ("checker.theorem.check", "Options"),
    "Report": ("checker.theorem.verdict", "Report"),
    "certified_optimum": ("checker.rigorous.optimum", "certified_optimum"),
    "run_gd_study": ("checker.studies.gd_run", "run"),
    "run_weight_decay_study": ("checker.studies.weight_decay", "run_study"),
    "find_threshold": ("checker.studies.threshold", "find_threshold"),
    "measure_point": ("checker.studies.scaling", "measure_point"),
    "run_sweep": ("checker.studies.sweep", "run_sweep"),
    "run_seed": ("checker.stages.algorithm", "run_seed"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:  # PEP 562: import on first use
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'checker' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
