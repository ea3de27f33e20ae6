"""Host-bound eager execution of a transformer layer: kernel launches per pass, CUDA-graph scopes, and the
device-to-host synchronisation of a dropless MoE dispatcher.

In eager PyTorch the host (CPU) dispatches every kernel (Python module code, autograd, the ATen dispatcher, the
driver launch) and the GPU runs them asynchronously: while the host stays ahead, its time hides behind the GPU's,
so a pass of G seconds of GPU work and H seconds of host work takes max(G, H) (He 2022, "Making Deep Learning Go
Brrrr From First Principles", the overhead-bound regime). A CUDA graph replays a captured region with one launch,
so its kernels cost the host one dispatch instead of one each (NVIDIA "Getting Started with CUDA Graphs", Gray
2019; PyTorch "Accelerating PyTorch with CUDA Graphs", 2021; Megatron-Core --cuda-graph-impl transformer_engine
with --cuda-graph-modules).

A dropless MoE dispatcher needs the routed token counts on the host to size its buffers and the all-to-all
splits: Megatron-Core's MoEAlltoAllTokenDispatcher copies tokens_per_expert / input_splits / output_splits to the
CPU and waits on that copy (`_maybe_dtoh_and_synchronize`, d2h_event.synchronize at `cuda_sync_point`
"before_ep_alltoall" with EP or TP > 1, "before_permutation_1" with a capacity factor but no padding); the flex
dispatcher's HybridEP/DeepEP paths resolve the received count on the host after the dispatch (token_dispatcher.py
_HybridEPManager.dispatch: "tokens_per_expert.sum() (CPU sync)"), and TE's grouped GEMM takes the split sizes as a
host list. With `--moe-pad-expert-input-to-capacity` and a capacity factor (drop and pad) every size is static:
no copy, no wait (`if not self.drop_and_pad`), and the MoE block becomes CUDA-graph capturable (moe/README.md,
"CUDA Graph"). At the wait the host's lead is gone: the GPU drains and then idles until the host dispatches the
kernels after the sync. With the layer split at the sync into a pre part (G_pre, H_pre: attention, router,
metadata) and a post part (G_post, H_post: dispatch, experts, combine), the list-scheduling time of the pass
between two consecutive syncs is max(G_pre + G_post, H_post + G_pre, H_post + H_pre) = max(G, H_post + max(G_pre,
H_pre)): the host time of the post part is exposed where the GPU work after the sync does not cover it. The
backward pass has no sync (the splits are already on the host) and takes max(G_b, H_b). The flex dispatcher
(DeepEP/HybridEP, layout moe_dispatch node-limited) syncs after its fused dispatch kernel rather than before the
all-to-alls; its post-sync part is counted as the alltoall dispatcher's (one or two kernels more than it runs).

Kernel counts per layer pass (LayerKernels) are counted from Megatron-Core (NVIDIA/Megatron-LM at d98e8a6,
2026-08: transformer_layer.py, moe/router.py TopKRouter.forward/routing, moe/moe_utils.py permute/unpermute/
sort_chunks_by_idxs with moe_permute_fusion, moe/token_dispatcher.py MoEAlltoAllTokenDispatcher, moe/experts.py
TEGroupedMLP over TE GroupedLinear, which issues one GEMM per local expert and, in FP8, one quantisation per
expert input) with Transformer Engine fused kernels (layernorm, RoPE, fused attention, bias-dropout-add). They are
counts of dispatched kernels (NCCL collectives and device-to-host copies included), to within a few kernels; the
backward re-dispatches every forward kernel's gradient and splits each GEMM into input- and weight-gradient GEMMs
(each with an FP8 quantisation of its gradient input).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model_ops import eager_op_kernels

#: Forward kernels of the attention block (TransformerLayer._forward_attention with TE): input layernorm (1), QKV
#: GEMM (1), RoPE on q and k (2), fused attention (1), output projection GEMM (1), bias-dropout-add (1), pre-MLP
#: layernorm (1), tensor-parallel collectives (0 without TP; 2 with SP: all-gather, reduce-scatter), plus one FP8
#: quantisation per GEMM input in FP8 runs. GEMMs: 2.
ATTN_KERNELS_FWD = 8.0
ATTN_GEMMS = 2.0
#: Forward kernels of a dense MLP: fc1 GEMM, activation, fc2 GEMM, bias-dropout-add. GEMMs: 2.
MLP_KERNELS_FWD = 4.0
MLP_GEMMS = 2.0
#: Router (TopKRouter.forward, moe_router_fusion off): router GEMM (1), fp32 cast (1), score function and top-k
#: (softmax, topk, scatter into the routing map and probabilities: 4), aux-loss (token counts, sum, the switch
#: load-balancing loss product and mean, MoEAuxLossAutoScaler: 6). GEMMs: 1 (bf16, outside the FP8 autocast).
ROUTER_KERNELS_FWD = 12.0
ROUTER_GEMMS = 1.0
#: Dispatcher metadata (MoEAlltoAllTokenDispatcher.preprocess + _maybe_dtoh_and_synchronize): routing_map.sum (1),
#: input_splits reshape-sum (1), all-gather of the counts over TP x EP (1), slicing and sums of the per-rank counts
#: (3), and the device-to-host copies of tokens_per_expert, input_splits, output_splits, output_splits_tp and
#: num_out_tokens (5).
PREPROCESS_KERNELS_FWD = 11.0
#: Before the sync: the fused permutation of tokens and probabilities (moe_utils.permute, fused: 2).
PERMUTE_KERNELS_FWD = 2.0
#: After the sync (alltoall dispatcher): the tokens' and probabilities' all-to-alls (2), sort_chunks_by_idxs of
#: tokens and probabilities (2), the weighted activation (1), unsort (1), the combine all-to-all (1), unpermute (1),
#: bias-dropout-add (1); plus per local expert its fc1 and fc2 GEMMs (2) and in FP8 their input quantisations (2).
POST_SYNC_KERNELS_FWD = 9.0
EXPERT_GEMMS = 2.0
#: A shared expert (SharedExpertMLP): fc1 GEMM, activation, fc2 GEMM, gate/add (4 kernels, 2 GEMMs).
SHARED_KERNELS_FWD = 4.0
SHARED_GEMMS = 2.0


@dataclass(frozen=True)
class LayerKernels:
    """Host time of one layer pass (seconds; arrays over the table's rows): forward and backward of a dense layer
    and of an MoE layer, and of an MoE layer's forward the part after its device-to-host sync (0 without one)."""

    dense_fwd_s: object
    dense_bwd_s: object
    moe_fwd_s: object
    moe_bwd_s: object
    moe_post_sync_fwd_s: object
    moe_syncs: object          # 1.0 where an MoE layer's forward waits on a device-to-host copy, else 0.0


def _pass_kernels(fwd, gemms, q):
    """(forward, backward) kernels of a block with `fwd` forward kernels of which `gemms` are GEMMs, FP8
    quantisation `q` (1 or 0) per GEMM input: the forward adds q per GEMM; the backward re-dispatches every
    forward kernel and splits each GEMM into input- and weight-gradient GEMMs, each with a quantised input."""
    f = fwd + q * gemms
    return f, f + gemms * (1.0 + 2.0 * q)


def _scoped(kernels, captured):
    """Host dispatches of a block: its kernels, or one graph launch when a CUDA graph captures it."""
    return 1.0 if captured else kernels


def layer_kernel_host(sz, kernel_host_s: float, scope: tuple, fp8: bool) -> LayerKernels:
    """LayerKernels of every layout of `sz`: kernels per block (module constants) times `kernel_host_s`, a CUDA
    graph replacing each captured block's kernels by one launch. The MoE layer's local experts are E / ep (TE
    GroupedLinear issues a GEMM per local expert); its forward syncs unless the routing pads every expert to a
    capacity (drop and pad: static shapes) or a CUDA graph captures the whole MoE block (which needs them).

    The eager model-feature ops (costs.model_ops.eager_op_kernels: unfused YaRN RoPE in the attention block, the
    clamped GLU and per-expert output bias after the sync) add their kernels where the framework runs them.

    Source: module docstring (Megatron-Core code paths, kernel counts per block)."""
    q = 1.0 if fp8 else 0.0
    full = "full_iteration" in scope
    e_attn_f, e_attn_b, e_moe_f, e_moe_b = eager_op_kernels(sz)
    a_f, a_b = _pass_kernels(ATTN_KERNELS_FWD, ATTN_GEMMS, q)
    a_f, a_b = a_f + e_attn_f, a_b + e_attn_b
    m_f, m_b = _pass_kernels(MLP_KERNELS_FWD, MLP_GEMMS, q)
    attn = "attn" in scope or full
    dense_f = _scoped(a_f, attn) + _scoped(m_f, "mlp" in scope or full)
    dense_b = _scoped(a_b, attn) + _scoped(m_b, "mlp" in scope or full)
    m = sz.model
    zero = np.zeros_like(np.asarray(sz.ep, dtype=float))
    if m.moe is None:
        return LayerKernels(dense_f * kernel_host_s + zero, dense_b * kernel_host_s + zero, zero, zero, zero, zero)
    local = float(m.moe.num_experts) / np.asarray(sz.ep, dtype=float)
    r_f, r_b = _pass_kernels(ROUTER_KERNELS_FWD, ROUTER_GEMMS, 0.0)
    p_f, p_b = _pass_kernels(PREPROCESS_KERNELS_FWD + PERMUTE_KERNELS_FWD, 0.0, 0.0)
    post_f, post_b = _pass_kernels(POST_SYNC_KERNELS_FWD + EXPERT_GEMMS * local, EXPERT_GEMMS * local, q)
    post_f, post_b = post_f + e_moe_f, post_b + e_moe_b
    shared = float(m.moe.num_shared_experts) > 0
    s_f, s_b = _pass_kernels(SHARED_KERNELS_FWD, SHARED_GEMMS, q) if shared else (0.0, 0.0)
    padded = _drop_and_pad(sz)
    moe_graph = ("moe" in scope and padded) or full
    moe_f = (_scoped(a_f, attn) + _scoped(r_f, "moe_router" in scope or moe_graph)
             + _scoped(p_f, "moe_preprocess" in scope or moe_graph) + _scoped(post_f + s_f, moe_graph))
    moe_b = (_scoped(a_b, attn) + _scoped(r_b, "moe_router" in scope or moe_graph)
             + _scoped(p_b, "moe_preprocess" in scope or moe_graph) + _scoped(post_b + s_b, moe_graph))
    syncs = 0.0 if (padded or full) else 1.0
    post = syncs * _scoped(post_f + s_f, moe_graph)
    k = kernel_host_s
    return LayerKernels(dense_f * k + zero, dense_b * k + zero, moe_f * k + zero, moe_b * k + zero,
                        post * k + zero, syncs + zero)


def _drop_and_pad(sz) -> bool:
    """True when the job's MoE routing has a capacity factor with every expert padded to it (Megatron-Core
    moe_expert_capacity_factor with moe_pad_expert_input_to_capacity): static shapes, no device-to-host sync."""
    from .sizes import routing_of      # costs.sizes imports this module's importers
    r = routing_of(sz.model, sz.training)
    return r is not None and r.capacity_factor is not None and bool(r.pad_to_capacity)


def synced_pass_s(gpu_s, gpu_post_s, host_s, host_post_s, syncs):
    """Time of a layer pass whose forward waits on a device-to-host copy before its post part: max(G, H_post +
    max(G_pre, H_pre)) where it syncs, max(G, H) where it does not (module docstring).

    Source: list scheduling of an in-order stream fed by one host thread, split at the sync (module docstring)."""
    pre_g = np.maximum(gpu_s - gpu_post_s, 0.0)
    pre_h = np.maximum(host_s - host_post_s, 0.0)
    synced = np.maximum(gpu_s, host_post_s + np.maximum(pre_g, pre_h))
    return np.where(np.asarray(syncs) > 0, synced, np.maximum(gpu_s, host_s))
