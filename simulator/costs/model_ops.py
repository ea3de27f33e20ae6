"""Memory-bound work a model's own features add to a layer where the framework runs them as eager PyTorch ops
instead of inside a fused kernel: the clamped GLU (GPT-OSS), the routed experts' output bias (GPT-OSS), RoPE with a
YaRN temperature (GPT-OSS), and the small modules Megatron-Core replays in the backward (--recompute-modules
layernorm, moe_act); and the per-head query/key RMSNorms (Qwen3), norm kernels of their own in every framework.

Each eager op is a separate kernel that reads its inputs from HBM and writes its output, and autograd runs the
gradient of each as kernels of its own. The byte counts below are counted from the code paths the rows ran,
NVIDIA/Megatron-LM at 0d8e0714 (Megatron-Bridge v0.2.0, 25.11 container), b0cc2706 (v0.3.0, 26.02) and d7288711
(v0.4.0, 26.04), which are the same there, and from PyTorch's autograd formulas (tools/autograd/derivatives.yaml:
clamp -> clamp_backward = where(mask, grad, 0); mul -> grad x other reduced to the broadcast shape (sum_to_size);
cat -> narrow views; split / chunk -> cat of the gradients; two gradients reaching one tensor -> an add). An
element of the activation dtype counts `a` bytes (2 for bf16), a bool mask 1 byte; the tiny broadcast operands
(one bias row, one probability per row, the s x d cos / sin tables) are left out.
"""
from __future__ import annotations

import numpy as np

from ..specs.layout import MOE_DISPATCH_CODES


def clamped_glu_bytes(a: float) -> tuple[float, float]:
    """(forward, backward) HBM bytes per expert-FFN element (per fe of a routed token copy) of Megatron-Core's
    clamp in front of its fused weighted quick-GEGLU: forward x_glu.clamp(max) (read, write: 2a), x_linear.clamp(
    -v, v) (2a) and torch.cat of the halves (read and write 2 fe: 4a) = 8a; backward the clamp gradients, x_glu
    where(self <= max, grad, 0) (compare: a + 1, where: 1 + a + a = 3a + 2) and x_linear where((self >= min) &
    (self <= max), grad, 0) (two compares 2a + 2, logical_and 3, where 2a + 1 = 4a + 6), and the chunk's gradient,
    a cat of both halves (4a): 11a + 8. bf16: 16 and 30 bytes.

    Source: megatron/core/fusions/fused_bias_geglu.py weighted_bias_quick_geglu_impl (clamp_value: chunk, two
    clamps, torch.cat, then WeightedQuickGeGLUFunction) called by moe/experts.py TEGroupedMLP.bias_act_func with
    bias_activation_fusion (GPT-OSS provider: bias_activation_fusion True, activation_func_clamp_value 7.0)."""
    return 8.0 * a, 11.0 * a + 8.0


def expert_bias_bytes(a, probs_bytes=None) -> tuple:
    """(forward, backward) HBM bytes per hidden element of a routed token copy of TEGroupedMLP._apply_bias, the
    routed experts' fc2 bias added after the grouped GEMM (linear_fc2 skip_bias_add True), with routing
    probabilities of `probs_bytes` (default the activation's) and c = max(a, probs_bytes) the promoted dtype: per
    local expert b x p (write c), t + b x p (read a + c, write c), torch.cat of the chunks (2c) and, where c != a,
    the cast back (c + a) = 5c + a (+ c + a); backward the cast's gradient (a + c) and the cast of t's gradient
    (c + a) where c != a, the product's two gradients, grad x p summed over the rows for b and grad x b summed over
    the hidden dimension for p (each write c and read 2c: 6c), and the split's gradient, a cat of the per-expert
    gradients (2a). bf16 probabilities: 12 and 16 bytes; fp32 (DeepEP / HybridEP dispatchers): 28 and 40.

    Source: moe/experts.py TEGroupedMLP._apply_bias (t + b * p per torch.split chunk, torch.cat, .to(dtype));
    moe/token_dispatcher.py _HybridEPManager / _DeepepManager (token_probs.float(): "HybridEP only supports float32
    probs"); the alltoall dispatcher keeps the router's dtype (moe_router_dtype unset: the activation's)."""
    p = a if probs_bytes is None else probs_bytes
    c = np.maximum(a, p)
    cast = np.where(c != a, c + a, 0.0)
    return 5.0 * c + a + cast, 6.0 * c + 2.0 * a + 2.0 * cast


def unfused_rope_bytes(a: float) -> tuple[float, float]:
    """(forward, backward) HBM bytes per element of q and k of Megatron-Core's unfused RoPE
    (_apply_rotary_pos_emb_bshd, rotary over the whole head): rotate_half (-x2: a, cat: 2a), t x cos (2a),
    rotate_half(t) x sin (2a), their sum (3a) and the final torch.cat with the empty pass-through part (2a) = 12a;
    backward the two products' gradients (4a), neg (a), the chunk's cat (2a), adding the two gradients of t (3a),
    and the empty pass-through slice's gradient, a zero tensor (a) added to them (3a) = 14a. bf16: 24 and 28
    bytes. A fused RoPE kernel (TE fused_apply_rotary_pos_emb) reads and writes each element once per pass.

    Source: megatron/core/models/common/embeddings/rope_utils.py apply_rotary_pos_emb: with apply_rope_fusion
    and mscale != 1.0 it warns "mscale ... is not supported by TE's fused RoPE. Using unfused implementation.";
    attention.py passes mscale = _yarn_get_concentration_factor_from_config (yarn_rotary_pos_embedding.py:
    0.1 ln(32) + 1 = 1.35 for GPT-OSS's factor 32 with yarn_mscale unset)."""
    return 12.0 * a, 14.0 * a


def qk_norm_bytes(a: float) -> tuple[float, float]:
    """(forward, backward) HBM bytes per element of q and k of a per-head RMSNorm on the queries and keys
    (ModelSpec.qk_norm): forward read the head and write it normalised (2a); backward read the output gradient and
    the saved input, write the input gradient (3a). The fp32 rsigma per head row and the head_dim-wide weight-gradient
    partials are left out. bf16: 4 and 6 bytes.

    Source: megatron/core/transformer/attention.py SelfAttention.get_query_key_value_tensors (after the QKV split,
    query = q_layernorm(query) on [s, b, heads / tp, head_dim] and key = k_layernorm(key) on the rank's key groups;
    qk_layernorm builds both as TENorm over hidden_size_per_attention_head); Transformer Engine RMSNorm (forward
    kernel: read x, write y, save rsigma; backward kernel: read dy and x, write dx, then the dgamma finalize);
    Megatron-Bridge Qwen3ModelProvider / Qwen3MoEModelProvider qk_layernorm True; Hugging Face modeling_qwen3.py
    (q_norm, k_norm: Qwen3RMSNorm(head_dim))."""
    return 2.0 * a, 3.0 * a


def qk_norm_elements(sz) -> object:
    """Elements of q and k per layer pass one device normalises: M tokens x (heads / tp + max(1, kv_heads / tp)) x
    head_dim (Megatron-Core gives each TP rank at least one key group); 0 without qk_norm or with MLA (whose latent
    norms are fused into its up-projections: costs.layer.mla_latent_norm_elements).

    Source: see qk_norm_bytes."""
    m = sz.model
    if not m.qk_norm or m.mla is not None:
        return 0.0
    tp = np.asarray(sz.tp, dtype=float)
    heads = float(m.num_heads) / tp + np.maximum(float(m.kv_heads) / tp, 1.0)
    return sz.tokens * heads * float(m.dim_per_head)


def moe_act_replay_bytes(a: float, gated: bool, eager_clamp: bool) -> float:
    """HBM bytes per expert-FFN element of a routed copy that replaying the experts' activation in the backward
    moves (--recompute-modules moe_act: CheckpointWithoutOutput around bias_act_func): the fused weighted
    activation's forward, read the fc1 output ((gate + 1) elements with the write) = 3a gated, 2a plain, plus the
    eager clamp's forward (clamped_glu_bytes) where it runs.

    Source: megatron/core/transformer/moe/experts.py TEGroupedMLP.forward (activation_recompute: the checkpoint
    replays bias_act_func before linear_fc2's backward)."""
    return (3.0 if gated else 2.0) * a + (clamped_glu_bytes(a)[0] if eager_clamp else 0.0)


def layernorm_replay_bytes(a: float) -> float:
    """HBM bytes per hidden element of a token that replaying the pre-MLP norm in the backward moves (--recompute-
    modules layernorm): one norm forward, read and write (2a). The attention's input norm is fused into the QKV
    linear under Transformer Engine (TELayerNormColumnParallelLinear; input_layernorm an IdentityOp) and is not
    replayed.

    Source: megatron/core/transformer/transformer_layer.py (recompute_input_layernorm only when input_layernorm is
    not an IdentityOp; recompute_pre_mlp_layernorm)."""
    return 2.0 * a


def _flex_dispatch(sz):
    """Layouts whose MoE dispatch is the flex dispatcher's (DeepEP / HybridEP: layout moe_dispatch node-limited),
    which carries the routing probabilities in fp32."""
    code = sz.table.moe_dispatch if sz.table.moe_dispatch is not None else np.zeros(len(sz.table), np.int64)
    return np.asarray(code) == MOE_DISPATCH_CODES["node-limited"]


def _eager_rope(m, fusions) -> bool:
    """True where the framework runs RoPE unfused for this model: a YaRN temperature other than 1 under
    fusions.scaled_rope 'eager' (MLA models rotate their own 64-wide parts: not counted here)."""
    return (m.yarn_mscale is not None and m.yarn_mscale != 1.0 and fusions.scaled_rope == "eager"
            and m.mla is None)


def model_ops_s(sz) -> tuple:
    """(forward, backward) time of one layer's model-feature ops on one device, one micro-batch (arrays over
    the layouts): the per-head q/k RMSNorms (qk_norm_elements x qk_norm_bytes) where the model has them, in any
    framework; the clamped GLU on the routed copies' expert FFN elements (M k fe / tp x the busiest rank's load)
    where the framework clamps eagerly, the expert output bias on their hidden elements (M k etp h / tp x load)
    where it adds it per expert, both averaged over the MoE share of the layers, and the unfused RoPE on q and k
    (M (heads + kv heads) d / tp) for a YaRN temperature other than 1 where the framework cannot fuse it; memory
    bound at the device's elementwise bandwidth. 0 for a model without these features or a framework that fuses them.

    Source: the byte counts above; costs.compute KernelRates.stream_s (measured bandwidth fraction)."""
    m, fw = sz.model, sz.framework
    a = sz.act_bytes
    fwd_b = bwd_b = 0.0
    if m.qk_norm and m.mla is None:
        f, b = qk_norm_bytes(a)
        qk = qk_norm_elements(sz)
        fwd_b, bwd_b = fwd_b + qk * f, bwd_b + qk * b
    fu = fw.fusions if fw is not None else None
    if fu is not None and m.moe is not None and sz.moe_fraction > 0.0:
        fe, k = float(m.moe.expert_ffn_hidden_size), float(m.moe.top_k)
        r = sz.moe_load.gemm_factor if sz.moe_load is not None else 1.0
        copies = sz.tokens * k * r / sz.tp
        if m.glu_clamp is not None and fu.glu_clamp == "eager":
            f, b = clamped_glu_bytes(a)
            fwd_b, bwd_b = fwd_b + sz.moe_fraction * copies * fe * f, bwd_b + sz.moe_fraction * copies * fe * b
        if m.linear_bias and fu.expert_bias == "eager-per-expert":
            f, b = expert_bias_bytes(a, np.where(_flex_dispatch(sz), 4.0, a))
            hid = copies * sz.etp * sz.hidden
            fwd_b, bwd_b = fwd_b + sz.moe_fraction * hid * f, bwd_b + sz.moe_fraction * hid * b
    if fu is not None and _eager_rope(m, fu):
        f, b = unfused_rope_bytes(a)
        qk = sz.tokens * (float(m.num_heads) + float(m.kv_heads)) * float(m.dim_per_head) / sz.tp
        fwd_b, bwd_b = fwd_b + qk * f, bwd_b + qk * b
    if np.all(np.asarray(fwd_b) == 0.0) and np.all(np.asarray(bwd_b) == 0.0):
        return 0.0, 0.0
    return sz.kernel.stream_s(fwd_b), sz.kernel.stream_s(bwd_b)


def module_replay_s(sz) -> object:
    """Backward time of replaying the framework's recompute modules (RecomputeSpec.replayed_modules) in one layer,
    one micro-batch: 'moe_act' the routed experts' activation (moe_act_replay_bytes on M k fe / tp x load
    elements, over the MoE share of the layers), 'layernorm' the pre-MLP norm (layernorm_replay_bytes on M h / sp
    elements). 0 without them.

    Source: see moe_act_replay_bytes and layernorm_replay_bytes."""
    m, fw = sz.model, sz.framework
    mods = fw.recompute.replayed_modules if fw is not None else ()
    if not mods:
        return 0.0
    a, nbytes = sz.act_bytes, 0.0
    if "moe_act" in mods and m.moe is not None and sz.moe_fraction > 0.0:
        fe, k = float(m.moe.expert_ffn_hidden_size), float(m.moe.top_k)
        r = sz.moe_load.gemm_factor if sz.moe_load is not None else 1.0
        eager = m.glu_clamp is not None and fw.fusions.glu_clamp == "eager"
        nbytes = nbytes + sz.moe_fraction * sz.tokens * k * r / sz.tp * fe * moe_act_replay_bytes(
            a, bool(m.gated_mlp), eager)
    if "layernorm" in mods:
        nbytes = nbytes + sz.tokens * sz.hidden / sz.sp_factor * layernorm_replay_bytes(a)
    return sz.kernel.stream_s(nbytes)


#: Kernels the eager ops dispatch per layer pass (host time, costs.host), counted from the same code paths.
#: Clamped GLU: forward two clamps and the cat (3); backward the x_glu compare and where (2), the x_linear two
#: compares, logical_and and where (4), the chunk's cat (1) = 7.
CLAMP_KERNELS = (3.0, 7.0)
#: Expert bias, per local expert: forward b x p and the add (2), backward the product's two gradients, each a
#: multiply and a sum (4); plus one cat each way (the chunks, the split's gradient).
EXPERT_BIAS_KERNELS_PER_EXPERT = (2.0, 4.0)
EXPERT_BIAS_KERNELS = (1.0, 1.0)
#: Unfused RoPE per rotated tensor (q, k): forward the cos and sin tables (cos / sin, x mscale, cast: 6), neg, cat,
#: two products, the sum and the final cat (6) = 12; backward the two products' gradients (2), neg (1), the chunk's
#: cat (1), the gradient add (1), the empty slice's zero gradient and its add (2) = 7. A fused RoPE is one kernel
#: each way per tensor (costs.host ATTN_KERNELS_FWD counts 2 forward).
ROPE_KERNELS_PER_TENSOR = (12.0, 7.0)
FUSED_ROPE_KERNELS_PER_TENSOR = 1.0
#: Per-head q/k RMSNorms (qk_norm_bytes): forward one TE RMSNorm kernel each for q and k (2); backward the
#: RMSNorm backward and its dgamma finalize kernel each (4).
QK_NORM_KERNELS = (2.0, 4.0)


def eager_op_kernels(sz) -> tuple:
    """(attention block forward, backward, MoE block forward, backward) kernels the model-feature ops add to a
    layer pass over the fused path: the q/k norms' (QK_NORM_KERNELS) and the framework's eager ops' (0 where it
    fuses them or the model lacks them); the MoE part with
    E / ep local experts, dispatched after the dispatcher's device-to-host sync.

    Source: the module's kernel constants (Megatron-Core code paths as in the module docstring)."""
    m, fw = sz.model, sz.framework
    zero = (0.0, 0.0, 0.0, 0.0)
    if fw is None:
        return zero
    fu = fw.fusions
    attn_f = attn_b = moe_f = moe_b = 0.0
    if m.qk_norm and m.mla is None:
        attn_f, attn_b = QK_NORM_KERNELS
    if _eager_rope(m, fu):
        attn_f = attn_f + 2.0 * (ROPE_KERNELS_PER_TENSOR[0] - FUSED_ROPE_KERNELS_PER_TENSOR)
        attn_b = attn_b + 2.0 * (ROPE_KERNELS_PER_TENSOR[1] - FUSED_ROPE_KERNELS_PER_TENSOR)
    if m.moe is not None:
        if m.glu_clamp is not None and fu.glu_clamp == "eager":
            moe_f, moe_b = moe_f + CLAMP_KERNELS[0], moe_b + CLAMP_KERNELS[1]
        if m.linear_bias and fu.expert_bias == "eager-per-expert":
            local = float(m.moe.num_experts) / np.asarray(sz.ep, dtype=float)
            moe_f = moe_f + EXPERT_BIAS_KERNELS[0] + EXPERT_BIAS_KERNELS_PER_EXPERT[0] * local
            moe_b = moe_b + EXPERT_BIAS_KERNELS[1] + EXPERT_BIAS_KERNELS_PER_EXPERT[1] * local
    return attn_f, attn_b, moe_f, moe_b
