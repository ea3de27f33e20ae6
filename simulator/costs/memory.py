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


def mla_saved_elements_per_token(heads, q_lora_rank, kv_lora_rank, qk_head_dim, v_head_dim):
    """Elements per token multi-head latent attention keeps for its backward, beyond the norm output it reads:
    (per-head part, split over TP: the query and key after RoPE, a x d_qk each, and the value, a x d_v, saved by the
    attention kernel; of which GEMM inputs: the attention output, a x d_v, saved by the output projection), and
    (latent part, not split: the q and kv down-projection outputs saved by their RMSNorms, q_lora + kv_lora, and the
    normed latents saved by the up-projections, q_lora + kv_lora, all GEMM inputs but the norm inputs).
    Returns (per_head_stored, per_head_gemm_inputs, latent_stored, latent_gemm_inputs), the GEMM inputs not counted
    in the stored parts (they may be saved in FP8). Without a q down-projection
    (q_lora_rank None) the query comes from the layer input directly. RoPE and the q/k concatenations keep nothing
    (rotation needs only the frequencies).

    Source: DeepSeek-V2 (arXiv 2405.04434) sec. 2.1.2-2.1.3 eqs. 9-14 (the MLA projections and norms); Megatron-Core
    megatron/core/transformer/multi_latent_attention.py (MLASelfAttention.get_query_key_value_tensors: q/kv down
    projections, q_layernorm/kv_layernorm, up projections, RoPE on the 64-wide parts, concatenated q and k); the
    same tensors in SimuMax simumax/core/transformer/dense_module.py (MLAAttention, MLACoreAttention act info)."""
    q_lora = 0.0 if q_lora_rank is None else float(q_lora_rank)
    per_head = heads * (2.0 * qk_head_dim + v_head_dim)
    return per_head, heads * v_head_dim, q_lora + kv_lora_rank, q_lora + kv_lora_rank


def activation_bytes_per_layer(seq, micro_batch, hidden, heads, head_dim, kv_heads, mlp_act_elems, tp, sp, recompute,
                               flash, act_bytes=2.0, gemm_input_bytes=None, fc2_input_elems=0.0, mla_elems=None,
                               dropout=True):
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
    `mlp_act_elems` that is the fc2 input. `mla_elems` (mla_saved_elements_per_token) replaces the q/k/v/output
    count for multi-head latent attention: its per-head part is split tp ways, its latent part is not (the down
    projections run on the whole sequence on every TP rank). `dropout` False (models trained without dropout,
    ModelSpec.trains_with_dropout): no dropout masks, 2sbh less outside the TP regions and, without flash
    attention, only the softmax output (2 bytes per s x s entry) in the attention core.

    Source: Korthikanti et al. 2022 (arXiv 2205.05198) sec. 4.1 and Table 2; Micikevicius et al. 2022 (arXiv
    2209.05433) sec. 4 (FP8-saved GEMM inputs).
    """
    sbh = seq * micro_batch * hidden * (act_bytes / 2.0)
    # Outside the TP regions (split only with SP): LN inputs (4h), QKV and MLP inputs (4h), dropout masks (2h).
    r = 1.0 if gemm_input_bytes is None else gemm_input_bytes / act_bytes
    outside = ((6.0 if dropout else 4.0) + 4.0 * r) * sbh
    attn_w = heads * head_dim / hidden
    kv_w = kv_heads * head_dim / hidden
    # Inside the TP regions: Q, K, V, attention output and the MLP activation input/output, 2 bytes each.
    attn_inside = 2.0 * attn_w + 4.0 * kv_w + 2.0 * attn_w * r
    latent = 0.0
    if mla_elems is not None:
        heads_stored, heads_gemm, lat_stored, lat_gemm = mla_elems
        attn_inside = 2.0 * (heads_stored + r * heads_gemm) / hidden
        latent = sbh * 2.0 * (lat_stored + r * lat_gemm) / hidden
    inside = sbh * (attn_inside + 2.0 * (mlp_act_elems - (1.0 - r) * fc2_input_elems) / hidden)
    # attention core: softmax output (2), dropout mask (1), dropout output (2) per s x s entry per head
    core = (5.0 if dropout else 2.0) * heads * seq * seq * micro_batch * (act_bytes / 2.0)
    core = np.where(flash, 0.0, core)
    spf = np.where(sp, tp, 1)
    full = (outside / spf) + latent + (inside + core) / tp
    selective = (outside / spf) + latent + inside / tp
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


def distinct_shapes_bytes(shapes, present, elem_bytes):
    """Bytes of one buffer per distinct (rows, cols) shape among `shapes` whose `present` flag is set: a shape equal
    to an earlier present one is counted once. Shapes and flags are arrays over layouts (or scalars).

    Source: Transformer Engine transformer_engine/pytorch/module/base.py get_dummy_wgrad (a dict keyed by shape and
    dtype caches one tensor per shape)."""
    return DistinctShapes(shapes, elem_bytes).bytes(present)


class DistinctShapes:
    """distinct_shapes_bytes in two steps, for several sets of `present` flags over the same shapes (the rank kinds
    of a layout): what depends on the shapes alone (each shape's bytes, the pairs equal on some row) once, then
    `bytes(present)` per set. The same numbers as distinct_shapes_bytes."""

    def __init__(self, shapes, elem_bytes):
        self.sizes = [r * c * elem_bytes for r, c in shapes]
        self.same = []                                    # per shape: (earlier shape, where both are equal)
        for i, (r, c) in enumerate(shapes):
            pairs = []
            for j, (r2, c2) in enumerate(shapes[:i]):
                same = _equal_where_any(r2, r)
                if same is not None:                      # a pair of shapes that differ on every row adds nothing
                    same = _equal_where_any(c2, c, same)
                if same is not None:
                    pairs.append((j, same))
            self.same.append(pairs)

    def bytes(self, present):
        """Bytes of the distinct shapes whose `present` flag is set (one flag per shape, arrays or scalars)."""
        total = 0.0
        for i, on in enumerate(present):
            dup = False
            for j, same in self.same[i]:
                dup = dup | (np.asarray(present[j], bool) & same)
            total = total + np.where(np.asarray(on, bool) & ~dup, self.sizes[i], 0.0)
        return total


def _equal_where_any(a, b, within=None):
    """a == b (arrays or scalars), and-ed with `within`; None where that is false on every row (the pair cannot
    be a duplicate anywhere: distinct_shapes_bytes skips its array passes)."""
    eq = np.asarray(a) == b
    if within is not None:
        eq = within & eq
    return eq if eq.any() else None
