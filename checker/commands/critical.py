"""``python -m checker.critical INSTANCE``: a stationary point of L_lambda, its kind, and a certificate.

From the instance's student: gradient descent then safeguarded Newton on the
trained blocks (``checker.stationary.critical.find_stationary``), the Hessian's
spectrum, index and kind, and with ``--certify`` an Arb certificate
(``checker.rigorous.critical.certify``): a box holding exactly one stationary point,
a certified lower bound of the smallest Hessian eigenvalue over it, enclosures of L
and L_lambda, and whether the point is spurious with a certified gap.  The JSON
schema is documented in docs/critical.md.

Exit status: 0 a stationary point was found (converged); 2 bad input; 3 no
stationary point within the budget; 130 interrupted (the partial result is written).
"""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation
from typing import Any, Sequence


from .. import __version__
from checker.commands.cli import EXIT_OK, UsageParser, run_guarded
from checker.commands.options import parse_option, resolve_engine
from checker.commands.presets import load_run_file
from checker.core import hessian as hs
from checker.core.engines import make_engine
from checker.core.errors import CheckerError, InstanceError
from checker.core.io import check_output_file, write_json_atomic
from checker.core.problem import Problem

PROG = "python -m checker.critical"
RESULT_FORMAT = "zhou-ge-checker/critical"
RESULT_VERSION = "1.0"
EXIT_NOT_FOUND = 3
EXIT_INTERRUPTED = 130
DEFAULT_STEPS = 200_000


def build_parser() -> UsageParser:
    p = UsageParser(prog=PROG, description="A stationary point of L_lambda over the trained blocks, its "
                                           "Hessian spectrum and kind, and (--certify) an Arb certificate.")
    p.add_argument("instance", help="instance or run file (JSON); its student is the start")
    p.add_argument("--train", choices=list(hs.TRAIN_CHOICES), default="both",
                   help="trained blocks: both layers, the first layer W only (a fixed), the second a only")
    p.add_argument("--lambda", dest="lam", help="weight decay lambda >= 0 (0 allowed); default: the instance's")
    p.add_argument("--eta", help="gradient descent step (default: the instance's, else 1 / ||H(start)||)")
    p.add_argument("--engine", help="float64 (default) or mp")
    p.add_argument("--dps", help="digits of --engine mp (default 50)")
    p.add_argument("--certify", action="store_true", help="certify the point with Arb ball arithmetic")
    p.add_argument("--steps", help=f"gradient descent step budget (default {DEFAULT_STEPS})")
    p.add_argument("--time-budget", help="seconds for the search")
    p.add_argument("--json", help="write the result to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _nonnegative_decimal(flag: str, text: str) -> str:
    t = text.strip()
    try:
        d = Decimal(t)
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite() or len(t) > 100:
        raise InstanceError(flag, f"expected a finite decimal number, got {text[:40]!r}")
    if d < 0:
        raise InstanceError(flag, f"lambda must be >= 0, got {t}")
    return t


def _check_start(problem: Problem, train: str) -> None:
    m, ms = len(problem.a), len(problem.a_star)
    if m < ms:
        raise CheckerError(f"the student's width m = {m} is below the teacher's m* = {ms}: give at least "
                           f"{ms} student neurons")
    if train != "second":
        with problem.engine.context():
            for j, row in enumerate(problem.W):
                if all(float(x) == 0 for x in row):
                    raise CheckerError(f"student.W[{j}] is the zero vector: L is not twice differentiable "
                                       "there (start from a non-zero neuron)")


def _optimum_upper(instance: Any, lam: str, problem: Problem, train: str, dps: int,
                   say: Any) -> tuple[str | None, str | None, str | None]:
    """For lambda > 0 and both layers trained: (upper end if it fits the width, reference, lower end)."""
    if float(lam) == 0 or train != "both":
        return None, None, None
    from checker.rigorous.optimum import certified_optimum

    inst = instance.replace(lam=lam)
    if inst.eta is None:
        return None, "no certified optimum: it needs a step size (\"eta\" in the instance or --eta)", None
    say("certified optimum L*_lambda (checker.rigorous.optimum) ...")
    try:
        enc = certified_optimum(inst, dps=dps)
    except CheckerError as exc:
        return None, f"no certified optimum: {exc}", None
    if not enc.rigorous:
        return None, "the optimum's enclosure is not rigorous: not decided", None
    # Its lower end bounds the optimum at this width from below in every case (an infimum over
    # more parameters); its upper end bounds it from above only when the reduced optimum fits.
    if enc.neurons > len(problem.a):
        return None, (f"the certified optimum has {enc.neurons} neurons, more than the width {len(problem.a)}: "
                      "its upper end does not bound the optimum at this width"), enc.lower
    return enc.upper, (f"checker.rigorous.optimum: L*_lambda in [{enc.lower}, {enc.upper}] at {enc.neurons} "
                       f"neurons (fits the width {len(problem.a)})"), enc.lower


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def say(text: str) -> None:
        print(f"{PROG}: {text}", file=sys.stderr)

    def body() -> int:
        from checker.stationary.critical import find_stationary
        from checker.rigorous.critical import certify

        args = parser.parse_args(argv)
        engine_name = parse_option("engine", args.engine) if args.engine is not None else None
        dps = parse_option("dps", args.dps) if args.dps is not None else None
        engine_name, dps = resolve_engine(engine_name, dps)
        steps = parse_option("steps", args.steps) if args.steps is not None else DEFAULT_STEPS
        budget = parse_option("time_budget", args.time_budget) if args.time_budget is not None else None
        eta = parse_option("eta", args.eta) if args.eta is not None else None
        if args.json:
            check_output_file("--json", args.json, distinct_from={"INSTANCE": args.instance})
        instance = load_run_file(args.instance).instance
        lam = _nonnegative_decimal("--lambda", args.lam) if args.lam is not None else instance.lam
        if Decimal(lam) < 0:
            raise InstanceError("lambda", f"lambda must be >= 0, got {lam}")
        instance = instance.replace(lam=lam, **({"eta": eta} if eta is not None else {}))
        engine = make_engine(engine_name, dps)
        problem = Problem.from_instance(instance, engine)
        _check_start(problem, args.train)
        options = {"train": args.train, "lambda": lam, "eta": instance.eta, "engine": engine_name,
                   "dps": engine.dps if engine_name == "mp" else None, "certify": args.certify,
                   "steps": steps, "time_budget": budget}
        sp = find_stationary(problem, train=args.train, lam=lam, max_steps=steps, time_budget=budget,
                             progress=not args.no_progress, say=say)
        interrupted = sp.stop_reason == "interrupted"
        cert = None
        notes = list(sp.notes)
        if args.certify and sp.converged and not interrupted:
            try:
                upper, ref, lower = _optimum_upper(instance, lam, problem, args.train, max(30, engine.dps + 10),
                                                   say)
                if ref and upper is None:
                    notes.append(ref)
                say("certifying (Arb: Krawczyk box, eigenvalue bound, enclosures) ...")
                cert = certify(problem, sp.a, sp.W, train=args.train, lam=sp.lam, optimum_upper=upper,
                               optimum_lower=lower, optimum_reference=ref)
            except KeyboardInterrupt:
                interrupted = True
                notes.append("interrupted during the certificate: certified is null")
        elif args.certify and not sp.converged:
            notes.append("no certificate: the search did not converge to a stationary point")
        d = sp.to_dict(engine)
        result = {
            "format": RESULT_FORMAT, "version": RESULT_VERSION, "checker_version": __version__,
            "instance": instance.to_dict(), "options": options,
            "converged": d["converged"], "stationary": d["stationary"], "grad_norm": d["grad_norm"],
            "loss": d["loss"], "reg_loss": d["reg_loss"], "hessian": d["hessian"],
            "certified": None if cert is None else cert.to_dict(),
            "spurious": None if cert is None else cert.spurious,
            "search": {k: d[k] for k in ("grad_tol", "gd_steps", "newton_steps", "stop_reason", "elapsed")},
            "notes": notes,
        }
        eig = [float(x) for x in sp.eigenvalues]
        print(f"{PROG}: {args.instance}, train={args.train}, lambda={lam}, engine={engine.describe()}")
        print(f"{'stationary point' if sp.converged else 'NO stationary point'} ({sp.stop_reason}): "
              f"L = {float(sp.loss):.10g}, L_lambda = {float(sp.reg_loss):.10g}, |grad| = {float(sp.grad_norm):.3g}, "
              f"{sp.gd_steps} GD + {sp.newton_steps} Newton steps, {sp.elapsed:.1f} s")
        print(f"Hessian ({len(eig)} x {len(eig)}): kind {sp.kind}, index {sp.index}, eigenvalues "
              f"{eig[0]:.6g} .. {eig[-1]:.6g}" if eig else "Hessian: empty")
        if cert is not None:
            if cert.rigorous:
                print(f"certified (Arb, {cert.prec} bits): exactly one stationary point in the box of radius "
                      f"{cert.radius}; smallest eigenvalue >= {cert.min_eigenvalue_lower} "
                      f"({'strict local minimum, proved' if cert.strict_local_minimum else 'not proved positive'}"
                      f"{', saddle, proved' if cert.saddle else ''}); L in [{cert.loss_enclosure[0][:20]}, "
                      f"{cert.loss_enclosure[1][:20]}]")
                print(f"spurious: {cert.spurious}" + (f", gap >= {cert.gap_lower[:20]}" if cert.gap_lower else "")
                      + (f", gap <= {cert.gap_upper[:20]}" if cert.gap_upper else "")
                      + f" ({cert.optimum_reference})")
            else:
                print(f"certified: not rigorous ({cert.why})")
        for n in notes:
            print(f"note: {n}")
        if args.json:
            write_json_atomic(args.json, result)
            print(f"result written to {args.json}")
        if interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if sp.converged else EXIT_NOT_FOUND

    return run_guarded(body, PROG)
