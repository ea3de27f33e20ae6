"""Shared and heterogeneous networks: a tier busy with another job's traffic, and links between device groups.

Pure functions; wiring into the discrete-event engine's ports (a second job replayed on the same Resources) is
separate. A background job occupies a tier either as a constant-rate stream (it takes a fraction u of the
bandwidth all the time) or elastically (it is active a fraction u of the time and then shares the link fairly
with the foreground's flows, as TCP/NCCL flows do under max-min fairness).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import SpecError
from ..specs.network import HeterogeneousCluster
from .placement import TierArrays


def effective_bandwidth_bytes_per_s(bandwidth_bytes_per_s, occupancy, elastic: bool = True,
                                    background_flows: int = 1):
    """Bandwidth a job gets on a tier that background traffic occupies a fraction `occupancy` of.

    Constant-rate background: B (1 - u). Elastic background active a fraction u of the time with
    `background_flows` flows: while active, the foreground's one flow gets 1/(1 + flows) of B (max-min fair
    share), so its time-averaged rate is B ((1 - u) + u / (1 + flows)).
    Source: max-min fair sharing of a bottleneck link (Bertsekas & Gallager, "Data Networks", 2nd ed.,
    sec. 6.5.2); the time average assumes transfers long against the background's on/off periods."""
    u = np.asarray(occupancy, dtype=float)
    if np.any((u < 0) | (u > 1)):
        raise SpecError(f"occupancy = {occupancy}: must lie in [0, 1]")
    b = np.asarray(bandwidth_bytes_per_s, dtype=float)
    if elastic:
        return b * ((1.0 - u) + u / (1.0 + background_flows))
    return b * np.maximum(0.0, 1.0 - u)


def tiers_with_background(tiers: TierArrays, occupancy, elastic: bool = True, background_flows: int = 1):
    """A copy of `tiers` whose per-tier bandwidths are reduced by background occupancy (one value per tier, or
    one for all). Feed it to topology.collectives to cost a job on a shared network.
    Source: effective_bandwidth_bytes_per_s."""
    occ = np.broadcast_to(np.asarray(occupancy, dtype=float), tiers.bandwidth_bytes_per_s.shape)
    bw = effective_bandwidth_bytes_per_s(tiers.bandwidth_bytes_per_s, occ, elastic, background_flows)
    return replace(tiers, bandwidth_bytes_per_s=np.asarray(bw, dtype=float))


def link_time_s(cluster: HeterogeneousCluster, a: str, b: str, size_bytes, occupancy=0.0):
    """Point-to-point transfer between device groups a and b: latency + size / bandwidth of their link, the
    bandwidth reduced by background occupancy (elastic). Source: alpha-beta model (Hockney 1994); SkipPipe
    schedulers/communication_costs.py delay_map (delay + size / bandwidth)."""
    ln = cluster.link(a, b)
    bw = effective_bandwidth_bytes_per_s(ln.bandwidth_bytes_per_s, occupancy)
    return ln.latency_s + np.asarray(size_bytes, dtype=float) / bw


def pipeline_hop_times_s(cluster: HeterogeneousCluster, stage_groups: list[str], size_bytes, occupancy=0.0):
    """Transfer time of one activation (or gradient) message across each stage boundary of a pipeline whose
    stage i runs in group stage_groups[i]: array of len(stage_groups) - 1 times (inside a group: default_link).
    Source: link_time_s; stage placement over regions as in SkipPipe arXiv 2502.19913 sec. 3."""
    return np.array([link_time_s(cluster, stage_groups[i], stage_groups[i + 1], size_bytes, occupancy)
                     for i in range(len(stage_groups) - 1)])
