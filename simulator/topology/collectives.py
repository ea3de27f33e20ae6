"""Alpha-beta cost of collectives on hierarchical (and torus) networks.

Bandwidth terms follow the ring algorithms' bus-bandwidth accounting (nccl-tests PERFORMANCE.md;
Thakur et al. 2005): all-reduce moves 2(n-1)/n x S per device, reduce-scatter and all-gather (n-1)/n x S,
all-to-all (n-1)/n x S. A group that spans several tiers runs hierarchically: the inner level first, then the
next tier on data already divided by the inner members, each level over its own tier's bandwidth. On a torus
tier a ring in each dimension the group spans uses two ports per dimension (bidirectional ring), so the usable
bandwidth is the per-chip ICI bandwidth x dims_used / ndims.
All functions are pure and vectorized over numpy arrays of sizes, group sizes and strides.
"""
from __future__ import annotations

import numpy as np

from .placement import TierArrays, group_levels


def _torus_bandwidth(bw, ndims, side, f):
    """Usable bandwidth on a torus tier for a level of fan-out f: dims_used/ndims of the chip's ICI."""
    if ndims == 0:
        return bw
    dims_used = np.clip(np.ceil(np.log(np.maximum(f, 1.0)) / np.log(max(side, 2.0)) - 1e-9), 1, ndims)
    return bw * dims_used / ndims


def hierarchical_phase_cost(size_bytes, n, stride, tiers: TierArrays):
    """(bandwidth seconds, latency seconds) of one reduce-scatter or all-gather phase over a group of n ranks
    `stride` apart, level by level over the tiers it crosses. The bandwidth part is proportional to
    `size_bytes`; the latency part is alpha per ring step, (f-1) steps per level of fan-out f."""
    levels = group_levels(n, stride, tiers)
    t_bw = 0.0
    t_lat = 0.0
    data = np.asarray(size_bytes, dtype=float)
    for k, f in enumerate(levels):
        bw = _torus_bandwidth(tiers.bandwidth_bytes_per_s[k], tiers.torus_ndims[k], tiers.torus_side[k], f)
        active = f > 1.0
        frac = np.where(active, (f - 1.0) / np.maximum(f, 1.0), 0.0)
        t_bw = t_bw + frac * data / bw
        t_lat = t_lat + np.where(active, (f - 1.0) * tiers.latency_s[k], 0.0)
        data = data / f
    return t_bw, t_lat


def reduce_scatter_time_s(size_bytes, n, stride, tiers: TierArrays):
    """Reduce-scatter of `size_bytes` (the full buffer each rank starts with) over n ranks: (n-1)/n S / B."""
    bw, lat = hierarchical_phase_cost(size_bytes, n, stride, tiers)
    return bw + lat


def all_gather_time_s(size_bytes, n, stride, tiers: TierArrays):
    """All-gather producing `size_bytes` on every rank over n ranks: (n-1)/n S / B (mirror of reduce-scatter)."""
    bw, lat = hierarchical_phase_cost(size_bytes, n, stride, tiers)
    return bw + lat


def all_reduce_time_s(size_bytes, n, stride, tiers: TierArrays):
    """Ring/hierarchical all-reduce: reduce-scatter then all-gather, 2(n-1)/n S / B and 2(n-1) alphas."""
    bw, lat = hierarchical_phase_cost(size_bytes, n, stride, tiers)
    return 2.0 * (bw + lat)


def all_to_all_time_s(size_bytes, n, stride, tiers: TierArrays):
    """All-to-all where each rank sends `size_bytes` in total, 1/n of it to each peer.

    The share for peers inside tier k's domain but outside tier k-1's crosses tier k; tiers run concurrently
    so the slowest share decides (NCCL's all-to-all posts all peers at once).
    """
    levels = group_levels(n, stride, tiers)
    n = np.asarray(n, dtype=float)
    data = np.asarray(size_bytes, dtype=float)
    t = np.zeros(np.broadcast(data, n).shape)
    inner = np.ones_like(n)
    for k, f in enumerate(levels):
        members = inner * f
        share = (members - inner) / np.maximum(n, 1.0)
        bw = _torus_bandwidth(tiers.bandwidth_bytes_per_s[k], tiers.torus_ndims[k], tiers.torus_side[k], f)
        tk = np.where(f > 1.0, share * data / bw + tiers.latency_s[k], 0.0)
        t = np.maximum(t, tk)
        inner = members
    return t


def p2p_time_s(size_bytes, stride, tiers: TierArrays):
    """Point-to-point send between two ranks `stride` apart (pipeline neighbours): S / B + alpha of the tier
    that first holds both."""
    from .placement import members_per_domain
    data = np.asarray(size_bytes, dtype=float)
    t = None
    for k in range(tiers.num_tiers):
        same = members_per_domain(2, stride, tiers.domain_size[k]) >= 2
        bw = tiers.bandwidth_bytes_per_s[k]
        if tiers.torus_ndims[k]:
            bw = bw / tiers.torus_ndims[k] / 2.0   # one port in one direction
        tk = data / bw + tiers.latency_s[k]
        t = np.where(same, tk, np.inf) if t is None else np.where(np.isinf(t) & same, tk, t)
    return t
