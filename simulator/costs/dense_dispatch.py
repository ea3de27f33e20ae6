"""Dense-einsum MoE dispatch (GShard Algorithm 2 as DeepSpeed-MoE ran it in 2021-2022): matmul FLOPs of the
dispatch and combine einsums, which of their backward GEMMs exist, and the bytes the gate's one-hot passes move.

DeepSpeed's MOELayer.forward (deepspeed/moe/sharded_moe.py, v0.5.x-v0.6.x; e.g. microsoft/DeepSpeed 07887f663,
2021-12-12) on the S = micro-batch x sequence tokens of a rank, E experts, capacity C, model dim M:

- TopKGate.forward casts the input to fp32 and runs its router in fp32 ("everything is in fp32 in this function");
  top1gating builds, over [S, E]: softmax, argmax, one_hot (int64), the token counts (copied to the host), the
  aux-loss means, random token selection (a uniform draw, mask x draw, topk over the tokens, a scatter, mask x
  kept), the locations cumsum - 1, locations x mask, their row sum, mask.float(), gates x mask; then over
  [S, E, C]: combine_weights = einsum("se,sc->sec", gates, one_hot(locations, C).float()) in fp32 and
  dispatch_mask = combine_weights.bool();
- the dispatch einsum "sec,sm->ecm" on dispatch_mask.type_as(input) (an [E C x S] @ [S x M] matmul; the mask
  carries no gradient, so its backward is the input gradient alone), the all-to-all of the [E, C, M] buffer, the
  experts on E C rows, the all-to-all back, and the combine einsum "sec,ecm->sm" on
  combine_weights.type_as(input) ([S x E C] @ [E C x M]; its backward computes the gradients of both the combine
  weights and the expert output: two GEMMs), whose combine-weight gradient runs back through the fp16 -> fp32
  cast and the "se,sc->sec" product to the gates.

torch.einsum (aten sumproduct_pair) turns both einsums into one bmm each on views ([S, E, C] permuted to
[E C, S] is a transposed view), so neither copies its operands. Capacity: costs.moe_routing.expert_capacity_tokens
(DeepSpeed _capacity: ceil(S / E x capacity factor), doubled for top-2, at least min_capacity).
All functions are pure and broadcast over numpy arrays.
"""
from __future__ import annotations

import numpy as np

#: Backward GEMMs of the dispatch einsum "sec,sm->ecm": the input gradient alone (d input = mask @ d out,
#: (S x E C) @ (E C x M)); the boolean dispatch mask requires no gradient, so autograd runs no second GEMM (torch bmm backward computes
#: only the inputs that require grad). MaxText's dense_matmul alike: dispatch_mask = combine_mask.astype(bool)
#: (AI-Hypercomputer/maxtext layers/moe.py generate_masks), whose cast to bool has no cotangent.
DISPATCH_BACKWARD_GEMMS = 1
#: Backward GEMMs of the combine einsum "sec,ecm->sm": d expert_output = combine^T @ d out and d combine =
#: d out @ expert_output^T (the combine weights carry the gates' gradient).
COMBINE_BACKWARD_GEMMS = 2

#: Bytes per [S, E] element a top-1 gate moves in its forward, counted from top1gating (DeepSpeed 07887f663), each
#: kernel's reads + writes with fp32 gates (4 B), int64 masks and locations (8 B): softmax 4 + 4, argmax 4,
#: one_hot 8, token-count sum 8, mean of the gates 4, mask.float() and its mean 8 + 4 + 4, the uniform draw 4,
#: mask x draw 8 + 4 + 4, topk over the tokens 4, zeros_like 8, mask x kept 16 + 8, cumsum 8 + 8, minus one 8 + 8,
#: locations x mask 16 + 8, row sum 8, mask.float() 8 + 4, gates x mask 8 + 4 = 192.
GATE_SE_FWD_BYTES = 192.0
#: Bytes per [S, E] element of the gate's backward: gates x mask (read 4 + 8, write 4) and the softmax backward
#: (read 4 + 4, write 4) = 28.
GATE_SE_BWD_BYTES = 28.0


def dense_einsum_flops(tokens, num_experts, capacity, hidden):
    """Matmul FLOPs of one dense dispatch or combine einsum over a group of S tokens: 2 S E C M (dispatch
    "sec,sm->ecm" is (E C x S) @ (S x M), combine "sec,ecm->sm" is (S x E C) @ (E C x M); both reduce or produce
    the S x E C one-hot tensor against an M-wide operand).

    Source: Lepikhin et al. 2020 (GShard, arXiv 2006.16668) Algorithm 2; DeepSpeed deepspeed/moe/sharded_moe.py
    MOELayer.forward (07887f663) and its einsum helper's matmul rewrites of the two rules."""
    S, E, C, M = (np.asarray(x, dtype=float) for x in (tokens, num_experts, capacity, hidden))
    return 2.0 * S * E * C * M


def gate_mask_bytes_per_slot(act_bytes: float, gate_bytes: float = 4.0) -> tuple[float, float]:
    """(forward, backward) bytes per [S, E, C] element the gate and the einsums' operand casts move outside the
    matmuls, with the combine tensor built in `gate_bytes` (fp32: 4) and cast to the activation dtype
    (`act_bytes`):

    forward: write combine_weights (g), .bool() (read g, write 1), dispatch_mask.type_as(input) (read 1, write a),
    combine_weights.type_as(input) (read g, write a): 3 g + 2 + 2 a (18 B for fp32 gates and fp16 activations);
    backward: the combine-weight gradient cast back to the gate dtype (read a, write g) and the "se,sc->sec"
    product's gradient to the gates (a bmm that reads the g-byte gradient once): a + 2 g (10 B).
    The combine-weight gradient itself is a GEMM output (COMBINE_BACKWARD_GEMMS), priced with the GEMMs.

    Source: DeepSpeed deepspeed/moe/sharded_moe.py top1gating / top2gating and MOELayer.forward (07887f663)."""
    g, a = float(gate_bytes), float(act_bytes)
    return 3.0 * g + 2.0 + 2.0 * a, a + 2.0 * g


def gate_stream_bytes(tokens, num_experts, capacity, hidden, top_k, act_bytes: float,
                      gate_bytes: float = 4.0) -> tuple:
    """(forward, backward) bytes one dense-einsum gate moves in memory-bound kernels for a group of S tokens:
    the [S, E, C] one-hot passes (gate_mask_bytes_per_slot), the [S, E] routing passes (GATE_SE_FWD_BYTES and
    GATE_SE_BWD_BYTES, per routed choice: top-2 gating repeats the mask, cumsum and location passes for its second
    expert), and the router input's cast to the gate dtype and its gradient's cast back (S M (a + g) each way).

    Source: DeepSpeed deepspeed/moe/sharded_moe.py TopKGate.forward (input.float(), fp32 wg), top1gating,
    top2gating (07887f663); the byte counts above."""
    S, E, C, M, k = (np.asarray(x, dtype=float) for x in (tokens, num_experts, capacity, hidden, top_k))
    slot_f, slot_b = gate_mask_bytes_per_slot(act_bytes, gate_bytes)
    cast = S * M * (float(act_bytes) + float(gate_bytes))
    fwd = S * E * C * slot_f + k * S * E * GATE_SE_FWD_BYTES + cast
    bwd = S * E * C * slot_b + k * S * E * GATE_SE_BWD_BYTES + cast
    return fwd, bwd
