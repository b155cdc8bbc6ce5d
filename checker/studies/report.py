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


def threshold_ends(t: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(largest gap seen to converge, smallest seen to fail) of a bracketed threshold, else (None, None)."""
    g = t.get("threshold_gap") or {}
    lo, hi = g.get("lower"), g.get("upper")
    if t.get("status") != "bracketed" or not lo or not hi or lo <= 0 or hi <= 0:
        return None, None
    return lo, hi


def threshold_summary(thr: Sequence[tuple[Mapping[str, Any], str, Mapping[str, Any]]]) -> list[str]:
    """Per family (and step policy): how far the checker's eps_0 is inside the measured basin."""
    rows = []
    for fam in sorted({f for _, f, _ in thr}):
        ts = [t for _, f, t in thr if f == fam]
        status = ", ".join(f"{k} {sum(1 for t in ts if t.get('status') == k)}"
                           for k in sorted({str(t.get("status")) for t in ts}))
        conv = [t["ratio_to_eps0"] for t in ts if isinstance(t.get("ratio_to_eps0"), (int, float))]
        fail = [((t.get("threshold_gap") or {}).get("upper") or 0) / t["eps0_checker"] for t in ts
                if t.get("status") == "bracketed" and (t.get("eps0_checker") or 0) > 0
                and (t.get("threshold_gap") or {}).get("upper")]
        h3 = sum(1 for t in ts if "H3" in ((t.get("failure") or {}).get("hypotheses_unmet") or []))
        nfail = sum(1 for t in ts if t.get("failure"))
        rows.append([fam, ts[0].get("step", "instance"), str(len(ts)), status,
                     f"[{min(conv):.3g}, {max(conv):.3g}]" if conv else "—",
                     f"[{min(fail):.3g}, {max(fail):.3g}]" if fail else "—",
                     f"{h3} of {nfail}" if nfail else "—",
                     str(sum(1 for t in ts if t.get("counterexample")))])
    return (["### How far eps_0 is inside the measured basin", "",
             "Per family, over the points where it was searched (points where eps_0 <= 0, i.e. lambda above the "
             "checker's lambda_max, have no ratio): the largest initial gap seen to converge over eps_0 (a lower "
             "bound of the basin's extent in units of eps_0), the smallest gap seen to fail over eps_0 "
             "(bracketed points only), and how many failing starts had H3 (the step) unmet.", ""]
            + _table(["family", "step", "points", "status", "largest converging gap / eps_0",
                      "smallest failing gap / eps_0", "failures with H3 unmet", "counterexamples"], rows)
            + [""])


def _quantities(rec: Mapping[str, Any]) -> dict[str, float | None]:
    res = rec.get("result") or {}
    q = {k: (res.get("constants") or {}).get(k) for k in QUANTITIES}
    for fam, t in (res.get("threshold") or {}).items():
        q[f"threshold_{fam}_converged"], q[f"threshold_{fam}_failed"] = threshold_ends(t)
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
          + (f" --figures {figures[0].parent}" if figures else ""), "```", ""]
    if note:
        L += [note.strip(), ""]
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
              "Largest initial gap seen to converge and smallest seen to fail (bisection on the family's size; "
              "`nothing-fails`: no failure within the family's range, the lower end is then a lower bound only). "
              "Step: `instance` runs every trial with the reference instance's eta; `safe` with "
              "min(eta, 1/beta_0), beta_0 the smoothness at the trial's own start, so that a failure is not "
              "the step's (`checker.studies.threshold.safe_eta`).",
              ""]
        rows = []
        for r, fam, t in thr:
            g, lo = t.get("threshold_gap") or {}, t.get("threshold_loss") or {}
            fail = t.get("failure") or {}
            sz = t.get("threshold_size") or {}
            rows.append([_f(r["spec"]["lam"]), _f(r["spec"]["delta"]), str(r["spec"]["m_star"]),
                         str(r["spec"]["d"]), _f(r["spec"]["a_min"]), fam, t.get("step", "instance"),
                         t.get("status", "—"),
                         sz.get("lower"), sz.get("upper"),
                         g.get("lower"), g.get("upper"), lo.get("lower"), lo.get("upper"), t.get("eps0_checker"),
                         t.get("ratio_to_eps0"), "**YES**" if t.get("counterexample") else "no",
                         "; ".join(fail.get("diagnosis") or fail.get("conclusions_failed") or []) or "—"])
        L += _table(["lambda", "Delta", "m*", "d", "a_min", "family", "step", "status", "size conv.", "size fail",
                     "gap conv.", "gap fail",
                     "loss conv.", "loss fail", "eps_0", "gap conv. / eps_0", "counterexample", "failure"],
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
          "largest initial gap seen to converge along family F, `threshold_F_failed` the smallest seen to fail; "
          "when the bracket's lower end is the reference start itself (size at the family's lower end) the "
          "`converged` fit measures the reference, not the basin.", ""]
    rows = []
    unfit = set()
    for f in fits(ok):
        if f["quantity"].startswith("threshold_") and f["n"] < 2:
            unfit.add(AXIS_LABEL[f["axis"]])  # no bracket on this axis: nothing to fit (see the summary)
            continue
        ci = "—" if f["ci_low"] is None else f"[{f['ci_low']:.3g}, {f['ci_high']:.3g}]"
        rows.append([AXIS_LABEL[f["axis"]], QUANTITY_LABEL.get(f["quantity"], f["quantity"]),
                     f"[{f['range'][0]:.3g}, {f['range'][1]:.3g}]", str(f["n"]), f["slope"], f["stderr"], ci,
                     f["note"] or ""])
    L += _table(["axis", "quantity", "range", "n", "slope", "std. error", "95% interval", "note"], rows) + [""]
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
