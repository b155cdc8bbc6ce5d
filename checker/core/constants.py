"""Constants shared across the layers: the exit codes of every command and the T1 conventions
that the studies and the algorithm use too.

The lowest layer that needs them: importing this module costs nothing and imports nothing.
"""

#: Exit codes of every ``python -m checker.NAME`` command.
EXIT_OK = 0
#: A failure: a conclusion failed (a counterexample), a run diverged, an internal error.
EXIT_FAILED = 1
#: Bad input or unmet hypotheses (one line on stderr).
EXIT_BAD_INPUT = 2
#: Inconclusive: a precision floor or a budget stopped the run before its target.
EXIT_INCONCLUSIVE = 3
#: Hypotheses unmet, run anyway with --force: the verdict "outside-T1" of ``checker.theorem1``.
EXIT_OUTSIDE_T1 = 4
#: Ctrl-C: the partial result is written.
EXIT_INTERRUPTED = 130

#: Relative size of a neuron mass that counts as non-negligible in C5 (times a_min); the same
#: convention in the gradient-descent study and the algorithm.
NEGLIGIBLE_MASS = 1e-2
