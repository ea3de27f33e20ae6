"""A table of layouts as numpy columns: the input of the vectorized cost functions (one layout or a million)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from .layout import (DP_COMPRESSION_CODES, MOE_DISPATCH_CODES, OFFLOAD_CODES, RECOMPUTE_CODES, SCHEDULE_CODES,
                     ZERO3_UNIT_CODES, Layout)

INT_COLUMNS = ("tp", "pp", "dp", "ep", "cp", "vpp", "zero", "micro_batch", "recompute", "schedule", "zero3_unit",
               "offload_optimizer", "offload_params", "offload_activations", "moe_dispatch", "moe_max_nodes",
               "dp_compression", "local_sgd_tau")
BOOL_COLUMNS = ("sequence_parallel", "flash_attention", "overlap_grad_reduce", "tp_comm_overlap", "ep_comm_overlap",
                "offload_delayed_update", "dp_param_gather_overlap")
FLOAT_COLUMNS = ("onebit_warmup_fraction",)
_CODES = {"recompute": RECOMPUTE_CODES, "schedule": SCHEDULE_CODES, "zero3_unit": ZERO3_UNIT_CODES,
          "offload_optimizer": OFFLOAD_CODES, "offload_params": OFFLOAD_CODES, "offload_activations": OFFLOAD_CODES,
          "moe_dispatch": MOE_DISPATCH_CODES, "dp_compression": DP_COMPRESSION_CODES}


@lru_cache(maxsize=1)
def _default_layout() -> Layout:
    """Layout() (frozen), built once: from_columns reads its defaults for every table."""
    return Layout()


@dataclass(frozen=True)
class LayoutTable:
    """Columns of N layouts. `recompute`, `schedule`, `zero3_unit`, the `offload_*` tiers, `moe_dispatch` and
    `dp_compression` hold the integer codes of specs.layout; `moe_max_nodes` is 0 where tokens may reach every node.

    `stage_layers` optionally gives, per row, an explicit per-chunk layer list (None for a row on the default
    split); None as a whole means every row takes the default split (pipeline.split.stage_split resolves both).
    All layouts of one table share the placement order.
    """

    tp: np.ndarray
    pp: np.ndarray
    dp: np.ndarray
    ep: np.ndarray
    cp: np.ndarray
    vpp: np.ndarray
    zero: np.ndarray
    micro_batch: np.ndarray
    recompute: np.ndarray
    schedule: np.ndarray
    zero3_unit: np.ndarray
    sequence_parallel: np.ndarray
    flash_attention: np.ndarray
    overlap_grad_reduce: np.ndarray
    tp_comm_overlap: np.ndarray
    ep_comm_overlap: np.ndarray
    offload_optimizer: np.ndarray
    offload_params: np.ndarray
    offload_activations: np.ndarray
    offload_delayed_update: np.ndarray
    dp_param_gather_overlap: np.ndarray = None    # None: as overlap_grad_reduce (tables built before the column)
    moe_dispatch: np.ndarray = None
    moe_max_nodes: np.ndarray = None
    dp_compression: np.ndarray = None
    local_sgd_tau: np.ndarray = None
    onebit_warmup_fraction: np.ndarray = None
    placement: str = "tp-cp-ep-dp-pp"
    stage_layers: tuple | None = None

    def __post_init__(self):
        if self.dp_param_gather_overlap is None:
            object.__setattr__(self, "dp_param_gather_overlap", np.asarray(self.overlap_grad_reduce, dtype=bool))

    def __len__(self) -> int:
        return len(self.tp)

    @classmethod
    def from_columns(cls, placement: str = "tp-cp-ep-dp-pp", **cols) -> "LayoutTable":
        """Build from array-likes; missing columns take Layout's defaults (framework flags: the default framework
        preset's, specs.stack); dp must be given. A column given as one scalar, and every default, is stored as a
        read-only broadcast of that value (stride 0): a million-row table of the few columns a caller varies holds
        those columns only (issue #13: 159 MB of int64 columns, 94 MB of them constants, before)."""
        from .stack import framework_layout_values, framework_named
        n = max(np.size(v) for v in cols.values())
        defaults = _default_layout()
        stack = framework_layout_values(framework_named(), "")
        out = {}
        for name in INT_COLUMNS + BOOL_COLUMNS + FLOAT_COLUMNS:
            if name in cols:
                v = cols[name]
                if name in _CODES and np.asarray(v).dtype.kind in "UO":
                    v = np.vectorize(_CODES[name].__getitem__)(v)
            elif name == "dp":
                raise ValueError("LayoutTable needs a dp column")
            elif name == "recompute":
                v = RECOMPUTE_CODES[defaults.recompute]
            elif name == "zero3_unit":
                v = ZERO3_UNIT_CODES[stack["zero3_unit"]]
            elif name in ("offload_optimizer", "offload_params", "offload_activations"):
                v = _CODES[name][getattr(defaults, name)]
            elif name == "dp_param_gather_overlap":
                v = cols.get("overlap_grad_reduce", stack[name])
            elif name in stack:
                v = stack[name]
            elif name == "schedule":
                vpp = np.asarray(cols.get("vpp", 1))
                v = np.where(vpp > 1, SCHEDULE_CODES["interleaved"], SCHEDULE_CODES["1f1b"])
            elif name in _CODES:
                v = _CODES[name][getattr(defaults, name)]
            elif name == "moe_max_nodes":
                v = 0
            else:
                v = getattr(defaults, name)
            dtype = bool if name in BOOL_COLUMNS else (float if name in FLOAT_COLUMNS else np.int64)
            if isinstance(v, np.ndarray) and v.dtype == dtype and v.shape == (n,):
                out[name] = v.copy()                   # as the broadcast below, without its per-call work
            elif np.ndim(v) == 0:                      # one value for every row: a read-only broadcast (no n rows)
                out[name] = np.broadcast_to(np.asarray(v, dtype=dtype), (n,))
            elif isinstance(v, np.ndarray) and v.shape == (n,) and v.strides == (0,):     # a broadcast given
                out[name] = np.broadcast_to(np.asarray(v[0], dtype=dtype), (n,))
            else:
                out[name] = np.broadcast_to(np.asarray(v, dtype=dtype), (n,)).copy()
        return cls(placement=placement, **out)

    @classmethod
    def from_layouts(cls, layouts: list[Layout], num_layers: int | None = None) -> "LayoutTable":
        """Table of fully specified Layout objects (dp set; framework flags resolved, specs.stack.resolve_layout).
        All must share one placement order.
        (`num_layers` is accepted for older callers; the split is resolved by pipeline.split.stage_split.)"""
        orders = {l.placement for l in layouts}
        if len(orders) != 1:
            raise ValueError(f"layouts of one table must share a placement order, got {sorted(orders)}")
        from .stack import framework_named, resolve_layout
        cols = {name: [] for name in INT_COLUMNS + BOOL_COLUMNS + FLOAT_COLUMNS}
        for l in layouts:
            l = resolve_layout(l, framework_named(), "")      # flags left unset: the default framework's
            for name in INT_COLUMNS + BOOL_COLUMNS + FLOAT_COLUMNS:
                if name == "schedule":
                    cols[name].append(SCHEDULE_CODES[l.resolved_schedule])
                elif name in _CODES:
                    cols[name].append(_CODES[name][getattr(l, name)])
                elif name == "moe_max_nodes":
                    cols[name].append(l.moe_max_nodes or 0)
                else:
                    cols[name].append(getattr(l, name))
        table = cls.from_columns(placement=orders.pop(), **cols)
        if any(l.stage_layers is not None for l in layouts):
            table = table.replace(stage_layers=tuple(None if l.stage_layers is None else tuple(l.stage_layers)
                                                     for l in layouts))
        return table

    def replace(self, **kw) -> "LayoutTable":
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(kw)
        return LayoutTable(**d)

    def row(self, i: int) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v[i] if isinstance(v, (np.ndarray, tuple)) else v
        return out
