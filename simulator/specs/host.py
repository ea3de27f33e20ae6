"""Memory tiers beyond the device: the host (CPU memory, its link to each device, CPU optimizer speed) and the
node's local NVMe. An optional `host:` block of a hardware profile; every field may be null (= unknown).

YAML uses human units (GB, GB/s, parameters per second); the `*_bytes` / `*_per_s` properties give SI values.
Capacities and bandwidths of the host and the NVMe are per node (shared by the node's devices); the host link
bandwidth is per device and per direction, optionally capped by a per-node total (a root complex or a shared
PCIe switch feeds several devices).
"""
from __future__ import annotations

from typing import Optional

from pydantic import Field, model_validator

from ..units import GIGA
from .base import Spec


class HostSpec(Spec):
    """The host side of one node: CPU memory, host link, NVMe, CPU Adam throughput. Null = unknown."""

    memory_gb: Optional[float] = Field(None, gt=0, description="host (CPU) memory per node, GB")
    memory_bandwidth_gb_per_s: Optional[float] = Field(
        None, gt=0, description="host memory bandwidth per node (all sockets, spec), GB/s")
    link_gb_per_s: Optional[float] = Field(
        None, gt=0, description="host link (PCIe / NVLink-C2C) bandwidth per device, one direction, spec, GB/s")
    link_efficiency: float = Field(
        1.0, gt=0, le=1, description="achieved fraction of link_gb_per_s for large pinned copies (measured where "
                                     "known, else 1.0)")
    link_node_gb_per_s: Optional[float] = Field(
        None, gt=0, description="cap on the sum of the node's device-host traffic, one direction, GB/s; null = "
                                "link_gb_per_s x devices per node (no shared upstream link)")
    nvme_gb: Optional[float] = Field(None, gt=0, description="local NVMe capacity per node, GB")
    nvme_read_gb_per_s: Optional[float] = Field(None, gt=0, description="local NVMe read bandwidth per node, GB/s")
    nvme_write_gb_per_s: Optional[float] = Field(None, gt=0, description="local NVMe write bandwidth per node, GB/s")
    cpu_adam_params_per_s: Optional[float] = Field(
        None, gt=0, description="parameters per second a node's CPUs update with mixed-precision Adam "
                                "(DeepSpeed CPU-Adam class implementation)")
    source: str = Field(min_length=1, description="where each figure comes from (datasheet, measurement, derived)")

    @model_validator(mode="after")
    def _node_cap(self):
        if self.link_node_gb_per_s is not None and self.link_gb_per_s is None:
            raise ValueError("link_node_gb_per_s needs link_gb_per_s (the per-device link) as well")
        return self

    @property
    def memory_bytes(self) -> Optional[float]:
        return None if self.memory_gb is None else self.memory_gb * GIGA

    @property
    def memory_bandwidth_bytes_per_s(self) -> Optional[float]:
        return None if self.memory_bandwidth_gb_per_s is None else self.memory_bandwidth_gb_per_s * GIGA

    @property
    def link_bytes_per_s(self) -> Optional[float]:
        """Achieved per-device host-link bandwidth (spec x link_efficiency), bytes/s, before node sharing."""
        return None if self.link_gb_per_s is None else self.link_gb_per_s * self.link_efficiency * GIGA

    @property
    def link_node_bytes_per_s(self) -> Optional[float]:
        """Achieved per-node cap of device-host traffic (x link_efficiency), bytes/s; None = no shared cap."""
        return None if self.link_node_gb_per_s is None else self.link_node_gb_per_s * self.link_efficiency * GIGA

    @property
    def nvme_bytes(self) -> Optional[float]:
        return None if self.nvme_gb is None else self.nvme_gb * GIGA

    @property
    def nvme_read_bytes_per_s(self) -> Optional[float]:
        return None if self.nvme_read_gb_per_s is None else self.nvme_read_gb_per_s * GIGA

    @property
    def nvme_write_bytes_per_s(self) -> Optional[float]:
        return None if self.nvme_write_gb_per_s is None else self.nvme_write_gb_per_s * GIGA
