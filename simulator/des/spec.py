"""What the discrete-event engine replays and what it returns: the plan format (segments, buckets, per-stage op
lists and the engine spec) and the replay's outputs (timeline spans, the engine result). Pure data, no SimPy."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# ------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Seg:
    """One piece of an op (usually one layer): `pre` blocking communication, compute, `post` blocking
    communication. Communication entries are (kind, seconds), kind one of tp, cp, ep, pp, dp.

    `recompute_s` and `parts` ((category, seconds) entries: elementwise, fp8_cast, host) are the parts of
    `compute_s` accounted under their own categories; the rest is `compute`.
    `gather_s` (ZeRO-3 with overlap) is a weight all-gather the segment needs, issued ahead by the gather stream;
    `reduce_s` a gradient reduce-scatter queued on the dp stream after it; `fetch_s` (offload with overlap) a copy
    over the host link to the device the segment needs (offloaded parameters, activation checkpoints), issued
    ahead by the same stream before the gather; `offload_s` a copy to the host queued after it (activation
    checkpoints, gradient partitions); `label` names it in traces.
    """

    compute_s: float = 0.0
    recompute_s: float = 0.0
    parts: tuple = ()
    pre: tuple = ()
    post: tuple = ()
    gather_s: float = 0.0
    reduce_s: float = 0.0
    fetch_s: float = 0.0
    offload_s: float = 0.0
    label: str = ""


@dataclass(frozen=True)
class Bucket:
    """A data-parallel gradient bucket (ZeRO 0-2, overlap on): reduced once the op `trigger` = (kind, chunk,
    segment index) of the last micro-batch has run that segment; `gather_s` > 0 re-gathers its parameters at the
    start of the step before the forward segment `first_use` = (chunk, segment index) of micro-batch 0."""

    reduce_s: float
    trigger: tuple
    gather_s: float = 0.0
    first_use: tuple = (0, 0)
    label: str = ""


@dataclass(frozen=True)
class StageSpec:
    """Work of one pipeline stage: its op list and the segments of each (kind, chunk) pass, plus the step's
    tail: blocking DP reduction (no bucket overlap), optimizer, the offloaded optimizer phase (CPU Adam, copies
    and NVMe swap; from the step's start with the delayed update), blocking ZeRO-1/2 parameter all-gather."""

    ops: tuple
    segments: dict
    optimizer_s: float = 0.0
    dp_reduce_s: float = 0.0
    dp_gather_s: float = 0.0
    buckets: tuple = ()
    label: str = ""
    offload_update_s: float = 0.0
    op_segments: tuple = ()   # per op: the `segments` key it runs (default (kind, chunk))
    op_extra_s: tuple = ()    # per op: exposed all-to-all seconds added after it (DualPipe units)
    send_after: tuple = ()    # per op: index of the op whose end releases its output (default: itself)


@dataclass(frozen=True)
class EngineSpec:
    """Everything the engine replays. `tier_shares[kind]` = ((tier, fraction), ...) of that kind's traffic;
    `devices[g][r]` is the representative device of stage r in group g (its ports are the links: `graph` is a
    topology.graph.ClusterPorts, or a networkx cluster graph, that topology.graph.ports reads);
    `slowdown[g][r]` multiplies compute of stage r in group g (stragglers).

    The host link (offload): transfers are given in seconds at one device's share when all the job's devices on a
    node copy at once. With contention, one link per node and direction carries them; with `a` of the node's
    representative ranks copying it runs each at min(host_link_ratio, host_node_ratio x k / a) times that speed
    (k: representative ranks on the node; host_link_ratio: the device's own link over its share, host_node_ratio:
    the node's cap over all the node's devices' shares; inf = no cap)."""

    pp: int
    vpp: int
    num_micro: int
    stages: tuple
    p2p_s: float = 0.0
    overlap: bool = True
    contention: bool = True
    tier_shares: dict = field(default_factory=dict)
    overhead_s: float = 0.0
    slowdown: tuple = ()
    devices: tuple = ()
    graph: object = None
    jitter: float = 0.0
    group_labels: tuple = ()
    per_layer: bool = False     # replay every segment as its own events (same times; for checks and benchmarks)
    offload_delayed_update: bool = False
    devices_per_node: int = 1
    host_link_ratio: float = 1.0
    host_node_ratio: float = float("inf")
    positions: tuple = ()       # positions[r][c] = (pipeline, stage) of chunk c of rank r (default: interleaving)
    num_stages: int = 0         # stages of one pipeline (default pp x vpp)
    p2p_pair_s: dict = field(default_factory=dict)   # (from rank, to rank) -> pipeline send time (default p2p_s)


# ------------------------------------------------------------------------------------------------ outputs
class Span(NamedTuple):
    """One interval of a timeline: group, stage, stream, name, category, start and end (seconds)."""

    group: int
    stage: int
    stream: str
    name: str
    category: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Timeline:
    spans: tuple
    num_stages: int
    streams: tuple
    stage_labels: tuple = ()
    group_labels: tuple = ()
    step_time_s: float = 0.0


@dataclass(frozen=True)
class EngineResult:
    step_time_s: float                  # including the fixed overhead
    pipeline_end_s: float               # when the last op of any stage finished
    accounts: dict                      # (group, stage) -> {category: seconds}, partitioning step - overhead
    busy_s: dict                        # (group, stage) -> seconds the compute stream was occupied (ops, tail)
    ops_s: dict                         # (group, stage) -> seconds of pipeline ops (forward/backward passes)
    end_s: dict                         # (group, stage) -> when the stage finished its step (before overhead)
    ops_end_s: dict                     # (group, stage) -> when the stage finished its last pipeline op
    tails: dict                         # (group, stage) -> [(category, start, end)] after its last op
    pacing: tuple                       # (group, stage) with the most pipeline work
    breakdown_s: dict                   # the step by category along its critical path (sums to step_time_s):
    # the pacing rank's passes and waits up to the end of the pipeline, its waits split into what the ops it
    # waited for spent on transfers and parameter gathers (pp_comm, dp_comm) and the rest (bubble: other
    # stages computing); after the pipeline, the tail of the rank that finishes last (exposed gradient
    # reduction, barrier, optimizer, parameter gather); plus the fixed overhead.
    contention_delay_s: dict            # kind -> seconds transfers took beyond their nominal time (all ranks)
    num_events: int
    timeline: Timeline
