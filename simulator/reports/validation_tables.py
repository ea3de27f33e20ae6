"""Rich renderables and CSV rows of a validation report (simulator.validation). Build, never print: the CLI
prints them."""
from __future__ import annotations

import csv

CSV_FIELDS = ("id", "metric", "measured", "predicted", "error_pct", "status", "reason", "line", "source", "hardware",
              "family", "kind", "framework", "overrides", "policy", "searched", "layout", "notes")


def write_csv(report, out) -> None:
    """Every row of the report as CSV (CSV_FIELDS; searched cells and layout as 'k=v;...', notes joined)."""
    w = csv.DictWriter(out, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
    w.writeheader()
    for r in report.rows:
        d = r.to_dict()
        d["searched"] = ";".join(f"{k}={v}" for k, v in d["searched"].items())
        d["overrides"] = ";".join(f"{k}={v}" for k, v in d.get("overrides", {}).items())
        d["layout"] = ";".join(f"{k}={v}" for k, v in d["layout"].items())
        d["notes"] = "; ".join(d["notes"])
        w.writerow(d)


def _fmt(v, metric: str) -> str:
    """A measured or predicted value as text: utilisations with 3 decimals, large numbers with separators."""
    if v is None:
        return "-"
    if metric in ("mfu", "hfu"):
        return f"{v:.3f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def _stats_table(title: str, groups: dict, key_label: str):
    """Error figures per group (hardware family, source, kind or metric)."""
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


def policy_label(policy: str, framework: str) -> str:
    """A row's blank-field policy (RowResult.policy) for a table cell: without the preset name the framework column
    already shows."""
    prefix = f"{framework}: "
    return policy[len(prefix):] if framework and policy.startswith(prefix) else (policy or "-")


def shown_rows(report, max_rows: int | None) -> tuple[list, str]:
    """The predicted rows a table shows and its title: every row in file order (max_rows None or at least their
    number), else the max_rows rows with the largest |error|, largest first."""
    ok_rows = report.ok_rows
    if max_rows is None or max_rows >= len(ok_rows):
        return list(ok_rows), f"{len(report.rows)} rows"
    worst = sorted(ok_rows, key=lambda r: -abs(r.error_pct))[:max_rows]
    return worst, f"the {max_rows} rows of {len(ok_rows)} with the largest |error| (--all or --rows N for more)"


def report_renderable(report, max_rows: int | None = None):
    """Per-row predictions (every row, or the `max_rows` with the largest |error|), the skipped rows with their
    reasons, and the summary figures per group."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    ok, title = shown_rows(report, max_rows)
    rows = Table(title=f"{title} ({report.file_kind})", title_justify="left", show_edge=False, pad_edge=False)
    for c, j in (("id", "left"), ("metric", "left"), ("measured", "right"), ("predicted", "right"),
                 ("error %", "right"), ("framework (overrides)", "left"), ("blank-field policy", "left"),
                 ("searched (chosen)", "left")):
        rows.add_column(c, justify=j, overflow="fold")
    for r in ok:
        err = f"{r.error_pct:+.1f}"
        style = "red" if abs(r.error_pct) > 25 else ("yellow" if abs(r.error_pct) > 10 else "")
        searched = " ".join(f"{k}={v}" for k, v in r.searched.items())
        over = " ".join(f"{k}={v}" for k, v in r.overrides.items())
        stack = r.framework + (f" ({over})" if over else "")
        rows.add_row(r.id, r.metric, _fmt(r.measured, r.metric), _fmt(r.predicted, r.metric),
                     Text(err, style=style), stack, policy_label(r.policy, r.framework), searched)
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
                              ("by_kind", "dense vs MoE", "kind"), ("by_metric", "by metric", "metric"),
                              ("by_framework", "by framework preset", "framework")):
        if s.get(key):
            parts += [Text(""), _stats_table(title, s[key], label)]
    return Group(*parts)


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
