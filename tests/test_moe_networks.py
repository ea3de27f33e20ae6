"""MoE and network physics (issue 15, phase 1): routing imbalance, dispatch strategies, compression and local
SGD, DualPipe / ZB-V schedules, heterogeneous and shared networks. Numbers derived by hand in the comments or
taken from the cited figures."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from simulator.costs import compression as cmp
from simulator.costs import moe_routing as mr
from simulator.des.schedules import check_schedule, max_in_flight
from simulator.pipeline.two_chunk import (bubble_s, dualpipe, dualpipe_groups, dualpipe_position, makespan_s,
                                           overlapped_forward_backward_s, timeline, zb_v, zb_v_position)
from simulator.errors import SpecError
from simulator.specs.network import HeterogeneousCluster
from simulator.specs.routing import RoutingSpec
from simulator.topology import moe_dispatch as md
from simulator.topology.collectives import all_reduce_time_s, all_to_all_time_s
from simulator.topology.placement import TierArrays
from simulator.topology.shared_network import (effective_bandwidth_bytes_per_s, link_time_s, pipeline_hop_times_s,
                                               tiers_with_background)

ROOT = Path(__file__).resolve().parents[1]


def two_tier(bw0=100e9, lat0=2e-6, bw1=10e9, lat1=10e-6, node=8.0):
    """8-GPU nodes at 100 GB/s / 2 us, a switched network at 10 GB/s / 10 us per GPU."""
    return TierArrays(np.array([node, np.inf]), np.array([bw0, bw1]), np.array([lat0, lat1]),
                      np.array([0, 0]), np.array([1.0, 1.0]))


# ---- routing imbalance -----------------------------------------------------------------------------------------

def test_expected_max_of_normals_matches_the_exact_small_cases():
    # E[max of 2] = 1/sqrt(pi), E[max of 3] = 3/(2 sqrt(pi)) (David & Nagaraja sec. 3.2)
    e = mr.expected_max_std_normal([1, 2, 3])
    assert e == pytest.approx([0.0, 1 / math.sqrt(math.pi), 1.5 / math.sqrt(math.pi)], abs=1e-6)


def test_balanced_imbalance_of_two_ranks_by_hand():
    # E=8 experts on ep=2 ranks, T=1000 tokens per rank, top-1: 2000 tokens, rank load hypergeometric-sum with
    # variance 2000 * 1/2 * 1/2 * 7/7 = 500 around 1000: cv = sqrt(500)/1000 = 0.0223607; the two loads are
    # mirror images, so E[max] - mean = sd * sqrt(2/pi) -> 1 + 0.0223607 * 0.7978846 = 1.0178412
    assert mr.balanced_max_over_mean(8, 2, 1000, 1) == pytest.approx(1.0178412, abs=1e-6)
    assert mr.balanced_max_over_mean(8, 1, 1000, 1) == pytest.approx(1.0)


def test_seeded_sampler_agrees_with_the_closed_form_for_balanced_routing():
    rng = np.random.default_rng(7)
    s = mr.sampled_max_over_mean(64, 32, 2048, 2, "zipf", 0.0, rng, 2000)
    sem = s.std() / math.sqrt(len(s))
    assert abs(s.mean() - mr.balanced_max_over_mean(64, 32, 2048, 2)) < 4 * sem


def test_zipf_imbalance_of_two_ranks_by_hand():
    # popularity 1, 1/2, 1/3, 1/4 -> 12/25, 6/25, 4/25, 3/25; sorted contiguous placement puts 18/25 on rank 0:
    # max/mean = (18/25)/(1/2) = 36/25. Random placement: pairings {01|23}, {02|13}, {03|12} equally likely,
    # max shares 18/25, 16/25, 15/25 -> expected max/mean = 2 * 49/75 = 98/75 = 1.30667 (many tokens)
    pop = mr.expert_popularity(4, "zipf", 1.0)
    assert pop == pytest.approx([12 / 25, 6 / 25, 4 / 25, 3 / 25])
    assert mr.rank_shares(pop, 2).max() * 2 == pytest.approx(36 / 25)
    s = mr.sampled_max_over_mean(4, 2, 1_000_000, 1, "zipf", 1.0, np.random.default_rng(0), 3000)
    assert s.mean() == pytest.approx(98 / 75, rel=0.01)


def test_top_k_inclusion_is_water_filled_below_one():
    # shares 0.5 0.3 0.1 0.1, top-2: 2 x 0.5 = 1 caps the first expert; the other 1.0 of the budget spreads
    # over 0.5 of popularity: x2 -> 0.6 0.2 0.2
    assert mr.inclusion_probability([0.5, 0.3, 0.1, 0.1], 2) == pytest.approx([1.0, 0.6, 0.2, 0.2])


def test_routing_spec_resolution_and_errors():
    assert mr.max_over_mean(RoutingSpec(max_over_mean=2.5), 64, 32, 2048, 2) == 2.5
    assert mr.max_over_mean(RoutingSpec(), 8, 2, 1000, 1) == pytest.approx(1.0178412, abs=1e-6)
    with pytest.raises(ValidationError, match="concentration"):
        RoutingSpec(model="dirichlet", skew=0.0)
    with pytest.raises(ValidationError, match="extra"):
        RoutingSpec(skw=1.0)
    # more skew, more imbalance (an invariant of the routing model)
    vals = [mr.max_over_mean(RoutingSpec(model="zipf", skew=s), 64, 16, 4096, 2) for s in (0.0, 0.5, 1.0, 1.5)]
    assert vals == sorted(vals) and vals[0] < 1.05 < vals[-1]


def test_capacity_follows_deepspeed():
    # DeepSpeed _capacity: ceil(T/E * cf * k), floored at min_capacity
    assert mr.expert_capacity_tokens(4096, 2, 64, 1.0) == 128
    assert mr.expert_capacity_tokens(4096, 2, 64, 1.25) == 160
    assert mr.expert_capacity_tokens(16, 1, 64, 1.0, min_capacity=4) == 4


def test_dropped_fraction_at_capacity_equal_to_the_mean_by_hand():
    # 64 equally popular experts, top-1, 6400 tokens: each expert gets Binomial(6400, 1/64): mean 100,
    # sd sqrt(100 * 63/64) = 9.92157; capacity 100 -> z = 0, overflow sd * phi(0) = 3.95817 per expert;
    # dropped = 64 * 3.95817 / 6400 = 0.0395817
    share = np.full(64, 1 / 64)
    cap = mr.expert_capacity_tokens(6400, 1, 64, 1.0)
    assert mr.dropped_fraction(share, 6400, 1, cap) == pytest.approx(0.0395817, rel=1e-5)
    # a generous capacity drops (almost) nothing
    assert mr.dropped_fraction(share, 6400, 1, mr.expert_capacity_tokens(6400, 1, 64, 2.0)) < 1e-12


def test_busiest_rank_tokens_and_bytes():
    # dropless: 1.5 x 1000 tokens x top-2 = 3000 GEMM rows; padded to capacity: 64 experts x 40 = 2560 rows
    assert mr.busiest_rank_gemm_tokens(1000, 2, 1.5) == pytest.approx(3000)
    assert mr.busiest_rank_gemm_tokens(1000, 2, 1.5, num_experts=64, capacity=40) == pytest.approx(2560)
    assert mr.busiest_rank_gemm_tokens(1000, 2, 1.5, 64, 40, pad_to_capacity=False) == pytest.approx(2560)
    # all-to-all: the larger of send (T k) and receive (mom T k): 2 x 1000 x 2 x 1024 x 2 B = 8.192 MB
    assert mr.busiest_rank_dispatch_bytes(1000, 2, 1024, 2, 2.0) == pytest.approx(8.192e6)
    assert mr.busiest_rank_dispatch_bytes(1000, 2, 1024, 2, 0.8) == pytest.approx(4.096e6)
    assert mr.busiest_rank_dispatch_bytes(1000, 2, 1024, 2, 2.0, num_experts=64, capacity=40) == \
        pytest.approx(64 * 40 * 2048)


def test_layer_step_sampler_is_seeded_and_keeps_layers_apart():
    spec = RoutingSpec(model="dirichlet", skew=0.5)
    a = mr.sample_layer_step_imbalance(spec, np.random.default_rng(3), 5, 4, 64, 16, 4096, 2)
    b = mr.sample_layer_step_imbalance(spec, np.random.default_rng(3), 5, 4, 64, 16, 4096, 2)
    assert a.shape == (5, 4) and np.array_equal(a, b) and (a >= 1.0).all()
    # a layer keeps its popularity over the steps: the spread across layers exceeds the spread across steps
    assert a.mean(axis=0).std() > a.std(axis=0).mean()
    const = mr.sample_layer_step_imbalance(RoutingSpec(max_over_mean=1.7), None, 3, 2, 64, 16, 4096, 2)
    assert (const == 1.7).all()


# ---- dispatch strategies ---------------------------------------------------------------------------------------

def test_flat_and_hierarchical_all_to_all_by_hand_on_two_nodes():
    t = two_tier()
    pp_ = dict(per_peer_latency=True)
    # flat, 16 GPUs, 16 MB per rank, per-peer latency: NVLink 7 x 2 us + 7/16 x 16e6 / 100e9 = 84 us; network
    # 8 x 10 us + 8/16 x 16e6 / 10e9 = 880 us; concurrent -> 880 us
    assert all_to_all_time_s(16e6, 16, 1, t, **pp_) == pytest.approx(880e-6)
    # one alpha per tier (the default, collectives' historical model): 10 us + 800 us = 810 us
    assert all_to_all_time_s(16e6, 16, 1, t) == pytest.approx(810e-6)
    # hierarchical: 7 x 2 us + 7/8 x 16e6/100e9 = 154 us, then 1 x 10 us + 1/2 x 16e6/10e9 = 810 us: 964 us
    assert md.hierarchical_all_to_all_time_s(16e6, 16, 1, t, **pp_) == pytest.approx(964e-6)
    # per tier: 2 us + 140 us, then 10 us + 800 us = 952 us
    assert md.hierarchical_all_to_all_time_s(16e6, 16, 1, t) == pytest.approx(952e-6)
    # Tutel's two local re-layouts: 2 x (read + write 16 MB) at 1 TB/s = 64 us more; none inside one node
    assert md.hierarchical_all_to_all_time_s(16e6, 16, 1, t, hbm_bytes_per_s=1e12, **pp_) == \
        pytest.approx(1028e-6)
    assert md.hierarchical_all_to_all_time_s(16e6, 8, 1, t, hbm_bytes_per_s=1e12, **pp_) == pytest.approx(154e-6)
    # inside one node both are the same all-to-all, under either latency model
    for kw in ({}, pp_):
        assert all_to_all_time_s(16e6, 8, 1, t, **kw) == \
            pytest.approx(md.hierarchical_all_to_all_time_s(16e6, 8, 1, t, **kw))
    assert md.dispatch_time_s("flat", 16e6, 16, 1, t) == pytest.approx(810e-6)


def test_two_dimensional_all_to_all_wins_at_2048_gpus_for_small_messages_as_tutel_reports():
    # Tutel (arXiv 2206.03382, sec. 3.3; "up to 20.7x at 2,048 GPUs"): 256 nodes of 8 GPUs, 1 MB per GPU,
    # per-peer latency.
    # flat: 2040 network peers x 10 us + 2040/2048 x 1e6 / 10e9 = 20.4996 ms
    # 2DH: 7 x 2 us + 7/8 x 1e6/100e9 = 22.75 us, then 255 x 10 us + 255/256 x 1e6/10e9 = 2.64961 ms
    t = two_tier()
    flat = all_to_all_time_s(1e6, 2048, 1, t, per_peer_latency=True)
    hier = md.hierarchical_all_to_all_time_s(1e6, 2048, 1, t, per_peer_latency=True)
    assert flat == pytest.approx(20.4996e-3, rel=1e-4)
    assert hier == pytest.approx(22.75e-6 + 2.649609e-3, rel=1e-4)
    assert flat / hier > 5.0
    # ... and gains nothing for large messages on two nodes (it moves the NVLink data twice)
    assert all_to_all_time_s(1e9, 16, 1, t, per_peer_latency=True) <= \
        md.hierarchical_all_to_all_time_s(1e9, 16, 1, t, per_peer_latency=True)
    # with one alpha per tier the message count costs nothing, and the flat exchange is never slower
    assert all_to_all_time_s(1e6, 2048, 1, t) <= md.hierarchical_all_to_all_time_s(1e6, 2048, 1, t)


def test_expected_nodes_per_token_by_hand():
    # 4 experts on 2 nodes, top-2: a node is missed with probability C(2,2)/C(4,2) = 1/6 -> 2 x 5/6 = 5/3
    assert md.expected_nodes_per_token(4, 2, 2) == pytest.approx(5 / 3)
    assert md.expected_nodes_per_token(256, 8, 1) == pytest.approx(1.0)
    # DeepSeek-V3 (256 experts, 8 nodes of 32, top-8, at most 4 nodes): 4 x (1 - C(96,8)/C(128,8))
    want = 4 * (1 - math.comb(96, 8) / math.comb(128, 8))
    assert md.expected_nodes_per_token(256, 8, 8, max_nodes=4) == pytest.approx(want)
    assert md.expected_nodes_per_token(256, 8, 8, max_nodes=4) < md.expected_nodes_per_token(256, 8, 8)


def test_node_limited_dispatch_sends_one_copy_per_node():
    # 16 GPUs (2 nodes), 1000 tokens of 1000 bytes, top-2 of 16 experts: distinct nodes 2 x (1 - 28/120) =
    # 1.53333, remote 0.76667 per token: network 10 us + 1e6 x 0.76667 / 10e9 = 86.667 us; NVLink
    # 7 x 2 us + 2e6 x 7/8 / 100e9 = 31.5 us -> 86.667 us (per-peer latency, one network peer).
    # Flat on the same 2 MB: 8 x 10 us + 1 MB / 10 GB/s = 180 us
    t = two_tier()
    nl = md.node_limited_dispatch_time_s(1000, 1000, 1, 2, 16, 16, 1, t, per_peer_latency=True)
    assert nl == pytest.approx(86.6667e-6, rel=1e-5)
    assert all_to_all_time_s(2e6, 16, 1, t, per_peer_latency=True) == pytest.approx(180e-6)
    assert md.dispatch_time_s("node-limited", None, 16, 1, t, per_peer_latency=True, tokens=1000, hidden=1000,
                              bytes_per_element=1, top_k=2, num_experts=16) == pytest.approx(nl)
    with pytest.raises(SpecError, match="strategy 'ring'"):
        md.dispatch_time_s("ring", 1e6, 16, 1, t)


# ---- compression and local SGD ---------------------------------------------------------------------------------

def test_one_bit_volume_ratios_of_the_blog():
    # 16x in the compression stage, 1 / (0.15 + 0.85/16) = 4.92 ("5x") with 15% warm-up
    assert cmp.onebit_volume_ratio(0.0) == pytest.approx(16.0)
    assert cmp.onebit_volume_ratio(0.15) == pytest.approx(4.923, abs=1e-3)
    # per rank bytes: 2 x 3/4 x 16e6/8 = 3e6 (+ 2 x 3 x 4 B of scales) vs the fp16 ring's 2 x 3/4 x 32e6 = 48e6
    assert cmp.onebit_compressed_bytes(16e6, 4) == pytest.approx(3e6 + 24)


def test_one_bit_allreduce_time_is_a_sixteenth_of_fp16_on_one_switch():
    t = TierArrays(np.array([np.inf]), np.array([10e9]), np.array([0.0]), np.array([0]), np.array([1.0]))
    n_el = 80e6
    fp16 = cmp.data_parallel_sync_time_s(n_el, 2, 4, 1, t)          # 2 x 3/4 x 160e6 / 10e9 = 24 ms
    assert fp16 == pytest.approx(24e-3)
    onebit = cmp.onebit_allreduce_time_s(n_el, 4, 1, t)             # 2 x 3/4 x (10e6 + 16) / 10e9 = 1.5 ms
    assert onebit == pytest.approx(1.5e-3, rel=1e-5)
    # compression passes: 32 B per element over 1 TB/s x 0.8 for 1e9 elements = 40 ms
    assert cmp.onebit_compress_time_s(1e9, 1e12, 0.8) == pytest.approx(0.04)
    assert cmp.onebit_mean_sync_time_s(1.0, 0.1, 0.02, 0.25) == pytest.approx(0.25 + 0.75 * 0.12)


def test_local_sgd_exposes_only_what_the_inner_steps_cannot_hide():
    # outer all-reduce 1 s, inner step 50 ms: tau 12 hides 0.6 s -> (1 - 0.6)/12 per step; tau 48 hides all
    assert cmp.local_sgd_exposed_per_step_s(1.0, 12, 0.05) == pytest.approx(0.4 / 12)
    assert cmp.local_sgd_exposed_per_step_s(1.0, 48, 0.05) == 0.0
    assert cmp.local_sgd_exposed_per_step_s(1.0, 12, 0.05, overlap=False) == pytest.approx(1 / 12)
    assert cmp.local_sgd_bytes_per_step(6e9, 12) == pytest.approx(0.5e9)


# ---- DualPipe and ZB-V -----------------------------------------------------------------------------------------

#: DeepSeek-V3 report Fig. 5 / DualPipe README figure (8 ranks, 20 micro-batches), one character per time slot
#: (F forward, B backward (input, or a full backward's two slots), W weight gradient, . idle), transcribed
#: from the published image (images/dualpipe.png in github.com/deepseek-ai/DualPipe).
DUALPIPE_FIGURE = (
    "FFFFFFFFBWFBWFBWFFBB...FBBFBBFBBFBBFBB.BBFBB.BBFBB.BBFBBBBBWBWBWBW",
    ".FFFFFFFFBWFBWFFBB..FBBFBBFBBFBBFBBFBBFBB.BBFBB.BBFBB.BBBBBBWBWBWW",
    "..FFFFFFFFBWFFBB.FBBFBBFBBFBBFBBFBBFBBFBBFBB.BBFBB.BB.BBBBBBBWBWWW",
    "...FFFFFFFFFBBFBBFBBFBBFBBFBBFBBFBBFBBFBBFBBFBB.BB.BB.BBBBBBBBWWWW",
    "...FFFFFFFFFBBFBBFBBFBBFBBFBBFBBFBBFBBFBBFBBFBB.BB.BB.BBBBBBBBWWWW",
    "..FFFFFFFFBWFFBB.FBBFBBFBBFBBFBBFBBFBBFBBFBB.BBFBB.BB.BBBBBBBWBWWW",
    ".FFFFFFFFBWFBWFFBB..FBBFBBFBBFBBFBBFBBFBB.BBFBB.BBFBB.BBBBBBWBWBWW",
    "FFFFFFFFBWFBWFBWFFBB...FBBFBBFBBFBBFBB.BBFBB.BBFBB.BBFBBBBBWBWBWBW",
)


def _slots(tl, sched, groups, rank, width):
    """Render one rank's replay in the figure's alphabet (full backwards and F&B units as drawn)."""
    row = ["."] * width
    full = {i for g in groups[rank] for i in g}
    pos = {op: i for i, op in enumerate(sched[rank])}
    for op, st, en in tl[rank]:
        i, st, en = pos[op], int(round(st)), int(round(en))
        if op.kind == "F":
            row[st] = "F"
        elif op.kind == "B":
            for k in (range(st, en) if i not in full else range(en - 2, en)):
                row[k] = "B"
        elif op.kind == "W" and i not in full:
            row[st] = "W"
    return "".join(row)


def test_dualpipe_replays_the_published_figure():
    pp, m = 8, 20
    s, g = dualpipe(pp, m), dualpipe_groups(pp, m)
    check_schedule(s, pp, m // 2, 2, split_backward=True)
    # figure convention: F = input-gradient B = W = one slot, a full backward two, F&B = F + B (three)
    tl = timeline(s, dualpipe_position, pp, {"F": 1, "B": 1, "W": 1}, groups=g)
    assert makespan_s(tl) == 66                                   # the figure is 66 slots wide
    rows = [_slots(tl, s, g, r, 66) for r in range(pp)]
    for r in range(pp):
        assert rows[r][:20] == DUALPIPE_FIGURE[r][:20]           # warm-up and first overlapped units, exactly
        figure_idle = DUALPIPE_FIGURE[r].strip(".").count(".")
        assert bubble_s(tl)[r] == figure_idle                    # 6 5 4 3 3 4 5 6 idle slots per rank
        assert rows[r].count("F") == DUALPIPE_FIGURE[r].count("F")


@pytest.mark.parametrize("pp,m", [(4, 8), (6, 12), (8, 20), (8, 32)])
def test_dualpipe_bubble_matches_table_2_of_the_report(pp, m):
    # DeepSeek-V3 Table 2: bubble (PP/2 - 1)(F&B + B - 3W) with B the full backward; with the figure's durations
    # F = 1, B = 2, W = 1, F&B = 3: 2 (PP/2 - 1) on the end ranks. Activation per device PP + 1 chunk passes.
    s, g = dualpipe(pp, m), dualpipe_groups(pp, m)
    tl = timeline(s, dualpipe_position, pp, {"F": 1, "B": 1, "W": 1}, groups=g)
    assert max(bubble_s(tl).values()) == pytest.approx((pp / 2 - 1) * (3 + 2 - 3 * 1))
    assert [max_in_flight(ops, split_backward=True) for ops in s] == [pp + 1] * pp


def test_dualpipe_overlap_unit_takes_the_longer_of_compute_and_communication():
    assert overlapped_forward_backward_s(1.0, 2.0, 0.5, 1.0) == pytest.approx(3.0)
    assert overlapped_forward_backward_s(1.0, 2.0, 2.5, 1.0) == pytest.approx(3.5)
    s, g = dualpipe(4, 8), dualpipe_groups(4, 8)
    fast = timeline(s, dualpipe_position, 4, {"F": 1, "B": 1, "W": 1}, groups=g, group_duration=2.0)
    slow = timeline(s, dualpipe_position, 4, {"F": 1, "B": 1, "W": 1}, groups=g)
    assert makespan_s(fast) < makespan_s(slow)


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 7), (4, 8), (8, 16), (8, 24)])
def test_zb_v_has_zero_bubble_at_1f1b_memory(pp, m):
    # Qi et al. 2024 sec. 6 / README table: ZB-V bubble 0 for T_F = T_B = T_W, activation memory 1x 1F1B
    # (p micro-batches = 2p half-size chunk passes), given m >= 2p - 1
    s = zb_v(pp, m)
    check_schedule(s, pp, m, 2, split_backward=True)
    tl = timeline(s, zb_v_position, 2 * pp, {"F": 1, "B": 1, "W": 1})
    assert all(b == 0 for b in bubble_s(tl).values())
    assert max(max_in_flight(ops, split_backward=True) for ops in s) == 2 * pp
    # the span is the work (6 m chunk passes) plus the V's fill of p - 1 forward chunks
    assert makespan_s(tl) == 6 * m + pp - 1


def test_bad_two_chunk_schedules_are_rejected_with_the_rule():
    with pytest.raises(SpecError, match="even"):
        dualpipe(3, 6)
    with pytest.raises(SpecError, match=">= 2\\*pp"):
        dualpipe(4, 6)
    s = dualpipe(4, 8)
    swapped = (s[1], s[0]) + s[2:]
    with pytest.raises(SpecError, match="deadlocks"):
        timeline(swapped, dualpipe_position, 4, {"F": 1, "B": 1, "W": 1})


# ---- heterogeneous and shared networks -------------------------------------------------------------------------

def test_skippipe_region_table_loads_with_its_units():
    data = yaml.safe_load((ROOT / "docs" / "examples" / "skippipe_regions.yaml").read_text())
    c = HeterogeneousCluster(**data)
    assert len(c.groups) == 12 and len(c.links) == 66
    ln = c.link("Germany", "Belgium")                     # (4 ms, 0.2425 GiB/s) in the repository
    assert ln.latency_s == pytest.approx(4e-3)
    assert ln.bandwidth_bytes_per_s == pytest.approx(0.2425 * 2**30, rel=1e-5)
    # Australia-London 100 MB: 0.132 s + 1e8 / (0.0093994140625 x 2^30) = 0.132 + 9.9082 s
    assert link_time_s(c, "Australia", "London", 1e8) == pytest.approx(0.132 + 1e8 / (0.0093994140625 * 2**30),
                                                                       rel=1e-5)
    hops = pipeline_hop_times_s(c, ["Germany", "Germany", "NL"], 1e6)
    assert hops == pytest.approx([1e-3 + 1e6 / (2 * 2**30), 3.5e-3 + 1e6 / (0.2425 * 2**30)], rel=1e-5)


def test_cluster_spec_names_bad_links():
    base = {"name": "x", "source": "test", "groups": [{"name": "a", "num_devices": 8}, {"name": "b", "num_devices": 8}]}
    with pytest.raises(ValidationError, match="'c' in link a-c is not a group"):
        HeterogeneousCluster(**base, links=[{"a": "a", "b": "c", "latency_ms": 1, "bandwidth_gb_per_s": 1}])
    twice = [{"a": "a", "b": "b", "latency_ms": 1, "bandwidth_gb_per_s": 1},
             {"a": "b", "b": "a", "latency_ms": 2, "bandwidth_gb_per_s": 1}]
    with pytest.raises(ValidationError, match="listed twice"):
        HeterogeneousCluster(**base, links=twice)
    with pytest.raises(ValueError, match="no default_link"):
        HeterogeneousCluster(**base).link("a", "b")


def test_background_occupancy_slows_a_shared_tier():
    # constant-rate background on 30% of 100 GB/s leaves 70; elastic, active 30% of the time with one flow:
    # 0.7 + 0.3/2 = 0.85 of the link
    assert effective_bandwidth_bytes_per_s(100e9, 0.3, elastic=False) == pytest.approx(70e9)
    assert effective_bandwidth_bytes_per_s(100e9, 0.3) == pytest.approx(85e9)
    with pytest.raises(SpecError, match="occupancy"):
        effective_bandwidth_bytes_per_s(100e9, 1.5)
    t = two_tier(lat0=0.0, lat1=0.0)
    shared = tiers_with_background(t, [0.0, 0.5], elastic=False)
    # a 2-node all-reduce's network part doubles: 2 x 1/2 x S/8 / B1 -> / (B1 / 2); the NVLink part stays
    s = 8e9
    nvl = 2 * 7 / 8 * s / 100e9
    net = 2 * 1 / 2 * s / 8 / 10e9
    assert all_reduce_time_s(s, 16, 1, t) == pytest.approx(nvl + net)
    assert all_reduce_time_s(s, 16, 1, shared) == pytest.approx(nvl + 2 * net)


def test_all_to_all_runs_at_the_tiers_measured_all_to_all_efficiency():
    """A tier that states all_to_all_efficiency moves all-to-all bytes at that fraction of its bandwidth, the ring
    collectives at `efficiency`: 8 ranks in one 8-device domain of 100 GB/s, zero latency, 8 MB per rank: 7/8 x 8e6 /
    (100e9 x 0.5) = 140 us against 7/8 x 8e6 / (100e9 x 0.8) = 87.5 us without it; DeepEP-style node-limited
    dispatch keeps the tier's own efficiency."""
    from simulator.specs.hardware import HardwareProfile
    from simulator.topology.placement import tier_arrays
    from tests.conftest import toy_hardware

    def hw(a2a):
        d = toy_hardware().model_dump()
        d["devices_per_node"] = 8
        d["tiers"][0].update(domain_size=8, efficiency=0.8, all_to_all_efficiency=a2a)
        return HardwareProfile.model_validate(d)

    plain, a2a = tier_arrays(hw(None)), tier_arrays(hw(0.5))
    assert float(all_to_all_time_s(8e6, 8, 1, plain)) == pytest.approx(7 / 8 * 8e6 / 80e9, rel=1e-12)
    assert float(all_to_all_time_s(8e6, 8, 1, a2a)) == pytest.approx(7 / 8 * 8e6 / 50e9, rel=1e-12)
    nl = [md.node_limited_dispatch_time_s(4096, 1024, 2, 4, 64, 8, 1, t) for t in (plain, a2a)]
    assert nl[0] == pytest.approx(nl[1], rel=1e-12)
