"""`simulate()`: one training step of one scenario replayed by the discrete-event engine.

Every duration comes from the shared cost functions (simulator.costs: per-layer pass times, exposed TP/EP/CP
communication, pipeline sends, data-parallel and ZeRO collectives, the optimizer step, memory), never from the
analytic engine: des.plan turns them into an engine plan (per-stage op lists from pipeline.schedules, segments
per layer, gradient buckets, shared ports of the topology's devices), des.engine replays it, and this module wraps
the replay as a SimulationResult (engine "des") with the keys of `estimate`, plus per-stage busy/idle time,
step-time percentiles and the event count. (`simulator.simulate` adds the comparison with the analytic estimate:
simulator.crosscheck.)

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
from dataclasses import dataclass, replace

import numpy as np

from .. import metrics
from ..costs.communication import layer_comm
from ..costs.layer import layer_costs
from ..costs.sizes import sizes
from ..costs.stage import edge_costs, memory_columns, rank_kinds
from ..errors import InfeasibleLayoutError, SpecError
from ..feasibility import STRUCTURAL_MASK, memory_reason, structural_reasons, subject_of
from ..pipeline.split import checked_chunk_layers
from ..results import (RANK_NAMES, TIME_CATEGORIES, SimulationResult, memory_dict, memory_peaks, reasons_of_row,
                       tier_memory_dict)
from ..specs.job import Job
from ..specs.layout_table import LayoutTable
from ..specs.scenario import Scenario
from ..topology.graph import cluster_ports
from .engine import simulate_spec
from .plan import Plan, build_plan, cluster_hops
from .stragglers import Stragglers, representative_devices, straggler_groups


@dataclass(frozen=True)
class Replay:
    """The plan and the engine result of the median replay (kept on the SimulationResult, not in to_dict)."""

    plan: Plan
    engine: object          # des.spec.EngineResult


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


def _costs_of(sc: Scenario):
    """The shared costs of the scenario's one-row table, its memory and reasons as one row of scalars."""
    job = Job(model=sc.model, hardware=sc.hardware, training=sc.training, num_devices=sc.num_devices,
              network=sc.network, framework=sc.framework)
    table = LayoutTable.from_layouts([sc.layout])
    sz = sizes(job, table)
    lc = layer_costs(sz)
    comm = layer_comm(sz, lc)
    edge = edge_costs(sz, lc, comm)
    mem = memory_columns(sz, rank_kinds(sz))
    reasons = structural_reasons(subject_of(job.model, job.training, job.num_devices, table, sz.num_micro,
                                            job.hardware))
    reasons = reasons | memory_reason(mem)
    row = {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in mem.items()}
    row["reasons"] = reasons[0]
    return sz, lc, comm, edge, row


def _replay(sc: Scenario, plans: list, sz, strag, *, contention, jitter, samples, seed, per_layer, progress=None):
    """(median replay, its plan, step times of every replay): one replay, or `samples` with jitter, stragglers or
    routing draws (`plans` holds one plan per sample when the routing is sampled, else one)."""
    rng = np.random.default_rng(seed)
    runs = []
    stochastic = jitter > 0 or (strag is not None and strag.fraction > 0 and strag.slowdown > 1.0) or len(plans) > 1
    pp_stride, dp_stride = (int(float(np.asarray(sz.strides[k]).reshape(-1)[0])) for k in ("pp", "dp"))
    total = samples if stochastic else 1
    # the representative devices' ports, by arithmetic (topology.graph.ClusterPorts: the cluster graph's ports
    # without building the graph or importing networkx)
    graph = cluster_ports(sc.hardware, sc.num_devices) if contention else None
    for k in range(total):
        plan = plans[k % len(plans)]
        groups = straggler_groups(rng, sc.num_devices, sc.layout.pp, sc.layout.dp, strag)
        devices = representative_devices(sc.layout.pp, pp_stride, dp_stride, [g[0] for g in groups])
        spec = replace(plan.spec, slowdown=tuple(g[1] for g in groups), devices=devices, graph=graph,
                       jitter=float(jitter), group_labels=tuple(g[2] for g in groups), per_layer=bool(per_layer))
        runs.append(simulate_spec(spec, rng))
        if progress is not None:
            progress(k + 1, total)
    times = np.array([r.step_time_s for r in runs] * (samples if not stochastic else 1))
    order = sorted(range(len(runs)), key=lambda i: (runs[i].step_time_s, i))
    med = order[(len(runs) - 1) // 2]
    return runs[med], plans[med % len(plans)], times


def _routing_plans(sc: Scenario, sz, lc, comm, edge, *, overlap, contention, samples, seed) -> tuple:
    """The plans to replay: one, or one per sample with this step's per-layer routing draws when the routing is
    a model to sample (not a fixed max-over-mean) and experts spread over ranks; with the draws."""
    from ..costs.moe_layers import sampled_layer_imbalance
    from ..costs.sizes import routing_of
    kw = dict(overlap=bool(overlap), contention=bool(contention), num_micro=int(sz.num_micro[0]),
              hops=cluster_hops(sc, sz))
    m = sc.model
    routing = routing_of(m, sc.training) if m.moe is not None else None
    if routing is None or routing.max_over_mean is not None or sc.layout.ep <= 1:
        return [build_plan(sc, sz, lc, comm, edge, **kw)], None
    imb = sampled_layer_imbalance(sz, routing, np.random.default_rng([seed, 15]), samples)
    return [build_plan(sc, sz, lc, comm, edge, imbalance=x, **kw) for x in imb], np.stack([x.max_over_mean for x in imb])


def simulate(scenario: Scenario, *, overlap: bool = True, contention: bool = True, jitter: float = 0.0,
             stragglers: Stragglers | tuple | float | None = None, samples: int = 1, seed: int = 0,
             per_layer: bool = False, progress=None) -> SimulationResult:
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
    progress: called as progress(done, total) after each replay (the CLI's progress bar); never prints.

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
            update={"overlap_grad_reduce": False, "dp_param_gather_overlap": False, "tp_comm_overlap": False,
                    "ep_comm_overlap": False})})
    lay = sc.layout
    if lay.stage_layers is not None:
        if lay.resolved_schedule in ("dualpipe", "zb-v"):
            from ..specs.scenario import check_stage_layers
            check_stage_layers(lay, sc.model)                                               # validates (SpecError)
        else:
            checked_chunk_layers(sc.model.num_layers, lay.pp, lay.vpp, lay.stage_layers)     # validates (SpecError)
    sz, lc, comm, edge, row = _costs_of(sc)
    if int(row["reasons"]) & STRUCTURAL_MASK:
        raise InfeasibleLayoutError(reasons_of_row(sc, row))
    plans, draws = _routing_plans(sc, sz, lc, comm, edge, overlap=overlap, contention=contention, samples=samples,
                                  seed=seed)
    med, plan, times = _replay(sc, plans, sz, strag, contention=contention, jitter=jitter, samples=samples,
                               seed=seed, per_layer=per_layer, progress=progress)
    res = _result(sc, sz, row, plan, med, times, samples=samples, seed=seed, jitter=float(jitter), strag=strag,
                  overlap=bool(overlap), contention=bool(contention))
    kw = dict(overlap=overlap, contention=contention, jitter=jitter, samples=samples, seed=seed, per_layer=per_layer)
    if lay.dp_compression == "onebit" and lay.zero == 0:
        res = _with_onebit_warmup(sc, res, strag, **kw)
    net = sc.network
    if not net.is_default:
        res.extra["network"] = net.summary()
    if net.background_occupancy > 0:
        alone = simulate(sc.model_copy(update={"network": net.dedicated()}), stragglers=strag, **kw)
        res.extra["background"] = net.slowdown(alone.step_time_s, res.step_time_s)
    if draws is not None:
        res.extra["moe_imbalance"] = {"max_over_mean_mean": float(draws.mean()),
                                      "max_over_mean_p50": float(np.percentile(draws, 50)),
                                      "max_over_mean_max": float(draws.max()),
                                      "expected": float(np.asarray(sz.moe_load.max_over_mean).reshape(-1)[0])}
    return res


def _stages(sc, plan: Plan, res, per_rank: list, step: float) -> dict:
    """Per-stage busy and idle time, pass time and finish time of the pacing replica group."""
    lay = sc.layout
    g0 = res.pacing[0]
    out = {}
    for r in range(lay.pp):
        busy = float(res.busy_s[(g0, r)])
        out[str(r)] = {
            "layers": per_rank[r],
            "chunks": plan.rank_chunks[r],
            "busy_s": busy,
            "idle_s": float(step - plan.spec.overhead_s - busy),
            "ops_s": float(res.ops_s[(g0, r)]),
            "finished_s": float(res.end_s[(g0, r)]),
            "time_s": {k: float(v) for k, v in res.accounts[(g0, r)].items()},
        }
    return out


def _extra(sc, plan: Plan, res, times, per_rank, step, *, samples, seed, jitter, strag, overlap, contention) -> dict:
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
        "stages": _stages(sc, plan, res, per_rank, step),
    }
    if samples > 1:
        extra["step_time_percentiles_s"] = {
            "p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90)),
            "p99": float(np.percentile(times, 99)), "mean": float(times.mean()), "min": float(times.min()),
            "max": float(times.max())}
    # negative: transfers ran faster than nominal (a node's host link while its other stages were not copying)
    extra["contention_delay_s"] = {k: float(v) for k, v in res.contention_delay_s.items() if abs(v) > 1e-12}
    return extra


def _with_onebit_warmup(sc, res, strag, **kw):
    """A 1-bit Adam run's average step: the replayed compression-stage step (`res`, whose timeline it keeps)
    weighted with a replayed warm-up step (uncompressed all-reduce) by onebit_warmup_fraction.

    Source: Tang et al. 2021 (arXiv 2102.02888) sec. 4 (warm-up with full-precision Adam, then compression)."""
    w = sc.layout.onebit_warmup_fraction
    plain = sc.model_copy(update={"layout": sc.layout.model_copy(update={"dp_compression": "none"})})
    warm = simulate(plain, stragglers=strag, **kw)
    mix = lambda a, b: w * a + (1.0 - w) * b  # noqa: E731
    step = mix(warm.step_time_s, res.step_time_s)
    tokens = float(sc.training.tokens_per_step)
    extra = dict(res.extra)
    extra["onebit"] = {"warmup_fraction": w, "warmup_step_s": warm.step_time_s,
                       "compressed_step_s": res.step_time_s}
    if "step_time_percentiles_s" in extra:
        extra["step_time_percentiles_s"] = {k: mix(warm.extra["step_time_percentiles_s"][k], v)
                                            for k, v in extra["step_time_percentiles_s"].items()}
    return replace(res, step_time_s=step, mfu=res.mfu * res.step_time_s / step, hfu=res.hfu * res.step_time_s / step,
                   tokens_per_s=tokens / step, tflops_per_device=res.tflops_per_device * res.step_time_s / step,
                   time_breakdown_s={k: mix(warm.time_breakdown_s[k], v) for k, v in res.time_breakdown_s.items()},
                   extra=extra)


def _local_sgd_s(sc, sz, plan: Plan, res, step: float) -> float:
    """Exposed outer-step time per inner step of local SGD (CO2) beside a replayed inner step of `step` seconds:
    the pacing stage's parameters (costs.communication.local_sgd_sync_s); 0 without local SGD."""
    if sc.layout.local_sgd_tau <= 1:
        return 0.0
    from ..costs.communication import local_sgd_sync_s
    dense, expert = plan.stage_totals[res.pacing[1]]
    exposed, _ = local_sgd_sync_s(sz, np.asarray([dense]), np.asarray([expert]), step)
    return float(np.asarray(exposed).reshape(-1)[0])


def _result(sc, sz, row, plan: Plan, res, times, **kw) -> SimulationResult:
    pp = sc.layout.pp
    breakdown = {k: float(res.breakdown_s[k]) for k in TIME_CATEGORIES}
    step = float(res.step_time_s)
    outer = _local_sgd_s(sc, sz, plan, res, step)
    if outer > 0:
        breakdown["dp_comm"] += outer
        step += outer
        times = np.array([t + _local_sgd_s(sc, sz, plan, res, t) for t in times])
    tokens = float(sc.training.tokens_per_step)
    model_flops = float(metrics.model_flops_per_step(sz.costs, tokens))
    hw_flops = float(np.asarray(metrics.hardware_flops_per_step(
        sz.costs, tokens, sz.recompute, sz.table.flash_attention)).reshape(-1)[0])
    peak = sc.hardware.utilization_peak_flops_per_s(sc.training.dtype)
    n = sc.num_devices
    per_rank = list(plan.rank_layers)
    stage_layers = {"first": per_rank[0], "middle": max(per_rank[1:-1]) if pp >= 3 else 0,
                    "last": per_rank[-1] if pp > 1 else 0}
    pace = res.pacing
    return SimulationResult(
        scenario=sc, step_time_s=step, mfu=metrics.mfu(model_flops, step, n, peak),
        hfu=metrics.hfu(hw_flops, step, n, peak), tokens_per_s=metrics.tokens_per_s(tokens, step),
        tflops_per_device=metrics.tflops_per_device(model_flops, step, n), time_breakdown_s=breakdown,
        memory_bytes=memory_dict(row), extra_peaks=memory_peaks(row), fits=bool(row["fits"]),
        reasons=reasons_of_row(sc, row), memory_tiers=tier_memory_dict(sc, row),
        num_micro_batches=plan.num_micro, bubble_fraction=breakdown["bubble"] / max(res.ops_s[pace], 1e-30),
        pacing_rank="first" if pace[1] == 0 else ("last" if pace[1] == pp - 1 else "middle"),
        memory_rank=RANK_NAMES[int(row["memory_rank"])], stage_layers=stage_layers, engine="des",
        extra=_extra(sc, plan, res, times, per_rank, step, **kw), timeline=res.timeline,
        replay=Replay(plan=plan, engine=res))
