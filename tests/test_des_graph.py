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


# --- ClusterPorts: the graph's ports by arithmetic (what the replay uses; issue #13) -----------------------------

@pytest.mark.parametrize("name,num_devices", [("a100-sxm4-80gb", 16), ("mi250x", 24), ("gb200-nvl72", 144),
                                              ("tpu-v4", 8192), ("a100-sxm4-80gb", 12288)])
def test_arithmetic_ports_are_the_ports_of_the_networkx_graph(name, num_devices):
    from simulator.topology.graph import cluster_ports
    hw = load_hardware(name)
    devices = sorted({0, 1, num_devices // 3, num_devices // 2 + 7, num_devices - 1} |
                     set(range(0, num_devices, max(1, num_devices // 40))))
    g = cluster_graph(hw, num_devices, devices=devices)
    arithmetic = cluster_ports(hw, num_devices)
    for d in devices:
        assert ports(arithmetic, d) == ports(g, d)


def test_arithmetic_ports_refuse_a_device_outside_the_cluster():
    from simulator.topology.graph import cluster_ports
    with pytest.raises(ValueError, match="outside"):
        ports(cluster_ports(HW, 8), 8)
    with pytest.raises(ValueError, match="num_devices"):
        cluster_ports(HW, 0)


@pytest.mark.parametrize("pp,dp,stragglers", [(8, 2, None), (4, 4, (0.2, 2.0))])
def test_a_replay_on_the_arithmetic_ports_equals_one_on_the_networkx_graph(pp, dp, stragglers):
    """Same step, breakdown, contention delays and timeline whether the engine's ports come from the graph of the
    representative devices (as before issue #13) or from ClusterPorts (as des.simulate now replays)."""
    from dataclasses import replace

    import numpy as np

    from simulator.des.engine import simulate_spec
    from simulator.des.simulate import simulate
    from simulator.des.stragglers import Stragglers, representative_devices, straggler_groups
    from simulator.specs.scenario import Scenario
    from simulator.topology.graph import cluster_ports

    n = 8 * pp * dp
    sc = Scenario.build("llama2-13b", "a100-sxm4-80gb", devices=n, global_batch=8 * dp, seq_len=2048, tp=8, pp=pp,
                        micro_batch=1)
    strag = Stragglers(*stragglers) if stragglers else None
    res = simulate(sc, stragglers=strag, seed=3)

    def replay(ports_of):
        # as des.simulate._replay does: the straggler groups first, then the replay, from one seeded generator
        rng = np.random.default_rng(3)
        groups = straggler_groups(rng, n, pp, dp, strag)
        devices = representative_devices(pp, 8 * dp, 8, [g[0] for g in groups])   # tp-cp-ep-dp-pp: dp stride tp
        spec = replace(res.replay.plan.spec, slowdown=tuple(g[1] for g in groups), devices=devices,
                       graph=ports_of(devices), group_labels=tuple(g[2] for g in groups))
        return simulate_spec(spec, rng)

    on_graph = replay(lambda devs: cluster_graph(sc.hardware, n, devices=sorted({d for g in devs for d in g})))
    on_ports = replay(lambda devs: cluster_ports(sc.hardware, n))
    assert len(on_ports.timeline.group_labels) == (1 if strag is None else 3)     # stragglers: 3 replica groups
    assert on_graph.step_time_s == on_ports.step_time_s == res.replay.engine.step_time_s
    assert on_graph.breakdown_s == on_ports.breakdown_s
    assert on_graph.contention_delay_s == on_ports.contention_delay_s
    assert on_graph.timeline == on_ports.timeline == res.replay.engine.timeline
    assert on_graph.num_events == on_ports.num_events
