"""``python -m checker.theorem1``: the local-convergence theorem (formalization T1) on one instance.

Checks the hypotheses H1-H4 of T1 (``docs/formalization.md``), runs gradient
descent on L_lambda (fixed lambda or a decreasing schedule) in float64 or in
mpmath, and checks the conclusions C1-C5 with measured constants.  T1 is this
project's formalization: the paper's own statement, constants and numbering are
not available here, so every threshold below is the checker's operational
choice, stated as such in the output (grade "reconstructed").

Operational definitions (ours, not the paper's):

* neighbourhood radius r = Delta/3 (``--radius``); T_i, T_far as in docs/formalization.md;
* certificate bound B(zeta) = zeta + lambda^2 ||p*||^2 / 4 (docs/formalization.md, from the
  dual certificate eta* with constants rho, rho');
* lambda_max = min(a_min/2, rho' a_min / ||p*||^2), the largest lambda for which
  the threshold below is at least lambda rho' a_min / 4 > 0;
* threshold eps_0 = lambda rho' a_min / 2 - lambda^2 ||p*||^2 / 4: at a gap
  below eps_0 the certificate forces the far mass below a_min / 2, so no
  teacher neuron can be missed (``--threshold`` overrides it);
* H3: eta < 2 / beta_0 with beta_0 the Hessian norm of L_lambda at the start
  (an estimate; C1 then checks every step);
* non-negligible mass (C5): mu_j >= 1e-2 a_min.

Exit status: 0 every conclusion held; 1 a conclusion failed (a counterexample
file is written); 2 bad input or unmet hypotheses; 3 inconclusive (a float64
precision floor or a budget stopped the run before the gap target);
130 interrupted (the partial result is written).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any, Sequence

import numpy as np

from . import __version__
from .cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, UsageParser, run_guarded
from .engines import MIN_DPS, Engine, make_engine
from .errors import CheckerError
from .model import Instance
from .options import MAX_SEED, MAX_STEPS, OPTIONS, layer_engine, max_dps, parse_option
from .presets import DEFAULT_PRESET, RunFile, load_preset, load_run_file, preset_names
from .problem import Problem, check_float64_range

SCHEMA_VERSION = "1.0"
EXIT_INCONCLUSIVE = 3
EXIT_INTERRUPTED = 130

#: Relative size of a neuron mass that counts as non-negligible in C5 (times a_min).
NEGLIGIBLE_MASS = 1e-2


@dataclass
class Check:
    """One hypothesis or conclusion: measured value, its bound, and whether it held."""

    id: str
    statement: str
    holds: bool | None  # None: not applicable / undetermined (detail says why)
    value: str
    bound: str
    detail: str = ""
    rigorous: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Options:
    engine: str = "float64"
    dps: int | None = None
    schedule: str = "fixed"
    steps: int = 20_000
    eta: str | None = None
    gap_target: float | None = None
    time_budget: float | None = None
    radius: float | None = None
    threshold: float | None = None
    seed: int = 0
    force: bool = False
    checkpoint: str | None = None
    resume: bool = False
    progress: bool = True


@dataclass
class Report:
    version: str
    checker_version: str
    verdict: str
    instance: dict[str, Any]
    engine: str
    dps: int
    options: dict[str, Any]
    hypotheses: list[Check]
    conclusions: list[Check] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)
    certificate: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    L_star_interval: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hypotheses"] = [c.to_dict() for c in self.hypotheses]
        out["conclusions"] = [c.to_dict() for c in self.conclusions]
        return out


# --------------------------------------------------------------------------- geometry
def _fit_slope(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) < 2:
        return None
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if np.ptp(xs) == 0:
        return None
    return float(np.polyfit(xs, ys, 1)[0])


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        try:
            return f"{float(x):.4g}"
        except ValueError:
            return x
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


# --------------------------------------------------------------------------- the check
class TheoremCheck:
    """Hypotheses, run and conclusions of T1 for one instance (results as data)."""

    def __init__(self, run_file: RunFile, options: Options) -> None:
        self.run_file = run_file
        self.instance = run_file.instance
        self.options = options
        self.engine: Engine = make_engine(options.engine, options.dps)
        if self.instance.eta is None and options.eta is None:
            raise CheckerError("no step size: give \"eta\" in the instance or --eta")
        eta_text = options.eta if options.eta is not None else self.instance.eta
        self.instance = self.instance.replace(eta=eta_text)
        # The certificate, the step-size estimate (H3) and the preliminary descent run in
        # float64 whatever the engine: an instance that overflows float64 is refused here,
        # before any long phase (the float64 engine's own guard says the same).
        check_float64_range(self.instance, "T1's certificate and step-size estimate run in float64 "
                            "whatever the engine: rescale the instance")
        self.problem = Problem.from_instance(self.instance, self.engine)
        self.a_star = np.array([float(x) for x in self.instance.teacher_a])
        self.W_star = np.array([[float(x) for x in r] for r in self.instance.teacher_W])
        if self.instance.normalize_teacher:
            self.W_star /= np.linalg.norm(self.W_star, axis=1)[:, None]
        self.lam0 = float(self.instance.lam)
        self.radius = options.radius if options.radius is not None else self.instance.separation / 3
        if not (self.radius > 0 and math.isfinite(self.radius)):
            raise CheckerError(f"--radius must be positive, got {self.radius}")
        self._check_precision()
        self.monitor: list[dict[str, Any]] = []
        #: Progress notes for the long phases (the CLI prints them on stderr).
        self.say: Any = lambda text: None

    # ------------------------------------------------------------ precision sanity
    def _check_precision(self) -> None:
        target = self.options.gap_target
        if target is None:
            return
        if not (target > 0 and math.isfinite(target)):
            raise CheckerError(f"--gap-target must be a positive number, got {target}")
        # A gap is a difference of O(L_lambda) quantities: it cannot be resolved below
        # ~100 ulps of the objective in the engine's arithmetic (float64 ~ 2e-14).
        floor = 100 * self.engine.eps
        if target < floor:
            need = int(math.ceil(-math.log10(target))) + 5
            raise CheckerError(
                f"--gap-target {target:g} is below what {self.engine.describe()} can resolve (~{floor:.1g}); "
                f"use --engine mp --dps {max(need, 30)}")

    # ------------------------------------------------------------ hypotheses
    def hypotheses(self) -> tuple[list[Check], dict[str, Any]]:
        from .geometry import certificate as cert_mod
        from .rigorous import duality
        from .geometry.smoothness import hessian_norm_estimate

        inst = self.instance
        absw = np.abs(self.a_star)
        a_min, a_max = float(absw.min()), float(absw.max())
        checks: list[Check] = []
        checks.append(Check(
            "H1", "teacher normalized, separation Delta > 0, a_min <= |a*_i| <= a_max",
            True, f"Delta={inst.separation:.6g}", "Delta > 0",
            f"m*={inst.m_star}, d={inst.d}, a_min={a_min:.6g}, a_max={a_max:.6g}, radius r={self.radius:.6g}",
            rigorous=True))
        self.say("building the dual certificate of the teacher ...")
        cert = cert_mod.build_certificate(inst.activation, self.a_star, self.W_star, radius=self.radius,
                                          rigorous=inst.d <= 4, seed=self.options.seed)
        self.cert = cert
        ok_cert = not cert.degenerate
        checks.append(Check(
            "H1-certificate", "the teacher has a non-degenerate dual certificate (rho > 0, rho' > 0)",
            ok_cert, f"rho={cert.rho:.6g}, rho'={cert.rho_far:.6g}", "> 0",
            cert.reason or f"||p*||={cert.p_norm:.6g}, condition={cert.condition:.3g}",
            rigorous=bool(cert.rho_rigorous and cert.rho_far_rigorous)))
        p2 = cert.p_norm ** 2
        if ok_cert and p2 > 0:
            lam_max = min(a_min / 2, cert.rho_far * a_min / p2)
        else:
            lam_max = a_min / 2
        lam = self.lam0
        checks.append(Check(
            "H2", "0 < lambda <= lambda_max = min(a_min/2, rho' a_min/||p*||^2) (checker's choice)",
            0 < lam <= lam_max, f"{lam:.6g}", f"{lam_max:.6g}",
            "lambda = 0 has no weight decay: use T1 with lambda > 0" if lam == 0 else ""))
        eta = float(inst.eta)
        beta0 = hessian_norm_estimate(inst, seed=self.options.seed)
        checks.append(Check(
            "H3", "step eta < 2/beta_0, beta_0 = Hessian norm of L_lambda at the start (estimate)",
            eta * beta0 < 2, f"eta*beta_0={eta * beta0:.4g}", "< 2",
            f"eta={eta:.6g}, beta_0={beta0:.6g}; C1 checks the decrease at every step"))
        eps0 = (self.options.threshold if self.options.threshold is not None
                else lam * cert.rho_far * a_min / 2 - lam ** 2 * p2 / 4)
        # H4 needs the gap only to ~1e-3 of eps_0; U enters the dual value with weight
        # about ||nu|| ~ sum |a*_i|, hence the tolerance on U for the branch and bound.
        tol = 1e-3 * eps0 / float(absw.sum()) if eps0 > 0 else None
        self.say("certifying the initial gap (Arb branch and bound over the sphere) ...")
        gap0 = duality.gap_bound(self.problem, rigorous=True, seed=self.options.seed, tol=tol)
        self.gap0 = gap0
        # The duality bound at theta_0 itself is loose away from the optimum; a
        # preliminary float64 descent gives a point whose dual value is a much better
        # (and still rigorous) lower bound on L*_lambda for the same lambda.
        self.pre_dual = self._preliminary_dual(tol=tol)
        duals = [(gap0.dual, gap0.rigorous)] + ([self.pre_dual] if self.pre_dual else [])
        best_dual, dual_rig = max(duals, key=lambda d: Decimal(d[0]))
        with localcontext() as dctx:  # exact difference of two decimal strings, rounded up
            dctx.prec, dctx.rounding = 400, ROUND_CEILING
            z0_dec = Decimal(gap0.reg_loss) - Decimal(best_dual)
        self.zeta0 = float(z0_dec)
        self.zeta0_rigorous = gap0.rigorous and dual_rig
        self.L_star_lower = (best_dual, dual_rig)
        z0 = self.zeta0
        checks.append(Check(
            "H4", "initial gap zeta_0 <= eps_0 (eps_0 = lambda rho' a_min/2 - lambda^2 ||p*||^2/4, checker's choice)",
            z0 <= eps0, f"{z0:.6g}", f"{eps0:.6g}",
            ("threshold given by --threshold; " if self.options.threshold is not None else "")
            + "zeta_0 <= L_lambda(theta_0) - D, D the best dual lower bound on L*_lambda "
            + f"(at theta_0: {float(gap0.dual):.6g}"
            + (f"; after a preliminary float64 descent: {float(self.pre_dual[0]):.6g})" if self.pre_dual else ")"),
            rigorous=self.zeta0_rigorous))
        constants = {"a_min": a_min, "a_max": a_max, "Delta": inst.separation, "radius": self.radius,
                     "rho": cert.rho, "rho_far": cert.rho_far, "p_norm": cert.p_norm,
                     "lambda_max": lam_max, "eps_0": eps0, "beta_0": beta0}
        return checks, constants

    def _preliminary_dual(self, max_steps: int = 5000, tol: float | None = None) -> tuple[str, bool] | None:
        """Rigorous lower bound on L*_lambda from a short float64 descent (None if it fails).

        The descent runs in float64 for speed; its end point is then read exactly into
        the run's engine, so the dual value is for the instance's own lambda.
        """
        from .rigorous import duality
        from .engines import Float64Engine

        # A plain fixed-length loop: nothing of run_gd (monitoring, checkpoints, stop
        # rules) is needed for a point whose only use is its dual value.
        fp = Problem.from_instance(self.instance, Float64Engine())
        a, W, eta = fp.a.copy(), fp.W.copy(), float(self.instance.eta)
        with np.errstate(all="ignore"):
            for _ in range(max_steps):
                ev = fp.evaluate(a, W)
                a, W = a - eta * ev.grad_a, W - eta * ev.grad_W
                if not (np.all(np.isfinite(a)) and np.all(np.isfinite(W))):
                    return None
        with self.engine.context():
            ae = self.engine.array([float(x) for x in a])
            We = self.engine.array([[float(x) for x in r] for r in W])
        gb = duality.gap_bound(self.problem, ae, We, rigorous=True, seed=self.options.seed, tol=tol)
        return gb.dual, gb.rigorous

    # ------------------------------------------------------------ monitoring along the run
    def observe(self, problem: Problem, a: np.ndarray, W: np.ndarray, lam: Any) -> float:
        """Gap estimate at a point, with the certificate quantities of C3/C4/C5 recorded."""
        from .rigorous import duality

        gb = duality.gap_bound(problem, a, W, lam=lam, rigorous=False, seed=self.options.seed)
        zeta = max(float(gb.gap_upper), 0.0)
        self.monitor.append(self._terms(a, W, float(lam), zeta, float(gb.reg_loss)))
        return zeta

    def _terms(self, a: np.ndarray, W: np.ndarray, lam: float, zeta: float, reg_loss: float,
               loss: float | None = None) -> dict[str, Any]:
        from .geometry import certificate as cert_mod

        cert = self.cert
        terms = cert_mod.certificate_terms(cert, self.W_star, a, W)
        a_min = float(np.abs(self.a_star).min())
        heavy = [r["angle"] for r in terms["students"]
                 if r["mu"] >= NEGLIGIBLE_MASS * a_min and r["angle"] is not None]
        if loss is None:
            ev = self.problem.evaluate(a, W, lam=lam, with_gradient=False)
            loss = float(ev.loss)
        return {
            "lam": lam, "zeta": zeta, "reg_loss": reg_loss, "loss": loss,
            "far_mass": float(terms["far_mass"]), "weighted_sq_angle": float(terms["weighted_sq_angle"]),
            "C3_bound": cert_mod.c3_bound(cert, lam, zeta) if lam > 0 else math.inf,
            "C4_bound": cert_mod.c4_bound(cert, lam, zeta) if lam > 0 else math.inf,
            "max_heavy_angle": max(heavy) if heavy else 0.0,
        }

    # ------------------------------------------------------------ the run
    def run(self, on_hypotheses: Any = None) -> Report:
        """Hypotheses, then (when they hold or --force) the descent and the conclusions.

        ``on_hypotheses(checks)`` is called before the descent starts (the CLI prints them).
        """
        from . import gd
        from .rigorous import duality

        opts = self.options
        report = Report(SCHEMA_VERSION, __version__, "holds", self.instance.to_dict(), self.engine.name,
                        self.engine.dps, {k: v for k, v in asdict(opts).items() if k != "progress"},
                        [])
        hyps, constants = self.hypotheses()
        report.hypotheses = hyps
        report.constants.update(constants)
        report.certificate = self.cert.to_dict()
        if on_hypotheses is not None:
            on_hypotheses(hyps)
        unmet = [h for h in hyps if h.holds is False]
        if unmet and not opts.force:
            report.verdict = "hypotheses-unmet"
            report.message = "; ".join(f"{h.id} fails ({h.value} vs {h.bound})" for h in unmet) + \
                ". " + _advice(unmet)
            return report
        if unmet:
            report.notes.append("hypotheses unmet but --force given: the conclusions are not covered by T1")

        schedule = gd.Schedule.parse(opts.schedule)
        gap_target = opts.gap_target
        stop = gd.StopRules(max_steps=opts.steps, time_budget=opts.time_budget, gap_target=gap_target,
                            gap_every=self._gap_every())
        resume_state = None
        if opts.resume:
            if not opts.checkpoint:
                raise CheckerError("--resume needs --checkpoint FILE")
            resume_state = gd.load_checkpoint(opts.checkpoint, self.problem)
            self.monitor = list(resume_state.get("monitor", []))
        # the initial point enters the C3/C4 record
        if not self.monitor:
            self.monitor.append(self._terms(self.problem.a, self.problem.W, self.lam0,
                                            max(float(self.gap0.gap_upper), 0.0), float(self.gap0.reg_loss)))
        result = gd.run_gd(self.problem, self.problem.eta, schedule=schedule, stop=stop,
                           gap_fn=self.observe, checkpoint=opts.checkpoint, resume=resume_state,
                           progress=opts.progress, monitor=self.monitor,
                           instance_dict=self.instance.to_dict())
        report.run = result.to_dict(self.engine)
        if result.stop_reason == "interrupted":
            report.verdict = "interrupted"
            report.message = (f"interrupted at step {result.steps}; partial result written"
                              + (f", resume with --resume --checkpoint {opts.checkpoint}" if opts.checkpoint else ""))
            return report

        self.say("certifying the final gap (Arb branch and bound over the sphere) ...")
        final = duality.gap_bound(self.problem, result.a, result.W, lam=result.lam, rigorous=True,
                                  seed=opts.seed)
        with self.engine.context():
            ev = self.problem.evaluate(result.a, result.W, lam=result.lam, with_gradient=False)
        report.final = {"loss": self.engine.to_str(ev.loss), "reg_loss": self.engine.to_str(ev.reg_loss),
                        "gap_upper": final.gap_upper, "gap_rigorous": final.rigorous,
                        "lambda": self.engine.to_str(result.lam), "gap": final.to_dict()}
        report.L_star_interval = {"lower": final.dual, "upper": final.reg_loss, "rigorous": final.rigorous,
                                  "lambda": self.engine.to_str(result.lam)}
        self.monitor.append(self._terms(result.a, result.W, float(result.lam),
                                        max(float(final.gap_upper), 0.0), float(final.reg_loss),
                                        loss=float(ev.loss)))
        report.conclusions, measured = self.conclusions(result, final, schedule)
        report.constants.update(measured)
        report.notes.append("all constants are measured on this instance by this checker; "
                            "the paper's own constants are not known here")
        applicable = [c for c in report.conclusions if c.holds is not None]
        if any(c.holds is False for c in applicable):
            report.verdict = "fails"
            report.message = "; ".join(f"{c.id} fails: {c.detail}" for c in applicable if c.holds is False)
        elif any(c.holds is None and c.id == "C2" for c in report.conclusions):
            report.verdict = "inconclusive"
            report.message = next(c.detail for c in report.conclusions if c.id == "C2")
        if unmet:
            forced = ", ".join(h.id for h in unmet)
            report.message = (report.message + "; " if report.message else "") + \
                f"run with --force although {forced} failed: T1 does not cover this run"
        return report

    def _gap_every(self) -> int:
        return max(20, min(200, self.options.steps // 50 or 20))

    # ------------------------------------------------------------ conclusions
    def conclusions(self, result: Any, final: Any, schedule: Any) -> tuple[list[Check], dict[str, Any]]:
        eng = self.engine
        out: list[Check] = []
        measured: dict[str, Any] = {}
        # C1: every step decreases L_lambda, up to the rounding of the objective itself.
        # L_lambda is a cancelling sum of kernel terms of size up to S = |L_lambda| + ||f*||^2,
        # so a computed value is uncertain by a few ulps of S (GDResult.rounding_scale = eps S);
        # an increase within 16 such ulps is not a failure of descent.
        scale = max(abs(r.reg_loss) for r in result.history) if result.history else 1.0
        tol = 16 * result.rounding_scale
        out.append(Check("C1", "L_lambda decreases along GD (per step, up to rounding)",
                         result.max_increase <= tol, f"{result.max_increase:.3g}", f"{tol:.3g}",
                         f"{result.increases} step(s) increased L_lambda, the largest by {result.max_increase:.3g}; "
                         f"tolerance = 16 ulps of |L_lambda| + ||f*||^2"))
        # C2: the gap goes to zero at the final lambda.
        gaps = [(r.step, r.gap) for r in result.history if r.gap is not None and r.gap > 0
                and r.lam == float(result.lam)]
        slope = _fit_slope([s for s, _ in gaps[-20:]], [math.log(g) for _, g in gaps[-20:]])
        rate = math.exp(slope) if slope is not None else None
        measured["gap_rate_per_step"] = rate
        g_final = float(final.gap_upper)
        target = self.options.gap_target
        if target is not None:
            holds: bool | None = g_final <= target
            bound = f"{target:.3g}"
        else:
            holds = g_final <= max(1e-3 * float(self.gap0.gap_upper), 1e3 * eng.eps * max(scale, 1.0))
            bound = "1e-3 x initial gap"
        detail = (f"final gap bound {'rigorous' if final.rigorous else 'estimate'}; "
                  f"fitted rate {rate:.6g} per step" if rate is not None else "no rate fitted")
        if not holds and (result.precision_floor or result.stop_reason in ("max-steps", "time-budget")):
            holds = None
            detail = (f"undetermined: the run stopped ({result.stop_reason}) at gap {g_final:.3g} above the "
                      f"target {bound}" + ("; float64 precision floor reached: rerun with --engine mp"
                                           if result.precision_floor else "; raise --steps or --time-budget"))
        out.append(Check("C2", "zeta_t -> 0 at fixed lambda (final gap at or below the target)", holds,
                         final.gap_upper, bound, detail, rigorous=final.rigorous))
        # C3, C4: certificate inequalities at every monitored point.
        r3 = [m["far_mass"] / m["C3_bound"] for m in self.monitor if m["C3_bound"] > 0]
        r4 = [m["weighted_sq_angle"] / m["C4_bound"] for m in self.monitor if m["C4_bound"] > 0]
        w3, w4 = max(r3, default=0.0), max(r4, default=0.0)
        measured["C3_worst_ratio"], measured["C4_worst_ratio"] = w3, w4
        last = self.monitor[-1]
        out.append(Check("C3", "far mass <= (zeta + lambda^2 ||p*||^2/4)/(lambda rho') along the run",
                         w3 <= 1, f"{w3:.4g}", "1", f"worst ratio over {len(r3)} points; final far mass "
                         f"{last['far_mass']:.3g} <= {last['C3_bound']:.3g}"))
        out.append(Check("C4", "sum_near mu_j angle_j^2 <= (zeta + lambda^2 ||p*||^2/4)/(lambda rho) along the run",
                         w4 <= 1, f"{w4:.4g}", "1", f"worst ratio over {len(r4)} points; final "
                         f"{last['weighted_sq_angle']:.3g} <= {last['C4_bound']:.3g}"))
        # C5: lambda schedule: loss -> 0 and heavy neurons converge to teacher directions.
        stages = self._stage_ends()
        measured["stages"] = stages
        lam_f = float(result.lam)
        measured["final_loss_over_lambda2"] = last["loss"] / lam_f ** 2 if lam_f > 0 else None
        measured["final_max_angle_over_lambda"] = last["max_heavy_angle"] / lam_f if lam_f > 0 else None
        measured["final_far_mass"] = last["far_mass"]
        measured["final_max_angle"] = last["max_heavy_angle"]
        if len(stages) >= 2:
            lams = [s["lam"] for s in stages]
            losses = [s["loss"] for s in stages]
            angles = [s["max_heavy_angle"] for s in stages]
            e_loss = _fit_slope([math.log(x) for x in lams], [math.log(max(x, 1e-300)) for x in losses])
            e_ang = _fit_slope([math.log(x) for x in lams], [math.log(max(x, 1e-300)) for x in angles])
            measured["loss_exponent_in_lambda"], measured["angle_exponent_in_lambda"] = e_loss, e_ang
            dec_loss = all(y < x for x, y in zip(losses, losses[1:]))
            dec_ang = all(y <= x for x, y in zip(angles, angles[1:]))
            out.append(Check("C5", "along the lambda schedule the loss and the largest angle of "
                             "non-negligible neurons decrease to 0",
                             dec_loss and dec_ang and (e_loss or 0) > 0,
                             f"loss ~ lambda^{_fmt(e_loss)}, angle ~ lambda^{_fmt(e_ang)}", "exponents > 0",
                             f"{len(stages)} stages; losses {[f'{x:.3g}' for x in losses]}; "
                             f"max angles {[f'{x:.3g}' for x in angles]}"))
        else:
            out.append(Check("C5", "along the lambda schedule the loss and the largest angle of "
                             "non-negligible neurons decrease to 0", None, "-", "-",
                             "not applicable: one lambda only (use --schedule geometric)"))
        return out, measured

    def _stage_ends(self) -> list[dict[str, Any]]:
        """The last monitored point of each lambda (stage ends of the schedule)."""
        ends: dict[float, dict[str, Any]] = {}
        for m in self.monitor:
            ends[m["lam"]] = m
        return [ends[k] for k in sorted(ends, reverse=True)]


def _advice(unmet: list[Check]) -> str:
    tips = {
        "H1-certificate": "the teacher's dual certificate is degenerate: separate the teacher directions more",
        "H2": "lower lambda below lambda_max",
        "H3": "lower the step eta (--eta) below 2/beta_0",
        "H4": "start the student closer to the teacher's optimum, or pass --threshold if you know the theorem's",
    }
    return "To fix: " + "; ".join(tips.get(h.id, h.id) for h in unmet) + " (or --force to run anyway)."


# --------------------------------------------------------------------------- printing
def print_header(report_instance: Instance, check: TheoremCheck, source: str, out: Any = None) -> None:
    out = out or sys.stdout
    inst = report_instance
    print(f"T1 check — {source}: {inst.activation}, d={inst.d}, m*={inst.m_star}, m={inst.m}, "
          f"lambda={inst.lam}, eta={inst.eta}, engine={check.engine.describe()}", file=out)


def print_checks(title: str, checks: list[Check], out: Any = None) -> None:
    out = out or sys.stdout
    print(f"\n{title}", file=out)
    for c in checks:
        mark = {True: "holds", False: "FAILS", None: "n/a"}[c.holds]
        rig = " [rigorous]" if c.rigorous else ""
        print(f"  {c.id:<15} {mark:<6} {c.value} (bound {c.bound}){rig}", file=out)
        print(f"  {'':<15}        {c.statement}", file=out)
        if c.detail:
            print(f"  {'':<15}        {c.detail}", file=out)


def print_report(report: Report, out: Any = None) -> None:
    out = out or sys.stdout
    if report.conclusions:
        print_checks("Conclusions", report.conclusions, out)
    if report.final:
        f = report.final
        print(f"\nFinal: L = {f['loss']}, L_lambda = {f['reg_loss']}, gap <= {f['gap_upper']} "
              f"({'rigorous' if f['gap_rigorous'] else 'estimate'})", file=out)
        lo, hi = report.L_star_interval["lower"], report.L_star_interval["upper"]
        print(f"L*_lambda in [{lo}, {hi}]", file=out)
    if report.constants:
        print("\nMeasured constants (this checker's measurements, not the paper's constants):", file=out)
        for k, v in report.constants.items():
            if k == "stages":
                continue
            print(f"  {k:<30} {_fmt(v)}", file=out)
    for n in report.notes:
        print(f"note: {n}", file=out)
    print(f"\nverdict: {report.verdict}" + (f" — {report.message}" if report.message else ""), file=out)


# --------------------------------------------------------------------------- command line
def build_parser() -> UsageParser:
    p = UsageParser(prog="python -m checker.theorem1",
                    description="Check the local-convergence theorem (T1) on one instance.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help=f"embedded instance (default: {DEFAULT_PRESET}); --list-presets lists them")
    src.add_argument("--instance", help="instance or run file (JSON)")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    # Option values are read as text and validated by the one table of checker.options
    # (the same ranges and messages as the keys of a run file).
    p.add_argument("--engine", help="'float64' (default) or 'mp'")
    p.add_argument("--dps", help=f"digits for --engine mp ({MIN_DPS} to {max_dps()}, default 50)")
    p.add_argument("--schedule", help="'fixed' or 'geometric:factor=0.5,switch=1e-2,min=1e-4'")
    p.add_argument("--steps", help=f"step budget (1 to {MAX_STEPS})")
    p.add_argument("--eta", help="step size (overrides the instance)")
    p.add_argument("--gap-target", help="stop when the gap bound is below this (> 0)")
    p.add_argument("--time-budget", help="seconds of wall time for the descent (> 0)")
    p.add_argument("--radius", help="neighbourhood radius r in radians, 0 < r <= pi (default Delta/3)")
    p.add_argument("--threshold", help="eps_0 of H4, > 0 (default: the checker's choice)")
    p.add_argument("--json", help="write the result (schema in README) to this file")
    p.add_argument("--plots", help="write figures to this directory")
    p.add_argument("--seed", help=f"seed of the randomized searches, 0 to {MAX_SEED} (default 0)")
    p.add_argument("--checkpoint", help="checkpoint file (written periodically, on Ctrl-C and at the end)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--force", action="store_true", help="run even when hypotheses are unmet")
    p.add_argument("--counterexample-dir", default=".", help="where a failing instance is saved (default .)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def options_from(args: argparse.Namespace, rf: RunFile) -> Options:
    """The run options: command-line flags over the run file's, each validated by the one table."""
    run = rf.run  # validated when the run file was read (checker.presets)
    cli = {key: parse_option(key, getattr(args, key)) for key in OPTIONS
           if key != "force" and getattr(args, key, None) is not None}

    def pick(key: str, default: Any) -> Any:
        return cli.get(key, run.get(key, default))

    engine, dps = layer_engine(cli.get("engine"), cli.get("dps"), run.get("engine"), run.get("dps"))
    return Options(
        engine=engine, dps=dps,
        schedule=pick("schedule", "fixed"),
        steps=pick("steps", 20_000),
        eta=pick("eta", None),
        gap_target=pick("gap_target", None),
        time_budget=pick("time_budget", None),
        radius=pick("radius", None),
        threshold=pick("threshold", None),
        seed=pick("seed", 0),
        force=args.force or run.get("force", False), checkpoint=args.checkpoint, resume=args.resume,
        progress=not args.no_progress,
    )


def check_outputs(args: argparse.Namespace, d: int) -> None:
    """Probe every file and folder the run will write, before any computation (exit 2).

    The result may not be the instance or the checkpoint; the checkpoint may not be
    the instance; figures and counterexamples follow the same rule (a path that exists
    and is not a regular file is refused, never replaced; symbolic links are written
    through).
    """
    from .io import check_output_dir, check_output_file

    if args.json:
        check_output_file("--json", args.json,
                          distinct_from={"--instance": args.instance, "--checkpoint": args.checkpoint})
    if args.checkpoint:
        check_output_file("--checkpoint", args.checkpoint, distinct_from={"--instance": args.instance})
    if args.plots:
        from .plots import check_plotting
        check_plotting(args.plots, d, distinct_from={"--instance": args.instance, "--json": args.json,
                                                     "--checkpoint": args.checkpoint})
    check_output_dir("--counterexample-dir", args.counterexample_dir)


def write_counterexample(rf: RunFile, opts: Options, report: Report, folder: str) -> Path:
    from .io import write_json_atomic

    run = {k: v for k, v in asdict(opts).items()
           if k in ("engine", "dps", "schedule", "steps", "eta", "gap_target", "time_budget", "radius",
                    "seed", "threshold", "force") and v is not None}
    name = (rf.instance.name or "instance").replace("/", "_")
    path = Path(folder) / f"counterexample-{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json_atomic(path, {"description": f"T1 counterexample: {report.message}",
                             "instance": rf.instance.to_dict(), "run": run})
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        if args.list_presets:
            for name in preset_names():
                print(f"{name}: {load_preset(name).description}")
            return EXIT_OK
        if args.instance:
            rf = load_run_file(args.instance)
            source = args.instance
        else:
            rf = load_preset(args.preset or DEFAULT_PRESET)
            source = f"preset {args.preset or DEFAULT_PRESET}"
        opts = options_from(args, rf)
        check_outputs(args, rf.instance.d)
        check = TheoremCheck(rf, opts)
        if opts.progress:
            check.say = lambda text: print(text, file=sys.stderr, flush=True)
        print_header(check.instance, check, source)
        report = check.run(on_hypotheses=lambda hyps: print_checks("Hypotheses", hyps))
        sys.stdout.flush()
        print_report(report)
        if args.json:
            from .io import write_json_atomic
            write_json_atomic(args.json, report.to_dict())
            print(f"result written to {args.json}")
        if args.plots and report.run:
            from .plots import make_plots
            for p in make_plots(check, report, args.plots):
                print(f"figure: {p}")
        if report.verdict == "fails":
            path = write_counterexample(rf, opts, report, args.counterexample_dir)
            print(f"counterexample written to {path} (reproduce: python -m checker.theorem1 --instance {path})")
            return EXIT_FAILED
        if report.verdict == "hypotheses-unmet":
            print(f"python -m checker.theorem1: error: hypotheses unmet: {report.message}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if report.verdict == "inconclusive":
            return EXIT_INCONCLUSIVE
        if report.verdict == "interrupted":
            return EXIT_INTERRUPTED
        return EXIT_OK

    return run_guarded(body, "python -m checker.theorem1")


if __name__ == "__main__":
    sys.exit(main())
