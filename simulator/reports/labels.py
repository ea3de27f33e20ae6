"""The label of a layout: the one short text that names a layout wherever one is shown (compare's `layout`
column, search's no-fit message, plot labels, the estimate and simulate headers).

    tp 8 pp 8 dp 16 vpp 2 mb 1 zero 1 selective interleaved

cp, ep and vpp appear only when above 1; a MoE dispatch other than flat, gradient compression and local SGD only
when chosen ('node-limited dispatch', 'onebit compression', 'local SGD tau 12'). A leaf module: it imports nothing from the package, so that planning
(compare's `layout` column) can use it as well as the reports and the CLI.
"""
from __future__ import annotations

from typing import Any, Mapping


def _fields(layout: Any) -> Mapping:
    """A mapping of the layout's fields from a frame row, a dict or a Layout spec (its model_dump)."""
    if hasattr(layout, "model_dump"):
        return layout.model_dump()
    return layout


def layout_label(layout: Any) -> str:
    """Short text of one layout, e.g. 'tp 8 pp 8 dp 16 vpp 2 mb 1 zero 1 selective interleaved'.

    `layout`: anything with tp, pp, dp, cp, ep, vpp, micro_batch, zero, recompute and schedule by name (a search
    frame row, a Layout, a Layout's model_dump()); a schedule of None is the default one (1f1b, interleaved with
    vpp > 1)."""
    r = _fields(layout)
    vpp = int(r["vpp"])
    parts = [f"tp {int(r['tp'])}", f"pp {int(r['pp'])}", f"dp {int(r['dp'])}"]
    if int(r["cp"]) > 1:
        parts.append(f"cp {int(r['cp'])}")
    if int(r["ep"]) > 1:
        parts.append(f"ep {int(r['ep'])}")
    if vpp > 1:
        parts.append(f"vpp {vpp}")
    schedule = r["schedule"] if r["schedule"] is not None else ("interleaved" if vpp > 1 else "1f1b")
    parts += [f"mb {int(r['micro_batch'])}", f"zero {int(r['zero'])}", str(r["recompute"]), str(schedule)]
    if str(r.get("moe_dispatch", "flat")) != "flat":
        parts.append(f"{r['moe_dispatch']} dispatch")
    if str(r.get("dp_compression", "none")) != "none":
        parts.append(f"{r['dp_compression']} compression")
    if int(r.get("local_sgd_tau", 1) or 1) > 1:
        parts.append(f"local SGD tau {int(r['local_sgd_tau'])}")
    off = ", ".join(f"{k.removeprefix('offload_')} {r[k]}" for k in OFFLOAD_FIELDS
                    if k in r and r[k] is not None and str(r[k]) not in ("none", "0"))
    return " ".join(parts) + (f" offload {off}" if off else "")


#: The offload fields a label names when they are set (specs.layout offload tiers).
OFFLOAD_FIELDS = ("offload_optimizer", "offload_params", "offload_activations")
