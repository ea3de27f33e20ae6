"""Layout search: enumerate every layout a cluster allows, evaluate them all at once, rank them.

    planning.enumerate (numpy columns) -> analytic.compose.evaluate (one call) -> rank -> RankedColumns
    -> (on first read of SearchResult.frame) pandas DataFrame

The candidates and their rules are those of `planning.enumerate` (the user's constraints are a `SearchSpace`).
The engine decides feasibility (heads, KV heads and FFN width divisible by tp, batch divisible by micro_batch*dp,
cp dividing the sequence, experts divisible by ep, micro-batch count for interleaving, memory); its reason bits
become the `reason` text of the infeasible rows. No Python loop runs per layout.

pandas is imported only where a DataFrame is built: a table of the best rows (`SearchResult.top_rows`, the CLI's
default output) reads the ranked numpy columns and gathers just those rows.
"""
from __future__ import annotations

import importlib
import importlib.util
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Optional, Union

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from ..analytic.compose import evaluate
from ..errors import SpecError
from ..feasibility import R_MEMORY, RULES, STRUCTURAL_MASK, Subject
from ..metrics import tokens_per_s, usd_per_million_tokens
from ..results import TIME_CATEGORIES
from ..specs.hardware import HardwareProfile
from ..specs.job import Job
from ..specs.layout import DP_COMPRESSION_CODES, MOE_DISPATCH_CODES, OFFLOAD_CODES, RECOMPUTE_CODES, SCHEDULE_CODES, \
    Layout
from ..specs.layout_table import LayoutTable
from ..specs.loading import load_hardware, load_model, validate_spec
from ..specs.model import ModelSpec
from ..specs.network import NetworkConditions
from ..specs.scenario import Scenario
from ..specs.training import TrainDtype, TrainingSpec, resolve_seq_len
from ..reports.labels import layout_label
from ..units import GIGA
from .enumerate import (EmptySearchSpace, SearchSpace, divisors, enumerate_layouts, parse_space,  # noqa: F401
                        overlap_of_zero, resolve_space)
from ..specs.stack import as_framework

Objective = Literal["throughput", "memory", "cost"]
OBJECTIVES = ("throughput", "memory", "cost")
RECOMPUTE_NAMES = tuple(sorted(RECOMPUTE_CODES, key=RECOMPUTE_CODES.get))      # code -> name
SCHEDULE_NAMES = tuple(sorted(SCHEDULE_CODES, key=SCHEDULE_CODES.get))
OFFLOAD_NAMES = tuple(sorted(OFFLOAD_CODES, key=OFFLOAD_CODES.get))
OFFLOAD_COLUMNS = ("offload_optimizer", "offload_params", "offload_activations")
RANK_NAMES = ("first", "middle", "last")

#: Columns of evaluate() copied into the result frame (in this order, after the layout columns).
RESULT_COLUMNS = (
    "num_micro_batches", "mfu", "hfu", "step_time_s", "tokens_per_s", "tflops_per_device",
    *(f"time_{k}_s" for k in TIME_CATEGORIES), "bubble_fraction",    # the breakdown categories (simulator.results)
    "mem_weights_bytes", "mem_grads_bytes", "mem_optimizer_bytes", "mem_activations_bytes", "mem_reserved_bytes",
    "mem_total_bytes", "mem_capacity_bytes", "mem_host_bytes", "mem_nvme_bytes", "fits", "reasons",
)
LAYOUT_COLUMNS = ("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "zero", "recompute", "schedule",
                  "sequence_parallel", *OFFLOAD_COLUMNS, "moe_dispatch", "dp_compression", "local_sgd_tau")
MOE_DISPATCH_NAMES = tuple(sorted(MOE_DISPATCH_CODES, key=MOE_DISPATCH_CODES.get))
DP_COMPRESSION_NAMES = tuple(sorted(DP_COMPRESSION_CODES, key=DP_COMPRESSION_CODES.get))
#: The step-time breakdown columns (they sum to step_time_s).
BREAKDOWN_COLUMNS = tuple(c for c in RESULT_COLUMNS if c.startswith("time_"))
#: The engine's columns a search keeps (RankedColumns reads these; evaluate drops the others block by block).
SEARCH_COLUMNS = (*RESULT_COLUMNS, "pacing_rank", "memory_rank")


# ---------------------------------------------------------------------------------------------------------------
# reasons as text
# ---------------------------------------------------------------------------------------------------------------

#: Frame columns the structural rules' sentences name (feasibility.RULES messages).
_MESSAGE_COLUMNS = ("tp", "pp", "dp", "ep", "cp", "vpp", "micro_batch")


def _subject(frame: pd.DataFrame, model: ModelSpec, training: TrainingSpec, num_devices: int,
             hardware: HardwareProfile | None = None) -> Subject:
    cols = {k: frame[k].to_numpy() for k in _MESSAGE_COLUMNS}
    offload = {c: (frame[c].map(OFFLOAD_CODES).to_numpy() if c in frame else 0) for c in OFFLOAD_COLUMNS}
    return Subject(model=model, training=training, num_devices=num_devices, **cols,
                   schedule=np.asarray(frame["schedule"].cat.codes if hasattr(frame["schedule"], "cat")
                                       else frame["schedule"]),
                   num_micro=frame["num_micro_batches"].to_numpy(), mem_total_bytes=frame["mem_total_bytes"].to_numpy(),
                   capacity_bytes=frame["mem_capacity_bytes"].to_numpy(), zero=frame["zero"].to_numpy(),
                   hardware=hardware, **offload,
                   host_bytes=frame["mem_host_bytes"].to_numpy() if "mem_host_bytes" in frame else None,
                   nvme_bytes=frame["mem_nvme_bytes"].to_numpy() if "mem_nvme_bytes" in frame else None)


def _message_key(rule, frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Integer codes of what the rule's sentence depends on, per row: the GB figures (to one decimal) for memory,
    else the layout columns it names."""
    import pandas as pd
    if rule.bit == R_MEMORY:
        text = [f"{t:.1f}|{c:.1f}" for t, c in zip((frame["mem_total_bytes"].to_numpy()[rows] / GIGA).tolist(),
                                                   (frame["mem_capacity_bytes"].to_numpy()[rows] / GIGA).tolist())]
        return pd.factorize(np.asarray(text, dtype=object))[0]
    key = np.zeros(len(rows), np.int64)
    extra = ("zero", "schedule", *OFFLOAD_COLUMNS, "mem_host_bytes", "mem_nvme_bytes")
    for k in _MESSAGE_COLUMNS + tuple(c for c in extra if c in frame):   # mixed-radix combination of column codes
        codes, uniq = pd.factorize(frame[k].to_numpy()[rows])
        key = key * len(uniq) + codes
    return key


def reason_text(frame: pd.DataFrame, model: ModelSpec, training: TrainingSpec, num_devices: int,
                hardware: HardwareProfile | None = None) -> pd.Series:
    """The `reason` column: the sentences of feasibility.RULES (the one table of rules) joined by '; ', '' for
    feasible rows. Each distinct sentence is written once, by the rule's own message, for the rows that share
    the values it names."""
    import pandas as pd
    mask = frame["reasons"].to_numpy()
    out = np.full(len(frame), "", dtype=object)
    if mask.any():
        s = _subject(frame, model, training, num_devices, hardware)
        for rule in RULES:
            rows = np.nonzero(mask & rule.bit)[0]
            if len(rows) == 0:
                continue
            _, first, inv = np.unique(_message_key(rule, frame, rows), return_index=True, return_inverse=True)
            text = np.array([rule.message(s, int(rows[j])) for j in first], dtype=object)[inv.reshape(-1)]
            prev = out[rows]
            out[rows] = np.where(prev == "", text, prev + "; " + text)
    return pd.Series(out, index=frame.index).astype(str)


# ---------------------------------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------------------------------

#: Frame columns stored as category codes, with their names (code -> name).
CATEGORY_NAMES = {"recompute": RECOMPUTE_NAMES, "schedule": SCHEDULE_NAMES,
                  **{c: OFFLOAD_NAMES for c in OFFLOAD_COLUMNS}, "moe_dispatch": MOE_DISPATCH_NAMES,
                  "dp_compression": DP_COMPRESSION_NAMES, "pacing_rank": RANK_NAMES, "memory_rank": RANK_NAMES}


class RankedColumns:
    """The candidates of a search in rank order, kept as the enumerated table, the engine's columns and the row
    order: `rows(k)` gathers k rows as dicts (numpy only), `frame()` builds the whole DataFrame (pandas). A table
    of the best rows never gathers the other ~100k rows nor imports pandas."""

    def __init__(self, table: LayoutTable, out: dict, order: np.ndarray, price_per_hour: Optional[float],
                 num_devices: int):
        self.table, self.out, self.order = table, out, order
        self.price_per_hour, self.num_devices = price_per_hour, num_devices
        self.reasons = np.asarray(out["reasons"])[order]          # the reason bits in rank order
        self.num_feasible = int((self.reasons == 0).sum())

    def __len__(self) -> int:
        return len(self.order)

    def frame(self):
        """The DataFrame of every candidate (columns and values as `rows` gives them)."""
        return _frame(self.table, self.out, self.order, self.price_per_hour, self.num_devices)

    def rows(self, positions) -> list[dict]:
        """Rows at these rank positions (0 = first) as dicts: the frame's columns, category names as str, <NA>
        ranks as None, and the step time, utilisation, throughput and cost of unformable rows NaN (as `frame`)."""
        pos = np.asarray(positions, dtype=np.int64)
        idx = self.order[pos]
        reasons = self.reasons[pos]
        cols: dict[str, list] = {"rank": [int(p) + 1 if p < self.num_feasible else None for p in pos.tolist()],
                                 "feasible": (reasons == 0).tolist()}
        for c in LAYOUT_COLUMNS:
            v = getattr(self.table, c)[idx]
            cols[c] = [CATEGORY_NAMES[c][k] for k in v.tolist()] if c in CATEGORY_NAMES else v.tolist()
        for c in RESULT_COLUMNS:
            cols[c] = np.asarray(self.out[c])[idx].tolist()
        if self.price_per_hour is not None:
            cols["usd_per_million_tokens"] = np.asarray(usd_per_million_tokens(
                self.num_devices, self.price_per_hour, np.asarray(self.out["tokens_per_s"])[idx]), float).tolist()
        bad = ((reasons & STRUCTURAL_MASK) != 0).tolist()
        if any(bad):
            for c in UNFORMABLE_BLANK:
                if c in cols:
                    cols[c] = [float("nan") if b else float(v) for v, b in zip(cols[c], bad)]
        for c in ("pacing_rank", "memory_rank"):
            # -1: no rank (an unformable row's pacing rank), blank in the frame's categorical as NaN
            cols[c] = [RANK_NAMES[k] if k >= 0 else float("nan") for k in np.asarray(self.out[c])[idx].tolist()]
        names = list(cols)
        return [dict(zip(names, vals)) for vals in zip(*(cols[n] for n in names))]


class _FrameField:
    """SearchResult.frame: set to a DataFrame or to RankedColumns, read as a DataFrame (built from the columns
    on the first read, then kept). A dataclass field with a data descriptor: it has no default, and the
    dataclass's __init__ and `dataclasses.replace` go through __set__."""

    def __set_name__(self, owner, name: str) -> None:
        self.slot = f"_{name}_value"

    def __get__(self, obj, owner=None):
        if obj is None:
            raise AttributeError("frame")             # no class-level default: a required field
        v = obj.__dict__[self.slot]
        if isinstance(v, RankedColumns):
            v = v.frame()
            obj.__dict__[self.slot] = v
        return v

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.slot] = value


@dataclass(frozen=True)
class SearchResult:
    """Every candidate layout of one job, ranked.

    `frame` has one row per candidate: the layout columns, the engine's figures (SI units), `feasible`,
    `reason` ('' when feasible), `rank` (1 = best, <NA> for infeasible rows). Feasible rows come first in
    objective order, then the infeasible ones, closest to fitting first. It may be given as RankedColumns, in
    which case the DataFrame is built on its first read; `top_rows`, the counts and `reason_counts` do not need it.
    """

    model: ModelSpec
    hardware: HardwareProfile
    training: TrainingSpec
    num_devices: int
    objective: str
    space: SearchSpace
    frame: "pd.DataFrame" = _FrameField()
    timings_s: dict = field(default_factory=dict)
    price_per_hour_usd: Optional[float] = None
    engine: str = "analytic"
    network: object = None         # specs.network.NetworkConditions of the job (None: a dedicated network)

    @property
    def _columns(self) -> Optional[RankedColumns]:
        """The ranked columns while the DataFrame has not been built, else None."""
        v = self.__dict__.get("_frame_value")
        return v if isinstance(v, RankedColumns) else None

    @property
    def num_candidates(self) -> int:
        c = self._columns
        return len(c) if c is not None else len(self.frame)

    @property
    def num_feasible(self) -> int:
        c = self._columns
        return c.num_feasible if c is not None else int(self.frame["feasible"].sum())

    def top_rows(self, n: int = 10) -> list[dict]:
        """The best n feasible candidates as dicts (the frame's columns): what a table shows, without pandas
        when the frame has not been built."""
        c = self._columns
        if c is not None:
            return c.rows(np.arange(min(int(n), c.num_feasible)))
        return self.top(n).to_dict("records")

    @property
    def feasible(self) -> pd.DataFrame:
        return self.frame[self.frame["feasible"]]

    def top(self, n: int = 10) -> pd.DataFrame:
        """The best n feasible candidates."""
        return self.feasible.head(n)

    @property
    def best(self) -> Optional[pd.Series]:
        """The best feasible candidate, or None when nothing fits."""
        f = self.feasible
        return f.iloc[0] if len(f) else None

    def closest(self, n: int = 3) -> pd.DataFrame:
        """When nothing fits: the candidates needing the least memory among those failing on memory alone
        (else the least-memory candidates of any kind)."""
        inf = self.frame[~self.frame["feasible"]]
        only_mem = inf[inf["reasons"] == R_MEMORY]
        pool = only_mem if len(only_mem) else inf
        return pool.nsmallest(n, "mem_total_bytes")

    def no_fit_message(self) -> str:
        """What the closest candidates need, for a search where nothing is feasible."""
        cl = self.closest(3)
        cap = self.hardware.device.memory_bytes
        lines = [f"no layout of {self.model.name} fits on {self.num_devices} x {self.hardware.name} "
                 f"(global batch {self.training.global_batch}, seq_len {self.training.seq_len}); "
                 f"{self.num_candidates:,} candidates evaluated."]
        why = self.reason_of(cl)
        for (i, r) in cl.iterrows():
            lines.append(f"closest: {layout_label(r)} needs {r['mem_total_bytes'] / GIGA:,.1f} GB per device vs "
                         f"{cap / GIGA:,.1f} GB available" + ("" if r["reasons"] == R_MEMORY else
                                                              f" (also: {why[i]})"))
        if len(cl) and cl.iloc[0]["reasons"] == R_MEMORY:
            need = cl.iloc[0]["mem_total_bytes"]
            hints = ["more devices", f"devices with at least {need / GIGA:,.0f} GB"]
            if 3 not in self.space.zero:
                hints.append("allowing ZeRO-3 (--zero)")
            if "full" not in self.space.recompute:
                hints.append("allowing full recompute (--recompute)")
            lines.append("could fit with: " + ", ".join(hints))
        counts = self.reason_counts()
        if counts:
            lines.append("infeasible: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        return "\n".join(lines)

    def reason_of(self, rows: pd.DataFrame) -> pd.Series:
        """The `reason` text of some rows of `frame`: the column when the search wrote it, else written now for
        these rows only (search(reasons=False) leaves it out; the bit mask `reasons` is always there)."""
        if "reason" in rows:
            return rows["reason"]
        return reason_text(rows, self.model, self.training, self.num_devices)

    def short_status(self) -> str:
        """'ok', or one line on why nothing is feasible (memory needed, or the rules broken)."""
        if self.num_feasible:
            return "ok"
        cl = self.closest(1)
        if len(cl) and cl.iloc[0]["reasons"] == R_MEMORY:
            return (f"nothing fits: needs >= {cl.iloc[0]['mem_total_bytes'] / GIGA:,.1f} GB of "
                    f"{self.hardware.device.memory_bytes / GIGA:,.1f} GB")
        return "no valid layout: " + ", ".join(f"{k} {v:,}" for k, v in self.reason_counts().items())

    def reason_counts(self) -> dict:
        """Infeasible candidates per reason kind (a candidate with several reasons counts under each)."""
        c = self._columns
        masks = c.reasons if c is not None else self.frame["reasons"].to_numpy()
        counts = {r.name: int(((masks & r.bit) != 0).sum()) for r in RULES}
        return {name: n for name, n in counts.items() if n}

    def scenario(self, row) -> Scenario:
        """The Scenario of one candidate (a row of `frame`, or its index label)."""
        if isinstance(row, (int, np.integer)):
            row = self.frame.loc[row]
        return scenario_of(self.model, self.hardware, self.training, self.num_devices, row, self.space, self.network)

    def summary(self) -> dict:
        return {
            "model": self.model.name, "hardware": self.hardware.name, "devices": self.num_devices,
            "framework": as_framework(self.space.framework).name,
            "global_batch": self.training.global_batch, "seq_len": self.training.seq_len,
            "dtype": self.training.dtype, "objective": self.objective, "engine": self.engine,
            "num_candidates": self.num_candidates, "num_feasible": self.num_feasible,
            "timings_s": dict(self.timings_s),
        }

    def to_dict(self, top: Optional[int] = None) -> dict:
        """Summary plus the candidates as records (all of them unless `top` is given)."""
        d = self.summary()
        df = self.frame if top is None else self.top(top)
        d["candidates"] = records(df)
        return d


def pareto_front(frame, x: str = "mem_total_bytes", y: str = "tokens_per_s"):
    """Feasible candidates no other feasible candidate beats on both less `x` (memory) and more `y` (throughput),
    sorted by `x`. Ties on both keep the first row."""
    f = frame[frame["feasible"]] if "feasible" in frame else frame
    if len(f) == 0:
        return f
    f = f.iloc[np.lexsort((-f[y].to_numpy(), f[x].to_numpy()))]
    yv = f[y].to_numpy()
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(yv)[:-1]])
    return f[yv > best_before]


def records(df: pd.DataFrame) -> list[dict]:
    """DataFrame rows as JSON-ready dicts (NA -> None)."""
    import json
    return json.loads(df.to_json(orient="records"))


def offload_label(r) -> str:
    """'optimizer cpu, params cpu, activations cpu' for the tiers a candidate offloads ('' for none)."""
    return ", ".join(f"{c.removeprefix('offload_')} {r[c]}" for c in OFFLOAD_COLUMNS if c in r and str(r[c]) != "none")


def scenario_of(model, hardware, training, num_devices, row, space: SearchSpace | None = None,
                network=None) -> Scenario:
    space = space or SearchSpace()
    layout = Layout(tp=int(row["tp"]), pp=int(row["pp"]), dp=int(row["dp"]), ep=int(row["ep"]), cp=int(row["cp"]),
                    vpp=int(row["vpp"]), zero=int(row["zero"]), micro_batch=int(row["micro_batch"]),
                    recompute=str(row["recompute"]), schedule=str(row["schedule"]),
                    sequence_parallel=bool(row["sequence_parallel"]), flash_attention=space.flash_attention,
                    overlap_grad_reduce=bool(overlap_of_zero(space, int(row["zero"]))),
                    tp_comm_overlap=space.tp_comm_overlap,
                    ep_comm_overlap=space.ep_comm_overlap, zero3_unit=space.zero3_unit, placement=space.placement,
                    **{c: str(row[c]) for c in OFFLOAD_COLUMNS if c in row},
                    offload_delayed_update=space.offload_delayed_update and str(row.get("offload_optimizer")) not in
                    ("none", "None"),
                    moe_dispatch=str(row.get("moe_dispatch", "flat")), moe_max_nodes=space.moe_max_nodes,
                    dp_compression=str(row.get("dp_compression", "none")),
                    onebit_warmup_fraction=space.onebit_warmup_fraction,
                    local_sgd_tau=int(row.get("local_sgd_tau", 1)))
    return Scenario(model=model, hardware=hardware, num_devices=num_devices, training=training, layout=layout,
                    framework=as_framework(space.framework),
                    network=network if network is not None else NetworkConditions())


def _order(out: dict, objective: str, cost: Optional[np.ndarray]) -> np.ndarray:
    """Row order: feasible first by objective (ties: less memory, then enumeration order), then infeasible,
    memory-only failures first, each by memory needed."""
    feasible = out["reasons"] == 0
    mem = out["mem_total_bytes"]
    tps = out["tokens_per_s"]
    if objective == "memory":
        primary = mem
    elif objective == "cost":
        primary = cost
    else:
        primary = -tps
    group = np.where(feasible, 0, np.where(out["reasons"] == R_MEMORY, 1, 2))
    key1 = np.where(feasible, primary, mem)
    key2 = np.where(feasible, np.where(objective == "memory", -tps, mem), 0.0)
    return np.lexsort((key2, key1, group))


def _frame(table: LayoutTable, out: dict, order: np.ndarray, price_per_hour: Optional[float], num_devices: int):
    import pandas as pd
    n = len(order)
    data = {}
    nf = int((out["reasons"] == 0).sum())
    rank = pd.array(np.concatenate([np.arange(1, nf + 1), np.zeros(n - nf, np.int64)]), dtype="Int64")
    rank[nf:] = pd.NA
    data["rank"] = rank
    feasible = out["reasons"][order] == 0
    data["feasible"] = feasible
    for c in LAYOUT_COLUMNS:
        v = getattr(table, c)[order]
        if c == "recompute":
            v = pd.Categorical.from_codes(v, RECOMPUTE_NAMES)
        elif c == "schedule":
            v = pd.Categorical.from_codes(v, SCHEDULE_NAMES)
        elif c in OFFLOAD_COLUMNS:
            v = pd.Categorical.from_codes(v, OFFLOAD_NAMES)
        elif c == "moe_dispatch":
            v = pd.Categorical.from_codes(v, MOE_DISPATCH_NAMES)
        elif c == "dp_compression":
            v = pd.Categorical.from_codes(v, DP_COMPRESSION_NAMES)
        data[c] = v
    for c in RESULT_COLUMNS:
        data[c] = np.asarray(out[c])[order]
    if price_per_hour is not None:
        data["usd_per_million_tokens"] = usd_per_million_tokens(num_devices, price_per_hour, data["tokens_per_s"])
    _blank_unformable(data, np.asarray(out["reasons"])[order])
    data["pacing_rank"] = pd.Categorical.from_codes(np.asarray(out["pacing_rank"])[order], RANK_NAMES)
    data["memory_rank"] = pd.Categorical.from_codes(np.asarray(out["memory_rank"])[order], RANK_NAMES)
    return pd.DataFrame(data)


#: Figures a layout that cannot be formed does not have (results.StepEstimate.to_dict blanks the same ones).
UNFORMABLE_BLANK = ("mfu", "hfu", "step_time_s", "tokens_per_s", "tflops_per_device", *BREAKDOWN_COLUMNS,
                    "bubble_fraction", "usd_per_million_tokens")


def _blank_unformable(data: dict, reasons: np.ndarray) -> None:
    """NaN (blank in CSV, null in JSON) for the step time, utilisation, throughput and cost of rows with a
    structural reason (feasibility.STRUCTURAL_MASK: world size, divisibility, interleaving...): figures computed
    from an impossible split mean nothing. Rows that only fail on memory keep theirs; memory stays for all."""
    bad = (reasons & STRUCTURAL_MASK) != 0
    if bad.any():
        for c in UNFORMABLE_BLANK:
            if c in data:
                data[c] = np.where(bad, np.nan, np.asarray(data[c], dtype=float))


def search(model: Union[str, ModelSpec], hardware: Union[str, HardwareProfile], devices: int, global_batch: int,
           seq_len: Optional[int] = None, *, dtype: TrainDtype = "bf16", constraints=None,
           objective: Objective = "throughput", refine: int = 0, price_per_hour: Optional[float] = None,
           hardware_overrides: Optional[dict] = None, reasons: bool = True,
           framework: Optional[str] = None, progress=None, moe_routing=None, network=None) -> SearchResult:
    """Search every layout of `model` on `devices` x `hardware` for one global batch and sequence length.

    `constraints`: a SearchSpace or a dict of its fields (e.g. {"max_tp": 8, "zero": [1, 3]}).
    `objective`: throughput (tokens/s, highest first), memory (per-device bytes, lowest first) or cost (USD per
    million tokens, lowest first; needs a price: the profile's price_per_hour_usd or `price_per_hour`).
    `refine`: re-run the best `refine` candidates with the discrete-event engine and re-rank them by its step
    time. `reasons=False` skips the reason text (the `reasons` bit mask is always there). `framework`: the
    software stack (preset name or YAML path; also `constraints['framework']`; default specs.stack's).
    `progress(done, total)`
    is called after each refined candidate.
    Raises SpecError for bad input, contradictory constraints or an empty search space.
    """
    t0 = time.perf_counter()
    m = load_model(model)
    hw = load_hardware(hardware, overrides={k: v for k, v in (hardware_overrides or {}).items() if v is not None})
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 1:
        raise SpecError(f"devices = {devices!r}: must be a positive integer")
    seq_len = resolve_seq_len(m, seq_len)
    training = validate_spec(TrainingSpec, {"seq_len": seq_len, "global_batch": global_batch, "dtype": dtype,
                                            "moe_routing": moe_routing}, "training")
    if objective not in OBJECTIVES:
        raise SpecError(f"objective = {objective!r}: must be one of {', '.join(OBJECTIVES)}")
    space = parse_space(constraints)
    if framework is not None:
        space = space.model_copy(update={"framework": str(framework)})
    fw = as_framework(space.framework)
    space = resolve_space(space, fw, hw.family)
    price = price_per_hour if price_per_hour is not None else hw.device.price_per_hour_usd
    if objective == "cost" and price is None:
        raise SpecError(f"objective 'cost' needs a price: profile '{hw.name}' has no device.price_per_hour_usd; "
                        "pass price_per_hour (--price-per-hour)")
    if refine < 0:
        raise SpecError(f"refine = {refine}: must be >= 0")
    if refine:
        simulate = _des_simulate()

    t1 = time.perf_counter()
    table = enumerate_layouts(m, training, int(devices), space)
    t2 = time.perf_counter()
    job = Job(model=m, hardware=hw, training=training, num_devices=int(devices), framework=fw,
              network=network if network is not None else NetworkConditions())
    out = evaluate(job, table, columns=SEARCH_COLUMNS)
    t3 = time.perf_counter()
    cost = None
    if price is not None:
        cost = usd_per_million_tokens(int(devices), price, out["tokens_per_s"])
    order = _order(out, objective, cost)
    frame = RankedColumns(table, out, order, price, int(devices))     # the DataFrame is built on first read
    if reasons:
        frame = frame.frame()
        frame["reason"] = reason_text(frame, m, training, int(devices), hw)
    t4 = time.perf_counter()
    timings = {"load_s": t1 - t0, "enumerate_s": t2 - t1, "evaluate_s": t3 - t2, "rank_s": t4 - t3}
    result = SearchResult(model=m, hardware=hw, training=training, num_devices=int(devices), objective=objective,
                          space=space, frame=frame, timings_s=timings, price_per_hour_usd=price, network=network)
    if refine:
        result = refine_with_des(result, refine, simulate, progress)
        timings["refine_s"] = time.perf_counter() - t4
    timings["total_s"] = time.perf_counter() - t0
    return result


# ---------------------------------------------------------------------------------------------------------------
# refinement with the discrete-event engine
# ---------------------------------------------------------------------------------------------------------------

DES_MODULE = "simulator.des.api"


def _des_simulate():
    """simulator.des.api.simulate, or a SpecError saying the discrete-event engine is not in this build."""
    try:
        found = importlib.util.find_spec(DES_MODULE) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise SpecError("--refine needs the discrete-event engine (simulator.des.api.simulate), which this build "
                        "does not include; run the search without --refine")
    return importlib.import_module(DES_MODULE).simulate


def _step_time_of(res) -> float:
    if isinstance(res, dict):
        return float(res["step_time_s"])
    if hasattr(res, "step_time_s"):
        return float(res.step_time_s)
    return float(res.to_dict()["step_time_s"])


def refine_with_des(result: SearchResult, k: int, simulate=None, progress=None) -> SearchResult:
    """Re-run the best k feasible candidates with the discrete-event engine and re-rank them by its step time.

    Adds `des_step_time_s`, `des_tokens_per_s` and `des_mfu` (NaN for rows not refined); the refined rows
    come first in DES throughput order (objective 'throughput'/'cost') or stay in memory order ('memory').
    """
    import pandas as pd
    simulate = simulate or _des_simulate()
    f = result.frame
    k = min(int(k), result.num_feasible)
    top = f.iloc[:k]
    des_step = []
    for j, (_, r) in enumerate(top.iterrows()):
        des_step.append(_step_time_of(simulate(result.scenario(r))))
        if progress is not None:
            progress(j + 1, k)
    des_step = np.array(des_step, dtype=float)
    tokens = float(result.training.tokens_per_step)
    head = top.copy()
    head["des_step_time_s"] = des_step
    head["des_tokens_per_s"] = tokens_per_s(tokens, des_step)
    head["des_mfu"] = head["mfu"] * head["step_time_s"] / des_step
    if result.objective != "memory":
        head = head.iloc[np.argsort(des_step, kind="stable")]
    head["rank"] = pd.array(np.arange(1, k + 1), dtype="Int64")
    tail = f.iloc[k:].copy()
    for c in ("des_step_time_s", "des_tokens_per_s", "des_mfu"):
        tail[c] = np.nan
    frame = pd.concat([head, tail], ignore_index=True)
    return SearchResult(model=result.model, hardware=result.hardware, training=result.training,
                        num_devices=result.num_devices, objective=result.objective, space=result.space, frame=frame,
                        timings_s=result.timings_s, price_per_hour_usd=result.price_per_hour_usd,
                        engine="analytic+des", network=result.network)
