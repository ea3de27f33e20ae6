"""The software stack applied to a layout: which layout flags a framework preset decides, and how a layout's unset
flags are filled from it.

A layout states the parallel decisions; five of its flags are software-stack facts that a user may override but
usually leaves to the framework (specs.framework.FrameworkSpec): fused attention, the DP gradient-reduce and
parameter-gather overlaps, TP communication overlap, MoE all-to-all overlap and the ZeRO-3 gather unit. A flag left
None takes the framework's value (`framework_layout_values`); a stated one is an override and is reported as one
(`layout_overrides`). One function (`resolve_layout`) does this for every caller: the CLI, the Python API, the
search, validation.

The default framework is `megatron-core` (DEFAULT_FRAMEWORK): its flags equal the layout defaults trainsim used
before frameworks were an input (fused attention, overlapped gradient reduce and parameter gather, no TP or EP
overlap, per-layer ZeRO-3 gathers), so a run that names no framework keeps its layout flags.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

from ..errors import SpecError
from .framework import FrameworkSpec

#: The preset a run that names no framework uses (module docstring).
DEFAULT_FRAMEWORK = "megatron-core"

#: Layout flags a framework preset decides (specs.layout.Layout fields; None there = the framework's value).
FRAMEWORK_LAYOUT_FIELDS = ("flash_attention", "overlap_grad_reduce", "dp_param_gather_overlap", "tp_comm_overlap",
                           "ep_comm_overlap", "zero3_unit")


@lru_cache(maxsize=64)
def _load(name: str) -> FrameworkSpec:
    from .frameworks_loading import load_framework
    return load_framework(name)


def framework_named(name: Optional[str] = None) -> FrameworkSpec:
    """The shipped preset `name` (default DEFAULT_FRAMEWORK); presets are frozen, so one parsed copy is shared."""
    return _load(name or DEFAULT_FRAMEWORK)


def as_framework(framework) -> FrameworkSpec:
    """A FrameworkSpec from a spec, a preset name, a YAML path, or None (the default preset)."""
    if isinstance(framework, FrameworkSpec):
        return framework
    if framework is None:
        return framework_named()
    text = str(framework)
    if text.endswith((".yaml", ".yml")):
        from .frameworks_loading import load_framework
        return load_framework(text)
    return _load(text)


def with_cuda_graphs(framework: FrameworkSpec, scopes) -> FrameworkSpec:
    """The framework with the CUDA-graph scope a user states: 'none', or scope names (a list or a comma-separated
    string) of CudaGraphScope (attn, mlp, moe_router, moe_preprocess, moe, full_iteration). SpecError naming the
    field, the value and the rule otherwise.

    Source: Megatron-Core --cuda-graph-impl transformer_engine / full_iteration with --cuda-graph-modules."""
    from typing import get_args
    from .framework import CudaGraphScope
    names = [x.strip() for x in scopes.split(",")] if isinstance(scopes, str) else [str(x).strip() for x in scopes]
    names = [] if names in (["none"], [""]) else names
    allowed = get_args(CudaGraphScope)
    bad = [x for x in names if x not in allowed]
    if bad or len(set(names)) != len(names):
        raise SpecError(f"cuda_graphs = {scopes!r}: must be 'none' or distinct scopes from "
                        f"{', '.join(allowed)} (comma-separated)")
    host = framework.host.model_copy(update={"cuda_graph_scope": tuple(names)})
    return framework.model_copy(update={"host": host})


def attention_kernel_name(framework: FrameworkSpec, family: str, flash_attention: bool = True) -> str:
    """The attention kernel a layout runs: 'unfused' when fused attention is off, else the framework's kernel on
    the hardware family (FrameworkSpec.attention.kernel_for).

    Source: the preset's attention.source (framework code reading which backend it selects)."""
    return framework.attention.kernel_for(family) if flash_attention else "unfused"


def framework_layout_values(framework: FrameworkSpec, family: str, zero: Optional[int] = None) -> dict:
    """The layout flags (FRAMEWORK_LAYOUT_FIELDS) the framework sets on a hardware family. `overlap_grad_reduce`
    of a ZeRO-3 layout (`zero` >= 3) is the framework's ZeRO-3 prefetch (overlap.zero3_prefetch: the gathers and
    reduce-scatters of ZeRO-3 overlap the passes), of any other its gradient-reduce overlap: DeepSpeed overlaps
    ZeRO-3's collectives by default and ZeRO-1/2's only with overlap_comm.

    Source: the preset's attention.source and overlap.source (DeepSpeed zero/config.py: overlap_comm defaults to
    stage == 3)."""
    o = framework.overlap
    reduce_overlap = o.zero3_prefetch if zero is not None and zero >= 3 else o.dp_grad_reduce_overlap
    return {"flash_attention": framework.attention.kernel_for(family) != "unfused",
            "overlap_grad_reduce": reduce_overlap, "dp_param_gather_overlap": o.dp_param_gather_overlap,
            "tp_comm_overlap": o.tp_comm_overlap, "ep_comm_overlap": o.ep_a2a_overlap,
            "zero3_unit": o.zero3_gather_unit}


def layout_overrides(layout, framework: FrameworkSpec, family: str) -> dict:
    """The framework flags a layout states differently from the framework ({field: stated value})."""
    fw = framework_layout_values(framework, family, layout.zero)
    return {k: getattr(layout, k) for k in FRAMEWORK_LAYOUT_FIELDS
            if getattr(layout, k) is not None and getattr(layout, k) != fw[k]}


def resolve_layout(layout, framework: FrameworkSpec, family: str):
    """The layout with every unset framework flag filled from `framework` (stated flags kept)."""
    fw = framework_layout_values(framework, family, layout.zero)
    update = {k: fw[k] for k in FRAMEWORK_LAYOUT_FIELDS if getattr(layout, k) is None}
    return layout.model_copy(update=update) if update else layout
