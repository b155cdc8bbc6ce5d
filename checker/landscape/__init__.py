"""The landscape of L_lambda: stationary points (critical.py), their kinds and spectra."""
