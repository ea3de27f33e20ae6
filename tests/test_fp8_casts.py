"""FP8 runs pay the memory-bound casts of every GEMM operand (Transformer Engine cast-transpose)."""
import numpy as np
import pytest

from simulator.costs.layer import LayerCosts, layer_costs
from simulator.costs.sizes import sizes
from simulator.specs.hardware import HardwareProfile
from simulator.specs.job import Job
from simulator.specs.layout_table import LayoutTable
from simulator.specs.training import TrainingSpec

from .conftest import gpt, toy_hardware


def _costs(dtype: str) -> LayerCosts:
    data = toy_hardware().model_dump()
    data["device"]["peak_tflops"]["fp8"] = 200.0
    hw = HardwareProfile.model_validate(data)
    job = Job(model=gpt(), hardware=hw, training=TrainingSpec(seq_len=128, global_batch=1, dtype=dtype), num_devices=1)
    return layer_costs(sizes(job, LayoutTable.from_columns(tp=1, pp=1, dp=1, micro_batch=1)))


def test_fp8_cast_traffic_by_hand():
    """h 512, 8 heads, FFN 2048, 128 tokens, 1 TB/s at efficiency 1. Forward casts the inputs of QKV (512),
    the output projection (512), FC1 (512) and FC2 (2048): 3584 elements x 4 B x 128 tokens = 1.835 us.
    Backward casts the output gradients of QKV (1536), the projection (512), FC1 (2048) and FC2 (512):
    4608 elements -> 2.359 us."""
    c = _costs("fp8")
    assert float(np.asarray(c.fp8_cast_fwd_s).reshape(-1)[0]) == pytest.approx(3584 * 4 * 128 / 1e12)
    assert float(np.asarray(c.fp8_cast_bwd_s).reshape(-1)[0]) == pytest.approx(4608 * 4 * 128 / 1e12)


def test_bf16_runs_pay_no_casts():
    c = _costs("bf16")
    assert float(np.max(c.fp8_cast_fwd_s)) == 0.0 and float(np.max(c.fp8_cast_bwd_s)) == 0.0
