"""The analytic engine's offload term: what a step spends on the host link, NVMe and the CPU optimizer beyond what
compute hides (composition only: every size and duration comes from simulator.costs.offload).

Per step of the pacing rank, with m micro-batches, forward compute F and backward compute B (recompute included):

    forward   host->device  m x parameter fetch of one pass              device->host  m x activation copy
    backward  host->device  m x (fetches of the backward passes          device->host  m x gradient partition
                                 + activation copy back)
    optimizer CPU Adam || updated fp16 copy || NVMe swap (the slowest)

and costs.offload.exposed_offload_s charges max(0, max(h2d, d2h) - F) + max(0, max(h2d, d2h) - B) + the update
(with overlap), or every transfer (without). The GPU optimizer step leaves where the optimizer is offloaded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..costs import offload as off
from ..costs.layer import mlp_elements
from ..costs.stage import activation_bytes_of_layer


@dataclass(frozen=True)
class OffloadTerms:
    """Per step of the pacing rank: the transfers by direction and phase, the optimizer phase and the time the
    step adds (`offload_s`, the `offload` category)."""

    h2d_fwd_s: np.ndarray
    d2h_fwd_s: np.ndarray
    h2d_bwd_s: np.ndarray
    d2h_bwd_s: np.ndarray
    update: off.UpdateTimes
    offload_s: np.ndarray


def backward_fetch_passes(table):
    """Passes of the backward that need a layer's weights: the backward itself, and the recompute forward with
    full recompute. Source: DeepSpeed ZeRO-3 (parameters re-fetched for the recomputed forward)."""
    return np.where(table.recompute == 2, 2.0, 1.0)


def offload_terms(sz, kind_of_pace, num_micro, fwd_compute_s, bwd_compute_s) -> OffloadTerms:
    """OffloadTerms of every layout of `sz`, the pacing rank kind `kind_of_pace` (a costs.stage.RankKind of
    arrays) with `fwd_compute_s` / `bwd_compute_s` compute per micro-batch."""
    t = sz.table
    if not (np.any(t.offload_optimizer) or np.any(t.offload_params) or np.any(t.offload_activations)):
        zero = np.broadcast_to(np.float64(0.0), (len(t),))       # every transfer and update below is 0 without offload
        return OffloadTerms(h2d_fwd_s=zero, d2h_fwd_s=zero, h2d_bwd_s=zero, d2h_bwd_s=zero,
                            update=off.UpdateTimes(cpu_adam_s=zero, param_copy_s=zero, nvme_s=zero, update_s=zero),
                            offload_s=zero)
    rates = off.host_rates(sz.hardware, sz.job.num_devices)
    part = off.rank_partition(sz, kind_of_pace)
    opt, par, act = t.offload_optimizer, t.offload_params, t.offload_activations
    layers = kind_of_pace.layers
    fetch_layer = off.param_fetch_s(part.layer, rates, par, sz.weight_bytes)
    fetch_emb = off.param_fetch_s(part.embedding, rates, par, sz.weight_bytes)
    fetch_out = off.param_fetch_s(part.output, rates, par, sz.weight_bytes)
    act_copy = off.activation_copy_s(layers * activation_bytes_of_layer(sz, mlp_elements(sz)), rates, act)
    m = num_micro
    h2d_f = m * (layers * fetch_layer + fetch_emb + fetch_out)
    h2d_b = m * (backward_fetch_passes(t) * layers * fetch_layer + fetch_out + act_copy)
    d2h_f = m * act_copy
    d2h_b = m * off.grad_offload_s(part.total, rates, opt, sz.grad_bytes)
    upd = off.offload_update_s(part.total, rates, opt, par, sz.weight_bytes)
    total = off.exposed_offload_s(m * fwd_compute_s, m * bwd_compute_s, h2d_f, d2h_f, h2d_b, d2h_b, upd.update_s,
                                  t.overlap_grad_reduce, t.offload_delayed_update)
    return OffloadTerms(h2d_fwd_s=h2d_f, d2h_fwd_s=d2h_f, h2d_bwd_s=h2d_b, d2h_bwd_s=d2h_b, update=upd,
                        offload_s=total)


def offload_columns(terms: OffloadTerms) -> dict:
    """The offload detail columns of the engine's output (off_*_s)."""
    u = terms.update
    return {"off_h2d_fwd_s": terms.h2d_fwd_s, "off_d2h_fwd_s": terms.d2h_fwd_s, "off_h2d_bwd_s": terms.h2d_bwd_s,
            "off_d2h_bwd_s": terms.d2h_bwd_s, "off_cpu_adam_s": u.cpu_adam_s, "off_param_copy_s": u.param_copy_s,
            "off_nvme_s": u.nvme_s, "off_update_s": u.update_s}
