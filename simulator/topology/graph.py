"""The cluster as a networkx graph: devices, one switch per domain of each network tier, and the links between.

Node keys: `("device", d)` for device d, `("switch", k, i)` for the switch of domain i of tier k (tier 0 is the
scale-up domain, e.g. the NVSwitch of an 8-GPU node; the last tier is the whole-cluster fabric, one switch).
Each device has one edge to the switch of its domain on every tier: its port on that tier (NVLink port, NIC),
with the profile's per-device, one-direction achieved bandwidth (`bandwidth_bytes_per_s`, efficiency applied)
and per-step latency. Devices fill domains in rank order (topology.placement), so device d sits in domain
d // domain_size of each tier. Ports are the contended resources of the discrete-event engine: concurrent
transfers of one device on one tier share its port.

`ClusterPorts` is the same port structure by arithmetic, without building a graph: a device's port on tier k
leads to switch (k, d // domain_size_k). The discrete-event engine takes its ports from it (a simulation needs
nothing else of the graph; building the graph, and importing networkx, cost more than the replay at 12k
devices); `ports()` accepts either, and a test checks that both give the same ports. The networkx graph stays
the model of the topology for inspection, export and tests.

`group_tier_shares` says which tiers a parallel group's collective crosses and how its bandwidth time divides
among them, from the same level decomposition the cost functions use (topology.collectives).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional, Union

import numpy as np

from ..specs.hardware import HardwareProfile
from .collectives import level_bandwidth
from .placement import TierArrays, group_levels, tier_arrays

if TYPE_CHECKING:       # networkx (~0.2 s to import) loads only when a graph is built: group_tier_shares needs none
    import networkx as nx


def device_node(d: int) -> tuple:
    return ("device", int(d))


def switch_node(tier: int, domain: int) -> tuple:
    return ("switch", int(tier), int(domain))


def cluster_graph(hardware: HardwareProfile, num_devices: int, devices: Iterable[int] | None = None) -> nx.Graph:
    """Graph of `num_devices` devices of `hardware` (or only of `devices`, with the switches they reach).

    Building only the devices a simulation touches keeps 10,000-device clusters cheap; the structure of every
    included device is the same as in the full graph.
    """
    if num_devices < 1:
        raise ValueError(f"num_devices ({num_devices}) must be >= 1")
    tiers = tier_arrays(hardware)
    import networkx as nx
    g = nx.Graph(hardware=hardware.name, num_devices=int(num_devices), devices_per_node=hardware.devices_per_node,
                 tier_names=[t.name for t in hardware.tiers])
    for k, t in enumerate(hardware.tiers):
        g.graph.setdefault("tiers", []).append({
            "name": t.name, "domain_size": t.domain_size, "topology": t.topology,
            "bandwidth_bytes_per_s": float(tiers.bandwidth_bytes_per_s[k]), "latency_s": float(tiers.latency_s[k])})
    ids = range(num_devices) if devices is None else sorted({int(d) for d in devices})
    for d in ids:
        if not 0 <= d < num_devices:
            raise ValueError(f"device {d} outside 0..{num_devices - 1}")
        dev = device_node(d)
        g.add_node(dev, kind="device", index=d, node=d // hardware.devices_per_node)
        for k, t in enumerate(hardware.tiers):
            domain = 0 if t.domain_size is None else d // t.domain_size
            sw = switch_node(k, domain)
            if sw not in g:
                size = num_devices if t.domain_size is None else t.domain_size
                g.add_node(sw, kind="switch", tier=k, tier_name=t.name, domain=domain, domain_size=size)
            g.add_edge(dev, sw, kind="port", tier=k, tier_name=t.name,
                       bandwidth_bytes_per_s=float(tiers.bandwidth_bytes_per_s[k]),
                       latency_s=float(tiers.latency_s[k]))
    return g


@dataclass(frozen=True)
class ClusterPorts:
    """The ports of every device of a cluster, by arithmetic: the port structure of `cluster_graph` (same node
    keys, same order) without building the graph. `domain_sizes[k]` is tier k's domain size (None: the whole
    cluster, one switch)."""

    num_devices: int
    domain_sizes: tuple[Optional[int], ...]

    def ports(self, device: int) -> list[tuple[int, tuple, tuple]]:
        """(tier, device node, switch node) of each port of `device`, fastest tier first."""
        d = int(device)
        if not 0 <= d < self.num_devices:
            raise ValueError(f"device {d} outside 0..{self.num_devices - 1}")
        dev = device_node(d)
        return [(k, dev, switch_node(k, 0 if size is None else d // size))
                for k, size in enumerate(self.domain_sizes)]


def cluster_ports(hardware: HardwareProfile, num_devices: int) -> ClusterPorts:
    """The ports of `num_devices` devices of `hardware` (what `cluster_graph` would hold, without networkx)."""
    if num_devices < 1:
        raise ValueError(f"num_devices ({num_devices}) must be >= 1")
    return ClusterPorts(int(num_devices), tuple(t.domain_size for t in hardware.tiers))


def ports(g: Union[nx.Graph, ClusterPorts], device: int) -> list[tuple[int, tuple, tuple]]:
    """(tier, device node, switch node) of each port of `device`, fastest tier first (from the cluster graph or
    its arithmetic ClusterPorts)."""
    if isinstance(g, ClusterPorts):
        return g.ports(device)
    dev = device_node(device)
    out = [(data["tier"], dev, sw) for sw, data in g[dev].items() if data.get("kind") == "port"]
    return sorted(out)


def common_tier(g: nx.Graph, a: int, b: int) -> int:
    """The fastest tier on which devices a and b share a switch (the tier a transfer between them uses)."""
    if a == b:
        return 0
    sa = {data["tier"]: sw for sw, data in g[device_node(a)].items()}
    sb = {data["tier"]: sw for sw, data in g[device_node(b)].items()}
    for k in sorted(sa):
        if sa[k] == sb.get(k):
            return k
    raise ValueError(f"devices {a} and {b} share no switch")


def group_tier_shares(n: float, stride: float, tiers: TierArrays) -> tuple[tuple[int, float], ...]:
    """Tiers a collective over n ranks `stride` apart crosses, with the fraction of its bandwidth time spent on
    each: level k of fan-out f_k moves (f_k - 1)/f_k of the data left after the inner levels at tier k's
    bandwidth (hierarchical ring, as in topology.collectives). Fractions sum to 1; () for a group of one."""
    levels = [float(np.asarray(f).reshape(-1)[0]) for f in group_levels(float(n), float(np.asarray(stride, dtype=float).reshape(-1)[0]), tiers)]
    data = 1.0
    parts = []
    for k, f in enumerate(levels):
        if f > 1.0:
            bw = float(np.asarray(level_bandwidth(tiers, k, f)).reshape(-1)[0])
            parts.append((k, (f - 1.0) / f * data / bw))
        data /= max(f, 1.0)
    total = sum(w for _, w in parts)
    return tuple((k, w / total) for k, w in parts) if total > 0 else ()
