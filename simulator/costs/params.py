"""Parameters a rank holds, by rank kind: one definition for both engines (the analytic engine counts a rank's
total, the discrete-event engine sums the same per-layer figures chunk by chunk).

A transformer layer's parameters split into dense ones (attention, norms, router, shared experts, the dense MLP
of non-MoE layers), sharded tp ways, and routed-expert ones, sharded etp x ep ways. The first pipeline rank also
holds the input embedding, the last the output layer (its own copy even when tied: Megatron keeps both and
syncs them), except on a single rank where a tied embedding is stored once.
"""
from __future__ import annotations

import numpy as np


def layer_params(sz):
    """(dense, routed-expert) parameters of one layer (unsharded), in the busiest stage's mix of dense and MoE
    layers.

    Source: costs.flops.ModelCosts (Megatron-LM layer structure; MoE per Fedus et al. 2021, arXiv 2101.03961)."""
    c, heavy = sz.costs, sz.moe_heavy_fraction
    dense = c.attn_params + c.norm_params_per_layer + c.router_params + c.shared_expert_params \
        + (1.0 - heavy) * c.dense_mlp_params
    return dense, heavy * c.num_experts * c.expert_params


def layer_params_per_rank(sz):
    """(dense, expert) parameters of one layer on one rank: dense / tp, expert / (etp x ep).

    Source: Shoeybi et al. 2019 (arXiv 1909.08053) sec. 3 (tensor parallelism); Megatron-Core expert parallelism."""
    dense, expert = layer_params(sz)
    return dense / sz.tp, expert / (sz.etp * sz.ep)


def edge_params_per_rank(sz):
    """(input embedding, output layer) parameters on the rank that holds them, split tp ways (vocab parallel).

    Source: Shoeybi et al. 2019 (arXiv 1909.08053) sec. 3 (vocab-parallel embedding)."""
    c = sz.costs
    return c.embedding_params / sz.tp, c.output_params / sz.tp


def rank_params(sz, layers, embedding, logits):
    """(dense, expert) parameters of a pipeline rank holding `layers` layers, the embedding (1/0) and the output
    layer (1/0), per device. The model's first dense layers (moe.first_dense_layers) sit on the rank that holds the
    embedding (the first stage): it holds them as dense layers and the rest in the MoE mix of layer_params; the
    other ranks hold the MoE mix only.

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 3 (first/last stages hold the embedding and logits);
    Megatron-Core moe_layer_freq / first_k_dense_replace (layers are assigned to stages in order)."""
    dense_part, expert_part = layer_params(sz)
    c, tp = sz.costs, sz.tp
    out_params = c.output_params
    moe = sz.model.moe
    first_dense = float(moe.first_dense_layers) if moe is not None else 0.0
    n_dense = np.where(np.asarray(embedding) > 0, np.minimum(first_dense, layers), 0.0)
    rest = layers - n_dense
    dense_layer = c.attn_params + c.norm_params_per_layer + c.dense_mlp_params
    dense = (rest * dense_part + n_dense * dense_layer + embedding * c.embedding_params + logits * out_params) / tp
    if sz.model.tied_embeddings:
        dense = np.where((sz.table.pp == 1) & (logits > 0), dense - out_params / tp, dense)
    return dense, rest * expert_part / (sz.etp * sz.ep)
