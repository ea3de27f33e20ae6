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
    p.add_argument("--max-nfev", type=common.positive_int, default=60, help="optimiser evaluations per fit")
    p.add_argument("--max-rows-per-source", type=common.positive_int, default=150,
                   help="a source with more rows is fitted on this many, evenly spaced (every source weighs the same "
                        "whatever its rows; this only bounds the time of a fit). Default 150")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    results = calibrate(args.files, families=args.family, loso=args.loso, out=args.overlay_out, force=args.force,
                        max_nfev=args.max_nfev, max_rows_per_source=args.max_rows_per_source)
    if not results["families"]:
        from ..errors import SpecError
        raise SpecError("nothing fitted: " + "; ".join(results["notes"] or ["no rows"]))
    if args.format == "json":
        common.print_json(results)
    else:
        common.stdout().print(renderable(results))
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
    """Fit every configured family present in the files that its rows support; returns a JSON-able dict (and
    writes the overlay files `out` names). Notes are about the given files only."""
    from ..calibration import FAMILY_FITS, fit, leave_one_source_out, load_fitsets, source_stats
    from ..calibration.fit import at_bound, param_path, supported, thin_sources
    from ..calibration.overlays import overlay_document, overlay_text
    from ..errors import SpecError
    from ..specs.overlay import calibration_disabled

    with calibration_disabled():                          # fit from the sourced profiles, never on top of a fit
        fitsets = load_fitsets(files)
    configured = {ff.family: ff for ff in FAMILY_FITS}
    wanted = [f for f in (families or sorted(fitsets)) if f in fitsets or families]
    if out and len(wanted) > 1 and "{family}" not in out:
        raise SpecError(f"--out {out!r}: several families are fitted; put {{family}} in the name")
    paths = {f: _out_path(out, f, force) for f in wanted if f in configured and f in fitsets} if out else {}
    res_out = {"families": {}, "notes": []}
    for fam in wanted:
        fs = fitsets.get(fam)
        fs = thin_sources(fs, max_rows_per_source) if fs is not None else None
        ff = configured.get(fam)
        if fs is None or not fs.cases:
            res_out["notes"].append(f"{fam}: no predictable time/rate rows in the given files")
            continue
        if ff is None:
            res_out["notes"].append(f"{fam}: {len(fs.cases)} rows from {len(fs.sources)} source(s) in the given "
                                    "files; no fit is defined for this family (simulator.calibration.FAMILY_FITS)")
            continue
        why = supported(fs, ff.params)
        if why:
            res_out["notes"].append(f"{fam}: not fitted: {why}")
            continue
        res = fit(fs, ff.params, max_nfev=max_nfev)
        entry = {"params": {k: res.params[k] for k in ff.params}, "start": res.start, "rows": len(fs.cases),
                 "sources": fs.sources, "cost_start": res.cost_start, "cost": res.cost,
                 "before": source_stats(fs, {}), "after": source_stats(fs, res.params),
                 "profiles": list(ff.profiles), "warnings": []}
        for k in ff.params:
            if at_bound(k, res.params[k]):
                entry["warnings"].append(f"{param_path(k)} = {res.params[k]:.4g} sits on its bound: the rows ask "
                                         "for physics the model lacks; the value is not a measurement")
        # each refit starts from the all-rows fit and moves only as far as one source's absence asks
        lo = leave_one_source_out(fs, ff.params, x0=[res.params[k] for k in ff.params],
                                  max_nfev=max(5, max_nfev // 4)) if loso else None
        if lo is not None:
            entry["leave_one_source_out"] = lo
        if fam in paths:
            cmd = "trainsim calibrate " + " ".join(os.path.basename(f) for f in files) + f" --family {fam}" + \
                  (" --loso" if loso else "")
            doc = overlay_document(ff, res, fs, lo, datetime.date.today().isoformat(), command=cmd)
            with open(paths[fam], "w", encoding="utf-8") as fh:
                fh.write(overlay_text(doc))
            entry["written"] = paths[fam]
        res_out["families"][fam] = entry
    return res_out


def renderable(results: dict):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts = []
    for fam, e in results["families"].items():
        parts.append(Text(f"{fam}: {e['rows']} rows, cost {e['cost_start']:.4f} -> {e['cost']:.4f}", style="bold"))
        pt = Table(show_edge=False, pad_edge=False)
        for c in ("parameter", "start", "fitted"):
            pt.add_column(c, justify="left" if c == "parameter" else "right")
        for k, v in e["params"].items():
            pt.add_row(k, f"{e['start'][k]:.4g}", f"{v:.4g}")
        parts.append(pt)
        st = Table(show_edge=False, pad_edge=False)
        st.add_column("source", overflow="ellipsis", no_wrap=True, max_width=48)
        for c in ("n", "MAPE before %", "MAPE after %", "signed after %", "LOSO MAPE %"):
            st.add_column(c, justify="right")
        lo = e.get("leave_one_source_out", {})
        for s, a in e["after"].items():
            b = e["before"][s]
            l = lo.get(s)
            st.add_row(s, str(a["n"]), f"{b['mape_pct']:.1f}", f"{a['mape_pct']:.1f}", f"{a['mean_signed_pct']:+.1f}",
                       f"{l['mape_pct']:.1f}" if l else "")
        parts.append(st)
        for w in e.get("warnings", []):
            parts.append(Text(f"warning: {w}", style="yellow"))
        if e.get("written"):
            parts.append(Text(f"wrote {e['written']}"))
        parts.append(Text(""))
    for n in results.get("notes", []):
        parts.append(Text(f"note: {n}"))
    return Group(*parts)
