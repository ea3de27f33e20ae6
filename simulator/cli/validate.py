"""`trainsim validate`: predictions versus published measured runs (or the vTrain ground-truth files)."""
from __future__ import annotations

import argparse
import csv
import sys

from . import common


def register(sub) -> None:
    p = sub.add_parser(
        "validate", help="predictions vs published measured runs (CSV in the data README schema, or vTrain files)",
        description="Predict every row of a runs file with the project's profiles (per-row overrides win), under "
                    "the row's own metric and FLOP convention, and print per-row prediction, measurement and "
                    "signed %% error, then MAPE, median and max error overall, per hardware family, per source, "
                    "dense vs MoE and per metric. Blank layout cells are searched (fastest setting that fits). "
                    "Rows that cannot be predicted are listed with the reason and left out of the figures.")
    p.add_argument("file", metavar="FILE.csv", help="runs file: published-runs schema or a vTrain ground-truth CSV")
    p.add_argument("--engine", choices=["analytic", "des"], default="analytic",
                   help="engine for the step time (des: discrete-event, where installed)")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format")
    p.add_argument("--plot", metavar="OUT.png", help="also draw predicted vs measured (log axes, y=x, +/-10%% bands)")
    p.add_argument("--cv", action="store_true",
                   help="cross-validated figures instead: in-sample, leave-one-source-out (refit of each calibrated "
                        "family without the source) and leave-one-family-out (the family without its calibration "
                        "overlay) MAPE over the time/rate rows, per family (minutes: one refit per source)")
    p.add_argument("--cv-max-nfev", type=common.positive_int, default=15,
                   help="optimiser evaluations per leave-one-source-out refit (default 15)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.cv:
        return run_cv(args)
    from ..validation import validate
    report = validate(args.file, engine=args.engine)
    if args.format == "json":
        common.print_json(report_json(report))
    elif args.format == "csv":
        write_csv(report, sys.stdout)
    else:
        common.stdout().print(report_renderable(report))
    if args.plot:
        from ..reports.plots import validation_figure
        fig = validation_figure(report)
        fig.savefig(args.plot, dpi=150, bbox_inches="tight")
        if args.format == "table":
            common.stdout().print(f"plot written to {args.plot}")
    return 0


def report_json(report) -> dict:
    """The documented JSON object: rows (id, metric, measured, predicted, error_pct, status, reason, ...) and
    summary (n, mape_pct, median_ape_pct, max_ape_pct, by_hardware, by_source, ...)."""
    return report.to_dict()


CSV_FIELDS = ("id", "metric", "measured", "predicted", "error_pct", "status", "reason", "line", "source", "hardware",
              "family", "kind", "searched", "layout", "notes")


def write_csv(report, out) -> None:
    w = csv.DictWriter(out, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
    w.writeheader()
    for r in report.rows:
        d = r.to_dict()
        d["searched"] = ";".join(f"{k}={v}" for k, v in d["searched"].items())
        d["layout"] = ";".join(f"{k}={v}" for k, v in d["layout"].items())
        d["notes"] = "; ".join(d["notes"])
        w.writerow(d)


def _fmt(v, metric: str) -> str:
    if v is None:
        return "-"
    if metric in ("mfu", "hfu"):
        return f"{v:.3f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def _stats_table(title: str, groups: dict, key_label: str):
    from rich.table import Table
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    t.add_column(key_label, overflow="fold")
    for c in ("n", "MAPE %", "median %", "max %", "mean signed %"):
        t.add_column(c, justify="right")
    for k, s in groups.items():
        if not s["n"]:
            continue
        t.add_row(str(k), str(s["n"]), f"{s['mape_pct']:.1f}", f"{s['median_ape_pct']:.1f}",
                  f"{s['max_ape_pct']:.1f}", f"{s['mean_signed_pct']:+.1f}")
    return t


def report_renderable(report):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rows = Table(title=f"{len(report.rows)} rows ({report.file_kind})", title_justify="left", show_edge=False,
                 pad_edge=False)
    for c, j in (("id", "left"), ("metric", "left"), ("measured", "right"), ("predicted", "right"),
                 ("error %", "right"), ("searched (chosen)", "left")):
        rows.add_column(c, justify=j, overflow="fold")
    for r in report.ok_rows:
        err = f"{r.error_pct:+.1f}"
        style = "red" if abs(r.error_pct) > 25 else ("yellow" if abs(r.error_pct) > 10 else "")
        searched = " ".join(f"{k}={v}" for k, v in r.searched.items())
        rows.add_row(r.id, r.metric, _fmt(r.measured, r.metric), _fmt(r.predicted, r.metric),
                     Text(err, style=style), searched)
    parts = [rows]
    if report.skipped_rows:
        sk = Table(title=f"{len(report.skipped_rows)} rows skipped (not in the figures)", title_justify="left",
                   show_edge=False, pad_edge=False)
        sk.add_column("id")
        sk.add_column("line", justify="right")
        sk.add_column("reason", overflow="fold")
        for r in report.skipped_rows:
            sk.add_row(r.id, str(r.line), r.reason)
        parts += [Text(""), sk]
    s = report.summary
    if s["n"]:
        head = Text(f"\nn {s['n']}   MAPE {s['mape_pct']:.1f}%   median {s['median_ape_pct']:.1f}%   "
                    f"max {s['max_ape_pct']:.1f}%   mean signed {s['mean_signed_pct']:+.1f}%   "
                    f"skipped {s['n_skipped']}", style="bold")
    else:
        head = Text(f"\nno predictable rows (skipped {s['n_skipped']})", style="bold")
    parts.append(head)
    for key, title, label in (("by_hardware", "by hardware family", "family"), ("by_source", "by source", "source"),
                              ("by_kind", "dense vs MoE", "kind"), ("by_metric", "by metric", "metric")):
        if s.get(key):
            parts += [Text(""), _stats_table(title, s[key], label)]
    return Group(*parts)


def run_cv(args: argparse.Namespace) -> int:
    from ..calibration.crossval import cross_validate
    from ..errors import SpecError
    if args.engine != "analytic" or args.plot or args.format == "csv":
        raise SpecError("--cv: analytic engine, table or JSON output, no --plot")
    res = cross_validate([args.file], max_nfev=args.cv_max_nfev)
    if args.format == "json":
        common.print_json(res)
    else:
        common.stdout().print(cv_renderable(res))
    return 0


def cv_renderable(res: dict):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = Table(title="MAPE % over the time/rate rows: in-sample, leave-one-source-out, leave-one-family-out",
              title_justify="left", show_edge=False, pad_edge=False)
    for c in ("family", "rows", "sources", "calibrated", "in-sample", "LOSO", "LOFO"):
        t.add_column(c, justify="left" if c == "family" else "right")

    def pct(s):
        return "-" if s["mape_pct"] is None else f"{s['mape_pct']:.1f}"
    for fam, v in res["families"].items():
        t.add_row(fam, str(v["in_sample"]["n"]), str(v["sources"]), "yes" if v["fitted"] else "no",
                  pct(v["in_sample"]), pct(v["loso"]), pct(v["lofo"]))
    o = res["overall"]
    t.add_row(Text("all", style="bold"), str(o["in_sample"]["n"]), "", "", pct(o["in_sample"]), pct(o["loso"]),
              pct(o["lofo"]))
    note = Text("LOSO: a calibrated family refitted without each source, error on that source; LOFO: every family "
                "without its own calibration overlay (sourced values only); uncalibrated families: as in-sample.",
                style="dim")
    return Group(t, note)
