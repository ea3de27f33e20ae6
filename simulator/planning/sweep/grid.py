"""The grid of a sweep and its chunks: resolved specs, grid points in order, the fingerprint, and the pure
function that searches one chunk's points (the unit of work an executor runs anywhere)."""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...errors import SpecError
from ...specs.hardware import HardwareProfile
from ...specs.loading import load_hardware, load_model
from ...specs.model import ModelSpec
from ...specs.training import resolve_seq_len
from ..enumerate import EmptySearchSpace, SearchSpace
from ..search import BREAKDOWN_COLUMNS, search
from .spec import SweepSpec

INT_COLUMNS = ("point", "devices", "global_batch", "seq_len", "rank", "tp", "pp", "dp", "cp", "ep", "vpp",
               "micro_batch", "zero", "num_candidates", "num_feasible")
STR_COLUMNS = ("model", "hardware", "status", "recompute", "schedule")
FLOAT_COLUMNS = ("mfu", "hfu", "step_time_s", "tokens_per_s", "tflops_per_device", "mem_total_bytes",
                 "mem_capacity_bytes") + BREAKDOWN_COLUMNS
COLUMNS = INT_COLUMNS[:4] + ("model", "hardware", "rank", "status") + INT_COLUMNS[5:13] + (
    "recompute", "schedule") + FLOAT_COLUMNS + INT_COLUMNS[13:]



@dataclass(frozen=True)
class Plan:
    """Resolved sweep: specs by name, grid points in order, chunk boundaries and the fingerprint."""

    spec: SweepSpec
    models: dict
    hardware: dict
    points: list
    fingerprint: str

    @property
    def num_chunks(self) -> int:
        return math.ceil(len(self.points) / self.spec.chunk_size)

    def chunk_points(self, i: int) -> list:
        cs = self.spec.chunk_size
        return self.points[i * cs:(i + 1) * cs]

    def payload(self, i: int) -> dict:
        """Everything a worker needs for chunk i (plain data: specs travel with the task)."""
        pts = self.chunk_points(i)
        return {
            "chunk": i,
            "points": pts,
            "models": {p["model"]: self.models[p["model"]].model_dump() for p in pts},
            "hardware": {p["hardware"]: self.hardware[p["hardware"]].model_dump() for p in pts},
            "dtype": self.spec.dtype,
            "constraints": self.spec.constraints.model_dump(),
            "objective": self.spec.objective,
            "top_k": self.spec.top_k,
        }


def plan(spec: SweepSpec) -> Plan:
    """Resolve names, build the grid (model-major order) and fingerprint the spec with the resolved specs."""
    models: dict[str, ModelSpec] = {}
    for name in spec.models:
        m = load_model(name)
        models[m.name] = m
    hardware: dict[str, HardwareProfile] = {}
    for name in spec.hardware:
        hw = load_hardware(name)
        hardware[hw.name] = hw
    if len(models) != len(spec.models) or len(hardware) != len(spec.hardware):
        raise SpecError("sweep spec: a model or hardware profile is listed twice")
    seqs = spec.seq_len if isinstance(spec.seq_len, list) else [spec.seq_len]
    points = []
    for mname, hname, n, b, s in itertools.product(models, hardware, spec.devices, spec.global_batch, seqs):
        try:
            s = resolve_seq_len(models[mname], s)
        except SpecError as err:
            raise SpecError(f"sweep spec: {err}") from None
        points.append({"point": len(points), "model": mname, "hardware": hname, "devices": int(n),
                       "global_batch": int(b), "seq_len": int(s)})
    ident = {
        "spec": spec.model_dump(exclude={"output"}),
        "models": {k: v.model_dump() for k, v in models.items()},
        "hardware": {k: v.model_dump() for k, v in hardware.items()},
    }
    fp = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()
    return Plan(spec=spec, models=models, hardware=hardware, points=points, fingerprint=fp)


def _empty_row(p: dict, status: str) -> dict:
    row = {c: -1 for c in INT_COLUMNS}
    row.update({c: float("nan") for c in FLOAT_COLUMNS})
    row.update({c: "" for c in STR_COLUMNS})
    row.update({k: p[k] for k in ("point", "model", "hardware", "devices", "global_batch", "seq_len")})
    row["status"] = status
    return row


def _row_of(p: dict, r, rank: int, status: str, n_cand: int, n_feas: int) -> dict:
    row = _empty_row(p, status)
    for c in ("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "zero"):
        row[c] = int(r[c])
    row["recompute"], row["schedule"] = str(r["recompute"]), str(r["schedule"])
    for c in FLOAT_COLUMNS:
        row[c] = float(r[c])
    row.update(rank=rank, num_candidates=n_cand, num_feasible=n_feas)
    return row


def chunk_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> a DataFrame with the fixed columns and dtypes every chunk file shares."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for c in INT_COLUMNS:
        df[c] = df[c].astype(np.int64)
    for c in FLOAT_COLUMNS:
        df[c] = df[c].astype(np.float64)
    for c in STR_COLUMNS:
        df[c] = df[c].astype(object)
    return df


def evaluate_chunk(payload: dict) -> pd.DataFrame:
    """Search every grid point of one chunk; the best `top_k` feasible layouts per point (status 'ok'), or one
    row saying why none is feasible (the least-memory layout's figures) or why the space is empty.

    A pure function of its payload: the same chunk gives the same rows on any worker.
    """
    models = {k: ModelSpec.model_validate(v) for k, v in payload["models"].items()}
    hardware = {k: HardwareProfile.model_validate(v) for k, v in payload["hardware"].items()}
    space = SearchSpace.model_validate(payload["constraints"])
    rows = []
    for p in payload["points"]:
        try:
            res = search(models[p["model"]], hardware[p["hardware"]], p["devices"], p["global_batch"], p["seq_len"],
                         dtype=payload["dtype"], constraints=space, objective=payload["objective"], reasons=False)
        except EmptySearchSpace as err:
            rows.append(_empty_row(p, f"empty: {err.reason}"))
            continue
        except SpecError as err:
            rows.append(_empty_row(p, f"error: {err}"))
            continue
        if res.num_feasible:     # the ranked columns' rows: no DataFrame of every candidate is built
            for k, r in enumerate(res.top_rows(payload["top_k"]), start=1):
                rows.append(_row_of(p, r, k, "ok", res.num_candidates, res.num_feasible))
        else:
            cl = res.closest(1)
            row = _row_of(p, cl.iloc[0], 0, res.short_status(), res.num_candidates, 0)
            rows.append(row)
    return chunk_frame(rows)

