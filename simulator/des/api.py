"""`simulate()`: one training step of one scenario replayed by the discrete-event engine.

Every duration comes from the cost functions the analytic engine uses: `analytic.step.layer_costs` for the
per-layer forward/backward/recompute/weight-gradient times and the exposed TP/EP/CP communication, the logits
and embedding times; `layer_costs["t_p2p"]` for pipeline sends; `analytic.step.dp_comm_times` for
data-parallel and ZeRO collectives; the optimizer-step and memory figures as in `analytic.step.evaluate`. This
module turns them into an engine plan (per-stage op lists from des.schedules, segments per layer, gradient
buckets, shared ports from the topology graph), runs it, and wraps the result as a StepEstimate (engine "des")
with the same keys as `estimate`, plus per-stage busy/idle time, step-time percentiles, the event count and the
difference from the analytic estimate with the reasons for it.

Modes:
- overlap=False: nothing overlaps. Every exchange blocks the compute stream and is charged as the analytic
  engine charges it: one pipeline send per pass on every stage (pipeline ends included), gradient reduction
  after the last backward of each stage, ZeRO-1/2 parameter gathers after the optimizer, ZeRO-3 gathers and
  reduce-scatters inline per layer; the layout's overlap flags are treated as off. With contention off and no
  jitter this replays the analytic composition, so the two engines agree wherever the closed forms are exact
  (see docs/simulate.md for where they are not).
- overlap=True: pipeline sends are asynchronous, gradients are reduced in buckets as the last micro-batch's
  backward produces them (Megatron DDP buckets), ZeRO-1/2 parameters are re-gathered bucket by bucket under the
  first forward, ZeRO-3 gathers are prefetched one layer ahead, TP overlap follows the layout.
- contention=True: transfers of one representative device on one tier share its port (engine.SharedLink).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..analytic.estimate import BREAKDOWN_KEYS, StepEstimate, job_of, result_from_row
from ..analytic.layouts import LayoutTable
from ..analytic.pipeline import chunk_layers as default_chunk_layers
from ..analytic.step import (HOST_LAYERS_EMBEDDING, HOST_LAYERS_EVERY_RANK, HOST_LAYERS_LOSS, MICRO_BATCH_HOST_LAYERS,
                             OPTIMIZER_BYTES_PER_PARAM, R_MEMORY, dp_comm_times, dp_phase_cost, evaluate, layer_costs)
from ..costs.compute import memory_bound_time_s
from ..costs.flops import param_tensors_per_layer
from ..errors import InfeasibleLayoutError, SpecError
from ..specs.scenario import Scenario
from ..topology.placement import members_per_domain
from .engine import CATEGORIES, Bucket, EngineSpec, Seg, StageSpec, Timeline, simulate_spec
from .schedules import schedule_ops

#: Megatron-LM's default DDP bucket: max(40M, 1M x dp) parameters (megatron/core/distributed/
#: distributed_data_parallel.py, `bucket_size`).
BUCKET_MIN_PARAMS = 40_000_000
BUCKET_PARAMS_PER_DP_RANK = 1_000_000

#: At most this many replica groups (distinct straggler patterns) are replayed; beyond it the patterns with the
#: most slow stages are kept (a straggler pattern that is a subset of another is never slower and is dropped).
MAX_GROUPS = 16


@dataclass(frozen=True)
class Stragglers:
    """A fraction of the devices runs its compute `slowdown` times slower (thermal throttling, a bad host)."""

    fraction: float
    slowdown: float = 1.5


@dataclass(frozen=True)
class SimulationResult(StepEstimate):
    """A StepEstimate from the discrete-event engine, with the timeline of the (median) replay."""

    timeline: Timeline | None = field(default=None, repr=False, compare=False)


# ----------------------------------------------------------------------------------------- plan building
def chunk_layers(num_layers: int, pp: int, vpp: int, stage_layers=None) -> list[int]:
    """Layers of each of the pp*vpp model chunks in pipeline order: explicit `stage_layers` (pp*vpp entries
    summing to the model's layers) or the analytic engine's default split (analytic.pipeline.chunk_layers)."""
    chunks = pp * vpp
    if stage_layers is not None:
        sl = list(stage_layers)
        if len(sl) != chunks:
            raise SpecError(f"layout.stage_layers has {len(sl)} entries {sl}; it needs pp*vpp = {pp}*{vpp} = "
                            f"{chunks}, one per model chunk in pipeline order")
        if sum(sl) != num_layers:
            raise SpecError(f"layout.stage_layers {sl} sums to {sum(sl)}; it must sum to the model's "
                            f"{num_layers} layers")
        return sl
    return default_chunk_layers(num_layers, pp, vpp)


def _scalar(lc: dict, key: str) -> float:
    return float(np.asarray(lc[key], dtype=float).reshape(-1)[0])


@dataclass(frozen=True)
class _Costs:
    """The scalar durations of one layout (one row of layer_costs) the plan is built from."""

    t_f: float
    t_b: float
    t_rc: float
    t_w: float
    tp_f: float
    tp_b: float
    ep_f: float
    ep_b: float
    cp_f: float
    cp_b: float
    logits_f: float
    logits_b: float
    emb_comm: float
    p2p: float
    micro_host: float       # host time per micro-batch outside the layers of a one-stage pipeline (split by rank)


def _costs(lc: dict, pp: int) -> _Costs:
    g = lambda k: _scalar(lc, k)
    p2p = g("t_p2p")                 # pipeline send of one activation (analytic.step.layer_costs)
    return _Costs(t_f=g("t_layer_f"), t_b=g("t_layer_b"), t_rc=g("t_layer_rc"), t_w=g("t_layer_w"),
                  tp_f=g("tp_exposed_f"), tp_b=g("tp_exposed_b"), ep_f=g("t_ep_f"), ep_b=g("t_ep_b"),
                  cp_f=g("t_cp_f"), cp_b=g("t_cp_b"), logits_f=g("t_logits_f"), logits_b=g("t_logits_b"),
                  emb_comm=g("t_emb_comm"), p2p=p2p,
                  micro_host=g("t_micro_host"))


def _comm(*pairs) -> tuple:
    return tuple((k, float(v)) for k, v in pairs if v > 0)


def _param_items(lc: dict):
    """Parameters per tensor-parallel rank of one layer (dense, expert), of the input embedding and of the
    output layer, as analytic.step.evaluate counts them."""
    c = lc["c"]
    tp, ep = _scalar(lc, "tp"), _scalar(lc, "ep")
    etp = _scalar(lc, "etp")                               # expert tensor parallelism (layer_costs' rule)
    n_moe_heavy = float(np.asarray(lc["n_moe_heavy"], dtype=float).reshape(-1)[0])
    dense_part = (c.attn_params + c.norm_params_per_layer + c.router_params + c.shared_expert_params
                  + (1.0 - n_moe_heavy) * c.dense_mlp_params)
    expert_part = n_moe_heavy * c.num_experts * c.expert_params
    return dense_part / tp, expert_part / (etp * ep), c.embedding_params / tp, c.output_params / tp


def _dp_groups(lc: dict, lay) -> tuple[float, float, float]:
    """(dense data-parallel group, expert data-parallel group, rank stride of the dense group): gradients are
    reduced and ZeRO shards over DP x CP (layer_costs' dpc, edpc; analytic.step.dp_comm_times)."""
    dpc = _scalar(lc, "dpc")
    edpc = _scalar(lc, "edpc")
    st = lc["st"]
    s_dp = float(np.asarray(st["dp"]).reshape(-1)[0])
    if lay.cp > 1:
        s_dp = min(s_dp, float(np.asarray(st["cp"]).reshape(-1)[0]))
    return dpc, edpc, s_dp


def _tier_shares(lc: dict, sc: Scenario) -> dict:
    from ..topology.graph import group_tier_shares
    tiers, st, lay = lc["tiers"], lc["st"], sc.layout
    shares = {
        "tp": group_tier_shares(lay.tp, st["tp"], tiers),
        "ep": group_tier_shares(lay.ep, st["ep"], tiers),
        "cp": group_tier_shares(lay.cp, st["cp"], tiers),
    }
    dpc, _, s_dp = _dp_groups(lc, lay)
    shares["dp"] = group_tier_shares(dpc, s_dp, tiers)
    pp_tier = tiers.num_tiers - 1
    for k in range(tiers.num_tiers):
        if float(np.asarray(members_per_domain(2, float(np.asarray(st["pp"]).reshape(-1)[0]),
                                                tiers.domain_size[k])).reshape(-1)[0]) >= 2:
            pp_tier = k
            break
    shares["pp"] = ((pp_tier, 1.0),)
    return shares


@dataclass(frozen=True)
class _Plan:
    spec: EngineSpec
    chunks: list
    stage_totals: list          # per stage (dense, expert) params
    schedule: str
    num_micro: int


def build_plan(sc: Scenario, lc: dict, *, overlap: bool, contention: bool, num_micro: int) -> _Plan:
    """Engine plan of scenario `sc` (its layout already reflects `overlap`) from the layer costs `lc`."""
    lay, m, tr, hw = sc.layout, sc.model, sc.training, sc.hardware
    pp, vpp, zero = lay.pp, lay.vpp, lay.zero
    schedule = lay.resolved_schedule
    split_w = schedule == "zb-h1"
    cs = _costs(lc, pp)
    chunks = chunk_layers(m.num_layers, pp, vpp, lay.stage_layers)
    J = pp * vpp
    starts = np.concatenate([[0], np.cumsum(chunks)]).astype(int)
    sched = schedule_ops(schedule, pp, num_micro, vpp)
    layer_d, layer_e, emb_p, out_p = _param_items(lc)
    if m.tied_embeddings and pp == 1:
        out_p = 0.0                                  # one copy of the tied embedding on a single rank
    bucket_overlap = overlap and lay.overlap_grad_reduce
    rc_full = lay.recompute == "full"
    n_gather_b = 2.0 if rc_full else 1.0             # recompute + backward gathers (analytic: n_gather - 1)

    # data-parallel costs of arbitrary parameter counts, one vectorised call
    def dp_times(dense, expert):
        ar, rs, ag = dp_comm_times(lc, np.asarray(dense, dtype=float), np.asarray(expert, dtype=float))
        return np.broadcast_to(ar, np.shape(dense)), np.broadcast_to(rs, np.shape(dense)), np.broadcast_to(ag, np.shape(dense))

    z3 = zero >= 3
    _, z_rs_l, z_ag_l = (float(x[0]) for x in dp_times([layer_d], [layer_e]))
    if lay.zero3_unit == "tensor":                   # one latency per parameter tensor (analytic engine)
        lat_l = float(np.asarray(dp_phase_cost(lc, np.asarray([layer_d], dtype=float),
                                               np.asarray([layer_e], dtype=float))[1]).reshape(-1)[0])
        z_ag_l += (param_tensors_per_layer(m) - 1) * lat_l
    _, z_rs_emb, z_ag_emb = (float(x[0]) for x in dp_times([emb_p], [0.0]))
    _, z_rs_out, z_ag_out = (float(x[0]) for x in dp_times([out_p], [0.0])) if out_p > 0 else (0.0, 0.0, 0.0)

    z2_streamed = zero == 2 and bucket_overlap

    def zero3(seg_kwargs: dict, gather: float, reduce: float) -> dict:
        """Attach a ZeRO-3 gather/reduce to a segment: prefetched/queued with overlap, inline without. ZeRO-2
        reduce-scatters every micro-batch's gradients as they are produced (no gathers); without overlap
        that traffic is charged after the last backward, as the analytic engine does."""
        if z2_streamed:
            seg_kwargs["reduce_s"] = reduce
            return seg_kwargs
        if not z3:
            return seg_kwargs
        if bucket_overlap:
            seg_kwargs["gather_s"] = gather
            seg_kwargs["reduce_s"] = reduce
        else:
            seg_kwargs["pre"] = _comm(("dp", gather)) + seg_kwargs.get("pre", ())
            seg_kwargs["post"] = seg_kwargs.get("post", ()) + _comm(("dp", reduce))
        return seg_kwargs

    f_comm = _comm(("tp", cs.tp_f), ("ep", cs.ep_f), ("cp", cs.cp_f))
    b_comm = _comm(("tp", cs.tp_b), ("ep", cs.ep_b), ("cp", cs.cp_b))
    p2p_seg = () if (overlap or pp == 1) else (Seg(post=_comm(("pp", cs.p2p)), label="p2p"),)
    b_compute = (cs.t_b - cs.t_w if split_w else cs.t_b) + cs.t_rc
    # per-micro-batch host work outside the layers: half with the forward, half with the backward, spread over
    # the rank's chunks: every rank's part, plus the embedding's on the first rank and the loss's on the last
    # (analytic.step.evaluate adds the same per micro-batch and rank)
    host_pass = cs.micro_host / MICRO_BATCH_HOST_LAYERS

    def host_seg_of(rank):
        t = host_pass * (HOST_LAYERS_EVERY_RANK + HOST_LAYERS_EMBEDDING * (rank == 0)
                         + HOST_LAYERS_LOSS * (rank == pp - 1)) / vpp
        return (Seg(compute_s=0.5 * t, label="host"),) if t > 0 else ()

    stages = []
    stage_totals = []
    for r in range(pp):
        host_seg = host_seg_of(r)
        segments = {}
        items = []            # gradient items in the order they become final: (dense, expert, trigger, fwd use, label)
        dense_tot = expert_tot = 0.0
        for c in range(vpp):
            j = c * pp + r
            lo, n = int(starts[j]), chunks[j]
            first, last = j == 0, j == J - 1
            # forward
            fs = []
            if first:
                fs.append(Seg(**zero3({"post": _comm(("tp", cs.emb_comm)), "label": "embedding"}, z_ag_emb, 0.0)))
            for l in range(lo, lo + n):
                fs.append(Seg(**zero3({"compute_s": cs.t_f, "post": f_comm, "label": f"layer {l}"}, z_ag_l, 0.0)))
            if last:
                fs.append(Seg(**zero3({"compute_s": cs.logits_f, "label": "logits"}, z_ag_out, 0.0)))
            segments[("F", c)] = host_seg + tuple(fs) + p2p_seg
            off = len(host_seg)
            fwd_index = {("emb",): off} if first else {}
            for i, l in enumerate(range(lo, lo + n)):
                fwd_index[l] = off + i + (1 if first else 0)
            if last:
                fwd_index[("out",)] = off + len(fs) - 1
            # backward (input + weight gradient, or input gradient only for ZB-H1)
            bs = list(host_seg)
            b_items = []
            if last:
                bs.append(Seg(**zero3({"compute_s": cs.logits_b, "label": "logits"}, z_ag_out, z_rs_out)))
                b_items.append((out_p, 0.0, ("B", c, len(bs) - 1), fwd_index[("out",)], "output layer"))
            for l in range(lo + n - 1, lo - 1, -1):
                kw = {"compute_s": b_compute, "recompute_s": cs.t_rc, "post": b_comm, "label": f"layer {l}"}
                bs.append(Seg(**zero3(kw, n_gather_b * z_ag_l, 0.0 if split_w else z_rs_l)))
                if not split_w:
                    b_items.append((layer_d, layer_e, ("B", c, len(bs) - 1), fwd_index[l], f"layer {l}"))
            if first:
                bs.append(Seg(**zero3({"label": "embedding"}, 0.0, z_rs_emb)))
                b_items.append((emb_p, 0.0, ("B", c, len(bs) - 1), off, "embedding"))
            segments[("B", c)] = tuple(bs) + p2p_seg
            w_items = []
            if split_w:
                ws = []
                for l in range(lo + n - 1, lo - 1, -1):
                    ws.append(Seg(**zero3({"compute_s": cs.t_w, "label": f"layer {l}"}, 0.0, z_rs_l)))
                    w_items.append((layer_d, layer_e, ("W", c, len(ws) - 1), fwd_index[l], f"layer {l}"))
                segments[("W", c)] = tuple(ws)
            items.append((b_items, w_items))
            dense_tot += n * layer_d + (emb_p if first else 0.0) + (out_p if last else 0.0)
            expert_tot += n * layer_e
        stage_totals.append((dense_tot, expert_tot))

        # gradient reduction: one collective after the last backward, or buckets overlapping it
        ar, rs, ag = (float(x[0]) for x in dp_times([dense_tot], [expert_tot]))
        dp_reduce = dp_gather = 0.0
        buckets = ()
        dpc, edpc, _ = _dp_groups(lc, lay)
        if not z3 and (dpc > 1 or edpc > 1):
            if not bucket_overlap:
                dp_reduce = ar if zero == 0 else (num_micro * rs if zero == 2 else rs)
                dp_gather = 0.0 if zero == 0 else ag
            else:
                # Megatron keeps one gradient buffer per model chunk: buckets never span chunks. Chunks finish
                # their last backward from the last to the first.
                cap = max(BUCKET_MIN_PARAMS, BUCKET_PARAMS_PER_DP_RANK * dpc)
                groups = []
                for c in reversed(range(vpp)):
                    b_items, w_items = items[c]
                    cur = []
                    for it in b_items + w_items:
                        cur.append(it)
                        if sum(x[0] + x[1] for x in cur) >= cap:
                            groups.append(cur)
                            cur = []
                    if cur:
                        groups.append(cur)
                d_arr = [sum(x[0] for x in gr) for gr in groups]
                e_arr = [sum(x[1] for x in gr) for gr in groups]
                b_ar, b_rs, b_ag = dp_times(d_arr, e_arr)
                bl = []
                for i, gr in enumerate(groups):
                    trig = gr[-1][2]
                    first_use = (trig[1], min(x[3] for x in gr))
                    label = gr[0][4] if len(gr) == 1 else f"{gr[0][4]} .. {gr[-1][4]}"
                    reduce_s = 0.0 if z2_streamed else float(b_ar[i] if zero == 0 else b_rs[i])
                    bl.append(Bucket(reduce_s=reduce_s, trigger=trig,
                                     gather_s=0.0 if zero == 0 else float(b_ag[i]), first_use=first_use,
                                     label=label))
                buckets = tuple(bl)
        own = dense_tot / (dpc if zero >= 1 else 1.0) + expert_tot / (edpc if zero >= 1 else 1.0)
        eff = hw.efficiency
        opt = float(memory_bound_time_s(own * OPTIMIZER_BYTES_PER_PARAM, hw.device.memory_bandwidth_bytes_per_s,
                                        eff.memory_bound))
        rng_ = [f"{int(starts[c * pp + r])}-{int(starts[c * pp + r] + chunks[c * pp + r]) - 1}"
                if chunks[c * pp + r] else "none" for c in range(vpp)]
        stages.append(StageSpec(ops=sched[r], segments=segments, optimizer_s=opt, dp_reduce_s=dp_reduce,
                                dp_gather_s=dp_gather, buckets=buckets,
                                label=f"stage {r} (layers {', '.join(rng_)})"))

    spec = EngineSpec(pp=pp, vpp=vpp, num_micro=num_micro, stages=tuple(stages), p2p_s=cs.p2p, overlap=overlap,
                      contention=contention, tier_shares=_tier_shares(lc, sc) if contention else {},
                      overhead_s=hw.efficiency.step_overhead_ms * 1e-3)
    return _Plan(spec=spec, chunks=chunks, stage_totals=stage_totals, schedule=schedule, num_micro=num_micro)


# ------------------------------------------------------------------------------------- stragglers, devices
def _representative_devices(sc: Scenario, lc: dict, replicas: list[int]) -> tuple:
    st = lc["st"]
    s_pp = int(float(np.asarray(st["pp"]).reshape(-1)[0]))
    s_dp = int(float(np.asarray(st["dp"]).reshape(-1)[0]))
    return tuple(tuple(r * s_pp + rep * s_dp for r in range(sc.layout.pp)) for rep in replicas)


def _straggler_groups(rng: np.random.Generator, sc: Scenario, strag: Stragglers | None):
    """Replica groups to replay: [(replica index, per-stage slowdown tuple, label)]. Each straggling device
    slows its pipeline stage in its data-parallel replica (TP/CP peers wait for it every layer)."""
    pp, dp = sc.layout.pp, sc.layout.dp
    if strag is None or strag.fraction <= 0 or strag.slowdown == 1.0:
        return [(0, (1.0,) * pp, "")]
    k = int(rng.binomial(sc.num_devices, strag.fraction))
    if k == 0:
        return [(0, (1.0,) * pp, "no straggler drawn")]
    stage = rng.integers(0, pp, size=k)
    replica = rng.integers(0, dp, size=k)
    pattern = {}
    for s_, rep in zip(stage.tolist(), replica.tolist()):
        pattern.setdefault(rep, set()).add(s_)
    distinct = {}
    for rep in sorted(pattern):
        distinct.setdefault(frozenset(pattern[rep]), rep)
    pats = sorted(distinct, key=lambda p_: (-len(p_), sorted(p_)))
    maximal = [p_ for p_ in pats if not any(p_ < q for q in pats)]
    maximal = maximal[:MAX_GROUPS]
    out = []
    for p_ in maximal:
        slow = tuple(strag.slowdown if r in p_ else 1.0 for r in range(pp))
        out.append((distinct[p_], slow, f"replica {distinct[p_]}: stage{'s' if len(p_) > 1 else ''} "
                                        f"{', '.join(str(x) for x in sorted(p_))} slow"))
    return out


# -------------------------------------------------------------------------------------------- the function
def _check_args(overlap, contention, jitter, stragglers, samples, seed) -> Stragglers | None:
    for name, v in (("overlap", overlap), ("contention", contention)):
        if not isinstance(v, (bool, np.bool_)):
            raise SpecError(f"{name} = {v!r}: must be True or False")
    if not isinstance(jitter, (int, float)) or not (0.0 <= float(jitter) <= 1.0) or math.isnan(float(jitter)):
        raise SpecError(f"jitter = {jitter!r}: must be a relative standard deviation in [0, 1]")
    if not isinstance(samples, (int, np.integer)) or isinstance(samples, bool) or samples < 1:
        raise SpecError(f"samples = {samples!r}: must be an integer >= 1")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise SpecError(f"seed = {seed!r}: must be an integer >= 0")
    if stragglers is None:
        return None
    if isinstance(stragglers, (int, float)) and not isinstance(stragglers, bool):
        stragglers = Stragglers(float(stragglers))
    elif isinstance(stragglers, (tuple, list)) and len(stragglers) == 2:
        stragglers = Stragglers(float(stragglers[0]), float(stragglers[1]))
    if not isinstance(stragglers, Stragglers):
        raise SpecError(f"stragglers = {stragglers!r}: must be None, a fraction, (fraction, slowdown) or Stragglers")
    if not 0.0 <= stragglers.fraction <= 1.0:
        raise SpecError(f"stragglers.fraction = {stragglers.fraction!r}: must be in [0, 1]")
    if not 1.0 <= stragglers.slowdown <= 100.0:
        raise SpecError(f"stragglers.slowdown = {stragglers.slowdown!r}: must be in [1, 100] (a slowdown factor)")
    return stragglers


def simulate(scenario: Scenario, *, overlap: bool = True, contention: bool = True, jitter: float = 0.0,
             stragglers: Stragglers | tuple | float | None = None, samples: int = 1, seed: int = 0,
             per_layer: bool = False) -> SimulationResult:
    """Replay one training step of `scenario` with the discrete-event engine.

    overlap: model communication/computation overlap (async pipeline sends, bucketed gradient reduction under
        the backward, parameter gathers under the forward, TP overlap per the layout); False serializes all.
    contention: concurrent transfers of a device on one network tier share its port bandwidth.
    jitter: relative standard deviation of a lognormal (mean 1) factor drawn per op of each stage.
    stragglers: a fraction of devices (or (fraction, slowdown), or Stragglers) whose compute is slower.
    samples: independent replays (different jitter/straggler draws); step_time_s is the median replay's, the
        distribution is in `step_time_percentiles_s`.
    seed: seeds the numpy Generator that draws jitter and stragglers; runs are deterministic given it.
    per_layer: replay every layer pass as its own events even where nothing can happen inside an op (the
        times are the same; ops are coalesced by default).

    Returns a SimulationResult (a StepEstimate, engine "des"). A layout that only fails to fit in memory is
    simulated and returned with its reasons; one that cannot be replayed at all (world size, divisibility,
    interleaving constraints) raises InfeasibleLayoutError with every reason.
    """
    strag = _check_args(overlap, contention, jitter, stragglers, samples, seed)
    if not isinstance(scenario, Scenario):
        raise SpecError(f"scenario: expected a Scenario, got {type(scenario).__name__}")
    sc = scenario
    if not overlap:
        sc = sc.model_copy(update={"layout": sc.layout.model_copy(
            update={"overlap_grad_reduce": False, "tp_comm_overlap": False, "ep_comm_overlap": False})})
    lay = sc.layout
    L = sc.model.num_layers
    if lay.stage_layers is not None:
        chunk_layers(L, lay.pp, lay.vpp, lay.stage_layers)          # validates (SpecError)
    table = LayoutTable.from_layouts([lay], num_layers=L)
    job = job_of(sc)
    out = evaluate(job, table)
    row = {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in out.items()}
    analytic = result_from_row(sc, row)
    structural = int(row["reasons"]) & ~R_MEMORY
    if structural:
        raise InfeasibleLayoutError(analytic.reasons, result=analytic)
    num_micro = int(row["num_micro_batches"])
    lc = layer_costs(job, table)
    plan = build_plan(sc, lc, overlap=bool(overlap), contention=bool(contention), num_micro=num_micro)

    rng = np.random.default_rng(seed)
    graph_cache = {}
    runs = []
    stochastic = jitter > 0 or (strag is not None and strag.fraction > 0 and strag.slowdown > 1.0)
    n_runs = samples if stochastic else 1
    for _ in range(n_runs):
        groups = _straggler_groups(rng, sc, strag)
        devices = _representative_devices(sc, lc, [g[0] for g in groups])
        graph = None
        if contention:
            key = tuple(sorted({d for gr in devices for d in gr}))
            graph = graph_cache.get(key)
            if graph is None:
                from ..topology.graph import cluster_graph
                graph = graph_cache[key] = cluster_graph(sc.hardware, sc.num_devices, devices=key)
        spec = _replace(plan.spec, slowdown=tuple(g[1] for g in groups), devices=devices, graph=graph,
                        jitter=float(jitter), group_labels=tuple(g[2] for g in groups), per_layer=bool(per_layer))
        runs.append(simulate_spec(spec, rng))
    times = np.array([r.step_time_s for r in runs] * (samples if not stochastic else 1))
    order = sorted(range(len(runs)), key=lambda i: (runs[i].step_time_s, i))
    med = runs[order[(len(runs) - 1) // 2]]
    return _result(sc, scenario, row, analytic, plan, med, times, samples=samples, seed=seed, jitter=float(jitter),
                   strag=strag, overlap=bool(overlap), contention=bool(contention))


def _replace(spec: EngineSpec, **kw) -> EngineSpec:
    from dataclasses import replace
    return replace(spec, **kw)


def _result(sc, original, row, analytic, plan, res, times, *, samples, seed, jitter, strag, overlap, contention):
    lay = sc.layout
    pp = lay.pp
    overhead = plan.spec.overhead_s
    pace, breakdown = res.pacing, {k: float(res.breakdown_s[k]) for k in BREAKDOWN_KEYS}
    step = float(res.step_time_s)
    tokens = float(sc.training.tokens_per_step)
    model_flops = float(row["model_flops_per_step"])
    hw_flops = float(row["hardware_flops_per_step"])
    peak = sc.hardware.mfu_peak_flops_per_s(sc.training.dtype)
    n = sc.num_devices
    rank_name = lambda r: "first" if r == 0 else ("last" if r == pp - 1 else "middle")
    per_rank = [0] * pp
    for j, nl in enumerate(plan.chunks):
        per_rank[j % pp] += nl
    stage_layers = {"first": per_rank[0], "middle": max(per_rank[1:-1]) if pp >= 3 else 0,
                    "last": per_rank[-1] if pp > 1 else 0}
    stages = {}
    g0 = pace[0]
    for r in range(pp):
        a = res.accounts[(g0, r)]
        busy = float(res.busy_s[(g0, r)])
        stages[str(r)] = {
            "layers": per_rank[r],
            "chunks": [plan.chunks[c * pp + r] for c in range(lay.vpp)],
            "busy_s": busy,
            "idle_s": float(step - overhead - busy),
            "ops_s": float(res.ops_s[(g0, r)]),
            "finished_s": float(res.end_s[(g0, r)]),
            "time_s": {k: float(v) for k, v in a.items()},
        }
    extra = {
        "overlap": overlap,
        "contention": contention,
        "jitter": jitter,
        "stragglers": None if strag is None else {"fraction": strag.fraction, "slowdown": strag.slowdown},
        "samples": samples,
        "seed": seed,
        "schedule": plan.schedule,
        "num_events": int(res.num_events),
        "replica_groups": [lbl for lbl in res.timeline.group_labels if lbl] or None,
        "stages": stages,
    }
    if samples > 1:
        extra["step_time_percentiles_s"] = {
            "p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90)),
            "p99": float(np.percentile(times, 99)), "mean": float(times.mean()), "min": float(times.min()),
            "max": float(times.max())}
    a_bd = analytic.time_breakdown_s
    extra["analytic"] = {"step_time_s": analytic.step_time_s, "time_breakdown_s": dict(a_bd)}
    extra["delta_vs_analytic_s"] = {"step_time": step - analytic.step_time_s,
                                    **{k: breakdown[k] - a_bd[k] for k in BREAKDOWN_KEYS}}
    extra["contention_delay_s"] = {k: float(v) for k, v in res.contention_delay_s.items() if v > 1e-12}
    extra["explanations"] = _explain(sc, plan, breakdown, a_bd, step, analytic.step_time_s, res, overlap,
                                     contention, pace)
    if jitter > 0 or (strag is not None and strag.fraction > 0):
        extra["explanations"].insert(1 if len(extra["explanations"]) > 1 else 0, (
            "random draws the estimate does not have: " + ", ".join(
                ([f"jitter (sigma {jitter:g}) on every pass"] if jitter > 0 else [])
                + ([f"{strag.fraction:g} of devices {strag.slowdown:g}x slower"] if strag and strag.fraction > 0
                   else []))
            + " (median replay shown)"))
    fits = bool(row["fits"])
    return SimulationResult(
        scenario=sc, step_time_s=step, mfu=model_flops / (step * n * peak), hfu=hw_flops / (step * n * peak),
        tokens_per_s=tokens / step, tflops_per_device=model_flops / step / n / 1e12, time_breakdown_s=breakdown,
        memory_bytes=dict(analytic.memory_bytes), fits=fits, reasons=list(analytic.reasons),
        num_micro_batches=plan.num_micro, bubble_fraction=breakdown["bubble"] / max(res.ops_s[pace], 1e-30),
        pacing_rank=rank_name(pace[1]), memory_rank=analytic.memory_rank, stage_layers=stage_layers,
        engine="des", extra=extra, timeline=res.timeline)


def _explain(sc, plan, bd, a_bd, step, a_step, res, overlap, contention, pace) -> list[str]:
    """Sentences saying where and why the replay differs from the analytic estimate."""
    tol = 1e-6 * max(step, a_step)
    out = []
    d = step - a_step
    if abs(d) <= tol:
        return ["replay and analytic estimate agree"]
    out.append(f"step time {'+' if d > 0 else ''}{d * 1e3:,.2f} ms vs the analytic estimate ({a_step:,.4f} s)")
    db = bd["bubble"] - a_bd["bubble"]
    if abs(db) > tol:
        why = ("the replayed schedule with these per-stage times differs from the closed form "
               "(m-1)*tau_max + sum tau_i (analytic.pipeline.pipeline_time_s)")
        if overlap:
            why += "; asynchronous sends and waits at the step's barriers also move idle time"
        out.append(f"pipeline bubble {db * 1e3:+,.2f} ms: {why}")
    dpp = bd["pp_comm"] - a_bd["pp_comm"]
    if abs(dpp) > tol:
        out.append(f"pipeline sends {dpp * 1e3:+,.2f} ms: " + (
            "sends run asynchronously on the pp stream, only the part a stage waits for is exposed (the analytic "
            "engine charges two blocking sends per micro-batch and chunk)" if overlap else
            "sends are charged per pass as in the analytic engine"))
    ddp = bd["dp_comm"] - a_bd["dp_comm"]
    if abs(ddp) > tol:
        if overlap and plan.spec.stages[pace[1]].buckets:
            nb = len(plan.spec.stages[pace[1]].buckets)
            out.append(f"DP/ZeRO exposed {ddp * 1e3:+,.2f} ms: gradients reduced in {nb} buckets as the last "
                       "micro-batch's backward produces them (the analytic engine hides the whole reduction "
                       "under one backward of the pacing rank); the stage that finishes last decides")
        elif sc.layout.zero >= 3:
            out.append(f"ZeRO-3 exposed {ddp * 1e3:+,.2f} ms: per-layer gathers and reduce-scatters inside every "
                       "pass (the analytic engine adds them after the pipeline, with one latency per pass and "
                       "an extra first-layer gather)")
        else:
            out.append(f"DP/ZeRO exposed {ddp * 1e3:+,.2f} ms: each stage reduces its own gradients; the step "
                       "waits for the slowest stage's reduction (the analytic engine uses the pacing rank's)")
    for kind, v in sorted(res.contention_delay_s.items()):
        if v > tol:
            out.append(f"contention: {kind} transfers took {v * 1e3:,.2f} ms longer in total on shared ports")
    dopt = bd["optimizer"] - a_bd["optimizer"]
    if abs(dopt) > tol:
        out.append(f"optimizer {dopt * 1e3:+,.2f} ms: the replay reports the pacing stage's own optimizer step")
    return out
