"""What validation returns: the outcome of every row (a prediction with its signed error, or a skip with the
reason) and summary error figures, overall and per hardware family, profile, source, kind and metric.

Skipped rows are reported, never dropped, and are left out of every figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class RowResult:
    """Outcome of one row: a prediction with its error, or a skip with the reason."""

    id: str
    metric: str
    measured: Optional[float]
    predicted: Optional[float] = None
    error_pct: Optional[float] = None
    status: str = "ok"
    reason: str = ""
    line: int = 0
    source: str = ""
    hardware: str = ""
    family: str = ""
    moe: bool = False
    searched: dict = field(default_factory=dict)
    layout: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    step_time_s: Optional[float] = None
    memory_gb: Optional[float] = None
    framework: str = ""                  # the framework preset the row ran under
    overrides: dict = field(default_factory=dict)        # flags its notes set over the preset
    override_reasons: list = field(default_factory=list)  # the override-table rule behind each
    policy: str = ""                     # the blank-field policy used
    implied_mfu: Optional[float] = None  # the MFU the measurement implies (predict.implied_mfu); None for memory

    def to_dict(self) -> dict:
        return {"id": self.id, "metric": self.metric, "measured": self.measured, "predicted": self.predicted,
                "error_pct": self.error_pct, "status": self.status, "reason": self.reason, "line": self.line,
                "source": self.source, "hardware": self.hardware, "family": self.family,
                "kind": "moe" if self.moe else "dense", "searched": dict(self.searched), "layout": dict(self.layout),
                "notes": list(self.notes), "step_time_s": self.step_time_s, "memory_gb": self.memory_gb,
                "framework": self.framework, "overrides": dict(self.overrides),
                "override_reasons": list(self.override_reasons), "policy": self.policy,
                "implied_mfu": self.implied_mfu}


@dataclass
class ValidationReport:
    """Every row in file order, the summary figures (`summarize`) and the kind of file read."""

    rows: list
    summary: dict
    file_kind: str = "published"

    def to_dict(self) -> dict:
        return {"rows": [r.to_dict() for r in self.rows], "summary": self.summary, "file_kind": self.file_kind}

    @property
    def ok_rows(self) -> list:
        return [r for r in self.rows if r.status == "ok"]

    @property
    def skipped_rows(self) -> list:
        return [r for r in self.rows if r.status != "ok"]


def _median(x: np.ndarray) -> float:
    """np.median of a non-empty 1-d array, the same number (the middle value, or the mean of the middle two),
    without np.median's first-call import of numpy.ma (about 10 ms of a validate process)."""
    if np.isnan(x).any():
        return float("nan")
    s = np.sort(x)
    mid = s.size // 2
    return float(s[mid]) if s.size % 2 else float((s[mid - 1] + s[mid]) / 2.0)


def error_stats(errors) -> dict:
    """n, MAPE, median and max absolute percentage error (and mean signed error) of signed % errors."""
    signed = np.asarray(list(errors), dtype=float)
    e = np.abs(signed)
    if e.size == 0:
        return {"n": 0, "mape_pct": None, "median_ape_pct": None, "max_ape_pct": None, "mean_signed_pct": None}
    return {"n": int(e.size), "mape_pct": float(e.mean()), "median_ape_pct": _median(e),
            "max_ape_pct": float(e.max()), "mean_signed_pct": float(signed.mean())}


#: Summary groupings: key in the summary -> what a row is grouped by.
GROUPS = {
    "by_hardware": lambda r: r.family or r.hardware,
    "by_profile": lambda r: r.hardware,
    "by_source": lambda r: r.source,
    "by_kind": lambda r: "moe" if r.moe else "dense",
    "by_metric": lambda r: r.metric,
    "by_framework": lambda r: r.framework or "unknown",
}


def summarize(rows: list) -> dict:
    """Error figures of the predicted rows, overall and per group (GROUPS), and the count of skipped rows."""
    ok = [r for r in rows if r.status == "ok"]
    s = error_stats(r.error_pct for r in ok)
    s["n_skipped"] = len(rows) - len(ok)
    for name, key in GROUPS.items():
        keys = sorted({key(r) for r in ok})
        s[name] = {k: error_stats(r.error_pct for r in ok if key(r) == k) for k in keys}
    return s
