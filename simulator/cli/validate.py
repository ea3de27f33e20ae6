"""`trainsim validate`: predictions versus published measured runs (or the vTrain ground-truth files)."""
from __future__ import annotations

import argparse
import csv
import sys

from . import common

DEFAULT_ROWS = 20       # rows a table shows by default: the worst ones; the figures always cover every row


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
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--rows", type=int, default=DEFAULT_ROWS, metavar="N",
                       help=f"table: the N rows with the largest |error| (default {DEFAULT_ROWS}); json and csv "
                            "always hold every row")
    shown.add_argument("--all", action="store_true", help="table: every row, in file order")
    p.add_argument("--plot", metavar="OUT.png", help="also draw predicted vs measured (log axes, y=x, +/-10%% bands)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..validation import validate
    report = validate(args.file, engine=args.engine)
    if args.format == "json":
        common.print_json(report_json(report))
    elif args.format == "csv":
        write_csv(report, sys.stdout)
    else:
        if args.rows < 0:
            raise common.UsageError(f"--rows {args.rows}: must be 0 or more (the number of rows to show)")
        common.stdout().print(report_renderable(report, None if args.all else args.rows))
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


def shown_rows(report, max_rows: int | None) -> tuple[list, str]:
    """The predicted rows a table shows and its title: every row in file order (max_rows None or at least their
    number), else the max_rows rows with the largest |error|, largest first."""
    ok_rows = report.ok_rows
    if max_rows is None or max_rows >= len(ok_rows):
        return list(ok_rows), f"{len(report.rows)} rows"
    worst = sorted(ok_rows, key=lambda r: -abs(r.error_pct))[:max_rows]
    return worst, f"the {max_rows} rows of {len(ok_rows)} with the largest |error| (--all or --rows N for more)"


def report_renderable(report, max_rows: int | None = None):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    ok, title = shown_rows(report, max_rows)
    rows = Table(title=f"{title} ({report.file_kind})", title_justify="left", show_edge=False, pad_edge=False)
    for c, j in (("id", "left"), ("metric", "left"), ("measured", "right"), ("predicted", "right"),
                 ("error %", "right"), ("searched (chosen)", "left")):
        rows.add_column(c, justify=j, overflow="fold")
    for r in ok:
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
