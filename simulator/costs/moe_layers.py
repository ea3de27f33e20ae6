"""Per-layer MoE costs under sampled routing imbalance (the discrete-event engine's per (step, layer) draws).

The analytic engine prices every MoE layer at the routing model's expected busiest-rank load (costs.moe_routing.
moe_load). The discrete-event engine draws one max-over-mean per (step, layer) (moe_routing.
sample_layer_step_imbalance) and charges each layer the difference from that expectation: its expert GEMMs
(forward; twice in the backward, split into input and weight gradient halves; once more under full recompute)
and its all-to-alls scaled by the ratio of their times. Layers are the model's average layer (as in costs.layer),
so the differences carry the MoE share of the layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .communication import moe_all_to_all_s
from .layer import expert_gemm_s
from .moe_routing import load_factors, sample_layer_step_imbalance


@dataclass(frozen=True)
class LayerImbalance:
    """Per layer (arrays of num_layers): seconds added to its forward pass (`fwd_s`), to its backward pass with
    its recompute (`bwd_s`, the whole backward), of which the weight-gradient half (`wgrad_s`), and the factor
    on its exposed all-to-all time (`ep_scale`); `max_over_mean` is the draw."""

    max_over_mean: np.ndarray
    fwd_s: np.ndarray
    bwd_s: np.ndarray
    wgrad_s: np.ndarray
    ep_scale: np.ndarray


def layer_imbalance(sz, routing, max_over_mean) -> LayerImbalance:
    """LayerImbalance of one-row sizes `sz` for one step's per-layer draws `max_over_mean` (array).

    Source: costs.layer.expert_gemm_s and costs.communication.moe_all_to_all_s at the drawn load, minus their
    values at the expected load (sz.moe_load); backward = 2 x forward GEMMs (Narayanan et al. 2021 sec. 2)."""
    m, load = sz.model, sz.moe_load
    mom = np.asarray(max_over_mean, dtype=float)
    g, d, _ = load_factors(routing, m.moe.num_experts, m.moe.top_k, load.tokens, mom)
    frac = sz.moe_fraction
    dexp = frac * (np.asarray(expert_gemm_s(sz, g)) - np.asarray(expert_gemm_s(sz, load.gemm_factor)))
    rc_full = np.asarray(sz.recompute).reshape(-1)[0] == 2
    a2a = np.asarray(moe_all_to_all_s(sz, d, mom), dtype=float)
    a2a0 = np.asarray(moe_all_to_all_s(sz), dtype=float)
    scale = np.where(a2a0 > 0, a2a / np.maximum(a2a0, 1e-300), 1.0)
    return LayerImbalance(max_over_mean=mom, fwd_s=dexp, bwd_s=(3.0 if rc_full else 2.0) * dexp, wgrad_s=dexp,
                          ep_scale=np.broadcast_to(scale, mom.shape))


def sampled_layer_imbalance(sz, routing, rng, num_steps: int) -> list:
    """One LayerImbalance per step: max-over-mean draws per (step, layer) from the seeded Generator `rng`.

    Source: costs.moe_routing.sample_layer_step_imbalance (each layer keeps its popularity and expert placement,
    each step adds token noise); multi-token prediction modules (model.mtp_layers) route their own tokens: one more
    layer each."""
    m, load = sz.model, sz.moe_load
    ep = int(np.asarray(sz.ep).reshape(-1)[0])
    T = float(np.asarray(load.tokens).reshape(-1)[0])
    draws = sample_layer_step_imbalance(routing, rng, num_steps, sz.num_layers + m.mtp_layers, m.moe.num_experts,
                                        ep, T,
                                        m.moe.top_k)
    return [layer_imbalance(sz, routing, draws[i]) for i in range(num_steps)]
