"""DDP gradient buckets: one collective (and its latency) per Megatron-Core bucket (costs.communication)."""
from types import SimpleNamespace

import numpy as np

from simulator.costs.communication import ddp_bucket_count
from simulator.specs.stack import framework_named


def _sz(rule):
    return SimpleNamespace(framework=SimpleNamespace(overlap=SimpleNamespace(dp_bucket_params=rule)))


def test_bucket_count_by_hand():
    sz = _sz((4.0e7, 1.0e6))
    # dp 8: bucket max(4e7, 8e6) = 4e7; 2.4e9 / 4e7 = 60 collectives
    assert ddp_bucket_count(sz, 2.4e9, 8) == 60.0
    # dp 64: bucket max(4e7, 6.4e7) = 6.4e7; 2.4e9 / 6.4e7 = 37.5 -> 38
    assert ddp_bucket_count(sz, 2.4e9, 64) == 38.0
    # a partial bucket still costs one call; a tiny gradient one
    np.testing.assert_array_equal(ddp_bucket_count(sz, np.array([4.0e7 + 1, 10.0]), 8), [2.0, 1.0])


def test_no_rule_one_collective():
    assert ddp_bucket_count(_sz(None), 2.4e9, 8) == 1.0


def test_megatron_core_preset_rule():
    assert tuple(framework_named("megatron-core").overlap.dp_bucket_params) == (4.0e7, 1.0e6)
