"""What an estimate returns, for both engines: the time breakdown (its categories defined once, here), the
memory breakdown, StepEstimate (analytic) and SimulationResult (discrete-event), with the stable JSON keys of
`to_dict()`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Optional

from .feasibility import STRUCTURAL_MASK, describe

#: Pipeline ranks the engines report on: the first, the busiest middle and the last stage.
RANK_NAMES = ("first", "middle", "last")


@dataclass(frozen=True)
class TimeBreakdown:
    """One step split by kind along the busiest rank's time line; the fields sum to the step time. The field
    names (without `_s`) are the keys of `time_breakdown_s` and of the engines' `time_<kind>_s` columns; each
    field's metadata names the quantity it sums (the explain view reads it)."""

    compute_s: object = field(default=0.0, metadata={"quantity": "GEMMs and attention cores of the pacing rank's "
                                                     "forward and backward layer passes, and its logits/loss"})
    elementwise_s: object = field(default=0.0, metadata={"quantity": "memory-bound elementwise kernels of its layer "
                                                         "passes (norms, residuals, activation, dropout)"})
    fp8_cast_s: object = field(default=0.0, metadata={"quantity": "FP8 cast-transposes (FP8 runs) or AQT int8 quantisation (int8 runs) of GEMM operands"})
    host_s: object = field(default=0.0, metadata={"quantity": "host-bound time: what host work per layer pass adds "
                                                  "beyond the GPU time, and the host work per micro-batch outside "
                                                  "the layers (batch fetch, embedding, loss, schedule)"})
    recompute_s: object = field(default=0.0, metadata={"quantity": "activation recomputation inside the backward"})
    tp_comm_s: object = field(default=0.0, metadata={"quantity": "exposed tensor-parallel collectives (and the "
                                                     "vocab-parallel embedding all-reduce)"})
    cp_comm_s: object = field(default=0.0, metadata={"quantity": "exposed context-parallel K/V ring exchange"})
    ep_comm_s: object = field(default=0.0, metadata={"quantity": "exposed MoE expert-parallel all-to-alls"})
    pp_comm_s: object = field(default=0.0, metadata={"quantity": "pipeline send/receive of activations and "
                                                     "gradients"})
    bubble_s: object = field(default=0.0, metadata={"quantity": "pipeline fill and drain (idle time of the "
                                                    "pacing rank)"})
    dp_comm_s: object = field(default=0.0, metadata={"quantity": "exposed data-parallel gradient reduction and "
                                                     "ZeRO parameter gathers"})
    offload_s: object = field(default=0.0, metadata={"quantity": "offload beyond the device: host-link and NVMe "
                                                     "transfers compute does not hide (parameter fetches, gradient "
                                                     "and activation copies) and the CPU optimizer phase"})
    optimizer_s: object = field(default=0.0, metadata={"quantity": "optimizer step over the parameters this "
                                                       "device owns"})
    overhead_s: object = field(default=0.0, metadata={"quantity": "fixed per-step overhead of the framework"})

    def to_dict(self) -> dict:
        """{category: seconds} in category order (the `time_breakdown_s` of to_dict())."""
        return {f.name[:-2]: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "TimeBreakdown":
        return cls(**{f"{k}_s": v for k, v in d.items()})


#: Step-time categories, in report order: the one definition (TimeBreakdown's fields).
TIME_CATEGORIES = tuple(f.name[:-2] for f in fields(TimeBreakdown))
BREAKDOWN_KEYS = TIME_CATEGORIES
#: Quantity each category sums (for the explain view).
TIME_QUANTITIES = {f.name[:-2]: f.metadata["quantity"] for f in fields(TimeBreakdown)}


@dataclass(frozen=True)
class MemoryBreakdown:
    """Per-device memory of the fullest pipeline rank, bytes. Its fields are the keys of `memory` in to_dict()."""

    weights_bytes: object = field(default=0.0, metadata={"quantity": "weights held (sharded over data parallelism "
                                                         "by ZeRO-3, plus ZeRO-3 gather buffers)"})
    grads_bytes: object = field(default=0.0, metadata={"quantity": "gradients (sharded by ZeRO-2/3)"})
    optimizer_bytes: object = field(default=0.0, metadata={"quantity": "Adam state: fp32 master weights, m, v "
                                                           "(sharded by ZeRO-1/2/3)"})
    activations_bytes: object = field(default=0.0, metadata={"quantity": "activations kept for the backward of "
                                                             "the micro-batches in flight, embedding output and "
                                                             "logits"})
    reserved_bytes: object = field(default=0.0, metadata={"quantity": "context outside the tensors (runtime, "
                                                           "communication buffers, fragmentation): the framework "
                                                           "preset's allocator.context_gb or the profile's estimate"})

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: Memory kinds, in report order (MemoryBreakdown's fields without `_bytes`), and the quantity each holds (with
#: the two totals of the `memory` mapping).
MEMORY_KEYS = tuple(f.name[:-6] for f in fields(MemoryBreakdown))
MEMORY_QUANTITIES = {**{f.name[:-6]: f.metadata["quantity"] for f in fields(MemoryBreakdown)},
                     "total": "sum of the kinds above on the fullest pipeline rank",
                     "capacity": "memory of one device"}


@dataclass(frozen=True)
class TierMemory:
    """Memory beyond the device, per node, with the capacities it is checked against (None = the profile does not
    give it). Its fields are the keys of `memory_tiers` in to_dict(); zero bytes where nothing is offloaded."""

    host_bytes_per_node: float = field(default=0.0, metadata={"quantity": "host memory the job's devices on one "
                                                                "node keep there (offloaded optimizer state, fp32 "
                                                                "gradients, parameters, activation checkpoints)"})
    host_capacity_bytes_per_node: Optional[float] = field(default=None, metadata={"quantity": "host memory of a "
                                                                                   "node (profile host.memory_gb)"})
    nvme_bytes_per_node: float = field(default=0.0, metadata={"quantity": "NVMe the job's devices on one node keep "
                                                                "there (offloaded optimizer state, parameters)"})
    nvme_capacity_bytes_per_node: Optional[float] = field(default=None, metadata={"quantity": "local NVMe of a node "
                                                                                   "(profile host.nvme_gb)"})

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def tier_memory_dict(sc, r: dict) -> dict:
    """The `memory_tiers` mapping of engine row `r` of scenario `sc` (mem_host_bytes, mem_nvme_bytes; the
    capacities of its hardware)."""
    from .feasibility import tier_capacity_bytes
    caps = {}
    for tier in ("host", "nvme"):
        c = tier_capacity_bytes(sc.hardware, sc.num_devices, tier)
        caps[tier] = None if math.isnan(c) else c
    return TierMemory(host_bytes_per_node=float(r["mem_host_bytes"]), host_capacity_bytes_per_node=caps["host"],
                      nvme_bytes_per_node=float(r["mem_nvme_bytes"]),
                      nvme_capacity_bytes_per_node=caps["nvme"]).to_dict()


@dataclass(frozen=True)
class StepEstimate:
    """Result of one layout: time, utilisation, memory, feasibility. `to_dict()` gives the stable JSON keys."""

    scenario: object
    step_time_s: float = field(metadata={"quantity": "time of one optimizer step: the pipelined micro-batches of the "
                                         "slowest rank, exposed DP/ZeRO communication, optimizer, overhead"})
    mfu: float = field(metadata={"quantity": "model FLOPs per step (no recomputation) / (step time x devices x "
                                 "dense bf16 peak)"})
    hfu: float = field(metadata={"quantity": "model + recomputed FLOPs per step / (step time x devices x dense "
                                 "bf16 peak)"})
    tokens_per_s: float = field(metadata={"quantity": "tokens per step (global batch x sequence) / step time"})
    tflops_per_device: float = field(metadata={"quantity": "model FLOPs per step / step time / devices, in "
                                               "TFLOP/s (1e12)"})
    time_breakdown_s: dict
    memory_bytes: dict
    fits: bool                  # device, host and NVMe memory all fit
    reasons: list = field(default_factory=list)
    num_micro_batches: int = field(default=1, metadata={"quantity": "micro-batches per data-parallel replica "
                                                        "per step"})
    bubble_fraction: float = field(default=0.0, metadata={"quantity": "pipeline bubble / pipelined time of the "
                                                          "pacing rank's micro-batches"})
    pacing_rank: str = "first"
    memory_rank: str = "first"
    stage_layers: dict = field(default_factory=dict)
    engine: str = "analytic"
    extra: dict = field(default_factory=dict)
    runnable: bool = True       # False: the layout cannot be formed (not only too big); its figures mean nothing
    memory_tiers: dict = field(default_factory=lambda: TierMemory().to_dict())
    extra_peaks: dict = field(default_factory=dict)   # memory_peaks(): allocated, reserved, device

    @property
    def feasible(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        sc = self.scenario
        d = {
            "engine": self.engine,
            "model": sc.model.name,
            "hardware": sc.hardware.name,
            "devices": sc.num_devices,
            "framework": getattr(sc.framework, "name", None),
            "framework_overrides": dict(sc.overrides) if hasattr(sc, "overrides") else {},
            "attention_kernel": _attention_kernel(sc),
            "layout": sc.layout.model_dump(),
            "training": sc.training.model_dump(),
            "mfu": self.mfu,
            "hfu": self.hfu,
            "step_time_s": self.step_time_s,
            "tokens_per_s": self.tokens_per_s,
            "tflops_per_device": self.tflops_per_device,
            "time_breakdown_s": dict(self.time_breakdown_s),
            "memory": dict(self.memory_bytes),
            "memory_tiers": dict(self.memory_tiers),
            "memory_peaks": dict(self.extra_peaks),
            "fits": self.fits,
            "feasible": self.feasible,
            "reasons": list(self.reasons),
            "num_micro_batches": self.num_micro_batches,
            "bubble_fraction": self.bubble_fraction,
            "pacing_rank": self.pacing_rank,
            "memory_rank": self.memory_rank,
            "stage_layers": dict(self.stage_layers),
        }
        d.update(self.extra)
        d["runnable"] = self.runnable
        if not self.runnable:
            # A layout that cannot be formed (world size, divisibility, more chunks than layers) has no step time or
            # utilisation: null rather than figures computed from an impossible split (memory stays, as documented).
            for k in ("mfu", "hfu", "step_time_s", "tokens_per_s", "tflops_per_device", "bubble_fraction"):
                d[k] = None
            d["time_breakdown_s"] = {k: None for k in d["time_breakdown_s"]}
        return d


@dataclass(frozen=True)
class SimulationResult(StepEstimate):
    """A StepEstimate from the discrete-event engine, with the timeline (des.spec.Timeline) of the median replay
    and the replay itself (des.simulate.Replay: its plan and engine result; not part of to_dict())."""

    timeline: object = field(default=None, repr=False, compare=False)
    replay: object = field(default=None, repr=False, compare=False)


def _attention_kernel(sc):
    """The attention kernel the scenario's layout runs (specs.stack.attention_kernel_name)."""
    if getattr(sc, "framework", None) is None:
        return None
    from .specs.stack import attention_kernel_name
    return attention_kernel_name(sc.framework, sc.hardware.family, bool(sc.layout.flash_attention))


#: The three memory peaks frameworks report (to_dict()['memory_peaks']), and what each measures.
MEMORY_PEAK_QUANTITIES = {
    "allocated_bytes": "tensors held at the peak (weights, grads, optimizer, activations): what "
                       "torch.cuda.max_memory_allocated reports",
    "reserved_bytes": "the caching allocator's reserved peak for it: allocated / utilisation + fragmentation (the "
                      "framework preset's allocator model): torch.cuda.max_memory_reserved",
    "device_bytes": "reserved peak + context outside the allocator: device use as nvidia-smi shows it on a roomy "
                    "device (what must fit is allocated + context: memory.total_bytes)",
}


def memory_peaks(r: dict) -> dict:
    """The three memory peaks of one engine row (MEMORY_PEAK_QUANTITIES)."""
    if "mem_allocated_bytes" not in r:
        return {}
    return {"allocated_bytes": float(r["mem_allocated_bytes"]), "reserved_bytes": float(r["mem_reserved_peak_bytes"]),
            "device_bytes": float(r["mem_device_peak_bytes"])}


def memory_dict(r: dict) -> dict:
    """The `memory` mapping of one engine row (mem_<kind>_bytes, mem_total_bytes, mem_capacity_bytes)."""
    memory = {f"{k}_bytes": float(r[f"mem_{k}_bytes"]) for k in MEMORY_KEYS}
    memory["total_bytes"] = float(r["mem_total_bytes"])
    memory["capacity_bytes"] = float(r["mem_capacity_bytes"])
    return memory


def reasons_of_row(sc, r: dict) -> list[str]:
    """The reason sentences of one engine row of scenario `sc`."""
    lay = sc.layout
    from .specs.layout import SCHEDULE_CODES
    row = {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep, "cp": lay.cp, "vpp": lay.vpp,
           "micro_batch": lay.micro_batch, "zero": lay.zero, **offload_codes(lay),
           "schedule": SCHEDULE_CODES[lay.resolved_schedule]}
    return describe(int(r["reasons"]), sc.model, sc.training, sc.num_devices, row, r, hardware=sc.hardware)


def offload_codes(lay) -> dict:
    """The offload tiers of a Layout as the integer codes of its LayoutTable row."""
    from .specs.layout import OFFLOAD_CODES
    return {k: OFFLOAD_CODES[getattr(lay, k)] for k in ("offload_optimizer", "offload_params", "offload_activations")}


def offload_detail(sc, r: dict) -> dict:
    """{'offload_s': {...}} from the off_*_s columns of engine row `r` when the layout offloads anything, else {}:
    the transfers per step by phase and direction and the optimizer phase (the analytic engine's terms)."""
    if not any(offload_codes(sc.layout).values()):
        return {}
    return {"offload_s": {k[4:-2]: float(r[k]) for k in r if k.startswith("off_") and k.endswith("_s")}}


def step_estimate_from_row(sc, r: dict, engine: str = "analytic") -> StepEstimate:
    """Wrap row `r` (scalars of one layout from the analytic engine's columns) as a StepEstimate with reason
    sentences."""
    return StepEstimate(
        scenario=sc, step_time_s=float(r["step_time_s"]), mfu=float(r["mfu"]), hfu=float(r["hfu"]),
        tokens_per_s=float(r["tokens_per_s"]), tflops_per_device=float(r["tflops_per_device"]),
        time_breakdown_s={k: float(r[f"time_{k}_s"]) for k in TIME_CATEGORIES}, memory_bytes=memory_dict(r),
        fits=bool(r["fits"]), reasons=reasons_of_row(sc, r),
        num_micro_batches=int(r["num_micro_batches"]), bubble_fraction=float(r["bubble_fraction"]),
        pacing_rank=RANK_NAMES[int(r["pacing_rank"])], memory_rank=RANK_NAMES[int(r["memory_rank"])],
        stage_layers={"first": int(r["layers_first"]), "middle": int(r["layers_mid"]), "last": int(r["layers_last"])},
        engine=engine, runnable=not (int(r["reasons"]) & STRUCTURAL_MASK), memory_tiers=tier_memory_dict(sc, r),
        extra=offload_detail(sc, r), extra_peaks=memory_peaks(r),
    )
