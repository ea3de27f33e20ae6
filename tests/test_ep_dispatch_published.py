"""Expert-parallel dispatch costs against published measurements and by hand (issue 15): DeepEP's normal-kernel
bandwidth table, the NCCL maintainers' all-to-all bus-bandwidth rule, and LSH-MoE eq. 6's server scaling."""
from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.specs.loading import load_hardware
from simulator.topology import moe_dispatch as md
from simulator.topology.collectives import all_to_all_time_s
from simulator.topology.placement import TierArrays, tier_arrays

#: DeepEP README (V1, docs/legacy.md "Normal kernels with NVLink and RDMA forwarding"): H800 (~160 GB/s NVLink),
#: one CX7 400 Gb/s NIC per GPU, 4096 tokens, hidden 7168, top-8 of 256 experts, top-4 groups, FP8 dispatch.
#: #EP -> published dispatch "bottleneck bandwidth" (GB/s).
DEEPEP_H800 = {16: 43.0, 32: 58.0, 64: 51.0}
#: FP8 dispatch bytes per hidden element as DeepEP's tests/test_internode.py counts them: hidden x 2 x (1 + 4/128)
#: / 2 (e4m3 values plus one fp32 scale per 128).
FP8_BYTES = 1.0 + 4.0 / 128.0


def _deepep_logical_bandwidth(ep: int, tiers) -> float:
    """DeepEP's printed RDMA bandwidth of our node-limited dispatch: num_rdma_token_sent (distinct (token, node)
    pairs, the token's own node included: tests/test_internode.py, rdma_idx / inplace_unique) x hidden x bytes over
    the dispatch time. The test routes to the top min(nodes, 4) groups (num_topk_groups), one group per node."""
    nodes = ep // 8
    groups = min(nodes, 4)
    t = float(md.node_limited_dispatch_time_s(4096, 7168, FP8_BYTES, 8, 256, ep, 1, tiers, groups))
    pairs = float(md.expected_nodes_per_token(256, nodes, 8, groups))
    return 4096 * pairs * 7168 * FP8_BYTES / t


def test_node_limited_dispatch_reproduces_deepeps_h800_table_within_ten_percent():
    tiers = tier_arrays(load_hardware("h800-sxm5-80gb"))
    # by hand, EP32 (4 nodes, the 4 groups = every node): distinct nodes per token 4 (1 - C(192,8)/C(256,8)) = 3.61,
    # 3/4 of them remote: network 8 us + 4096 x 7168 x 1.03125 x 2.71 / 45 GB/s = 1.832 ms; NVLink (8 copies, 7/8
    # forwarded, 160 GB/s) 1.327 ms: network-bound; logical 4096 x 3.61 x 7168 x 1.03125 / 1.832 ms = 59.7 GB/s
    nodes = 4 * (1 - math.comb(192, 8) / math.comb(256, 8))
    t_net = 8e-6 + 4096 * 7168 * FP8_BYTES * nodes * 0.75 / (50e9 * 0.9)
    t_nvl = 3e-6 + 4096 * 8 * 7168 * FP8_BYTES * 7 / 8 / (200e9 * 0.8)
    assert float(md.node_limited_dispatch_time_s(4096, 7168, FP8_BYTES, 8, 256, 32, 1, tiers, 4)) == \
        pytest.approx(max(t_net, t_nvl), rel=1e-9)
    for ep, published in DEEPEP_H800.items():
        got = _deepep_logical_bandwidth(ep, tiers) / 1e9
        assert got == pytest.approx(published, rel=0.10), (ep, got, published)
    # EP16 (2 nodes) is NVLink-bound on the H800 (160 GB/s), so its logical RDMA figure is the lowest; on the H100
    # (450 GB/s NVLink) the same dispatch is network-bound and twice as fast
    h100 = tier_arrays(load_hardware("h100-sxm5-80gb"))
    assert _deepep_logical_bandwidth(16, tiers) < _deepep_logical_bandwidth(32, tiers)
    assert _deepep_logical_bandwidth(16, h100) > 1.9 * _deepep_logical_bandwidth(16, tiers)


def test_flat_all_to_all_bus_bandwidth_is_nodes_over_nodes_minus_one_nic_bandwidths():
    # NCCL maintainer (NVIDIA/nccl-tests issue 130): with NVLink and one NIC per GPU the network part decides;
    # "On 2 nodes ... BusBW = 2x network bandwidth per GPU ... general formula is N/(N-1)x the bandwidth per GPU";
    # busbw = algbw x (n-1)/n (nccl-tests alltoall.cu), so exactly N/(N-1) x (n-1)/n x the per-GPU network
    # bandwidth (the rule rounds (n-1)/n to 1). H100 profile: 50 GB/s x 0.9 per GPU, 1 GiB per rank.
    tiers = tier_arrays(load_hardware("h100-sxm5-80gb"))
    size = float(2 ** 30)
    for nodes in (2, 4, 8):
        n = 8 * nodes
        t = float(all_to_all_time_s(size, n, 1, tiers))
        busbw = size / t * (n - 1) / n
        assert busbw == pytest.approx(nodes / (nodes - 1) * (n - 1) / n * 45e9, rel=0.01), nodes


def test_flat_all_to_all_grows_with_servers_as_lsh_moe_eq6_says():
    # LSH-MoE (arXiv 2411.08446) appendix A.2 eq. 7: T_a2a = 4 l (n k / w) h (w - 1) / B_inter, w servers: at a
    # fixed per-GPU volume and per-GPU share of the server's network the all-to-all grows as (w - 1)/w. Four GPUs
    # per server sharing 200 Gb/s (6.25 GB/s each), latency-free: 4 -> 8 servers x (7/8)/(3/4) = 7/6; 2 -> 4
    # servers of 8 GPUs x (3/4)/(1/2) = 3/2.
    def tiers(gpus):
        return TierArrays(np.array([float(gpus), np.inf]), np.array([200e9, 200 / 8 / gpus * 1e9]),
                          np.array([0.0, 0.0]), np.array([0, 0]), np.array([1.0, 1.0]))

    s = 2 * 2048 * 768 * 2.0          # top-2 copies of 2048 tokens, d 768, fp16
    t4 = all_to_all_time_s(s, 16, 1, tiers(4))
    t8 = all_to_all_time_s(s, 32, 1, tiers(4))
    assert t4 == pytest.approx(0.75 * s / 6.25e9)
    assert t8 / t4 == pytest.approx(7 / 6)
    assert all_to_all_time_s(s, 32, 1, tiers(8)) / all_to_all_time_s(s, 16, 1, tiers(8)) == pytest.approx(1.5)


#: HybridEP README (DeepEP hybrid-ep branch docs/README_Hybrid-EP.md), H100 table, 16 SMs (Megatron-Core's default
#: moe_hybridep_num_sms), torch API: ranks -> (BF16 dispatch, combine) "IB bandwidth" GB/s, 8 local experts per rank.
HYBRIDEP_H100_16SM = {16: (54.47, 53.35), 32: (47.36, 52.53), 64: (41.24, 46.57)}


def test_hybridep_network_scale_by_hand_and_between_its_points():
    # 2 nodes: mean(54.47, 53.35) x 1/2 = 26.955 GB/s of the 45 GB/s tier = 0.599; 4 nodes 49.945 x 3/4 / 45 =
    # 0.832; 8 nodes 43.905 x 7/8 / 45 = 0.854
    for ranks, (d, c) in HYBRIDEP_H100_16SM.items():
        nodes = ranks // 8
        assert md.HYBRIDEP_NETWORK_SCALE[nodes] == pytest.approx((d + c) / 2 * (nodes - 1) / nodes / 45.0, abs=6e-4)
    assert md.hybridep_network_scale(1) == 1.0
    assert md.hybridep_network_scale(2 ** 1.5) == pytest.approx((0.599 + 0.832) / 2)
    assert md.hybridep_network_scale(64) == pytest.approx(0.854)


def test_hybridep_dispatch_reproduces_its_h100_table_and_deepep_is_untouched():
    # the README's test: 4096 tokens, hidden 7168 BF16, top-8 of 8 x ranks experts, uniform routing, 8 GPUs a node;
    # its figure counts distinct (token, node) pairs, own node included
    tiers = tier_arrays(load_hardware("h100-sxm5-80gb"))
    for ranks, (d, c) in HYBRIDEP_H100_16SM.items():
        nodes, experts = ranks // 8, 8 * ranks
        pairs = float(md.expected_nodes_per_token(experts, nodes, 8))
        t = float(md.node_limited_dispatch_time_s(4096, 7168, 2.0, 8, experts, ranks, 1, tiers, backend="hybridep"))
        assert 4096 * pairs * 7168 * 2.0 / t / 1e9 == pytest.approx((d + c) / 2, rel=0.02), ranks
        deep = float(md.node_limited_dispatch_time_s(4096, 7168, 2.0, 8, experts, ranks, 1, tiers))
        assert deep < t
    # inside one node (NVLink only) the backend changes nothing
    one = dict(tokens=4096, hidden=7168, bytes_per_element=2.0, top_k=8, num_experts=64, n=8, stride=1, tiers=tiers)
    assert md.node_limited_dispatch_time_s(**one, backend="hybridep") == md.node_limited_dispatch_time_s(**one)
    with pytest.raises(Exception, match="backend 'nccl'"):
        md.node_limited_dispatch_time_s(**dict(one, n=16), backend="nccl")


def test_notes_naming_hybridep_select_its_backend():
    from simulator.validation.rows import flex_backend_override, row_framework
    fw = row_framework({"framework": "megatron-bridge", "year": 2026})
    assert fw.moe.flex_backend == "deepep"
    got, why = flex_backend_override(fw, "EP16 over two nodes with the HybridEP flex token dispatcher")
    assert got.moe.flex_backend == "hybridep" and why[0][:2] == ("moe_flex_backend", "hybridep")
    assert flex_backend_override(fw, "DeepEP (flex token dispatcher)") == (fw, ())


def _moe_scenario(backend: str, devices: int, ep: int):
    from simulator.specs.model import ModelSpec
    from simulator.specs.scenario import Scenario
    from simulator.specs.stack import as_framework
    fw = as_framework("megatron-bridge")
    fw = fw.model_copy(update={"moe": fw.moe.model_copy(update={"flex_backend": backend})})
    model = ModelSpec(name="moe-test", source="test", num_layers=4, hidden_size=1024, num_heads=8,
                      ffn_hidden_size=4096, vocab_size=32000, max_seq_len=4096,
                      moe=dict(num_experts=64, top_k=4, expert_ffn_hidden_size=512))
    return Scenario.build(model, "h100-sxm5-80gb", devices, global_batch=devices, seq_len=4096, framework=fw,
                          tp=1, pp=1, ep=ep, micro_batch=1, recompute="none", zero=1, moe_dispatch="node-limited")


def test_hybridep_routing_map_gather_is_charged_once_per_forward_by_hand():
    # one node, EP8: the custom all-gather of 4096 tokens x 64 experts x 1 byte from each of 8 ranks (2.097 MB
    # gathered): 7/8 x 2.097 MB over NVLink (450 GB/s x 0.77) + one 5.7 us latency + the 24.3 us call; charged in
    # each MoE layer's forward (4 layers, 1 micro-batch), nowhere else; the dispatch itself is unchanged inside a node
    from simulator.analytic.estimate import estimate
    tiers = tier_arrays(load_hardware("h100-sxm5-80gb"))
    nbytes = 4096 * 64 * 1.0 * 8
    gather = float(all_to_all_time_s(nbytes, 8, 1, tiers))
    assert gather == pytest.approx(7 / 8 * nbytes / (450e9 * 0.77) + 5.7e-6 + 24.3e-6, rel=1e-6)
    deep = estimate(_moe_scenario("deepep", 8, 8)).time_breakdown_s["ep_comm"]
    hyb = estimate(_moe_scenario("hybridep", 8, 8)).time_breakdown_s["ep_comm"]
    assert hyb - deep == pytest.approx(4 * gather, rel=1e-6)
