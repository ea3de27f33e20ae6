"""`trainsim estimate`: one layout, analytic engine."""
from __future__ import annotations

import argparse
import csv
import sys

from ..errors import SpecError
from . import common
from .compare import token_count


def register(sub) -> None:
    p = sub.add_parser("estimate", help="MFU, step time and memory of one layout (analytic engine)",
                       description="Estimate MFU, HFU, step time with breakdown, tokens/s and per-device memory "
                                   "of one training layout. Exit 3 if the layout cannot run (every reason listed).")
    common.add_job_flags(p)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format")
    p.add_argument("--explain", action="store_true",
                   help="for every number (step time, MFU, HFU, tokens/s, each breakdown and memory row) also print "
                        "the quantity it sums, the function that computes it and that function's source (table or "
                        "json; the JSON gains an `explain` list)")
    p.add_argument("--tokens", type=token_count, metavar="T",
                   help="also give the time, cost (the profile's price per device-hour) and energy (board power) "
                        "to train T tokens with this layout, e.g. 300B, 1.4T")
    p.set_defaults(handler=run)


def inputs_of(result) -> dict:
    """The inputs the estimate used, echoed in the table and the JSON (`inputs`): sequence length, global batch,
    micro-batch and micro-batches, dtype, schedule, framework (when the scenario names one)."""
    sc = result.scenario
    d = {"seq_len": sc.training.seq_len, "global_batch": sc.training.global_batch,
         "micro_batch": sc.layout.micro_batch, "num_micro_batches": result.num_micro_batches,
         "dtype": sc.training.dtype, "schedule": sc.layout.resolved_schedule}
    fw = getattr(sc, "framework", None)
    if fw is not None:
        d["framework"] = getattr(fw, "name", str(fw))
    return d


def to_train(result, tokens: float) -> dict:
    """Time, cost and energy to train `tokens` at this layout's throughput (simulator.metrics definitions);
    cost and energy are None where the profile has no price or power figure, all None if the layout cannot run."""
    from .. import metrics
    dev = result.scenario.hardware.device
    n = result.scenario.num_devices
    price, power = dev.price_per_hour_usd, dev.power_w
    d = {"tokens": tokens, "time_s": None, "days": None, "cost_usd": None, "energy_kwh": None,
         "price_per_hour_usd": price, "power_w": power}
    if not result.runnable or not result.tokens_per_s:
        return d
    t = float(metrics.time_to_train_s(tokens, result.tokens_per_s))
    d.update(time_s=t, days=t / 86400.0,
             cost_usd=None if price is None else float(metrics.cost_usd(n, price, t)),
             energy_kwh=None if power is None else float(metrics.energy_kwh(n, power, t)))
    return d


def emit(d: dict, fmt: str) -> None:
    if fmt == "json":
        common.print_json(d)
    elif fmt == "csv":
        flat = common.flatten(d)
        w = csv.DictWriter(sys.stdout, fieldnames=list(flat))
        w.writeheader()
        w.writerow(flat)
    else:
        from ..reports.tables import estimate_renderable
        common.stdout().print(estimate_renderable(d))


def exit_code(result, fmt: str) -> int:
    """0, or 3 for an infeasible layout (its reasons go to stderr unless the table already shows them)."""
    if result.feasible:
        return 0
    if fmt != "table":
        common.error("infeasible layout:\n" + "\n".join(f"  - {r}" for r in result.reasons))
    return 3


def _value_text(v, unit: str) -> str:
    from ..units import GIGA, format_seconds
    if v is None:
        return "n/a"
    if unit == "s":
        return format_seconds(v)
    if unit == "B":
        return f"{v / GIGA:,.2f} GB"
    if unit == "":
        return f"{v:.4g}"
    return f"{v:,.0f} {unit}" if abs(v) >= 1000 else f"{v:,.4g} {unit}"


def explain_renderable(rows: list[dict]):
    """Rich table of explain() rows: the field and its value, then the quantity it sums and each function that
    computes it with that function's source."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title="where each number comes from", title_justify="left", show_lines=True)
    t.add_column("field", no_wrap=True)
    t.add_column("value", justify="right", no_wrap=True)
    t.add_column("quantity; computed by: source", overflow="fold")
    for r in rows:
        text = Text(r["quantity"], style="italic")
        for f in r["functions"]:
            text.append("\n" + f["name"].removeprefix("simulator."), style="bold")
            text.append(": " + f["source"])
        t.add_row(r["field"], _value_text(r["value"], r["unit"]), text)
    return t


def run(args: argparse.Namespace) -> int:
    from ..analytic.estimate import estimate
    if getattr(args, "explain", False) and args.format == "csv":
        raise SpecError("--explain: prints a table or JSON, not CSV (use --format table or --format json)")
    result = estimate(common.build_scenario(args))
    from ..uncertainty import with_uncertainty
    d = with_uncertainty(result.to_dict(), result.scenario)
    d["inputs"] = inputs_of(result)
    if getattr(args, "tokens", None):
        d["to_train"] = to_train(result, args.tokens)
    if not getattr(args, "explain", False):
        emit(d, args.format)
        return exit_code(result, args.format)
    from ..analytic.explain import explain
    rows = explain(result)
    if args.format == "json":
        d["explain"] = rows
        emit(d, "json")
    else:
        from rich.text import Text
        emit(d, "table")
        out = common.stdout()
        out.print(Text(""))
        out.print(explain_renderable(rows))
    return exit_code(result, args.format)
