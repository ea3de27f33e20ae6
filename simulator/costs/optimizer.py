"""The optimizer step: mixed-precision Adam over the parameters a device owns, plus the passes over the gradient
buffer a device holds (zeroing, averaging, norm), all memory bound.

The step as Megatron-Core runs it (NVIDIA/Megatron-LM, megatron/core):
- distributed/param_and_grad_buffer.py: `reset()` zeroes the whole gradient buffer (`grad_data.zero_()`) every
  iteration, and before the data-parallel reduction the bucket is scaled in place by the gradient scaling factor
  1/dp (`bucket.grad_data *= gradient_scaling_factor`, unless average_in_collective) after an optional NaN/Inf
  check that takes each bucket's norm (`check_grads`, check_for_nan_in_grad: on by default in Megatron-LM's
  training arguments, --no-check-for-nan-in-loss-and-grad); all touch every gradient the rank holds, not only its
  ZeRO shard. Which of the optional passes a stack runs is a framework fact (presets, buffers.grad_*).
- optimizer/distrib_optimizer.py `_copy_model_grads_to_main_grads`: the fp32 main gradient of the shard is a view of
  the fp32 gradient buffer (a cast copy when gradients are reduced in bf16).
- optimizer/clip_grads.py `get_grad_norm_fp32`: `multi_tensor_l2norm` reads every main gradient of the shard; the
  clipping scale (`multi_tensor_scale`) runs only when the norm exceeds the limit (`clip_coeff < 1.0`), so it is not
  charged.
- optimizer/optimizer.py `MixedPrecisionOptimizer.step`: the fused Adam (apex / Transformer Engine
  `multi_tensor_adam`) reads the fp32 gradient, master weight, m and v and writes master weight, m and v; then
  `_copy_main_params_to_model_params` reads the fp32 master shard and writes the low-precision weight.
DeepSpeed's ZeRO and PyTorch DDP/FSDP run the same passes (bucket averaging, norm, Adam, copy-back); under ZeRO >= 2
the rank holds only its shard of the gradients, so the buffer passes shrink with it.
SimuMax (MooreThreads/SimuMax, simumax/core/perf_llm.py `_compute_optim_time`) charges the same passes and matches
its measured B200 optimizer steps (18-33 ms on 70B/405B TP2/TP4 slices).
"""
from __future__ import annotations

import numpy as np

from .compute import memory_bound_time_s

#: Bytes of fp32 state streamed per owned parameter by the norm, the fused Adam and the copy-back: the gradient-norm
#: read (4), Adam's reads of grad, master, m, v (16) and writes of master, m, v (12), the copy-back's master read
#: (4). The low-precision weight write (weight_bytes) and the bf16-to-fp32 gradient cast come on top.
OPTIMIZER_BYTES_PER_PARAM = 36.0

#: Fp32 bytes of the main gradient Adam reads (the cast copy's target when gradients are reduced in lower precision).
MAIN_GRAD_BYTES = 4.0


def owned_params(dense, expert, zero, dense_dp, expert_dp):
    """Parameters whose optimizer state a device updates: all it holds, or its 1/dp shard under ZeRO >= 1
    (dense over DP x CP, experts over the expert-data-parallel group).

    Source: Rajbhandari et al. 2020 (ZeRO, arXiv 1910.02054) sec. 5.1 (optimizer state partitioning)."""
    return dense / np.where(zero >= 1, dense_dp, 1.0) + expert / np.where(zero >= 1, expert_dp, 1.0)


def optimizer_step_bytes(dense, expert, zero, dense_dp, expert_dp, grad_bytes=4.0, weight_bytes=2.0,
                         buffer_passes=(True, True, False)):
    """HBM bytes of one optimizer step. Per held gradient, where the stack keeps a persistent gradient buffer
    (`buffer_passes` = (zeroed, averaged, checked), the framework preset's buffers.grad_buffer_passes,
    grad_average_pass, grad_check_pass): the zeroing (write, grad_bytes), the NaN/Inf check norm (read, grad_bytes)
    and, where the data-parallel group is larger than one, the in-place 1/dp averaging (read + write, 2
    grad_bytes). Per owned parameter: OPTIMIZER_BYTES_PER_PARAM of fp32 state, the weight write (weight_bytes) and,
    where gradients are kept below fp32, the cast to the fp32 main gradient (grad_bytes read + 4 written).

    Source: the Megatron-Core passes listed in this module's docstring (param_and_grad_buffer.py reset, check_grads
    and gradient_scaling_factor, distrib_optimizer.py, clip_grads.py get_grad_norm_fp32, optimizer.py step)."""
    zeroed, averaged, checked = (float(bool(f)) for f in buffer_passes)
    held_d = dense / np.where(zero >= 2, dense_dp, 1.0)
    held_e = expert / np.where(zero >= 2, expert_dp, 1.0)
    scaled = held_d * (np.asarray(dense_dp) > 1) + held_e * (np.asarray(expert_dp) > 1)
    buffer_bytes = zeroed * ((held_d + held_e) * grad_bytes * (1.0 + checked) + averaged * scaled * 2.0 * grad_bytes)
    cast = (grad_bytes + MAIN_GRAD_BYTES) if grad_bytes < MAIN_GRAD_BYTES else 0.0
    own = owned_params(dense, expert, zero, dense_dp, expert_dp)
    return buffer_bytes + own * (OPTIMIZER_BYTES_PER_PARAM + weight_bytes + cast)


def grad_buffer_passes(framework) -> tuple:
    """(zeroed, averaged, checked): which passes over the persistent gradient buffer the stack runs, from the
    framework preset's buffers (grad_buffer_passes, grad_average_pass, grad_check_pass); (True, True, False) where
    no preset is given (PyTorch DDP: zeroed buffer, gradients divided by the world size before the all-reduce).

    Source: simulator/presets/frameworks/*.yaml (buffers.source)."""
    if framework is None:
        return True, True, False
    b = framework.buffers
    return bool(b.grad_buffer_passes), bool(b.grad_average_pass), bool(b.grad_check_pass)


def optimizer_step_time_s(dense, expert, zero, dense_dp, expert_dp, hbm_bytes_per_s, memory_efficiency,
                          grad_bytes=4.0, weight_bytes=2.0, buffer_passes=(True, True, False)):
    """Time of one optimizer step: optimizer_step_bytes streamed at the achieved HBM bandwidth
    (`memory_efficiency`: the device's measured elementwise fraction, costs.compute.KernelRates).

    Source: Kingma & Ba 2015 (Adam); the Megatron-Core step passes in this module's docstring."""
    total = optimizer_step_bytes(dense, expert, zero, dense_dp, expert_dp, grad_bytes, weight_bytes, buffer_passes)
    return memory_bound_time_s(total, hbm_bytes_per_s, memory_efficiency)
