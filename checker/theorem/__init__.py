"""The theorem layer: T1 on one instance as data.

* ``verdict``: the hypotheses and conclusions (``Check``), the report (``Report``), exact comparisons;
* ``check``: the phased run (``TheoremCheck``, ``PHASES``, ``Options``);
* ``checkpoint``: the checkpoint format of a run and the validation of a resumed one.

Imports only ``checker.core``, ``checker.dynamics``, ``checker.rigorous`` and ``checker.geometry``;
never prints (the command ``python -m checker.theorem1`` is ``checker.commands.theorem1``).
"""
