"""Per-device memory: model states under ZeRO, activations, logits, buffers.

All functions are pure and accept numpy arrays or scalars (one layout or a million).
"""
from __future__ import annotations

import numpy as np

#: Mixed-precision Adam state per parameter held by the optimizer: fp32 master weights, m and v
#: (Rajbhandari et al. 2020, ZeRO, sec. 3.1: K = 12).
ADAM_STATE_BYTES_PER_PARAM = 12.0


def model_state_bytes(params, weight_bytes, grad_bytes, zero, dp_shard):
    """Weights + gradients + Adam state for `params` parameters held by one device.

    ZeRO-1 shards the optimizer state over `dp_shard` ranks, ZeRO-2 also the gradients, ZeRO-3 also the
    weights (Rajbhandari et al. 2020, Fig. 1). Returns (weights, grads, optimizer) in bytes.
    Source: ZeRO, arXiv 1910.02054, sec. 5.
    """
    zero = np.asarray(zero)
    w = params * weight_bytes / np.where(zero >= 3, dp_shard, 1)
    g = params * grad_bytes / np.where(zero >= 2, dp_shard, 1)
    o = params * ADAM_STATE_BYTES_PER_PARAM / np.where(zero >= 1, dp_shard, 1)
    return w, g, o


def activation_bytes_per_layer(seq, micro_batch, hidden, heads, head_dim, kv_heads, mlp_act_elems, tp, sp, recompute,
                               flash, act_bytes=2.0, gemm_input_bytes=None, fc2_input_elems=0.0):
    """Activation memory of one transformer layer kept for backward, one micro-batch, one device.

    Generalises Korthikanti et al. 2022 (arXiv 2205.05198) Table 2 to GQA and gated MLPs. For GPT
    (kv = heads, head_dim*heads = h, 4h GELU MLP) it reduces to s*b*h*(34 + 5*a*s/h) without parallelism,
    s*b*h*(10 + 24/t + 5*a*s/(h*t)) with TP, s*b*h/t*(34 + 5*a*s/h) with TP+SP, 34*s*b*h/t with selective
    recompute (the attention core is recomputed) and 2*s*b*h (/t with SP) with full recompute.
    `mlp_act_elems` is the number of elements per token the MLP stores between its GEMMs: the activation
    function's input and output, f + f for GELU (8h for GPT), 2f + f for gated MLPs, top_k x that for MoE. Flash attention stores no s x s matrices. `seq` is the per-device sequence (s/cp).
    `gemm_input_bytes` (default act_bytes): bytes per element of the tensors saved as inputs of the QKV, output
    projection, fc1 and fc2 GEMMs. FP8 training with Transformer Engine saves those in FP8, one byte (TE
    `Linear`/`LayerNormLinear` keep the FP8-cast input for the weight-gradient GEMM; Micikevicius et al. 2022,
    "FP8 Formats for Deep Learning", arXiv 2209.05433, sec. 4); `fc2_input_elems` is the part of
    `mlp_act_elems` that is the fc2 input.

    Source: Korthikanti et al. 2022 (arXiv 2205.05198) sec. 4.1 and Table 2; Micikevicius et al. 2022 (arXiv
    2209.05433) sec. 4 (FP8-saved GEMM inputs).
    """
    sbh = seq * micro_batch * hidden * (act_bytes / 2.0)
    # Outside the TP regions (split only with SP): LN inputs (4h), QKV and MLP inputs (4h), dropout masks (2h).
    r = 1.0 if gemm_input_bytes is None else gemm_input_bytes / act_bytes
    outside = (6.0 + 4.0 * r) * sbh
    attn_w = heads * head_dim / hidden
    kv_w = kv_heads * head_dim / hidden
    # Inside the TP regions: Q, K, V, attention output and the MLP activation input/output, 2 bytes each.
    inside = sbh * (2.0 * attn_w + 4.0 * kv_w + 2.0 * attn_w * r
                    + 2.0 * (mlp_act_elems - (1.0 - r) * fc2_input_elems) / hidden)
    # attention core: softmax output (2), dropout mask (1), dropout output (2) per s x s entry per head
    core = 5.0 * heads * seq * seq * micro_batch * (act_bytes / 2.0)
    core = np.where(flash, 0.0, core)
    spf = np.where(sp, tp, 1)
    full = (outside / spf) + (inside + core) / tp
    selective = (outside / spf) + inside / tp
    minimal = 2.0 * sbh / spf
    rc = np.asarray(recompute)
    return np.where(rc == 2, minimal, np.where(rc == 1, selective, full))


def logits_bytes(seq, micro_batch, vocab, tp):
    """fp32 logits and their gradient of one micro-batch on the last stage: 4*s*b*V/t bytes for the
    logits (Korthikanti et al. 2022, sec. 4.1 names 4sbv/t) and as much again for the softmax gradient.

    Source: Korthikanti et al. 2022 (arXiv 2205.05198) sec. 4.1."""
    return 2.0 * 4.0 * seq * micro_batch * vocab / tp


def zero3_gathered_params(unit_params, next_params=None, prefetch_bucket_params=None, max_live_params=None):
    """Parameters a ZeRO-3 rank holds gathered (unsharded) at once, beyond its shard: the gather unit computing and
    what is prefetched after it. The one definition of ZeRO-3's gather buffer (with or without offload).

    - FSDP semantics (`prefetch_bucket_params` None: PyTorch FSDP / FSDP2, Megatron-FSDP, ZeRO-3 of other stacks):
      the unit (the framework's FSDP unit: a transformer block, or the embedding / output module) and the next
      one, issued before the current one computes: unit + next.
    - DeepSpeed ZeRO-3: the submodule computing (always gathered) and the following parameters in trace order,
      prefetched whole until their count reaches min(stage3_prefetch_bucket_size, stage3_max_live_parameters -
      gathered): the loop adds a parameter before it checks, so ceil(limit / next) of them; nothing when the unit
      alone reaches max_live_parameters.
    The prefetch exists where the result exceeds the unit (zero3_prefetches).

    `unit_params`: the largest unit (a layer for FSDP; a leaf submodule's weight, a layer's largest tensor, for
    DeepSpeed; or the embedding / output where larger); `next_params`: the units that follow it (default: as large);
    scalars or arrays.
    Source: Zhao et al. 2023 (PyTorch FSDP, arXiv 2304.11277) sec. 3.3 (forward/backward prefetch of the next
    unit); torch FSDP2 implicit prefetch; DeepSpeed deepspeed/runtime/zero/partitioned_param_coordinator.py
    fetch_sub_module (max_params_to_prefetch = min(max_live - available, prefetch bucket); while numel_prefetching
    < max: add the next parameter) and zero/config.py (defaults 5e7 and 1e9)."""
    unit = np.asarray(unit_params, dtype=float)
    nxt = unit if next_params is None else np.asarray(next_params, dtype=float)
    if prefetch_bucket_params is None:
        return unit + nxt
    live = np.inf if max_live_params is None else float(max_live_params)
    limit = np.minimum(float(prefetch_bucket_params), live - unit)
    prefetched = np.where(limit > 0, np.ceil(limit / np.maximum(nxt, 1.0)) * nxt, 0.0)
    return unit + prefetched


def zero3_prefetches(unit_params, next_params=None, prefetch_bucket_params=None, max_live_params=None):
    """Where ZeRO-3 prefetches at all (zero3_gathered_params holds more than the unit computing): always with FSDP
    semantics; with DeepSpeed not when one unit reaches stage3_max_live_parameters.
    Source: zero3_gathered_params."""
    unit = np.asarray(unit_params, dtype=float)
    return zero3_gathered_params(unit, next_params, prefetch_bucket_params, max_live_params) > unit
