"""The exact objective: the model, the closed-form kernel, the two engines, the population
objective and its derivatives, the problem object, input/output and errors.

Lowest layer: imports nothing else of ``checker``.
"""
