"""The analytic engine: one training step of every layout in a LayoutTable, in closed form over numpy arrays.

Composition (all per device of the busiest pipeline rank, one step):

    step = m * tau_max                       compute + exposed TP/EP/CP/PP comm of one micro-batch, slowest rank
         + (pipeline fill/drain)             bubble, per schedule (analytic.pipeline.pipeline_time_s)
         + exposed DP / ZeRO communication   what backward/forward does not hide
         + optimizer step + fixed overhead

Every duration comes from the pure cost functions in simulator.costs and simulator.topology, which the
discrete-event engine uses too. One code path evaluates one layout or a million.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..costs.compute import (elementwise_bytes_per_token, gemm_efficiency, gemm_time_s, matmul_efficiency,
                             memory_bound_time_s)
from ..costs.flops import ModelCosts, model_costs, param_tensors_per_layer
from ..costs.memory import activation_bytes_per_layer, logits_bytes, model_state_bytes
from ..specs.hardware import HardwareProfile
from ..specs.model import ModelSpec
from ..specs.training import TrainingSpec
from ..topology.collectives import (all_reduce_time_s, all_to_all_time_s, hierarchical_phase_cost, p2p_time_s,
                                    tree_all_reduce_latency_s)
from ..topology.placement import axis_strides, tier_arrays
from ..units import BYTES_PER_ELEMENT, GIGA, storage_bytes
from .layouts import LayoutTable
from .pipeline import default_stage_split, inflight_microbatches, pipeline_time_s

#: Bytes the optimizer step streams per parameter it owns: read fp32 grad (4), read+write fp32 master, m, v
#: (24), write the bf16 weight (2), plus the gradient-norm pass (4). Memory bound.
OPTIMIZER_BYTES_PER_PARAM = 34.0

#: Flash-attention backward executes 5 GEMMs where the forward executes 2 (it recomputes the scores), so
#: its time is 2.5x the forward's (Dao 2023, FlashAttention-2, arXiv 2307.08691, sec. 3.1-3.2).
FLASH_BWD_OVER_FWD = 2.5

#: Bytes an FP8 cast-transpose moves per element: read bf16 (2), write FP8 row-wise (1) and column-wise (1).
FP8_CAST_BYTES_PER_ELEMENT = 4.0

#: A causal mask lets fused attention kernels skip the upper triangle: about half the s x s work.
CAUSAL_EXECUTED_FRACTION = 0.5

#: Host time per micro-batch outside the transformer layers, in layer passes: the embedding forward and backward
#: (~1 layer pass of kernels each with its TP all-reduce; first pipeline rank only), the logits, vocab-parallel
#: cross entropy and loss scaling forward and backward (~1 each: max/sum all-reduces, exp, log, gather; last
#: pipeline rank only), and the batch fetch with its TP broadcast plus pipeline send/receive and schedule
#: bookkeeping (~2, every rank). An estimate from kernel counts of Megatron-LM's GPT step, not a fit.
#: MICRO_BATCH_HOST_LAYERS is the total of a one-stage pipeline; a middle stage pays only the every-rank part.
HOST_LAYERS_EVERY_RANK = 2.0
HOST_LAYERS_EMBEDDING = 2.0
HOST_LAYERS_LOSS = 2.0
MICRO_BATCH_HOST_LAYERS = HOST_LAYERS_EVERY_RANK + HOST_LAYERS_EMBEDDING + HOST_LAYERS_LOSS

# Reason bits of an infeasible layout (messages in analytic.reasons).
R_WORLD, R_HEADS, R_KV, R_FFN, R_CHUNKS, R_BATCH, R_EP, R_CP, R_INTERLEAVE, R_VPP, R_MEMORY = (1 << i for i in range(11))


#: What layer_costs returns (its contract with evaluate and the discrete-event engine): the job's specs and sizes
#: as arrays, per-layer per-micro-batch durations (t_*), exposed communication, and the DP/EP group sizes.
LAYER_COST_KEYS = (
    "m", "hw", "tr", "c", "eff", "tiers", "f64", "tp", "pp", "dp",
    "ep", "cp", "vpp", "b", "sp", "rc", "s", "h", "V", "L",
    "act_b", "w_bytes", "g_bytes", "num_micro", "reasons", "M", "a", "kvh", "d_v", "n_moe_heavy",
    "mlp_act_heavy", "t_layer_f", "t_layer_b", "t_layer_w", "t_layer_rc", "st", "act_msg", "tp_exposed_f", "tp_exposed_b", "t_ep_f",
    "t_ep_b", "t_cp_f", "t_cp_b", "comm_layer_f", "comm_layer_b", "t_logits_f", "t_logits_b", "t_emb_comm", "spf", "hbm",
    "t_micro_host", "etp", "dpc", "edpc", "fc2_in_heavy", "t_p2p", "gpu_f", "gpu_b", "t_attn_core", "t_fp8_f",
    "t_fp8_b",
)


@dataclass(frozen=True)
class Job:
    """What is trained on what: the fixed part of an evaluation (the layouts vary)."""

    model: ModelSpec
    hardware: HardwareProfile
    training: TrainingSpec
    num_devices: int


def _check_reasons(job: Job, t: LayoutTable, num_micro):
    m, tr = job.model, job.training
    reasons = np.zeros(len(t), dtype=np.int64)
    kv = m.kv_heads
    reasons |= np.where(t.tp * t.pp * t.dp * t.cp != job.num_devices, R_WORLD, 0)
    reasons |= np.where(m.num_heads % t.tp != 0, R_HEADS, 0)
    reasons |= np.where((kv % t.tp != 0) & (t.tp % kv != 0), R_KV, 0)
    ffn = m.moe.expert_ffn_hidden_size if m.moe is not None else m.ffn_hidden_size
    reasons |= np.where((m.ffn_hidden_size % t.tp != 0) | (ffn % t.tp != 0), R_FFN, 0)
    reasons |= np.where(t.pp * t.vpp > m.num_layers, R_CHUNKS, 0)
    reasons |= np.where(tr.global_batch % (t.micro_batch * t.dp) != 0, R_BATCH, 0)
    E = m.moe.num_experts if m.moe is not None else 1
    # EP is carved out of DP, or, when it exceeds DP, out of TP x DP with the experts unsplit by TP
    # (Megatron-Core expert tensor parallelism 1: EP 32 over TP 2 x DP 16, Qwen3-235B recipes)
    ep_in_dp = t.dp % t.ep == 0
    ep_in_tpdp = (t.ep % t.dp == 0) & ((t.tp * t.dp) % t.ep == 0)
    bad_ep = (~(ep_in_dp | ep_in_tpdp)) | (E % t.ep != 0) if m.moe is not None else (t.ep != 1)
    reasons |= np.where(bad_ep, R_EP, 0)
    reasons |= np.where(tr.seq_len % t.cp != 0, R_CP, 0)
    reasons |= np.where((t.schedule == 2) & (np.mod(num_micro, t.pp) != 0), R_INTERLEAVE, 0)
    reasons |= np.where(((t.vpp > 1) & (t.pp == 1)) | ((t.vpp > 1) != (t.schedule == 2)), R_VPP, 0)
    return reasons


def layer_costs(job: Job, t: LayoutTable) -> dict:
    """Per-layer, per-micro-batch durations on one device, shared by both engines (SI units, arrays).

    Keys: t_layer_f/b/rc/w (forward, backward, recompute, weight-gradient part), tp_coll (one TP collective),
    n_tp_fwd/n_tp_bwd, tp_exposed_f/b, t_ep_f/b, t_cp_f/b, comm_layer_f/b, t_logits_f/b, t_emb_comm,
    t_micro_host (host time per micro-batch outside the layers of a one-stage pipeline; evaluate splits it over
    the pipeline ranks that do each part), gpu_f/gpu_b (a layer pass's GPU
    time before the host-bound floor), and the context the composition needs (strides, tiers, sizes).
    """
    m, hw, tr = job.model, job.hardware, job.training
    c: ModelCosts = model_costs(m, tr.seq_len)
    eff = hw.efficiency
    tiers = tier_arrays(hw)
    f64 = np.float64
    tp, pp, dp, ep, cp, vpp = (x.astype(f64) for x in (t.tp, t.pp, t.dp, t.ep, t.cp, t.vpp))
    b = t.micro_batch.astype(f64)
    sp = t.sequence_parallel & (t.tp > 1)
    rc = t.recompute
    s = float(tr.seq_len)
    h = float(m.hidden_size)
    V = float(m.vocab_size)
    L = m.num_layers
    act_b = float(storage_bytes(tr.dtype))
    w_bytes = act_b
    g_bytes = float(BYTES_PER_ELEMENT[tr.grad_dtype])
    peak = hw.peak_flops_per_s(tr.dtype)
    mm_max = eff.fp8_matmul_max if (tr.dtype == "fp8" and eff.fp8_matmul_max) else eff.matmul_max
    half = eff.matmul_half_dim
    kh = eff.matmul_k_half
    attn_max = eff.attention_max or mm_max
    hbm = hw.device.memory_bandwidth_bytes_per_s

    num_micro = np.maximum(1.0, np.floor(tr.global_batch / (b * dp)))
    # expert tensor-parallel degree: tp when EP fits in DP (experts split like the dense MLP), else tp*dp/ep
    etp = np.where(np.mod(dp, ep) == 0, tp, np.maximum(1.0, tp * dp / ep))
    # Gradients are reduced, and optimizer state (ZeRO) sharded, over DP x CP: context-parallel ranks hold the
    # same weights and see different tokens (Megatron-Core: data-parallel group "with context parallel" used by
    # DistributedDataParallel and the distributed optimizer). Experts: over the expert-data-parallel group.
    dpc = dp * cp
    edpc = np.maximum(1.0, dp * cp * tp / (etp * ep))
    reasons = _check_reasons(job, t, num_micro)

    # ---- per-layer, per-micro-batch compute on one device ---------------------------------------------------
    M = b * s / cp                                        # tokens per micro-batch per device (GEMM rows)
    a, kvh = float(m.num_heads), float(m.kv_heads)
    if m.mla is not None:
        d_v = float(m.mla.v_head_dim)
    else:
        d_v = float(m.dim_per_head)
    out_k = a * d_v / tp                                   # output projection inner dim per TP rank
    in_n = (c.attn_params - a * d_v * h) / h / tp          # q/k/v (or MLA factors) width per TP rank
    t_attn_proj = gemm_time_s(M, h, in_n, peak, mm_max, half, kh) + gemm_time_s(M, out_k, h, peak, mm_max, half, kh)

    gate = 2.0 if m.gated_mlp else 1.0
    moe = m.moe
    if moe is not None:
        n_moe_heavy = c.num_moe_layers / max(1, L - moe.first_dense_layers)   # MoE share of a stage's layers
        frac_moe = c.num_moe_layers / L                                      # MoE share of all layers
        fe = float(moe.expert_ffn_hidden_size)
        E, k = float(moe.num_experts), float(moe.top_k)
        tok_per_expert = M * ep * k * etp / (E * tp)      # balanced routing over the EP group
        experts_local = E / ep
        t_experts = experts_local * (gemm_time_s(tok_per_expert, h, gate * fe / etp, peak, mm_max, half, kh)
                                     + gemm_time_s(tok_per_expert, fe / etp, h, peak, mm_max, half, kh))
        fs = float(moe.shared_expert_ffn_hidden_size or moe.expert_ffn_hidden_size) * moe.num_shared_experts
        t_shared = 0.0
        if fs > 0:
            t_shared = gemm_time_s(M, h, gate * fs / tp, peak, mm_max, half, kh) + gemm_time_s(M, fs / tp, h, peak, mm_max, half, kh)
        t_router = gemm_time_s(M, h, E, peak, mm_max, half, kh)
        t_moe_mlp = t_experts + t_shared + t_router
        # + the permuted token copies, saved once as the input of the expert fc1: since Megatron-Core v0.13 the
        # routing probabilities multiply inside the expert activation function ("memory efficient token
        # permutation", megatron/core/transformer/moe/README.md), so the unpermute keeps no copy of its input
        moe_act = k * (gate + 1.0) * fe + (gate + 1.0) * fs + k * h
        moe_ew = moe_act + k * h                           # permute writes and unpermute reads k copies each
    else:
        frac_moe = n_moe_heavy = 0.0
        t_moe_mlp = 0.0
        moe_act = moe_ew = 0.0
    f = float(m.ffn_hidden_size)
    t_dense_mlp = gemm_time_s(M, h, gate * f / tp, peak, mm_max, half, kh) + gemm_time_s(M, f / tp, h, peak, mm_max, half, kh)
    dense_act = (gate + 1.0) * f
    t_mlp = (1.0 - frac_moe) * t_dense_mlp + frac_moe * t_moe_mlp
    mlp_act_elems = (1.0 - frac_moe) * dense_act + frac_moe * moe_act
    mlp_ew_elems = (1.0 - frac_moe) * dense_act + frac_moe * moe_ew
    mlp_act_heavy = (1.0 - n_moe_heavy) * dense_act + n_moe_heavy * moe_act
    # MLP activations saved as GEMM inputs (FP8 with Transformer Engine): fc2 inputs, and for MoE the permuted
    # copies entering the expert fc1
    fc2_in_heavy = (1.0 - n_moe_heavy) * f + n_moe_heavy * ((k * fe + fs + k * h) if moe is not None else 0.0)

    # attention core. Flash: one fused kernel, causal half executed, efficiency attention_max saturating in the
    # local sequence length. Without flash (Megatron's unfused path): two batched GEMMs per head, QK^T of shape
    # (s, d_head, s) and softmax(.)V of shape (s, s, d_head), run on the matmul curve; their output (s x s or
    # s x d_head per head, times heads x micro-batch) fills the machine even though one dimension is d_head: both
    # run on the GEMM curve as batched GEMMs (output area x heads x micro-batch; reduction depth d_head for QK^T,
    # s for softmax(.)V), equal FLOPs each, so their combined efficiency is the harmonic mean of the two;
    # the s x s softmax/dropout between them is memory bound.
    attn_flops_fwd = c.attn_core_flops_per_token * M / tp
    exec_frac = np.where(t.flash_attention, CAUSAL_EXECUTED_FRACTION, 1.0)
    d_head = float(m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim) if m.mla is not None else float(m.dim_per_head)
    attn_eff = np.where(t.flash_attention, matmul_efficiency(s / cp, attn_max, half),
                        2.0 / (1.0 / gemm_efficiency(s / cp, d_head, s, mm_max, half, kh, batch=b * a / tp)
                               + 1.0 / gemm_efficiency(s / cp, s, d_head, mm_max, half, kh, batch=b * a / tp)))
    t_attn_core = attn_flops_fwd * exec_frac / (peak * attn_eff)
    softmax_bytes = np.where(t.flash_attention, 0.0, 3.0 * 2.0 * a / tp * (s / cp) * s * b * act_b)
    t_attn_core = t_attn_core + memory_bound_time_s(softmax_bytes, hbm, eff.memory_bound)
    bwd_attn_factor = np.where(t.flash_attention, FLASH_BWD_OVER_FWD, 2.0)

    spf = np.where(sp, tp, 1.0)
    ew_bytes = act_b * M * (14.0 * h / spf + mlp_ew_elems / tp)
    t_elem = memory_bound_time_s(ew_bytes, hbm, eff.memory_bound)
    # FP8 GEMMs take FP8 operands: every activation entering a GEMM is quantised in the forward pass and every
    # output gradient in the backward, each read in bf16 and written as FP8 twice (row- and column-wise, the
    # transposed copy feeding the weight-gradient GEMM): 2 + 1 + 1 bytes per element (NVIDIA Transformer Engine,
    # FP8 primer: cast-transpose kernels; Micikevicius et al. 2022, arXiv 2209.05433 sec. 4). Memory bound.
    if tr.dtype == "fp8":
        # per token: inputs of QKV, the output projection, FC1 and FC2 (forward), and the output gradients of the
        # same GEMMs (backward); a MoE layer feeds k token copies to its experts (split etp ways) plus the
        # shared experts (split tp ways)
        if moe is not None:
            fc1_in_moe, fc2_in_moe = k * h + (h if fs > 0 else 0.0), k * fe / etp + fs / tp
            fc1_out_moe, fc2_out_moe = k * gate * fe / etp + gate * fs / tp, k * h + (h if fs > 0 else 0.0)
        else:
            fc1_in_moe = fc2_in_moe = fc1_out_moe = fc2_out_moe = 0.0
        mix = lambda dense, moe_v: (1.0 - frac_moe) * dense + frac_moe * moe_v
        cast_f = h + out_k + mix(h, fc1_in_moe) + mix(f / tp, fc2_in_moe)
        cast_b = in_n + h + mix(gate * f / tp, fc1_out_moe) + mix(h, fc2_out_moe)
        t_fp8_f = memory_bound_time_s(FP8_CAST_BYTES_PER_ELEMENT * M * cast_f, hbm, eff.memory_bound)
        t_fp8_b = memory_bound_time_s(FP8_CAST_BYTES_PER_ELEMENT * M * cast_b, hbm, eff.memory_bound)
    else:
        t_fp8_f = t_fp8_b = 0.0
    host = eff.layer_overhead_us * 1e-6                   # host (launch/framework) time of one layer pass

    t_gemm_f = t_attn_proj + t_mlp
    gpu_f = t_gemm_f + t_attn_core + t_elem + t_fp8_f
    gpu_b = 2.0 * t_gemm_f + bwd_attn_factor * t_attn_core + 2.0 * t_elem + t_fp8_b
    t_layer_w = t_gemm_f                                  # weight-gradient half of the backward GEMMs (ZB-H1)

    # ---- per-layer communication, one micro-batch -----------------------------------------------------------
    st = axis_strides(t.placement, tp, cp, ep, dp, pp)
    act_msg = M * h * act_b                               # one activation tensor [b, s/cp, h]
    tp_coll = np.where(t.tp > 1, all_reduce_time_s(act_msg, tp, st["tp"], tiers), 0.0)   # AR == RS + AG
    n_tp_fwd = 2.0
    n_tp_bwd = 2.0 + np.where(rc == 2, 2.0, 0.0)           # full recompute replays the forward's collectives
    tp_hide = np.where(t.tp_comm_overlap, 1.0, 0.0)
    t_tp_f = n_tp_fwd * tp_coll
    t_tp_b = n_tp_bwd * tp_coll
    tp_exposed_f = np.maximum(0.0, t_tp_f - tp_hide * t_gemm_f)
    tp_exposed_b = np.maximum(0.0, t_tp_b - tp_hide * 2.0 * t_gemm_f)

    if moe is not None:
        a2a_bytes = M * k * h * act_b / spf
        a2a = np.where(t.ep > 1, all_to_all_time_s(a2a_bytes, ep, st["ep"], tiers), 0.0) * frac_moe
    else:
        a2a = np.zeros_like(tp)
    # EP all-to-all overlap (Megatron-Core v0.14 "batch-level overlapping", --overlap-moe-expert-parallel-comm
    # --delay-wgrad-compute; megatron/core/pipeline_parallel/combined_1f1b.py): in the steady state the forward of
    # one micro-batch and the backward of another run together layer by layer, each all-to-all on a communication
    # stream beside a compute chunk of the other micro-batch: f.attn || b.combine-grad, f.dispatch || b.mlp,
    # f.mlp || b.dispatch-grad, f.combine || b.attn. Each all-to-all is exposed only by what outlasts its chunk.
    # Megatron runs it only with pp == 1 or an interleaved schedule; the full-recompute replay stays exposed.
    ep_hide = t.ep_comm_overlap & ((t.pp == 1) | (t.schedule == 2))
    attn_f = t_attn_proj + t_attn_core
    mlp_f = np.maximum(0.0, gpu_f - attn_f)
    attn_b = 2.0 * t_attn_proj + bwd_attn_factor * t_attn_core
    mlp_b = np.maximum(0.0, gpu_b - attn_b)
    ep_f_hidden = np.maximum(0.0, a2a - mlp_b) + np.maximum(0.0, a2a - attn_b)
    ep_b_hidden = np.maximum(0.0, a2a - attn_f) + np.maximum(0.0, a2a - mlp_f)
    # The first forward and the last backward have no partner micro-batch: over m micro-batches, 1/m of the
    # all-to-all time stays exposed (all of it for m = 1).
    ep_f_hidden = ep_f_hidden + (2.0 * a2a - ep_f_hidden) / num_micro
    ep_b_hidden = ep_b_hidden + (2.0 * a2a - ep_b_hidden) / num_micro
    t_ep_f = np.where(ep_hide, ep_f_hidden, 2.0 * a2a)     # dispatch + combine
    t_ep_b = np.where(ep_hide, ep_b_hidden, 2.0 * a2a) + np.where(rc == 2, 2.0 * a2a, 0.0)

    # context parallel: ring exchange of K and V blocks, overlapped with the attention core it feeds
    kv_dim = (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim) if m.mla is not None else 2.0 * kvh * m.dim_per_head
    kv_bytes = M * kv_dim * act_b / np.where(m.mla is not None, 1.0, tp)
    cp_comm = np.where(t.cp > 1, (cp - 1.0) * p2p_time_s(kv_bytes, st["cp"], tiers), 0.0)
    t_cp_f = np.maximum(0.0, cp_comm - t_attn_core)
    t_cp_b = np.maximum(0.0, 2.0 * cp_comm - bwd_attn_factor * t_attn_core)

    comm_layer_f = tp_exposed_f + t_ep_f + t_cp_f
    comm_layer_b = tp_exposed_b + t_ep_b + t_cp_b

    # ---- host-bound floor: a layer pass takes max(GPU time, host time) ----------------------------------------
    # Eager frameworks launch kernels asynchronously: the GPU runs ahead of the host only while kernels outlast
    # their launches, so a pass whose kernels are shorter than the host work to issue them takes the host time
    # (the "overhead-bound" regime; He 2022, "Making Deep Learning Go Brrrr From First Principles",
    # https://horace.io/brrr_intro.html ; PyTorch performance tuning guide). The exposed communication of the
    # pass is GPU time too. Full recompute replays the forward (and its collectives) inside the backward pass.
    # A pass's exposed TP/EP/CP collectives do not hide under its host time: a collective is a rendezvous of the
    # group, each one waits for the last rank's host to launch it, so in the host-bound regime the group runs at the
    # pace of its slowest host plus the collectives (vTrain single node, Megatron-DeepSpeed on 2-8 A100: the
    # host-bound per-layer time rises with the TP group, by about the NCCL all-reduce time of its 6 collectives;
    # letting them hide under the host floor left TP=8 23.7% too fast, adding them leaves 8.5%).
    t_layer_f = np.maximum(gpu_f, host)
    t_layer_rc = np.where(rc == 2, np.maximum(gpu_f, host), np.where(rc == 1, t_attn_core, 0.0))
    t_layer_b = np.maximum(gpu_b, host)
    # Work the host does per micro-batch outside the layers (batch fetch and its TP broadcast, embedding, loss,
    # pipeline send/receive and schedule bookkeeping), counted in layer passes of host time, all ranks of a
    # one-stage pipeline together (evaluate puts each part on the pipeline rank that does it).
    t_micro_host = MICRO_BATCH_HOST_LAYERS * host

    # ---- embedding and logits (first / last rank) ------------------------------------------------------------
    t_logits_f = gemm_time_s(M, h, V / tp, peak, mm_max, half, kh) + memory_bound_time_s(3.0 * 4.0 * M * V / tp, hbm, eff.memory_bound)
    t_logits_b = 2.0 * gemm_time_s(M, h, V / tp, peak, mm_max, half, kh) + memory_bound_time_s(2.0 * 4.0 * M * V / tp, hbm, eff.memory_bound)
    t_emb_comm = tp_coll                                   # vocab-parallel embedding: one all-reduce forward

    # pipeline send of one activation [b, s/cp, h]: Megatron's scatter/gather optimisation sends 1/t of it
    # across the pipeline link and all-gathers it inside the TP group (Narayanan et al. 2021, sec. 4.1), with
    # or without SP; the NVLink all-gather is small and left out.
    t_p2p = np.where(t.pp > 1, p2p_time_s(act_msg / tp, st["pp"], tiers), 0.0)
    scope = locals()
    return {k: scope[k] for k in LAYER_COST_KEYS}


def _dp_groups(lc: dict) -> list:
    """(size, stride) of a rank's data-parallel groups: dense parameters over dp x cp, and, for MoE, expert
    parameters over the expert-data-parallel group."""
    st = lc["st"]
    st_dp = np.minimum(st["dp"], st["cp"]) if np.any(lc["cp"] > 1) else st["dp"]
    groups = [(lc["dpc"], st_dp)]
    if lc["m"].moe is not None:
        groups.append((lc["edpc"], st["edp"]))
    return groups


def dp_phase_cost(lc: dict, dense_params, expert_params):
    """(seconds per byte-per-parameter, latency seconds) of one reduce-scatter or all-gather phase of a rank's
    parameters over its data-parallel groups (_dp_groups). Reduce-scatter and all-gather cost the same per byte
    and all-reduce is both (topology.collectives), so this one hierarchical cost serves all three."""
    bw, lat = 0.0, 0.0
    for (n, stride), params in zip(_dp_groups(lc), (dense_params, expert_params)):
        b, l_ = hierarchical_phase_cost(params, n, stride, lc["tiers"])
        bw = bw + np.where(n > 1, b, 0.0)
        lat = lat + np.where(n > 1, l_, 0.0)
    return bw, lat


def dp_comm_times(lc: dict, dense_params, expert_params):
    """(all-reduce, reduce-scatter, all-gather) times of one rank's gradients/weights over its data-parallel
    groups, each as one collective. The all-reduce pays the ring's latency or NCCL's tree latency, whichever is
    smaller (topology.collectives.all_reduce_time_s)."""
    bw_d, lat_d = dp_phase_cost(lc, dense_params, expert_params)
    g, w = lc["g_bytes"], lc["w_bytes"]
    rs = g * bw_d + lat_d
    tree = sum(np.where(n > 1, tree_all_reduce_latency_s(n, stride, lc["tiers"]), 0.0) for n, stride in _dp_groups(lc))
    ar = 2.0 * g * bw_d + np.minimum(2.0 * lat_d, tree)
    return ar, rs, w * bw_d + lat_d


def evaluate(job: Job, t: LayoutTable) -> dict:
    """Evaluate every layout of `t`. Returns a dict of equal-length numpy arrays (SI units).

    Keys: step_time_s, mfu, hfu, tokens_per_s, tflops_per_device, the time breakdown (time_*_s), the memory
    breakdown (mem_*_bytes, mem_total_bytes), fits, reasons (bit mask, 0 = feasible), num_micro_batches,
    bubble_fraction and the per-rank layer split.
    """
    lc = layer_costs(job, t)
    (m, hw, tr, c, eff, tiers, f64, tp, pp, dp, ep, cp, vpp, b, sp, rc, s, h, V, L, act_b, w_bytes, g_bytes,
     num_micro, reasons, M, a, kvh, d_v, n_moe_heavy, mlp_act_heavy, t_layer_f, t_layer_b, t_layer_w, t_layer_rc,
     st, act_msg, tp_exposed_f, tp_exposed_b, t_ep_f, t_ep_b, t_cp_f, t_cp_b, comm_layer_f, comm_layer_b,
     t_logits_f, t_logits_b, t_emb_comm, spf, hbm, t_micro_host) = (lc[k] for k in (
        "m", "hw", "tr", "c", "eff", "tiers", "f64", "tp", "pp", "dp", "ep", "cp", "vpp", "b", "sp", "rc", "s", "h",
        "V", "L", "act_b", "w_bytes", "g_bytes", "num_micro", "reasons", "M", "a", "kvh", "d_v", "n_moe_heavy",
        "mlp_act_heavy", "t_layer_f", "t_layer_b", "t_layer_w", "t_layer_rc", "st", "act_msg", "tp_exposed_f",
        "tp_exposed_b", "t_ep_f", "t_ep_b", "t_cp_f", "t_cp_b", "comm_layer_f", "comm_layer_b", "t_logits_f",
        "t_logits_b", "t_emb_comm", "spf", "hbm", "t_micro_host"))
    # ---- stage split and per-rank micro-batch times -----------------------------------------------------------
    if t.stage_first is not None:
        Lf, Lm, Ll = (x.astype(f64) for x in (t.stage_first, t.stage_mid, t.stage_last))
    else:
        Lf, Lm, Ll = (x.astype(f64) for x in default_stage_split(L, t.pp, t.vpp))
    single = t.pp == 1
    has_mid = t.pp >= 3

    p2p_per_micro = 2.0 * lc["t_p2p"] * vpp                        # one send forward and one backward per chunk boundary

    # host work per micro-batch outside the layers, on the ranks that do it: every rank fetches the batch and
    # runs the schedule and its pipeline send/receive, the first rank the embedding, the last the logits and loss
    host_pass = t_micro_host / MICRO_BATCH_HOST_LAYERS

    def micro_host(emb, logits):
        return host_pass * (HOST_LAYERS_EVERY_RANK + HOST_LAYERS_EMBEDDING * emb + HOST_LAYERS_LOSS * logits)

    def rank_times(nl, emb, logits):
        mh = micro_host(emb, logits)
        comp_f = nl * t_layer_f + logits * t_logits_f + 0.5 * mh
        comp_b = nl * (t_layer_b + t_layer_rc) + logits * t_logits_b + 0.5 * mh
        comm_f = nl * comm_layer_f + emb * t_emb_comm
        comm_b = nl * comm_layer_b
        return comp_f, comp_b, comm_f, comm_b

    is_first_logits = np.where(single, 1.0, 0.0)
    kinds = [rank_times(Lf, 1.0, is_first_logits), rank_times(Lm, 0.0, 0.0), rank_times(Ll, 0.0, 1.0)]
    valid = [np.ones(len(t), bool), has_mid, ~single]
    tau, fwd, bwd = [], [], []
    for (cf, cb, mf, mb), ok in zip(kinds, valid):
        tau.append(np.where(ok, cf + cb + mf + mb + p2p_per_micro, -np.inf))
        fwd.append(np.where(ok, cf + mf + 0.5 * p2p_per_micro, -np.inf))
        bwd.append(np.where(ok, cb + mb + 0.5 * p2p_per_micro, -np.inf))
    tau = np.stack(tau)
    fb_max = np.max(np.stack(fwd), axis=0) + np.max(np.stack(bwd), axis=0)     # GPipe's pace
    idx = np.argmax(tau, axis=0)
    cols = np.arange(len(t))
    tau_max = tau[idx, cols]
    pick = lambda arrs: np.stack([np.broadcast_to(x, (len(t),)) for x in arrs])[idx, cols]
    comp_f = pick([k_[0] for k_ in kinds])
    comp_b = pick([k_[1] for k_ in kinds])

    # sum over all stages of one micro-batch's time (fill/drain passes once through each)
    tau_sum = (L * (t_layer_f + t_layer_b + t_layer_rc + comm_layer_f + comm_layer_b) + t_logits_f + t_logits_b
               + t_emb_comm + pp * p2p_per_micro
               + host_pass * (pp * HOST_LAYERS_EVERY_RANK + HOST_LAYERS_EMBEDDING + HOST_LAYERS_LOSS))
    w_max = np.where(idx == 0, Lf, np.where(idx == 1, Lm, Ll)) * t_layer_w
    w_sum = L * t_layer_w
    t_pipe = pipeline_time_s(tau_max, tau_sum, num_micro, vpp, t.schedule, w_max, w_sum, fb_max)
    t_bubble = t_pipe - num_micro * tau_max

    # ---- parameters held by the busiest rank (by memory, below) and data-parallel traffic -------------------
    dense_part = c.attn_params + c.norm_params_per_layer + c.router_params + c.shared_expert_params \
        + (1.0 - n_moe_heavy) * c.dense_mlp_params
    expert_part = n_moe_heavy * c.num_experts * c.expert_params
    out_params = c.output_params      # the last stage keeps its own copy even when tied (Megatron syncs the two)

    def rank_params(nl, emb, logits):
        dense = (nl * dense_part + emb * c.embedding_params + logits * out_params) / tp
        if m.tied_embeddings:
            dense = np.where(single & (logits > 0), dense - out_params / tp, dense)
        expert = nl * expert_part / (etp * ep)
        return dense, expert

    etp, dpc, edp = lc["etp"], lc["dpc"], lc["edpc"]
    zero = t.zero
    p_kinds = [rank_params(Lf, 1.0, is_first_logits), rank_params(Lm, 0.0, 0.0), rank_params(Ll, 0.0, 1.0)]

    # activations per layer (busiest layer type) and in-flight micro-batches per rank
    fc2_in_heavy = lc["fc2_in_heavy"]
    act_layer = activation_bytes_per_layer(s / cp, b, h, a, float(m.dim_per_head) if m.mla is None else d_v, kvh,
                                           mlp_act_heavy, tp, sp, rc, t.flash_attention, act_b,
                                           gemm_input_bytes=1.0 if tr.dtype == "fp8" else None,
                                           fc2_input_elems=fc2_in_heavy)
    inflight = [inflight_microbatches(pp, vpp, num_micro, t.schedule, r) for r in (0.0, 1.0, pp - 1.0)]
    logit_mem = logits_bytes(s / cp, b, V, tp)
    emb_out = M * h * act_b / spf                                   # embedding output kept for backward
    reserved = eff.framework_reserved_gb * GIGA

    mem = []
    for (dense, expert), nl, inf, (e_, lg) in zip(p_kinds, (Lf, Lm, Ll), inflight,
                                                  ((1.0, is_first_logits), (0.0, 0.0), (0.0, 1.0))):
        wd, gd, od = model_state_bytes(dense, w_bytes, g_bytes, zero, dpc)
        we, ge, oe = model_state_bytes(expert, w_bytes, g_bytes, zero, edp)
        zero3_buf = np.where(zero >= 3, 2.0 * (dense_part / tp + expert_part / (etp * ep)) * w_bytes, 0.0)
        acts = nl * act_layer * inf + e_ * emb_out * inf + lg * logit_mem
        mem.append((wd + we + zero3_buf, gd + ge, od + oe, acts))
    mem_tot = np.stack([np.where(ok, sum(x) + reserved, -np.inf) for x, ok in zip(mem, valid)])
    midx = np.argmax(mem_tot, axis=0)
    mem_total = mem_tot[midx, cols]
    mem_weights = np.stack([x[0] for x in mem])[midx, cols]
    mem_grads = np.stack([x[1] for x in mem])[midx, cols]
    mem_opt = np.stack([x[2] for x in mem])[midx, cols]
    mem_act = np.stack([x[3] for x in mem])[midx, cols]
    capacity = hw.device.memory_bytes
    fits = mem_total <= capacity
    reasons |= np.where(fits, 0, R_MEMORY)

    # DP / ZeRO communication of the rank that paces the pipeline
    dense_t = pick([p[0] for p in p_kinds])
    expert_t = pick([p[1] for p in p_kinds])
    grad_ar, grad_rs, param_ag = dp_comm_times(lc, dense_t, expert_t)
    ovl = np.where(t.overlap_grad_reduce, 1.0, 0.0)
    # ZeRO 0: all-reduce after the last backward; 1: reduce-scatter there + all-gather before the next forward.
    # ZeRO 2 keeps only its gradient shard, so every micro-batch's gradients are reduce-scattered as its backward
    # produces them (DeepSpeed ZeRO-2 with gradient accumulation, Rajbhandari et al. 2020 sec. 5.2).
    # A backward (forward for the gather) hides what fits in it (bucketed overlap).
    win_b, win_f = ovl * comp_b, ovl * comp_f
    rs_rounds = np.where(zero == 2, num_micro, 1.0)
    dp_exposed_012 = np.where(zero == 0, np.maximum(0.0, grad_ar - win_b),
                              rs_rounds * np.maximum(0.0, grad_rs - win_b) + np.maximum(0.0, param_ag - win_f))
    # ZeRO 3 (FSDP): every micro-batch gathers each layer's weights for the forward and again for the backward (and
    # the recompute) and reduce-scatters its gradients, one collective per layer, each paying its own latency
    # (Zhao et al. 2023, PyTorch FSDP, arXiv 2304.11277, sec. 3: one FlatParameter unit per transformer block). With prefetch a
    # layer's collectives hide under the previous layer's compute; the first gather of each pass is exposed.
    # A framework that gathers tensor by tensor (DeepSpeed ZeRO-3 of 2021: one all-gather per parameter as its
    # module runs) pays one collective latency per tensor of the layer; the gradient reduce-scatter stays
    # bucketed (one per layer). Over a flat ring of hundreds of ranks each latency is milliseconds.
    n_gather = 2.0 + np.where(rc == 2, 1.0, 0.0)
    nl_max = np.maximum(1.0, np.where(idx == 0, Lf, np.where(idx == 1, Lm, Ll)))
    bw_pp, lat = dp_phase_cost(lc, dense_t, expert_t)
    gathers_per_layer = np.where(t.zero3_unit == 1, float(param_tensors_per_layer(m)), 1.0)
    ag_layer = w_bytes * bw_pp / nl_max + lat * gathers_per_layer
    rs_layer = g_bytes * bw_pp / nl_max + lat
    hide_f, hide_b = win_f / nl_max, win_b / nl_max
    per_micro_f = nl_max * np.maximum(0.0, ag_layer - hide_f) + ovl * ag_layer
    per_micro_b = nl_max * np.maximum(0.0, (n_gather - 1.0) * ag_layer + rs_layer - hide_b) \
        + ovl * (n_gather - 1.0) * ag_layer
    dp_exposed_3 = num_micro * (per_micro_f + per_micro_b)
    t_dp = np.where(zero >= 3, dp_exposed_3, dp_exposed_012)
    dp_total = np.where(zero == 0, grad_ar, np.where(zero >= 3, num_micro * nl_max * (n_gather * ag_layer + rs_layer),
                                                     rs_rounds * grad_rs + param_ag))

    # optimizer step over the parameters this device owns
    own = dense_t / np.where(zero >= 1, dpc, 1.0) + expert_t / np.where(zero >= 1, edp, 1.0)
    t_opt = memory_bound_time_s(own * OPTIMIZER_BYTES_PER_PARAM, hbm, eff.memory_bound)
    t_fixed = eff.step_overhead_ms * 1e-3

    step = t_pipe + t_dp + t_opt + t_fixed

    # ---- breakdown of the busiest rank's micro-batches ----------------------------------------------------
    nl_pace = np.where(idx == 0, Lf, np.where(idx == 1, Lm, Ll))
    lg_pace = np.where(idx == 2, 1.0, np.where((idx == 0) & single, 1.0, 0.0))
    emb_pace = np.where(idx == 0, 1.0, 0.0)
    mm = num_micro
    bd_tp = mm * (nl_pace * (tp_exposed_f + tp_exposed_b) + emb_pace * t_emb_comm)
    bd_ep = mm * nl_pace * (t_ep_f + t_ep_b)
    bd_cp = mm * nl_pace * (t_cp_f + t_cp_b)
    bd_pp = mm * p2p_per_micro
    bd_recompute = mm * nl_pace * t_layer_rc
    bd_compute = mm * (comp_f + comp_b) - bd_recompute

    # ---- FLOPs, MFU, HFU -----------------------------------------------------------------------------------
    tokens = float(tr.tokens_per_step)
    model_flops = tokens * c.model_flops_per_token()
    rc_flops = np.select([rc == 2, rc == 1], [c.recompute_flops_per_token("full"),
                                               c.recompute_flops_per_token("selective")], 0.0) * tokens
    peak_mfu = hw.mfu_peak_flops_per_s(tr.dtype)
    denom = step * job.num_devices * peak_mfu
    mfu = model_flops / denom
    hfu = (model_flops + rc_flops) / denom

    return {
        "step_time_s": step,
        "mfu": mfu,
        "hfu": hfu,
        "tokens_per_s": tokens / step,
        "tflops_per_device": model_flops / step / job.num_devices / 1e12,
        "time_compute_s": bd_compute,
        "time_recompute_s": bd_recompute,
        "time_tp_comm_s": bd_tp,
        "time_ep_comm_s": bd_ep,
        "time_cp_comm_s": bd_cp,
        "time_pp_comm_s": bd_pp,
        "time_bubble_s": t_bubble,
        "time_dp_comm_s": t_dp,
        "time_optimizer_s": np.broadcast_to(t_opt, step.shape),
        "time_overhead_s": np.broadcast_to(np.float64(t_fixed), step.shape),
        "dp_comm_total_s": dp_total,
        "mem_weights_bytes": mem_weights,
        "mem_grads_bytes": mem_grads,
        "mem_optimizer_bytes": mem_opt,
        "mem_activations_bytes": mem_act,
        "mem_reserved_bytes": np.broadcast_to(np.float64(reserved), step.shape),
        "mem_total_bytes": mem_total,
        "mem_capacity_bytes": np.broadcast_to(np.float64(capacity), step.shape),
        "fits": fits,
        "reasons": reasons,
        "num_micro_batches": num_micro,
        "bubble_fraction": t_bubble / np.maximum(num_micro * tau_max, 1e-30),
        "pacing_rank": idx,
        "memory_rank": midx,
        "layers_first": Lf, "layers_mid": Lm, "layers_last": Ll,
        "model_flops_per_step": np.broadcast_to(np.float64(model_flops), step.shape),
        "hardware_flops_per_step": model_flops + rc_flops,
    }
