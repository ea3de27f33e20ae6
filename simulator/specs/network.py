"""A heterogeneous cluster: groups of devices joined by links with their own latency and bandwidth.

The hardware profile describes one homogeneous system (tiers from NVLink to the scale-out network). A
geo-distributed or mixed cluster is several such groups (a region, a rack, a cloud zone) whose links differ per
pair: SkipPipe (Blagoev et al. 2025, arXiv 2502.19913) trains over 12 cloud regions with a measured
region-to-region delay/bandwidth table. YAML uses human units (latency_ms, bandwidth_gb_per_s, 1 GB = 1e9 B);
the `*_s` / `*_per_s` properties give SI values. Pairs not listed use `default_link` (or fail when it is null).
"""
from __future__ import annotations

from typing import Literal, Optional

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


class NetworkConditions(Spec):
    """How the job's network behaves beyond its hardware profile: other jobs' traffic on shared tiers, the latency
    model of all-to-alls, and (discrete-event engine) a heterogeneous cluster its pipeline stages are placed on.

    The defaults reproduce a dedicated network with the profile's tiers."""

    background_occupancy: float = Field(0.0, ge=0.0, lt=1.0, description="share of every scale-out tier (all "
                                        "tiers but the first) another job's traffic occupies (0 = dedicated)")
    background_elastic: bool = Field(True, description="background traffic shares fairly while active (TCP/NCCL "
                                     "flows, max-min fair) instead of taking a constant share of the bandwidth")
    all_to_all_latency: Literal["per-tier", "per-peer"] = Field(
        "per-tier", description="latency of an all-to-all: one alpha per tier crossed (all peers posted at once) "
                                "or one alpha per peer message (what makes flat all-to-alls slow at scale, Tutel)")
    cluster: Optional[HeterogeneousCluster] = Field(None, description="device groups joined by their own links "
                                                    "(discrete-event engine: pipeline hops between groups)")
    stage_groups: Optional[list[str]] = Field(None, description="the cluster group each pipeline stage runs in "
                                              "(pp entries); default: stages fill the groups in order")

    @model_validator(mode="after")
    def _groups(self):
        if self.stage_groups is not None:
            if self.cluster is None:
                raise ValueError("stage_groups needs a cluster")
            names = [g.name for g in self.cluster.groups]
            bad = [g for g in self.stage_groups if g not in names]
            if bad:
                raise ValueError(f"stage_groups {bad} are not groups of cluster '{self.cluster.name}' ({names})")
        return self

    def summary(self) -> dict:
        """JSON-ready description (the cluster by name, with its groups and the stage placement)."""
        d = self.model_dump(exclude={"cluster"})
        if self.cluster is not None:
            d["cluster"] = {"name": self.cluster.name, "groups": [g.name for g in self.cluster.groups]}
        return d

    def slowdown(self, dedicated_step_s: float, shared_step_s: float) -> dict:
        """The job's slowdown from the background traffic: its step on these shared tiers over its step on a
        dedicated network (both engines report it as `background`)."""
        return {"occupancy": self.background_occupancy, "elastic": self.background_elastic,
                "dedicated_step_time_s": dedicated_step_s, "slowdown": shared_step_s / dedicated_step_s}

    def dedicated(self) -> "NetworkConditions":
        """The same conditions without background traffic."""
        return self.model_copy(update={"background_occupancy": 0.0})

    @property
    def is_default(self) -> bool:
        """True when nothing differs from a dedicated network with the profile's tiers."""
        return self == NetworkConditions()

    def pipeline_groups(self, pp: int, devices_per_stage: int) -> list[str]:
        """The group of each of the pp pipeline stages: stage_groups, or the stages filling the cluster's groups
        in order (each stage takes devices_per_stage devices of the group it starts in)."""
        if self.cluster is None:
            raise ValueError("pipeline_groups needs a cluster")
        if self.stage_groups is not None:
            if len(self.stage_groups) != pp:
                raise ValueError(f"stage_groups has {len(self.stage_groups)} entries; the layout has pp = {pp}")
            return list(self.stage_groups)
        out, used = [], 0
        bounds = []
        for g in self.cluster.groups:
            bounds.append((used, used + g.num_devices, g.name))
            used += g.num_devices
        for s in range(pp):
            start = s * devices_per_stage
            name = next((n for lo, hi, n in bounds if lo <= start < hi), None)
            if name is None:
                raise ValueError(f"pipeline stage {s} starts at device {start}, beyond the cluster's {used} devices")
            out.append(name)
        return out
