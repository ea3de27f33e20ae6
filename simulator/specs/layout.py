"""Parallel layout of one training job: how the devices are split and what each stage runs.

Axis names are `tp pp dp ep cp` everywhere. EP is carved out of DP (Megatron): `ep` divides `dp` and does not
multiply the world size, so `tp * pp * dp * cp = devices`.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..errors import SpecError
from .base import MAX_BATCH, MAX_DEVICES, MAX_LAYERS, Spec

Recompute = Literal["none", "selective", "full"]
Schedule = Literal["gpipe", "1f1b", "interleaved", "zb-h1", "dualpipe", "zb-v"]
Zero3Unit = Literal["layer", "tensor"]
MoeDispatch = Literal["flat", "hierarchical", "node-limited"]
DpCompression = Literal["none", "onebit"]
#: Where a kind of model state lives beyond the device (DeepSpeed zero_optimization.offload_optimizer /
#: offload_param `device`: none | cpu | nvme). Activation checkpoints go to CPU memory only (ZeRO-Infinity,
#: arXiv 2104.07857, sec. 5.1: activation checkpoints offloaded to CPU memory).
OffloadTier = Literal["none", "cpu", "nvme"]
ActivationOffloadTier = Literal["none", "cpu"]
AXES = ("tp", "cp", "ep", "dp", "pp")
DEFAULT_ORDER = "tp-cp-ep-dp-pp"

#: Integer codes used by the vectorized engine (columns of a LayoutTable).
RECOMPUTE_CODES = {"none": 0, "selective": 1, "full": 2}
SCHEDULE_CODES = {"gpipe": 0, "1f1b": 1, "interleaved": 2, "zb-h1": 3, "dualpipe": 4, "zb-v": 5}
ZERO3_UNIT_CODES = {"layer": 0, "tensor": 1}
MOE_DISPATCH_CODES = {"flat": 0, "hierarchical": 1, "node-limited": 2}
DP_COMPRESSION_CODES = {"none": 0, "onebit": 1}
#: Schedules whose ranks hold two model chunks placed by the schedule itself (not Megatron's interleaving).
TWO_CHUNK_SCHEDULES = ("dualpipe", "zb-v")
OFFLOAD_CODES = {"none": 0, "cpu": 1, "nvme": 2}


class Layout(Spec):
    """One parallel layout. `dp` may be omitted (derived from the device count)."""

    tp: int = Field(1, ge=1, le=MAX_DEVICES, description="tensor-parallel degree")
    pp: int = Field(1, ge=1, le=MAX_LAYERS, description="pipeline stages")
    dp: Optional[int] = Field(None, ge=1, le=MAX_DEVICES, description="data-parallel replicas; derived from devices when omitted")
    ep: int = Field(1, ge=1, le=MAX_DEVICES, description="expert-parallel degree (carved out of dp)")
    cp: int = Field(1, ge=1, le=MAX_DEVICES, description="context-parallel degree (sequence split for attention)")
    vpp: int = Field(1, ge=1, le=MAX_LAYERS, description="virtual pipeline stages (model chunks) per pipeline rank")
    zero: int = Field(1, ge=0, le=3, description="ZeRO stage: 0 none, 1 optimizer (distributed optimizer), "
                                                  "2 +gradients, 3 +weights (FSDP)")
    zero3_unit: Optional[Zero3Unit] = Field(None, description="ZeRO-3 gather unit: 'layer' = one flat gather per "
                                            "transformer block (PyTorch FSDP, Megatron-FSDP); 'tensor' = one gather "
                                            "per parameter tensor (DeepSpeed ZeRO-3 as of 2021); None: the "
                                            "framework's (specs.stack)")
    sequence_parallel: bool = Field(True, description="Megatron sequence parallelism (only with tp > 1)")
    recompute: Recompute = Field("selective", description="activation recomputation")
    micro_batch: int = Field(1, ge=1, le=MAX_BATCH, description="sequences per micro-batch per data-parallel replica")
    schedule: Optional[Schedule] = Field(None, description="pipeline schedule; default 1f1b, interleaved if vpp>1")
    # Software-stack flags: None takes the framework preset's value (specs.stack.resolve_layout); a stated value
    # overrides it.
    flash_attention: Optional[bool] = Field(None, description="fused attention: no s^2 activations, causal half of "
                                            "the work; None: the framework's kernel")
    overlap_grad_reduce: Optional[bool] = Field(None, description="overlap DP/ZeRO gradient reduction with backward")
    dp_param_gather_overlap: Optional[bool] = Field(None, description="overlap the distributed optimizer's (ZeRO-1/2) "
                                                    "parameter all-gather with the next forward")
    tp_comm_overlap: Optional[bool] = Field(None, description="overlap TP collectives with GEMMs (Transformer Engine)")
    ep_comm_overlap: Optional[bool] = Field(None, description="hide the MoE expert-parallel all-to-alls behind "
                                            "another micro-batch's compute (Megatron-Core "
                                            "--overlap-moe-expert-parallel-comm, combined 1F1B; needs pp == 1 or an "
                                            "interleaved schedule)")
    placement: str = Field(DEFAULT_ORDER, max_length=64, description="rank order, innermost axis first (Megatron tp-cp-ep-dp-pp)")
    stage_layers: Optional[list[int]] = Field(
        None, max_length=MAX_LAYERS, description="explicit layers per model chunk (pp*vpp entries, in pipeline order); default: even, "
                          "or uneven with lighter first/last chunks")
    moe_dispatch: MoeDispatch = Field("flat", description="MoE token dispatch/combine: flat all-to-all (NCCL), "
                                      "hierarchical (intra-node then inter-node: DeepSpeed-MoE, Tutel 2DH) or "
                                      "node-limited (one copy per node over the network, NVLink forward: DeepEP)")
    moe_max_nodes: Optional[int] = Field(None, ge=1, description="node-limited routing: at most this many nodes "
                                         "per token (DeepSeek-V3: 4); null = no limit")
    dp_compression: DpCompression = Field("none", description="data-parallel gradient compression: none, or onebit "
                                          "(1-bit Adam / 1-bit LAMB: sign + scale after a full-precision warm-up; "
                                          "needs zero 0)")
    onebit_warmup_fraction: float = Field(0.15, ge=0.0, le=1.0, description="share of the steps 1-bit Adam runs "
                                          "uncompressed before freezing the variance (blog: 15%)")
    local_sgd_tau: int = Field(1, ge=1, description="local SGD: inner steps per outer all-reduce of the parameter "
                               "change, overlapped with the next tau steps (CO2); 1 = synchronous data parallelism")
    offload_optimizer: OffloadTier = Field(
        "none", description="ZeRO-Offload: optimizer state (fp32 master, m, v) and fp32 gradients of the device's "
                            "partition in host memory, Adam on the CPU (cpu), or the optimizer state on NVMe "
                            "(nvme, ZeRO-Infinity); needs zero >= 2 when the optimizer is sharded (dp x cp > 1)")
    offload_params: OffloadTier = Field(
        "none", description="ZeRO-3 Offload / ZeRO-Infinity: the fp16 parameter partition in host memory (cpu) or on "
                            "NVMe (nvme), fetched over the host link layer by layer in every pass; needs zero 3 "
                            "when dp x cp > 1")
    offload_activations: ActivationOffloadTier = Field(
        "none", description="activation checkpoints in host memory, copied out in the forward and back in the "
                            "backward (ZeRO-Infinity); CPU only")
    offload_delayed_update: bool = Field(
        False, description="ZeRO-Offload's one-step delayed parameter update: the CPU optimizer step overlaps the "
                           "next step's forward and backward (needs offload_optimizer)")

    @field_validator("placement")
    @classmethod
    def _placement(cls, v: str) -> str:
        parts = v.split("-")
        required = {"tp", "cp", "dp", "pp"}
        if set(parts) - set(AXES) or not required <= set(parts) or len(parts) != len(set(parts)):
            raise ValueError(f"placement '{v}' must order the axes tp, cp, dp, pp (and optionally ep), each once, "
                             "joined by '-', e.g. tp-cp-ep-dp-pp")
        if "ep" in parts and parts.index("ep") + 1 != parts.index("dp"):
            raise ValueError(f"placement '{v}': ep must come right before dp (EP is carved out of DP)")
        return v

    @field_validator("stage_layers")
    @classmethod
    def _stage_layers(cls, v):
        if v is not None and (len(v) == 0 or any(n < 0 or n > MAX_LAYERS for n in v)):
            raise ValueError(f"stage_layers {v} must be a non-empty list of layer counts between 0 and {MAX_LAYERS}")
        return v

    @model_validator(mode="after")
    def _schedule(self):
        if self.schedule == "interleaved" and self.vpp == 1:
            raise ValueError("schedule 'interleaved' needs vpp > 1")
        if self.vpp > 1 and self.schedule not in (None, "interleaved"):
            raise ValueError(f"vpp={self.vpp} needs schedule 'interleaved', not '{self.schedule}'")
        if self.schedule == "dualpipe" and self.pp % 2 != 0:
            raise ValueError(f"schedule 'dualpipe' needs an even pp (two pipelines folded over the ranks), not "
                             f"pp={self.pp}")
        if self.dp_compression != "none" and self.local_sgd_tau > 1:
            raise ValueError(f"dp_compression '{self.dp_compression}' and local_sgd_tau={self.local_sgd_tau} both "
                             "replace the gradient all-reduce: choose one")
        if (self.dp_compression != "none" or self.local_sgd_tau > 1) and self.zero != 0:
            what = f"dp_compression '{self.dp_compression}'" if self.dp_compression != "none" else \
                f"local_sgd_tau={self.local_sgd_tau}"
            raise ValueError(f"{what} needs zero 0 (every replica keeps its whole optimizer state), not "
                             f"zero={self.zero}")
        if self.offload_delayed_update and self.offload_optimizer == "none":
            raise ValueError("offload_delayed_update needs offload_optimizer cpu or nvme (the delayed step is the CPU "
                             "optimizer's), got offload_optimizer 'none'")
        return self

    @property
    def resolved_schedule(self) -> str:
        if self.schedule is not None:
            return self.schedule
        return "interleaved" if self.vpp > 1 else "1f1b"

    def with_dp(self, num_devices: int) -> "Layout":
        """The layout with dp filled in from the device count (unchanged if dp is set).

        Bad input (SpecError) when the device count is out of range, or when dp is left to derive and the devices
        do not divide by tp x pp x cp: that one root cause, not the world-size and batch reasons that an
        invented dp would add."""
        if not 1 <= num_devices <= MAX_DEVICES:
            raise SpecError(f"devices ({num_devices:,}) must be between 1 and {MAX_DEVICES:,}")
        if self.dp is not None:
            return self
        denom = self.tp * self.pp * self.cp
        if num_devices % denom:
            lower, upper = num_devices // denom * denom, (num_devices // denom + 1) * denom
            near = f"{lower:,} or {upper:,}" if lower else f"{upper:,}"
            raise SpecError(
                f"devices ({num_devices:,}) is not divisible by tp x pp x cp = {self.tp} x {self.pp} x {self.cp} = "
                f"{denom:,}, so dp cannot be derived: use a multiple of {denom:,} devices (e.g. {near}), other "
                "degrees, or give dp")
        return self.model_copy(update={"dp": num_devices // denom})
