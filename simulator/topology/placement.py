"""Rank placement: which network tiers a parallel group crosses.

Ranks are numbered with the placement order's first axis innermost (Megatron `tp-cp-ep-dp-pp`: TP neighbours
are consecutive ranks, PP neighbours are tp*cp*dp apart). Devices fill nodes and tier domains in rank order, so a
group of `n` ranks spaced `stride` apart has min(n, max(1, D // stride)) members inside one domain of D devices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def axis_strides(order: str, tp, cp, ep, dp, pp) -> dict:
    """Rank stride of each axis under a placement order (innermost first). Works on arrays.

    EP is carved out of DP: with ep right before dp, the ep ranks are the innermost part of each DP group,
    so the DP group keeps the ep stride and the expert-data-parallel group (dp/ep replicas of each expert)
    strides over ep. EP wider than DP is carved out of TP x DP with expert TP etp = tp*dp/ep: under Megatron's
    order (tp-cp-ep-dp-...) its expert ranks are etp-ep-dp-pp (Megatron-Core parallel_state.py, expert rank
    generator), so the EP members are consecutive ranks etp apart and the expert-DP group strides over etp*ep.
    """
    sizes = {"tp": tp, "cp": cp, "dp": dp, "pp": pp}
    strides = {}
    acc = 1
    for axis in order.split("-"):
        if axis == "ep":
            continue
        strides[axis] = acc
        acc = acc * sizes[axis]
    strides["ep"] = strides["dp"]
    strides["edp"] = strides["dp"] * ep
    if order.startswith("tp-cp-ep-dp"):
        wide = np.mod(dp, ep) != 0
        etp = np.maximum(1, np.asarray(tp) * dp / ep)
        strides["ep"] = np.where(wide, etp, strides["ep"])
        strides["edp"] = np.where(wide, etp * ep, strides["edp"])
    return strides


@dataclass(frozen=True)
class TierArrays:
    """Network tiers of a profile as arrays, fastest first; the last domain is infinite."""

    domain_size: np.ndarray          # devices per domain (inf for the last tier)
    bandwidth_bytes_per_s: np.ndarray  # achieved: per-device one-direction bandwidth x efficiency
    latency_s: np.ndarray
    torus_ndims: np.ndarray          # 0 for switched tiers, 2 or 3 for tori
    torus_side: np.ndarray           # devices along one torus dimension (1 for switched)
    call_latency_s: np.ndarray | None = None   # fixed time of one collective call per tier (None: zeros)
    mesh_peers: np.ndarray = None    # full-mesh tiers: peers each device links to directly (domain - 1); 0 otherwise
    a2a_scale: np.ndarray | None = None   # all-to-all bus bandwidth over the tier's (all_to_all_efficiency / efficiency)

    @property
    def num_tiers(self) -> int:
        return len(self.domain_size)

    @property
    def call_latency(self) -> np.ndarray:
        """Fixed time of one collective call per tier (zeros where the profile gives none)."""
        return np.zeros(self.num_tiers) if self.call_latency_s is None else self.call_latency_s

    @property
    def all_to_all_scale(self) -> np.ndarray:
        """All-to-all bandwidth over the tier's achieved bandwidth, per tier (ones where none is measured)."""
        return np.ones(self.num_tiers) if self.a2a_scale is None else self.a2a_scale


def tier_arrays(profile, devices_per_node: int | None = None) -> TierArrays:
    """Tier arrays of a HardwareProfile (efficiency applied to bandwidth)."""
    dom, bw, lat, nd, side, call, mesh, a2a = [], [], [], [], [], [], [], []
    for t in profile.tiers:
        call.append(t.call_latency_s)
        a2a.append(1.0 if t.all_to_all_efficiency is None else t.all_to_all_efficiency / t.efficiency)
        size = float("inf") if t.domain_size is None else float(t.domain_size)
        dom.append(size)
        mesh.append(size - 1.0 if t.topology == "full_mesh" and np.isfinite(size) and size > 1 else 0.0)
        bw.append(t.bandwidth_bytes_per_s * t.efficiency)
        lat.append(t.latency_s)
        if t.topology in ("torus2d", "torus3d"):
            k = 2 if t.topology == "torus2d" else 3
            nd.append(k)
            if t.torus_dims:
                side.append(float(np.exp(np.mean(np.log(t.torus_dims)))))
            else:
                side.append(size ** (1.0 / k) if np.isfinite(size) else 16.0)
        else:
            nd.append(0)
            side.append(1.0)
    return TierArrays(np.array(dom), np.array(bw), np.array(lat), np.array(nd), np.array(side), np.array(call),
                      np.array(mesh), np.array(a2a))


def members_per_domain(n, stride, domain_size):
    """Members of a group (n ranks, `stride` apart) that share one domain of `domain_size` devices."""
    n = np.asarray(n, dtype=float)
    if np.isinf(domain_size):
        return n
    return np.minimum(n, np.maximum(1.0, np.floor(domain_size / np.asarray(stride, dtype=float))))


def group_levels(n, stride, tiers: TierArrays):
    """Per tier, the factor by which a group fans out on that tier (product over tiers = n).

    A ring/hierarchical collective runs level by level: members inside the fastest domain first, then across
    the next tier with the data already reduced by the inner members (NCCL's tree/ring over NVLink then IB).
    Returns a list of arrays f_k with prod_k f_k = n.
    """
    prev = np.ones_like(np.asarray(n, dtype=float))
    out = []
    for k in range(tiers.num_tiers):
        c = members_per_domain(n, stride, tiers.domain_size[k])
        c = np.maximum(c, prev)
        out.append(c / prev)
        prev = c
    return out
