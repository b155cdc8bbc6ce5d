"""Dynamics: gradient descent on L_lambda (schedules, stop rules, checkpoints, monitoring) and
the hybrid float64-then-mp run.

Imports only ``checker.core``.
"""
