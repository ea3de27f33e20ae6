"""Human messages for the reason bits of infeasible layouts, with the values that break each rule."""
from __future__ import annotations

from ..units import GIGA
from . import step as S


def describe(mask: int, model, training, num_devices: int, row: dict, result: dict | None = None) -> list[str]:
    """Every reason of one layout, as sentences naming the values and the rule."""
    tp, pp, dp, ep, cp, vpp, mb = (int(row[k]) for k in ("tp", "pp", "dp", "ep", "cp", "vpp", "micro_batch"))
    out = []
    if mask & S.R_WORLD:
        out.append(f"tp({tp}) * pp({pp}) * dp({dp}) * cp({cp}) = {tp * pp * dp * cp} != devices ({num_devices})")
    if mask & S.R_HEADS:
        out.append(f"tp ({tp}) must divide the attention heads ({model.num_heads})")
    if mask & S.R_KV:
        out.append(f"tp ({tp}) and the key/value heads ({model.kv_heads}) must divide one another")
    if mask & S.R_FFN:
        ffn = model.moe.expert_ffn_hidden_size if model.moe else model.ffn_hidden_size
        out.append(f"tp ({tp}) must divide the FFN width ({model.ffn_hidden_size}"
                   + (f", expert {ffn})" if model.moe else ")"))
    if mask & S.R_CHUNKS:
        out.append(f"pp({pp}) * vpp({vpp}) = {pp * vpp} pipeline chunks exceed the {model.num_layers} layers")
    if mask & S.R_BATCH:
        out.append(f"global batch ({training.global_batch}) is not a multiple of micro_batch({mb}) * dp({dp}) "
                   f"= {mb * dp}")
    if mask & S.R_EP:
        if model.moe is None:
            out.append(f"ep ({ep}) > 1 needs an MoE model; '{model.name}' is dense")
        else:
            out.append(f"ep ({ep}) must divide dp ({dp}) and the number of experts ({model.moe.num_experts})")
    if mask & S.R_CP:
        out.append(f"cp ({cp}) must divide the sequence length ({training.seq_len})")
    if mask & S.R_INTERLEAVE:
        m = training.global_batch // max(1, mb * dp)
        out.append(f"interleaved schedule needs the micro-batch count ({m}) to be a multiple of pp ({pp})")
    if mask & S.R_VPP:
        out.append(f"vpp ({vpp}) > 1 needs pp > 1 and the interleaved schedule (and vice versa)")
    if mask & S.R_MEMORY:
        if result is not None:
            out.append(f"needs {result['mem_total_bytes'] / GIGA:,.1f} GB per device, more than the "
                       f"{result['mem_capacity_bytes'] / GIGA:,.1f} GB available")
        else:
            out.append("does not fit in device memory")
    return out
