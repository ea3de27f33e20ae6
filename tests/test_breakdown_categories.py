"""The step-time breakdown reports elementwise kernels, FP8 casts and host-bound time as their own categories
(issue 9: they used to hide in `compute`), from numbers derivable by hand on the toy device (100 TFLOP/s bf16,
200 fp8, 1 TB/s, efficiencies 1)."""
import pytest

import simulator as ts
from simulator.results import TIME_CATEGORIES
from simulator.specs.hardware import HardwareProfile

from .conftest import floor_only_framework, gpt, toy_hardware

L, M_TOKENS, MICRO = 4, 128, 2           # layers, tokens per micro-batch (seq 128, micro-batch 1), micro-batches


def _estimate(dtype="bf16", host_us=0.0):
    data = toy_hardware(layer_overhead_us=host_us).model_dump()
    data["device"]["peak_tflops"]["fp8"] = 200.0
    hw = HardwareProfile.model_validate(data)
    sc = ts.Scenario.build(gpt(layers=L), hw, devices=1, global_batch=MICRO, seq_len=M_TOKENS, dtype=dtype,
                           recompute="none", framework=floor_only_framework())   # host: the profile's floor only
    return ts.estimate(sc)


def test_the_breakdown_has_its_own_elementwise_fp8_and_host_categories():
    r = _estimate()
    assert {"elementwise", "fp8_cast", "host"} <= set(r.time_breakdown_s)
    assert list(r.time_breakdown_s) == list(TIME_CATEGORIES)
    assert sum(r.time_breakdown_s.values()) == pytest.approx(r.step_time_s, rel=1e-12)


def test_elementwise_time_by_hand():
    """GPT layer, h 512, GELU ffn 2048: 14 h + 2 ffn = 11,264 elements per token, 2 bytes, 128 tokens =
    2,883,584 bytes = 2.884 us forward at 1 TB/s, twice that backward; 4 layers x 2 micro-batches."""
    r = _estimate()
    assert r.time_breakdown_s["elementwise"] == pytest.approx(MICRO * L * 3 * 2 * M_TOKENS * 11264 / 1e12, rel=1e-12)
    assert r.time_breakdown_s["fp8_cast"] == 0.0 and r.time_breakdown_s["host"] == 0.0


def test_fp8_cast_time_by_hand():
    """Forward casts 3,584 elements per token, backward 4,608 (tests/test_fp8_casts.py), 4 bytes each."""
    r = _estimate("fp8")
    assert r.time_breakdown_s["fp8_cast"] == pytest.approx(MICRO * L * (3584 + 4608) * 4 * M_TOKENS / 1e12, rel=1e-12)


def test_host_time_is_what_the_host_floor_adds():
    """A 1 ms host time per layer pass makes every pass of this tiny model host bound: the host category is exactly
    the step-time difference to a host time of 0 (2 micro-batches x (4 layers x 2 passes + 6 passes of host work
    outside the layers) = 28 ms, less the GPU time the passes no longer show), and compute, elementwise and FP8
    stay what they were."""
    fast, slow = _estimate(host_us=0.0), _estimate(host_us=1000.0)
    assert slow.time_breakdown_s["host"] == pytest.approx(slow.step_time_s - fast.step_time_s, rel=1e-9)
    assert 0.9 * 28e-3 < slow.time_breakdown_s["host"] < 28e-3
    for k in ("compute", "elementwise", "fp8_cast"):
        assert slow.time_breakdown_s[k] == pytest.approx(fast.time_breakdown_s[k], rel=1e-12), k


def test_the_replay_reports_the_same_categories():
    """Serial replay (no overlap, no contention) of the host-bound FP8 case agrees category by category."""
    data = toy_hardware(layer_overhead_us=1000.0).model_dump()
    data["device"]["peak_tflops"]["fp8"] = 200.0
    sc = ts.Scenario.build(gpt(layers=L), HardwareProfile.model_validate(data), devices=2, global_batch=4,
                           seq_len=M_TOKENS, dtype="fp8", pp=2, recompute="full", overlap_grad_reduce=False)
    r, a = ts.simulate(sc, overlap=False, contention=False), ts.estimate(sc)
    for k in ("compute", "elementwise", "fp8_cast", "host", "recompute"):
        assert r.time_breakdown_s[k] == pytest.approx(a.time_breakdown_s[k], rel=1e-12), k
    assert r.time_breakdown_s["host"] > 0 and r.time_breakdown_s["fp8_cast"] > 0
