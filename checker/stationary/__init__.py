"""Stationary points of L_lambda and the landscape they form: Newton search, spectrum, index and
kind (``critical.py``), the random-start study with its classes up to symmetry (``study.py``),
and the threshold's upper end from certified spurious points (``upper.py``).

Study layer; ``python -m checker.critical`` and ``python -m checker.landscape`` are its commands.
"""
