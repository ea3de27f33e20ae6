"""A run, not a step: checkpoints, failures, restarts, goodput, wall-clock days, dollars and energy.

Pure cost functions first (each cites its source), then `plan(scenario, tokens, run)`, which combines the analytic
one-step estimate with them. Model of a run (Young 1974; Daly 2006): training proceeds in segments of `interval_s`
seconds of compute, each closed by a checkpoint that blocks training for `block_s`; with two-stage asynchronous
checkpoints the storage write (`background_s`) runs behind the next segment and the checkpoint becomes durable only
when it ends. Unexpected failures arrive as a Poisson process (job MTBF = 1 / (rate per device-hour x devices)),
each costs the work since the last durable checkpoint plus a restart (detection, communicator initialisation that
grows with the job, checkpoint read); planned stops cost a checkpoint and a restart without detection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..costs.flops import model_costs
from ..costs.memory import ADAM_STATE_BYTES_PER_PARAM
from ..costs.offload import devices_on_node, host_link_bytes_per_s, transfer_time_s
from ..errors import InfeasibleLayoutError, SpecError
from ..specs.run import RestartSpec, RunSpec, load_run
from ..specs.scenario import Scenario
from ..units import storage_bytes

SECONDS_PER_DAY = 86400.0


# ---- checkpoint size and time -------------------------------------------------------------------------------

def checkpoint_bytes_per_param(weight_bytes):
    """Bytes one parameter takes in a checkpoint: the model weight plus mixed-precision Adam's fp32 master copy, m
    and v (12 B); fp32 training keeps no separate master (4 + 8 B).

    Source: Megatron-LM distributed checkpoints save the model's weights and the distributed optimizer's fp32 main
    params, exp_avg and exp_avg_sq; ZeRO (arXiv 1910.02054) sec. 3.1: K = 12 bytes of optimizer state per parameter.
    Check: Narayanan et al. 2021 sec. 5.10, 13.8 TB for the 1T model = 13.7 B per parameter (2 + 12 = 14).
    """
    return weight_bytes + np.where(np.asarray(weight_bytes) >= 4, ADAM_STATE_BYTES_PER_PARAM - 4.0,
                                   ADAM_STATE_BYTES_PER_PARAM)


def checkpoint_bytes(num_params, weight_bytes):
    """Size of one full checkpoint (weights + optimizer state) of `num_params` parameters.
    Source: checkpoint_bytes_per_param (Megatron-LM distributed checkpoint contents; ZeRO sec. 3.1)."""
    return num_params * checkpoint_bytes_per_param(weight_bytes)


def checkpoint_bytes_from_memory(weights_bytes, optimizer_bytes, num_devices, weight_replicas, optimizer_replicas):
    """Unique checkpoint bytes from one device's resident model state: every device's weights and optimizer
    state, divided by the number of devices holding the same copy (data-parallel replicas; 1 when sharded).
    Source: ZeRO (arXiv 1910.02054) Fig. 1: which model states each stage replicates or partitions over DP."""
    return num_devices * (weights_bytes / weight_replicas + optimizer_bytes / optimizer_replicas)


def storage_write_time_s(num_bytes, write_bytes_per_s, num_nodes=1, per_node_bytes_per_s=None):
    """Time to write `num_bytes` to shared storage that all writers share: the fabric's aggregate bandwidth, or the
    writing nodes' own storage links when they are the narrower part.
    Source: Llama 3 (arXiv 2407.21783) sec. 3.3.1 (checkpoint write = bytes / fabric bandwidth, 2 TB/s sustained);
    Narayanan et al. 2021 sec. 5.10 (13.8 TB saved at 273 GB/s: 50.5 s)."""
    bw = write_bytes_per_s if per_node_bytes_per_s is None else np.minimum(write_bytes_per_s,
                                                                            num_nodes * per_node_bytes_per_s)
    return np.asarray(num_bytes, dtype=float) / bw


def checkpoint_block_s(mode: str, write_s, host_copy_s):
    """Seconds one checkpoint stops training: the whole storage write (sync), or only the device-to-pinned-host
    copy (two-stage async). Source: MegaScale (arXiv 2402.15627) sec. 4.4: stage 1 (GPU -> host memory) blocks
    training for seconds; stage 2 (host -> HDFS) runs in the background."""
    return write_s if mode == "sync" else host_copy_s


def checkpoint_background_s(mode: str, write_s):
    """Seconds after the block until an async checkpoint is durable (its storage write); 0 for sync.
    Source: MegaScale sec. 4.4 (two-stage checkpointing)."""
    return 0.0 if mode == "sync" else write_s


# ---- failures, restarts and the optimal interval ------------------------------------------------------------

def job_mtbf_s(rate_per_device_hour, num_devices):
    """Mean time between unexpected interruptions of a job on `num_devices` devices (a series system: rates add).
    Source: Llama 3 sec. 3.3.4 (419 interruptions in 54 days on 16K GPUs: one every ~3 h); Kokolis et al. 2024
    (arXiv 2410.21680): job MTTF falls as 1 / GPUs."""
    return 3600.0 / (rate_per_device_hour * num_devices)


def young_interval_s(checkpoint_cost_s, mtbf_s):
    """First-order optimal compute time between checkpoints, sqrt(2 x checkpoint cost x MTBF).
    Source: Young 1974, "A first order approximation to the optimum checkpoint interval", CACM 17(9);
    Daly 2006, Future Generation Computer Systems 22(3) (the same first-order term)."""
    return np.sqrt(2.0 * checkpoint_cost_s * mtbf_s)


def daly_interval_s(checkpoint_cost_s, mtbf_s):
    """Daly's higher-order optimum: sqrt(2CM) [1 + sqrt(C/2M)/3 + C/(18M)] - C for C < 2M, else M.
    Source: Daly 2006, "A higher order estimate of the optimum checkpoint interval for restart dumps", FGCS 22(3)."""
    c, m = np.asarray(checkpoint_cost_s, dtype=float), np.asarray(mtbf_s, dtype=float)
    tau = np.sqrt(2.0 * c * m) * (1.0 + np.sqrt(c / (2.0 * m)) / 3.0 + c / (18.0 * m)) - c
    return np.where(c < 2.0 * m, tau, m)


def comm_init_time_s(restart: RestartSpec, num_devices):
    """Communicator initialisation of a job on `num_devices`: the reference time scaled by (n / n_ref) ** exponent.
    Source: MegaScale sec. 3.5: 1,047 s (default) -> <5 s at 2,048 GPUs, <30 s on >10,000 GPUs with an O(n)
    barrier (exponent 1)."""
    return restart.comm_init_s * (np.asarray(num_devices, dtype=float) / restart.comm_init_devices) \
        ** restart.comm_init_exponent


def lost_time_per_failure_s(interval_s, block_s, background_s, restart_s):
    """First-order wall time one unexpected failure costs: half a segment of work (compute + checkpoint), the
    background write that had not yet made the last checkpoint durable, and the restart (detection included).
    Source: Young 1974 (half an interval lost on average); MegaScale sec. 6.3 (detection <10 min, catch-up from
    the latest checkpoint)."""
    return 0.5 * (interval_s + block_s) + background_s + restart_s


def wall_time_per_compute_s(interval_s, block_s, background_s, restart_s, mtbf_s, planned_per_s=0.0,
                            planned_cost_s=0.0):
    """Expected wall-clock seconds per second of useful compute (inf when the job cannot progress); arrays of
    intervals, blocks and planned costs give one value per layout.

    Synchronous part exact for Poisson failures that also strike restarts (Daly 2006, complete model):
    T_w = (T_s / tau) M e^(R/M) (e^((tau + C)/M) - 1). Asynchronous durability delay b, first order: a failure
    within b of a checkpoint loses one more segment, W -> W / (1 - b/M). Planned stops at rate p cost
    `planned_cost_s` each, W -> W / (1 - p x cost). Source: Daly 2006; MegaScale sec. 4.4 (two-stage checkpoints).
    """
    m = float(mtbf_s)
    if np.ndim(interval_s) or np.ndim(block_s) or np.ndim(planned_cost_s):        # one value per layout
        tau, blk = np.asarray(interval_s, dtype=float), np.asarray(block_s, dtype=float)
        with np.errstate(over="ignore"):
            seg = (m / tau) * math.exp(restart_s / m) * np.expm1((tau + blk) / m)
        keep_async = 1.0 - background_s / m
        keep_planned = 1.0 - planned_per_s * np.asarray(planned_cost_s, dtype=float)
        ok = (keep_async > 0) & (keep_planned > 0) & np.isfinite(seg)
        return np.where(ok, seg / np.where(ok, keep_async * keep_planned, 1.0), math.inf)
    seg = (m / interval_s) * math.exp(restart_s / m) * math.expm1((interval_s + block_s) / m)
    keep_async = 1.0 - background_s / m
    keep_planned = 1.0 - planned_per_s * planned_cost_s
    if keep_async <= 0 or keep_planned <= 0 or not math.isfinite(seg):
        return math.inf
    return seg / keep_async / keep_planned


def goodput(compute_s, wall_s):
    """Effective training time ratio: useful training time / elapsed time.
    Source: MegaScale sec. 6.3 (ETTR: iterations x iteration time / total time); Llama 3 sec. 3.3.4."""
    return compute_s / wall_s


def cost_usd(num_devices, price_per_device_hour, wall_s):
    """Rental cost: devices x price per device-hour x wall-clock hours (devices are paid while they wait).
    Source: the cost-to-train definition of planning/compare.py, over the whole run."""
    return None if price_per_device_hour is None else num_devices * price_per_device_hour * wall_s / 3600.0


def energy_mwh(num_devices, power_w, wall_s):
    """Accelerator energy: devices x board power (TDP) x wall-clock time, MWh; host, network and cooling (PUE)
    excluded; an upper bound for the device share (idle devices draw less than TDP).
    Source: the energy definition of planning/compare.py, over the whole run."""
    return None if power_w is None else num_devices * power_w * wall_s / 3600.0 / 1e6


# ---- the plan of one run ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    """Time, cost and energy of a whole run: the one-step estimate plus checkpoints, failures and restarts.
    `to_dict()` gives the JSON of `trainsim plan`."""

    step: object                      # the analytic StepEstimate of the layout
    run: RunSpec
    tokens: float
    compute_s: float                  # useful training time
    wall_clock_s: float               # expected elapsed time
    mtbf_s: float
    unexpected_interruptions: float
    planned_interruptions: float
    checkpoint: dict
    restart: dict
    time_breakdown_s: dict
    failure_causes: dict
    cost_usd: Optional[float]
    energy_mwh: Optional[float]
    price_per_hour_usd: Optional[float]
    power_w: Optional[float]
    samples: Optional[dict] = None
    reasons: tuple = ()
    assumptions: tuple = ()

    @property
    def goodput(self) -> float:
        return goodput(self.compute_s, self.wall_clock_s)

    @property
    def feasible(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        st = self.step.to_dict()
        return {
            "model": st["model"], "hardware": st["hardware"], "devices": st["devices"], "layout": st["layout"],
            "training": st["training"], "run": self.run.name,
            "step": {k: st[k] for k in ("step_time_s", "tokens_per_s", "mfu", "hfu", "tflops_per_device", "fits")},
            "tokens": self.tokens, "compute_days": self.compute_s / SECONDS_PER_DAY,
            "wall_clock_days": self.wall_clock_s / SECONDS_PER_DAY, "goodput": self.goodput,
            "mtbf_s": self.mtbf_s, "unexpected_interruptions": self.unexpected_interruptions,
            "planned_interruptions": self.planned_interruptions,
            "interruptions": self.unexpected_interruptions + self.planned_interruptions,
            "checkpoint": dict(self.checkpoint), "restart": dict(self.restart),
            "time_breakdown_s": dict(self.time_breakdown_s), "failure_causes": dict(self.failure_causes),
            "cost_usd": self.cost_usd, "energy_mwh": self.energy_mwh, "price_per_hour_usd": self.price_per_hour_usd,
            "power_w": self.power_w, "samples": self.samples, "feasible": self.feasible,
            "reasons": list(self.reasons), "assumptions": list(self.assumptions),
        }


def _checkpoint_facts(sc: Scenario, run: RunSpec, mode: str) -> tuple[dict, list]:
    """Checkpoint size, write time, blocking and background time of `sc` under `run` (and any reasons)."""
    m, n, hw = sc.model, sc.num_devices, sc.hardware
    params = model_costs(m, sc.training.seq_len).total_params(m.tied_embeddings)
    size = float(checkpoint_bytes(params, storage_bytes(sc.training.dtype)))
    per_device = size / n                               # fully parallel save: every rank writes its share
    nodes = math.ceil(n / hw.devices_per_node)
    write_s = float(storage_write_time_s(size, run.storage.write_bytes_per_s, nodes,
                                         run.storage.per_node_write_bytes_per_s))
    reasons, copy_s = [], 0.0
    if mode == "async":
        host = hw.host
        if host is None or host.link_bytes_per_s is None:
            raise SpecError(f"async checkpoints need the host link bandwidth: hardware '{hw.name}' has no "
                            "host.link_gb_per_s (add a host block to the profile, or use sync checkpoints)")
        on_node = devices_on_node(n, hw.devices_per_node)
        copy_s = float(transfer_time_s(per_device, host_link_bytes_per_s(host.link_bytes_per_s,
                                                                          host.link_node_bytes_per_s, on_node)))
        if host.memory_bytes is not None and per_device * on_node > host.memory_bytes:
            reasons.append(f"async checkpoint needs {per_device * on_node / 1e9:,.1f} GB of pinned host memory per "
                           f"node, more than the {host.memory_bytes / 1e9:,.0f} GB available")
    facts = {"mode": mode, "bytes": size, "bytes_per_device": per_device, "write_s": write_s,
             "host_copy_s": copy_s, "block_s": float(checkpoint_block_s(mode, write_s, copy_s)),
             "background_s": float(checkpoint_background_s(mode, write_s)),
             "read_s": size / run.storage.read_bytes_per_s}
    return facts, reasons


def _restart_facts(run: RunSpec, num_devices: int, read_s: float) -> dict:
    r = run.restart
    init = float(comm_init_time_s(r, num_devices))
    planned = init + read_s + r.other_s
    return {"detection_s": r.detection_s, "comm_init_s": init, "checkpoint_read_s": read_s, "other_s": r.other_s,
            "unexpected_s": r.detection_s + planned, "planned_s": planned}


def _interval(ckpt: dict, mtbf: float, step_s: float, chosen: Optional[float]) -> tuple[float, float, int]:
    """(optimal interval, used interval, steps per checkpoint): Young's optimum, no shorter than the async write
    (a shorter one queues writes), rounded to whole steps."""
    optimum = max(float(young_interval_s(ckpt["block_s"], mtbf)), ckpt["background_s"])
    target = chosen if chosen is not None else optimum
    steps = max(1, int(round(target / step_s)))
    return optimum, steps * step_s, steps


@dataclass(frozen=True)
class RunFacts:
    """What a run of one job (model, hardware, devices, dtype) costs besides its steps, whatever its layout: the
    checkpoint (size, write, block, background), the restarts, the job MTBF, planned stops and a chosen interval."""

    run: RunSpec
    checkpoint: dict
    restart: dict
    mtbf_s: float
    planned_per_s: float
    interval_s: Optional[float] = None
    reasons: tuple = ()


def run_facts(scenario: Scenario, run, checkpoint_mode: Optional[str] = None,
              checkpoint_interval_s: Optional[float] = None) -> RunFacts:
    """The RunFacts of `scenario`'s job under `run` (a RunSpec or preset name); the layout does not enter.
    Source: as plan() (checkpoint_bytes, storage_write_time_s, checkpoint_block_s, job_mtbf_s, comm_init_time_s)."""
    run = load_run(run)
    mode = checkpoint_mode or run.checkpoint.mode
    if mode not in ("sync", "async"):
        raise SpecError(f"checkpoint mode '{mode}' must be sync or async")
    ckpt, reasons = _checkpoint_facts(scenario, run, mode)
    n = scenario.num_devices
    return RunFacts(run=run, checkpoint=ckpt, restart=_restart_facts(run, n, ckpt["read_s"]),
                    mtbf_s=float(job_mtbf_s(run.failures.per_device_hour, n)),
                    planned_per_s=run.failures.planned_per_s,
                    interval_s=checkpoint_interval_s or run.checkpoint.interval_s, reasons=tuple(reasons))


def wall_clock_s(facts: RunFacts, compute_s, step_s):
    """Expected wall-clock seconds of `compute_s` of useful training in steps of `step_s` (arrays: one value per
    layout), as plan() composes it: Young's interval rounded to whole steps, a queued async write stalling the
    next checkpoint, Daly's complete model with async and planned-stop terms (wall_time_per_compute_s).
    Source: Young 1974; Daly 2006; MegaScale sec. 4.4 (see plan())."""
    ck, rst = facts.checkpoint, facts.restart
    optimum = max(float(young_interval_s(ck["block_s"], facts.mtbf_s)), ck["background_s"])
    target = facts.interval_s if facts.interval_s is not None else optimum
    step_s = np.asarray(step_s, dtype=float)
    tau = np.maximum(1.0, np.rint(target / step_s)) * step_s
    block = ck["block_s"] + np.maximum(0.0, ck["background_s"] - tau)
    planned_cost = block + ck["background_s"] + rst["planned_s"]
    return np.asarray(compute_s, dtype=float) * wall_time_per_compute_s(
        tau, block, ck["background_s"], rst["unexpected_s"], facts.mtbf_s, facts.planned_per_s, planned_cost)


def plan(scenario: Scenario, tokens: Optional[float], run, *, days: Optional[float] = None,
         checkpoint_interval_s: Optional[float] = None, checkpoint_mode: Optional[str] = None, samples: int = 0,
         seed: int = 0, price_per_hour_usd: Optional[float] = None, step=None) -> RunPlan:
    """Plan a run of `tokens` tokens (or of a fixed window of `days`) of `scenario` under `run` (a RunSpec or preset
    name). `step` reuses a StepEstimate of the scenario; `samples` > 0 adds a seeded Monte-Carlo replay (des.run)."""
    from ..analytic.estimate import estimate
    from ..des.run import RunTimeline, replay_runs

    run = load_run(run)
    if (tokens is None) == (days is None):
        raise SpecError("give exactly one of tokens and days")
    st = step if step is not None else estimate(scenario)
    if not st.runnable:
        raise InfeasibleLayoutError(st.reasons, st)
    n, step_s = scenario.num_devices, st.step_time_s
    mode = checkpoint_mode or run.checkpoint.mode
    if mode not in ("sync", "async"):
        raise SpecError(f"checkpoint mode '{mode}' must be sync or async")
    ckpt, reasons = _checkpoint_facts(scenario, run, mode)
    mtbf = float(job_mtbf_s(run.failures.per_device_hour, n))
    rst = _restart_facts(run, n, ckpt["read_s"])
    optimum, tau, steps = _interval(ckpt, mtbf, step_s, checkpoint_interval_s or run.checkpoint.interval_s)
    block = ckpt["block_s"] + max(0.0, ckpt["background_s"] - tau)      # a queued write stalls the next one
    planned_cost = block + ckpt["background_s"] + rst["planned_s"]
    per_compute = wall_time_per_compute_s(tau, block, ckpt["background_s"], rst["unexpected_s"], mtbf,
                                          run.failures.planned_per_s, planned_cost)
    if not math.isfinite(per_compute):
        raise InfeasibleLayoutError([f"the run cannot progress: job MTBF {mtbf:,.0f} s is too short for restarts of "
                                     f"{rst['unexpected_s']:,.0f} s and checkpoints every {tau:,.0f} s"], st)
    compute_s = tokens / st.tokens_per_s if tokens is not None else days * SECONDS_PER_DAY / per_compute
    tokens = tokens if tokens is not None else compute_s * st.tokens_per_s
    wall = compute_s * per_compute
    ckpt.update(optimal_interval_s=optimum, interval_s=tau, interval_steps=steps, effective_block_s=block,
                num_checkpoints=compute_s / tau)
    n_fail, n_plan = wall / mtbf, wall * run.failures.planned_per_s
    breakdown = _breakdown(compute_s, wall, ckpt, rst, n_fail, n_plan, planned_cost, tau)
    sampled = None
    if samples:
        tl = RunTimeline(compute_s, tau, block, ckpt["background_s"], rst["unexpected_s"], mtbf,
                         run.failures.planned_per_s, planned_cost)
        sampled = replay_runs(tl, samples, seed).summary()
    hw = scenario.hardware
    price = price_per_hour_usd if price_per_hour_usd is not None else hw.device.price_per_hour_usd
    causes = {k: {"rate_per_device_hour": v, "expected": v * n * wall / 3600.0}
              for k, v in run.failures.component_rates().items()}
    return RunPlan(step=st, run=run, tokens=float(tokens), compute_s=compute_s, wall_clock_s=wall, mtbf_s=mtbf,
                   unexpected_interruptions=n_fail, planned_interruptions=n_plan, checkpoint=ckpt, restart=rst,
                   time_breakdown_s=breakdown, failure_causes=causes, cost_usd=cost_usd(n, price, wall),
                   energy_mwh=energy_mwh(n, hw.device.power_w, wall), price_per_hour_usd=price,
                   power_w=hw.device.power_w, samples=sampled, reasons=tuple(list(st.reasons) + reasons),
                   assumptions=_assumptions(mode))


def _breakdown(compute_s, wall, ckpt, rst, n_fail, n_plan, planned_cost, tau) -> dict:
    """Wall-clock seconds by kind; lost work (re-done training, interrupted restarts) is the remainder."""
    ckpt_s = compute_s / tau * ckpt["effective_block_s"]
    restart_s = n_fail * rst["unexpected_s"]
    planned_s = n_plan * planned_cost
    return {"compute": compute_s, "checkpoint": ckpt_s, "restart": restart_s, "planned_stops": planned_s,
            "lost_work": max(0.0, wall - compute_s - ckpt_s - restart_s - planned_s),
            "lost_per_failure_first_order": float(lost_time_per_failure_s(tau, ckpt["effective_block_s"],
                                                                          ckpt["background_s"],
                                                                          rst["unexpected_s"]))}


def _assumptions(mode: str) -> tuple:
    out = ["failures: Poisson, job rate = rate per device-hour x devices, also during restarts",
           "checkpoint: weights + fp32 Adam state (14 B/param in bf16), written by all ranks in parallel",
           "interval: Young's sqrt(2 x block x MTBF) unless given, rounded to whole steps",
           "cost: devices x price x wall-clock; energy: devices x board power x wall-clock (no host, no PUE)"]
    if mode == "async":
        out.append("async: a checkpoint is durable only after its background write; a failure before that loses "
                   "one more segment (first order)")
    return tuple(out)
