"""Studies built on the exact objective, outside a single T1 verdict: what weight
decay buys, the empirical threshold of the local phase, sweeps and their report."""
