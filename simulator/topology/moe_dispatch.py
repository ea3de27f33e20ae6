"""MoE token dispatch (and combine) strategies as alpha-beta costs over the network tiers of an EP group.

Three ways to run the expert-parallel all-to-all of `size_bytes` per rank (the total a rank sends, its own share
included, 1/n of it to each of the n group members), over the same TierArrays as topology.collectives:

- flat: one all-to-all (collectives.all_to_all_time_s, the one definition); every peer gets its own message, so
  a rank posts (members across tier k) messages on tier k. Tiers run concurrently and the slowest decides.
- hierarchical (DeepSpeed-MoE hierarchical all-to-all, arXiv 2201.05596 sec. 5; Tutel 2DH): level by level, an
  all-to-all among the members inside the fastest domain that aggregates the data by destination, then one
  among the domains: (f_k - 1) messages of S/f_k bytes on tier k, (f_k - 1)/f_k x S per level. The network moves
  the same volume as the flat version ((n - G)/n = (N - 1)/N), the fast tier moves more (about 2x in all, the
  DeepSpeed blog's "2x communication volume"), and the messages are f_k - 1 instead of n - 1: O(G + n/G) hops.
  Tutel adds two local re-layout copies (read + write of S each), memory bound. It wins through the message
  count, so only under the per-peer latency model (Tutel, arXiv 2206.03382, sec. 3.3 "2DH All-to-All").
- node-limited (DeepSeek-V3 report, arXiv 2412.19437 sec. 3.2.2; DeepEP normal kernels): a token is sent once
  per destination node over the network (to the GPU with the same local index) and forwarded over NVLink to the
  GPUs of its experts there; with node-limited routing it reaches at most M nodes. The network and NVLink
  transfers are pipelined in one kernel, so the slower of the two decides.
Latency: `per_peer_latency` False (the default, as collectives.all_to_all_time_s) charges one alpha per tier or
level an exchange crosses (the messages to its peers overlap); True charges one alpha per peer message. All
functions are pure and broadcast over numpy arrays.
"""
from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ..special import special_ufunc
from .collectives import all_to_all_level_bandwidth, all_to_all_time_s, level_bandwidth
from .placement import TierArrays, group_levels

#: Local re-layout passes of Tutel's 2DH all-to-all: a strided copy before the intra-node step and one between
#: the steps, each reading and writing the whole buffer (Tutel sec. 3.3, Fig. 9: "local memory layout transform").
TUTEL_RELAYOUT_PASSES = 2


#: HybridEP (NVIDIA, DeepEP hybrid-ep branch docs/README_Hybrid-EP.md, "H100 Platform" table): torch-API
#: dispatch (BF16) and combine "IB bandwidth" at Megatron-Core's default 16 SMs (TransformerConfig
#: moe_hybridep_num_sms = 16), 4096 tokens, hidden 7168, top-8, random uniform routing, 8 local experts per rank,
#: 8 ranks per node: ranks 16 -> 54.47 / 53.35 GB/s, 32 -> 47.36 / 52.53, 64 -> 41.24 / 46.57. The figure counts
#: every (token, node) pair the token's own node included (tests/utils.py count_rdma_send_from_routing_map, "to
#: align with the implementation in the DeepEP"), so the bytes that cross the network are (N - 1)/N of it: mean of
#: dispatch and combine x (N - 1)/N = 26.96, 37.46, 38.42 GB/s per GPU on 2, 4 and 8 nodes, over the 45 GB/s the
#: H100 profile's NDR tier reaches (50 GB/s x 0.9, nccl-tests): 0.599, 0.832, 0.854. DeepEP's normal kernels reach
#: the tier's bandwidth on the same class of network (tests/test_ep_dispatch_published.py), so the scale is the
#: HybridEP torch API's (its launch, its host-side sizing and its RDMA engine), carried to other networks as the
#: same fraction of the tier. Nodes -> scale on the network term.
HYBRIDEP_NETWORK_SCALE = {2: 0.599, 4: 0.832, 8: 0.854}


def hybridep_network_scale(num_nodes):
    """Fraction of the network tier's bandwidth HybridEP's dispatch/combine reaches across `num_nodes` nodes:
    HYBRIDEP_NETWORK_SCALE, linear in log2(nodes) between its points, its end values outside them (1 below 2
    nodes: no network term).

    Source: HYBRIDEP_NETWORK_SCALE (HybridEP README, H100 table)."""
    pts = sorted(HYBRIDEP_NETWORK_SCALE)
    x = np.log2(np.maximum(np.asarray(num_nodes, dtype=float), 1.0))
    y = np.interp(x, np.log2(pts), [HYBRIDEP_NETWORK_SCALE[p] for p in pts])
    return np.where(np.asarray(num_nodes, dtype=float) >= 2.0, y, 1.0)


def _tier_bandwidth(tiers: TierArrays, k: int, f):
    """Bandwidth a node-limited (DeepEP/HybridEP) dispatch gets on tier k: the tier's achieved bandwidth (its own
    kernels, not NCCL's all-to-all)."""
    return level_bandwidth(tiers, k, f)


def hierarchical_all_to_all_time_s(size_bytes, n, stride, tiers: TierArrays, hbm_bytes_per_s=None,
                                   memory_efficiency: float = 1.0, per_peer_latency: bool = False):
    """Hierarchical (2D) all-to-all: sum over levels of latency_k + (f_k - 1)/f_k x S / B_k, latency_k = alpha_k
    or (f_k - 1) x alpha_k per peer message, plus TUTEL_RELAYOUT_PASSES x 2S / (HBM x efficiency) of local
    copies when `hbm_bytes_per_s` is given.

    Source: DeepSpeed-MoE arXiv 2201.05596 sec. 5 (hierarchical all-to-all, O(p) -> O(G + p/G) hops);
    Tutel arXiv 2206.03382 sec. 3.3 (2DH all-to-all: intra-node then inter-node, with local re-layouts)."""
    levels = group_levels(n, stride, tiers)
    data = np.asarray(size_bytes, dtype=float)
    t = np.zeros(np.broadcast(data, np.asarray(n, dtype=float)).shape)
    for k, f in enumerate(levels):
        lat = (f - 1.0) * tiers.latency_s[k] if per_peer_latency else tiers.latency_s[k]
        tk = lat + (f - 1.0) / np.maximum(f, 1.0) * data / all_to_all_level_bandwidth(tiers, k, f)
        t = t + np.where(f > 1.0, tk, 0.0)
    if hbm_bytes_per_s is not None:
        two_level = np.zeros(t.shape, dtype=bool)
        for f in levels[1:]:
            two_level = two_level | (f > 1.0)
        copies = TUTEL_RELAYOUT_PASSES * 2.0 * data / (hbm_bytes_per_s * memory_efficiency)
        t = t + np.where(two_level, copies, 0.0)
    return t


def _log_comb(a, b):
    gammaln = special_ufunc("gammaln")   # scipy loads only where a node-limited dispatch is costed
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return gammaln(a + 1.0) - gammaln(b + 1.0) - gammaln(np.maximum(a - b, 0.0) + 1.0)


def expected_nodes_per_token(num_experts, num_nodes, top_k, max_nodes=None):
    """Expected number of distinct nodes a token's top_k experts live on (experts spread evenly over the nodes,
    chosen uniformly). Node-limited routing first picks M nodes, then the k experts among their M E/N experts:
    M x (1 - C(E_M - E/N, k) / C(E_M, k)) with E_M = M E / N; without a limit M = N.

    Source: DeepSeek-V3 report arXiv 2412.19437 sec. 2.1.2 / 3.2.2 (node-limited routing, M = 4 nodes per
    token); occupancy of k draws without replacement (hypergeometric: a node is missed with probability
    C(E_M - E/N, k)/C(E_M, k))."""
    E, N, k = (np.asarray(x, dtype=float) for x in (num_experts, num_nodes, top_k))
    M = N if max_nodes is None else np.minimum(N, np.asarray(max_nodes, dtype=float))
    per_node = E / N
    pool = M * per_node
    missed = np.where(pool - per_node >= k, np.exp(_log_comb(pool - per_node, k) - _log_comb(pool, k)), 0.0)
    return M * (1.0 - missed)


def node_limited_dispatch_time_s(tokens, hidden, bytes_per_element, top_k, num_experts, n, stride,
                                 tiers: TierArrays, max_nodes=None, max_over_mean=1.0, per_peer_latency=False,
                                 backend: str = "deepep"):
    """DeepEP-style dispatch of one rank's `tokens`: one network copy per destination node, NVLink forwarding.

    Network: T x h x bytes x E[remote nodes per token] over the slowest tier the group crosses, with (N - 1)
    peer messages; NVLink: the T x k expert copies, (G - 1)/G of them to another GPU of the node, over the
    fastest tier. The kernel pipelines both, so max(network, NVLink). Latency: one alpha per tier, or per peer
    message ((N - 1) network, (G - 1) NVLink) with `per_peer_latency`. The NVLink term moves the k copies, not one
    per distinct destination rank (which DeepEP and HybridEP send): the published NVLink-bound figures fit the k-copy
    volume (DeepEP EP16 on H800: 43 GB/s logical, this model 45.5, per-rank copies 56; HybridEP EP8 on B200: 536
    GB/s in its count, this model 496, per-rank copies 726). Remote nodes = expected_nodes_per_token
    x (N - 1)/N (the chosen nodes are uniform, the token's own node among them). `max_over_mean` scales the
    busiest rank's receive side. `backend` 'hybridep' runs the network term at hybridep_network_scale of the tier
    (DeepEP's kernels reach the tier: its H800 table is reproduced within 10%). Source: DeepSeek-V3 arXiv
    2412.19437 sec. 3.2.2 (IB to the same in-node index, then NVLink; up to 4 nodes x 3.2 experts per node at IB
    50 GB/s vs NVLink 160 GB/s); DeepEP README; HybridEP README (HYBRIDEP_NETWORK_SCALE)."""
    levels = group_levels(n, stride, tiers)
    G = levels[0]
    N = np.asarray(n, dtype=float) / G
    per_copy = float(hidden) * bytes_per_element
    T = np.asarray(tokens, dtype=float) * np.maximum(1.0, max_over_mean)
    remote = expected_nodes_per_token(num_experts, N, top_k, max_nodes) * (N - 1.0) / np.maximum(N, 1.0)
    slow = _slowest_crossed(levels)
    bw_net = np.choose(slow, [_tier_bandwidth(tiers, k, levels[k]) for k in range(tiers.num_tiers)])
    if backend == "hybridep":
        bw_net = bw_net * hybridep_network_scale(N)
    elif backend != "deepep":
        raise SpecError(f"node-limited dispatch backend '{backend}' is not one of deepep, hybridep")
    lat_net = np.choose(slow, list(tiers.latency_s))
    peers_net = (N - 1.0) if per_peer_latency else 1.0
    peers_nvl = (G - 1.0) if per_peer_latency else 1.0
    t_net = np.where(N > 1.0, peers_net * lat_net + T * per_copy * remote / bw_net, 0.0)
    t_nvl = np.where(G > 1.0, peers_nvl * tiers.latency_s[0]
                     + T * top_k * per_copy * (G - 1.0) / G / _tier_bandwidth(tiers, 0, G), 0.0)
    return np.maximum(t_net, t_nvl)


def _slowest_crossed(levels):
    """Index of the outermost tier a group fans out on (0 if it stays inside the fastest domain)."""
    idx = np.zeros(np.broadcast(*levels).shape, dtype=int)
    for k, f in enumerate(levels):
        idx = np.where(f > 1.0, k, idx)
    return idx


def dispatch_time_s(strategy: str, size_bytes, n, stride, tiers: TierArrays, per_peer_latency: bool = False, **kw):
    """One dispatch (or combine) all-to-all by strategy name: 'flat', 'hierarchical' or 'node-limited'
    (node-limited takes tokens/hidden/bytes_per_element/top_k/num_experts/max_nodes/max_over_mean in `kw`
    instead of size_bytes, which must then be None). Source: collectives.all_to_all_time_s and the functions
    above."""
    if strategy == "flat":
        return all_to_all_time_s(size_bytes, n, stride, tiers, per_peer_latency=per_peer_latency)
    if strategy == "hierarchical":
        return hierarchical_all_to_all_time_s(size_bytes, n, stride, tiers, per_peer_latency=per_peer_latency, **kw)
    if strategy in ("node-limited", "node_limited"):
        return node_limited_dispatch_time_s(n=n, stride=stride, tiers=tiers, per_peer_latency=per_peer_latency,
                                            **kw)
    raise SpecError(f"dispatch strategy '{strategy}' is not one of flat, hierarchical, node-limited")
