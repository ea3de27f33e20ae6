"""A scenario: model + hardware + devices + training + layout, validated together.

The scenario YAML uses the same flat keys as the CLI flags (underscores for dashes); flags override it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..errors import SpecError
from .base import Spec
from .framework import FrameworkSpec
from .hardware import HardwareProfile
from .layout import ActivationOffloadTier, DpCompression, Layout, MoeDispatch, OffloadTier, Recompute, Schedule, \
    Zero3Unit
from .loading import load_hardware, load_model, read_yaml, validate_spec
from .model import ModelSpec
from .network import HeterogeneousCluster, NetworkConditions
from .routing import RoutingSpec
from .training import TrainDtype, TrainingSpec, resolve_seq_len

LAYOUT_KEYS = ("tp", "pp", "dp", "ep", "cp", "vpp", "zero", "sequence_parallel", "recompute", "micro_batch",
               "schedule", "flash_attention", "overlap_grad_reduce", "tp_comm_overlap", "ep_comm_overlap", "placement", "stage_layers",
               "zero3_unit", "offload_optimizer", "offload_params", "offload_activations", "offload_delayed_update",
               "dp_param_gather_overlap", "moe_dispatch", "moe_max_nodes", "dp_compression", "onebit_warmup_fraction",
               "local_sgd_tau")
TRAINING_KEYS = ("seq_len", "global_batch", "dtype", "grad_dtype", "moe_routing")
NETWORK_KEYS = ("background_occupancy", "background_elastic", "all_to_all_latency", "cluster", "stage_groups")


class HardwareOverrides(Spec):
    """Per-run changes to a profile's standard node (published-runs CSV columns of the same meaning)."""

    devices_per_node: Optional[int] = Field(None, ge=1)
    memory_gb: Optional[float] = Field(None, gt=0)
    scaleup_gb_per_s: Optional[float] = Field(None, gt=0, description="per-device scale-up bandwidth, GB/s one way")
    scaleout_gb_per_s: Optional[float] = Field(None, gt=0, description="per-device scale-out bandwidth, GB/s one way")
    power_limit_w: Optional[float] = Field(None, gt=0, description="board power limit, W (specs/power.py rule)")
    clock_fraction: Optional[float] = Field(None, gt=0, le=1, description="sustained / rated clock")


class ScenarioFile(Spec):
    """The keys a scenario YAML may hold (all optional; the CLI requires model, hardware, devices, batch)."""

    # Its validator (~5 ms, the largest of the specs) is built on the first scenario file read, not by every import.
    model_config = ConfigDict(defer_build=True)

    model: Optional[str] = None
    hardware: Optional[str] = None
    framework: Optional[str] = Field(None, description="framework preset name (see `trainsim frameworks`) or YAML "
                                                       "path; default specs.stack.DEFAULT_FRAMEWORK")
    devices: Optional[int] = Field(None, ge=1)
    seq_len: Optional[int] = Field(None, ge=1)
    global_batch: Optional[int] = Field(None, ge=1)
    dtype: Optional[TrainDtype] = None
    grad_dtype: Optional[Literal["fp32", "bf16"]] = None
    tp: Optional[int] = Field(None, ge=1)
    pp: Optional[int] = Field(None, ge=1)
    dp: Optional[int] = Field(None, ge=1)
    ep: Optional[int] = Field(None, ge=1)
    cp: Optional[int] = Field(None, ge=1)
    vpp: Optional[int] = Field(None, ge=1)
    zero: Optional[int] = Field(None, ge=0, le=3)
    zero3_unit: Optional[Zero3Unit] = None
    sequence_parallel: Optional[bool] = None
    recompute: Optional[Recompute] = None
    micro_batch: Optional[int] = Field(None, ge=1)
    schedule: Optional[Schedule] = None
    flash_attention: Optional[bool] = None
    overlap_grad_reduce: Optional[bool] = None
    dp_param_gather_overlap: Optional[bool] = None
    tp_comm_overlap: Optional[bool] = None
    ep_comm_overlap: Optional[bool] = None
    placement: Optional[str] = None
    stage_layers: Optional[list[int]] = None
    offload_optimizer: Optional[OffloadTier] = None
    offload_params: Optional[OffloadTier] = None
    offload_activations: Optional[ActivationOffloadTier] = None
    offload_delayed_update: Optional[bool] = None
    moe_dispatch: Optional[MoeDispatch] = None
    moe_max_nodes: Optional[int] = Field(None, ge=1)
    dp_compression: Optional[DpCompression] = None
    onebit_warmup_fraction: Optional[float] = Field(None, ge=0.0, le=1.0)
    local_sgd_tau: Optional[int] = Field(None, ge=1)
    moe_routing: Optional[RoutingSpec] = None
    background_occupancy: Optional[float] = Field(None, ge=0.0, lt=1.0)
    background_elastic: Optional[bool] = None
    all_to_all_latency: Optional[Literal["per-tier", "per-peer"]] = None
    cuda_graphs: Optional[Union[str, list[str]]] = Field(
        None, description="CUDA-graph scope over the framework's: 'none' or scopes (attn, mlp, moe_router, "
                          "moe_preprocess, moe, full_iteration), comma-separated or a list (specs.stack.with_cuda_graphs)")
    cluster: Optional[str] = Field(None, description="path of a heterogeneous cluster YAML (specs.network), "
                                   "relative to the scenario file")
    stage_groups: Optional[list[str]] = None
    hardware_overrides: Optional[HardwareOverrides] = None


class Scenario(Spec):
    """Everything one estimate needs, resolved to specs.

    `framework` is the software stack (None: specs.stack.DEFAULT_FRAMEWORK). The layout's framework flags left
    unset are filled from it when the scenario is built (specs.stack.resolve_layout); `overrides` lists the ones
    the layout states differently from the framework.

    Every construction path (`Scenario(...)`, `Scenario.model_validate`, `Scenario.build`) runs the same checks:
    a layout without dp gets dp = devices / (tp*pp*cp), and the cross-field rules of `_cross_field_checks` hold.
    (`model_copy(update=...)` skips validation, as pydantic's copies do: build a new Scenario instead.)
    """

    model: ModelSpec
    hardware: HardwareProfile
    num_devices: int = Field(ge=1)
    training: TrainingSpec
    layout: Layout
    network: NetworkConditions = NetworkConditions()
    framework: Optional[FrameworkSpec] = None

    @model_validator(mode="after")
    def _resolve_stack(self):
        from .stack import as_framework, resolve_layout
        fw = as_framework(self.framework)
        object.__setattr__(self, "framework", fw)
        object.__setattr__(self, "layout", resolve_layout(self.layout, fw, self.hardware.family))
        return self

    @property
    def overrides(self) -> dict:
        """Framework flags the layout states differently from the framework ({field: value})."""
        from .stack import layout_overrides
        return layout_overrides(self.layout, self.framework, self.hardware.family)

    @field_validator("layout")
    @classmethod
    def _fill_dp(cls, layout: Layout, info: ValidationInfo) -> Layout:
        """dp derived from the device count when the layout leaves it open."""
        n = info.data.get("num_devices")
        return layout.with_dp(n) if n is not None else layout

    @model_validator(mode="after")
    def _cross_field_checks(self):
        """The rules that involve more than one spec: an explicit stage split holds pp*vpp chunks and all the
        model's layers."""
        check_stage_layers(self.layout, self.model)
        return self

    @classmethod
    def build(cls, model: Union[str, ModelSpec], hardware: Union[str, HardwareProfile], devices: int,
              global_batch: int, seq_len: Optional[int] = None, hardware_overrides: Optional[dict] = None,
              framework: Union[str, FrameworkSpec, None] = None, **kw) -> "Scenario":
        """Resolve names/paths and flat keys (as in a scenario file) into a validated Scenario. `framework`: a
        preset name, YAML path or FrameworkSpec (None: the default preset)."""
        from .stack import as_framework, with_cuda_graphs
        fw = as_framework(framework)
        graphs = kw.pop("cuda_graphs", None)
        if graphs is not None:
            fw = with_cuda_graphs(fw, graphs)
        m = load_model(model)
        hw = load_hardware(hardware, overrides={k: v for k, v in (hardware_overrides or {}).items() if v is not None})
        unknown = set(kw) - set(LAYOUT_KEYS) - set(TRAINING_KEYS) - set(NETWORK_KEYS)
        if unknown:
            raise SpecError(f"unknown scenario key(s): {', '.join(sorted(unknown))}")
        seq_len = resolve_seq_len(m, seq_len)
        tr = {k: kw[k] for k in TRAINING_KEYS if k in kw and kw[k] is not None}
        training = validate_spec(TrainingSpec, {"seq_len": seq_len, "global_batch": global_batch, **tr}, "training")
        lay = {k: kw[k] for k in LAYOUT_KEYS if k in kw and kw[k] is not None}
        layout = validate_spec(Layout, lay, "layout")
        network = network_conditions({k: kw[k] for k in NETWORK_KEYS if kw.get(k) is not None})
        return validate_spec(cls, {"model": m, "hardware": hw, "num_devices": devices, "training": training,
                                   "layout": layout, "framework": fw, "network": network}, "scenario")


def network_conditions(keys: dict) -> NetworkConditions:
    """NetworkConditions from flat scenario keys; `cluster` may be a HeterogeneousCluster, a mapping or the path of
    its YAML (read with safe loading)."""
    keys = dict(keys)
    c = keys.get("cluster")
    if isinstance(c, (str, Path)):
        data = read_yaml(Path(c))
        keys["cluster"] = validate_spec(HeterogeneousCluster, data, str(c))
    return validate_spec(NetworkConditions, keys, "network")


def check_stage_layers(layout: Layout, model: ModelSpec) -> None:
    """An explicit split must list pp*vpp chunks (ZB-V: its 2 pp stages; DualPipe: the pp stages both directions
    share) holding all the model's layers (SpecError naming both)."""
    sl = layout.stage_layers
    if sl is None:
        return
    sched = layout.resolved_schedule
    chunks = {"zb-v": 2 * layout.pp, "dualpipe": layout.pp}.get(sched, layout.pp * layout.vpp)
    if len(sl) != chunks:
        need = {"zb-v": f"2 * pp({layout.pp})", "dualpipe": f"pp({layout.pp})"}.get(
            sched, f"pp({layout.pp}) * vpp({layout.vpp})")
        raise SpecError(f"stage_layers has {len(sl)} entries; it needs {need} = {chunks}")
    if sum(sl) != model.num_layers:
        raise SpecError(f"stage_layers {sl} sums to {sum(sl)}; model '{model.name}' has {model.num_layers} layers")


def read_scenario_file(path: str) -> dict:
    """Flat keys of a scenario YAML, validated (unknown keys are errors); values still as written, except a
    relative `cluster` path, which is taken relative to the scenario file."""
    data = read_yaml(path)
    if data is None:
        return {}
    sf = validate_spec(ScenarioFile, data, str(path))
    out = sf.model_dump(exclude_none=True)
    if "cluster" in out and not Path(out["cluster"]).is_absolute():
        out["cluster"] = str(Path(path).parent / out["cluster"])
    if "moe_routing" in out:
        out["moe_routing"] = sf.moe_routing
    return out
