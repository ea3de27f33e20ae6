"""Communication a rank exposes: per layer (TP collectives, MoE all-to-alls, the context-parallel ring), per
micro-batch (pipeline sends) and per step (data-parallel gradient reduction and ZeRO gathers), with the
data-parallel groups defined once (`data_parallel_groups`).

Every collective is priced by topology.collectives (alpha-beta, hierarchical over the tiers the group crosses,
placement from topology.placement); this module decides which collectives a layer or a step runs and what
hides them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..specs.layout import DP_COMPRESSION_CODES, MOE_DISPATCH_CODES, SCHEDULE_CODES
from ..topology.collectives import (all_gather_time_s, all_reduce_time_s, all_to_all_time_s, hierarchical_phase_cost,
                                    p2p_time_s,
                                    tree_all_reduce_latency_s)
from ..topology.moe_dispatch import hierarchical_all_to_all_time_s, node_limited_dispatch_time_s
from ..topology.placement import group_levels
from .layer import column_parallel_share


# ---------------------------------------------------------------------------------------------------- groups
def expert_tensor_parallel(tp, dp, ep):
    """Expert tensor-parallel degree: tp when EP fits in DP (experts split like the dense MLP), else tp*dp/ep
    (EP carved out of TP x DP, experts unsplit by TP).

    Source: Megatron-Core parallel_state.py (expert tensor parallelism, expert rank generator)."""
    return np.where(np.mod(dp, ep) == 0, tp, np.maximum(1.0, tp * dp / ep))


@dataclass(frozen=True)
class DPGroups:
    """A rank's data-parallel groups: dense parameters over DP x CP, expert parameters (MoE) over the
    expert-data-parallel group. Sizes and rank strides are arrays over the table's rows."""

    dense_size: object
    dense_stride: object
    expert_size: object
    expert_stride: object
    has_experts: bool

    def pairs(self) -> list:
        """[(size, stride)] of each group a rank reduces over (the expert group only for MoE models)."""
        out = [(self.dense_size, self.dense_stride)]
        if self.has_experts:
            out.append((self.expert_size, self.expert_stride))
        return out


def data_parallel_groups(tp, dp, ep, cp, etp, strides: dict, has_experts: bool) -> DPGroups:
    """The data-parallel groups of a rank. Gradients are reduced, and optimizer state (ZeRO) sharded, over DP x CP:
    context-parallel ranks hold the same weights and see different tokens; its ranks stride by the smaller of the
    DP and CP strides where the row uses CP (decided row by row: a row's groups never depend on the other rows of
    its table). Expert parameters reduce over the expert-data-parallel group dp x cp x tp / (etp x ep), strided
    over the expert ranks.

    Source: Megatron-Core parallel_state.py (data-parallel group "with context parallel", used by
    DistributedDataParallel and the distributed optimizer; expert-data-parallel group)."""
    st_dp = np.where(cp > 1, np.minimum(strides["dp"], strides["cp"]), strides["dp"])
    return DPGroups(dense_size=dp * cp, dense_stride=st_dp, expert_size=np.maximum(1.0, dp * cp * tp / (etp * ep)),
                    expert_stride=strides["edp"], has_experts=has_experts)


# ----------------------------------------------------------------------------------------------- per layer
@dataclass(frozen=True)
class LayerComm:
    """Communication of one layer, one micro-batch, one device (seconds): the TP all-reduce of one activation
    (`tp_collective_s`) and what each pass exposes of the TP collectives, the MoE all-to-alls and the CP ring,
    plus the pipeline send of one activation (`p2p_s`; per chunk boundary)."""

    tp_collective_s: object
    tp_fwd_s: object
    tp_bwd_s: object
    ep_fwd_s: object
    ep_bwd_s: object
    cp_fwd_s: object
    cp_bwd_s: object
    p2p_s: object

    @property
    def fwd_s(self):
        """Exposed communication of one forward pass."""
        return self.tp_fwd_s + self.ep_fwd_s + self.cp_fwd_s

    @property
    def bwd_s(self):
        """Exposed communication of one backward pass (with its recompute)."""
        return self.tp_bwd_s + self.ep_bwd_s + self.cp_bwd_s


def activation_bytes(sz):
    """Bytes of one activation tensor [b, s/cp, h] of one micro-batch."""
    return sz.tokens * sz.hidden * sz.act_bytes


#: All-reduce equivalents (one reduce-scatter + one all-gather each) a layer's backward adds under sequence
#: parallelism: the column-parallel linears (QKV, MLP up) save only their sequence shard of the input and all-gather
#: it again for the weight gradient, one all-gather of [s, b, h] per block, two per layer = one all-reduce equivalent.
#: Source: Megatron-Core tensor_parallel/layers.py, LinearWithGradAccumulationAndAsyncCommunication.backward ("if
#: ctx.sequence_parallel: ... all-gather the input ... for the weight gradient", launched beside the dgrad GEMM);
#: Transformer Engine Linear/LayerNormLinear backward (the same gather; with userbuffers it is the `ub_bulk_dgrad`
#: overlap, and the dgrad reduce-scatter `ub_bulk_wgrad`).
SP_WGRAD_REGATHER_ALL_REDUCES = 1.0


def tp_collectives_per_pass(sp_regather, recompute_code):
    """(forward, backward) TP collectives of one layer, in all-reduce equivalents (an all-reduce costs one
    reduce-scatter + one all-gather on a ring). Forward: attention and MLP each end in one all-reduce (with SP one
    all-gather in, one reduce-scatter out): 2. Backward: the conjugates, 2, plus the weight-gradient re-gather
    (SP_WGRAD_REGATHER_ALL_REDUCES) where SP is on and the stack re-gathers (`sp_regather`, the framework's
    overlap.sp_wgrad_regather), plus the forward's 2 again under full recompute. Megatron launches the re-gather
    beside the dgrad GEMM, but the two contend for the SMs: SimuMax prices it exposed and still predicts its 8 x B200
    TP8 rows 1-11% fast (docs/b200/b200_release_v1.2_summary.md), so it is exposed here unless TP comm overlap
    (userbuffers' bulk overlap) hides it under the GEMMs like the others.

    Source: Shoeybi et al. 2019 (arXiv 1909.08053) sec. 3 (f/g operators); Korthikanti et al. 2022 (arXiv
    2205.05198) sec. 4.2.2 and fig. 5 (SP: g = all-gather forward / reduce-scatter backward, g-bar the reverse);
    SP_WGRAD_REGATHER_ALL_REDUCES."""
    sp = np.asarray(sp_regather, dtype=bool)
    fwd = np.full(sp.shape, 2.0)
    bwd = 2.0 + np.where(sp, SP_WGRAD_REGATHER_ALL_REDUCES, 0.0) + np.where(np.asarray(recompute_code) == 2, 2.0, 0.0)
    return fwd, bwd


def tp_exposed_s(sz, lc):
    """(one TP all-reduce, exposed forward, exposed backward) TP time of a layer: tp_collectives_per_pass of
    them per pass (an all-reduce, or reduce-scatter + all-gather with SP, the same cost); TP comm overlap hides them
    under the pass's GEMMs. A stack whose overlap covers only the all-gathers (framework overlap.tp_overlap_scope
    'all-gather': XLA's decomposed all-gather einsum) hides the all-gather half of each collective (a ring
    all-reduce is a reduce-scatter and an all-gather of equal cost) and leaves the reduce-scatter half exposed.

    Source: tp_collectives_per_pass; Transformer Engine userbuffers (overlap); Thakur et al. 2005 (all-reduce =
    reduce-scatter + all-gather); Wang et al. 2023 (ASPLOS, "Overlap communication with dependent computation via
    decomposition in large deep learning models": XLA's decomposed all-gather / reduce-scatter einsums)."""
    t = sz.table
    tp_coll = np.where(t.tp > 1, all_reduce_time_s(activation_bytes(sz), sz.tp, sz.strides["tp"], sz.tiers), 0.0)
    fw = sz.framework
    regather = bool(fw is not None and fw.overlap.sp_wgrad_regather)
    n_tp_fwd, n_tp_bwd = tp_collectives_per_pass(sz.sequence_parallel & regather, sz.recompute)
    share = 0.5 if fw is not None and fw.overlap.tp_overlap_scope == "all-gather" else 1.0
    tp_hide = np.where(t.tp_comm_overlap, 1.0, 0.0)
    hidden_share = tp_hide * share               # the part of each collective that may run under the GEMMs
    t_gemm_f = lc.gemm_fwd_s
    exposed_f = (1.0 - hidden_share) * n_tp_fwd * tp_coll \
        + np.maximum(0.0, hidden_share * n_tp_fwd * tp_coll - tp_hide * t_gemm_f)
    exposed_b = (1.0 - hidden_share) * n_tp_bwd * tp_coll \
        + np.maximum(0.0, hidden_share * n_tp_bwd * tp_coll - tp_hide * lc.gemm_bwd_s)
    fw = sz.framework
    if fw is not None and fw.overlap.tp_bwd_async:
        exposed_b = np.minimum(exposed_b, tp_bwd_async_exposed_s(sz, lc, tp_coll))
    return tp_coll, exposed_f, exposed_b


def tp_bwd_async_exposed_s(sz, lc, tp_coll):
    """Exposed TP time of a layer's backward when column-parallel layers (QKV, FC1) run their backward collectives
    asynchronously under their own GEMMs (FrameworkSpec.overlap.tp_bwd_async).

    Without SP: the two input-gradient all-reduces (QKV's, FC1's) run under the weight-gradient GEMMs of those
    layers: max(0, 2 AR - their wgrad). With SP: the row-parallel layers' output-gradient all-gathers (two, one
    all-reduce's worth) stay exposed; the column-parallel layers re-gather their sharded input under the
    input-gradient GEMM and reduce-scatter the input gradient under the weight-gradient GEMM (two all-reduces'
    worth): 1 AR + max(0, 2 AR - their dgrad + wgrad). Full recompute's forward replay adds two exposed
    all-reduces. The column-parallel GEMM times are the layer's by FLOP share (costs.layer.column_parallel_share).

    Source: NVIDIA/Megatron-LM megatron/mpu/layers.py: ColumnParallelLinearWithAsyncAllreduce (commit 16c90445e7,
    2021-09-02; --no-async-tensor-model-parallel-allreduce turns it off) and, with --sequence-parallel,
    LinearWithGradAccumulationAndAsyncCommunication.backward (commit cfd2e21607, 2022-04-28); Korthikanti et al.
    2022 (arXiv 2205.05198) sec. 4.2.2."""
    attn_share, mlp_share = column_parallel_share(sz)
    col_wgrad = attn_share * lc.attention_projection_wgrad_s + mlp_share * lc.mlp_wgrad_s
    col_dgrad = attn_share * lc.attention_projection_dgrad_s + mlp_share * lc.mlp_dgrad_s
    replay = np.where(sz.recompute == 2, 2.0, 0.0) * tp_coll
    no_sp = np.maximum(0.0, 2.0 * tp_coll - col_wgrad)
    sp = tp_coll + np.maximum(0.0, 2.0 * tp_coll - (col_dgrad + col_wgrad))
    return replay + np.where(sz.sequence_parallel, sp, no_sp)


def moe_all_to_all_s(sz, dispatch_factor=None, max_over_mean=None):
    """One dispatch (or combine) all-to-all of an MoE layer on the busiest EP rank, by the layout's strategy
    (topology.moe_dispatch): the top-k token copies of its micro-batch share (split tp ways by SP), times the
    routing load's dispatch_factor (`dispatch_factor` and `max_over_mean` override the load's; they broadcast, for
    per-layer samples).
    Flat: collectives.all_to_all_time_s; hierarchical: intra-node then inter-node with Tutel's local re-layouts
    at the achieved HBM bandwidth; node-limited (DeepEP, or HybridEP by the framework's moe.flex_backend): one copy
    per destination node, at most moe_max_nodes nodes per token, NVLink forwarding. The latency model (one alpha
    per tier, or per peer) is the job's network.all_to_all_latency.

    Source: Megatron-Core MoEAlltoAllTokenDispatcher; DeepSpeed-MoE arXiv 2201.05596 sec. 5; Tutel arXiv
    2206.03382 sec. 3.3; DeepSeek-V3 arXiv 2412.19437 sec. 3.2.2 (topology.moe_dispatch)."""
    m, t = sz.model, sz.table
    load = sz.moe_load
    k = float(m.moe.top_k)
    if dispatch_factor is None:
        dispatch_factor = load.dispatch_factor if load is not None else 1.0
    a2a_bytes = sz.tokens * k * sz.hidden * sz.act_bytes / sz.sp_factor * dispatch_factor
    net = getattr(sz.job, "network", None)
    per_peer = net is not None and net.all_to_all_latency == "per-peer"
    n, stride, tiers = sz.ep, sz.strides["ep"], sz.tiers
    out = all_to_all_time_s(a2a_bytes, n, stride, tiers, per_peer_latency=per_peer)
    code = t.moe_dispatch if t.moe_dispatch is not None else np.zeros(len(t), np.int64)
    if np.any(code == MOE_DISPATCH_CODES["hierarchical"]):
        kr = sz.kernel
        hier = hierarchical_all_to_all_time_s(a2a_bytes, n, stride, tiers, kr.hbm_bytes_per_s, kr.memory_efficiency(),
                                              per_peer_latency=per_peer)
        out = np.where(code == MOE_DISPATCH_CODES["hierarchical"], hier, out)
    if np.any(code == MOE_DISPATCH_CODES["node-limited"]):
        mom = max_over_mean if max_over_mean is not None else (load.max_over_mean if load is not None else 1.0)
        max_nodes = np.where(t.moe_max_nodes > 0, t.moe_max_nodes, np.inf)
        backend = sz.framework.moe.flex_backend if sz.framework is not None else "deepep"
        nl = node_limited_dispatch_time_s(sz.tokens / sz.sp_factor, sz.hidden, sz.act_bytes, k,
                                          float(m.moe.num_experts), n, stride, tiers, max_nodes, mom, per_peer,
                                          backend)
        out = np.where(code == MOE_DISPATCH_CODES["node-limited"], nl, out)
    return out


#: Bytes of one routing probability a sort-based dispatcher sends with each routed copy (fp32 probs).
PROBS_BYTES_PER_COPY = 4.0


def moe_probs_all_to_all_s(sz):
    """The all-to-all of the routing probabilities a Megatron-Core alltoall dispatcher runs right after the tokens'
    (forward) and for their gradient (backward): one fp32 value per routed copy, the same splits as the tokens, so
    top_k x 4 bytes per token of the busiest rank's share (routing load's dispatch_factor); latency-bound at any
    real size. Zero unless the framework sends them (moe.probs_all_to_all), with EP > 1, on a flat or hierarchical
    dispatch (DeepEP/HybridEP carry the probabilities inside their fused dispatch).

    Source: NVIDIA/Megatron-LM megatron/core/transformer/moe/token_dispatcher.py (MoEAlltoAllTokenDispatcher.
    token_dispatch: global_probs = all_to_all(self.ep_group, permuted_probs, self.output_splits,
    self.input_splits)); SimuMax simumax/core/transformer/moe_module.py (dispatch_prob_fwd_ep / _bwd_ep, the same
    collective in its B200 Megatron replay); collectives.all_to_all_time_s."""
    m, t, fw = sz.model, sz.table, sz.framework
    if m.moe is None or fw is None or not fw.moe.probs_all_to_all or fw.moe.dispatch != "permute":
        return np.zeros_like(np.asarray(sz.tp, dtype=float))
    load = sz.moe_load
    factor = load.dispatch_factor if load is not None else 1.0
    nbytes = sz.tokens * float(m.moe.top_k) * PROBS_BYTES_PER_COPY / sz.sp_factor * factor
    net = getattr(sz.job, "network", None)
    per_peer = net is not None and net.all_to_all_latency == "per-peer"
    out = all_to_all_time_s(nbytes, sz.ep, sz.strides["ep"], sz.tiers, per_peer_latency=per_peer)
    code = t.moe_dispatch if t.moe_dispatch is not None else np.zeros(len(t), np.int64)
    return np.where((t.ep > 1) & (code != MOE_DISPATCH_CODES["node-limited"]), out, 0.0)


#: Bytes per (token, expert) entry of the routing map HybridEP gathers (torch.bool).
ROUTING_MAP_BYTES_PER_ENTRY = 1.0


def hybridep_routing_map_gather_s(sz):
    """The all-gather of the routing map that HybridEP's metadata preprocessing runs before every dispatch that has
    no cached handle (each MoE layer's forward; the backward reuses the forward's handle): each rank's boolean map of
    its tokens x all experts (1 byte an entry), gathered over the EP group: across nodes NCCL's
    all_gather_into_tensor (collectives.all_gather_time_s: ring steps), inside one NVLink domain HybridEP's custom
    all-gather, each rank writing its map into every peer's buffer at once (bandwidth (n-1)/n x S, one latency: the
    form of collectives.all_to_all_time_s). Zero unless the layout's dispatch is node-limited on the hybridep
    backend with EP > 1. Its own benchmark (README table) passes the cached handle, so its bandwidth figures leave
    this out.

    Source: DeepEP hybrid-ep branch csrc/hybrid_ep (allgather_routing_map: torch.distributed all_gather_into_tensor
    of a kBool [tokens_per_rank x group_size, num_experts] tensor when num_of_nodes > 1, else the custom
    all-gather); Megatron-Core
    fused_a2a.py HybridEPDispatch.forward (dispatch_with_permute with routing_map and no handle);
    collectives.all_gather_time_s / all_to_all_time_s."""
    m, t, fw = sz.model, sz.table, sz.framework
    zero = np.zeros_like(np.asarray(sz.tp, dtype=float))
    if m.moe is None or fw is None or fw.moe.flex_backend != "hybridep" or t.moe_dispatch is None:
        return zero
    ep = np.asarray(sz.ep, dtype=float)
    nbytes = sz.tokens / sz.sp_factor * float(m.moe.num_experts) * ROUTING_MAP_BYTES_PER_ENTRY * ep
    levels = group_levels(sz.ep, sz.strides["ep"], sz.tiers)
    across = np.zeros(np.shape(ep), dtype=bool)
    for f in levels[1:]:
        across = across | (np.asarray(f) > 1.0)
    out = np.where(across, all_gather_time_s(nbytes, sz.ep, sz.strides["ep"], sz.tiers),
                   all_to_all_time_s(nbytes, sz.ep, sz.strides["ep"], sz.tiers))
    return np.where((t.ep > 1) & (t.moe_dispatch == MOE_DISPATCH_CODES["node-limited"]), out, 0.0)


def ep_overlap_exposed_s(a2a_s, compute_s, sm_share):
    """Time an all-to-all of `a2a_s` adds to a compute chunk of `compute_s` it runs beside, when its kernels hold
    `sm_share` of the device's SMs for their whole run: the compute proceeds at (1 - sm_share) of its rate while
    the all-to-all runs, at full rate after. If the compute fits inside (compute <= (1 - share) a2a) the pair takes
    the all-to-all's time, exposing a2a - compute; otherwise it takes compute + share x a2a. Both cases:
    max(a2a - compute, share x a2a). share 0 gives the contention-free max(0, a2a - compute).

    Source: DeepSeek-V3 report (arXiv 2412.19437) sec. 3.2.2 (20 of the H800's 132 SMs run the dispatch and
    combine kernels, the rest compute while they overlap); DeepEP README (normal kernels take a configurable SM
    count, deep_ep Buffer.num_sms default 20)."""
    return np.maximum(a2a_s - compute_s, sm_share * a2a_s)


#: Vendors whose collective libraries move data with kernels on the compute units (NCCL / RCCL / DeepEP blocks,
#: one per channel); elsewhere (TPU ICI, other accelerators) DMA engines carry collectives.
SM_COLLECTIVE_VENDORS = ("nvidia", "amd")


def collective_sm_share(sz, sms: float) -> float:
    """Share of the device's compute units `sms` collective kernels hold: sms over the device's SM / CU count (the
    kernel catalogue's compute_units), at most 1; 0 on devices whose collectives run on DMA engines
    (SM_COLLECTIVE_VENDORS) or for no SMs.

    Source: simulator/presets/kernels/catalog.yaml (devices: compute_units)."""
    if not sms:
        return 0.0
    model = sz.kernel.model
    if model is not None:
        dev = model.device
    else:                                            # ideal kernels: the catalogue's facts of the device
        from .kernel_data import load_kernel_catalog
        from .kernels import device_facts
        dev = device_facts(sz.hardware, load_kernel_catalog())
    if dev.vendor not in SM_COLLECTIVE_VENDORS:
        return 0.0
    return min(1.0, sms / float(dev.compute_units))


def ep_overlap_sm_share(sz) -> float:
    """Share of the device's compute units an overlapped EP all-to-all holds: the framework's
    moe.overlap_comm_sms over the device's SM / CU count (collective_sm_share).

    Source: FrameworkSpec.moe.overlap_comm_sms (the preset's source); simulator/presets/kernels/catalog.yaml
    (devices: compute_units)."""
    return collective_sm_share(sz, sz.framework.moe.overlap_comm_sms if sz.framework is not None else 0)


#: Channels (thread blocks, one SM each, never shared with compute kernels) of an NCCL ring reduce-scatter /
#: all-gather / all-reduce between nodes: NCCL gives each ring its search channels twice over and, on sm90 and later
#: with more than one node, doubles them again while they are fewer than 16 (src/graph/connect.cc ncclTopoPostset,
#: "Use 4 compute channels per search channel to reach peak BW"); an NCCL maintainer: "If you are on DGX with 8
#: NICs ... it would use 16 SMs", and "NCCL CTAs won't share an SM with compute kernels" (NVIDIA/nccl issue #689,
#: S. Jeaugey, 2023). NCCL_MAX_NCHANNELS is not set in the recipes of the rows here.
NCCL_RING_CHANNELS = 16


def dp_overlap_sm_share(sz) -> float:
    """Share of the device's compute units an overlapped data-parallel reduce-scatter / all-gather holds for its
    whole run (NCCL_RING_CHANNELS over the device's SMs; 0 where collectives run on DMA engines).

    Source: NCCL_RING_CHANNELS; collective_sm_share."""
    return collective_sm_share(sz, NCCL_RING_CHANNELS)


def ep_overlap_unpaired_fraction(num_micro, pp, vpp):
    """Share of a rank's (model-chunk) forward and backward passes that Megatron-Core's combined 1F1B runs alone,
    with no pass of another micro-batch to hide their all-to-alls under: without pipelining the first forward and
    the last backward (1 of m); with the interleaved schedule the warm-up forwards and the cool-down backwards of
    the first stage (the critical one, first to start and last to finish), 2 (pp - 1) + (vpp - 1) pp + 1 of its
    m vpp chunk passes each (the microbatch group per virtual stage is pp; the overlap adds one warm-up forward
    "to ensure the forward and backward computations are independent in all 1f1b steps"), at most all of them.

    Source: NVIDIA/Megatron-LM megatron/core/pipeline_parallel/schedules.py get_pp_rank_microbatches
    (num_warmup_microbatches with overlap_moe_expert_parallel_comm); combined_1f1b.py
    combined_1f1b_schedule_for_no_pipelining (first forward and last backward "executed alone, no a2a
    overlapping")."""
    m = np.asarray(num_micro, dtype=float)
    pp = np.asarray(pp, dtype=float)
    v = np.maximum(np.asarray(vpp, dtype=float), 1.0)
    alone = np.where(pp > 1, 2.0 * (pp - 1.0) + (v - 1.0) * pp + 1.0, 1.0)
    return np.minimum(1.0, alone / np.maximum(m * np.where(pp > 1, v, 1.0), 1.0))


def ep_exposed_s(sz, lc):
    """(forward, backward) exposed MoE all-to-all time of a layer (averaged over the model's layers): dispatch and
    combine of the top-k token copies over the EP group, each pass, the dispatch followed by its probabilities'
    all-to-all where the framework sends them (moe_probs_all_to_all_s); again in the backward under full recompute.

    With EP overlap (Megatron-Core v0.14 batch-level overlapping, --overlap-moe-expert-parallel-comm
    --delay-wgrad-compute; megatron/core/pipeline_parallel/combined_1f1b.py) the forward of one micro-batch and
    the backward of another run together layer by layer, each all-to-all beside a compute chunk of the other:
    f.attn || b.combine-grad, f.dispatch || b.mlp, f.mlp || b.dispatch-grad, f.combine || b.attn; each is exposed
    only by what outlasts its chunk, and slows its chunk while it holds SMs (ep_overlap_sm_share,
    ep_overlap_exposed_s). Megatron runs it only with pp == 1 or an interleaved schedule; the passes without a partner (the first forward and
    last backward, and with pipelining the warm-up and cool-down passes, ep_overlap_unpaired_fraction) stay exposed; the replay under full
    recompute stays exposed (Megatron-Core's 'mlp' recompute module checkpoints dense MLPs only, not MoE layers:
    costs.layer.recompute_pass_s).

    Source: Megatron-Core MoE (megatron/core/transformer/moe/README.md); combined_1f1b.py; ep_overlap_exposed_s."""
    m, t = sz.model, sz.table
    if m.moe is not None:
        a2a = np.where(t.ep > 1, moe_all_to_all_s(sz), 0.0) * sz.moe_fraction
        probs = moe_probs_all_to_all_s(sz) * sz.moe_fraction
        gather = hybridep_routing_map_gather_s(sz) * sz.moe_fraction
    else:
        a2a = probs = gather = np.zeros_like(sz.tp)
    ep_hide = t.ep_comm_overlap & ((t.pp == 1) | (t.schedule == 2))
    attn_f = lc.attention_projection_s + lc.attention_core_s
    mlp_f = np.maximum(0.0, lc.gpu_fwd_s - attn_f)
    attn_b = lc.attention_projection_bwd_s + lc.attention_core_bwd_s
    mlp_b = np.maximum(0.0, lc.gpu_bwd_s - attn_b)
    share = ep_overlap_sm_share(sz)
    disp = a2a + probs                   # the dispatch: tokens, then their probabilities (each pass)
    ep_f_hidden = ep_overlap_exposed_s(disp, mlp_b, share) + ep_overlap_exposed_s(a2a, attn_b, share)
    ep_b_hidden = ep_overlap_exposed_s(a2a, attn_f, share) + ep_overlap_exposed_s(disp, mlp_f, share)
    alone = ep_overlap_unpaired_fraction(sz.num_micro, t.pp, t.vpp)
    ep_f_hidden = ep_f_hidden + (a2a + disp - ep_f_hidden) * alone
    ep_b_hidden = ep_b_hidden + (a2a + disp - ep_b_hidden) * alone
    t_ep_f = np.where(ep_hide, ep_f_hidden, a2a + disp) + gather     # dispatch + combine, HybridEP's map gather
    replay = sz.recompute == 2          # full recompute re-dispatches (selective 'mlp' replays dense MLPs only)
    t_ep_b = np.where(ep_hide, ep_b_hidden, a2a + disp) + np.where(replay, a2a + disp + gather, 0.0)
    return t_ep_f, t_ep_b


def cp_imbalance_factor(cp, load_balanced: bool):
    """Slowest CP rank's causal attention work over the mean: 1 with zig-zag / head-tail sharding; with contiguous
    blocks rank i of cp computes i + 1 of the causal blocks, the last cp against a mean of (cp + 1) / 2, so
    2 cp / (cp + 1).

    Source: Brandon et al. 2023 (Striped Attention, arXiv 2311.09431) sec. 3 (ring attention's causal imbalance);
    Megatron-Core get_batch_on_this_cp_rank (2 x cp chunks, balanced)."""
    cp = np.asarray(cp, dtype=float)
    return np.ones_like(cp) if load_balanced else 2.0 * cp / (cp + 1.0)


def cp_exposed_s(sz, lc):
    """(forward, backward) exposed context-parallel time of a layer, as the framework's CP implementation runs it
    (FrameworkSpec.context_parallel): a p2p ring sends cp - 1 K/V blocks (MLA its compressed latent, unsplit by
    TP), each hidden under the attention of the block before; an all-gather collects K and V once before the
    attention (its reduce-scatter of dK, dV in the backward) and hides nothing; Ulysses all-to-alls q, k, v and
    the output (4 per pass, each 1/cp of a rank's tensor over cp ranks), exposed. Without load balancing, causal
    attention waits for the busiest rank: (imbalance - 1) x the attention core is added as CP wait.

    Source: Liu et al. 2023 (Ring Attention, arXiv 2310.01889); Megatron-Core context parallelism (--cp-comm-type);
    Jacobs et al. 2023 (DeepSpeed-Ulysses, arXiv 2309.14509) sec. 3; cp_imbalance_factor."""
    m, t = sz.model, sz.table
    fw = sz.framework
    cpspec = fw.context_parallel if fw is not None else None
    exchange = cpspec.exchange if cpspec is not None else "p2p-ring"
    kv_dim = (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim) if m.mla is not None else 2.0 * sz.kv_heads * m.dim_per_head
    kv_bytes = sz.tokens * kv_dim * sz.act_bytes / np.where(m.mla is not None, 1.0, sz.tp)
    on = t.cp > 1
    if exchange == "p2p-ring":
        cp_comm = np.where(on, (sz.cp - 1.0) * p2p_time_s(kv_bytes, sz.strides["cp"], sz.tiers), 0.0)
        fwd = np.maximum(0.0, cp_comm - lc.attention_core_s)
        bwd = np.maximum(0.0, 2.0 * cp_comm - lc.attention_core_bwd_s)
    elif exchange == "all-gather":
        ag = np.where(on, all_gather_time_s(kv_bytes * sz.cp, sz.cp, sz.strides["cp"], sz.tiers), 0.0)
        fwd, bwd = ag, 2.0 * ag                        # gather K, V; backward: gather again + reduce-scatter dK, dV
    else:
        q_dim = sz.heads * float(m.dim_per_head)
        a2a_bytes = sz.tokens * (2.0 * q_dim + kv_dim) * sz.act_bytes / sz.tp
        a2a = np.where(on, all_to_all_time_s(a2a_bytes, sz.cp, sz.strides["cp"], sz.tiers), 0.0)
        fwd, bwd = a2a, a2a
    wait = cp_imbalance_factor(sz.cp, cpspec.load_balanced if cpspec is not None else True) - 1.0
    return fwd + wait * lc.attention_core_s, bwd + wait * lc.attention_core_bwd_s


def p2p_send_s(sz):
    """Pipeline send of one activation [b, s/cp, h]: Megatron's scatter/gather optimisation sends 1/t of it across
    the pipeline link and all-gathers it inside the TP group (the small NVLink all-gather is left out).

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 4.1."""
    return np.where(sz.table.pp > 1, p2p_time_s(activation_bytes(sz) / sz.tp, sz.strides["pp"], sz.tiers), 0.0)


def layer_comm(sz, lc) -> LayerComm:
    """The exposed communication of one layer (LayerComm) given its compute (costs.layer.LayerCosts)."""
    tp_coll, tp_f, tp_b = tp_exposed_s(sz, lc)
    ep_f, ep_b = ep_exposed_s(sz, lc)
    cp_f, cp_b = cp_exposed_s(sz, lc)
    return LayerComm(tp_collective_s=tp_coll, tp_fwd_s=tp_f, tp_bwd_s=tp_b, ep_fwd_s=ep_f, ep_bwd_s=ep_b,
                     cp_fwd_s=cp_f, cp_bwd_s=cp_b, p2p_s=p2p_send_s(sz))


# ------------------------------------------------------------------------------------------------- per step
def dp_phase_cost(sz, dense_params, expert_params):
    """(seconds per byte-per-parameter, latency seconds) of one reduce-scatter or all-gather phase of a rank's
    parameters over its data-parallel groups. Reduce-scatter and all-gather cost the same per byte and all-reduce
    is both (topology.collectives), so this one hierarchical cost serves all three.

    Source: topology.collectives.hierarchical_phase_cost (nccl-tests bus bandwidth; NCCL ring latency)."""
    bw, lat = 0.0, 0.0
    for (n, stride), params in zip(sz.dp_groups.pairs(), (dense_params, expert_params)):
        b, l_ = hierarchical_phase_cost(params, n, stride, sz.tiers)
        bw = bw + np.where(n > 1, b, 0.0)
        lat = lat + np.where(n > 1, l_, 0.0)
    return bw, lat


def dp_comm_times(sz, dense_params, expert_params):
    """(all-reduce, reduce-scatter, all-gather) times of one rank's gradients/weights over its data-parallel
    groups, each as one collective. The all-reduce pays the ring's latency or NCCL's tree latency, whichever is
    smaller.

    Source: topology.collectives.all_reduce_time_s; NCCL src/graph/tuning.cc (tree vs ring latency)."""
    bw_d, lat_d = dp_phase_cost(sz, dense_params, expert_params)
    g, w = sz.grad_bytes, sz.weight_bytes
    rs = g * bw_d + lat_d
    tree = sum(np.where(n > 1, tree_all_reduce_latency_s(n, stride, sz.tiers), 0.0)
               for n, stride in sz.dp_groups.pairs())
    ar = 2.0 * g * bw_d + np.minimum(2.0 * lat_d, tree)
    if zero3_reduce_all_reduce(sz):                 # FSDP gradients: all-reduce + dynamic slice
        rs = np.where(sz.table.zero >= 3, ar, rs)
    return ar, rs, w * bw_d + lat_d


def zero3_reduce_all_reduce(sz) -> bool:
    """Whether the framework reduces the ZeRO-3/FSDP gradients with an all-reduce followed by a dynamic slice (each
    rank keeps its shard) instead of a reduce-scatter: twice the bytes on the wire, 2(n-1)/n S instead of
    (n-1)/n S (FrameworkSpec.overlap.zero3_reduce_all_reduce, set per run from the recipe's XLA flags).

    Source: MaxText benchmarks/xla_flags_library.py (REDUCE_SCATTER_FUSION: "Enable Reduce Scatter (RS) Fusion in
    certain cases by merging All-reduce (AR) and Dynamic-Slice (DS)"; LAYOUT_FOR_ALL_REDUCE_SCATTER carries the same
    flags); MaxText docs/guides/optimization/sharding.md (FSDP: the gradients "optimally will be synchronized with a
    reduce scatter which is 2x faster than an all-reduce, but only certain sizes of weight matrices allow for this
    efficient reduce scatter operation")."""
    fw = sz.framework
    return bool(fw is not None and fw.overlap.zero3_reduce_all_reduce)


def zero3_gathers_per_layer(sz, tensors_per_layer: int):
    """Collectives of one ZeRO-3 weight gather of one layer: 1 for a flat per-layer unit (PyTorch FSDP), one per
    parameter tensor for a framework that gathers tensor by tensor (DeepSpeed ZeRO-3 of 2021).

    Source: Zhao et al. 2023 (PyTorch FSDP, arXiv 2304.11277) sec. 3; DeepSpeed ZeRO-3 (Rajbhandari et al. 2020)."""
    return np.where(sz.table.zero3_unit == 1, float(tensors_per_layer), 1.0)


def zero3_reduce_blocks(sz) -> bool:
    """Whether the framework's ZeRO-3 gradient reduce-scatter blocks each layer's backward on this hardware family
    (FrameworkSpec.overlap.zero3_reduce_blocking_families: XLA:TPU without the SparseCore or continuation-fusion
    all-reduce); the weight gathers keep their prefetch.

    Source: MaxText benchmarks/xla_flags_library.py (ENABLE_SPARSECORE_OFFLOADING_FOR_ALL_REDUCE: overlapping the
    gradient reduction with compute); the framework preset's overlap source."""
    fw = sz.framework
    return bool(fw is not None and sz.hardware.family in fw.overlap.zero3_reduce_blocking_families)


def zero3_step_exposed_s(ag_layer, rs_layer, win_f, win_b, num_layers, num_micro, fill_passes, backward_gathers,
                         overlap, reduce_blocks=False):
    """Exposed ZeRO-3 time of one step (seconds) of a rank that gathers each of its `num_layers` layers' weights
    (`ag_layer` s per gather) for the forward and `backward_gathers` times for the backward (1, or 2 with the
    recompute forward of full recompute), and reduce-scatters each layer's gradients once (`rs_layer` s), every
    micro-batch; `win_f` / `win_b` are one layer's forward / backward pass time (compute and the communication
    the pass waits for) that a prefetched collective runs beside; `fill_passes` the forward + backward pass pairs
    the pipeline's fill and drain add to the critical path beyond the m of the steady state ((p - 1), (p - 1) / v
    interleaved, 0 without a pipeline).

    With prefetch (`overlap`) the gather of a layer starts when the layer before it starts computing (one unit
    ahead, across pass boundaries: a forward's first gather runs beside the previous backward's last layer, a
    backward's first beside the forward's last layer), and the reduce-scatters queue on their own stream over the
    same network port. From a backward's third layer on, each gather starts together with the reduce-scatter of
    the layer two above, and two collectives in flight share the port equally: the gather takes
    g + min(g, reduce-scatter). What a layer's collective outlasts its window lengthens the pass, and every pass on
    the critical path: the m of the steady state and the fill/drain passes alike, which start after idle time that
    hides their first gather. The port carries nl x (gathers + reduce-scatter) per micro-batch; where that outlasts
    the lengthened passes the steady state runs at the port's pace, m x (port - passes), the reduce-scatter backlog
    draining into later passes and the step's tail; otherwise only the step's first gather and last reduce-scatter
    (after its last backward) are exposed. Without prefetch every gather and reduce-scatter blocks its pass:
    (m + fill) x nl x (gathers + reduce-scatter).

    With `reduce_blocks` (the gathers prefetched, each layer's reduce-scatter run after its backward before the next
    layer's: costs.communication.zero3_reduce_blocks) every reduce-scatter lengthens its pass, (m + fill) x nl x
    reduce-scatter, the gathers are prefetched as above without a reduce-scatter beside them, and the port counts the
    gathers only (the reduce-scatters already sit on the critical path); the step's tail is its first gather.

    Hand-derived timelines (tests/test_zero3_overlap.py): pp 2, one micro-batch, two layers per stage, gather 2,
    reduce-scatter 2, forward 1 and backward 2 per layer: 19 (12 compute + 7 exposed); one stage, four layers: 24;
    the same with blocking reduce-scatters: 26.

    Source: Zhao et al. 2023 (PyTorch FSDP, arXiv 2304.11277) sec. 3.3-3.4 (the next unit's all-gather issued
    before the current unit's compute; all-gather and reduce-scatter on separate streams over one network);
    DeepSpeed deepspeed/runtime/zero/partitioned_param_coordinator.py fetch_sub_module (the following parameters in
    trace order prefetched while the current submodule computes); Rajbhandari et al. 2021 (ZeRO-Infinity, arXiv
    2104.07857) sec. 6.2 (overlap-centric design); Narayanan et al. 2021 (arXiv 2104.04473) sec. 2.2 ((m + p - 1)
    passes on the critical path)."""
    nl, m = np.asarray(num_layers, dtype=float), np.asarray(num_micro, dtype=float)
    g_b = backward_gathers * ag_layer
    rs_q = 0.0 if reduce_blocks else rs_layer                   # the reduce-scatter beside the gathers (queued)
    first_f = np.maximum(0.0, ag_layer - win_b)
    rest_f = np.maximum(0.0, nl - 1.0) * np.maximum(0.0, ag_layer - win_f)
    first_b = np.maximum(0.0, g_b - win_f)
    second_b = np.minimum(1.0, np.maximum(0.0, nl - 1.0)) * np.maximum(0.0, g_b - win_b)
    rest_b = np.maximum(0.0, nl - 2.0) * np.maximum(0.0, g_b + np.minimum(g_b, rs_q) - win_b)
    steady = first_f + rest_f + first_b + second_b + rest_b      # one micro-batch's F + B passes grow by this
    filling = rest_f + second_b + rest_b                         # a fill/drain pair (first gathers in idle time)
    lengthen = m * steady + fill_passes * filling - first_f      # the step's very first gather: `edges` below
    port = nl * (ag_layer + g_b + rs_q)
    over_port = m * np.maximum(0.0, port - nl * (win_f + win_b) - steady)
    with_prefetch = lengthen + np.maximum(ag_layer + rs_q, over_port)
    if reduce_blocks:
        with_prefetch = with_prefetch + (m + fill_passes) * nl * rs_layer
    blocking = (m + fill_passes) * nl * (ag_layer + g_b + rs_layer)
    return np.where(np.asarray(overlap, dtype=bool), with_prefetch, blocking)


def interleaved_sync_exposed_s(comm_s, pass_s, vpp, num_micro, pp):
    """Exposed time of one step's gradient reduction (or parameter gather) of `comm_s` seconds that an
    interleaved 1F1B schedule launches model chunk by model chunk, beside the rank's backward (forward) passes of
    `pass_s` seconds per micro-batch over its `vpp` chunks.

    Megatron-Core's interleaved schedule launches a chunk's gradient reduce-scatter (grad_sync_func) as soon as that
    chunk's last micro-batch has run its backward, and a chunk's parameter all-gather (param_sync_func) with the
    first forward of the chunk before it. The last group of q = min(m, p) micro-batches runs its backward chunk by
    chunk (p micro-batches per chunk), so the first chunk's reduction runs beside its own last backward and the
    q backward passes of each of the v - 1 chunks after it: a window of (1 + (v - 1) q) / v micro-batch backward
    passes instead of one; the forward side mirrors it. Whatever the window cannot hide is exposed, and the last
    chunk's share (1/v of the volume) beside its own pass at least. v = 1 gives max(0, comm - pass) (bucketed
    overlap with the last micro-batch's backward).

    Source: NVIDIA/Megatron-LM megatron/core/pipeline_parallel/schedules.py (core_r0.7.0)
    forward_backward_pipelining_with_interleaving: backward_step_helper calls grad_sync_func[chunk] when
    is_last_microbatch_for_model_chunk, forward_step_helper calls param_sync_func[chunk + 1] on the chunk's first
    micro-batch; get_model_chunk_id (p micro-batches per chunk in a group). NeMo sets the same hooks for its
    distributed optimizer (megatron_gpt_model.py: grad_sync_func / param_sync_func)."""
    v = np.maximum(1.0, np.asarray(vpp, dtype=float))
    q = np.maximum(1.0, np.minimum(np.asarray(num_micro, dtype=float), np.asarray(pp, dtype=float)))
    window = pass_s * (1.0 + (v - 1.0) * q) / v
    return np.maximum(np.maximum(0.0, comm_s - window), np.maximum(0.0, comm_s - pass_s) / v)


def dp_step_comm_s(sz, dense_params, expert_params, comp_f, comp_b, nl_max, tensors_per_layer: int,
                   fill_passes=0.0, zero3_overlap=None, pass_f=None, pass_b=None):
    """(exposed, total) data-parallel / ZeRO communication of one step of the rank that holds `dense_params` and
    `expert_params` and computes `comp_f`/`comp_b` per micro-batch over `nl_max` layers; `pass_f`/`pass_b` (default
    the compute) are its whole forward / backward passes, compute and the communication they wait for, beside
    which ZeRO-3's prefetched collectives run.

    ZeRO 0: all-reduce after the last backward; 1: reduce-scatter there + all-gather before the next forward;
    2 keeps only its gradient shard, so every micro-batch's gradients are reduce-scattered as its backward
    produces them. A backward (forward for the gather) hides what fits in it (bucketed overlap).
    ZeRO 3 (FSDP): every micro-batch gathers each layer's weights for the forward and again for the backward (and
    the recompute) and reduce-scatters its gradients, one collective per layer (or per tensor: latency), each
    paying its own latency; zero3_step_exposed_s composes them with the passes (prefetch when `zero3_overlap`,
    default overlap_grad_reduce) and the pipeline's `fill_passes`.

    Source: Rajbhandari et al. 2020 (ZeRO, arXiv 1910.02054) sec. 5.2; Zhao et al. 2023 (PyTorch FSDP, arXiv
    2304.11277) sec. 3; Megatron-Core DDP bucketed overlap; zero3_step_exposed_s."""
    t, num_micro = sz.table, sz.num_micro
    zero = t.zero
    grad_ar, grad_rs, param_ag = dp_comm_times(sz, dense_params, expert_params)
    ovl = np.where(t.overlap_grad_reduce, 1.0, 0.0)
    win_b = ovl * comp_b
    win_f = np.where(t.dp_param_gather_overlap, 1.0, 0.0) * comp_f     # ZeRO-1/2 parameter all-gather
    rs_rounds = np.where(zero == 2, num_micro, 1.0)
    # interleaved 1F1B: chunk-by-chunk launch (interleaved_sync_exposed_s); ZeRO-2 reduces every micro-batch
    # an overlapped collective's NCCL blocks hold their SMs for its whole run (ep_overlap_exposed_s)
    share = dp_overlap_sm_share(sz)
    chunked = (t.schedule == SCHEDULE_CODES["interleaved"]) & (sz.vpp > 1) & (zero <= 1)
    grad_sync = np.where(zero == 0, grad_ar, grad_rs)
    sync_b = np.where(chunked, interleaved_sync_exposed_s(grad_sync, win_b, sz.vpp, num_micro, sz.pp),
                      rs_rounds * np.maximum(0.0, grad_sync - win_b))
    sync_b = np.maximum(sync_b, rs_rounds * share * grad_sync)
    gather_f = np.where(chunked, interleaved_sync_exposed_s(param_ag, win_f, sz.vpp, num_micro, sz.pp),
                        np.maximum(0.0, param_ag - win_f))
    gather_f = np.maximum(gather_f, share * param_ag)
    exposed_012 = sync_b + np.where(zero == 0, 0.0, gather_f)
    n_gather = 2.0 + np.where(sz.recompute == 2, 1.0, 0.0)
    bw_pp, lat = dp_phase_cost(sz, dense_params, expert_params)
    ag_layer = sz.weight_bytes * bw_pp / nl_max + lat * zero3_gathers_per_layer(sz, tensors_per_layer)
    rs_passes = 2.0 if zero3_reduce_all_reduce(sz) else 1.0     # all-reduce + dynamic slice: two phases
    rs_layer = rs_passes * (sz.grad_bytes * bw_pp / nl_max + lat)
    z3_ovl = t.overlap_grad_reduce if zero3_overlap is None else zero3_overlap
    pass_f, pass_b = (comp_f if pass_f is None else pass_f), (comp_b if pass_b is None else pass_b)
    exposed_3 = zero3_step_exposed_s(ag_layer, rs_layer, pass_f / nl_max, pass_b / nl_max, nl_max, num_micro,
                                     fill_passes, n_gather - 1.0, z3_ovl, zero3_reduce_blocks(sz))
    exposed = np.where(zero >= 3, exposed_3, exposed_012)
    total = np.where(zero == 0, grad_ar, np.where(zero >= 3, num_micro * nl_max * (n_gather * ag_layer + rs_layer),
                                                  rs_rounds * grad_rs + param_ag))
    onebit = (t.dp_compression == DP_COMPRESSION_CODES["onebit"]) & (zero == 0) if t.dp_compression is not None \
        else np.zeros(len(t), bool)
    if np.any(onebit):
        w = t.onebit_warmup_fraction
        stage_s = onebit_stage_s(sz, dense_params, expert_params)
        exposed = np.where(onebit, w * np.maximum(0.0, grad_ar - win_b) + (1.0 - w) * stage_s, exposed)
        total = np.where(onebit, w * grad_ar + (1.0 - w) * stage_s, total)
    return exposed, total


def onebit_stage_s(sz, dense_params, expert_params):
    """Gradient synchronisation of one 1-bit Adam step after its warm-up: the compressed all-reduce of the
    momentum over each data-parallel group (all-to-all of the packed signs, all-gather of the server chunks) and
    the compression passes over HBM. It runs in the optimizer step, after the last backward: nothing hides it.
    During the warm-up (onebit_warmup_fraction of the steps) the gradient all-reduce runs uncompressed.

    Source: Tang et al. 2021 (1-bit Adam, arXiv 2102.02888) sec. 4; DeepSpeed runtime/comm/nccl.py
    compressed_allreduce (costs.compression); DeepSpeed runtime/engine.py: 1-bit Adam is not compatible with ZeRO."""
    from .compression import onebit_allreduce_time_s, onebit_compress_time_s
    t_comm = 0.0
    for (n, stride), params in zip(sz.dp_groups.pairs(), (dense_params, expert_params)):
        t_comm = t_comm + np.where(n > 1, onebit_allreduce_time_s(params, n, stride, sz.tiers), 0.0)
    kr = sz.kernel
    n_any = np.maximum(sz.dp_groups.dense_size, sz.dp_groups.expert_size if sz.dp_groups.has_experts else 1.0)
    compress = onebit_compress_time_s(dense_params + expert_params, kr.hbm_bytes_per_s, kr.memory_efficiency())
    return t_comm + np.where(n_any > 1, compress, 0.0)


#: HBM bytes per parameter of local SGD's outer update: read the fp32 parameters, the anchor copy and the outer
#: momentum, write the momentum, the parameters and the new anchor (6 fp32 passes). Counted from CO2's outer step
#: (Sun et al. 2024, arXiv 2401.16265, Algorithm 1: outer momentum on the averaged parameter change).
LOCAL_SGD_OUTER_BYTES_PER_PARAM = 24.0


def local_sgd_sync_s(sz, dense_params, expert_params, inner_step_s):
    """(exposed, total) data-parallel time per inner step of local SGD with overlapped outer steps (CO2), for the
    rows whose local_sgd_tau > 1: the outer all-reduce of the parameter change (the gradient all-reduce's volume,
    grad_dtype) once every tau steps beside the next tau inner steps, exposed by what outlasts them, plus the outer
    update (memory bound) every tau steps.

    Source: Sun et al. 2024 (CO2, arXiv 2401.16265) sec. 3; costs.compression.local_sgd_exposed_per_step_s."""
    from .compression import local_sgd_exposed_per_step_s
    grad_ar, _, _ = dp_comm_times(sz, dense_params, expert_params)
    tau = sz.table.local_sgd_tau
    kr = sz.kernel
    outer = kr.stream_s(LOCAL_SGD_OUTER_BYTES_PER_PARAM * (dense_params + expert_params))
    exposed = local_sgd_exposed_per_step_s(grad_ar, tau, inner_step_s, overlap=True, outer_update_s=outer)
    return exposed, (grad_ar + outer) / tau
