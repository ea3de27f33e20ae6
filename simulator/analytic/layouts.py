"""A table of layouts as numpy columns: the input of the vectorized analytic engine."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..specs.layout import RECOMPUTE_CODES, SCHEDULE_CODES, ZERO3_UNIT_CODES, Layout

INT_COLUMNS = ("tp", "pp", "dp", "ep", "cp", "vpp", "zero", "micro_batch", "recompute", "schedule", "zero3_unit")
BOOL_COLUMNS = ("sequence_parallel", "flash_attention", "overlap_grad_reduce", "tp_comm_overlap", "ep_comm_overlap")


@dataclass(frozen=True)
class LayoutTable:
    """Columns of N layouts. `recompute` and `schedule` hold the integer codes of specs.layout.

    `stage_first/mid/last` optionally give per-rank layer counts (explicit splits); None means the default
    split. All layouts of one table share the placement order.
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
    placement: str = "tp-cp-ep-dp-pp"
    stage_first: np.ndarray | None = None
    stage_mid: np.ndarray | None = None
    stage_last: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tp)

    @classmethod
    def from_columns(cls, placement: str = "tp-cp-ep-dp-pp", **cols) -> "LayoutTable":
        """Build from array-likes; missing columns take Layout's defaults; dp must be given."""
        n = max(np.size(v) for v in cols.values())
        defaults = Layout()
        out = {}
        for name in INT_COLUMNS + BOOL_COLUMNS:
            if name in cols:
                v = cols[name]
                if name == "recompute" and np.asarray(v).dtype.kind in "UO":
                    v = np.vectorize(RECOMPUTE_CODES.__getitem__)(v)
                if name == "schedule" and np.asarray(v).dtype.kind in "UO":
                    v = np.vectorize(SCHEDULE_CODES.__getitem__)(v)
                if name == "zero3_unit" and np.asarray(v).dtype.kind in "UO":
                    v = np.vectorize(ZERO3_UNIT_CODES.__getitem__)(v)
            elif name == "dp":
                raise ValueError("LayoutTable needs a dp column")
            elif name == "recompute":
                v = RECOMPUTE_CODES[defaults.recompute]
            elif name == "zero3_unit":
                v = ZERO3_UNIT_CODES[defaults.zero3_unit]
            elif name == "schedule":
                vpp = np.asarray(cols.get("vpp", 1))
                v = np.where(vpp > 1, SCHEDULE_CODES["interleaved"], SCHEDULE_CODES["1f1b"])
            else:
                v = getattr(defaults, name)
            dtype = bool if name in BOOL_COLUMNS else np.int64
            out[name] = np.broadcast_to(np.asarray(v, dtype=dtype), (n,)).copy()
        return cls(placement=placement, **out)

    @classmethod
    def from_layouts(cls, layouts: list[Layout], num_layers: int | None = None) -> "LayoutTable":
        """Table of fully specified Layout objects (dp set). All must share one placement order."""
        orders = {l.placement for l in layouts}
        if len(orders) != 1:
            raise ValueError(f"layouts of one table must share a placement order, got {sorted(orders)}")
        cols = {name: [] for name in INT_COLUMNS + BOOL_COLUMNS}
        for l in layouts:
            for name in INT_COLUMNS + BOOL_COLUMNS:
                if name == "recompute":
                    cols[name].append(RECOMPUTE_CODES[l.recompute])
                elif name == "schedule":
                    cols[name].append(SCHEDULE_CODES[l.resolved_schedule])
                elif name == "zero3_unit":
                    cols[name].append(ZERO3_UNIT_CODES[l.zero3_unit])
                else:
                    cols[name].append(getattr(l, name))
        table = cls.from_columns(placement=orders.pop(), **cols)
        if any(l.stage_layers is not None for l in layouts):
            from .pipeline import default_stage_split, explicit_stage_split
            split = []
            for l in layouts:
                if l.stage_layers is not None:
                    split.append(explicit_stage_split(l.stage_layers, l.pp))
                else:
                    split.append(tuple(int(x) for x in default_stage_split(num_layers, l.pp, l.vpp)))
            f, m, la = (np.array(c, dtype=np.int64) for c in zip(*split))
            table = table.replace(stage_first=f, stage_mid=m, stage_last=la)
        return table

    def replace(self, **kw) -> "LayoutTable":
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(kw)
        return LayoutTable(**d)

    def row(self, i: int) -> dict:
        return {f.name: (getattr(self, f.name)[i] if isinstance(getattr(self, f.name), np.ndarray)
                         else getattr(self, f.name)) for f in fields(self)}
