"""Rich renderables for search, compare and sweep results. Build, never print: the CLI prints them.

The search table takes its rows as dicts (SearchResult.top_rows) or a DataFrame, so that `trainsim search`
prints its table without importing pandas."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..units import GIGA, format_seconds

if TYPE_CHECKING:
    import pandas as pd


def _isna(x) -> bool:
    """None, NaN or pandas' NA (without importing pandas)."""
    if x is None:
        return True
    try:
        return bool(x != x)
    except TypeError:               # pd.NA: its comparisons are NA, whose truth value is ambiguous
        return True


def _records(rows) -> list[dict]:
    """Rows as a list of dicts: a DataFrame's records, or the dicts themselves."""
    return rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)


def token_text(n: float) -> str:
    """300e9 -> '300B', 1.4e12 -> '1.4T'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:,.4g}{suffix}"
    return f"{n:,.0f}"


def _pct(x) -> str:
    return f"{x * 100:.1f}%"


def _num(x, fmt="{:,.0f}") -> str:
    if _isna(x):
        return "n/a"
    return fmt.format(x)


def _days(t_s) -> str:
    if _isna(t_s):
        return "n/a"
    return f"{t_s / 86400:,.1f} d" if t_s >= 86400 else format_seconds(t_s)


def comm_text(r) -> str:
    """The candidate's non-default MoE dispatch and data-parallel synchronisation ('' for flat / all-reduce)."""
    parts = []
    if str(r.get("moe_dispatch", "flat")) != "flat":
        parts.append(str(r["moe_dispatch"]))
    if str(r.get("dp_compression", "none")) != "none":
        parts.append(str(r["dp_compression"]))
    if int(r.get("local_sgd_tau", 1) or 1) > 1:
        parts.append(f"local SGD tau {int(r['local_sgd_tau'])}")
    return ", ".join(parts)


def search_renderable(summary: dict, top, footer_lines: list[str], show_ep: bool = False,
                      show_cost: bool = False, show_des: bool = False):
    """Top candidates of a search as a table, with the summary line and a footer (counts, time). `top`: the rows
    as dicts (SearchResult.top_rows) or a DataFrame."""
    top = _records(top)
    title = (f"{summary['model']} on {summary['devices']:,} x {summary['hardware']}  ·  global batch "
             f"{summary['global_batch']:,} x seq {summary['seq_len']:,}  ·  objective {summary['objective']}"
             + (f"  ·  framework {summary['framework']}" if summary.get("framework") else ""))
    t = Table(title=title, title_justify="left")
    show_offload = any(str(r.get(c, "none")) != "none" for r in top
                       for c in ("offload_optimizer", "offload_params", "offload_activations"))
    cols = ["#", "tp", "pp", "dp", "cp"] + (["ep"] if show_ep else []) + [
        "vpp", "mb", "zero", "recompute", "schedule"] + (["offload", "host GB/node"] if show_offload else []) + [
        "MFU", "step", "tokens/s", "mem GB"]
    show_train = bool(top) and "train_wall_clock_s" in top[0]
    if show_train:
        cols += ["goodput", "days to train", "$ to train"]
    if show_cost:
        cols.append("$/M tok")
    if show_des:
        cols += ["DES step", "DES MFU"]
    show_comm = any(comm_text(r) for r in top)
    if show_comm:
        cols.insert(cols.index("MFU"), "comm")
    for c in cols:
        t.add_column(c, justify="left" if c in ("recompute", "schedule", "offload", "comm") else "right")
    for r in top:
        row = [str(r["rank"]), str(r["tp"]), str(r["pp"]), str(r["dp"]), str(r["cp"])]
        if show_ep:
            row.append(str(r["ep"]))
        row += [str(r["vpp"]), str(r["micro_batch"]), str(r["zero"]), str(r["recompute"]), str(r["schedule"])]
        if show_offload:
            off = ", ".join(f"{k} {r[f'offload_{k}']}" for k in ("optimizer", "params", "activations")
                            if str(r[f"offload_{k}"]) != "none")
            row += [off or "none", f"{r['mem_host_bytes'] / GIGA:,.0f}"]
        row += [comm_text(r)] if show_comm else []
        row += [_pct(r["mfu"]), format_seconds(r["step_time_s"]), f"{r['tokens_per_s']:,.0f}",
                f"{r['mem_total_bytes'] / GIGA:,.1f}"]
        if show_train:
            row += [_pct(r["train_goodput"]), _days(r["train_wall_clock_s"]), _num(r["train_cost_usd"], "${:,.0f}")]
        if show_cost:
            row.append(_num(r.get("usd_per_million_tokens"), "{:,.2f}"))
        if show_des:
            des = r.get("des_step_time_s")
            row += ["" if _isna(des) else format_seconds(des), "" if _isna(des) else _pct(r["des_mfu"])]
        t.add_row(*row)
    return Group(t, *[Text(line, style="dim") for line in footer_lines])


def compare_renderable(frame: "pd.DataFrame", meta: dict):
    """One row per hardware profile: best layout, MFU, step time, tokens/s, time, cost and energy to train."""
    title = (f"{meta['model']}" + (f"  ·  framework {meta['framework']}" if meta.get("framework") else "")
             + f"  ·  global batch {meta['global_batch']:,} x seq {meta['seq_len']:,}  ·  "
             f"{token_text(meta['tokens'])} tokens" + (f"  ·  budget ${meta['budget_per_hour']:,.0f}/h"
                                                if meta.get("budget_per_hour") else ""))
    t = Table(title=title, title_justify="left")
    unc = "uncertainty_pct" in frame
    train = "train_wall_clock_s" in frame
    cols = ("hardware", "devices", "best layout", "MFU") + (("+/-",) if unc else ()) + (
        "step", "tokens/s", "time to train", "$/device-h", "cost to train", "energy") + (
        ("goodput", "wall clock", "cost (goodput)") if train else ())
    for c in cols:
        t.add_column(c, justify="left" if c in ("hardware", "best layout") else "right")
    for _, r in frame.iterrows():
        err = [_uncertainty_cell(r)] if unc else []
        if not r["feasible"]:
            t.add_row(r["hardware"], f"{r['devices']:,}", Text(r["status"], style="red"), *[""] * (len(cols) - 3))
            continue
        extra = [_pct(r["train_goodput"]), _days(r["train_wall_clock_s"]), _num(r["train_cost_usd"], "${:,.0f}")] \
            if train else []
        t.add_row(
            r["hardware"], f"{r['devices']:,}", r["layout"], _pct(r["mfu"]), *err, format_seconds(r["step_time_s"]),
            f"{r['tokens_per_s']:,.0f}", _days(r["time_to_train_s"]),
            _num(r["price_per_hour_usd"], "{:,.2f}"), _num(r["cost_usd"], "${:,.0f}"),
            _num(r["energy_kwh"] / 1000.0 if not _isna(r["energy_kwh"]) else float("nan"), "{:,.1f} MWh"), *extra)
    notes = [Text(n, style="yellow" if n.startswith("warning") else "dim") for n in meta.get("notes", [])]
    if unc:
        notes += [Text(f"{r['hardware']}: {r['uncertainty']}", style="dim") for _, r in frame.iterrows()
                  if isinstance(r.get("uncertainty"), str)]
    return Group(t, *notes)


def _uncertainty_cell(r) -> str:
    """'+/-11% cal' or '+/-101% xfer': the expected error of the row's grounding (uncertainty.py)."""
    v = r.get("uncertainty_pct")
    if _isna(v):
        return ""
    return f"{v:.0f}% {'cal' if r.get('uncertainty_kind') == 'calibrated' else 'xfer'}"


def sweep_renderable(frame: "pd.DataFrame", meta: dict, max_rows: int = 40):
    """Best layout per grid point of a sweep (the first max_rows points)."""
    t = Table(title=f"sweep: {meta['num_points']:,} grid points in {meta['num_chunks']:,} chunks -> "
                    f"{meta['output']}", title_justify="left")
    for c in ("model", "hardware", "devices", "batch", "seq", "status", "tp", "pp", "dp", "MFU", "tokens/s",
              "mem GB"):
        t.add_column(c, justify="left" if c in ("model", "hardware", "status") else "right")
    best = frame[frame["rank"] <= 1] if "rank" in frame else frame
    for _, r in best.head(max_rows).iterrows():
        ok = r["status"] == "ok"
        t.add_row(str(r["model"]), str(r["hardware"]), f"{r['devices']:,}", f"{r['global_batch']:,}",
                  f"{r['seq_len']:,}", Text(str(r["status"]), style="green" if ok else "red"),
                  *(str(r[c]) if r[c] >= 1 else "" for c in ("tp", "pp", "dp")),
                  _pct(r["mfu"]) if ok else "", f"{r['tokens_per_s']:,.0f}" if ok else "",
                  f"{r['mem_total_bytes'] / GIGA:,.1f}" if r["mem_total_bytes"] == r["mem_total_bytes"] else "")
    lines = [Text(x, style="dim") for x in meta.get("footer", [])]
    if len(best) > max_rows:
        lines.insert(0, Text(f"... {len(best) - max_rows:,} more grid points in the output files", style="dim"))
    return Group(t, *lines)
