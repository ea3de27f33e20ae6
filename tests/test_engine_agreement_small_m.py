"""The two engines agree when micro-batches are fewer than stages (issue 12: up to 54% apart, zb-h1 and GPipe
with ZeRO-3 and no overlap). The closed forms are derived on hand-drawn timelines in tests/test_pipeline.py;
here the whole engines are compared on the issue's cases."""
from __future__ import annotations

import pytest

from simulator.analytic.estimate import estimate
from simulator.des.api import simulate
from simulator.specs.scenario import Scenario

CASES = [
    # the example: m = 4 < p = 16 (was 1.64 s analytic vs 2.21 s DES)
    dict(model="megatron-76.1b", hardware="tpu-v3", devices=64, tp=4, pp=16, dp=1, global_batch=4, seq_len=2048,
         schedule="zb-h1"),
    # GPipe and 1F1B, ZeRO-3 without overlap, m = 2 < p = 8 (was -16%)
    dict(model="llama2-7b", hardware="a100-sxm4-80gb", devices=64, tp=2, pp=8, dp=4, global_batch=8,
         seq_len=2048, schedule="gpipe", zero=3, overlap_grad_reduce=False),
    dict(model="llama2-7b", hardware="a100-sxm4-80gb", devices=64, tp=2, pp=8, dp=4, global_batch=8,
         seq_len=2048, schedule="1f1b", zero=3, overlap_grad_reduce=False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['model']}-{c['schedule']}")
def test_engines_agree_within_10_percent_with_few_micro_batches(case):
    sc = Scenario.build(**case)
    a, d = estimate(sc).step_time_s, simulate(sc).step_time_s
    assert a == pytest.approx(d, rel=0.10)
