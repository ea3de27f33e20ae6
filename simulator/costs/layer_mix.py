"""The layer mix of each pipeline rank: an MoE model's dense and MoE layers are not spread evenly over the stages.

Both engines price one *average* layer (costs.layer.layer_costs: the dense and MoE layers mixed by the model's
MoE share f = num_moe_layers / num_layers). That is exact for the whole model, and for a rank that holds the
model's mix; but a model whose first layers are dense (DeepSeek-V2/V3 first_k_dense_replace, Kimi K2) puts them on
the first pipeline stage, so every later stage holds MoE layers only and runs slower than its layer count times the
average layer. A rank kind holding n layers of which n_moe are MoE runs

    n x (average layer) + (n_moe - n f) x (MoE layer - dense layer)

(the layer passes are affine in the MoE share: every MoE term of costs.layer and costs.communication is scaled by
f), and the excess n_moe - n f sums to zero over all the stages, so the pipeline's total work is unchanged.

Source: Megatron-Core builds the decoder layers in order on the pipeline stages (transformer_block.py, layer
numbers offset by the stage) with --moe-layer-freq / first_k_dense_replace deciding each layer's MLP
(gpt_layer_specs.py get_gpt_decoder_block_spec: moe_layer_pattern), so the first stage holds the dense prefix;
DeepSeek-V3 report (arXiv 2412.19437) sec. 4.2 (the first three layers dense).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


def moe_layer_prefix(model) -> np.ndarray:
    """P[i] = number of MoE layers among the model's layers 0 .. i-1 (length num_layers + 1), by the rule of
    ModelSpec.num_moe_layers (first_dense_layers dense, then every layer_freq-th layer MoE).

    Source: simulator.specs.model.ModelSpec.num_moe_layers."""
    L = int(model.num_layers)
    moe = np.zeros(L, dtype=np.int64)
    if model.moe is not None:
        d, k = int(model.moe.first_dense_layers), int(model.moe.layer_freq)
        i = np.arange(L)
        moe = ((i >= d) & ((k == 1) | ((i - d) % k == k - 1))).astype(np.int64)
    return np.concatenate([[0], np.cumsum(moe)])


def is_moe_layer(model, layer: int) -> bool:
    """Whether layer `layer` (0-based) of the model runs an MoE block (moe_layer_prefix)."""
    p = moe_layer_prefix(model)
    return bool(p[layer + 1] - p[layer])


def mixed_layers(model) -> bool:
    """True where the model has both dense and MoE layers (the only case the layer mix changes anything)."""
    if model.moe is None:
        return False
    n = int(moe_layer_prefix(model)[-1])
    return 0 < n < int(model.num_layers)


def kind_moe_excess(model, num_layers: int, pp, lf, lm, ll, two_chunk=None, first_chunk=None) -> tuple:
    """(first, middle, last) rank kinds' MoE layers beyond their average share, n_moe - n f (arrays over the
    layouts): the first rank holds the model's first chunk [0, c0) (`first_chunk`, default all its lf layers) and
    lf - c0 layers at the MoE share of the layers after it (its later chunks, interleaved schedules), the last
    [L - ll, L), the middle kind the middle stage next to the last ([L - ll - lm, L - ll), the one with the most
    MoE layers when the dense layers lead). Zero for a single stage, for a model without a dense/MoE mix and for
    the two-chunk schedules (DualPipe, ZB-V: their ranks hold stages from both ends).

    Source: module docstring (layers in order on the stages, the dense prefix on the first; Megatron-LM chunk i
    on rank i % pp)."""
    pp = np.asarray(pp)
    zero = np.zeros(pp.shape, dtype=float)
    if not mixed_layers(model):
        return zero, zero, zero
    P = moe_layer_prefix(model)
    L = int(num_layers)
    f = float(P[-1]) / L
    lf, lm, ll = (np.clip(np.asarray(x, dtype=np.int64), 0, L) for x in (lf, lm, ll))
    count = lambda a, b: (P[np.clip(b, 0, L)] - P[np.clip(a, 0, L)]).astype(float)   # noqa: E731
    c0 = lf if first_chunk is None else np.clip(np.minimum(np.asarray(first_chunk, dtype=np.int64), lf), 0, L)
    rest = np.where(c0 < L, count(c0, L) / np.maximum(L - c0, 1), 0.0)
    first = count(0, c0) + (lf - c0) * rest - lf * f
    last = count(L - ll, L) - ll * f
    middle = count(L - ll - lm, L - ll) - lm * f
    keep = (pp > 1) if two_chunk is None else ((pp > 1) & ~np.asarray(two_chunk, dtype=bool))
    return (np.where(keep, first, 0.0), np.where(keep & (pp >= 3), middle, 0.0), np.where(keep, last, 0.0))


@dataclass(frozen=True)
class LayerKindDelta:
    """An MoE layer's passes minus a dense layer's (seconds, arrays over the layouts): the layer passes of
    costs.layer.LayerCosts (forward, backward, recompute, weight gradient, the elementwise, FP8-cast and host-bound
    parts) and the exposed communication of costs.communication.LayerComm (TP, EP, CP, forward and backward)."""

    forward_s: object
    backward_s: object
    recompute_s: object
    wgrad_s: object
    elementwise_fwd_s: object
    elementwise_bwd_s: object
    fp8_cast_fwd_s: object
    fp8_cast_bwd_s: object
    host_fwd_s: object
    host_bwd_s: object
    tp_fwd_s: object
    tp_bwd_s: object
    ep_fwd_s: object
    ep_bwd_s: object
    cp_fwd_s: object
    cp_bwd_s: object

    @property
    def comm_fwd_s(self):
        return self.tp_fwd_s + self.ep_fwd_s + self.cp_fwd_s

    @property
    def comm_bwd_s(self):
        return self.tp_bwd_s + self.ep_bwd_s + self.cp_bwd_s

    @property
    def elementwise_pass_s(self):
        return self.elementwise_fwd_s + self.elementwise_bwd_s

    @property
    def fp8_cast_pass_s(self):
        return self.fp8_cast_fwd_s + self.fp8_cast_bwd_s


def layer_kind_delta(sz, layer_costs, layer_comm) -> LayerKindDelta:
    """The LayerKindDelta of every layout of `sz`: `layer_costs(sz)` and `layer_comm(sz, lc)` (the functions of
    costs.layer and costs.communication, passed in) evaluated with every layer MoE (MoE share 1) and with every
    layer dense (share 0), subtracted.

    Source: module docstring (the passes are affine in the MoE share)."""
    s1, s0 = replace(sz, moe_fraction=1.0), replace(sz, moe_fraction=0.0)
    a, b = layer_costs(s1), layer_costs(s0)
    ca, cb = layer_comm(s1, a), layer_comm(s0, b)
    d = lambda x, y: np.asarray(x, dtype=float) - np.asarray(y, dtype=float)   # noqa: E731
    return LayerKindDelta(
        forward_s=d(a.forward_s, b.forward_s), backward_s=d(a.backward_s, b.backward_s),
        recompute_s=d(a.recompute_s, b.recompute_s), wgrad_s=d(a.wgrad_s, b.wgrad_s),
        elementwise_fwd_s=d(a.elementwise_s + a.model_ops_fwd_s, b.elementwise_s + b.model_ops_fwd_s),
        elementwise_bwd_s=d(2.0 * a.elementwise_s + a.model_ops_bwd_s, 2.0 * b.elementwise_s + b.model_ops_bwd_s),
        fp8_cast_fwd_s=d(a.fp8_cast_fwd_s, b.fp8_cast_fwd_s), fp8_cast_bwd_s=d(a.fp8_cast_bwd_s, b.fp8_cast_bwd_s),
        host_fwd_s=d(a.host_fwd_s, b.host_fwd_s), host_bwd_s=d(a.host_bwd_s, b.host_bwd_s),
        tp_fwd_s=d(ca.tp_fwd_s, cb.tp_fwd_s), tp_bwd_s=d(ca.tp_bwd_s, cb.tp_bwd_s),
        ep_fwd_s=d(ca.ep_fwd_s, cb.ep_fwd_s), ep_bwd_s=d(ca.ep_bwd_s, cb.ep_bwd_s),
        cp_fwd_s=d(ca.cp_fwd_s, cb.cp_fwd_s), cp_bwd_s=d(ca.cp_bwd_s, cb.cp_bwd_s))
