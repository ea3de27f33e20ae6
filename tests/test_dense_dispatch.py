"""Dense-einsum MoE dispatch as DeepSpeed-MoE ran it (costs.dense_dispatch): einsum FLOPs, the gate's one-hot
bytes and the capacity a row's DeepSpeed flags state, all derived by hand."""
import pytest

from simulator.costs.dense_dispatch import (COMBINE_BACKWARD_GEMMS, DISPATCH_BACKWARD_GEMMS, dense_einsum_flops,
                                            gate_mask_bytes_per_slot, gate_stream_bytes)
from simulator.costs.moe_routing import expert_capacity_tokens
from simulator.validation.rows import _routing_of


def test_einsum_flops_by_hand():
    """S 8 tokens, E 4 experts, C 2, M 16: "sec,sm->ecm" is (8 x 8) @ (8 x 16) = 2 x 8 x 8 x 16 = 2,048 FLOPs,
    and so is "sec,ecm->sm" ((8 x 8) @ (8 x 16))."""
    assert dense_einsum_flops(8, 4, 2, 16) == 2048.0


def test_only_the_combine_einsum_has_a_second_backward_gemm():
    """The boolean dispatch mask needs no gradient; the combine weights carry the router's."""
    assert (DISPATCH_BACKWARD_GEMMS, COMBINE_BACKWARD_GEMMS) == (1, 2)


def test_mask_bytes_per_slot_by_hand():
    """fp32 combine tensor, fp16 activations: forward write 4 + bool (4 + 1) + mask cast (1 + 2) + combine cast
    (4 + 2) = 18; backward cast back (2 + 4) + the product's gradient read 4 = 10. All in fp16: 12 and 6."""
    assert gate_mask_bytes_per_slot(2.0, 4.0) == (18.0, 10.0)
    assert gate_mask_bytes_per_slot(2.0, 2.0) == (12.0, 6.0)


def test_gate_stream_bytes_by_hand():
    """S 8, E 4, C 2, M 16, top-1, fp16 activations, fp32 gate: forward 64 slots x 18 + 32 x 192 + the input cast
    8 x 16 x (2 + 4) = 1,152 + 6,144 + 768 = 8,064 B; backward 64 x 10 + 32 x 28 + 768 = 2,304 B. Top-2 repeats
    the [S, E] passes: 1,152 + 12,288 + 768 = 14,208 forward."""
    assert gate_stream_bytes(8, 4, 2, 16, 1, 2.0, 4.0) == (8064.0, 2304.0)
    assert gate_stream_bytes(8, 4, 2, 16, 2, 2.0, 4.0)[0] == 14208.0


def test_gate_bytes_grow_with_the_square_of_the_group():
    """E C = cf S: four times the tokens, sixteen times the [S, E, C] bytes (the [S, E] and cast terms grow 4x)."""
    small = gate_stream_bytes(2048, 128, 16, 2048, 1, 2.0, 4.0)[0] - 2048 * (128 * 192 + 2048 * 6)
    big = gate_stream_bytes(8192, 128, 64, 2048, 1, 2.0, 4.0)[0] - 8192 * (128 * 192 + 2048 * 6)
    assert big / small == pytest.approx(16.0)


def test_deepspeed_capacity_flags_set_a_padded_capacity_with_its_minimum():
    """--moe-train-capacity-factor 1.0 --moe-min-capacity 4 (Megatron-DeepSpeed MoE example): capacity
    max(4, ceil(1.0 x S / E)); 2,048 tokens over 128 experts: 16; 256 tokens: 2 -> the minimum 4."""
    notes = "... --moe-train-capacity-factor 1.0 --moe-min-capacity 4 ..."
    rt = _routing_of(notes, [])
    assert (rt.capacity_factor, rt.min_capacity, rt.pad_to_capacity) == (1.0, 4, True)
    assert expert_capacity_tokens(2048, 1, 128, rt.capacity_factor, rt.min_capacity) == 16
    assert expert_capacity_tokens(256, 1, 128, rt.capacity_factor, rt.min_capacity) == 4
    assert _routing_of(notes + " --disable-moe-token-dropping", []) is None


@pytest.mark.parametrize("name", ["deepspeed-2020", "deepspeed", "megatron-deepspeed-2021", "megatron-deepspeed"])
def test_every_deepspeed_moe_stack_dispatches_with_fp32_einsum_masks(name):
    """DeepSpeed's MoE layer (sharded_moe.py MOELayer), which Megatron-DeepSpeed imports, in every release."""
    from simulator.specs.frameworks_loading import load_framework
    moe = load_framework(name).moe
    assert (moe.dispatch, moe.dense_group, moe.gate_passes) == ("dense-einsum", "micro-batch", "eager-fp32")


@pytest.mark.parametrize("name", ["megatron-core", "megatron-bridge", "maxtext"])
def test_sort_based_stacks_keep_the_permute_dispatch(name):
    from simulator.specs.frameworks_loading import load_framework
    assert load_framework(name).moe.dispatch == "permute"
