"""Hardware profile: one device, its node, and the network tiers from fastest to slowest.

YAML uses human units (TFLOP/s, GB, TB/s, GB/s, microseconds); the `*_per_s`/`*_bytes`/`*_s` properties give
SI values. Every figure carries a source string (datasheet, paper, measurement or calibration script).
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..errors import SpecError
from ..units import GIGA, TERA, US
from .base import MAX_DEVICES, MAX_NAME, MAX_TEXT, MAX_TIERS, Spec
from .host import HostSpec

Dtype = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8"]
Topology = Literal["switch", "full_mesh", "ring", "torus2d", "torus3d", "fat_tree", "rail_optimized"]


class PeakTflops(Spec):
    """Dense (no 2:4 sparsity) peak TFLOP/s per dtype; null where the device lacks the dtype."""

    fp32: Optional[float] = Field(None, gt=0, description="FP32 non-tensor peak")
    tf32: Optional[float] = Field(None, gt=0)
    bf16: Optional[float] = Field(None, gt=0)
    fp16: Optional[float] = Field(None, gt=0)
    fp8: Optional[float] = Field(None, gt=0)
    int8: Optional[float] = Field(None, gt=0, description="INT8 TOPS, for int8-quantised training")
    fp6: Optional[float] = Field(None, gt=0, description="FP6 (MXFP6) dense peak: Blackwell, CDNA4")
    fp4: Optional[float] = Field(None, gt=0, description="FP4 (NVFP4/MXFP4) dense peak: Blackwell, CDNA4")
    source: str = Field(min_length=1, max_length=MAX_TEXT)


class DeviceSpec(Spec):
    """One accelerator (for MI250X, one GCD)."""

    name: str = Field(min_length=1, max_length=MAX_NAME)
    peak_tflops: PeakTflops
    memory_gb: float = Field(gt=0, description="usable HBM capacity, GB (1e9 bytes)")
    memory_bandwidth_tb_per_s: float = Field(gt=0, description="HBM bandwidth, TB/s")
    power_w: Optional[float] = Field(None, gt=0, description="board power (TDP), W")
    price_per_hour_usd: Optional[float] = Field(None, gt=0, description="rental price per device-hour, USD")
    clock_fraction: float = Field(1.0, gt=0, le=1, description="sustained clock / rated clock (power- or "
                                  "clock-limited parts, specs/power.py): scales every FLOP/s peak the kernels run at; "
                                  "MFU keeps the datasheet peak as its denominator")
    source: str = Field(min_length=1, max_length=MAX_TEXT, description="where memory, bandwidth, power and price come from")

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * GIGA

    @property
    def memory_bandwidth_bytes_per_s(self) -> float:
        return self.memory_bandwidth_tb_per_s * TERA


class EfficiencySpec(Spec):
    """What a device's kernels and framework reach beyond the kernel model, few parameters per device family.

    Kernel efficiencies (GEMM, grouped GEMM, fused attention, memory-bound kernels) come from the measured kernel
    tables or their transfer rule (costs.kernels, simulator/presets/kernels/catalog.yaml), never from this block.
    `kernel_level` scales the compute kernels' efficiency (sustained training throughput over the tables'
    benchmark throughput); with the host and step overheads it is what calibration may fit.
    """

    kernel_model: Literal["tables", "ideal"] = Field(
        "tables", description="tables: the measured kernel model (costs.kernels); ideal: every kernel at peak FLOP/s "
                              "and full HBM bandwidth (roofline, speed-of-light bounds)")
    kernel_level: float = Field(
        1.0, gt=0, le=1.5, description="sustained training efficiency of GEMM, grouped-GEMM and attention kernels "
                                       "over the kernel model's (clocks under power limits, SMs shared with "
                                       "communication kernels); 1.0 = the tables as measured")
    layer_overhead_us: float = Field(
        0.0, ge=0, description="host (kernel-launch/framework) time per layer pass; a pass takes max(GPU time, this)")
    step_overhead_ms: float = Field(0.0, ge=0, description="fixed per-step time (data loading, logging, sync)")
    framework_reserved_gb: float = Field(
        2.0, ge=0, description="memory the framework holds outside tensors: CUDA/runtime context (~0.5 GB), "
                               "communication buffers (~0.5-1 GB), allocator fragmentation; default is an estimate")
    source: str = Field(min_length=1, max_length=MAX_TEXT)


class NetworkTier(Spec):
    """One level of the network, fastest first.

    `domain_size` devices reach each other on this tier (8 for an NVSwitch node, 72 for NVL72, a TPU slice for
    ICI); the slowest tier has `domain_size: null` (the whole cluster). Bandwidth is per device, per direction.
    """

    name: str = Field(min_length=1, max_length=MAX_NAME)
    domain_size: Optional[int] = Field(None, ge=1, le=MAX_DEVICES,
                                       description="devices reachable on this tier; null = unbounded")
    bandwidth_gb_per_s: float = Field(gt=0, description="per-device one-direction bandwidth, GB/s (1e9 B/s)")
    latency_us: float = Field(ge=0, description="per-collective-step latency (alpha), microseconds")
    efficiency: float = Field(gt=0, le=1.2, description="achieved bus bandwidth / bandwidth_gb_per_s (nccl-tests busbw)")
    all_to_all_efficiency: Optional[float] = Field(
        None, gt=0, le=1.2, description="achieved all-to-all bus bandwidth / bandwidth_gb_per_s where measured "
                                        "apart from the ring collectives (nccl-tests alltoall_perf busbw); null: "
                                        "`efficiency`")
    call_latency_us: float = Field(0.0, ge=0, description="fixed time of one collective call on this tier beyond "
                                                          "its steps (launch, stream synchronisation, the gap "
                                                          "between back-to-back calls in training), microseconds")
    topology: Topology = "switch"
    torus_dims: Optional[list[Annotated[int, Field(ge=1, le=MAX_DEVICES)]]] = Field(
        None, max_length=3, description="torus shape for torus2d/torus3d, e.g. [16, 16, 16]")
    source: str = Field(min_length=1, max_length=MAX_TEXT)

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_gb_per_s * GIGA

    @property
    def latency_s(self) -> float:
        return self.latency_us * US

    @property
    def call_latency_s(self) -> float:
        return self.call_latency_us * US

    @model_validator(mode="after")
    def _torus_shape(self):
        if self.topology in ("torus2d", "torus3d"):
            want = 2 if self.topology == "torus2d" else 3
            if self.torus_dims is not None and len(self.torus_dims) != want:
                raise ValueError(f"torus_dims {self.torus_dims} must have {want} entries for topology {self.topology}")
        return self


class HardwareProfile(Spec):
    """A system building block: device + node + network tiers (fastest first)."""

    name: str = Field(max_length=MAX_NAME, pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    description: str = Field(max_length=MAX_TEXT)
    vendor: Literal["nvidia", "amd", "google", "huawei", "intel", "other"]
    family: str = Field(min_length=1, max_length=MAX_NAME, description="hardware family used to group validation errors, e.g. nvidia-ampere, tpu")
    device: DeviceSpec
    devices_per_node: int = Field(ge=1, le=MAX_DEVICES, description="devices per host (sharing its NICs)")
    efficiency: EfficiencySpec
    tiers: list[NetworkTier] = Field(min_length=1, max_length=MAX_TIERS)
    host: Optional[HostSpec] = Field(None, description="host memory, host link, NVMe, CPU Adam speed (specs/host.py); "
                                                        "null = unknown")
    notes: str = Field("", max_length=MAX_TEXT)

    @field_validator("tiers")
    @classmethod
    def _tiers_ordered(cls, tiers: list[NetworkTier]) -> list[NetworkTier]:
        sizes = [t.domain_size for t in tiers]
        if sizes[-1] is not None:
            raise ValueError(f"the last (slowest) tier '{tiers[-1].name}' must have domain_size null (whole cluster)")
        if any(s is None for s in sizes[:-1]):
            raise ValueError("only the last tier may have domain_size null")
        inner = [s for s in sizes[:-1]]
        if inner != sorted(inner) or len(set(inner)) != len(inner):
            raise ValueError(f"tier domain sizes {inner} must strictly increase from fastest to slowest")
        return tiers

    def peak_flops_per_s(self, dtype: str) -> float:
        """Dense peak FLOP/s the device executes `dtype` GEMMs at: the datasheet peak (datasheet_peak_flops_per_s)
        times the sustained clock fraction (1 unless power- or clock-limited, specs/power.py)."""
        return self.datasheet_peak_flops_per_s(dtype) * self.device.clock_fraction

    def datasheet_peak_flops_per_s(self, dtype: str) -> float:
        """Dense datasheet peak FLOP/s of the GEMM datatype; the one definition of peak used by MFU and HFU.

        fp16/bf16 fall back to each other (V100 has no bf16; TPUs have no fp16); fp8/int8 GEMMs use their own
        peak when the device has one, else the bf16 peak (the device runs them in bf16).
        """
        p = self.device.peak_tflops
        order = {
            "bf16": ("bf16", "fp16"), "fp16": ("fp16", "bf16"), "fp8": ("fp8", "bf16", "fp16"),
            "int8": ("int8", "bf16", "fp16"), "fp32": ("fp32",), "tf32": ("tf32", "fp32"),
            "fp4": ("fp4", "fp8", "bf16", "fp16"),
        }[dtype]
        for key in order:
            v = getattr(p, key)
            if v is not None:
                return v * TERA
        have = [k for k in ("bf16", "fp16", "fp8", "fp6", "fp4", "int8", "fp32", "tf32") if getattr(p, k) is not None]
        raise SpecError(f"dtype {dtype}: hardware '{self.name}' ({self.device.name}) has no {dtype} peak (it has "
                        f"{', '.join(have) or 'none'}); choose one of those")

    def utilization_peak_flops_per_s(self, dtype: str) -> float:
        """Peak used as the MFU and HFU denominator: the dense peak of the datatype the GEMMs run in
        (`peak_flops_per_s`: the FP8 peak for fp8 runs where the device has one). No kernel runs faster than
        this, so MFU and HFU stay at or below 1 (simulator.metrics). The datasheet (rated-clock) peak: a power- or
        clock-limited part (specs/power.py) shows its lower throughput as a lower MFU."""
        return self.datasheet_peak_flops_per_s(dtype)

    def mfu_peak_flops_per_s(self, dtype: str) -> float:
        """Peak used as the MFU denominator: bf16/fp16 even for fp8 runs (the convention of Llama 3 and
        MLPerf reports), so that MFU compares across precisions. Used by `validate` only, for published figures
        stated against that peak; trainsim's own MFU and HFU use `utilization_peak_flops_per_s`. Always the
        datasheet (rated-clock) peak."""
        return self.datasheet_peak_flops_per_s("bf16" if dtype in ("fp8", "int8", "bf16") else dtype)
