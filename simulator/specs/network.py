"""A heterogeneous cluster: groups of devices joined by links with their own latency and bandwidth.

The hardware profile describes one homogeneous system (tiers from NVLink to the scale-out network). A
geo-distributed or mixed cluster is several such groups (a region, a rack, a cloud zone) whose links differ per
pair: SkipPipe (Blagoev et al. 2025, arXiv 2502.19913) trains over 12 cloud regions with a measured
region-to-region delay/bandwidth table. YAML uses human units (latency_ms, bandwidth_gb_per_s, 1 GB = 1e9 B);
the `*_s` / `*_per_s` properties give SI values. Pairs not listed use `default_link` (or fail when it is null).
"""
from __future__ import annotations

from typing import Optional

from pydantic import Field, model_validator

from ..units import GIGA, MS
from .base import Spec


class LinkSpec(Spec):
    """A point-to-point path between two device groups (one direction's usable bandwidth)."""

    latency_ms: float = Field(ge=0, description="one-way delay, ms")
    bandwidth_gb_per_s: float = Field(gt=0, description="usable bandwidth of the path, GB/s (1e9 B/s)")
    source: str = Field("", description="where the figures come from")

    @property
    def latency_s(self) -> float:
        return self.latency_ms * MS

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_gb_per_s * GIGA


class GroupLink(LinkSpec):
    """A link between groups `a` and `b` (symmetric)."""

    a: str
    b: str


class DeviceGroup(Spec):
    """Devices that share one location and reach each other on their own hardware profile's tiers."""

    name: str = Field(min_length=1)
    num_devices: int = Field(ge=1)
    hardware: Optional[str] = Field(None, description="hardware profile name of the group's devices")
    notes: str = ""


class HeterogeneousCluster(Spec):
    """Device groups and the links between them."""

    name: str = Field(min_length=1)
    source: str = Field(min_length=1)
    groups: list[DeviceGroup] = Field(min_length=1)
    links: list[GroupLink] = Field(default_factory=list)
    default_link: Optional[LinkSpec] = Field(None, description="link of pairs not listed and inside a group")
    notes: str = ""

    @model_validator(mode="after")
    def _links(self):
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"groups: duplicate group name(s) {dup}")
        seen = set()
        for ln in self.links:
            for end in (ln.a, ln.b):
                if end not in names:
                    raise ValueError(f"links: '{end}' in link {ln.a}-{ln.b} is not a group (groups: {names})")
            if ln.a == ln.b:
                raise ValueError(f"links: {ln.a}-{ln.b} joins a group to itself; use default_link")
            key = frozenset((ln.a, ln.b))
            if key in seen:
                raise ValueError(f"links: the pair {ln.a}-{ln.b} is listed twice")
            seen.add(key)
        return self

    @property
    def num_devices(self) -> int:
        return sum(g.num_devices for g in self.groups)

    def link(self, a: str, b: str) -> LinkSpec:
        """The link between groups a and b (either order); default_link inside a group or for unlisted pairs."""
        for ln in self.links:
            if {ln.a, ln.b} == {a, b} and a != b:
                return ln
        if self.default_link is None:
            raise ValueError(f"no link between '{a}' and '{b}' and no default_link")
        return self.default_link
