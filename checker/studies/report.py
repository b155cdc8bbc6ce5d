"""The sweep's report as markdown text: the library of ``python -m checker.report`` (the command is
``checker.commands.report``, which also draws the figures).

Regenerates a markdown report from a results file of ``checker.sweep``: the
measured constants per point, the empirical thresholds per family, and for each
axis of the grid a log-log fit of every quantity against that axis (slope, its
standard error, a 95% t-interval, the number of points), with matplotlib
figures.  The text depends on the results file only (no clock, no machine), so
the same results give the same report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from .scaling import AXES, QUANTITIES, loglog_fit

AXIS_LABEL = {"lam": "lambda", "delta": "Delta", "m_star": "m*", "d": "d", "a_min": "a_min"}
QUANTITY_LABEL = {
    "rho": "rho (certificate, near)", "rho_far": "rho' (certificate, far)", "p_norm": "‖p*‖",
    "eps_0": "eps_0 (checker's threshold)", "lambda_max": "lambda_max (checker's)",
    "conv_rate": "convergence rate (per unit time)", "C3_worst_ratio": "worst C3 ratio",
    "C4_worst_ratio": "worst C4 ratio", "angle_over_lambda": "max angle at the optimum / lambda",
    "loss_over_lambda2": "loss at the optimum / lambda^2",
}
PAPER_CLAIM = ("The paper states that its loss threshold and constants depend polynomially on the problem's "
               "parameters; the exponents are not known here. A slope below is a local log-log slope over the "
               "stated range on this checker's instance family, not the paper's exponent, and an interval that "
               "contains 0 means no dependence was resolved.")


def _f(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if isinstance(x, float) and not math.isfinite(x):
            return "—"
        return f"{x:.{digits}g}"
    return str(x)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join((_f(c) if not isinstance(c, str) else c).replace("|", "\\|") for c in r) + " |"
            for r in rows]
    return out


def _family_lo(key: str) -> float | None:
    from .families import FAMILIES, family

    name = key.split("@")[0]
    return family(name).lo if name in FAMILIES else None


def _t1_at_point(rec: Mapping[str, Any]) -> bool | None:
    hyps = (rec.get("result") or {}).get("hypotheses") or {}
    return all(hyps.get(h) is True for h in ("H1", "H2", "H3")) if hyps else None


def threshold_view(rec: Mapping[str, Any], key: str, t: Mapping[str, Any]) -> dict[str, Any]:
    """One stored threshold search read under the current rules (``checker.studies.threshold``).

    * T1 at the reference: the search's own ``t1_at_reference``, or for records that predate it the
      point's H1-H3 (its constants run, from the generated start that the reference ends);
    * a bracket whose failing end only failed C1 while reaching the gap target (records that predate
      the ``non-monotone`` outcome) is non-monotone, not a failure to converge: status "non-monotone",
      no upper end, and that start's gap counts as converging;
    * the ratio to eps_0 only where T1 applies at the reference, eps_0 > 0 and the lower end is not
      the unperturbed reference start; else the reason in ``ratio_note``.
    """
    status = str(t.get("status"))
    g = dict(t.get("threshold_gap") or {})
    size = dict(t.get("threshold_size") or {})
    failure = dict(t.get("failure") or {})
    non_mono = dict(t.get("non_monotone") or {})
    target = (rec.get("measure") or {}).get("trial_gap_target")
    if "non_monotone" not in t and status == "bracketed" and failure.get("conclusions_failed") == ["C1"] \
            and isinstance(failure.get("final_gap"), (int, float)) and target is not None \
            and failure["final_gap"] <= target:
        non_mono = {"size": failure.get("size", size.get("upper")), "gap0": failure.get("gap0", g.get("upper")),
                    "detail": failure.get("diagnosis") or [], "hypotheses_unmet": failure.get("hypotheses_unmet")}
        status = "non-monotone"
        lows = [x for x in (g.get("lower"), non_mono["gap0"]) if isinstance(x, (int, float))]
        g = {"lower": max(lows) if lows else None, "upper": None}
        size = {"lower": non_mono["size"], "upper": None}
        lo_ = dict(t.get("threshold_loss") or {})
        lows = [x for x in (lo_.get("lower"), lo_.get("upper")) if isinstance(x, (int, float))]
        loss = {"lower": max(lows) if lows else None, "upper": None}
        failure = {}
    else:
        loss = dict(t.get("threshold_loss") or {})
    t1 = t.get("t1_at_reference") if "t1_at_reference" in t else _t1_at_point(rec)
    flo = _family_lo(key)
    lower_is_ref = bool(t.get("lower_is_reference")) or (
        status == "bracketed" and flo is not None and size.get("lower") == flo)
    eps0 = t.get("eps0_checker")
    lo = g.get("lower")
    if not isinstance(lo, (int, float)):
        ratio, why = None, "—"
    elif t1 is not True:
        ratio, why = None, "outside T1"
    elif lower_is_ref:
        ratio, why = None, "lower end is the reference"
    elif not isinstance(eps0, (int, float)) or eps0 <= 0:
        ratio, why = None, "eps_0 <= 0"
    else:
        ratio, why = lo / eps0, ""
    return {"status": status, "gap": g, "size": size, "loss": loss, "failure": failure, "non_monotone": non_mono, "t1": t1,
            "lower_is_reference": lower_is_ref, "ratio": ratio, "ratio_note": why, "eps0": eps0,
            "step": t.get("step", "instance"), "counterexample": bool(t.get("counterexample"))}


def threshold_ends(t: Mapping[str, Any], rec: Mapping[str, Any] | None = None, key: str = ""
                   ) -> tuple[float | None, float | None]:
    """(largest gap seen to converge, smallest seen to fail to converge) of a bracketed threshold whose
    lower end is not the reference start, else (None, None)."""
    v = threshold_view(rec or {}, key, t)
    lo, hi = v["gap"].get("lower"), v["gap"].get("upper")
    if v["status"] != "bracketed" or v["lower_is_reference"] or not lo or not hi or lo <= 0 or hi <= 0:
        return None, None
    return lo, hi


def threshold_summary(thr: Sequence[tuple[Mapping[str, Any], str, Mapping[str, Any]]]) -> list[str]:
    """Per family (and step policy): how far the checker's eps_0 is inside the measured basin."""
    rows = []
    for fam in sorted({f for _, f, _ in thr}):
        vs = [threshold_view(r, f, t) for r, f, t in thr if f == fam]
        status = ", ".join(f"{k} {sum(1 for v in vs if v['status'] == k)}"
                           for k in sorted({v["status"] for v in vs}))
        inside = [v for v in vs if v["t1"] is True]
        conv = [v["ratio"] for v in inside if v["ratio"] is not None]
        fail = [v["gap"]["upper"] / v["eps0"] for v in inside
                if v["status"] == "bracketed" and isinstance(v["eps0"], (int, float)) and v["eps0"] > 0
                and v["gap"].get("upper")]
        h3 = sum(1 for v in vs if "H3" in (v["failure"].get("hypotheses_unmet") or []))
        nfail = sum(1 for v in vs if v["failure"])
        rows.append([fam, vs[0]["step"], str(len(vs)), f"{len(inside)} of {len(vs)}", status,
                     f"[{min(conv):.3g}, {max(conv):.3g}]" if conv else "—",
                     f"[{min(fail):.3g}, {max(fail):.3g}]" if fail else "—",
                     str(sum(1 for v in vs if v["status"] == "non-monotone" or v["non_monotone"])),
                     f"{h3} of {nfail}" if nfail else "—",
                     str(sum(1 for v in vs if v["counterexample"]))])
    return (["### How far eps_0 is inside the measured basin", "",
             "Per family, over the points where T1 applies (H1-H3 hold at the reference; the others are outside "
             "T1 and have no ratio, nor do points where eps_0 <= 0 or where the bracket's lower end is the "
             "unperturbed reference start): the largest initial gap seen to converge over eps_0 (a lower bound "
             "of the basin's extent along that family, in units of eps_0; starts in other directions may fail "
             "sooner) and the smallest gap seen to fail to converge over eps_0 "
             "(bracketed points only). Non-monotone: searches where GD reached the gap target with L_lambda "
             "rising on some steps (C1) from some start; that is a limit of the step, not the end of the basin, "
             "and is not a failure. Failures with H3 unmet: failing starts where the step is too large.", ""]
            + _table(["family", "step", "points", "T1 applies", "status", "largest converging gap / eps_0",
                      "smallest failing gap / eps_0", "non-monotone", "failures with H3 unmet",
                      "counterexamples"], rows)
            + [""])


def _quantities(rec: Mapping[str, Any]) -> dict[str, float | None]:
    res = rec.get("result") or {}
    q = {k: (res.get("constants") or {}).get(k) for k in QUANTITIES}
    for fam, t in (res.get("threshold") or {}).items():
        q[f"threshold_{fam}_converged"], q[f"threshold_{fam}_failed"] = threshold_ends(t, rec, fam)
    return q


def _axis_points(records: list[Mapping[str, Any]], axis: str) -> list[Mapping[str, Any]]:
    pts = [r for r in records if axis in (r.get("axes") or []) and r.get("result")]
    return sorted(pts, key=lambda r: r["spec"][axis])


def fits(records: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every (axis, quantity) log-log fit over the points of that axis."""
    out = []
    for axis in AXES:
        pts = _axis_points(records, axis)
        if len({r["spec"][axis] for r in pts}) < 2:
            continue
        names = sorted({k for r in pts for k in _quantities(r)}, key=lambda k: (k.startswith("threshold"), k))
        for name in names:
            xs = [float(r["spec"][axis]) for r in pts]
            ys = [_quantities(r).get(name) for r in pts]
            fit = loglog_fit(xs, [y if isinstance(y, (int, float)) else None for y in ys])
            if name.startswith("threshold_") and fit.n >= 2:
                fam = name[len("threshold_"):].rsplit("_", 1)[0]
                sizes = {json.dumps(((r["result"].get("threshold") or {}).get(fam) or {}).get("threshold_size"),
                                    sort_keys=True) for r in pts}
                if len(sizes) == 1:
                    extra = ("the same size bracket at every point: the slope is that of the family's gap at "
                             "fixed size, not a change of the basin")
                    fit.note = f"{fit.note}; {extra}" if fit.note else extra
            out.append({"axis": axis, "quantity": name, "range": [min(xs), max(xs)], **fit.to_dict()})
    return out


def mixed_settings(records: Sequence[Mapping[str, Any]]) -> str:
    """What is mixed in a results file holding several sweeps' points (concatenated files), or ""."""
    settings = {json.dumps(r.get("measure"), sort_keys=True) for r in records}
    specs = [json.dumps(r.get("spec"), sort_keys=True) for r in records]
    twice = len(specs) - len(set(specs))
    parts = []
    if len(settings) > 1:
        parts.append(f"the results mix {len(settings)} different measure settings")
    if twice:
        parts.append(f"{twice} point(s) appear more than once (same parameters, other settings): fits may "
                     "have two points at the same x")
    return "; ".join(parts)


def render(records: list[Mapping[str, Any]], *, source: str, figures: list[Path] | None = None,
           out_path: Path | None = None, grid: str | None = None, note: str | None = None) -> str:
    """The markdown text of the report."""
    ok = [r for r in records if r.get("result")]
    bad = [r for r in records if not r.get("result")]
    L: list[str] = ["# Threshold and constants: sweep report", ""]
    regen_grid = grid or "GRID.json"
    L += [f"Generated by `python -m checker.report` from `{source}` ({len(records)} point(s), "
          f"{len(bad)} with an error).", "",
          "Regenerate (sweep, then report):", "", "```bash",
          f"python -m checker.sweep {regen_grid} --out {source}",
          f"python -m checker.report {source} --out {out_path or 'REPORT.md'}"
          + (f" --figures {figures[0].parent}" if figures else "") + (f" --grid {grid}" if grid else ""),
          "```", ""]
    if note:
        L += [note.strip(), ""]
    mixed = mixed_settings(records)
    if mixed:
        L += [f"**Warning: {mixed}.**", ""]
    secs = [float((r.get("result") or {}).get("seconds") or 0) for r in records]
    execs = sorted({str(r.get("executor")) for r in records})
    L += [f"Measurement time summed over points: {sum(secs):.0f} s (executor: {', '.join(execs)}).", ""]
    L += ["All constants are this checker's measurements on its generated instance family "
          "(`checker/studies/scaling.py`), not the paper's constants; eps_0 and lambda_max are the operational "
          "thresholds of `checker.theorem1`. Gaps are upper bounds from the duality bound.", ""]
    L += ["## Measured constants per point", ""]
    head = (["lambda", "Delta", "m*", "d", "a_min"] + [QUANTITY_LABEL[q] for q in QUANTITIES]
            + ["H1-H3 hold", "C2 holds", "s"])
    rows = []
    for r in sorted(ok, key=lambda r: tuple(r["spec"][a] for a in AXES)):
        res = r["result"]
        c = res.get("constants") or {}
        hyps = res.get("hypotheses") or {}
        unmet = [k for k, v in sorted(hyps.items()) if v is False and k != "H4"]
        rows.append([r["spec"][a] for a in AXES] + [c.get(q) for q in QUANTITIES]
                    + [("no: " + ", ".join(unmet)) if unmet else ("yes" if hyps else "—"),
                       (res.get("conclusions") or {}).get("C2"), res.get("seconds")])
    L += _table(head, rows) + [""]
    thr = [(r, fam, t) for r in ok for fam, t in sorted(((r["result"].get("threshold") or {}).items()))]
    if thr:
        L += ["## Empirical thresholds", "",
              "Largest initial gap seen to converge and smallest seen to fail to converge (bisection on the "
              "family's size; `nothing-fails`: no failure within the family's range, the lower end is then a lower "
              "bound of the threshold along that family only, and starts in other directions may fail sooner; "
              "`non-monotone`: GD reached the gap target from every start tried, but from the size in "
              "\"non-monotone from\" on L_lambda rose on some steps (C1): a limit of the step, not the end of the "
              "basin, so no upper end). A ratio to eps_0 is given only where T1 applies at the reference (H1-H3 "
              "hold; else \"outside T1\") and the lower end is not the unperturbed reference start. Records written "
              "before these rules are read under them: a failing end that only failed C1 while reaching the gap "
              "target is non-monotone, and T1 at the reference is the point's H1-H3. "
              "Step: `instance` runs every trial with the reference instance's eta; `safe` with "
              "min(eta, 1/beta_0), beta_0 the smoothness at the trial's own start, so that a failure is not "
              "the step's (`checker.studies.threshold.safe_eta`).",
              ""]
        rows = []
        for r, fam, t in thr:
            v = threshold_view(r, fam, t)
            g, lo, sz, fail, nm = v["gap"], v["loss"], v["size"], v["failure"], v["non_monotone"]
            rows.append([_f(r["spec"]["lam"]), _f(r["spec"]["delta"]), str(r["spec"]["m_star"]),
                         str(r["spec"]["d"]), _f(r["spec"]["a_min"]), fam, v["step"], v["status"],
                         sz.get("lower"), sz.get("upper"),
                         g.get("lower"), g.get("upper"), lo.get("lower"), lo.get("upper"), v["eps0"],
                         {True: "yes", False: "no"}.get(v["t1"], "—"),
                         v["ratio"] if v["ratio"] is not None else v["ratio_note"],
                         (f"s = {_f(nm.get('size'))}, gap {_f(nm.get('gap0'))}" if nm else "—"),
                         "**YES**" if v["counterexample"] else "no",
                         "; ".join(fail.get("diagnosis") or fail.get("conclusions_failed") or []) or "—"])
        L += _table(["lambda", "Delta", "m*", "d", "a_min", "family", "step", "status", "size conv.", "size fail",
                     "gap conv.", "gap fail",
                     "loss conv.", "loss fail", "eps_0", "T1 at reference", "gap conv. / eps_0",
                     "non-monotone from", "counterexample", "failure"],
                    rows) + [""]
        L += threshold_summary(thr)
        if any(t.get("counterexample") for _, _, t in thr):
            L += ["**A failing start at or below the checker's eps_0 with H1-H3 holding was found: a counterexample "
                  "to T1 as this project formalizes it.**", ""]
    L += ["## Log-log fits", "", PAPER_CLAIM, "",
          "Fit: least squares of log y on log x over the points of one axis (the others at the base values); "
          "standard error from the residuals with n - 2 degrees of freedom; 95% two-sided t-interval (quantile "
          "from the regularized incomplete beta function in mpmath). n = 2 gives a slope without an interval. "
          "A threshold enters a fit only when bracketed, each end separately: `threshold_F_converged` is the "
          "largest initial gap seen to converge along family F, `threshold_F_failed` the smallest seen to fail "
          "to converge; a bracket whose lower end is the reference start itself (size at the family's lower end) "
          "does not enter. dof: the degrees of freedom n - 2 of the interval; fits with 1 or 2 (3 or 4 points) "
          "are marked **few points**: their intervals are wide and rest on the normality of very few "
          "residuals.", ""]
    rows = []
    unfit = set()
    for f in fits(ok):
        if f["quantity"].startswith("threshold_") and f["n"] < 2:
            unfit.add(AXIS_LABEL[f["axis"]])  # no bracket on this axis: nothing to fit (see the summary)
            continue
        dof = f["n"] - 2
        ci = "—" if f["ci_low"] is None else f"[{f['ci_low']:.3g}, {f['ci_high']:.3g}] (dof {dof})"
        note = f["note"] or ""
        if f["ci_low"] is not None and dof <= 2:
            note = f"**few points** (dof {dof})" + (f"; {note}" if note else "")
        rows.append([AXIS_LABEL[f["axis"]], QUANTITY_LABEL.get(f["quantity"], f["quantity"]),
                     f"[{f['range'][0]:.3g}, {f['range'][1]:.3g}]", str(f["n"]), str(max(dof, 0)), f["slope"],
                     f["stderr"], ci, note])
    L += _table(["axis", "quantity", "range", "n", "dof", "slope", "std. error", "95% interval", "note"],
                rows) + [""]
    if unfit:
        L += ["Threshold fits with fewer than 2 bracketed points on an axis are left out (the family found "
              "nothing failing there, or too few points: see the summary of thresholds above); axes concerned: "
              + ", ".join(sorted(unfit)) + ".", ""]
    if figures:
        L += ["## Figures", ""]
        base = out_path.parent if out_path is not None else Path(".")
        for p in figures:
            try:
                rel = Path(p).resolve().relative_to(base.resolve())
            except ValueError:
                rel = Path(p)
            L += [f"![{p.stem}]({rel.as_posix()})", ""]
    if bad:
        L += ["## Points with an error", ""]
        L += [f"- `{r['key']}` {r['spec']}: {r.get('error')}" for r in bad] + [""]
    return "\n".join(L)
