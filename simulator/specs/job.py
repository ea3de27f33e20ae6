"""What is trained on what: the fixed part of an evaluation (the layouts vary)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .hardware import HardwareProfile
from .model import ModelSpec
from .network import NetworkConditions
from .training import TrainingSpec


@dataclass(frozen=True)
class Job:
    """Model, hardware, training and device count: everything but the layout (and the network conditions, a
    dedicated network with the profile's tiers unless stated)."""

    model: ModelSpec
    hardware: HardwareProfile
    training: TrainingSpec
    num_devices: int
    network: NetworkConditions = field(default_factory=NetworkConditions)
