"""`trainsim validate`: predictions versus published measured runs (or the vTrain ground-truth files)."""
from __future__ import annotations

import argparse
import csv
import sys

from . import common

#: Colours of the hardware families in the validation plot (others cycle through the default palette).
FAMILY_COLOURS = {"nvidia-ampere": "#76B900", "nvidia-hopper": "#1A7F37", "nvidia-volta": "#A3C57A",
                  "nvidia-blackwell": "#0B4F2C", "tpu": "#4285F4", "ascend": "#C7000B", "amd-cdna2": "#ED1C24",
                  "amd-cdna3": "#8B0000", "gaudi": "#0071C5"}


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
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..validation import validate
    report = validate(args.file, engine=args.engine)
    if args.format == "json":
        common.print_json(report_json(report))
    elif args.format == "csv":
        write_csv(report, sys.stdout)
    else:
        common.stdout().print(report_renderable(report))
    if args.plot:
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


def validation_figure(report):
    """Predicted vs measured of the predicted rows, log axes, y = x and +/-10% bands, coloured by family.

    Each metric is normalised by its own measured median so that step times, rates and utilisations share one
    pair of axes; the ratio predicted/measured (what the bands show) is unchanged by that scaling."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.add_subplot(1, 1, 1)
    ok = [r for r in report.ok_rows if r.predicted and r.measured and r.predicted > 0 and r.measured > 0]
    med = {}
    for m in {r.metric for r in ok}:
        med[m] = float(np.median([r.measured for r in ok if r.metric == m]))
    fams = sorted({r.family or r.hardware for r in ok})
    palette = iter(["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"])
    markers = {"step_time_s": "o", "tokens_per_s_per_device": "s", "mfu": "^", "hfu": "v",
               "tflops_per_device": "D", "memory_gb": "x"}
    lo, hi = np.inf, 0.0
    for fam in fams:
        colour = FAMILY_COLOURS.get(fam) or next(palette, "#333333")
        for metric, mk in markers.items():
            pts = [(r.measured / med[r.metric], r.predicted / med[r.metric]) for r in ok
                   if (r.family or r.hardware) == fam and r.metric == metric]
            if not pts:
                continue
            x, y = np.array(pts).T
            lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
            ax.scatter(x, y, s=22, marker=mk, color=colour, alpha=0.75, linewidths=0.8,
                       label=f"{fam} / {metric}")
    if not ok:
        lo, hi = 0.1, 10.0
    lo, hi = lo / 1.3, hi * 1.3
    xs = np.geomspace(lo, hi, 50)
    ax.plot(xs, xs, color="black", lw=1, label="y = x")
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="grey", alpha=0.2, label="+/-10%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured / median measured of the metric")
    ax.set_ylabel("predicted / median measured of the metric")
    s = report.summary
    if s["n"]:
        ax.set_title(f"trainsim validate: {s['n']} rows, MAPE {s['mape_pct']:.1f}%, median {s['median_ape_pct']:.1f}%, "
                     f"max {s['max_ape_pct']:.1f}%", fontsize=10)
    ax.legend(fontsize=6, loc="upper left", ncol=1, frameon=False)
    ax.grid(True, which="both", alpha=0.2)
    return fig
