"""`trainsim calibrate`: fit the few efficiency parameters of each hardware family to measured runs, and write
them as a new calibration overlay file (never the shipped profiles or overlays)."""
from __future__ import annotations

import argparse
import datetime
import os

from . import common


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="fit each family's efficiency parameters to measured runs (and write a new overlay file)",
        description="Weighted robust least squares of log(predicted/measured) over the time/rate rows of the "
                    "given runs files, per hardware family, for the parameters listed in "
                    "simulator.calibration.FAMILY_FITS, starting from the sourced profiles. A family is fitted "
                    "only when its rows support it: at least 5 rows per parameter and rows from at least 2 "
                    "sources; a value that ends on its physical bound is reported. --loso refits without each "
                    "source in turn (leave-one-source-out: the error on the source left out and the spread of every "
                    "parameter); --out writes the fit as a new overlay file (see hardware_profiles/README.md).")
    p.add_argument("files", nargs="+", metavar="FILE.csv", help="runs files (published schema and/or vTrain CSVs)")
    p.add_argument("--family", action="append", help="only this family (repeatable); default: every fitted family")
    p.add_argument("--loso", action="store_true", help="also report leave-one-source-out errors")
    p.add_argument("--out", dest="overlay_out", metavar="FILE.yaml",
                   help="write the fit as a new overlay file; with several families the name must contain "
                        "{family}. Never a shipped profile or overlay; an existing file only with --force")
    p.add_argument("--force", action="store_true", help="let --out replace an existing (non-shipped) file")
    p.add_argument("--frameworks", action="store_true",
                   help="fit the framework efficiencies instead (simulator/calibration/frameworks.py): one kernel-"
                        "throughput efficiency per non-reference framework preset, across the calibrated families, on "
                        "top of the shipped family overlays; a preset needs rows from >= 2 sources. --out "
                        "writes the framework overlay (ship it as hardware_profiles/calibration/frameworks.yaml)")
    p.add_argument("--max-nfev", type=common.positive_int, default=60, help="optimiser evaluations per fit")
    p.add_argument("--max-rows-per-source", type=common.positive_int, default=150,
                   help="a source with more rows is fitted on this many, evenly spaced (every source weighs the same "
                        "whatever its rows; this only bounds the time of a fit). Default 150")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "frameworks", False):
        return _run_frameworks(args)
    results = calibrate(args.files, families=args.family, loso=args.loso, out=args.overlay_out, force=args.force,
                        max_nfev=args.max_nfev, max_rows_per_source=args.max_rows_per_source)
    if not results["families"]:
        from ..errors import SpecError
        raise SpecError("nothing fitted: " + "; ".join(results["notes"] or ["no rows"]))
    if args.format == "json":
        common.print_json(results)
    else:
        from ..reports.calibration_tables import calibration_renderable
        common.stdout().print(calibration_renderable(results))
    return 0


def _out_path(out: str, family: str, force: bool) -> str:
    """The file --out names for `family`, refused when it is shipped, exists (without --force) or cannot be
    written."""
    from ..errors import SpecError
    from ..specs.loading import profiles_dir

    path = out.replace("{family}", family)
    if not path.lower().endswith((".yaml", ".yml")):
        raise SpecError(f"--out {path!r}: the name must end in .yaml")
    shipped = os.path.realpath(str(profiles_dir()))
    real = os.path.realpath(path)
    if real == shipped or real.startswith(shipped + os.sep):
        raise SpecError(f"--out {path!r} is inside the shipped profiles folder; write elsewhere, review the file, "
                        "then copy it there by hand")
    if os.path.isdir(path):
        raise SpecError(f"--out {path!r} is a folder; give a file name")
    if os.path.exists(path) and not force:
        raise SpecError(f"--out {path!r} exists; choose a new name or add --force to replace it")
    if not os.path.isdir(os.path.dirname(path) or "."):
        raise SpecError(f"--out {path!r}: the folder does not exist")
    return path


def calibrate(files, families=None, loso=False, out=None, force=False, max_nfev=60,
              max_rows_per_source=150) -> dict:
    """Fit every configured family present in the files that its rows support (calibration.fit_families, pure)
    and write the overlay files `out` names (the only file writes of calibration). Notes are about the given
    files only."""
    from ..calibration import fit_families

    if out:                                      # refuse bad names before minutes of fitting
        for fam in families or ["family"]:
            _out_path(out, fam, force)
    cmd = "trainsim calibrate " + " ".join(os.path.basename(str(f)) for f in files) + (" --loso" if loso else "")
    res = fit_families(files, families=families, loso=loso, max_nfev=max_nfev,
                       max_rows_per_source=max_rows_per_source,
                       overlay_date=datetime.date.today().isoformat() if out else None, command=cmd)
    if out and len(res["families"]) > 1 and "{family}" not in out:
        from ..errors import SpecError
        raise SpecError(f"--out {out!r}: several families were fitted; put {{family}} in the name")
    for fam, entry in res["families"].items():
        doc = entry.pop("overlay", None)
        if out and doc is not None:
            from ..calibration.overlays import overlay_text
            path = _out_path(out, fam, force)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(overlay_text(doc))
            entry["written"] = path
    return res


def calibrate_frameworks(files, loso=False, out=None, force=False, max_nfev=30) -> dict:
    """Fit the framework efficiencies (calibration.frameworks.fit_frameworks) on the time/rate rows of the given
    files in calibrated families, each row on its family's shipped calibration, and write the overlay `out` names."""
    from ..calibration import FAMILY_FITS
    from ..calibration.fit import load_fitsets
    from ..calibration.frameworks import (fit_frameworks, framework_overlay_document, framework_overlay_text)
    from ..specs.overlay import framework_efficiencies

    if out:
        _out_path(out, "frameworks", force)
    with framework_efficiencies({}):                       # loading does not depend on it; the fit sets its own
        cases = [c for fs in load_fitsets(files).values() for c in fs.cases]
    res = fit_frameworks(cases, hardware_of=lambda c: c.hardware, calibrated_families=[f.family for f in FAMILY_FITS],
                         loso=loso, max_nfev=max_nfev)
    for name, f in res["fits"].items():
        f["warnings"] = ([f"{name} = {f['value']:.4g} sits on its bound: the rows ask for physics the model lacks; "
                          "the value is not a measurement"] if f["at_bound"] else [])
    if out and res["fits"]:
        cmd = "trainsim calibrate " + " ".join(os.path.basename(str(f)) for f in files) + " --frameworks" + (
            " --loso" if loso else "")
        doc = framework_overlay_document(res, datetime.date.today().isoformat(), command=cmd)
        path = _out_path(out, "frameworks", force)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(framework_overlay_text(doc))
        res["written"] = path
    return res


def _run_frameworks(args) -> int:
    res = calibrate_frameworks(args.files, loso=args.loso, out=args.overlay_out, force=args.force,
                               max_nfev=min(args.max_nfev, 30))
    if not res["fits"]:
        from ..errors import SpecError
        raise SpecError("no framework efficiency fitted: " + "; ".join(f"{k}: {v}" for k, v in res["refused"].items())
                        or "no non-reference framework rows in calibrated families")
    if args.format == "json":
        common.print_json(res)
        return 0
    out = common.stdout()
    for name, f in res["fits"].items():
        line = (f"{name}: efficiency {f['value']:.3f} on {f['rows']} rows from {len(f['sources'])} sources; MAPE "
                f"{f['before']['mape_pct']:.1f}% -> {f['after']['mape_pct']:.1f}%")
        if f.get("loso"):
            line += f"; leave-one-source-out {min(f['loso'].values()):.3f}-{max(f['loso'].values()):.3f}"
        out.print(line)
        for w in f["warnings"]:
            out.print(f"  warning: {w}")
    for name, why in res["refused"].items():
        out.print(f"{name}: not fitted: {why}")
    if res.get("written"):
        out.print(f"wrote {res['written']}")
    return 0
