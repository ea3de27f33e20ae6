"""Pipeline schedules in closed form: bubble, stage split, in-flight micro-batches, step composition."""
import numpy as np
import pytest

from simulator.pipeline.closed_form import bubble_fraction, inflight_microbatches, pipeline_time_s
from simulator.pipeline.split import chunk_layers, default_stage_split, explicit_stage_split


@pytest.mark.parametrize("p,m,v,sched,expected", [
    (8, 96, 1, "1f1b", 7 / 96), (8, 96, 1, "gpipe", 7 / 96), (8, 96, 3, "interleaved", 7 / 288),
    (4, 8, 1, "zb-h1", 3 / 8 / 3), (1, 16, 1, "1f1b", 0.0)])
def test_bubble_fraction(p, m, v, sched, expected):
    """(p-1)/m for GPipe/1F1B, (p-1)/(v m) interleaved (Narayanan et al. 2021 sec. 2.2)."""
    assert float(bubble_fraction(p, m, v, sched)) == pytest.approx(expected)


@pytest.mark.parametrize("L,pp,vpp,expected", [
    (96, 8, 1, (12, 12, 12)),      # even
    (126, 16, 1, (7, 8, 7)),       # Llama 3 405B: 7 + 14 x 8 + 7
    (70, 12, 1, (5, 6, 5)),        # BLOOM 176B: 70 on 12 stages
    (96, 8, 3, (12, 12, 12)),      # interleaved, 24 chunks of 4
    (96, 1, 1, (96, 0, 0)),
    (61, 16, 1, (2, 4, 3)),        # DeepSeek-V3 shape: 64 - 61 = 3 fewer, 2 from the first chunk, 1 from the last
])
def test_default_stage_split(L, pp, vpp, expected):
    first, mid, last = (int(x) for x in default_stage_split(L, pp, vpp))
    assert (first, mid, last) == expected
    if pp >= 2:
        # every layer is placed: the middle ranks are full, the ends absorb the deficit
        assert first + last + (pp - 2) * vpp * -(-L // (pp * vpp)) == L


def test_explicit_split_sums_chunks_per_rank():
    # 2 ranks x 2 chunks, chunk i on rank i % 2
    assert explicit_stage_split([3, 4, 5, 6], 2) == (8, 0, 10)
    assert explicit_stage_split([1, 2, 3], 3) == (1, 2, 3)


def test_inflight_1f1b_is_p_minus_rank_and_gpipe_is_m():
    assert float(inflight_microbatches(8, 1, 96, 1, 0)) == 8
    assert float(inflight_microbatches(8, 1, 96, 1, 7)) == 1
    assert float(inflight_microbatches(8, 1, 96, 0, 3)) == 96
    assert float(inflight_microbatches(8, 1, 4, 1, 0)) == 4      # capped at m


def test_inflight_interleaved_first_rank_matches_korthikanti():
    """Korthikanti et al. 2022 sec. 4.2.3: interleaving multiplies the first stage's memory by 1 + (p-1)/(p v)."""
    p, v = 8, 3
    assert float(inflight_microbatches(p, v, 96, 2, 0)) == pytest.approx(p * (1 + (p - 1) / (p * v)))


def test_pipeline_time_equal_stages_is_m_plus_p_minus_1():
    tau, p, m = 3.0, 4, 8
    assert float(pipeline_time_s(tau, p * tau, m, 1, 1)) == pytest.approx((m + p - 1) * tau)
    # interleaved: (m + (p-1)/v) tau
    assert float(pipeline_time_s(tau, p * tau, m, 2, 2)) == pytest.approx((m + (p - 1) / 2) * tau)


def test_pipeline_time_gpipe_p2_m2_hand_timeline():
    """p=2, m=2, fwd 1 s, bwd 2 s per stage. Hand-drawn GPipe timeline: stage 0 F1 0-1, F2 1-2; stage 1 F1 1-2,
    F2 2-3, B1 3-5, B2 5-7; stage 0 B1 5-7, B2 7-9. The closed form (m-1) tau + sum tau = 3 + 6 = 9 s."""
    tau = 1.0 + 2.0
    assert float(pipeline_time_s(tau, 2 * tau, 2, 1, 0)) == pytest.approx(9.0)


def test_slowest_stage_paces_the_pipeline():
    taus = np.array([1.0, 2.0, 1.0])
    t = pipeline_time_s(taus.max(), taus.sum(), 10, 1, 1)
    assert float(t) == pytest.approx(9 * 2.0 + 4.0)


def test_surplus_beyond_the_two_ends_is_spread_inwards():
    """32 layers on 8 x 3 = 24 chunks: ceil = 2, 16 chunks lose one layer, ends first, then inwards."""
    chunks = chunk_layers(32, 8, 3)
    assert sum(chunks) == 32 and max(chunks) - min(chunks) <= 1
    first, mid, last = (int(x) for x in default_stage_split(32, 8, 3))
    assert (first, mid, last) == (sum(chunks[0::8]), max(sum(chunks[r::8]) for r in range(1, 7)), sum(chunks[7::8]))
    assert first + last <= mid * 2


def test_zb_h1_keeps_p_micro_batches_on_every_rank():
    assert float(inflight_microbatches(4, 1, 16, 3, 3)) == 4
    assert float(inflight_microbatches(4, 1, 16, 3, 0)) == 4


def test_gpipe_is_paced_by_the_slowest_forward_plus_the_slowest_backward():
    """Stages (F, B) = (1, 3), (2, 1), m = 3. GPipe: forwards 0-1-2-3 on stage 0 ... hand timeline: stage 1's
    forwards end at 1+2*3 = 7, backwards start there: stage 1 B at 7, 8, 9 -> 10; stage 0 B at 8, 11, 14 -> 17.
    sum tau + (m-1)(max F + max B) = (4 + 3) + 2 * (2 + 3) = 17, whereas (m-1) tau_max + sum tau = 15."""
    t = pipeline_time_s(4.0, 7.0, 3, 1, 0, fb_max=5.0)
    assert float(t) == pytest.approx(17.0)
    assert float(pipeline_time_s(4.0, 7.0, 3, 1, 1, fb_max=5.0)) == pytest.approx(15.0)   # 1F1B unchanged


def test_host_work_per_micro_batch_sits_on_the_ranks_that_do_it():
    """Host-bound toy (10 ms per layer pass, kernels ~us): 3 layers on 3 stages, one micro-batch. Every rank
    pays its layer's forward and backward (2 H) plus the every-rank host work (2 H: batch, schedule, sends);
    the first adds the embedding's 2 H, the last the loss's 2 H: 6 H + 4 H + 6 H = 16 H = 160 ms for the
    single micro-batch crossing all stages (the host work of a one-stage pipeline, 6 H, is not paid three times)."""
    import simulator as ts
    from .conftest import gpt, toy_hardware
    sc = ts.Scenario.build(gpt(layers=3, hidden=64, heads=4, vocab=64), toy_hardware(layer_overhead_us=10_000.0),
                           devices=3, global_batch=1, seq_len=16, tp=1, pp=3, micro_batch=1, recompute="none", zero=0)
    assert ts.estimate(sc).step_time_s == pytest.approx(0.160, rel=1e-3)


def test_zb_h1_fewer_micro_batches_than_stages_hand_timeline():
    """p=4, m=2, F = B = W = 1 s per stage (zb_h1: rank r defers its first r W passes). Hand-drawn timeline:
        stage 3: F0 3-4  B0 4-5  F1 5-6  B1 6-7  W0 7-8  W1 8-9    (1F1B order: F1 waits for B0)
        stage 2: F0 2-3  F1 3-4  B0 5-6  B1 7-8  W0 8-9  W1 9-10
        stage 1: F0 1-2  F1 2-3  B0 6-7  B1 8-9  W0 9-10 W1 10-11
        stage 0: F0 0-1  F1 1-2  B0 7-8  W0 8-9  B1 9-10 W1 10-11
    The step is the B chain: (m + p - 1)(F + B) + W = 5 x 2 + 1 = 11 s; the m >= p form m(F+B+W) +
    (p-1)(F+B-W) = 6 + 3 = 9 s (the old closed form) undercounts it by 18%. The DES replays the same 11 s."""
    from simulator.des.engine import simulate_spec
    from simulator.pipeline.schedules import zb_h1
    from .test_des_engine import toy
    p, m = 4, 2
    des = simulate_spec(toy(zb_h1(p, m), f=1.0, b=1.0, w=1.0)).step_time_s
    closed = float(pipeline_time_s(3.0, 3.0 * p, m, 1, 3, 1.0, 1.0 * p))
    assert des == pytest.approx(11.0, rel=1e-12) and closed == pytest.approx(11.0, rel=1e-12)
    # m = p and beyond: the paper's form, (p-1)(F+B-W) bubble
    assert float(pipeline_time_s(3.0, 3.0 * p, 8, 1, 3, 1.0, 1.0 * p)) == pytest.approx(3 * 8 + 3)
