"""Collective costs on hand-worked cases (toy tiers: 4 devices at 100 GB/s, then 10 GB/s, no latency)."""
import numpy as np
import pytest

from simulator.topology.collectives import (all_gather_time_s, all_reduce_time_s, all_to_all_time_s, p2p_time_s,
                                            reduce_scatter_time_s)
from simulator.topology.placement import axis_strides, group_levels, members_per_domain, tier_arrays

from .conftest import toy_hardware

GB = 1e9


@pytest.fixture
def tiers():
    return tier_arrays(toy_hardware())


def test_ring_all_reduce_inside_a_node(tiers):
    """4 ranks on the fast tier: 2 (n-1)/n S / B = 2 * 3/4 * 1 GB / 100 GB/s = 15 ms."""
    assert float(all_reduce_time_s(1 * GB, 4, 1, tiers)) == pytest.approx(0.015)


def test_reduce_scatter_and_all_gather_are_half_an_all_reduce(tiers):
    rs = float(reduce_scatter_time_s(GB, 4, 1, tiers))
    ag = float(all_gather_time_s(GB, 4, 1, tiers))
    assert rs == pytest.approx(0.0075) and ag == pytest.approx(rs)
    assert float(all_reduce_time_s(GB, 4, 1, tiers)) == pytest.approx(rs + ag)


def test_hierarchical_all_reduce_across_nodes(tiers):
    """8 ranks, stride 1: 4 per node then 2 nodes. Level 1: 2 * 3/4 * 1 GB / 100 GB/s = 15 ms;
    level 2 on a quarter of the data: 2 * 1/2 * 0.25 GB / 10 GB/s = 25 ms. Total 40 ms."""
    assert float(all_reduce_time_s(GB, 8, 1, tiers)) == pytest.approx(0.040)


def test_group_with_one_member_per_node_uses_the_slow_tier_only(tiers):
    """8 ranks strided by 4 (one per node): 2 * 7/8 * 1 GB / 10 GB/s = 175 ms."""
    assert float(all_reduce_time_s(GB, 8, 4, tiers)) == pytest.approx(0.175)


def test_group_levels_multiply_to_group_size(tiers):
    for n, stride in [(8, 1), (8, 2), (16, 4), (2, 1), (3, 1)]:
        levels = group_levels(n, stride, tiers)
        assert float(np.prod(levels)) == pytest.approx(n)


def test_members_per_domain():
    assert float(members_per_domain(8, 2, 4)) == 2
    assert float(members_per_domain(8, 8, 4)) == 1
    assert float(members_per_domain(2, 1, np.inf)) == 2


def test_all_to_all_splits_traffic_by_tier(tiers):
    """8 ranks, 4 per node, each sends 1 GB (1/8 to each peer): 3/8 GB on the fast tier (3.75 ms) and
    4/8 GB across nodes (50 ms) concurrently: 50 ms."""
    assert float(all_to_all_time_s(GB, 8, 1, tiers)) == pytest.approx(0.050)
    # inside one node: 3/4 GB / 100 GB/s
    assert float(all_to_all_time_s(GB, 4, 1, tiers)) == pytest.approx(0.0075)


def test_p2p_uses_the_tier_that_holds_both(tiers):
    assert float(p2p_time_s(GB, 1, tiers)) == pytest.approx(0.01)
    assert float(p2p_time_s(GB, 4, tiers)) == pytest.approx(0.1)


def test_latency_counts_ring_steps():
    hw = toy_hardware()
    data = hw.model_dump()
    data["tiers"][0]["latency_us"] = 10.0
    from simulator.specs.hardware import HardwareProfile
    t = tier_arrays(HardwareProfile.model_validate(data))
    # 4-rank all-reduce of 0 bytes: 2 (n-1) steps x 10 us
    assert float(all_reduce_time_s(0.0, 4, 1, t)) == pytest.approx(60e-6)


def test_megatron_order_puts_tp_innermost_and_pp_outermost():
    st = axis_strides("tp-cp-ep-dp-pp", tp=8, cp=2, ep=4, dp=16, pp=4)
    assert st["tp"] == 1 and st["cp"] == 8 and st["dp"] == 16 and st["ep"] == 16
    assert st["edp"] == 64 and st["pp"] == 256


def test_torus_group_spanning_more_dimensions_gets_more_links():
    hw = toy_hardware().model_dump()
    hw["tiers"] = [{"name": "ici", "domain_size": 64, "bandwidth_gb_per_s": 60.0, "latency_us": 0.0,
                    "efficiency": 1.0, "topology": "torus3d", "torus_dims": [4, 4, 4], "source": "t"},
                   {"name": "dcn", "bandwidth_gb_per_s": 5.0, "latency_us": 0.0, "efficiency": 1.0, "source": "t"}]
    from simulator.specs.hardware import HardwareProfile
    t = tier_arrays(HardwareProfile.model_validate(hw))
    # a ring of 4 along one dimension uses 2 of 6 ports: 20 GB/s; 2 * 3/4 * 1 GB / 20 GB/s = 75 ms
    assert float(all_reduce_time_s(GB, 4, 1, t)) == pytest.approx(0.075)
    # 64 chips over 3 dimensions use all 6 ports: 2 * 63/64 * 1 GB / 60 GB/s
    assert float(all_reduce_time_s(GB, 64, 1, t)) == pytest.approx(2 * 63 / 64 / 60)


def _latency_tiers(fast_us=10.0, slow_us=100.0):
    from simulator.specs.hardware import HardwareProfile
    data = toy_hardware().model_dump()
    data["tiers"][0]["latency_us"] = fast_us
    data["tiers"][1]["latency_us"] = slow_us
    return tier_arrays(HardwareProfile.model_validate(data))


def test_flat_ring_latency_repeats_the_inner_steps_on_every_node():
    """NCCL's ring is one ring through all ranks: 16 ranks on 4 nodes of 4 take 15 steps, 3 of them across
    nodes: (16 - 4) x 10 us + 3 x 100 us = 420 us per reduce-scatter/all-gather (a hierarchical count would
    give 3 x 10 + 3 x 100 = 330 us)."""
    t = _latency_tiers()
    assert float(all_gather_time_s(0.0, 16, 1, t)) == pytest.approx(420e-6)
    assert float(reduce_scatter_time_s(0.0, 16, 1, t)) == pytest.approx(420e-6)


def test_all_reduce_takes_the_tree_latency_when_smaller():
    """64 ranks on 16 nodes: ring 2 x ((64 - 16) x 10 + 15 x 100) us = 3.96 ms; NCCL's tree
    2 x ((4 - 1) x 10 + log2(16) x 100) us = 0.86 ms, which the all-reduce pays. Inside one node both are
    2 (n-1) alpha."""
    t = _latency_tiers()
    assert float(all_reduce_time_s(0.0, 64, 1, t)) == pytest.approx(860e-6)
    assert float(all_reduce_time_s(0.0, 4, 1, t)) == pytest.approx(60e-6)


def test_2d_torus_sub_slices_have_no_wraparound():
    """A 2D TPU torus (16 x 16): a collective over the whole torus uses every port, one over a full axis (16) half
    of them, and a near-square sub-slice without wraparound (4x8, 8x8) half: MaxText's Trillium table (5100 for 1D
    with wraparound or 2D without, 2550 for 2D with wraparound on both, v6e-256); an 8x16 slice 3/4; two chips
    share one link, a quarter."""
    from simulator.topology.collectives import _torus2d_share
    shares = [float(_torus2d_share(16, f)) for f in (2, 16, 32, 64, 128, 256)]
    assert shares == [0.25, 0.5, 0.5, 0.5, 0.75, 1.0]
