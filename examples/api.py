"""The checker as a library: load an instance, evaluate the exact objective, run gradient
descent a few steps, check T1 with a small budget and read the report.

    python examples/api.py
"""

from pathlib import Path

import checker

HERE = Path(__file__).resolve().parent

# An instance: teacher, student, activation, lambda, eta (examples/readme.json).
instance = checker.Instance.from_file(HERE / "readme.json")

# The exact objective in float64 numbers: L, L_lambda and their gradients.
problem = checker.Problem.from_instance(instance, checker.make_engine("float64"))
ev = problem.evaluate()
print(f"L = {ev.loss:.6g}, L_lambda = {ev.reg_loss:.6g}")

# Gradient descent on L_lambda, 100 steps at the instance's step size.
result = checker.run_gd(problem, problem.eta, stop=checker.StopRules(max_steps=100), progress=False)
print(f"after {result.steps} steps ({result.stop_reason}): L_lambda = {result.history[-1].reg_loss:.6g}")

# T1 on the instance with a small step budget: the report as data (the JSON of --json).
report = checker.check_theorem1(instance, steps=50, progress=False)
print(f"T1 verdict: {report.verdict}")
print(f"eps_0 = {report.constants['eps_0']:.4g}, lambda_max = {report.constants['lambda_max']:.4g}")
