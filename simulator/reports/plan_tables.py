"""Rich renderables for a run plan (`RunPlan.to_dict()`). Build, never print: the CLI prints them."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..units import GIGA, TERA, format_seconds
from .labels import layout_label

BREAKDOWN_LABELS = {"compute": "training (useful)", "checkpoint": "checkpoint blocking", "restart": "restarts",
                    "planned_stops": "planned stops", "lost_work": "lost work (re-done)"}


def _money(v) -> str:
    return "n/a (no price; --price-per-hour)" if v is None else f"${v:,.0f}"


def plan_renderable(d: dict):
    """Summary, checkpoint and restart facts, wall-clock breakdown and the top failure causes of one plan."""
    lay, ck, rs = d["layout"], d["checkpoint"], d["restart"]
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("model / hardware", f"{d['model']} on {d['devices']:,} x {d['hardware']}   run preset: {d['run']}")
    head.add_row("layout", layout_label(lay))
    step = d["step"]
    head.add_row("step", f"{format_seconds(step['step_time_s'])}  {step['tokens_per_s']:,.0f} tokens/s  "
                         f"MFU {step['mfu'] * 100:.1f}%")
    head.add_row("tokens", f"{d['tokens'] / TERA:,.3f} T")
    days = f"{d['wall_clock_days']:,.2f} days (training {d['compute_days']:,.2f} days)"
    if d.get("samples"):
        s = d["samples"]
        days += f"; Monte-Carlo p50 {s['wall_clock_days_p50']:,.2f} / p90 {s['wall_clock_days_p90']:,.2f} days " \
                f"({s['samples']} samples, seed {s['seed']})"
    head.add_row("wall clock", days)
    head.add_row("goodput", Text(f"{d['goodput'] * 100:.1f}% effective training time",
                                 style="green" if d["goodput"] >= 0.9 else "yellow"))
    head.add_row("interruptions", f"{d['unexpected_interruptions']:,.1f} unexpected + {d['planned_interruptions']:,.1f} "
                                  f"planned (job MTBF {format_seconds(d['mtbf_s'])})")
    head.add_row("checkpoint", f"{ck['bytes'] / TERA:,.2f} TB ({ck['bytes_per_device'] / GIGA:,.2f} GB per device), "
                               f"{ck['mode']}: blocks {format_seconds(ck['effective_block_s'])}, write "
                               f"{format_seconds(ck['write_s'])}; every {format_seconds(ck['interval_s'])} "
                               f"({ck['interval_steps']} steps; optimum {format_seconds(ck['optimal_interval_s'])})")
    head.add_row("restart", f"{format_seconds(rs['unexpected_s'])} = detection {format_seconds(rs['detection_s'])} + "
                            f"communicator init {format_seconds(rs['comm_init_s'])} + checkpoint read "
                            f"{format_seconds(rs['checkpoint_read_s'])} + other {format_seconds(rs['other_s'])}")
    head.add_row("cost", _money(d["cost_usd"]))
    head.add_row("energy", "n/a (no power)" if d["energy_mwh"] is None else f"{d['energy_mwh']:,.0f} MWh (devices)")

    tb = Table(title="wall-clock breakdown", title_justify="left")
    tb.add_column("part")
    tb.add_column("time", justify="right")
    tb.add_column("share", justify="right")
    wall = d["wall_clock_days"] * 86400.0
    for k, label in BREAKDOWN_LABELS.items():
        v = d["time_breakdown_s"][k]
        tb.add_row(label, format_seconds(v), f"{v / wall * 100:.2f}%")
    tb.add_row(Text("wall clock", style="bold"), Text(format_seconds(wall), style="bold"), "100%")

    fc = Table(title="expected unexpected interruptions by cause", title_justify="left")
    fc.add_column("cause")
    fc.add_column("per device-hour", justify="right")
    fc.add_column("expected", justify="right")
    causes = sorted(d["failure_causes"].items(), key=lambda kv: -kv[1]["expected"])
    for name, c in causes[:8]:
        fc.add_row(name, f"{c['rate_per_device_hour']:.2e}", f"{c['expected']:,.1f}")
    parts = [head, Text(""), tb, Text(""), fc]
    if d["reasons"]:
        parts += [Text(""), Text("infeasible:", style="bold red")] + [Text(f"  - {r}") for r in d["reasons"]]
    return Group(*parts)
