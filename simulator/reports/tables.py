"""Rich renderables for results. Build, never print: the CLI prints them."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..units import GIGA, format_seconds
from .labels import layout_label

BREAKDOWN_LABELS = {
    "compute": "compute", "elementwise": "elementwise kernels", "fp8_cast": "FP8 casts / int8 quantisation", "host": "host-bound",
    "recompute": "recompute", "tp_comm": "TP comm (exposed)", "cp_comm": "CP comm (exposed)",
    "ep_comm": "EP all-to-all (exposed)", "pp_comm": "PP send/recv", "bubble": "pipeline bubble",
    "dp_comm": "DP/ZeRO comm (exposed)", "offload": "offload (host link, NVMe, CPU optimizer; exposed)",
    "optimizer": "optimizer step", "overhead": "fixed overhead",
}


def inputs_text(i: dict) -> str:
    """'seq 4,096  global batch 8  micro-batch 1 (8 per replica)  bf16  1f1b  framework megatron-lm'."""
    parts = [f"seq {i['seq_len']:,}", f"global batch {i['global_batch']:,}",
             f"micro-batch {i['micro_batch']} ({i['num_micro_batches']:,} per replica)", i["dtype"], i["schedule"]]
    if i.get("framework"):
        parts.append(f"framework {i['framework']}")
    return "  ".join(parts)


def to_train_text(t: dict) -> str:
    """'1.0T tokens: 12.3 days  $1.2M  (price)  45,600 kWh' (n/a where the profile lacks the figure)."""
    if t["time_s"] is None:
        return f"{token_text(t['tokens'])} tokens: n/a (the layout cannot run)"
    cost = "cost n/a (no price in the profile)" if t["cost_usd"] is None else f"${t['cost_usd']:,.0f}"
    energy = "energy n/a (no power in the profile)" if t["energy_kwh"] is None else f"{t['energy_kwh']:,.0f} kWh"
    when = f"{t['days']:,.1f} days" if t["days"] >= 1 else format_seconds(t["time_s"])
    return f"{token_text(t['tokens'])} tokens: {when}  {cost}  {energy}"


def token_text(n: float) -> str:
    """2e12 -> '2T', 3e11 -> '300B', 1.5e6 -> '1.5M'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:,.4g}{suffix}"
    return f"{n:,.0f}"


def estimate_renderable(d: dict):
    """Summary, time breakdown and memory breakdown of one estimate's to_dict()."""
    lay = d["layout"]
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("model / hardware", f"{d['model']} on {d['devices']} x {d['hardware']}")
    head.add_row("layout", f"{layout_label(lay)}  sp {'on' if lay['sequence_parallel'] else 'off'}  "
                           f"({d['num_micro_batches']} micro-batches)")
    if d.get("framework"):
        over = d.get("framework_overrides") or {}
        head.add_row("framework", f"{d['framework']} (attention kernel {d.get('attention_kernel')})"
                     + (f"; overrides: {', '.join(f'{k}={v}' for k, v in over.items())}" if over else ""))
    if d.get("inputs"):
        head.add_row("inputs", inputs_text(d["inputs"]))
    head.add_row("engine", d.get("engine", "analytic"))
    if d.get("runnable") is False:
        head.add_row("step time", Text("not evaluated: the layout cannot be formed", style="bold red"))
        mem = d["memory"]
        head.add_row("memory", f"{mem['total_bytes'] / GIGA:,.1f} of {mem['capacity_bytes'] / GIGA:,.0f} GB "
                               "(as laid out; approximate)")
        return Group(head, Text(""), Text("infeasible:", style="bold red"),
                     *[Text(f"  - {r}") for r in d["reasons"]])
    head.add_row("MFU / HFU", f"{d['mfu'] * 100:.1f}% / {d['hfu'] * 100:.1f}%")
    head.add_row("step time", format_seconds(d["step_time_s"]))
    if d.get("background"):
        bg = d["background"]
        head.add_row("shared network", f"{bg['slowdown']:.3f}x slower than on a dedicated network "
                                       f"({format_seconds(bg['dedicated_step_time_s'])}; background occupancy "
                                       f"{bg['occupancy']:.0%} of the scale-out tiers)")
    head.add_row("throughput", f"{d['tokens_per_s']:,.0f} tokens/s   {d['tflops_per_device']:.1f} TFLOP/s per device")
    if d.get("uncertainty"):
        u = d["uncertainty"]
        head.add_row("uncertainty", f"+/-{u['expected_error_pct']:.0f}%: {u['basis']}")
    mem = d["memory"]
    fit = Text("fits", style="green") if d["fits"] else Text("DOES NOT FIT", style="bold red")
    head.add_row("memory", Text.assemble(f"{mem['total_bytes'] / GIGA:,.1f} of {mem['capacity_bytes'] / GIGA:,.0f} GB  ",
                                         fit))
    if d.get("to_train"):
        head.add_row("to train", to_train_text(d["to_train"]))

    tb = Table(title="step time breakdown (busiest rank)", title_justify="left")
    tb.add_column("part")
    tb.add_column("time", justify="right")
    tb.add_column("share", justify="right")
    total = d["step_time_s"]
    for k, v in d["time_breakdown_s"].items():
        if v > 0:
            tb.add_row(BREAKDOWN_LABELS.get(k, k), format_seconds(v), f"{v / total * 100:.1f}%")
    tb.add_row(Text("step", style="bold"), Text(format_seconds(total), style="bold"), "100%")

    mb = Table(title=f"memory per device ({d.get('memory_rank', 'first')} pipeline rank)", title_justify="left")
    mb.add_column("kind")
    mb.add_column("GB", justify="right")
    for k, v in mem.items():
        if k in ("total_bytes", "capacity_bytes"):
            continue
        mb.add_row(k.replace("_bytes", ""), f"{v / GIGA:,.2f}")
    mb.add_row(Text("total", style="bold"), Text(f"{mem['total_bytes'] / GIGA:,.2f}", style="bold"))
    tiers = d.get("memory_tiers") or {}
    for tier, label in (("host", "host memory per node"), ("nvme", "NVMe per node")):
        need, cap = tiers.get(f"{tier}_bytes_per_node", 0.0), tiers.get(f"{tier}_capacity_bytes_per_node")
        if need:
            mb.add_row(label, f"{need / GIGA:,.2f} of " + ("unknown" if cap is None else f"{cap / GIGA:,.0f}"))

    parts = [head, Text(""), tb, Text(""), mb]
    if d["reasons"]:
        parts += [Text(""), Text("infeasible:", style="bold red")] + [Text(f"  - {r}") for r in d["reasons"]]
    return Group(*parts)


def catalog_table(rows: list[dict], columns: list[tuple[str, str]], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for _, label in columns:
        t.add_column(label)
    for r in rows:
        t.add_row(*[str(r.get(k, "")) for k, _ in columns])
    return t
