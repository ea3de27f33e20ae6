"""Alpha-beta cost of collectives on hierarchical (and torus) networks.

Bandwidth terms follow the ring algorithms' bus-bandwidth accounting (nccl-tests PERFORMANCE.md;
Thakur et al. 2005): all-reduce moves 2(n-1)/n x S per device, reduce-scatter and all-gather (n-1)/n x S,
all-to-all (n-1)/n x S. A group that spans several tiers runs hierarchically: the inner level first, then the
next tier on data already divided by the inner members, each level over its own tier's bandwidth. On a torus
tier a ring in each dimension the group spans uses two ports per dimension (bidirectional ring), so the usable
bandwidth is the per-chip ICI bandwidth x dims_used / ndims (on a 2D torus an axis the group spans only in part has
no wraparound link and counts half: _torus2d_share).
All functions are pure and vectorized over numpy arrays of sizes, group sizes and strides.
"""
from __future__ import annotations

import numpy as np

from .placement import TierArrays, group_levels


def _torus_bandwidth(bw, ndims, side, f):
    """Usable bandwidth on a torus tier for a level of fan-out f: dims_used/ndims of the chip's ICI; on a 2D torus
    (_torus2d_share) each axis's share counts in full only where the level spans the whole axis."""
    if ndims == 0:
        return bw
    if ndims == 2:
        return bw * _torus2d_share(side, f)
    dims_used = np.clip(np.ceil(np.log(np.maximum(f, 1.0)) / np.log(max(side, 2.0)) - 1e-9), 1, ndims)
    return bw * dims_used / ndims


def _torus2d_share(side, f):
    """Share of a chip's ICI bandwidth a collective over f chips of a 2D torus of `side` x `side` uses: the chips
    form a near-square rectangle a1 x a2 (a1 = min(side, 2^ceil(log2(f) / 2)), Cloud TPU slice shapes 2x4, 4x4,
    4x8, 8x8, 8x16, 16x16), and each axis the rectangle spans carries a bidirectional ring over its half of the
    ports; an axis shorter than the torus side has no wraparound link (a line, not a ring) and moves half as much:
    share = (w1 + w2) / 2 with w = 1 for a full axis, 1/2 for a shorter one, 0 for an axis of one chip.

    Source: MaxText docs/guides/optimization/custom_model.md (Trillium ICI arithmetic intensity "5100 for 1D-ICI (1D
    with wraparound or 2D without wraparound), 2550 for 2D-ICI (2D with wraparound on both dimensions),
    particularly for v6e-256"); Cloud TPU v5e/v6e and v3 slices have wraparound only along a full axis of the pod
    (the profiles' tier notes, shared/reference/hardware.md sec. 7)."""
    f = np.maximum(np.asarray(f, dtype=float), 1.0)
    a1 = np.minimum(float(side), 2.0 ** np.ceil(np.log2(f) / 2.0 - 1e-9))
    a2 = np.maximum(1.0, f / a1)

    def axis(a):
        return np.where(a <= 1.0, 0.0, np.where(a >= side, 1.0, 0.5))
    return np.where(f > 1.0, (axis(a1) + axis(a2)) / 2.0, 0.5)    # a group of one moves nothing


def call_latency_s(n, stride, tiers: TierArrays):
    """Fixed time of one collective call over a group of n ranks `stride` apart: the call cost of the outermost tier
    the group crosses (launch, stream synchronisation and the gap between back-to-back calls that nccl-tests'
    in-loop timing does not see); 0 for a group of one.

    Source: SimuMax simu_tools/efficency_test/run_one_click_benchmark.py (fixed latency: per-call time of
    back-to-back torch.distributed collectives in a burst window minus the nccl-tests fit); the tier's
    call_latency_us."""
    levels = group_levels(n, stride, tiers)
    out = 0.0
    call = tiers.call_latency
    for k, f in enumerate(levels):
        out = np.where(f > 1.0, call[k], out)
    return out


def level_bandwidth(tiers: TierArrays, k: int, f):
    """Usable per-device bandwidth of tier k for a level of fan-out f: the torus rule (_torus_bandwidth) on a
    torus; on a full-mesh tier, whose per-device bandwidth is spread over direct links to its `mesh_peers` peers
    (domain - 1), a level reaches only its f - 1 members' links: bandwidth x (f - 1) / mesh_peers (a 2-card group
    of an 8-card Gaudi 2 or MI300X mesh gets 1/7 of the card's scale-up bandwidth).

    Source: Intel Gaudi network configuration (3 x 100 GbE per peer, 21 ports to 7 peers); AMD Instinct MI300X
    platform (7 Infinity Fabric links, one per peer GPU); the profiles' tier notes."""
    bw = _torus_bandwidth(tiers.bandwidth_bytes_per_s[k], tiers.torus_ndims[k], tiers.torus_side[k], f)
    peers = 0.0 if tiers.mesh_peers is None else float(tiers.mesh_peers[k])
    if peers <= 0.0:
        return bw
    return bw * np.clip(np.asarray(f, dtype=float) - 1.0, 1.0, peers) / peers


def all_to_all_level_bandwidth(tiers: TierArrays, k: int, f):
    """level_bandwidth of tier k for an all-to-all: times the tier's all-to-all over ring-collective bus bandwidth
    where the profile measures it apart (TierSpec.all_to_all_efficiency; NCCL runs an all-to-all as grouped
    point-to-point sends to every peer, not as ring steps).

    Source: the profile's tier source (nccl-tests alltoall_perf bus bandwidth)."""
    return level_bandwidth(tiers, k, f) * tiers.all_to_all_scale[k]


def hierarchical_phase_cost(size_bytes, n, stride, tiers: TierArrays):
    """(bandwidth seconds, latency seconds) of one reduce-scatter or all-gather phase over a group of n ranks
    `stride` apart, level by level over the tiers it crosses. The bandwidth part is proportional to
    `size_bytes`: each level moves (f-1)/f of the data left by the inner levels over its own tier.

    The latency part is that of NCCL's ring, which is flat (one ring through all n ranks, laid out domain by
    domain), not hierarchical: of its n-1 steps, (f_k - 1) x (members outside the level) cross tier k, so a
    group of 1536 GPUs on 192 nodes pays 192 x 7 NVLink steps + 191 network steps, not 7 + 191 (NCCL
    src/graph/tuning.cc, ring latency (nsteps - nInterSteps) x intraLat + nInterSteps x interLat). Torus tiers
    (TPU ICI) run per-dimension rings inside their slice, level by level: (f - 1) steps. The latency part includes
    the call's fixed cost (call_latency_s), once per phase."""
    levels = group_levels(n, stride, tiers)
    t_bw = 0.0
    t_lat = 0.0
    data = np.asarray(size_bytes, dtype=float)
    outer = [np.ones_like(np.asarray(n, dtype=float))]
    for f in reversed(levels[1:]):
        outer.insert(0, outer[0] * f)
    for k, f in enumerate(levels):
        bw = level_bandwidth(tiers, k, f)
        active = f > 1.0
        frac = np.where(active, (f - 1.0) / np.maximum(f, 1.0), 0.0)
        t_bw = t_bw + frac * data / bw
        repeats = 1.0 if tiers.torus_ndims[k] else outer[k]
        t_lat = t_lat + np.where(active, (f - 1.0) * repeats * tiers.latency_s[k], 0.0)
        data = data / f
    return t_bw, t_lat + call_latency_s(n, stride, tiers)


def tree_all_reduce_latency_s(n, stride, tiers: TierArrays):
    """Latency of NCCL's tree all-reduce: a chain inside the innermost domain and a (double) binary tree across
    the outer tiers, up and down: 2 x ((f_0 - 1) alpha_0 + sum_k log2(f_k) alpha_k) (NCCL src/graph/tuning.cc,
    tree latency 2 x ((nRanks/nNodes - 1) intraLat + log2(nNodes) interLat)). NCCL picks the tree for
    latency-bound all-reduces across many nodes. Like the ring's two phases it pays the call cost
    (call_latency_s) twice, so that the two compare on their steps."""
    levels = group_levels(n, stride, tiers)
    lat = 0.0
    for k, f in enumerate(levels):
        steps = (f - 1.0) if k == 0 else np.ceil(np.log2(np.maximum(f, 1.0)) - 1e-9)
        lat = lat + np.where(f > 1.0, steps * tiers.latency_s[k], 0.0)
    return 2.0 * (lat + call_latency_s(n, stride, tiers))


def reduce_scatter_time_s(size_bytes, n, stride, tiers: TierArrays):
    """Reduce-scatter of `size_bytes` (the full buffer each rank starts with) over n ranks: (n-1)/n S / B."""
    bw, lat = hierarchical_phase_cost(size_bytes, n, stride, tiers)
    return bw + lat


def all_gather_time_s(size_bytes, n, stride, tiers: TierArrays):
    """All-gather producing `size_bytes` on every rank over n ranks: (n-1)/n S / B (mirror of reduce-scatter)."""
    bw, lat = hierarchical_phase_cost(size_bytes, n, stride, tiers)
    return bw + lat


def all_reduce_time_s(size_bytes, n, stride, tiers: TierArrays):
    """Ring/hierarchical all-reduce: reduce-scatter then all-gather, 2(n-1)/n S / B, with the latency of the ring
    (2 x its phase latency) or of NCCL's tree, whichever is smaller."""
    bw, lat = hierarchical_phase_cost(size_bytes, n, stride, tiers)
    return 2.0 * bw + np.minimum(2.0 * lat, tree_all_reduce_latency_s(n, stride, tiers))


def all_to_all_time_s(size_bytes, n, stride, tiers: TierArrays, per_peer_latency: bool = False):
    """All-to-all where each rank sends `size_bytes` in total, 1/n of it to each peer.

    The share for peers inside tier k's domain but outside tier k-1's crosses tier k; tiers run concurrently
    so the slowest share decides (NCCL's all-to-all posts all peers at once): max over tiers k of
    latency_k + share_k x S / B_k. The latency is one alpha per tier (the default: the peers' messages overlap)
    or, with `per_peer_latency`, one alpha per peer message across the tier, (peers across k) x alpha_k: what
    makes a flat all-to-all slow at thousands of GPUs with small messages (Tutel, arXiv 2206.03382, sec. 3.3).

    Source: alpha-beta model (Hockney 1994) of NCCL's all-to-all (grouped ncclSend/ncclRecv to every peer);
    Tutel arXiv 2206.03382 sec. 3.3 for the per-peer chunk size S/n.
    """
    levels = group_levels(n, stride, tiers)
    n = np.asarray(n, dtype=float)
    data = np.asarray(size_bytes, dtype=float)
    t = np.zeros(np.broadcast(data, n).shape)
    inner = np.ones_like(n)
    for k, f in enumerate(levels):
        members = inner * f
        peers = members - inner
        bw = all_to_all_level_bandwidth(tiers, k, f)
        lat = peers * tiers.latency_s[k] if per_peer_latency else tiers.latency_s[k]
        tk = np.where(f > 1.0, peers / np.maximum(n, 1.0) * data / bw + lat, 0.0)
        t = np.maximum(t, tk)
        inner = members
    return t + call_latency_s(n, stride, tiers)


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
        elif tiers.mesh_peers is not None and tiers.mesh_peers[k] > 0:
            bw = bw / tiers.mesh_peers[k]           # the direct links to one mesh peer
        tk = data / bw + tiers.latency_s[k]
        t = np.where(same, tk, np.inf) if t is None else np.where(np.isinf(t) & same, tk, t)
    return t
