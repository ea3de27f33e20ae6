"""ZeRO-3 gather granularity: one collective per layer (FSDP) or one per parameter tensor (DeepSpeed 2021)."""
import pytest

import simulator as ts
from simulator.specs.hardware import HardwareProfile

from .conftest import gpt, toy_hardware


def _hw_with_latency():
    data = toy_hardware().model_dump()
    data["tiers"][0]["latency_us"] = 10.0
    data["tiers"][1]["latency_us"] = 100.0
    return HardwareProfile.model_validate(data)


def _dp_time(unit: str) -> float:
    sc = ts.Scenario.build(gpt(), _hw_with_latency(), devices=8, global_batch=8, seq_len=128, tp=1, pp=1,
                           zero=3, zero3_unit=unit, recompute="none", micro_batch=1, overlap_grad_reduce=False)
    return ts.estimate(sc).to_dict()["time_breakdown_s"]["dp_comm"]


def test_tensor_unit_pays_one_latency_per_parameter_tensor():
    """8 ranks on 2 nodes of 4: one gather's ring latency is (8 - 2) x 10 us + 1 x 100 us = 160 us. A GPT layer
    holds 12 tensors (2 norms and 4 linears, weight and bias each), so gathering tensor by tensor adds 11 latencies
    per gather; 4 layers x 2 gathers (forward, backward) x 1 micro-batch, all exposed: 88 x 160 us = 14.08 ms."""
    assert _dp_time("tensor") - _dp_time("layer") == pytest.approx(88 * 160e-6, rel=1e-9)


def test_bad_zero3_unit_is_a_spec_error():
    with pytest.raises(Exception) as err:
        ts.Scenario.build(gpt(), toy_hardware(), devices=8, global_batch=8, seq_len=128, zero=3, zero3_unit="param")
    assert "zero3_unit" in str(err.value)


def test_search_takes_the_zero3_unit_from_the_space():
    """The gather unit reaches the search's table: tensor-by-tensor gathers make the same ZeRO-3 layout slower."""
    from simulator.planning.search import search
    kw = dict(model=gpt(), hardware=_hw_with_latency(), devices=8, global_batch=8, seq_len=128)
    cons = dict(tp=[1], pp=[1], zero=[3], recompute=["none"], micro_batch=[1], overlap_grad_reduce=False)
    layer = search(**kw, constraints=dict(cons, zero3_unit="layer")).best
    tensor = search(**kw, constraints=dict(cons, zero3_unit="tensor")).best
    assert tensor["step_time_s"] > layer["step_time_s"]
