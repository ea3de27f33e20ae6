"""What is trained on what: the fixed part of an evaluation (the layouts vary)."""
from __future__ import annotations

from dataclasses import dataclass

from .hardware import HardwareProfile
from .model import ModelSpec
from .training import TrainingSpec


@dataclass(frozen=True)
class Job:
    """Model, hardware, training and device count: everything but the layout."""

    model: ModelSpec
    hardware: HardwareProfile
    training: TrainingSpec
    num_devices: int
