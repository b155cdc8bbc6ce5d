"""Exact reference checker for the local-convergence theorem of Zhou and Ge
(NeurIPS 2024, arXiv:2406.01766): two-layer networks, Gaussian input, population
objective in closed form, gradient descent with weight decay."""

__version__ = "0.1.0"
