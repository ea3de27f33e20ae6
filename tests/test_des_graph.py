"""The networkx cluster graph the discrete-event engine builds its shared ports from."""
from __future__ import annotations

import pytest

from simulator.specs.loading import load_hardware
from simulator.topology.graph import cluster_graph, common_tier, group_tier_shares, ports
from simulator.topology.placement import tier_arrays

HW = load_hardware("a100-sxm4-80gb")     # 8-GPU NVSwitch nodes, then one InfiniBand fabric


def test_sixteen_devices_hang_off_two_node_switches_and_one_fabric():
    g = cluster_graph(HW, 16)
    kinds = [d["kind"] for _, d in g.nodes(data=True)]
    assert kinds.count("device") == 16 and kinds.count("switch") == 3
    assert g.number_of_edges() == 32                          # one port per device per tier
    assert [sw for _, _, sw in ports(g, 9)] == [("switch", 0, 1), ("switch", 1, 0)]
    port = g.edges[("device", 9), ("switch", 0, 1)]
    assert port["bandwidth_bytes_per_s"] == pytest.approx(300e9 * 0.78)


def test_transfers_use_the_fastest_tier_both_ends_share():
    g = cluster_graph(HW, 16)
    assert common_tier(g, 0, 7) == 0 and common_tier(g, 0, 8) == 1 and common_tier(g, 3, 3) == 0


def test_a_subset_graph_holds_only_the_named_devices_and_their_switches():
    g = cluster_graph(HW, 12288, devices=[0, 1536, 12287])
    assert sorted(n for n in g if n[0] == "device") == [("device", 0), ("device", 1536), ("device", 12287)]
    assert sorted(n for n in g if n[0] == "switch") == [("switch", 0, 0), ("switch", 0, 192), ("switch", 0, 1535),
                                                         ("switch", 1, 0)]
    with pytest.raises(ValueError, match="outside"):
        cluster_graph(HW, 8, devices=[8])


@pytest.mark.parametrize("n,stride,tiers", [(8, 1, (0,)), (192, 8, (1,)), (16, 1, (0, 1)), (1, 8, ())])
def test_group_shares_name_the_tiers_a_collective_crosses_and_sum_to_one(n, stride, tiers):
    shares = group_tier_shares(n, stride, tier_arrays(HW))
    assert tuple(k for k, _ in shares) == tiers
    if shares:
        assert sum(w for _, w in shares) == pytest.approx(1.0)


def test_hierarchical_shares_follow_the_level_sizes():
    # 16 ranks, 8 per node: NVLink level moves 7/8 of S at 300 GB/s x its efficiency, IB level 1/2 of S/8 at
    # 25 GB/s x its (fitted) efficiency
    eff_nv, eff_ib = HW.tiers[0].efficiency, HW.tiers[-1].efficiency
    nv, ib = 7 / 8 / (300e9 * eff_nv), 1 / 2 / 8 / (25e9 * eff_ib)
    shares = dict(group_tier_shares(16, 1, tier_arrays(HW)))
    assert shares[0] == pytest.approx(nv / (nv + ib)) and shares[1] == pytest.approx(ib / (nv + ib))
