"""Data-parallel overlap physics: the interleaved schedule's chunk-by-chunk gradient / parameter sync window and the
SMs NCCL's overlapped collectives hold (costs.communication)."""
import numpy as np
import pytest

import simulator as ts
from simulator.costs.communication import NCCL_RING_CHANNELS, interleaved_sync_exposed_s


def test_interleaved_window_by_hand():
    """v = 4 chunks, p = 4 stages, m = 8 micro-batches, backward 1.0 s per micro-batch (0.25 s per chunk pass):
    the first chunk's reduction starts with its last backward and has that pass plus q = 4 passes of each of the
    3 chunks after it: 0.25 x (1 + 3 x 4) = 3.25 s. A 4 s reduction exposes 0.75 s; a 2 s one hides, but the last
    chunk's quarter (0.5 s) runs beside its own 0.25 s pass: (2 - 1) / 4 = 0.25 s stays out."""
    got = interleaved_sync_exposed_s(np.array([4.0, 2.0]), 1.0, 4, 8, 4)
    assert got == pytest.approx([0.75, 0.25])


def test_interleaved_window_reduces_to_bucketed_overlap_without_chunks():
    """v = 1: the window is the last micro-batch's backward, max(0, comm - pass)."""
    got = interleaved_sync_exposed_s(np.array([3.0, 0.5]), 1.0, 1, 8, 4)
    assert got == pytest.approx([2.0, 0.0])


def test_fewer_micro_batches_than_stages_shrink_the_window():
    """q = min(m, p): m = 2 < p = 4 gives 0.25 x (1 + 3 x 2) = 1.75 s of window."""
    assert interleaved_sync_exposed_s(np.array([2.0]), 1.0, 4, 2, 4) == pytest.approx([0.25])


def test_overlapped_dp_collective_costs_its_sm_share():
    """ZeRO-1 over dp 8, one micro-batch, everything overlapped and hidden by the passes: what stays exposed is the
    NCCL blocks' share s of the SMs (16 of the A100's 108) times the reduce-scatter (fp32 gradients: 2 x the bf16
    all-gather time g) and the all-gather: 3 s g. With the gather stated not overlapped it costs g in full, so the
    difference is (1 - s) g and exposed_on / difference = 3 s / (1 - s)."""
    kw = dict(seq_len=2048, tp=1, zero=1, micro_batch=1)
    on = ts.estimate(ts.Scenario.build("llama2-7b", "a100-sxm4-80gb", 8, 16, **kw)).time_breakdown_s["dp_comm"]
    off = ts.estimate(ts.Scenario.build("llama2-7b", "a100-sxm4-80gb", 8, 16, dp_param_gather_overlap=False,
                                        **kw)).time_breakdown_s["dp_comm"]
    s = NCCL_RING_CHANNELS / 108.0
    assert on > 0
    assert on / (off - on) == pytest.approx(3.0 * s / (1.0 - s), rel=0.02)


def test_interleaved_steady_fraction_by_hand():
    """p = 8, v = 12: the first rank's warm-up is (v - 1) p + 2 (p - 1) = 102 of its m v forward chunk passes.
    m = 128: (1536 - 102) / 1536 in the steady phase; m = 8 = p: all warm-up; no interleaving or no pipeline: 0."""
    from simulator.pipeline.closed_form import interleaved_steady_fraction
    got = interleaved_steady_fraction(np.array([128, 8, 16, 128]), np.array([8, 8, 8, 1]), np.array([12, 12, 1, 12]))
    assert got == pytest.approx([(1536 - 102) / 1536, 0.0, 0.0, 0.0])


def test_megatron_core_hides_steady_pipeline_sends_only_when_interleaved():
    """overlap_p2p_comm (megatron-core preset): interleaved, the exposed pipeline-send time drops by the steady
    share of the sends; 1F1B keeps them all."""
    from simulator.pipeline.closed_form import interleaved_steady_fraction
    kw = dict(seq_len=4096, tp=1, pp=4, zero=1, micro_batch=1)
    inter = ts.Scenario.build("llama2-7b", "h100-sxm5-80gb", 8, 64, vpp=2, **kw)
    fw = inter.framework.model_copy(update={"overlap": inter.framework.overlap.model_copy(
        update={"pp_p2p_overlap": False})})
    on, off = ts.estimate(inter), ts.estimate(inter.model_copy(update={"framework": fw}))
    frac = float(interleaved_steady_fraction(32, 4, 2))
    assert frac > 0
    assert on.time_breakdown_s["pp_comm"] == pytest.approx((1.0 - frac) * off.time_breakdown_s["pp_comm"], rel=1e-9)
    plain = ts.Scenario.build("llama2-7b", "h100-sxm5-80gb", 8, 64, **kw)
    fw1 = plain.framework.model_copy(update={"overlap": plain.framework.overlap.model_copy(
        update={"pp_p2p_overlap": False})})
    assert ts.estimate(plain).time_breakdown_s["pp_comm"] == pytest.approx(
        ts.estimate(plain.model_copy(update={"framework": fw1})).time_breakdown_s["pp_comm"], rel=1e-12)
