"""Regenerate docs/degenerate-certificate.png and docs/degenerate-certificate.json.

    PYTHONPATH=. python docs/degenerate_certificate_figure.py            # the teacher of the page (minutes)
    PYTHONPATH=. python docs/degenerate_certificate_figure.py --lambdas 0.004 0.002 0.001 --seconds 60

The data come from ``checker.studies.degenerate.degenerate_study`` (float64 estimates); this script
only draws them: left, eta on the great circle through the peak of |eta| and the nearest teacher;
right, the total mass of the extra atoms of the lambda-optimum against lambda (log-log), with the fit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from checker.core.io import write_json_atomic
from checker.studies.degenerate import KKT_CONVERGED, degenerate_study, fit_extra_mass

#: Three relu teachers in d = 6, output signs (+, +, -), pairwise angles 84, 73 and 58 degrees
#: (the degenerate teacher of tests/test_certificate_span.py).
TEACHER_A = [1.0, 1.0, -0.7]
TEACHER_W = [[-0.76735774, -0.27670466, 0.3261005, -0.45079659, 0.12588446, -0.0958678],
             [-0.33036052, -0.04856187, -0.62824791, 0.15031039, 0.43568109, -0.53046868],
             [-0.25380271, 0.45254852, 0.13872234, -0.12353834, 0.54066675, -0.6355768]]


def draw(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    th = np.degrees(data["circle_theta"])
    ax1.plot(th, data["circle_eta"], lw=1.5, label="eta on the great circle")
    for y in (1, -1):
        ax1.axhline(y, color="grey", lw=0.8, ls="--")
    ax1.axvline(0, color="C3", lw=0.8)
    ax1.annotate(f"peak |eta| = {data['peak']['value']:.4f}", (0, data["circle_eta"][len(th) // 2]),
                 textcoords="offset points", xytext=(8, -14), color="C3")
    tk = math.degrees(data["circle_teacher_theta"])
    ax1.axvline(tk, color="C2", lw=0.8)
    ax1.annotate(f"teacher {data['circle_teacher']}", (tk, 0), textcoords="offset points", xytext=(4, 4), color="C2")
    ax1.set_xlabel("angle along the circle from the peak (degrees)")
    ax1.set_ylabel("eta")
    ax1.set_title("vanishing-derivative pre-certificate")
    runs = [r for r in data["runs"] if r["extra_mass"] > 0]
    late = [r for r in runs if r["kkt_max_ratio"] > 1 + KKT_CONVERGED]
    if late:
        ax2.loglog([r["lambda"] for r in late], [r["extra_mass"] for r in late], "x", color="grey",
                   label="not converged (KKT ratio > 1 somewhere)")
    runs = [r for r in runs if r["kkt_max_ratio"] <= 1 + KKT_CONVERGED]
    if runs:
        lam = np.array([r["lambda"] for r in runs])
        mass = np.array([r["extra_mass"] for r in runs])
        ax2.loglog(lam, mass, "o", label="extra mass of the lambda-optimum")
        fit = data["fit"]
        if fit.get("exponent") is not None:
            xs = np.geomspace(lam.min(), lam.max(), 20)
            ax2.loglog(xs, fit["constant"] * xs ** fit["exponent"], "-",
                       label=f"fit: {fit['constant']:.3g} lambda^{fit['exponent']:.2f}")
        ax2.legend()
    none = [r["lambda"] for r in data["runs"] if r["extra_mass"] == 0]
    if not runs and late:
        ax2.legend()
    ax2.set_xlabel("lambda")
    ax2.set_ylabel("total mass of the extra atoms")
    ax2.set_title("extra atoms" + (f" (none at lambda = {', '.join(f'{x:g}' for x in none)})" if none else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.008, 0.004, 0.002, 0.001, 0.0005])
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget per lambda")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("degenerate-certificate"))
    ap.add_argument("--from-json", type=Path, help="only redraw from saved data")
    args = ap.parse_args(argv)
    if args.from_json is not None:
        data = json.loads(args.from_json.read_text())
        data["fit"] = fit_extra_mass(data["runs"])
        write_json_atomic(args.from_json, data)
    else:
        study = degenerate_study("relu", TEACHER_A, TEACHER_W, args.lambdas, seconds_per_lambda=args.seconds,
                                 say=lambda t: print(t, flush=True))
        data = study.to_dict()
        write_json_atomic(args.out.with_suffix(".json"), data)
    draw(data, args.out.with_suffix(".png"))
    for r in data["runs"]:
        print(f"lambda {r['lambda']:<8g} max KKT ratio {r['kkt_max_ratio']:.8f} extra mass {r['extra_mass']:.4g}  atoms "
              + "; ".join(f"sign {e['sign']:+d} mass {e['mass']:.3g} angle to peak {math.degrees(e['angle_to_peak']):.2f} deg"
                          for e in r["extra_atoms"]))
    print("fit:", data["fit"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
