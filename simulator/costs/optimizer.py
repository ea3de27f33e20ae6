"""The optimizer step: mixed-precision Adam over the parameters a device owns, memory bound."""
from __future__ import annotations

import numpy as np

from .compute import memory_bound_time_s

#: Bytes the optimizer step streams per parameter it owns: read fp32 grad (4), read+write fp32 master, m, v
#: (24), write the bf16 weight (2), plus the gradient-norm pass (4). Memory bound.
OPTIMIZER_BYTES_PER_PARAM = 34.0


def owned_params(dense, expert, zero, dense_dp, expert_dp):
    """Parameters whose optimizer state a device updates: all it holds, or its 1/dp shard under ZeRO >= 1
    (dense over DP x CP, experts over the expert-data-parallel group).

    Source: Rajbhandari et al. 2020 (ZeRO, arXiv 1910.02054) sec. 5.1 (optimizer state partitioning)."""
    return dense / np.where(zero >= 1, dense_dp, 1.0) + expert / np.where(zero >= 1, expert_dp, 1.0)


def optimizer_step_time_s(dense, expert, zero, dense_dp, expert_dp, hbm_bytes_per_s, memory_bound):
    """Time of one Adam step: OPTIMIZER_BYTES_PER_PARAM bytes streamed per owned parameter at the achieved HBM
    bandwidth.

    Source: Kingma & Ba 2015 (Adam); byte count of Megatron-LM's fused Adam with fp32 main params and grads
    (apex/Transformer Engine multi-tensor apply)."""
    own = owned_params(dense, expert, zero, dense_dp, expert_dp)
    return memory_bound_time_s(own * OPTIMIZER_BYTES_PER_PARAM, hbm_bytes_per_s, memory_bound)
