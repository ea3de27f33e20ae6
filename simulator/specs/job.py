"""What is trained on what: the fixed part of an evaluation (the layouts vary)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .framework import FrameworkSpec
from .hardware import HardwareProfile
from .model import ModelSpec
from .network import NetworkConditions
from .training import TrainingSpec


@dataclass(frozen=True)
class Job:
    """Model, hardware, training, device count and software stack: everything but the layout (and the network
    conditions, a dedicated network with the profile's tiers unless stated).
    `framework` None: the default preset (specs.stack.DEFAULT_FRAMEWORK)."""

    model: ModelSpec
    hardware: HardwareProfile
    training: TrainingSpec
    num_devices: int
    framework: Optional[FrameworkSpec] = None
    network: NetworkConditions = field(default_factory=NetworkConditions)

    @property
    def stack(self) -> FrameworkSpec:
        """The framework this job runs under (the default preset when none is set)."""
        from .stack import as_framework
        return as_framework(self.framework)
