"""Where model states and activations live beyond the device: the offload choices of one layout.

DeepSpeed names (zero_optimization.offload_optimizer / offload_param .device = none | cpu | nvme). Activation
checkpoints go to CPU memory only (ZeRO-Infinity sec. 5.1). The engines' own layout fields come later; this spec is
what costs.offload and planning.offload take today.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Spec

Tier = Literal["none", "cpu", "nvme"]


class Offload(Spec):
    """Offload choices: optimizer state (+ fp32 gradients), fp16 parameters (ZeRO-3 only), activation checkpoints."""

    optimizer: Tier = Field("none", description="ZeRO-Offload: optimizer state and the CPU Adam step on the host "
                                                "(cpu) or the state on NVMe (nvme, ZeRO-Infinity)")
    params: Tier = Field("none", description="ZeRO-3 Offload / ZeRO-Infinity: fp16 parameter partitions on the host "
                                             "or NVMe, prefetched over the host link")
    activations: Literal["none", "cpu"] = Field("none", description="activation checkpoints in host memory")
    delayed_update: bool = Field(False, description="ZeRO-Offload's one-step delayed parameter update: the CPU step "
                                                    "overlaps the next step's forward and backward")

    @property
    def any(self) -> bool:
        return self.optimizer != "none" or self.params != "none" or self.activations != "none"
