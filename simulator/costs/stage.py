"""The three kinds of pipeline rank both engines compose: the first (embedding), the busiest middle and the last
(logits and loss); a single rank is first and last at once. Per kind: its layers, its host work per micro-batch,
its time per micro-batch and its memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..pipeline.closed_form import inflight_microbatches
from ..pipeline.split import stage_split, two_chunk_split
from ..specs.layout import SCHEDULE_CODES
from ..units import GIGA
from .framework_effects import (fsdp_unsharded_bytes, logits_peak_bytes, op_sac_saved_elements_per_token,
                                reserved_bytes as allocator_reserved_bytes)
from .layer import _moe_dims, mlp_elements
from .layer_mix import kind_moe_excess
from .memory import (DistinctShapes, activation_bytes_per_layer, mla_saved_elements_per_token,
                     model_state_bytes)
from .offload import offload_memory, rank_partition, tier_columns, zero3_buffer_params
from .params import rank_params

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


@dataclass(frozen=True)
class RankKind:
    """One kind of pipeline rank: the layers it runs per micro-batch (array), whether it runs the embedding and
    the output layer (1/0; DualPipe's end ranks run each for half their micro-batches: 0.5), where it exists (the
    middle only with pp >= 3, the last only with pp >= 2), and what it holds (`held_*`; None: what it runs; DualPipe
    ranks hold two stages)."""

    layers: object
    embedding: object
    logits: object
    valid: object
    held_layers: object = None
    held_embedding: object = None
    held_logits: object = None
    moe_excess: object = 0.0      # MoE layers it runs beyond the model's average share (costs.layer_mix)

    def held(self) -> tuple:
        """(layers, embedding, output layer) whose parameters the rank holds."""
        pick = lambda h, run: run if h is None else h  # noqa: E731
        return (pick(self.held_layers, self.layers), pick(self.held_embedding, self.embedding),
                pick(self.held_logits, self.logits))


def with_mtp(kinds: tuple, mtp_layers: int) -> tuple:
    """`kinds` with the model's multi-token prediction modules on the rank kinds that run the output layer: each
    module runs one more transformer layer there (the MTP block, like the model's average layer) and holds its
    parameters, and the rank holds the embedding too (each module embeds the shifted tokens with the shared
    embedding); the module's projection and its output head and loss are priced with the logits (logits_s).

    Source: DeepSeek-V3 report (arXiv 2412.19437) sec. 2.2 (MTP module: shared embedding and output head, a
    projection and one transformer block); Megatron-Core GPTModel builds the embedding on the stage that runs MTP
    (mtp_process) and multi_token_prediction.py places the modules after the decoder on the last stage."""
    if mtp_layers == 0:
        return kinds
    out = []
    for k in kinds:
        extra = float(mtp_layers) * np.asarray(k.logits, dtype=float)
        h_layers, h_emb, h_logits = k.held()
        h_extra = float(mtp_layers) * np.asarray(h_logits, dtype=float)
        out.append(RankKind(k.layers + extra, k.embedding, k.logits, k.valid, held_layers=h_layers + h_extra,
                            held_embedding=np.where(h_extra > 0, np.maximum(h_emb, 1.0), h_emb),
                            held_logits=h_logits, moe_excess=k.moe_excess))
    return tuple(out)


def rank_kinds(sz) -> tuple:
    """(first, middle, last) RankKinds with the model's multi-token prediction modules (with_mtp) on the rank that
    runs the output layer; see _rank_kinds."""
    return with_mtp(_rank_kinds(sz), sz.model.mtp_layers)


def first_chunk_layers(t, first_rank_layers):
    """Layers of the model's first chunk (on the first rank) of every layout: the row's stated stage_layers[0],
    else the first rank's layers over its vpp chunks (rounded up: the default split gives the first chunks the
    extra layers).

    Source: pipeline.split (Megatron-LM chunk i on rank i % pp)."""
    c0 = np.ceil(np.asarray(first_rank_layers, dtype=float) / np.maximum(np.asarray(t.vpp, dtype=float), 1.0))
    if t.stage_layers is None:
        return c0
    stated = np.array([float(sl[0]) if sl is not None and len(sl) else np.nan for sl in t.stage_layers])
    return np.where(np.isnan(stated), c0, stated)


def _rank_kinds(sz) -> tuple:
    """(first, middle, last) RankKinds of every layout of `sz`, the layers as float arrays. DualPipe and ZB-V rows
    take their two-chunk placement (pipeline.split.two_chunk_split): ZB-V's first rank runs the embedding and the
    output layer for every micro-batch, its last rank neither; DualPipe's two end ranks each run one for half of
    their micro-batches and hold both.

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 3; pipeline.split (the layer split)."""
    f64 = np.float64
    t = sz.table
    Lf, Lm, Ll = (x.astype(f64) for x in stage_split(t, sz.num_layers))
    single = t.pp == 1
    first_logits = np.where(single, 1.0, 0.0)
    dual, zbv = t.schedule == SCHEDULE_CODES["dualpipe"], t.schedule == SCHEDULE_CODES["zb-v"]
    xf, xm, xl = kind_moe_excess(sz.model, sz.num_layers, t.pp, Lf, Lm, Ll, two_chunk=dual | zbv,
                                 first_chunk=first_chunk_layers(t, Lf))
    kinds = (RankKind(Lf, 1.0, first_logits, np.ones(len(t), bool), moe_excess=xf),
             RankKind(Lm, 0.0, 0.0, t.pp >= 3, moe_excess=xm),
             RankKind(Ll, 0.0, 1.0, ~single, moe_excess=xl))
    if not (dual.any() or zbv.any()):
        return kinds
    run, held = two_chunk_split(t, sz.num_layers)
    two = dual | zbv
    edge_run = [(1.0, first_logits), (0.0, 0.0), (0.0, 1.0)]
    edge_two = [(np.where(dual, 0.5, 1.0),) * 2, (0.0, 0.0), (np.where(dual, 0.5, 0.0),) * 2]
    out = []
    for k, kind in enumerate(kinds):
        emb = np.where(two, edge_two[k][0], edge_run[k][0])
        logit = np.where(two, edge_two[k][1], edge_run[k][1])
        held_edge = np.where(dual & (k != 1), 1.0, np.where(two, edge_two[k][0], edge_run[k][0]))
        out.append(RankKind(np.where(two, run[k], kind.layers), emb, logit, kind.valid,
                            held_layers=np.where(two, held[k], kind.layers), held_embedding=held_edge,
                            held_logits=np.where(dual & (k != 1), 1.0, logit), moe_excess=kind.moe_excess))
    return tuple(out)


@dataclass(frozen=True)
class EdgeCosts:
    """Per-micro-batch work outside the transformer layers: the logits and loss (last rank), the vocab-parallel
    embedding's all-reduce (first rank) and the host time of a one-stage pipeline (`micro_host_s`)."""

    logits_fwd_s: object
    logits_bwd_s: object
    embedding_comm_s: object
    micro_host_s: object

    @property
    def host_pass_s(self):
        """Host time of one layer pass, as the per-micro-batch host work counts it."""
        return self.micro_host_s / MICRO_BATCH_HOST_LAYERS


def logits_s(sz):
    """(forward, backward) time of the output layer and the fp32 cross entropy on the last rank: the logits GEMM
    (V/tp columns, in bf16: Megatron's output layer sits outside the FP8 autocast) and 3 (forward) or 2 (backward)
    fp32 passes over the logits at the measured cross-entropy bandwidth; the backward runs the input- and
    weight-gradient GEMMs. With multi-token prediction (model.mtp_layers) every module adds one more head and loss
    and its projection of [norm(h); norm(embedding)] from 2h to h (the module's transformer layer counts with the
    rank's layers, with_mtp).

    Source: DeepSeek-V3 report (arXiv 2412.19437) sec. 2.2 (MTP modules); Megatron-LM vocab-parallel cross entropy (Shoeybi et al. 2019 sec. 3); Korthikanti et al. 2022 (arXiv
    2205.05198) sec. 4.1 (fp32 logits 4sbv/t); SimuMax cross-entropy efficiency (presets/kernels/*.memory.csv)."""
    kr, M, h, V, tp = sz.kernel, sz.tokens, sz.hidden, sz.vocab, sz.tp
    g_f, g_d, g_w = kr.gemm_passes_s(M, V / tp, h, "bf16")
    fwd = g_f + kr.stream_s(3.0 * 4.0 * M * V / tp, "cross_entropy")
    bwd = g_d + g_w + kr.stream_s(2.0 * 4.0 * M * V / tp, "cross_entropy")
    mtp = float(sz.model.mtp_layers)
    if mtp > 0:     # each MTP module: its projection (2h -> h, column-parallel) and one more head and loss
        p_f, p_d, p_w = kr.gemm_passes_s(M, h / tp, 2.0 * h)
        fwd, bwd = (1.0 + mtp) * fwd + mtp * p_f, (1.0 + mtp) * bwd + mtp * (p_d + p_w)
    return fwd, bwd


def edge_costs(sz, lc, comm, logits=None) -> EdgeCosts:
    """The EdgeCosts of every layout (embedding all-reduce: one TP all-reduce forward; host: MICRO_BATCH_HOST_LAYERS
    layer passes of host time). `logits`: logits_s(sz) when the caller has it already."""
    f, b = logits_s(sz) if logits is None else logits
    return EdgeCosts(logits_fwd_s=f, logits_bwd_s=b, embedding_comm_s=comm.tp_collective_s,
                     micro_host_s=MICRO_BATCH_HOST_LAYERS * lc.host_s)


def rank_host_s(host_pass_s, embedding, logits):
    """Host work per micro-batch of a rank: its every-rank part, plus the embedding's on the first rank and the
    loss's on the last (HOST_LAYERS_* layer passes each), before any of it hides (pass_host_s).

    Source: the HOST_LAYERS_* estimate above (kernel counts of Megatron-LM's GPT step)."""
    return host_pass_s * (HOST_LAYERS_EVERY_RANK + HOST_LAYERS_EMBEDDING * embedding + HOST_LAYERS_LOSS * logits)


def head_host_s(host_pass_s, embedding, logits, every=1.0):
    """(forward, backward) host work per micro-batch at the head of a rank's passes, which the GPU waits for: half
    the every-rank part with each pass (the batch fetch and its TP broadcast before the forward, the pipeline
    send/receive and schedule bookkeeping around both), the embedding forward on the first rank (its lookup,
    masking and all-reduce precede the layers) and the loss backward on the last (the loss scaling and the
    cross-entropy gradient's small kernels precede the output layer's gradient GEMMs).

    Source: Megatron-LM at 2755bcb (2022-06, the code of Korthikanti et al. 2022): each pass starts on a drained GPU
    (megatron/global_vars.py _Timer.start/stop call torch.cuda.synchronize around forward_step ('forward-compute'),
    backward_step ('backward-compute') and get_batch ('batch-generator'); p2p_communication._communicate calls
    torch.cuda.synchronize after every send/receive; mpu/data.py broadcast_data copies the sizes to the CPU), so the
    host work before the pass's first long kernel runs with the GPU idle; schedules.py backward_step runs
    optimizer.scale_loss and the autograd engine from the loss first. `every`: the share of the every-rank part a
    pass carries (1 per micro-batch; the discrete-event engine spreads it over a rank's model chunks)."""
    every = 0.5 * HOST_LAYERS_EVERY_RANK * host_pass_s * every
    return (every + 0.5 * HOST_LAYERS_EMBEDDING * host_pass_s * embedding,
            every + 0.5 * HOST_LAYERS_LOSS * host_pass_s * logits)


def tail_host_s(host_pass_s, embedding, logits):
    """(forward, backward) host work per micro-batch at the tail of a rank's passes: the loss forward on the last
    rank (the logits GEMM, the vocab-parallel cross entropy and its all-reduces, issued after the last layer's
    kernels) and the embedding backward on the first rank (issued after the layers' backward). What of it the GPU
    waits for: exposed_tail_host_s.

    Source: Megatron-LM at 2755bcb: schedules.py forward_step applies loss_func after the model's forward, before
    the 'forward-compute' timer's synchronize; the embedding's gradient is the autograd engine's last node."""
    return (0.5 * HOST_LAYERS_LOSS * host_pass_s * logits, 0.5 * HOST_LAYERS_EMBEDDING * host_pass_s * embedding)


def layer_lead_s(lc):
    """(forward, backward) GPU work one layer pass leaves queued ahead of the host: forward_s - issue_fwd_s and
    backward_s - issue_bwd_s (0 where the pass is host bound).

    Source: costs.layer.host_bound_passes_s (pass = max(GPU, issue) per layer)."""
    return lc.forward_s - lc.issue_fwd_s, lc.backward_s - lc.issue_bwd_s


def tail_lead_s(layer_lead_fwd_s, layer_lead_bwd_s, chunk_layers, logits_fwd_s, logits):
    """(forward, backward) GPU work a pass of `chunk_layers` layers has queued ahead of the host when the host
    reaches its tail: every layer's lead (layer_lead_s), and in the forward the loss's own logits GEMM, which runs
    while the host issues the cross entropy after it (`logits`: 1 on the rank that runs the output layer).
    Recompute and the exposed TP communication, GPU work too, are left out (the lead is a lower bound).

    Source: He 2022, "Making Deep Learning Go Brrrr From First Principles" (asynchronous launch: the host runs ahead
    while kernels outlast their launches)."""
    return chunk_layers * layer_lead_fwd_s + logits * logits_fwd_s, chunk_layers * layer_lead_bwd_s


def exposed_tail_host_s(tail_s, lead_s):
    """Host work at a pass's tail that the GPU waits for: what exceeds the GPU work queued ahead of it (the pass
    then ends with the host's synchronize; list scheduling of the host's issue and the GPU's execution).

    Source: He 2022 (overhead-bound regime: time = max(GPU, host) over the work the host issues ahead)."""
    return np.maximum(tail_s - lead_s, 0.0)


def pass_host_s(lc, edge: EdgeCosts, kind: RankKind, chunks=1.0):
    """(forward, backward) host time per micro-batch outside the layers that a rank kind's passes expose: the head
    work (head_host_s) and what of the tail work (tail_host_s) outlasts the lead of the chunk that carries it
    (tail_lead_s, the rank's layers spread evenly over its `chunks` model chunks).

    Source: head_host_s, tail_host_s, tail_lead_s (Megatron-LM's synchronised pass boundaries)."""
    head_f, head_b = head_host_s(edge.host_pass_s, kind.embedding, kind.logits)
    tail_f, tail_b = tail_host_s(edge.host_pass_s, kind.embedding, kind.logits)
    lead_f, lead_b = tail_lead_s(*layer_lead_s(lc), kind.layers / chunks, edge.logits_fwd_s, kind.logits)
    return head_f + exposed_tail_host_s(tail_f, lead_f), head_b + exposed_tail_host_s(tail_b, lead_b)


@dataclass(frozen=True)
class StageTimes:
    """One micro-batch on one rank kind: compute and exposed communication of its forward and backward, and the
    parts of its compute that are elementwise kernels, FP8 casts and host-bound time (forward and backward), and
    the exposed host work outside its layers (`edge_host_s`, part of `host_s`)."""

    compute_fwd_s: object
    compute_bwd_s: object
    comm_fwd_s: object
    comm_bwd_s: object
    elementwise_s: object
    fp8_cast_s: object
    host_s: object
    edge_host_s: object = 0.0


def stage_times(lc, comm, edge: EdgeCosts, kind: RankKind, chunks=1.0, delta=None) -> StageTimes:
    """Per-micro-batch times of a rank kind: its layers' passes (with recompute in the backward), the logits on the
    last rank, the host work outside the layers its passes expose (pass_host_s; `chunks`: the model chunks its
    layers are spread over), half with each pass, the embedding all-reduce on the first rank. The halves keep the
    forward and backward of the first and last ranks alike, so the pipeline closed forms stay exact against the
    discrete-event replay; where in its passes a rank exposes the work moves its total by nothing. `delta`
    (costs.layer_mix.LayerKindDelta, None: no dense/MoE mix) adds the kind's MoE layers beyond the average share
    (kind.moe_excess) times an MoE layer's passes over a dense layer's."""
    hf, hb = pass_host_s(lc, edge, kind, chunks)
    half = 0.5 * (hf + hb)          # half with each pass, as before the head/tail split (pipeline symmetry)
    nl = kind.layers
    comp_f = nl * lc.forward_s + kind.logits * edge.logits_fwd_s + half
    comp_b = nl * (lc.backward_s + lc.recompute_s) + kind.logits * edge.logits_bwd_s + half
    comm_f = nl * comm.fwd_s + kind.embedding * edge.embedding_comm_s
    comm_b = nl * comm.bwd_s
    ew, fp8, host = nl * lc.elementwise_pass_s, nl * lc.fp8_cast_pass_s, nl * (lc.host_fwd_s + lc.host_bwd_s)
    if delta is not None:
        x = kind.moe_excess
        comp_f, comp_b = comp_f + x * delta.forward_s, comp_b + x * (delta.backward_s + delta.recompute_s)
        comm_f, comm_b = comm_f + x * delta.comm_fwd_s, comm_b + x * delta.comm_bwd_s
        ew, fp8 = ew + x * delta.elementwise_pass_s, fp8 + x * delta.fp8_cast_pass_s
        host = host + x * (delta.host_fwd_s + delta.host_bwd_s)
    return StageTimes(comp_f, comp_b, comm_f, comm_b, elementwise_s=ew, fp8_cast_s=fp8, host_s=host + hf + hb,
                      edge_host_s=hf + hb)


def activation_bytes_of_layer(sz, mlp, recompute=None):
    """Activation bytes one layer keeps for its backward, one micro-batch (costs.memory.activation_bytes_per_layer
    with the layout's SP, recompute and flash attention; FP8 GEMM inputs saved in one byte). `recompute` (codes)
    defaults to the layout's. What 'selective' keeps follows the framework (FrameworkSpec.recompute.selective):
    Megatron's core-attention as costs.memory; torchtitan's op-level SAC its saved ops
    (framework_effects.op_sac_saved_elements_per_token); every n-th layer checkpointed: one layer in n keeps its
    input only, the others everything.

    Source: Korthikanti et al. 2022 (arXiv 2205.05198) Table 2; torchtitan parallelize_llama.py (_save_list,
    selective_ac_option); the preset's recompute.source."""
    m, t = sz.model, sz.table
    rc = sz.recompute if recompute is None else recompute
    head_dim = float(m.dim_per_head) if m.mla is None else sz.v_head_dim

    mla = None if m.mla is None else mla_saved_elements_per_token(
        sz.heads, m.mla.q_lora_rank, m.mla.kv_lora_rank, m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim,
        m.mla.v_head_dim)

    def acts(code):
        return activation_bytes_per_layer(sz.seq_len / sz.cp, sz.micro_batch, sz.hidden, sz.heads, head_dim,
                                          sz.kv_heads, mlp.stored_heavy, sz.tp, sz.sequence_parallel, code,
                                          t.flash_attention, sz.act_bytes,
                                          gemm_input_bytes=1.0 if sz.training.dtype == "fp8" else None,
                                          fc2_input_elems=mlp.fc2_input_heavy, mla_elems=mla,
                                          dropout=m.trains_with_dropout)
    base = acts(rc)
    sel = sz.framework.recompute if sz.framework is not None else None
    if sel is None or sel.selective in ("core-attention", "remat-policy", "none"):
        return base
    if sel.selective == "mlp":
        # a dense layer's MLP keeps only its input (saved outside it anyway): none of its internal activations; an
        # MoE layer keeps all of its own (Megatron-Core checkpoints dense MLPs only: layer.recompute_pass_s)
        dense = 1.0 - sz.moe_heavy_fraction
        f = float(m.ffn_hidden_size)
        gate = 2.0 if m.gated_mlp else 1.0
        no_mlp = activation_bytes_per_layer(sz.seq_len / sz.cp, sz.micro_batch, sz.hidden, sz.heads, head_dim,
                                            sz.kv_heads, mlp.stored_heavy - dense * (gate + 1.0) * f, sz.tp,
                                            sz.sequence_parallel, np.zeros_like(rc),
                                            t.flash_attention, sz.act_bytes,
                                            gemm_input_bytes=1.0 if sz.training.dtype == "fp8" else None,
                                            fc2_input_elems=mlp.fc2_input_heavy - dense * f, mla_elems=mla,
                                            dropout=m.trains_with_dropout)
        return np.where(np.asarray(rc) == 1, no_mlp, base)
    if sel.selective == "op-level-sac":
        ffn = float(m.ffn_hidden_size) if m.moe is None else float(m.moe.expert_ffn_hidden_size) * m.moe.top_k
        per_token = op_sac_saved_elements_per_token(sz.hidden, sz.heads, sz.kv_heads, head_dim, ffn, sz.tp,
                                                    sz.sp_factor)
        selective = sz.tokens * per_token * sz.act_bytes
    else:
        n = float(sel.selective_every_n_layers)
        selective = acts(np.zeros_like(rc)) * (1.0 - 1.0 / n) + acts(np.full_like(rc, 2)) / n
    return np.where(np.asarray(rc) == 1, selective, base)


def recompute_working_set_bytes(sz, mlp, layer_bytes=None):
    """Extra activation memory while one layer is recomputed inside the backward: under full recompute the layer's
    whole forward activations (as without recompute) exist again for one layer of one micro-batch; selective
    recompute re-materialises what it dropped for one layer.

    Source: Korthikanti et al. 2022 (arXiv 2205.05198) sec. 5 (checkpointed layers are recomputed one at a time
    in the backward); PyTorch torch.utils.checkpoint (recompute on the first unpack of a saved tensor).
    `layer_bytes`: activation_bytes_of_layer(sz, mlp) where the caller has it."""
    rc = np.asarray(sz.recompute)
    if not rc.any():                                  # no row recomputes: nothing is re-materialised
        return np.zeros(rc.shape)
    full = activation_bytes_of_layer(sz, mlp, np.zeros_like(rc))
    kept = activation_bytes_of_layer(sz, mlp) if layer_bytes is None else layer_bytes
    return np.where(rc == 0, 0.0, full - kept)


def wgrad_dummy_bytes(sz, layers, embedding, logits, memo: dict | None = None):
    """Dummy weight-gradient buffers of a rank holding `layers` layers, the embedding (first rank) and the output
    layer (1/0), under the framework's buffers.wgrad_dummy: one activation-dtype tensor per distinct weight shape
    (per TP rank) of its Transformer Engine linears (attention projections, the dense MLP on the rank holding the
    model's first dense layers or in a dense model, shared experts), of the expert GEMMs (one per expert weight
    shape, 'linear-and-grouped') and of the output layer on the last rank. 0 for 'none' and where the optimizer or
    the parameters are offloaded (gradients then stream to the host in buckets, costs.offload).

    Source: Transformer Engine transformer_engine/pytorch/module/base.py get_dummy_wgrad (Linear from TE 2.3,
    GroupedLinear from TE 2.10); Megatron-Core tensor_parallel/layers.py (the output layer's dummy grad_weight under
    gradient-accumulation fusion); SimuMax simumax/core/config.py te_dummy_wgrad_min_version (the same rule).
    `memo` (a dict one caller keeps for the rank kinds of one table) holds what depends on the shapes alone."""
    fw = sz.framework
    mode = fw.buffers.wgrad_dummy if fw is not None else "none"
    if mode == "none":
        return 0.0
    t = sz.table
    # optimizer / parameter offload streams gradient buckets to the host (ZeRO-Offload, costs.offload): no
    # device-resident main_grad to fuse into, so no dummy gradients
    on_device = (np.asarray(t.offload_optimizer) == 0) & (np.asarray(t.offload_params) == 0)
    m = sz.model
    has_layers = np.asarray(layers) > 0
    present = [has_layers] * (2 if m.mla is None else (4 if m.mla.q_lora_rank is None else 5))
    if m.moe is None:
        dense_on = has_layers
    else:
        dense_on = has_layers & (np.asarray(embedding) > 0) & (m.moe.first_dense_layers > 0)
    present += [dense_on, dense_on]
    if m.moe is not None:
        fs = _moe_dims(m)[3]
        moe_on = has_layers & (np.asarray(layers) > np.where(np.asarray(embedding) > 0, m.moe.first_dense_layers, 0))
        if fs > 0:
            present += [moe_on, moe_on]
        if mode == "linear-and-grouped":
            present += [moe_on, moe_on]
    present.append(np.asarray(logits) > 0)
    memo = {} if memo is None else memo
    if "wgrad_shapes" not in memo:
        memo["wgrad_shapes"] = DistinctShapes(wgrad_shapes(sz, mode), sz.act_bytes)
    return np.where(on_device, memo["wgrad_shapes"].bytes(present), 0.0)


def wgrad_shapes(sz, mode: str) -> list:
    """The (rows, cols) weight shapes per TP rank wgrad_dummy_bytes counts, in its order: attention projections,
    the dense MLP, shared experts, expert GEMMs ('linear-and-grouped') and the output layer.

    Source: wgrad_dummy_bytes."""
    m, tp, etp, h = sz.model, sz.tp, sz.etp, float(sz.hidden)
    gate = 2.0 if m.gated_mlp else 1.0
    a = float(m.num_heads)
    if m.mla is None:
        d, kv = float(m.dim_per_head), float(m.kv_heads)
        shapes = [((a + 2.0 * kv) * d / tp, h), (h, a * d / tp)]
    else:
        c = m.mla
        dqk = float(c.qk_nope_head_dim + c.qk_rope_head_dim)
        q = [(a * dqk / tp, h)] if c.q_lora_rank is None else [(float(c.q_lora_rank), h),
                                                                (a * dqk / tp, float(c.q_lora_rank))]
        shapes = q + [(float(c.kv_lora_rank + c.qk_rope_head_dim), h),
                      (a * (c.qk_nope_head_dim + c.v_head_dim) / tp, float(c.kv_lora_rank)),
                      (h, a * c.v_head_dim / tp)]
    f = float(m.ffn_hidden_size)
    shapes += [(gate * f / tp, h), (h, f / tp)]
    if m.moe is not None:
        fe, _, _, fs = _moe_dims(m)
        if fs > 0:
            shapes += [(gate * fs / tp, h), (h, fs / tp)]
        if mode == "linear-and-grouped":
            shapes += [(gate * fe / etp, h), (h, fe / etp)]
    shapes.append((float(sz.vocab) / tp, h))
    return shapes


def optimizer_step_excess_bytes(sz, dense, expert, acts):
    """Memory the optimizer step needs beyond what the forward/backward peak holds: the framework's gradient copies
    (buffers.optimizer_grad_copy_bytes per parameter of the rank's optimizer shard: ZeRO-1 and above shard over the
    data-parallel groups) exist after the backward pass, when the activations `acts` are freed, so only their excess
    over the activations raises the peak.

    Source: InternEvo internlm/solver/optimizer/hybrid_zero_optim.py step() (flatten the shard's bf16 gradients, cast
    to fp32, assign as the fp32 master's grad) and fsdp_optimizer.py (p.grad.to(fp32)) at 06e8301 (2023-11)."""
    fw = sz.framework
    per = fw.buffers.optimizer_grad_copy_bytes if fw is not None else 0.0
    if per == 0.0:
        return 0.0
    t, g = sz.table, sz.dp_groups
    shard = np.where(t.zero >= 1, dense / g.dense_size + expert / g.expert_size, dense + expert)
    return np.maximum(per * shard - acts, 0.0)


def stage_memory_bytes(sz, mlp, kinds) -> list:
    """(weights, grads, optimizer, activations, host, nvme) bytes per device of each rank kind: model states under
    ZeRO over the data-parallel groups (plus ZeRO-3's double-buffered gather of one layer), the activations of the
    micro-batches in flight, the embedding output (first rank) and the fp32 logits (last rank); what the layout
    offloads moves to the host or NVMe (costs.offload.offload_memory).

    Source: Rajbhandari et al. 2020 (ZeRO) sec. 5; Korthikanti et al. 2022 (arXiv 2205.05198) Table 2 and sec.
    4.2.3 (in-flight micro-batches); costs.memory."""
    t = sz.table
    fw = sz.framework
    act_layer = activation_bytes_of_layer(sz, mlp)
    working = recompute_working_set_bytes(sz, mlp, act_layer)
    inflight = [inflight_microbatches(sz.pp, sz.vpp, sz.num_micro, t.schedule, r) for r in (0.0, 1.0, sz.pp - 1.0)]
    ce = fw.loss.cross_entropy if fw is not None else "fp32-materialized"
    logit_mem = logits_peak_bytes(sz.tokens, sz.vocab, sz.tp, ce)
    emb_out = sz.tokens * sz.hidden * sz.act_bytes / sz.sp_factor       # embedding output kept for backward
    g = sz.dp_groups
    zero3 = t.zero >= 3
    extra = sync_state_bytes_per_param(t)
    offloads = bool(np.any(t.offload_optimizer) or np.any(t.offload_params) or np.any(t.offload_activations))
    out, memo = [], {}                         # memo: what the kinds share (wgrad_dummy_bytes)
    for kind, inf in zip(kinds, inflight):
        dense, expert = rank_params(sz, *kind.held())
        wd, gd, od = model_state_bytes(dense, sz.weight_bytes, sz.grad_bytes, t.zero, g.dense_size)
        we, ge, oe = model_state_bytes(expert, sz.weight_bytes, sz.grad_bytes, t.zero, g.expert_size)
        held_kind = RankKind(*kind.held(), kind.valid)
        buffer = zero3_buffer_params(sz, held_kind, memo) * sz.weight_bytes    # ZeRO-3's gather buffer
        gathered, unsharded_g = zero3_unsharded_bytes(sz, dense + expert, buffer)
        on_device = (wd + we + np.where(zero3, gathered, 0.0), gd + ge + np.where(zero3, unsharded_g, 0.0),
                     od + oe + extra * (dense + expert), kind.layers * act_layer * inf)
        if offloads:
            part = rank_partition(sz, held_kind)                           # the parameters the rank holds
            w, gr, o, layer_acts, host, nvme = offload_memory(
                *on_device, part.total, part.held, buffer, sz.weight_bytes, sz.grad_bytes, t.offload_optimizer,
                t.offload_params, t.offload_activations, act_layer)
        else:           # nothing offloaded: offload_memory keeps every figure on the device, none on host or NVMe
            (w, gr, o, layer_acts), host, nvme = on_device, 0.0, 0.0
        acts = layer_acts + kind.embedding * emb_out * inf \
            + kind.held()[2] * (1.0 + sz.model.mtp_layers) * logit_mem \
            + np.where(kind.layers > 0, working, 0.0)
        gr = gr + wgrad_dummy_bytes(sz, *kind.held(), memo=memo)
        o = o + optimizer_step_excess_bytes(sz, dense, expert, acts)
        out.append((w, gr, o, acts, host, nvme))
    return out


#: fp32 error-feedback buffer 1-bit Adam keeps per parameter (worker error; the server error is 1/n of it).
ONEBIT_ERROR_BYTES_PER_PARAM = 4.0
#: fp32 anchor copy and outer momentum local SGD (CO2) keeps per parameter.
LOCAL_SGD_STATE_BYTES_PER_PARAM = 8.0


def sync_state_bytes_per_param(t):
    """Optimizer-state bytes per parameter that compressed or local data parallelism adds: 1-bit Adam's worker
    error buffer, local SGD's anchor and outer momentum (0 for plain data parallelism).

    Source: DeepSpeed runtime/comm/nccl.py compressed_allreduce (worker_error, server_error); Sun et al. 2024
    (CO2, arXiv 2401.16265) Algorithm 1 (outer momentum, the parameters of the last outer step)."""
    if t.dp_compression is None:
        return 0.0
    return np.where(t.dp_compression == 1, ONEBIT_ERROR_BYTES_PER_PARAM, 0.0) \
        + np.where(t.local_sgd_tau > 1, LOCAL_SGD_STATE_BYTES_PER_PARAM, 0.0)


def zero3_unsharded_bytes(sz, stage_params, buffer_bytes):
    """(gathered weights, unsharded gradients) a ZeRO-3 rank holds beyond its shards: by default its gather buffer
    `buffer_bytes` (costs.offload.zero3_buffer_params: costs.memory.zero3_gathered_params of its largest unit) and
    no unsharded gradient (ZeRO-3, FSDP with reshard after forward); under a pipeline, a framework that keeps the
    stage's parameters gathered and accumulates unsharded gradients across micro-batches (torchtitan with FSDP2)
    holds the whole stage (framework_effects.fsdp_unsharded_bytes).

    Source: Rajbhandari et al. 2020 (ZeRO) sec. 5.3; the preset's fsdp.source."""
    fw = sz.framework
    if fw is None or fw.fsdp.implementation != "fsdp2":
        return buffer_bytes, 0.0
    f = fw.fsdp
    params, grads = fsdp_unsharded_bytes(stage_params, buffer_bytes / (2.0 * sz.weight_bytes), sz.pp,
                                         f.reshard_after_forward, f.unsharded_grad_accumulation_under_pp,
                                         sz.weight_bytes, f.accumulated_grad_bytes)
    keep = (f.reshard_after_forward == "never") | ((f.reshard_after_forward == "not-under-pp") & (sz.pp > 1))
    # without accumulation under PP one unit's gradient waits for its reduce-scatter (small; as before, not held)
    return np.where(keep, params, buffer_bytes), np.where((sz.pp > 1) & f.unsharded_grad_accumulation_under_pp,
                                                           grads, 0.0)


def step_overhead_s(hw, framework=None) -> float:
    """Fixed time per step outside the pipeline and the optimizer (data loader, logging, gradient clipping
    bookkeeping): the framework preset's host.step_overhead_ms where published, else the profile's
    step_overhead_ms.

    Source: the preset's host.source; the profile's efficiency.step_overhead_ms (hardware_profiles/*.yaml)."""
    if framework is not None and framework.host.step_overhead_s is not None:
        return framework.host.step_overhead_s
    return hw.efficiency.step_overhead_ms * 1e-3


def context_bytes(hw, framework=None) -> float:
    """Device memory outside the caching allocator (runtime context, communicator buffers): the framework
    preset's allocator.context_gb where set, else the profile's framework_reserved_gb estimate.

    Source: the preset's allocator.source; the profile's efficiency.framework_reserved_gb (hardware_profiles)."""
    if framework is not None and framework.allocator.context_bytes is not None:
        return framework.allocator.context_bytes
    return hw.efficiency.framework_reserved_gb * GIGA


def first_max(values) -> tuple:
    """(index, value) of the largest of per-kind arrays `values` row by row, the first on ties: np.argmax of their
    stack along the kinds and the entry it picks, without the stack (argmax across a (kinds, rows) stack copies it
    to rows of three and searches each in turn: 1.3 ms per 16,000 rows against 0.08 ms). Arrays with a NaN take
    np.argmax itself (it ranks NaN first)."""
    if len(values) != 3 or np.isnan(values[0] + values[1] + values[2]).any():
        stack = np.stack(values)
        idx = np.argmax(stack, axis=0)
        return idx, stack[idx, np.arange(len(idx))]
    t0, t1, t2 = values
    up1 = t1 > t0
    best = np.where(up1, t1, t0)
    up2 = t2 > best
    return np.where(up2, 2, np.where(up1, 1, 0)).astype(np.intp, copy=False), np.where(up2, t2, best)


def memory_columns(sz, kinds) -> dict:
    """Memory of the fullest rank kind as columns (mem_<kind>_bytes, mem_total_bytes, mem_capacity_bytes), whether
    it fits (`fits`) and which kind it is (`memory_rank`: 0 first, 1 middle, 2 last). Three peaks, as frameworks
    report memory: `mem_allocated_bytes` (tensors: the four kinds), `mem_reserved_peak_bytes` (the caching
    allocator's reserve for it: allocated / utilisation + fragmentation, the framework's allocator model) and
    `mem_device_peak_bytes` (reserved plus the context outside the allocator: device-level tools). What must fit
    (`mem_total_bytes`) is allocated + context: under pressure PyTorch's caching allocator frees its cached blocks
    and retries before it raises out-of-memory (c10/cuda/CUDACachingAllocator.cpp, release_cached_blocks), so the
    unconstrained reserve of a roomy device is reported, not required; `mem_reserved_bytes` is the context.
    Host and NVMe bytes per node (costs.offload.tier_columns) and whether each tier fits (`fits_device`,
    `fits_host`, `fits_nvme`; `fits`: all of them).

    Source: the busiest pipeline rank decides (Korthikanti et al. 2022, arXiv 2205.05198, sec. 4.2.3: the first
    stage holds the most activations under 1F1B); capacity is the profile's device.memory_gb and host block."""
    n = len(sz.table)
    mem = stage_memory_bytes(sz, mlp_elements(sz), kinds)
    fw = sz.framework
    ctx = context_bytes(sz.hardware, fw)
    util, frag = (fw.allocator.utilisation, fw.allocator.fragmentation_bytes) if fw is not None else (1.0, 0.0)
    alloc = [np.where(k.valid, sum(x[:4]), -np.inf) for x, k in zip(mem, kinds)]
    mem_tot = [a + ctx for a in alloc]
    midx = first_max(mem_tot)[0]
    capacity = sz.hardware.device.memory_bytes
    first, middle = midx == 0, midx == 1
    fullest = lambda per_kind: np.where(first, per_kind[0], np.where(middle, per_kind[1], per_kind[2]))  # noqa: E731
    out = {f"mem_{name}_bytes": fullest([x[i] for x in mem])
           for i, name in enumerate(("weights", "grads", "optimizer", "activations"))}
    out["mem_allocated_bytes"] = fullest(alloc)
    out["mem_reserved_peak_bytes"] = allocator_reserved_bytes(out["mem_allocated_bytes"], util, frag)
    out["mem_device_peak_bytes"] = out["mem_reserved_peak_bytes"] + ctx
    out["mem_total_bytes"] = fullest(mem_tot)
    out["mem_reserved_bytes"] = np.broadcast_to(np.float64(ctx), (n,))
    out["mem_capacity_bytes"] = np.broadcast_to(np.float64(capacity), (n,))
    out["fits_device"] = out["mem_total_bytes"] <= capacity
    out.update(tier_columns(sz, [x[4:] for x in mem], kinds))
    out["fits"] = out["fits_device"] & out["fits_host"] & out["fits_nvme"]
    out["memory_rank"] = midx
    return out
