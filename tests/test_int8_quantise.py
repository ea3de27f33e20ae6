"""int8 runs (MaxText AQT) pay the memory-bound quantisation of both operands of every dense GEMM, each of the three
GEMMs re-quantising its own operands (config_v3: use_fwd_quant False for dlhs and drhs)."""
import numpy as np
import pytest

from simulator.costs.flops import model_costs
from simulator.costs.layer import INT8_QUANTISE_BYTES_PER_ELEMENT, LayerCosts, layer_costs
from simulator.costs.sizes import sizes
from simulator.specs.hardware import HardwareProfile
from simulator.specs.job import Job
from simulator.specs.layout_table import LayoutTable
from simulator.specs.training import TrainingSpec

from .conftest import gpt, toy_hardware


def _costs(dtype: str) -> LayerCosts:
    data = toy_hardware().model_dump()
    data["device"]["peak_tflops"]["int8"] = 400.0
    hw = HardwareProfile.model_validate(data)
    job = Job(model=gpt(), hardware=hw, training=TrainingSpec(seq_len=128, global_batch=1, dtype=dtype), num_devices=1)
    return layer_costs(sizes(job, LayoutTable.from_columns(tp=1, pp=1, dp=1, micro_batch=1)))


def test_int8_quantisation_traffic_by_hand():
    """h 512, 8 heads, FFN 2048 (not gated), 128 tokens, 1 TB/s at efficiency 1, 5 B per quantised element.
    GEMM inputs X per token: QKV 512 + projection 512 + FC1 512 + FC2 2048 = 3584; output gradients G: QKV 1536 +
    projection 512 + FC1 2048 + FC2 512 = 4608; weights W: 4 x 512^2 (attention) + 2 x 512 x 2048 (MLP) = 3,145,728
    matrix elements (+ the biases the model counts). Forward: X and W; backward: W (input gradient), X (weight
    gradient) and G twice."""
    c = _costs("int8")
    w = model_costs(gpt(), 128).attn_params + model_costs(gpt(), 128).dense_mlp_params
    assert 4 * 512 ** 2 + 2 * 512 * 2048 <= w <= 4 * 512 ** 2 + 2 * 512 * 2048 + 6 * 2048   # matrices + biases
    fwd = INT8_QUANTISE_BYTES_PER_ELEMENT * (128 * 3584 + w) / 1e12
    bwd = INT8_QUANTISE_BYTES_PER_ELEMENT * (128 * (3584 + 2 * 4608) + w) / 1e12
    assert INT8_QUANTISE_BYTES_PER_ELEMENT == 5.0
    assert float(np.asarray(c.fp8_cast_fwd_s).reshape(-1)[0]) == pytest.approx(fwd)
    assert float(np.asarray(c.fp8_cast_bwd_s).reshape(-1)[0]) == pytest.approx(bwd)


def test_int8_forward_costs_more_than_bf16_by_the_quantisation():
    """The quantisation is the only memory-bound addition: the int8 forward's elementwise time equals bf16's."""
    q, b = _costs("int8"), _costs("bf16")
    assert float(np.max(b.fp8_cast_fwd_s)) == 0.0 and float(np.max(b.fp8_cast_bwd_s)) == 0.0
    assert float(np.asarray(q.elementwise_s).reshape(-1)[0]) == pytest.approx(float(np.asarray(b.elementwise_s).reshape(-1)[0]))
    assert float(np.asarray(q.fp8_cast_fwd_s).reshape(-1)[0]) > 0.0
