"""Training spec: what one optimizer step processes and in which precision."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from ..errors import SpecError
from .base import MAX_BATCH, MAX_SEQ_LEN, Spec
from .routing import RoutingSpec

TrainDtype = Literal["bf16", "fp16", "fp8", "int8", "fp32"]


class TrainingSpec(Spec):
    """Sequence length, global batch (sequences per optimizer step), and precisions.

    `grad_dtype` is the dtype gradients are accumulated and reduced in (Megatron keeps fp32 `main_grad`
    by default); the optimizer is mixed-precision Adam (fp32 master weights, m and v: 12 bytes/param).
    """

    seq_len: int = Field(ge=1, le=MAX_SEQ_LEN, description="tokens per training sequence")
    global_batch: int = Field(ge=1, le=MAX_BATCH, description="sequences per optimizer step")
    dtype: TrainDtype = Field("bf16", description="GEMM precision; fp8/int8 keep bf16 activations and weights")
    grad_dtype: Literal["fp32", "bf16"] = Field("fp32", description="gradient accumulation/reduction dtype")
    optimizer: Literal["adam"] = "adam"
    moe_routing: Optional[RoutingSpec] = Field(
        None, description="how tokens spread over the experts (MoE): a routing model or a measured max-over-mean; "
                          "null = every expert rank receives exactly the mean (no routing imbalance)")

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.global_batch


def resolve_seq_len(model, seq_len: int | None) -> int:
    """`seq_len`, or the model's max_seq_len when it is None: the one definition of the sequence-length default
    (SpecError when the model has none)."""
    if seq_len is not None:
        return seq_len
    if model.max_seq_len is None:
        raise SpecError(f"seq_len is required: model '{model.name}' has no max_seq_len")
    return model.max_seq_len
