"""The fewest devices that fit a job: the layout search at growing device counts, stopping at the first count with a
feasible layout (every layout axis, offload tiers included when the constraints list them, searched at each count).

    counts 1, 2, 4, ... up to one node, then whole nodes up to `max_devices`   (device_counts)
    for each count: planning.search.search (the analytic engine over every candidate)
    answer: the first count with a feasible layout, its candidates ranked by the inner objective

A job rents whole nodes once it needs more than one, so counts between whole nodes are not tried; `counts` gives any
other list. The ranked frame is that count's search frame with a `devices` column; `scanned` says what every smaller
count lacked (its short status: the memory it needed, or the rules it broke).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pandas as pd

from ..errors import SpecError
from ..specs.loading import load_hardware
from .enumerate import EmptySearchSpace
from .search import SearchResult, records, search


def device_counts(max_devices: int, devices_per_node: int) -> list[int]:
    """Device counts a job may rent, ascending: powers of two below one node, then whole nodes up to
    `max_devices` (and `max_devices` itself)."""
    out, n = [], 1
    while n < min(devices_per_node, max_devices):
        out.append(n)
        n *= 2
    out += list(range(devices_per_node, max_devices + 1, devices_per_node))
    if max_devices not in out:
        out.append(max_devices)
    return sorted(set(out))


@dataclass(frozen=True)
class FewestResult:
    """The search at the fewest devices that fit (`best`, None when no count fits) and what each count tried
    gave (`scanned`: devices, candidates, feasible, status)."""

    best: Optional[SearchResult]
    scanned: tuple = ()
    timings_s: dict = field(default_factory=dict)

    @property
    def devices(self) -> Optional[int]:
        return None if self.best is None else self.best.num_devices

    @property
    def frame(self) -> pd.DataFrame:
        """The fitting count's candidates (ranked; `devices` first), or an empty frame."""
        if self.best is None:
            return pd.DataFrame()
        f = self.best.frame.copy()
        f.insert(1, "devices", self.best.num_devices)
        return f

    def summary(self) -> dict:
        d = self.best.summary() if self.best is not None else {}
        d.update({"objective": "devices", "devices": self.devices, "scanned": [dict(s) for s in self.scanned],
                  "timings_s": dict(self.timings_s)})
        return d

    def to_dict(self, top: Optional[int] = None) -> dict:
        d = self.summary()
        f = self.frame
        d["candidates"] = records(f if top is None or self.best is None else f[f["feasible"]].head(top))
        return d


def fewest_devices(model, hardware, max_devices: int, global_batch: int, seq_len: Optional[int] = None, *,
                   counts: Optional[Sequence[int]] = None, objective: str = "throughput",
                   hardware_overrides: Optional[dict] = None, **search_kw) -> FewestResult:
    """Search `counts` (default device_counts(max_devices, devices per node)) in ascending order and stop at the
    first with a feasible layout. `objective` ranks the layouts of that count (search's objectives); the other
    keywords go to planning.search.search (dtype, constraints, price_per_hour, ...). A count whose search space
    is empty (no layout can be formed, e.g. the batch does not split) is recorded and skipped."""
    import time
    t0 = time.perf_counter()
    hw = load_hardware(hardware, overrides={k: v for k, v in (hardware_overrides or {}).items() if v is not None})
    if isinstance(max_devices, bool) or not isinstance(max_devices, int) or max_devices < 1:
        raise SpecError(f"devices = {max_devices!r}: must be a positive integer (the most devices to try)")
    counts = sorted(set(counts)) if counts is not None else device_counts(max_devices, hw.devices_per_node)
    scanned = []
    for n in counts:
        try:
            res = search(model, hw, n, global_batch, seq_len, objective=objective, **search_kw)
        except EmptySearchSpace as err:
            scanned.append({"devices": n, "num_candidates": 0, "num_feasible": 0, "status": err.reason})
            continue
        scanned.append({"devices": n, "num_candidates": res.num_candidates, "num_feasible": res.num_feasible,
                        "status": res.short_status()})
        if res.num_feasible:
            return FewestResult(best=res, scanned=tuple(scanned), timings_s={"total_s": time.perf_counter() - t0})
    return FewestResult(best=None, scanned=tuple(scanned), timings_s={"total_s": time.perf_counter() - t0})
