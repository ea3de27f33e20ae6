"""Where every number of an estimate comes from: for each field of `StepEstimate.to_dict()` (step time, MFU, HFU,
tokens/s, TFLOP/s, micro-batches, bubble fraction, every row of `time_breakdown_s` and `memory`, the stage split),
the named quantity it sums, the functions that compute it and their `Source:` docstring lines.

Data-driven: `REGISTRY` maps each field to its functions; the quantity is the field's metadata in
simulator.results (TimeBreakdown, MemoryBreakdown, StepEstimate) and the source is read from each function's
docstring, so the view follows the code. `explain(result)` builds rows (no printing; the CLI renders them).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, fields

from .. import metrics
from ..costs import (communication, flops, framework_effects, host, layer, layer_mix, memory, model_ops, offload,
                     optimizer, params, stage)
from ..pipeline import closed_form, split
from ..results import MEMORY_KEYS, MEMORY_QUANTITIES, TIME_CATEGORIES, TIME_QUANTITIES, StepEstimate, TierMemory
from .compose import evaluate


@dataclass(frozen=True)
class Entry:
    """One explained field: its dotted path in to_dict(), its unit and the functions that compute it."""

    path: str
    unit: str
    functions: tuple


#: Functions behind each step-time category.
TIME_FUNCTIONS = {
    "compute": (layer.attention_projections_s, layer.mlp_s, layer.attention_core_s, layer.local_attention_factors,
                stage.logits_s, layer_mix.kind_moe_excess, layer_mix.layer_kind_delta),
    "elementwise": (layer.elementwise_s, model_ops.model_ops_s, layer.mla_rope_assembly_s),
    "fp8_cast": (layer.fp8_cast_s, layer.int8_quantise_s),
    "host": (layer.host_time_s, layer.host_bound_passes_s, host.layer_kernel_host, host.synced_pass_s,
             layer.layer_costs, stage.rank_host_s, stage.head_host_s, stage.tail_host_s,
             stage.layer_lead_s, stage.tail_lead_s, stage.exposed_tail_host_s, stage.pass_host_s),
    "recompute": (layer.layer_costs, layer.recompute_pass_s, layer.attention_core_s, model_ops.module_replay_s),
    "tp_comm": (communication.tp_exposed_s,),
    "cp_comm": (communication.cp_exposed_s,),
    "ep_comm": (communication.ep_exposed_s,),
    "pp_comm": (communication.p2p_send_s,),
    "bubble": (closed_form.pipeline_time_s,),
    "dp_comm": (communication.dp_step_comm_s, communication.data_parallel_groups),
    "offload": (offload.exposed_offload_s, offload.param_fetch_s, offload.grad_offload_s, offload.activation_copy_s,
                offload.offload_update_s),
    "optimizer": (optimizer.optimizer_step_time_s, optimizer.optimizer_step_bytes, optimizer.owned_params),
    "overhead": (stage.step_overhead_s,),
}
#: Functions behind each memory kind.
MEMORY_FUNCTIONS = {
    "weights": (memory.model_state_bytes, params.rank_params),
    "grads": (memory.model_state_bytes, params.rank_params),
    "optimizer": (memory.model_state_bytes, params.rank_params),
    "activations": (memory.activation_bytes_per_layer, stage.activation_bytes_of_layer,
                    closed_form.inflight_microbatches, framework_effects.logits_peak_bytes,
                    stage.recompute_working_set_bytes),
    "reserved": (stage.context_bytes,),
    "total": (stage.memory_columns,),
    "capacity": (stage.memory_columns,),
}

REGISTRY = (
    Entry("step_time_s", "s", (evaluate,)),
    Entry("mfu", "", (metrics.mfu, metrics.model_flops_per_step, flops.causal_attention_pairs)),
    Entry("hfu", "", (metrics.hfu, metrics.hardware_flops_per_step, metrics.executed_attention_fraction)),
    Entry("tokens_per_s", "tokens/s", (metrics.tokens_per_s,)),
    Entry("tflops_per_device", "TFLOP/s", (metrics.tflops_per_device,)),
    Entry("num_micro_batches", "", (closed_form.num_micro_batches,)),
    Entry("bubble_fraction", "", (closed_form.pipeline_time_s,)),
    *(Entry(f"time_breakdown_s.{k}", "s", TIME_FUNCTIONS[k]) for k in TIME_CATEGORIES),
    *(Entry(f"memory.{k}_bytes", "B", MEMORY_FUNCTIONS[k]) for k in (*MEMORY_KEYS, "total", "capacity")),
    *(Entry(f"memory_tiers.{k}_bytes_per_node", "B", (offload.offload_memory, offload.tier_columns))
      for k in ("host", "nvme")),
    *(Entry(f"stage_layers.{k}", "layers", (split.stage_split, split.chunk_layers)) for k in
      ("first", "middle", "last")),
)

_STEP_QUANTITIES = {f.name: f.metadata["quantity"] for f in fields(StepEstimate) if "quantity" in f.metadata}
_TIER_QUANTITIES = {f.name: f.metadata["quantity"] for f in fields(TierMemory)}
_STAGE_QUANTITY = "layers held by the {} pipeline rank (summed over its model chunks)"


def quantity_of(path: str) -> str:
    """The named quantity a field sums (simulator.results metadata)."""
    head, _, key = path.partition(".")
    if head == "time_breakdown_s":
        return TIME_QUANTITIES[key]
    if head == "memory":
        return MEMORY_QUANTITIES[key.removesuffix("_bytes")]
    if head == "memory_tiers":
        return _TIER_QUANTITIES[key]
    if head == "stage_layers":
        return _STAGE_QUANTITY.format("busiest middle" if key == "middle" else key)
    return _STEP_QUANTITIES[path]


def source_of(fn) -> str:
    """The `Source:` paragraph of a function's docstring, on one line ('' if it has none)."""
    lines, found = [], False
    for line in (inspect.getdoc(fn) or "").splitlines():
        text = line.strip()
        if not found and text.startswith("Source:"):
            found, text = True, text[len("Source:"):].strip()
        elif found and not text:
            break
        if found:
            lines.append(text)
    return " ".join(lines).strip()


def function_name(fn) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _value(d: dict, path: str):
    v = d
    for part in path.split("."):
        v = v[part]
    return v


def explain(result: StepEstimate) -> list[dict]:
    """One row per explained field of `result.to_dict()`: path, value, unit, quantity and functions (name and
    source), in report order."""
    d = result.to_dict()
    return [{"field": e.path, "value": _value(d, e.path), "unit": e.unit, "quantity": quantity_of(e.path),
             "functions": [{"name": function_name(fn), "source": source_of(fn)} for fn in e.functions]}
            for e in REGISTRY]
