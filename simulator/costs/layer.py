"""One transformer layer's compute on one device, one micro-batch: per-op times and the pass times both engines
compose (forward, backward, weight gradient, recompute), as arrays over the layouts of a table.

    forward pass   = max(GPU time, host time)                       host-bound floor (eager frameworks)
    GPU time (fwd) = QKV + out-proj + MLP/MoE GEMMs + attention core + elementwise + FP8 casts (int8: AQT quantisation)
                     + eager model-feature ops (costs.model_ops: clamped GLU, expert bias, unfused YaRN RoPE)
                     + MLA's RoPE and query/key/value assembly (mla_rope_assembly_s)
    GPU time (bwd) = input-gradient GEMMs + weight-gradient GEMMs + attention-core backward + 2 x elementwise
                     + FP8 casts of the output gradients + the eager ops' gradients
    weight grad    = the weight-gradient GEMMs (ZB-H1 splits them off the backward)
    recompute      = full: the forward pass again; selective: the attention core again

Per-op costs come from costs.compute (the measured kernel model at the model's shapes: every linear layer as its
forward, input-gradient and weight-gradient GEMMs, MoE experts as grouped GEMMs, fused attention at the bf16 peak,
memory-bound kernels at their measured bandwidth).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .compute import TABLE_ATTENTION_KERNEL
from .flops import attention_kind_shapes
from .kernels import ATTENTION_TILE_Q
from .framework_effects import attention_kernel_speed_ratio
from .dense_dispatch import gate_stream_bytes
from .host import layer_kernel_host, synced_pass_s
from .model_ops import model_ops_s, module_replay_s
from .moe_routing import expert_capacity_tokens
from ..specs.layout import MOE_DISPATCH_CODES

#: Flash-attention backward executes 5 GEMMs where the forward executes 2 (it recomputes the scores), so
#: its FLOPs are 2.5x the forward's (Dao 2023, FlashAttention-2, arXiv 2307.08691, sec. 3.1-3.2).
FLASH_BWD_OVER_FWD = 2.5

#: Bytes an FP8 cast-transpose moves per element: read bf16 (2), write FP8 row-wise (1) and column-wise (1).
FP8_CAST_BYTES_PER_ELEMENT = 4.0
#: Bytes AQT's dynamic int8 quantisation of one bf16 GEMM operand moves per element: read it for the abs-max
#: scale over the contraction axis (2), read it again to scale and round (2), write int8 (1).
INT8_QUANTISE_BYTES_PER_ELEMENT = 5.0

#: A causal mask lets fused attention kernels skip the upper triangle: about half the s x s work.
CAUSAL_EXECUTED_FRACTION = 0.5


@dataclass(frozen=True)
class LayerCosts:
    """Per-layer, per-micro-batch times on one device (seconds; arrays over the table's rows or scalars).

    Forward ops: `qkv_s`, `out_proj_s` (attention projections), `attention_core_s`, `mlp_s` (dense MLP or MoE,
    averaged over the model's layers), `elementwise_s` (norms, residuals, activation, dropout), `fp8_cast_fwd_s`
    (FP8 cast-transposes, or AQT's int8 operand quantisation in int8 runs), `model_ops_fwd_s` (eager model-feature
    ops and MLA's RoPE and query/key/value assembly; `model_ops_bwd_s` their backward).
    Backward: `attention_projection_dgrad_s`/`_wgrad_s` and `mlp_dgrad_s`/`mlp_wgrad_s` (input- and weight-gradient
    GEMMs), `attention_core_bwd_s`, `fp8_cast_bwd_s` (elementwise moves twice the forward's bytes).
    `host_s`: host time of one layer pass (kernel launches, framework), the floor of every pass; `issue_fwd_s` /
    `issue_bwd_s`: the host time to issue one layer's forward / backward kernels (that floor, or the kernel-count
    model's where the framework prices kernels), so a pass leaves the GPU `forward_s - issue_fwd_s` of queued work
    ahead of the host (costs.stage.layer_lead_s).
    Passes: `gpu_fwd_s`/`gpu_bwd_s` before the host floor; `forward_s`, `backward_s`, `recompute_s` (inside the
    backward) and `wgrad_s` (the weight-gradient GEMMs of the backward).
    """

    qkv_s: object
    out_proj_s: object
    attention_core_s: object
    attention_core_bwd_s: object
    mlp_s: object
    attention_projection_dgrad_s: object
    attention_projection_wgrad_s: object
    mlp_dgrad_s: object
    mlp_wgrad_s: object
    elementwise_s: object
    fp8_cast_fwd_s: object
    fp8_cast_bwd_s: object
    model_ops_fwd_s: object
    model_ops_bwd_s: object
    host_s: float
    issue_fwd_s: object
    issue_bwd_s: object
    gpu_fwd_s: object
    gpu_bwd_s: object
    forward_s: object
    backward_s: object
    recompute_s: object
    wgrad_s: object

    @property
    def attention_projection_s(self):
        """QKV and output projection GEMMs of one forward pass."""
        return self.qkv_s + self.out_proj_s

    @property
    def attention_projection_bwd_s(self):
        """QKV and output projection GEMMs of one backward pass (input and weight gradients)."""
        return self.attention_projection_dgrad_s + self.attention_projection_wgrad_s

    @property
    def gemm_fwd_s(self):
        """All GEMMs of one forward pass (attention projections and MLP/MoE)."""
        return self.attention_projection_s + self.mlp_s

    @property
    def gemm_bwd_s(self):
        """All GEMMs of one backward pass (input and weight gradients of the projections and MLP/MoE)."""
        return self.attention_projection_bwd_s + self.mlp_dgrad_s + self.mlp_wgrad_s

    @property
    def host_fwd_s(self):
        """What the host floor adds to a forward pass beyond its GPU time (0 unless host bound)."""
        return self.forward_s - self.gpu_fwd_s

    @property
    def host_bwd_s(self):
        """What the host floor adds to a backward pass beyond its GPU time (0 unless host bound)."""
        return self.backward_s - self.gpu_bwd_s

    @property
    def elementwise_pass_s(self):
        """Elementwise time of one forward and one backward pass (the backward moves twice the forward's bytes),
        with the model-feature ops the framework runs eagerly and MLA's RoPE and query/key/value assembly
        (model_ops_fwd_s, model_ops_bwd_s)."""
        return self.elementwise_s + 2.0 * self.elementwise_s + self.model_ops_fwd_s + self.model_ops_bwd_s

    @property
    def fp8_cast_pass_s(self):
        """FP8 cast time of one forward and one backward pass."""
        return self.fp8_cast_fwd_s + self.fp8_cast_bwd_s


def _add(*passes):
    """Sum of (forward, input gradient, weight gradient) triples."""
    return tuple(sum(p[i] for p in passes) for i in range(3))


def _scale(c, p):
    """A (forward, input gradient, weight gradient) triple times c."""
    return tuple(c * x for x in p)


@dataclass(frozen=True)
class MlpElements:
    """Elements per token the MLP (or MoE) of a layer moves or stores."""

    elementwise: object      # read/written by its elementwise kernels, averaged over all layers
    stored_heavy: object     # stored between its GEMMs, in the busiest stage's layer mix (memory)
    fc2_input_heavy: object  # of which fc2 inputs (and permuted MoE copies), saved in FP8 with FP8 GEMMs


def _moe_dims(m):
    """(expert ffn, experts, top-k, shared-expert ffn x count) of an MoE model."""
    moe = m.moe
    fe = float(moe.expert_ffn_hidden_size)
    fs = float(moe.shared_expert_ffn_hidden_size or moe.expert_ffn_hidden_size) * moe.num_shared_experts
    return fe, float(moe.num_experts), float(moe.top_k), fs


def attention_projections_s(sz):
    """((forward, input-gradient, weight-gradient) times of QKV, the same of the output projection, their widths
    per TP rank in_n and out_k).

    Source: Megatron-LM column/row-parallel attention (Shoeybi et al. 2019, arXiv 1909.08053, sec. 3); GQA
    narrows K/V (Ainslie et al. 2023); MLA's factors per DeepSeek-V2 (arXiv 2405.04434) eqs. 9-14, one GEMM each
    (Megatron-Core multi_latent_attention.py: linear_q_down_proj, linear_q_up_proj, linear_kv_down_proj,
    linear_kv_up_proj)."""
    h, a, tp = sz.hidden, sz.heads, sz.tp
    in_n, out_k = projection_widths(sz)
    kr, M = sz.kernel, sz.tokens
    m = sz.model
    if m.mla is None:
        return kr.gemm_passes_s(M, in_n, h), kr.gemm_passes_s(M, h, out_k), in_n, out_k
    # MLA: the low-rank factors run as separate GEMMs at their own shapes (narrow down-projections, short-K
    # up-projections), not as one QKV GEMM of the same FLOPs.
    c = m.mla
    dqk = float(c.qk_nope_head_dim + c.qk_rope_head_dim)
    if c.q_lora_rank is None:
        q = kr.gemm_passes_s(M, a * dqk / tp, h)
    else:
        q = _add(kr.gemm_passes_s(M, float(c.q_lora_rank), h), kr.gemm_passes_s(M, a * dqk / tp, float(c.q_lora_rank)))
    kv = _add(kr.gemm_passes_s(M, float(c.kv_lora_rank + c.qk_rope_head_dim), h),
              kr.gemm_passes_s(M, a * (c.qk_nope_head_dim + c.v_head_dim) / tp, float(c.kv_lora_rank)))
    return _add(q, kv), kr.gemm_passes_s(M, h, out_k), in_n, out_k


def projection_widths(sz):
    """(in_n, out_k): the QKV (or MLA factors') output width and the output projection's inner width per TP rank.

    Source: Megatron-LM column/row-parallel attention (Shoeybi et al. 2019, arXiv 1909.08053, sec. 3)."""
    h, a, tp = sz.hidden, sz.heads, sz.tp
    out_k = a * sz.v_head_dim / tp
    in_n = (sz.costs.attn_params - a * sz.v_head_dim * h) / h / tp
    return in_n, out_k


def column_parallel_share(sz):
    """(attention, MLP): the FLOP share of the column-parallel GEMMs (QKV; FC1, gated: two matrices) in the
    attention projections' and the MLP's GEMMs, the GEMMs whose backward carries the TP input-gradient collective.

    Source: Shoeybi et al. 2019 (arXiv 1909.08053) sec. 3 (column-parallel QKV and FC1, row-parallel output
    projection and FC2)."""
    in_n, out_k = projection_widths(sz)
    gate = 2.0 if sz.model.gated_mlp else 1.0
    return in_n / (in_n + out_k), gate / (gate + 1.0)


def expert_gemm_passes_s(sz, gemm_factor=1.0):
    """(forward, input-gradient, weight-gradient) GEMM times of the routed experts of one MoE layer on the busiest
    EP rank: its E/ep local experts as grouped GEMMs (weights split etp ways, fc1 gated: 2 matrices, and fc2), each
    on its share of the top-k routed token copies, mean M ep k etp / (E tp) rows, times `gemm_factor` (routing
    imbalance or capacity padding, costs.moe_routing; broadcasts, so the discrete-event engine prices per-layer
    samples with it).

    Source: Megatron-Core expert parallelism (TEGroupedMLP: grouped GEMMs of the local experts); Fedus et al. 2021
    (arXiv 2101.03961); costs.moe_routing for the busiest rank; costs.compute.grouped_passes_s."""
    m, kr, h = sz.model, sz.kernel, sz.hidden
    if np.ndim(gemm_factor) and np.size(gemm_factor) > 1:
        kr = replace(kr, index=None)        # a per-row load may vary with columns outside the shape index
    gate = 2.0 if m.gated_mlp else 1.0
    fe, E, k, _ = _moe_dims(m)
    etp, ep = sz.etp, sz.ep
    tok_per_expert = sz.tokens * ep * k * etp / (E * sz.tp) * gemm_factor
    tok_per_expert = tok_per_expert * grouped_tile_visit_factor(sz, E / ep, tok_per_expert)
    return _add(kr.grouped_passes_s(E / ep, tok_per_expert, gate * fe / etp, h),
                kr.grouped_passes_s(E / ep, tok_per_expert, h, fe / etp))


def grouped_tile_visit_factor(sz, groups, rows_per_group):
    """Executed over routed rows of a grouped GEMM whose kernel visits a row tile once per group it holds (the
    framework's moe.grouped_gemm_tile_rows tm; 1 without one): the m = groups x rows sorted rows span ceil(m/tm)
    tiles and every group boundary inside a tile costs one more visit, a full tm-row tile of work each, so at
    most ceil(m/tm) + groups - 1 visits (balanced groups of rows not a multiple of tm put nearly every boundary
    inside a tile). DeepSeek-V3 on v5p (m = 6 x 4096 x 8 = 196608 rows, 256 groups, tm 512): (384 + 255) x 512 /
    196608 = 1.66; Mixtral-like 8 groups of 12288 rows: (192 + 7) / 192 = 1.04.

    Source: jax.experimental.pallas.ops.tpu.megablox gmm.py make_group_metadata (tiles_m + num_groups - 1 grid
    steps; partial tiles computed once per group and masked) and MaxText's megablox tile defaults (presets/
    frameworks/maxtext.yaml moe.source)."""
    fw = sz.framework
    tm = fw.moe.grouped_gemm_tile_rows if fw is not None and fw.moe.dispatch == "permute" else None
    if tm is None:
        return 1.0
    m = np.maximum(groups * rows_per_group, 1e-300)
    visits = np.ceil(m / tm) + np.maximum(groups - 1.0, 0.0)
    return np.maximum(visits * tm / m, 1.0)


def expert_gemm_s(sz, gemm_factor=1.0):
    """Forward GEMM time of the routed experts of one MoE layer on the busiest EP rank (expert_gemm_passes_s)."""
    return expert_gemm_passes_s(sz, gemm_factor)[0]


def dense_dispatch_passes_s(sz):
    """(forward, input-gradient, weight-gradient) times of a dense-einsum MoE dispatch (MoeDispatchSpec): per
    group of S tokens, the dispatch einsum (E C x S) @ (S x M) and the combine einsum (S x E C) @ (E C x M),
    2 S E C M FLOPs each (costs.dense_dispatch.dense_einsum_flops), with C the per-group expert capacity: the
    routing's capacity (costs.moe_routing.expert_capacity_tokens: ceil(capacity_factor x S k / E), at least
    min_capacity; padded E C rows) or S k / E without a capacity factor. Backward: the dispatch mask carries no
    gradient, so the dispatch einsum has the tokens' gradient only; the combine einsum has both (the expert
    output's and the combine weights', which carry the router's gradient). Neither einsum has a weight, so all
    three backward GEMMs are input-gradient work (none is deferrable as a weight gradient). Plus the
    gate's memory-bound one-hot passes over [S, E] and [S, E, C] where the preset's moe.gate_passes says they run
    as eager kernels (costs.dense_dispatch.gate_stream_bytes; 'fused': none counted), forward and backward. The
    group is one sequence (MaxText) or the rank's whole micro-batch (DeepSpeed-MoE: S = micro-batch x sequence tokens, so the einsums and the
    [S, E, C] passes grow with the square of the micro-batch's tokens), by the preset's moe.dense_group. Zero for
    the permute dispatch.

    Source: AI-Hypercomputer/maxtext layers/moe.py (dense_matmul: dispatch and combine einsums); deepspeedai/
    DeepSpeed deepspeed/moe/sharded_moe.py MOELayer.forward (reshaped_input = input.reshape(-1, d_model);
    einsum "sec,sm->ecm" and "sec,ecm->sm", run as matmuls; Tutel's sparse dispatcher only with use_tutel);
    Lepikhin et al. 2020 (GShard, arXiv 2006.16668) sec. 2.2 (dispatch/combine tensors); costs.dense_dispatch."""
    fw = sz.framework
    if fw is None or fw.moe.dispatch != "dense-einsum" or sz.model.moe is None:
        return (0.0, 0.0, 0.0)
    _, E, k, _ = _moe_dims(sz.model)
    rt = sz.job.training.moe_routing
    S = sz.tokens if fw.moe.dense_group == "micro-batch" else sz.seq_len / sz.cp
    if rt is not None and rt.capacity_factor:
        C = expert_capacity_tokens(S, k, E, rt.capacity_factor, rt.min_capacity)
    else:
        C = S * k / E
    seqs = sz.tokens / S
    h = sz.hidden / sz.tp
    kr = sz.kernel
    # gemm_passes_s(m, n, k) of y = x W gives (forward, d x, d W); here x and W are both activations
    disp = kr.gemm_passes_s(E * C, h, S, "bf16")      # mask^T (E C x S) @ tokens (S x M): d tokens = its "d W"
    comb = kr.gemm_passes_s(S, h, E * C, "bf16")      # combine (S x E C) @ expert out (E C x M): both gradients
    gemms = (disp[0] + comb[0], disp[2] + comb[1] + comb[2], 0.0)
    if fw.moe.gate_passes == "eager-fp32":
        fwd_b, bwd_b = gate_stream_bytes(S, E, C, h, k, sz.act_bytes, 4.0)
        gemms = _add(gemms, (kr.stream_s(fwd_b), kr.stream_s(bwd_b), 0.0))
    return _scale(seqs, gemms)


def token_permute_passes_s(sz, gemm_factor=1.0):
    """(forward, input-gradient, weight-gradient) times of the token permutations of one MoE layer with a
    sort-based dispatch (MoeDispatchSpec 'permute'), memory bound, per token of the rank (M/tp rows):

    - sender side: the fused permute reads the token and writes its k copies in expert order (h + k h elements)
      and the fused unpermute reads the k returned copies and writes their probability-weighted sum (k h + h);
      with the framework's moe.permute_gathered_over_tp (MaxText sparse_matmul, whose shard_map takes the tokens
      replicated over the TP axis: "We all gather the input activations over tensor parallelism") the permute
      runs on all M tokens of the TP group on every TP rank (tp times the M/tp rows), while the unpermute runs on
      the reduce-scattered h/tp columns of the M k copies (the bytes of M/tp full rows);
    - receiver side, with expert parallelism and more than one local expert: Megatron-Core's all-to-all
      dispatcher regroups the received copies from source-rank order to local-expert order after the dispatch and
      back before the combine (sort_chunks_by_idxs: read and write r k h each way, r the busiest rank's load
      `gemm_factor`); a node-limited (DeepEP/HybridEP flex) dispatch instead permutes the received copies after
      its fused dispatch and unpermutes them before its fused combine (2 r k h each way) and has no sender-side
      permute (the DeepEP kernels read the tokens in place).

    The backward moves the same elements (the gradients run through the inverse permutations); no weight
    gradient. Bytes at the device's measured permute bandwidth (SimuMax's B200 permute_fwd/permute_bwd,
    presets/kernels/*.memory.csv; the elementwise figure where a device has none). Zero for a dense-einsum
    dispatch (priced as GEMMs, dense_dispatch_passes_s).

    Source: NVIDIA/Megatron-LM megatron/core/transformer/moe/token_dispatcher.py (MoEAlltoAllTokenDispatcher:
    permute, all-to-all, sort_chunks_by_idxs when num_local_experts > 1, and the reverse in token_unpermutation;
    MoEFlexTokenDispatcher: DeepEP fused dispatch, then permute) and moe_utils.py (permute, unpermute with probs,
    sort_chunks_by_idxs); AI-Hypercomputer/maxtext MaxText/layers/moe.py at 9ca35d7 (sparse_matmul: shard_map
    in_specs (activation_batch_no_exp, activation_length, None) for the tokens, permute = argsort + jnp.take of
    the rows, psum_scatter over 'tensor' after the last gmm, unpermute on the scattered columns); SimuMax
    simumax/core/transformer/moe_module.py (Permutation: permute1 (input +
    permuted) and permute2 (2 x permuted); UnPermutation alike), whose B200 release rows it reproduces."""
    fw = sz.framework
    m = sz.model
    if m.moe is None or (fw is not None and fw.moe.dispatch != "permute"):
        return (0.0, 0.0, 0.0)
    _, E, k, _ = _moe_dims(m)
    h, ep = sz.hidden, sz.ep
    code = sz.table.moe_dispatch if sz.table.moe_dispatch is not None else np.zeros(len(sz.table), np.int64)
    node_limited = code == MOE_DISPATCH_CODES["node-limited"]
    regroup = (ep > 1) & (E / ep > 1)
    r = gemm_factor
    # MaxText sparse_matmul (moe.permute_gathered_over_tp): each TP rank sorts the whole TP group's tokens
    send = sz.tp if fw is not None and fw.moe.permute_gathered_over_tp else 1.0
    flat = send * (h + k * h) + (k * h + h) + np.where(regroup, 4.0 * r * k * h, 0.0)
    flex = np.where(ep > 1, 4.0 * r * k * h, (h + k * h) + (k * h + h))
    elems = np.where(node_limited, flex, flat)
    nbytes = sz.act_bytes * sz.tokens / sz.tp * elems
    kr = sz.kernel
    return kr.stream_s(nbytes, "permute_fwd"), kr.stream_s(nbytes, "permute_bwd"), 0.0


def mlp_parts_s(sz):
    """((forward, input-gradient, weight-gradient) MLP GEMM times of a dense layer, the same of an MoE layer (None
    for a dense model)), as mlp_s averages them.

    Source: see mlp_s."""
    m, kr, M, h, tp = sz.model, sz.kernel, sz.tokens, sz.hidden, sz.tp
    gate = 2.0 if m.gated_mlp else 1.0
    moe = None
    if m.moe is not None:
        fe, E, k, fs = _moe_dims(m)
        load = sz.moe_load.gemm_factor if sz.moe_load is not None else 1.0
        moe = _add(expert_gemm_passes_s(sz, load), kr.gemm_passes_s(M, E, h, "bf16"), dense_dispatch_passes_s(sz),
                   token_permute_passes_s(sz, load))
        if fs > 0:
            moe = _add(moe, kr.gemm_passes_s(M, gate * fs / tp, h), kr.gemm_passes_s(M, h, fs / tp))
    if sz.moe_fraction >= 1.0:
        return (0.0, 0.0, 0.0), moe
    f = float(m.ffn_hidden_size)
    dense = _add(kr.gemm_passes_s(M, gate * f / tp, h), kr.gemm_passes_s(M, h, f / tp))
    return dense, moe


def mlp_s(sz):
    """(forward, input-gradient, weight-gradient) MLP GEMM times of one layer, averaged over dense and MoE layers:
    dense fc1 (gated: 2 matrices) and fc2 split tp ways; MoE router (bf16: TE's FP8 autocast covers the expert and
    shared-expert linears, not the router), the busiest EP rank's experts as grouped GEMMs (expert_gemm_passes_s),
    the token permutations of a sort-based dispatch (token_permute_passes_s) and the shared experts.

    Source: Megatron-LM MLP (Shoeybi et al. 2019 sec. 3); MoE per Fedus et al. 2021 (arXiv 2101.03961) and
    Megatron-Core expert parallelism (TEGroupedMLP); DeepSeekMoE shared experts (arXiv 2401.06066)."""
    return _mlp_mix(sz, *mlp_parts_s(sz))


def _mlp_mix(sz, dense, moe):
    """mlp_s from mlp_parts_s's (dense, moe) passes: their average over the model's dense and MoE layers."""
    frac = sz.moe_fraction
    if moe is None:
        moe = (0.0, 0.0, 0.0)
    if frac >= 1.0:
        return moe
    return _add(_scale(1.0 - frac, dense), _scale(frac, moe))


def mlp_elements(sz) -> MlpElements:
    """Elements per token of a layer's MLP: the activation function's input and output ((gate + 1) x ffn), for MoE
    k copies of the expert's plus the shared experts' and the permuted token copies (saved once as the expert
    fc1 input: since Megatron-Core v0.13 the routing probabilities multiply inside the expert activation, so
    the unpermute keeps no copy of its input); the permute/unpermute traffic is priced with the MLP passes
    (token_permute_passes_s).
    The routed copies are those of the busiest EP rank: the mean times the routing load's gemm_factor (imbalance,
    or a capacity buffer padded to E C / (T k) of the mean: DeepSpeed's [E, C, h] dispatch tensor). With the
    experts' activation replayed (RecomputeSpec.replayed_modules moe_act: CheckpointWithoutOutput discards fc2's
    input) the activation output is not kept; with an eager clamped GLU (FusionSpec.glu_clamp) and no replay, the
    clamp keeps fc1's output for its backward and the fused activation the clamped copy (gate x fe more).

    Source: Korthikanti et al. 2022 (arXiv 2205.05198) sec. 4.1; Megatron-Core megatron/core/transformer/moe/
    README.md ("memory efficient token permutation"); moe/experts.py TEGroupedMLP.forward (activation_recompute)
    and fusions/fused_bias_geglu.py weighted_bias_quick_geglu_impl (clamp, cat, then the saving autograd function)."""
    m = sz.model
    gate = 2.0 if m.gated_mlp else 1.0
    f = float(m.ffn_hidden_size)
    if m.moe is not None:
        fe, _, k, fs = _moe_dims(m)
        r = sz.moe_load.gemm_factor if sz.moe_load is not None else 1.0   # busiest rank's routed copies / mean
        moe_act = r * k * ((gate + 1.0) * fe + sz.hidden) + (gate + 1.0) * fs
        moe_ew = moe_act                                   # the permutations: token_permute_passes_s
        moe_fc2 = r * k * (fe + sz.hidden) + fs
        fw = sz.framework
        if fw is not None and "moe_act" in fw.recompute.replayed_modules:
            # the experts' activation output (fc2's input) is recomputed, not kept
            moe_act, moe_fc2 = moe_act - r * k * fe, moe_fc2 - r * k * fe
        elif fw is not None and m.glu_clamp is not None and fw.fusions.glu_clamp == "eager":
            # the eager clamp keeps fc1's output and the fused activation the clamped copy: gate x fe more
            moe_act = moe_act + r * k * gate * fe
    else:
        moe_act = moe_ew = moe_fc2 = 0.0
    dense_act = (gate + 1.0) * f
    frac, heavy = sz.moe_fraction, sz.moe_heavy_fraction
    return MlpElements(elementwise=(1.0 - frac) * dense_act + frac * moe_ew,
                       stored_heavy=(1.0 - heavy) * dense_act + heavy * moe_act,
                       fc2_input_heavy=(1.0 - heavy) * f + heavy * moe_fc2)


def attention_table_kernel(sz):
    """The attention kernel name of the measured tables the layouts run (None: the device's default table).

    The seam for the framework preset's resolved kernel per row: until the layout table carries it, every row
    runs the device's default fused-attention table (TABLE_ATTENTION_KERNEL maps framework kernel names)."""
    name = getattr(sz, "attention_kernel", None)
    return TABLE_ATTENTION_KERNEL.get(name) if name else None


def attention_bwd_over_fwd(sz) -> float:
    """Executed FLOPs of the fused attention backward over the forward's: FlashAttention-2's fused backward runs 5
    matmuls (QK^T again, dP = dO V^T, dV, dK, dQ) where the forward runs 2 (FLASH_BWD_OVER_FWD = 2.5); a stack
    whose kernel splits the backward states its own ratio (framework attention.bwd_over_fwd_by_kernel): Pallas
    splash attention without its fused backward (MaxText sa_use_fused_bwd_kernel False, the default) runs a dK/dV
    kernel (QK^T, dV = P^T dO, dP = dO V^T, dK = dS^T Q: 4) and a dQ kernel (QK^T, dP, dQ = dS K: 3), 7 / 2 = 3.5.

    Source: Dao 2023 (FlashAttention-2, arXiv 2307.08691) sec. 3.1-3.2; AI-Hypercomputer/maxtext
    src/MaxText/kernels/splash_attention_kernel.py at 3eb77db3c (_flash_attention_dkv_kernel,
    _flash_attention_dq_kernel, _splash_attention_bwd: the dq kernel runs unless use_fused_bwd_kernel)."""
    fw = getattr(sz, "framework", None)
    name = getattr(sz, "attention_kernel", None)
    if fw is None or name is None:
        return FLASH_BWD_OVER_FWD
    return float(fw.attention.bwd_over_fwd_by_kernel.get(name, FLASH_BWD_OVER_FWD))


def attention_core_s(sz):
    """(forward, backward) time of the attention core (QK^T, softmax, x V) of one layer.

    Flash: one fused kernel on the causal half, at the bf16 peak (FP8 recipes keep attention in bf16) times the
    device's measured fused-attention efficiency at the local shape (s/cp queries per chunk, micro-batch x a/tp
    heads, head dim); its backward executes 2.5x the forward's FLOPs at the backward table's efficiency. Without
    flash (Megatron's unfused path): two batched bf16 GEMMs per head, QK^T (s/cp x d) @ (d x s) and softmax(.)V
    (s/cp x s) @ (s x d), as grouped GEMMs over micro-batch x heads, plus the s x s softmax/dropout, memory bound
    (unfused_score_bytes_per_element); its backward runs twice the forward's GEMMs. A framework kernel with no
    measured table of its own (FlashAttention-2, the Triton kernels) runs at the table's efficiency times its speed
    relative to the table's kernel on the same benchmark (framework_effects.attention_kernel_speed_ratio).

    Source: Dao 2023 (FlashAttention-2, arXiv 2307.08691) sec. 3 and 4.1; Shah et al. 2024 (FlashAttention-3,
    arXiv 2407.08608); Korthikanti et al. 2022 (arXiv 2205.05198) sec. 4.1 (unfused attention's s x s tensors)."""
    m, t, kr = sz.model, sz.table, sz.kernel
    s, cp, tp, b, a = sz.seq_len, sz.cp, sz.tp, sz.micro_batch, sz.heads
    attn_flops_fwd = sz.costs.attn_core_flops_per_token * sz.tokens / tp
    d_head = float(m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim) if m.mla is not None else float(m.dim_per_head)
    d_v = sz.v_head_dim
    bh, sq = b * a / tp, s / cp
    kern = attention_table_kernel(sz)
    peak = sz.attention_peak_flops_per_s or kr.bf16_peak_flops_per_s    # bf16 peak in fp8 runs
    flash = np.asarray(t.flash_attention, dtype=bool)
    fwd = bwd = 0.0
    if flash.any():
        work = attn_flops_fwd * CAUSAL_EXECUTED_FRACTION / peak
        fam = sz.hardware.family
        name = getattr(sz, "attention_kernel", None)
        r_f = attention_kernel_speed_ratio(name, kr.attention_table_kernel("fwd", kern), fam, d_head, "fwd")
        r_b = attention_kernel_speed_ratio(name, kr.attention_table_kernel("bwd", kern), fam, d_head, "bwd")
        win_f, win_b = local_attention_factors(sz, sq, kern)
        fwd = work * win_f / (kr.attention_efficiency(sq, d_head, bh, "fwd", kern) * r_f)
        bwd = attention_bwd_over_fwd(sz) * work * win_b / (kr.attention_efficiency(sq, d_head, bh, "bwd", kern)
                                                          * r_b)
    if not flash.all():
        gemms = kr.grouped_time_s(bh, sq, s, d_head, "bf16") + kr.grouped_time_s(bh, sq, d_v, s, "bf16")
        fw = getattr(sz, "framework", None)
        softmax = fw.attention.unfused_softmax if fw is not None else "fused-kernel"
        score_fwd, score_bwd = unfused_score_bytes_per_element(sz.act_bytes, softmax)
        unfused_fwd = gemms + kr.stream_s(score_fwd * bh * sq * s)
        unfused_bwd = 2.0 * gemms + kr.stream_s(score_bwd * bh * sq * s)
        fwd, bwd = np.where(flash, fwd, unfused_fwd), np.where(flash, bwd, unfused_bwd)
    return fwd, bwd


#: Query/key block of the TPU splash-attention kernel as MaxText runs it (src/MaxText/configs/base.yml: sa_block_q,
#: sa_block_kv, sa_block_kv_compute 512; jax.experimental.pallas.ops.tpu.splash_attention skips the blocks its mask
#: info marks empty). GPU fused kernels (FlashAttention-2/3, cuDNN) use 128-row blocks (ATTENTION_TILE_Q).
SPLASH_ATTENTION_BLOCK = 512


def attention_block_tokens(family: str) -> int:
    """Rows (and keys) per block of the device's fused attention kernel: SPLASH_ATTENTION_BLOCK on TPUs,
    ATTENTION_TILE_Q elsewhere.

    Source: MaxText base.yml (splash attention blocks); Dao 2023 (arXiv 2307.08691) sec. 3.2 (128-row blocks)."""
    return SPLASH_ATTENTION_BLOCK if family == "tpu" else ATTENTION_TILE_Q


def local_attention_factors(sz, sq, kern):
    """(forward, backward) fused-attention time of the model's layers over that of full causal attention on every
    layer at the same shape: 1 for a model of full-attention layers; for sliding-window and chunked layers the
    tiles the kernel executes (costs.flops.attention_tiles in blocks of attention_block_tokens: fully masked blocks
    are skipped, the partial ones at the band's edges run whole) over the causal kernel's, at the efficiency of
    rows of their mean keys (KernelModel.attention_keys_factor), averaged over the layers. Unfused attention
    computes the whole s x s matrix and masks it: no saving there.

    Source: Dao 2023 (FlashAttention-2, arXiv 2307.08691) sec. 3.1; FlashAttention's local attention
    (window_size (left, 0)) and Transformer Engine / cuDNN sliding-window attention skip the blocks outside the
    band; Llama 4 chunked attention (transformers masking_utils chunked_causal) is block-diagonal causal."""
    c = sz.costs
    if all(kind == "full" for kind, _, _ in c.attn_layer_counts):
        return 1.0, 1.0
    fwd = bwd = 0.0
    for share, tiles, keys in attention_kind_shapes(c, attention_block_tokens(sz.hardware.family)):
        if tiles == 1.0:                          # full layers (or a window/chunk spanning the sequence)
            fwd, bwd = fwd + share, bwd + share
            continue
        fwd = fwd + share * tiles / sz.kernel.attention_keys_factor(sq, keys, "fwd", kern)
        bwd = bwd + share * tiles / sz.kernel.attention_keys_factor(sq, keys, "bwd", kern)
    return fwd, bwd


def unfused_score_bytes_per_element(act_bytes: float, softmax: str = "fused-kernel") -> tuple[float, float]:
    """(forward, backward) HBM bytes per element of the s x s attention scores that unfused attention's
    memory-bound kernels move (the batched GEMMs' own reads and writes are in their time).

    softmax 'torch-fp32' (--no-masked-softmax-fusion with --attention-softmax-in-fp32: Megatron's
    FusedScaleMaskSoftmax.forward_torch_softmax, each step its own kernel): forward casts the scores to fp32
    (a + 4), masks them (read 4 and the 1-byte mask, write 4), softmax (4 + 4), casts back (4 + a), then dropout
    (2a + 1): 4a + 26; backward: dropout (2a + 1), the cast's gradient to fp32 (a + 4), softmax backward from the
    saved fp32 output (4 + 4 + 4), mask (4 + 1 + 4), cast to the activation dtype (4 + a): 4a + 30. bf16: 34 and 38
    bytes. The `scale` multiply of query-key layer scaling (another 4 + 4 each way) is not counted: it is a model
    option, not the stack's.

    Forward: the fused scale-mask-softmax reads the scores and writes the probabilities (2 elements), attention
    dropout reads them and writes its output and a 1-byte mask (2 elements + 1 byte): 4 act_bytes + 1.
    Backward: dropout's backward reads the incoming gradient and the mask and writes its gradient (2 elements +
    1 byte), the softmax backward reads that gradient and the saved probabilities and writes the scores' gradient
    (3 elements): 5 act_bytes + 1. fp16: 9 and 11 bytes.

    Source: NVIDIA/Megatron-LM at 9da6e97, megatron/model/fused_softmax.py (FusedScaleMaskSoftmax: one kernel
    scaled_masked_softmax forward and backward, the backward from the saved softmax output) and
    megatron/model/transformer.py (ParallelAttention: attention_dropout on attention_probs); Korthikanti et al. 2022
    (arXiv 2205.05198) sec. 4.1 (softmax output 2as^2b, dropout mask as^2b, dropout output 2as^2b bytes);
    megatron/core/fusions/fused_softmax.py (forward_torch_softmax: .float(), mask_func, torch.nn.Softmax, cast back)."""
    if softmax == "torch-fp32":
        return 4.0 * act_bytes + 26.0, 4.0 * act_bytes + 30.0
    return 4.0 * act_bytes + 1.0, 5.0 * act_bytes + 1.0


#: Elements per token the elementwise kernels outside the TP regions move in one forward pass: two norms (read h,
#: write h), two residual adds (read 2h, write h), two dropouts/bias adds (read h, write h) = 14 h; with a fused
#: bias-dropout-add (FusionSpec.bias_dropout_add) each dropout + residual add reads 2h and writes h and a 1-byte
#: mask (half a 2-byte element): 4 h + 2 x 3.5 h = 11 h.
ELEMENTWISE_OUTSIDE_TP = 14.0
ELEMENTWISE_OUTSIDE_TP_FUSED_BDA = 11.0


def mla_latent_norm_elements(m) -> float:
    """Elements per token the RMSNorms of MLA's compressed latents move in one forward pass: each norm reads its
    latent and writes it (2 x (q_lora_rank + kv_lora_rank)); without a query compression (q_lora_rank None) only
    the KV latent's. The down-projections are not split across TP ranks, so neither are their latents. 0 for
    other attention. DeepSeek-V2 (1536 + 512): 4096 elements per token.

    Source: DeepSeek-V2 (arXiv 2405.04434) appendix / HF modeling_deepseek.py DeepseekV2Attention (q_a_layernorm,
    kv_a_layernorm: DeepseekV2RMSNorm of the compressed query and KV latents); Megatron-Core megatron/core/
    transformer/multi_latent_attention.py (q_layernorm, kv_layernorm on the down-projections' outputs)."""
    if m.mla is None:
        return 0.0
    q = 0.0 if m.mla.q_lora_rank is None else float(m.mla.q_lora_rank)
    return 2.0 * (q + float(m.mla.kv_lora_rank))


def mla_rope_assembly_elements(m, tp=1.0):
    """Elements per token that MLA's RoPE and query/key/value assembly move in one forward pass (the backward
    moves as many), with n = heads / tp per rank, d_n = qk_nope_head_dim, d_r = qk_rope_head_dim, d_v =
    v_head_dim: the key/value kernel reads the KV up-projection's output (n (d_n + d_v)) and the shared rotary key
    (d_r), and writes the key with the rotated part broadcast to every head (n (d_n + d_r)) and a contiguous value
    (n d_v); the query kernel rotates the rope slice of q in place (reads and writes n d_r). Total n (2 d_n + 2 d_v
    + 3 d_r) + d_r; the backward kernels read the key and value gradients and write the KV up-projection's
    gradient and the rotary key's (summed over heads), and rotate the query gradient's slice in place: the same
    count. DeepSeek-V2/V3 (128 heads, 128 / 64 / 128): 90,176 elements per token, 17.6 h of V2. 0 for other
    attention (standard RoPE rotates q and k in place inside the fused kernels costs.host counts).

    Source: NVIDIA/Megatron-LM megatron/core/transformer/multi_latent_attention.py (qkv_up_proj_and_rope_apply:
    fused_apply_mla_rope_for_q / fused_apply_mla_rope_for_kv with apply_rope_fusion, on by default:
    --no-rope-fusion store_false in megatron/training/arguments.py; MLA's rope_type 'yarn' default) and megatron/
    core/fusions/fused_mla_yarn_rope_apply.py (rotary_fwd_q_kernel modifies q in place; ApplyMLARotaryEmbKV
    returns new o_key, o_value and, backward, d_kv and d_emb), at 23e00ed (core_r0.14.0, SimuMax's B200 runs);
    the unfused path (split, rotate, torch.cat of query and key, value.contiguous()) moves at least as much.
    DeepSeek-V2 (arXiv 2405.04434) sec. 2.1.3 (decoupled RoPE: the rotary key shared by all heads)."""
    if m.mla is None:
        return 0.0
    c = m.mla
    n = float(m.num_heads) / np.asarray(tp, dtype=float)
    dn, dr, dv = float(c.qk_nope_head_dim), float(c.qk_rope_head_dim), float(c.v_head_dim)
    return n * (2.0 * dn + 2.0 * dv + 3.0 * dr) + dr


def mla_rope_assembly_s(sz):
    """(forward, backward) time of MLA's RoPE and query/key/value assembly in one layer, one micro-batch:
    mla_rope_assembly_elements per token of the rank's M tokens, memory bound at the device's elementwise
    bandwidth. (0, 0) for other attention.

    Source: mla_rope_assembly_elements; costs.compute KernelRates.stream_s (measured bandwidth fraction)."""
    if sz.model.mla is None:
        return 0.0, 0.0
    t = sz.kernel.stream_s(sz.act_bytes * sz.tokens * mla_rope_assembly_elements(sz.model, sz.tp))
    return t, t


def mla_up_proj_replay_s(sz):
    """Backward-pass time of replaying MLA's up-projections under Megatron-Core's 'mla_up_proj' recompute module
    (FrameworkSpec.recompute.replayed_modules): the q and kv up-projection forward GEMMs at their
    attention_projections_s shapes (M x a (d_nope + d_rope) / tp from q_lora, M x a (d_nope + d_v) / tp from
    kv_lora; the full-rank q projection where q_lora is null) and the RoPE / q, k, v assembly forward
    (mla_rope_assembly_s). 0 for other attention or without the module.

    Source: NVIDIA/Megatron-LM megatron/core/transformer/multi_latent_attention.py at b0cc2706 (recompute_up_proj
    with 'mla_up_proj' in recompute_modules: CheckpointWithoutOutput around qkv_up_proj_and_rope_apply, its q, k,
    v discarded after the attention core's forward and recomputed before its backward)."""
    m, fw = sz.model, sz.framework
    if m.mla is None or fw is None or "mla_up_proj" not in fw.recompute.replayed_modules:
        return 0.0
    c, kr, M, a, tp = m.mla, sz.kernel, sz.tokens, sz.heads, sz.tp
    dqk = float(c.qk_nope_head_dim + c.qk_rope_head_dim)
    q_in = float(c.q_lora_rank) if c.q_lora_rank is not None else sz.hidden
    q = kr.gemm_passes_s(M, a * dqk / tp, q_in)[0]
    kv = kr.gemm_passes_s(M, a * (c.qk_nope_head_dim + c.v_head_dim) / tp, float(c.kv_lora_rank))[0]
    return q + kv + mla_rope_assembly_s(sz)[0]


def elementwise_s(sz, ew_elems):
    """Forward time of a layer's memory-bound elementwise kernels: ELEMENTWISE_OUTSIDE_TP (14 h) per token outside
    the TP regions, 11 h where the framework fuses bias-dropout-add (split tp ways with SP), plus the MLP's elements
    inside them and MLA's latent norms (mla_latent_norm_elements).

    Source: Korthikanti et al. 2022 (arXiv 2205.05198) sec. 4 (these ops are memory bound); costs.compute
    elementwise_bytes_per_token for the count; NVIDIA/Megatron-LM megatron/model/transformer.py
    (bias_dropout_add_fused_train, torch.jit.script; on by default since 9acc895632, 2021-01-06) for the fused one."""
    fw = sz.framework
    fused = fw is not None and fw.fusions.bias_dropout_add
    outside = ELEMENTWISE_OUTSIDE_TP_FUSED_BDA if fused else ELEMENTWISE_OUTSIDE_TP
    ew_bytes = sz.act_bytes * sz.tokens * (outside * sz.hidden / sz.sp_factor + ew_elems / sz.tp
                                           + mla_latent_norm_elements(sz.model))
    return sz.kernel.stream_s(ew_bytes)


def fp8_cast_s(sz, in_n, out_k):
    """(forward, backward) time of the FP8 cast-transposes of one layer: every activation entering a GEMM is
    quantised in the forward pass and every output gradient in the backward, each read in bf16 and written as FP8
    twice (row- and column-wise, the transposed copy feeding the weight-gradient GEMM): 4 bytes per element. Per
    token: the inputs of QKV, the output projection, FC1 and FC2 and the output gradients of the same GEMMs; a MoE
    layer feeds k token copies to its experts (split etp ways) plus the shared experts (split tp ways). 0 without
    FP8.

    Source: NVIDIA Transformer Engine FP8 primer (cast-transpose kernels); Micikevicius et al. 2022 (arXiv
    2209.05433) sec. 4."""
    m = sz.model
    if sz.training.dtype != "fp8":
        return 0.0, 0.0
    h, tp = sz.hidden, sz.tp
    gate = 2.0 if m.gated_mlp else 1.0
    f = float(m.ffn_hidden_size)
    if m.moe is not None:
        fe, _, k, fs = _moe_dims(m)
        etp = sz.etp
        fc1_in_moe, fc2_in_moe = k * h + (h if fs > 0 else 0.0), k * fe / etp + fs / tp
        fc1_out_moe, fc2_out_moe = k * gate * fe / etp + gate * fs / tp, k * h + (h if fs > 0 else 0.0)
    else:
        fc1_in_moe = fc2_in_moe = fc1_out_moe = fc2_out_moe = 0.0
    frac = sz.moe_fraction
    mix = lambda dense, moe_v: (1.0 - frac) * dense + frac * moe_v
    cast_f = h + out_k + mix(h, fc1_in_moe) + mix(f / tp, fc2_in_moe)
    cast_b = in_n + h + mix(gate * f / tp, fc1_out_moe) + mix(h, fc2_out_moe)
    kr, M = sz.kernel, sz.tokens
    return (kr.stream_s(FP8_CAST_BYTES_PER_ELEMENT * M * cast_f), kr.stream_s(FP8_CAST_BYTES_PER_ELEMENT * M * cast_b))


def int8_quantise_s(sz, in_n, out_k):
    """(forward, backward) time of AQT's int8 quantisation of one layer's dense GEMM operands (MaxText
    quantization 'int8'): config_v3 with fwd_bits, dlhs_bits and drhs_bits 8 quantises both operands of each of the
    three GEMMs of every dense matmul, each with a dynamic abs-max scale along its own contraction axis, so no
    quantised copy is reused between them: forward X.W quantises the activation X and the weight W; the input
    gradient G.W^T quantises the output gradient G and W again; the weight gradient X^T.G quantises X and G again
    (stochastic rounding of G: an elementwise noise term fused into the same pass, no extra bytes). Per token X and
    G are the inputs and output gradients of QKV, the output projection, FC1 and FC2 (as fp8_cast_s); W is the
    layer's whole matmul weight on the device (per TP shard; gathered by ZeRO-3 before the dot), quantised once per
    pass however many tokens the micro-batch holds (an assumption: AQT quantises the operand the dot receives; had
    XLA moved the quantisation before the FSDP all-gather, W's term would shrink by the FSDP degree). Each quantisation streams INT8_QUANTISE_BYTES_PER_ELEMENT.
    Attention (splash, bf16) and the logits are not quantised. 0 unless the training dtype is int8.

    Source: AI-Hypercomputer/maxtext MaxText/layers/quantizations.py (_get_int8_quant_config: aqt_config.config_v3
    fwd_bits=8, dlhs_bits=8, drhs_bits=8 with quantization_local_shard_count -1 from configs/base.yml,
    rng_type jax.uniform; Fp8/AqtQuantization on DenseGeneral) at commit e7292a3; google/aqt aqt/jax/v2
    (calibration.AbsMaxCalibration: per-channel abs-max over the contraction axis)."""
    if sz.training.dtype != "int8":
        return 0.0, 0.0
    m = sz.model
    h, tp = sz.hidden, sz.tp
    gate = 2.0 if m.gated_mlp else 1.0
    f = float(m.ffn_hidden_size)
    c = sz.costs
    frac = sz.moe_fraction
    if m.moe is not None:
        fe, ne, k, fs = _moe_dims(m)
        etp = sz.etp
        x_moe, g_moe = k * h + (h if fs > 0 else 0.0) + k * fe / etp + fs / tp, \
            k * gate * fe / etp + gate * fs / tp + k * h + (h if fs > 0 else 0.0)
        w_moe = ne / sz.ep * c.expert_params / etp + c.shared_expert_params / tp
    else:
        x_moe = g_moe = w_moe = 0.0
    mix = lambda dense, moe_v: (1.0 - frac) * dense + frac * moe_v
    x = h + out_k + mix(h + f / tp, x_moe)                        # GEMM inputs per token
    g = in_n + h + mix(gate * f / tp + h, g_moe)                  # GEMM output gradients per token
    w = c.attn_params / tp + mix(c.dense_mlp_params / tp, w_moe)  # matmul weights per device
    kr, M, B = sz.kernel, sz.tokens, INT8_QUANTISE_BYTES_PER_ELEMENT
    return kr.stream_s(B * (M * x + w)), kr.stream_s(B * (M * (x + 2.0 * g) + w))


def host_time_s(hw, framework=None) -> float:
    """Host (kernel launch and framework) time of one layer pass: the framework preset's host.layer_overhead_us
    where it publishes one, else the profile's calibrated layer_overhead_us.

    Source: the preset's host.source; the profile's efficiency.layer_overhead_us (hardware_profiles/*.yaml: fitted
    or measured); He 2022, "Making Deep Learning Go Brrrr From First Principles" (the overhead-bound regime)."""
    if framework is not None and framework.host.layer_overhead_s is not None:
        return framework.host.layer_overhead_s
    return hw.efficiency.layer_overhead_us * 1e-6


def host_bound_passes_s(sz, gpu_f, gpu_b, mlp, floor_s):
    """(forward, backward, forward issue, backward issue): the pass times with the host floor, and the host time
    that issues each pass's kernels (the floor, or the kernel-count model's averaged over the layers). Pass times: max(GPU time, `floor_s`) per pass (the profile's or
    preset's layer_overhead_us); where the framework prices host time per kernel (host.kernel_host_us), the
    kernel-count model of costs.host over that floor (H = max(kernels x kernel time, floor)): each dense layer
    max(G, H), each MoE layer whose forward waits on
    the dispatcher's device-to-host copy max(G, H_post + max(G_pre, H_pre)) with the MoE block's GEMMs and
    permutations (mlp_parts_s) as the GPU work after the sync, averaged over the model's dense and MoE layers as
    the GPU times are.

    Source: costs.host (Megatron-Core kernel counts, the dropless sync); He 2022 (overhead-bound regime)."""
    fw = sz.framework
    k = fw.host.kernel_host_s if fw is not None else None
    if k is None:
        return np.maximum(gpu_f, floor_s), np.maximum(gpu_b, floor_s), floor_s, floor_s
    lk = layer_kernel_host(sz, k, fw.host.cuda_graph_scope, sz.training.dtype == "fp8")
    lk = replace(lk, **{f: np.maximum(getattr(lk, f), floor_s) for f in ("dense_fwd_s", "dense_bwd_s", "moe_fwd_s",
                                                                         "moe_bwd_s")})
    dense, moe = mlp_parts_s(sz)
    frac = sz.moe_fraction
    mlp_b = mlp[1] + mlp[2]
    g_dense_f, g_dense_b = gpu_f - mlp[0] + dense[0], gpu_b - mlp_b + dense[1] + dense[2]
    # what the host adds to each layer kind's GPU time (exactly 0 where the GPU is slower), averaged over the layers
    add_f = (1.0 - frac) * np.maximum(lk.dense_fwd_s - g_dense_f, 0.0)
    add_b = (1.0 - frac) * np.maximum(lk.dense_bwd_s - g_dense_b, 0.0)
    issue_f, issue_b = (1.0 - frac) * lk.dense_fwd_s, (1.0 - frac) * lk.dense_bwd_s
    if moe is not None and frac > 0.0:
        g_moe_f, g_moe_b = gpu_f - mlp[0] + moe[0], gpu_b - mlp_b + moe[1] + moe[2]
        moe_f = synced_pass_s(g_moe_f, moe[0], lk.moe_fwd_s, lk.moe_post_sync_fwd_s, lk.moe_syncs)
        add_f = add_f + frac * (moe_f - g_moe_f)
        add_b = add_b + frac * np.maximum(lk.moe_bwd_s - g_moe_b, 0.0)
        issue_f, issue_b = issue_f + frac * lk.moe_fwd_s, issue_b + frac * lk.moe_bwd_s
    return gpu_f + add_f, gpu_b + add_b, issue_f, issue_b


def remat_policy_s(saved, elem_f, qkv_f, core_f, out_proj_f, mlp_f, gated: bool):
    """Forward time a JAX remat policy that saves `saved` replays in the backward: the elementwise kernels always,
    the QKV projections unless 'qkv_proj' is saved, the attention core unless 'context' is, the output projection
    unless 'out_proj' is, the MLP input GEMMs (2/3 of the MLP's GEMM time when gated, 1/2 otherwise) unless
    'mlpwi' is. The MLP output GEMM is never replayed: its output feeds only the next layer's input, which the
    scanned layer keeps (decoder_layer_input). Each input a backward GEMM needs is recomputed unless saved
    (dW of out_proj needs the context, dW of mlpwo the activation of mlpwi's outputs).

    Source: AI-Hypercomputer/maxtext src/maxtext/layers/decoders.py (remat policies: minimal =
    checkpoint_dots_with_no_batch_dims, save_dot_except_mlp, qkv_proj_offloaded, minimal_offloaded, custom =
    save_and_offload_only_these_names(tensors_on_device, tensors_to_offload)); JAX jax.checkpoint_policies."""
    s = set(saved)
    wi = (2.0 / 3.0 if gated else 0.5) * mlp_f
    return (elem_f + (0.0 if "qkv_proj" in s else qkv_f) + (0.0 if "context" in s else core_f)
            + (0.0 if "out_proj" in s else out_proj_f) + (0.0 if "mlpwi" in s else wi))


def recompute_pass_s(sz, forward_s, core_f, gemm_f, elem_f, parts=None):
    """Time a layer's recompute adds to its backward, by recompute code and the framework's selective kind:
    full replays the forward; selective 'core-attention' (Megatron) the attention core; 'op-level-sac'
    (torchtitan) the unsaved ops: every second GEMM (half the GEMM time) and the elementwise kernels;
    'every-nth-layer' one full forward in n layers; 'mlp' (Megatron-Core --recompute-modules mlp) the dense
    layers' MLP forward GEMMs (`parts["dense_mlp"]`, averaged over all layers: Megatron-Core checkpoints the MLP
    of a layer whose MLP is not an MoE layer, so MoE layers replay nothing under it: their experts and
    all-to-alls would need the 'moe' module); 'remat-policy' with its saved tensors named
    (RecomputeSpec.saved) what `remat_policy_s` replays (`parts`: forward qkv, out-projection and MLP GEMM times),
    without them, and 'none', as core-attention.

    Source: Korthikanti et al. 2022 (arXiv 2205.05198) sec. 5; torchtitan models/llama3/parallelize_llama.py
    (_save_list, selective_ac_option); Megatron-Core transformer_layer.py (recompute_mlp: the MLP under
    tensor_parallel.checkpoint, set only `if not isinstance(self.mlp, MoELayer)` since NVIDIA/Megatron-LM
    3b141a2471, 2025-04-05, later `if not self.is_moe_layer`, the same at 0d8e0714 and b0cc2706;
    transformer_config.py: "mlp: recompute the dense MLP submodule", "moe: recompute the MoE layer"); the
    preset's recompute.source."""
    rc = sz.recompute
    sel = sz.framework.recompute if sz.framework is not None else None
    kind = sel.selective if sel is not None else "core-attention"
    if kind == "op-level-sac":
        selective = 0.5 * gemm_f + elem_f
    elif kind == "mlp":
        selective = parts["dense_mlp"] if parts is not None else 0.0
    elif kind == "every-nth-layer":
        selective = forward_s / float(sel.selective_every_n_layers)
    elif kind == "remat-policy" and sel.saved is not None and parts is not None:
        selective = remat_policy_s(sel.saved, elem_f, parts["qkv"], core_f, parts["out_proj"], parts["mlp"],
                                   bool(sz.model.gated_mlp))
    else:
        selective = core_f
    return np.where(rc == 2, forward_s, np.where(rc == 1, selective, 0.0))


def layer_costs(sz) -> LayerCosts:
    """Per-op and per-pass times of one layer, one micro-batch, one device, for every layout of `sz`.

    A pass takes max(GPU time, host time): eager frameworks launch kernels asynchronously, so the GPU runs ahead
    of the host only while kernels outlast their launches; a pass whose kernels are shorter than the host work
    to issue them takes the host time. Full recompute replays the forward inside the backward.

    Source: He 2022 (https://horace.io/brrr_intro.html, overhead-bound regime); Korthikanti et al. 2022 (arXiv
    2205.05198) sec. 5 (recompute); Qi et al. 2023 (arXiv 2401.10241) sec. 2 (the weight-gradient half)."""
    qkv, out_proj, in_n, out_k = attention_projections_s(sz)
    dense_mlp, moe_mlp = mlp_parts_s(sz)
    mlp = _mlp_mix(sz, dense_mlp, moe_mlp)
    core_f, core_b = attention_core_s(sz)
    t_elem = elementwise_s(sz, mlp_elements(sz).elementwise)
    fp8_f, fp8_b = fp8_cast_s(sz, in_n, out_k)
    q8_f, q8_b = int8_quantise_s(sz, in_n, out_k)
    fp8_f, fp8_b = fp8_f + q8_f, fp8_b + q8_b
    ops_f, ops_b = model_ops_s(sz)
    mla_f, mla_b = mla_rope_assembly_s(sz)
    ops_f, ops_b = ops_f + mla_f, ops_b + mla_b
    host = host_time_s(sz.hardware, sz.framework)
    proj = _add(qkv, out_proj)
    gpu_f = proj[0] + mlp[0] + core_f + t_elem + fp8_f + ops_f
    wgrad = proj[2] + mlp[2]
    gpu_b = proj[1] + mlp[1] + wgrad + core_b + 2.0 * t_elem + fp8_b + ops_b
    fwd_s, bwd_s, issue_f, issue_b = host_bound_passes_s(sz, gpu_f, gpu_b, mlp, host)
    replay = module_replay_s(sz)
    return LayerCosts(
        qkv_s=qkv[0], out_proj_s=out_proj[0], attention_core_s=core_f, attention_core_bwd_s=core_b, mlp_s=mlp[0],
        attention_projection_dgrad_s=proj[1], attention_projection_wgrad_s=proj[2], mlp_dgrad_s=mlp[1],
        mlp_wgrad_s=mlp[2], elementwise_s=t_elem, fp8_cast_fwd_s=fp8_f, fp8_cast_bwd_s=fp8_b, model_ops_fwd_s=ops_f,
        model_ops_bwd_s=ops_b, host_s=host, issue_fwd_s=issue_f, issue_bwd_s=issue_b, gpu_fwd_s=gpu_f, gpu_bwd_s=gpu_b, forward_s=fwd_s, backward_s=bwd_s,
        recompute_s=recompute_pass_s(sz, fwd_s, core_f, proj[0] + mlp[0], t_elem,
                                     {"qkv": qkv[0], "out_proj": out_proj[0], "mlp": mlp[0],
                                      "dense_mlp": (1.0 - np.minimum(sz.moe_fraction, 1.0)) * dense_mlp[0]})
        + np.where(sz.recompute == 2, 0.0, replay + mla_up_proj_replay_s(sz)), wgrad_s=wgrad)
