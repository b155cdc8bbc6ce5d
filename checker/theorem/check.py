"""The local-convergence theorem (formalization T1) on one instance, as data: ``TheoremCheck``
(the command is ``python -m checker.theorem1``, ``checker.commands.theorem1``).

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
precision floor or a budget stopped the run before the gap target); 4 outside T1
(hypotheses unmet, run anyway with --force: T1 says nothing about the outcome,
so it is neither "holds" nor a counterexample; the conclusions are reported as
measured); 130 interrupted (the partial result is written).

Phases of a run (``PHASES``), cheapest first: the cheap checks (lambda > 0,
the float64 objective finite, H1, lambda <= a_min/2), the certificate, the
smoothness estimate, the initial gap, the preliminary dual, the descent, the
final gap.  Ctrl-C in any phase ends with verdict "interrupted" naming the
phase; with --checkpoint the results of the finished phases (exact JSON,
decimal strings) and the descent state are written to a sealed checkpoint
(SHA-256 digest of its content, ``checker.core.io.seal``) from which --resume
continues without redoing them.

Rigour: a check labelled rigorous compares a decimal upper bound (rounded up)
with its bound exactly (``decimal_at_most``).  The enclosures are about the
instance as read by the engine (each decimal input rounded to float64 or to the
mp working precision): the report says so in ``rigorous_for``.
"""


from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext
from typing import Any

import numpy as np

from checker import __version__
from checker.core import objective
from checker.core.constants import NEGLIGIBLE_MASS
from checker.core.engines import Engine, make_engine
from checker.core.errors import CheckerError
from checker.core.problem import Problem, check_float64_range
from checker.core.runfile import RunFile
from checker.theorem.checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, _finite_decimal, _finite_number_text,
                                        validate_monitor)
from checker.theorem.verdict import HYPOTHESES, SCHEMA_VERSION, Check, Report, _advice, _fit_slope, _fmt, decimal_at_most

#: The phases of a run, in order; an interrupted report names the one it reached.
PHASES = ("cheap-checks", "certificate", "smoothness", "initial-gap", "preliminary-dual", "descent", "final-gap")


def lambda_max_of(cert: Any, a_min: float) -> float:
    """lambda_max = min(a_min/2, rho' a_min / ||p*||^2) (H2, the checker's choice); a_min/2 without a certificate."""
    p2 = cert.p_norm ** 2
    if not cert.degenerate and p2 > 0:
        return min(a_min / 2, cert.rho_far * a_min / p2)
    return a_min / 2


def eps0_of(cert: Any, a_min: float, lam: float) -> float:
    """eps_0 = lambda rho' a_min / 2 - lambda^2 ||p*||^2 / 4 (H4, the checker's choice)."""
    return lam * cert.rho_far * a_min / 2 - lam ** 2 * cert.p_norm ** 2 / 4


def t1_thresholds(instance: Any, *, seed: int = 0) -> dict[str, Any]:
    """T1's eps_0 and lambda_max for an instance, as ``TheoremCheck.hypotheses`` computes them.

    The dual certificate of the teacher with the default radius Delta/3 (rho' certified
    in Arb when d <= 4); floats, with the certificate's own rigour flags.
    """
    from checker.geometry import certificate as cert_mod

    a_star = np.array([float(x) for x in instance.teacher_a])
    W_star = np.array([[float(x) for x in r] for r in instance.teacher_W])
    if instance.normalize_teacher:
        W_star /= np.linalg.norm(W_star, axis=1)[:, None]
    a_min = float(np.abs(a_star).min())
    cert = cert_mod.build_certificate(instance.activation, a_star, W_star, radius=instance.separation / 3,
                                      rigorous=instance.d <= 4, seed=seed)
    lam = float(instance.lam)
    return {"eps_0": eps0_of(cert, a_min, lam), "lambda_max": lambda_max_of(cert, a_min),
            "rho": cert.rho, "rho_far": cert.rho_far, "p_norm": cert.p_norm,
            "rho_far_rigorous": cert.rho_far_rigorous, "degenerate": cert.degenerate,
            "note": "T1's operational constants (checker.theorem1, H2 and H4): floats, not part of the proof"}


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
    #: mp engine: float64 steps until float64's precision floor, then mp (checker.dynamics.hybrid)
    hybrid: bool = True
    #: evaluate every hypothesis even after one failed (no descent without --force);
    #: for callers that report which hypothesis a start misses (checker.algorithm)
    all_hypotheses: bool = False
    #: wall-time limit (seconds) of each Arb branch and bound of a gap bound (None: until its
    #: tolerance); a search stopped early still gives a rigorous, looser bound (for studies)
    gap_seconds: float | None = None



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
        #: phase reached, results of the finished phases (exact JSON), checks and constants so far
        self.phase = PHASES[0]
        self.phases: dict[str, Any] = {}
        self.checks: dict[str, Check] = {}
        self.constants: dict[str, Any] = {}
        self.cert: Any = None
        #: what --resume restored: phase results (objects) and the descent checkpoint
        self._restored: dict[str, Any] = {}
        self._gd_resume: dict | None = None
        self._gd_checkpoint: dict | None = None
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
        """H1-H4, everything cheap before anything expensive; a failure stops early unless --force.

        Order: the refusals of ``_refuse_outside_t1`` (lambda = 0, float64 overflow:
        exit 2 at once), H1 and the part lambda <= a_min/2 of H2 (no certificate
        needed: lambda_max <= a_min/2 always); then the phases certificate (H1-certificate,
        H2), smoothness (H3), initial gap and preliminary dual (H4).  When a hypothesis
        fails and --force is not given, the later phases are skipped and their checks
        say "not evaluated".  A phase restored from a checkpoint is not recomputed.
        """
        inst = self.instance
        self.checks, self.constants = {}, {}
        checks, constants = self.checks, self.constants
        absw = np.abs(self.a_star)
        a_min, a_max = float(absw.min()), float(absw.max())
        self.phase = "cheap-checks"
        self._refuse_outside_t1()
        checks["H1"] = Check(
            "H1", HYPOTHESES["H1"], True, f"Delta={inst.separation:.6g}", "Delta > 0",
            f"m*={inst.m_star}, d={inst.d}, a_min={a_min:.6g}, a_max={a_max:.6g}, radius r={self.radius:.6g}",
            rigorous=True)
        lam = self.lam0
        constants.update({"a_min": a_min, "a_max": a_max, "Delta": inst.separation, "radius": self.radius})
        if not lam <= a_min / 2:
            checks["H2"] = Check("H2", HYPOTHESES["H2"], False, f"{lam:.6g}", f"{a_min / 2:.6g}",
                                 "lambda_max <= a_min/2 whatever the certificate (checked before it)")
        if self._stop_early():
            return self.hypothesis_list(), constants

        cert = self._phase("certificate", self._certificate_phase, lambda c: c.to_json())
        self.cert = cert
        ok_cert = not cert.degenerate
        checks["H1-certificate"] = Check(
            "H1-certificate", HYPOTHESES["H1-certificate"],
            ok_cert, f"rho={cert.rho:.6g}, rho'={cert.rho_far:.6g}", "> 0",
            cert.reason or f"||p*||={cert.p_norm:.6g}, condition={cert.condition:.3g}",
            rigorous=bool(cert.rho_rigorous and cert.rho_far_rigorous))
        lam_max = lambda_max_of(cert, a_min)
        checks["H2"] = Check("H2", HYPOTHESES["H2"], 0 < lam <= lam_max, f"{lam:.6g}", f"{lam_max:.6g}")
        constants.update({"rho": cert.rho, "rho_far": cert.rho_far, "p_norm": cert.p_norm, "lambda_max": lam_max})
        if self._stop_early():
            return self.hypothesis_list(), constants

        eta = float(inst.eta)
        beta0 = self._phase("smoothness", self._smoothness_phase, repr)
        checks["H3"] = Check(
            "H3", HYPOTHESES["H3"], eta * beta0 < 2, f"eta*beta_0={eta * beta0:.4g}", "< 2",
            f"eta={eta:.6g}, beta_0={beta0:.6g}; C1 checks the decrease at every step")
        constants["beta_0"] = beta0
        if self._stop_early():
            return self.hypothesis_list(), constants

        eps0 = (self.options.threshold if self.options.threshold is not None
                else eps0_of(cert, a_min, lam))
        constants["eps_0"] = eps0
        # H4 needs the gap only to ~1e-3 of eps_0; U enters the dual value with weight
        # about ||nu|| ~ sum |a*_i|, hence the tolerance on U for the branch and bound.
        tol = 1e-3 * eps0 / float(absw.sum()) if eps0 > 0 else None
        gap0 = self._phase("initial-gap", lambda: self._initial_gap_phase(tol), lambda g: g.to_dict())
        self.gap0 = gap0
        # The duality bound at theta_0 itself is loose away from the optimum; a
        # preliminary float64 descent gives a point whose dual value is a much better
        # (and still rigorous) lower bound on L*_lambda for the same lambda.
        self.pre_dual = self._phase("preliminary-dual", lambda: self._preliminary_dual(tol=tol),
                                    lambda d: None if d is None else [d[0], d[1]])
        duals = [(gap0.dual, gap0.rigorous)] + ([self.pre_dual] if self.pre_dual else [])
        best_dual, dual_rig = max(duals, key=lambda d: Decimal(d[0]))
        with localcontext() as dctx:  # exact difference of two decimal strings, rounded up
            dctx.prec, dctx.rounding = 400, ROUND_CEILING
            z0_dec = Decimal(gap0.reg_loss) - Decimal(best_dual)
        self.zeta0 = float(z0_dec)
        self.zeta0_rigorous = gap0.rigorous and dual_rig
        self.L_star_lower = (best_dual, dual_rig)
        checks["H4"] = Check(
            "H4", HYPOTHESES["H4"], decimal_at_most(z0_dec, eps0), f"{self.zeta0:.6g}", f"{eps0:.6g}",
            ("threshold given by --threshold; " if self.options.threshold is not None else "")
            + "zeta_0 <= L_lambda(theta_0) - D, D the best dual lower bound on L*_lambda "
            + f"(at theta_0: {float(gap0.dual):.6g}"
            + (f"; after a preliminary float64 descent: {float(self.pre_dual[0]):.6g})" if self.pre_dual else ")")
            + "; compared exactly (the decimal upper bound, rounded up, against eps_0)",
            rigorous=self.zeta0_rigorous)
        return self.hypothesis_list(), constants

    def hypothesis_list(self) -> list[Check]:
        """The checks in their fixed order; one not reached is "not evaluated" (holds None)."""
        return [self.checks.get(h) or Check(h, HYPOTHESES[h], None, "-", "-",
                                             "not evaluated: an earlier hypothesis failed (cheap checks "
                                             "come first; --force evaluates all)"
                                             if any(c.holds is False for c in self.checks.values())
                                             else f"not evaluated: the run stopped in phase {self.phase}")
                for h in HYPOTHESES]

    def _stop_early(self) -> bool:
        if self.options.force or self.options.all_hypotheses:
            return False
        return any(c.holds is False for c in self.checks.values())

    def _refuse_outside_t1(self) -> None:
        """Instances T1 says nothing about, refused in seconds (exit 2) before any long work."""
        from checker.core.engines import Float64Engine

        if Decimal(self.instance.lam) == 0:
            raise CheckerError("T1 needs lambda > 0 (weight decay); for lambda = 0 use python -m checker.gd")
        # The smoothness estimate and the preliminary descent run in float64 whatever the
        # engine, so an instance whose float64 objective or gradient overflows is out of reach.
        fp = Problem.from_instance(self.instance, Float64Engine())
        with np.errstate(all="ignore"):
            ev = fp.evaluate(fp.a, fp.W)
            values = np.concatenate([[ev.loss, ev.reg_loss], np.ravel(ev.grad_a), np.ravel(ev.grad_W)])
            f64_ok = bool(np.all(np.isfinite(values.astype(float))))
        if not f64_ok:
            raise CheckerError(
                f"the float64 evaluation of this instance overflows (L_lambda at the start = {float(ev.reg_loss):g}"
                "): the student or teacher entries are too large for float64 arithmetic, which the "
                "smoothness estimate and the preliminary descent use; rescale the instance")
        with self.engine.context():
            ev = self.problem.evaluate(with_gradient=False)
            value = self.engine.to_str(ev.reg_loss)
        try:
            finite = Decimal(value).is_finite()
        except InvalidOperation:
            finite = False
        if not finite:
            raise CheckerError(f"the initial objective L_lambda = {value[:40]} is not finite in "
                               f"{self.engine.describe()}; rescale the instance")

    def _certificate_phase(self) -> Any:
        """The dual certificate of the teacher (branch and bound for rho' and max |eta| on the sphere of the
        teachers' span when it lies in R^k, k <= 4, whatever d: ``build_certificate`` decides)."""
        from checker.geometry import certificate as cert_mod

        self.say("building the dual certificate of the teacher ...")
        return cert_mod.build_certificate(self.instance.activation, self.a_star, self.W_star, radius=self.radius,
                                          rigorous=True, seed=self.options.seed)

    def _smoothness_phase(self) -> float:
        """beta_0, the Hessian norm of L_lambda at the start (estimate, float64)."""
        from checker.geometry.smoothness import hessian_norm_estimate

        self.say("estimating the smoothness beta_0 at the start ...")
        return float(hessian_norm_estimate(self.instance, seed=self.options.seed))

    def _initial_gap_phase(self, tol: float | None) -> Any:
        """The certified gap bound at theta_0 (Arb branch and bound over the sphere); ``tol`` caps the
        tolerance on the sup, which is otherwise ~1% of the expected gap (``duality.gap_bound``)."""
        from checker.rigorous import duality

        self.say("certifying the initial gap (Arb branch and bound over the sphere) ...")
        return duality.gap_bound(self.problem, rigorous=True, seed=self.options.seed, max_tol=tol,
                                 max_seconds=self.options.gap_seconds)

    def _phase(self, name: str, compute: Any, dump: Any) -> Any:
        """Run one phase, or take its result from the checkpoint being resumed.

        ``dump`` gives the exact JSON form stored in the checkpoint, which is
        written after every phase that was computed (when --checkpoint is given).
        """
        self.phase = name
        if name in self._restored:
            value = self._restored[name]
            self.say(f"{name}: restored from the checkpoint")
            self.phases[name] = dump(value)
            return value
        value = compute()
        self.phases[name] = dump(value)
        self._save_checkpoint("running")
        return value

    def _preliminary_dual(self, max_steps: int = 5000, tol: float | None = None) -> tuple[str, bool] | None:
        """Rigorous lower bound on L*_lambda from a short float64 descent (None if it fails).

        The descent runs in float64 for speed; its end point is then read exactly into
        the run's engine, so the dual value is for the instance's own lambda.
        """
        from checker.rigorous import duality
        from checker.core.engines import Float64Engine

        self.say("preliminary float64 descent for a better dual bound ...")
        # A plain fixed-length loop: nothing of run_gd (monitoring, checkpoints, stop
        # rules) is needed for a point whose only use is its dual value.
        fp = Problem.from_instance(self.instance, Float64Engine())
        a, W, eta = fp.a.copy(), fp.W.copy(), float(self.instance.eta)
        with np.errstate(all="ignore"):
            for _ in range(max_steps):
                try:
                    ev = fp.evaluate(a, W)
                except objective.NonFiniteResult:  # the descent overflowed float64
                    return None
                a, W = a - eta * ev.grad_a, W - eta * ev.grad_W
                if not (np.all(np.isfinite(a)) and np.all(np.isfinite(W))):
                    return None
        with self.engine.context():
            ae = self.engine.array([float(x) for x in a])
            We = self.engine.array([[float(x) for x in r] for r in W])
        gb = duality.gap_bound(self.problem, ae, We, rigorous=True, seed=self.options.seed, tol=tol,
                               max_seconds=self.options.gap_seconds)
        return gb.dual, gb.rigorous

    # ------------------------------------------------------------ checkpoints of the phases
    def defining_options(self) -> dict[str, Any]:
        """The options that define a run (with their effective values): a resume must match them."""
        from checker.dynamics import gd

        return {"engine": self.engine.name, "dps": self.engine.dps if self.engine.name == "mp" else None,
                "schedule": gd.Schedule.parse(self.options.schedule).to_dict(), "eta": self.instance.eta,
                "radius": repr(float(self.radius)), "threshold": self.options.threshold,
                "seed": self.options.seed, "gap_every": self._gap_every()}

    def _checkpoint_data(self, status: str) -> dict[str, Any]:
        from checker.core.io import seal

        return seal({
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "status": status, "phase": self.phase,
            "instance": self.instance.to_dict(), "options": self.defining_options(),
            "phases": dict(self.phases), "hypotheses": [c.to_dict() for c in self.checks.values()],
            "gd": self._gd_checkpoint})

    def _save_checkpoint(self, status: str) -> None:
        if self.options.checkpoint:
            from checker.core.io import write_json_atomic
            write_json_atomic(self.options.checkpoint, self._checkpoint_data(status))

    def _on_gd_checkpoint(self, data: dict[str, Any]) -> None:
        self._gd_checkpoint = data
        self._save_checkpoint(data.get("status", "running"))

    def load_resume(self) -> None:
        """Read and validate the --checkpoint to resume, before any long work.

        Refused with a one-line message naming the file: another format or version;
        content that does not match its digest; another instance or other defining
        options; phase results, descent state or monitor rows that do not parse.
        """
        from checker.dynamics import gd
        from checker.geometry.certificate import Certificate
        from checker.core.io import check_sealed_format, read_json
        from checker.rigorous.duality import GapBound

        path = self.options.checkpoint
        if not path:
            raise CheckerError("--resume needs --checkpoint FILE")
        src = f"checkpoint {path}"
        data = read_json(path, "checkpoint")
        check_sealed_format(data, src, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "T1 checkpoint",
                            "start again without --resume")
        for key in ("instance", "options", "phases", "gd"):
            if key not in data:
                raise CheckerError(f"{src}: is missing {key!r}; start again without --resume")
        mine = self.instance.to_dict()
        if data["instance"] != mine:
            theirs = data["instance"] if isinstance(data["instance"], dict) else {}
            key = next((k for k in mine if theirs.get(k) != mine[k]), "instance")
            raise CheckerError(f"{src}: belongs to another instance (its {key!r} differs from this run's); "
                               "resume with the instance and options it was made with")
        opts, theirs = self.defining_options(), data["options"]
        if not isinstance(theirs, dict):
            raise CheckerError(f"{src}: its options are malformed; start again without --resume")
        for key, value in opts.items():
            if theirs.get(key) == value:
                continue
            if key == "gap_every":  # derived from --steps, not an option of its own
                raise CheckerError(f"{src}: was made with a --steps giving a gap evaluation every {theirs.get(key)!r} "
                                   f"steps, this run every {value!r}; resume with the same --steps")
            raise CheckerError(f"{src}: was made with --{key} {theirs.get(key)!r}, this run has {value!r}; "
                               "resume with the same options")
        phases = data["phases"]
        if not isinstance(phases, dict):
            raise CheckerError(f"{src}: its phases are malformed; start again without --resume")
        restored: dict[str, Any] = {}
        for name, value in phases.items():
            where = f"{src}: phase {name}"
            if name == "certificate":
                restored[name] = Certificate.from_json(value, where)
            elif name == "smoothness":
                restored[name] = _finite_number_text(value, where)
            elif name == "initial-gap":
                restored[name] = GapBound.from_dict(value, where)
            elif name == "preliminary-dual":
                if value is not None and not (isinstance(value, list) and len(value) == 2
                                              and isinstance(value[1], bool)):
                    raise CheckerError(f"{where}: expected null or [dual, rigorous]")
                restored[name] = None if value is None else (_finite_decimal(value[0], where), value[1])
            else:
                raise CheckerError(f"{src}: unknown phase {name!r}; start again without --resume")
        if data["gd"] is not None:
            self._validate_gd(data["gd"], src)
            validate_monitor(data["gd"].get("monitor", []), src)
            self.monitor = list(data["gd"].get("monitor", []))
        self._restored = restored
        # carried by every checkpoint written from now on, so an interrupt before the
        # restored phases are reached again does not drop them
        self.phases = dict(phases)
        self._gd_resume = self._gd_checkpoint = data["gd"]

    # ------------------------------------------------------------ monitoring along the run
    def observe(self, problem: Problem, a: np.ndarray, W: np.ndarray, lam: Any) -> float:
        """Gap estimate at a point, with the certificate quantities of C3/C4/C5 recorded."""
        from checker.rigorous import duality

        gb = duality.gap_bound(problem, a, W, lam=lam, rigorous=False, seed=self.options.seed)
        zeta = max(float(gb.gap_upper), 0.0)
        # C6/C7 in the engine that estimated zeta (the float64 twin before a hybrid run's switch)
        self.monitor.append(self._terms(a, W, float(lam), zeta, float(gb.reg_loss), problem=problem, lam_exact=lam))
        return zeta

    def _descent_state(self) -> dict[str, dict[float, Any]]:
        """Per-lambda cache of the C6/C7 construction: engine lambdas and reduced optima."""
        return self.__dict__.setdefault("_descent_cache", {"lam": {}, "reduced": {}})

    def _descent(self, a: np.ndarray, W: np.ndarray, lam: float, zeta: float, **kw: Any) -> dict[str, Any]:
        """The C6/C7 terms at a point (``checker.geometry.descent.monitored_terms``; ``kw``: problem,
        the one whose engine computed zeta, default the run's; lam_exact; zeta_rigorous)."""
        from checker.geometry import descent

        return descent.monitored_terms(self._descent_state(), kw.pop("problem", None) or self.problem, self.engine,
                                       a, W, lam, zeta, self.radius, **kw)

    def _terms(self, a: np.ndarray, W: np.ndarray, lam: float, zeta: float, reg_loss: float,
               loss: float | None = None, **descent_kw: Any) -> dict[str, Any]:
        from checker.geometry import certificate as cert_mod

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
            **(self._descent(a, W, lam, zeta, **descent_kw) if lam > 0 else {}),
        }

    # ------------------------------------------------------------ the run
    def run(self, on_hypotheses: Any = None) -> Report:
        """The phases of PHASES in order: hypotheses, then (when they hold or --force) the
        descent, the final gap and the conclusions.

        ``on_hypotheses(checks)`` is called before the descent starts (the CLI prints them).
        With --resume the checkpoint is validated first and its finished phases are not
        redone.  Ctrl-C in any phase returns the partial report (verdict "interrupted",
        ``phase`` the phase reached) and writes the checkpoint when --checkpoint is given.
        """
        from checker.dynamics import gd, hybrid
        from checker.rigorous import duality
        from checker.rigorous.arb_objective import exact_decimal

        opts = self.options
        report = Report(SCHEMA_VERSION, __version__, "holds", self.instance.to_dict(), self.engine.name,
                        self.engine.dps, {k: v for k, v in asdict(opts).items() if k != "progress"},
                        [], rigorous_for=self.rigorous_for())
        # cheap validation first: the options of the descent, then the checkpoint to resume
        schedule = gd.Schedule.parse(opts.schedule)
        stop = gd.StopRules(max_steps=opts.steps, time_budget=opts.time_budget, gap_target=opts.gap_target,
                            gap_every=self._gap_every())
        if opts.resume:
            self.load_resume()
        try:
            hyps, constants = self.hypotheses()
        except KeyboardInterrupt:
            return self._interrupted(report)
        report.hypotheses = hyps
        report.constants.update(constants)
        report.phase = self.phase
        if self.cert is not None:
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

        self.phase = "descent"
        try:
            # the initial point enters the C3/C4 record
            if not self.monitor:
                # zeta_0 of H4: the best dual bound (at theta_0 or after the preliminary descent)
                self.monitor.append(self._terms(self.problem.a, self.problem.W, self.lam0,
                                                max(self.zeta0, 0.0), float(self.gap0.reg_loss),
                                                zeta_rigorous=self.zeta0_rigorous))
            run = hybrid.run_hybrid if self._hybrid() else gd.run_gd
            result = run(self.problem, self.problem.eta, schedule=schedule, stop=stop,
                         gap_fn=self.observe, resume=self._gd_resume, progress=opts.progress,
                         monitor=self.monitor, instance_dict=self.instance.to_dict(),
                         on_checkpoint=self._on_gd_checkpoint if opts.checkpoint else None)
        except KeyboardInterrupt:
            return self._interrupted(report)
        report.run = result.to_dict(self.engine)
        if result.stop_reason == "interrupted":
            return self._interrupted(report, f" at step {result.steps}")

        self.phase = "final-gap"
        try:
            self.say("certifying the final gap (Arb branch and bound over the sphere) ...")
            final = duality.gap_bound(self.problem, result.a, result.W, lam=result.lam, rigorous=True,
                                      max_seconds=opts.gap_seconds,
                                      seed=opts.seed)
            with self.engine.context():
                ev = self.problem.evaluate(result.a, result.W, lam=result.lam, with_gradient=False)
            final_terms = self._terms(result.a, result.W, float(result.lam), max(float(final.gap_upper), 0.0),
                                      float(final.reg_loss), loss=float(ev.loss), zeta_rigorous=final.rigorous)
        except KeyboardInterrupt:
            return self._interrupted(report)
        report.phase = self.phase
        report.final = {"loss": self.engine.to_str(ev.loss), "reg_loss": self.engine.to_str(ev.reg_loss),
                        "gap_upper": final.gap_upper, "gap_rigorous": final.rigorous,
                        "lambda": exact_decimal(result.lam), "gap": final.to_dict()}
        # the lambda the enclosures are about: the engine's binary number, written out exactly
        report.L_star_interval = {"lower": final.dual, "upper": final.reg_loss, "rigorous": final.rigorous,
                                  "lambda": exact_decimal(result.lam)}
        self.monitor.append(final_terms)
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
            # T1 says nothing about this run: neither "holds" nor a counterexample to it.
            forced = ", ".join(h.id for h in unmet)
            report.message = (f"run with --force although {forced} failed: T1 does not cover this run"
                              + (f" (as a plain run: {report.verdict}"
                                 + (f"; {report.message}" if report.message else "") + ")"))
            report.verdict = "outside-T1"
        return report

    def _interrupted(self, report: Report, where: str = "") -> Report:
        """The partial report of a Ctrl-C in the current phase; the checkpoint is written first."""
        report.verdict = "interrupted"
        report.phase = self.phase
        report.hypotheses = self.hypothesis_list()
        report.constants.update(self.constants)
        if self.cert is not None:
            report.certificate = self.cert.to_dict()
        ckpt = self.options.checkpoint
        try:
            self._save_checkpoint("interrupted")
        except KeyboardInterrupt:  # a second Ctrl-C during the atomic write: the previous file is intact
            pass
        report.message = (f"interrupted in phase {self.phase}{where}; partial result written"
                          + (f", resume with --resume --checkpoint {ckpt}" if ckpt else ""))
        return report

    def rigorous_for(self) -> str:
        """Which instance the rigorous enclosures are about (the engine's reading of the decimals)."""
        how = ("rounded to the nearest float64" if self.engine.name == "float64" else
               f"rounded to the mp working precision ({self.engine.describe()})")
        return (f"the instance as read by the engine: each decimal input {how}"
                + (", teacher rows then normalized in that arithmetic" if self.instance.normalize_teacher else "")
                + "; the Arb enclosures are exact for those numbers, not for the decimal strings themselves")

    def _hybrid(self) -> bool:
        """The descent runs as ``checker.dynamics.hybrid.run_hybrid`` (mp engine and hybrid on)."""
        return self.options.hybrid and self.engine.name != "float64"

    def _validate_gd(self, data: Any, source: str) -> None:
        from checker.dynamics import gd, hybrid

        if self._hybrid():
            hybrid.validate_checkpoint(data, self.problem, source)
        else:
            gd.validate_checkpoint(data, self.problem, source)

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
        holds_c1 = result.max_increase <= tol
        detail_c1 = (f"{result.increases} step(s) increased L_lambda, the largest by {result.max_increase:.3g}; "
                     f"tolerance = 16 ulps of |L_lambda| + ||f*||^2")
        f64 = result.float64_phase
        if f64 is not None:  # a hybrid run: the float64 steps against float64's own rounding level
            tol64 = 16 * f64["rounding_scale"]
            holds_c1 = holds_c1 and f64["max_increase"] <= tol64
            detail_c1 = (f"hybrid run: {f64['steps']} float64 steps ({f64['increases']} increase(s), the largest "
                         f"{f64['max_increase']:.3g} <= {tol64:.3g}, 16 float64 ulps), then "
                         f"{result.steps - f64['steps']} steps in {eng.describe()}: " + detail_c1)
        out.append(Check("C1", "L_lambda decreases along GD (per step, up to rounding)",
                         holds_c1, f"{result.max_increase:.3g}", f"{tol:.3g}", detail_c1))
        # C2: the gap goes to zero at the final lambda.
        gaps = [(r.step, r.gap) for r in result.history if r.gap is not None and r.gap > 0
                and r.lam == float(result.lam)]
        slope = _fit_slope([s for s, _ in gaps[-20:]], [math.log(g) for _, g in gaps[-20:]])
        rate = math.exp(slope) if slope is not None else None
        measured["gap_rate_per_step"] = rate
        g_final = float(final.gap_upper)
        target = self.options.gap_target
        # exact comparison of the decimal upper bound (rounded up) with the float bound
        if target is not None:
            holds: bool | None = decimal_at_most(final.gap_upper, target)
            bound = f"{target:.3g}"
        else:
            holds = decimal_at_most(final.gap_upper,
                                    max(1e-3 * float(self.gap0.gap_upper), 1e3 * eng.eps * max(scale, 1.0)))
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
        out.extend(self._descent_conclusions(result, measured))
        return out, measured

    def _descent_conclusions(self, result: Any, measured: dict[str, Any]) -> list[Check]:
        """C6 (descent direction) and C7 (gradient domination) from the monitored ratios.

        Measured constants of this checker, not the paper's: the smallest ratio seen along the run.
        A point enters only when the construction of D applies (every teacher covered) and zeta is
        above ZETA_FLOOR_ULPS ulps of |L_lambda| + ||f*||^2 (``checker.geometry.descent``).
        """
        from checker.geometry import descent
        from checker.geometry.smoothness import hessian_norm_estimate

        rows = [m for m in self.monitor if "c_D_ratio" in m or "descent_excluded" in m]
        cd = [m["c_D_ratio"] for m in rows if m.get("c_D_ratio") is not None]
        cpl = [m["c_PL_ratio"] for m in rows if m.get("c_PL_ratio") is not None]
        reasons = sorted({m["descent_excluded"].split(" ")[0] == "zeta" and "zeta at the rounding floor"
                          or m["descent_excluded"] for m in rows if m.get("descent_excluded")})
        excluded = f"{len(rows) - len(cd)} point(s) excluded ({'; '.join(reasons)})" if len(rows) > len(cd) else \
            "no point excluded"
        rule = (f"points with zeta <= {descent.ZETA_FLOOR_ULPS} ulps of |L_lambda| + ||f*||^2 are excluded "
                "(both sides at rounding level)")
        c_D = min(cd) if cd else None
        c_PL = min(cpl) if cpl else None
        measured["c_D"], measured["c_PL"] = c_D, c_PL
        measured["c_D_points"], measured["c_PL_points"] = len(cd), len(cpl)
        zs = descent.zeta_summary(rows)  # which zeta (rigorous bound or estimate) the ratios divide by
        measured["c_D_zeta"], measured["c_PL_zeta"], excluded = zs["c_D"], zs["c_PL"], f"{zs['text']}; {excluded}"
        reduced = {lam: r for lam, r in self._descent_state()["reduced"].items() if not isinstance(r, str)}
        if reduced:
            lam_f = min(reduced)
            r = reduced[lam_f]
            measured["reduced_optimum"] = {"lambda": lam_f, "signed_mass": r.signed_mass,
                                           "angle_to_teacher": r.angle_to_teacher,
                                           "min_hessian_eig": r.min_hessian_eig, "converged": r.converged}
        out: list[Check] = []
        neg = ("a non-positive value means that at some monitored point the gradient does not point along "
               "D = theta - theta-hat by a positive multiple of the gap: the reconstructed direction is not "
               "a descent direction there (against this checker's construction, not a disproof of the paper)")
        out.append(Check(
            "C6", "descent direction: <grad L_lambda(theta), D> >= c_D zeta(theta) with c_D > 0 along the run "
            "(c_D measured by this checker)",
            (c_D > 0) if c_D is not None else None, _fmt(c_D), "> 0",
            (f"smallest ratio over {len(cd)} monitored points; {excluded}; {rule}; " + neg) if cd else
            f"undetermined: no monitored point qualifies ({excluded}; {rule})"))
        # The rate gradient domination implies at the final lambda, next to the C2 fit.
        lam_final = float(result.lam)
        final_cpl = [m["c_PL_ratio"] for m in rows if m.get("c_PL_ratio") is not None and m["lam"] == lam_final]
        eta = float(self.instance.eta)
        betas = [hessian_norm_estimate(self.instance, seed=self.options.seed)]
        try:
            end = self.instance.replace(student_a=[repr(float(x)) for x in result.a],
                                        student_W=[[repr(float(x)) for x in row] for row in result.W],
                                        lam=repr(lam_final))
            betas.append(hessian_norm_estimate(end, seed=self.options.seed))
        except CheckerError:
            pass
        beta = max(betas)
        c_final = min(final_cpl) if final_cpl else None
        implied = descent.implied_rate(c_final, eta, beta) if c_final is not None else None
        observed = measured.get("gap_rate_per_step")
        measured["c_PL_final_lambda"] = c_final
        measured["beta_max_estimate"] = beta
        measured["implied_rate_per_step"] = implied
        measured["observed_rate_per_step"] = observed
        consistent = (implied is not None and observed is not None and observed <= implied * (1 + 1e-9))
        measured["implied_rate_bounds_observed"] = consistent if implied is not None and observed is not None else None
        rate_text = (f"implied rate 1 - eta c_PL (1 - eta beta/2) = {_fmt(implied)} per step (eta = {eta:.4g}, "
                     f"c_PL = {_fmt(c_final)} at the final lambda, beta = {beta:.4g}, the larger Hessian-norm "
                     f"estimate at the start and the end) vs observed {_fmt(observed)} (C2 fit)"
                     + ("; the implied rate bounds the observed one" if consistent else
                        "; the implied rate does NOT bound the observed one (beta or c_PL is only an estimate "
                        "between monitored points)" if implied is not None and observed is not None else ""))
        out.append(Check(
            "C7", "gradient domination: ||grad L_lambda(theta)||^2 >= c_PL zeta(theta) with c_PL > 0 along the run "
            "(c_PL measured by this checker)",
            (c_PL > 0) if c_PL is not None else None, _fmt(c_PL), "> 0",
            (f"smallest ratio over {len(cpl)} monitored points; {excluded}; {rate_text}; a non-positive value "
             "means a monitored point with a positive gap and a vanishing gradient (a stationary point "
             "above the optimum)") if cpl else
            f"undetermined: no monitored point qualifies ({excluded}; {rule})"))
        return out

    def _stage_ends(self) -> list[dict[str, Any]]:
        """The last monitored point of each lambda (stage ends of the schedule)."""
        ends: dict[float, dict[str, Any]] = {}
        for m in self.monitor:
            ends[m["lam"]] = m
        return [ends[k] for k in sorted(ends, reverse=True)]


def check_theorem1(instance: Any, **options: Any) -> Report:
    """T1 on ``instance`` (a ``checker.core.model.Instance``) as data: the ``Report`` of
    ``python -m checker.theorem1`` without the printing.

    ``options`` are the fields of ``Options`` (engine, dps, schedule, steps, eta, gap_target,
    time_budget, radius, threshold, seed, force, checkpoint, resume, progress, hybrid).
    """
    check = TheoremCheck(RunFile(instance, {}, "", instance.name or "instance"), Options(**options))
    return check.run()
