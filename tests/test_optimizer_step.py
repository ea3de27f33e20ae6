"""The optimizer step's HBM traffic (costs.optimizer), derived by hand from Megatron-Core's passes."""
import pytest

from simulator.costs.optimizer import grad_buffer_passes, optimizer_step_bytes, optimizer_step_time_s
from simulator.specs.stack import framework_named


def test_distributed_optimizer_bytes_by_hand():
    """8e9 local dense parameters, ZeRO-1 over dp 4, fp32 gradients, bf16 weights.
    Buffer: zero 4 B + scale by 1/dp 8 B over all 8e9 held gradients = 96e9 B.
    Shard of 2e9: norm 4 + Adam 28 + copy-back 4 + 2 = 38 B -> 76e9 B. Total 172e9 B."""
    b = optimizer_step_bytes(8e9, 0.0, 1, 4, 1)
    assert float(b) == pytest.approx(96e9 + 76e9)
    # at 8 TB/s and 0.5 of it: 172e9 / 4e12 = 43 ms
    assert float(optimizer_step_time_s(8e9, 0.0, 1, 4, 1, 8e12, 0.5)) == pytest.approx(0.043)


def test_no_averaging_pass_without_data_parallelism_and_zero2_shards_the_buffer():
    """dp 1: zero 4 B + 38 B per parameter (no 1/dp scaling). ZeRO-2 over dp 4: the buffer passes run over the
    2e9 shard only: 2e9 x 12 + 2e9 x 38 = 100e9 B."""
    assert float(optimizer_step_bytes(1e9, 0.0, 1, 1, 1)) == pytest.approx(42e9)
    assert float(optimizer_step_bytes(8e9, 0.0, 2, 4, 1)) == pytest.approx(100e9)


def test_bf16_gradients_add_the_cast_to_fp32_main_grads():
    """bf16 grad buffer, dp 1: zero 2 B; shard 38 B + cast (read 2, write 4) = 6 B -> 46 B per parameter."""
    assert float(optimizer_step_bytes(1e9, 0.0, 1, 1, 1, grad_bytes=2.0)) == pytest.approx(46e9)


def test_experts_shard_over_their_own_group():
    """Experts 4e9 over expert-dp 2 (ZeRO-1), no dense: buffer 4e9 x 12; shard 2e9 x 38 -> 124e9 B."""
    assert float(optimizer_step_bytes(0.0, 4e9, 1, 8, 2)) == pytest.approx(48e9 + 76e9)


def test_framework_passes_by_hand():
    """8e9 local, ZeRO-1 over dp 4 (shard 2e9 x 38 B = 76e9 B). Megatron-LM defaults (check on, in-place 1/dp):
    zero 4 + check 4 + scale 8 = 16 B x 8e9 = 128e9. Megatron-Bridge recipes (check on, average in the collective):
    zero 4 + check 4 = 8 B -> 64e9. JAX: no buffer passes."""
    assert grad_buffer_passes(None) == (True, True, False)
    core, bridge = grad_buffer_passes(framework_named("megatron-core")), grad_buffer_passes(framework_named("megatron-bridge"))
    assert core == (True, True, True) and bridge == (True, False, True)
    assert not grad_buffer_passes(framework_named("maxtext"))[0]
    assert float(optimizer_step_bytes(8e9, 0.0, 1, 4, 1, buffer_passes=core)) == pytest.approx(128e9 + 76e9)
    assert float(optimizer_step_bytes(8e9, 0.0, 1, 4, 1, buffer_passes=bridge)) == pytest.approx(64e9 + 76e9)
    jax = grad_buffer_passes(framework_named("maxtext"))
    assert float(optimizer_step_bytes(8e9, 0.0, 1, 4, 1, buffer_passes=jax)) == pytest.approx(76e9)
