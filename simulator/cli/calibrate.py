"""`trainsim calibrate`: fit the few efficiency parameters of each hardware family to measured runs."""
from __future__ import annotations

import argparse

from . import common


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="fit each family's efficiency parameters to measured runs (and optionally write them)",
        description="Weighted robust least squares of log(predicted/measured) over the time/rate rows of the "
                    "given runs files, per hardware family, for the parameters listed in "
                    "simulator.calibration.FAMILY_FITS. Prints the fitted values and the error per source; "
                    "--loso refits without each source in turn (leave-one-source-out); --write stores the values "
                    "and how they were obtained in the profiles' efficiency blocks.")
    p.add_argument("files", nargs="+", metavar="FILE.csv", help="runs files (published schema and/or vTrain CSVs)")
    p.add_argument("--family", action="append", help="only this family (repeatable); default: every fitted family")
    p.add_argument("--loso", action="store_true", help="also report leave-one-source-out errors")
    p.add_argument("--write", action="store_true", help="write the fitted values into the hardware profiles")
    p.add_argument("--max-nfev", type=common.positive_int, default=60, help="optimiser evaluations per fit")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    results = calibrate(args.files, families=args.family, loso=args.loso, write=args.write, max_nfev=args.max_nfev)
    if args.format == "json":
        common.print_json(results)
    else:
        common.stdout().print(renderable(results))
    return 0


def calibrate(files, families=None, loso=False, write=False, max_nfev=60) -> dict:
    """Fit every configured family present in the files; returns a JSON-able dict (and writes profiles)."""
    from ..calibration import (FAMILY_FITS, UNFITTED, describe_fit, fit, leave_one_source_out, load_fitsets,
                               profile_text_with_fit, source_stats)
    from ..errors import SpecError
    from ..specs.loading import profiles_dir

    fitsets = load_fitsets(files)
    out = {"families": {}, "unfitted": dict(UNFITTED)}
    for ff in FAMILY_FITS:
        if families and ff.family not in families:
            continue
        fs = fitsets.get(ff.family)
        if fs is None or not fs.cases:
            out["unfitted"][ff.family] = "no predictable rows in the given files"
            continue
        res = fit(fs, ff.params, max_nfev=max_nfev)
        before = source_stats(fs, {})
        after = source_stats(fs, res.params)
        entry = {"params": {k: res.params[k] for k in ff.params}, "start": res.start, "rows": len(fs.cases),
                 "sources": fs.sources, "cost_start": res.cost_start, "cost": res.cost, "before": before,
                 "after": after, "profiles": list(ff.profiles), "note": ff.note}
        lo = None
        if loso:
            lo = leave_one_source_out(fs, ff.params, max_nfev=max(20, max_nfev // 2))
            entry["leave_one_source_out"] = lo
        if write:
            para = describe_fit(ff, res, fs, lo)
            written = []
            for name in ff.profiles:
                path = profiles_dir() / f"{name}.yaml"
                if not path.exists():
                    raise SpecError(f"profile {name} not found in {profiles_dir()}")
                text = path.read_text(encoding="utf-8")
                path.write_text(profile_text_with_fit(text, entry["params"], para), encoding="utf-8")
                written.append(str(path))
            entry["written"] = written
            entry["source_paragraph"] = para
        out["families"][ff.family] = entry
    return out


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
        if e.get("note"):
            parts.append(Text(f"note: {e['note']}"))
        for w in e.get("written", []):
            parts.append(Text(f"wrote {w}"))
        parts.append(Text(""))
    if results.get("unfitted"):
        parts.append(Text("kept their sourced defaults:", style="bold"))
        for fam, why in results["unfitted"].items():
            parts.append(Text(f"  {fam}: {why}"))
    return Group(*parts)
