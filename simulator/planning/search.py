"""Layout search: enumerate every layout a cluster allows, evaluate them all at once, rank them.

    planning.enumerate (numpy columns) -> analytic.step.evaluate (one call) -> rank -> pandas DataFrame

The candidates and their rules are those of `planning.enumerate` (the user's constraints are a `SearchSpace`).
The engine decides feasibility (heads, KV heads and FFN width divisible by tp, batch divisible by micro_batch*dp,
cp dividing the sequence, experts divisible by ep, micro-batch count for interleaving, memory); its reason bits
become the `reason` text of the infeasible rows. No Python loop runs per layout.
"""
from __future__ import annotations

import importlib
import importlib.util
import time
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

import numpy as np
import pandas as pd

from ..analytic import step as S
from ..analytic.layouts import LayoutTable
from ..analytic.step import Job, evaluate
from ..errors import SpecError
from ..feasibility import R_TWO_CHUNK
from ..results import TIME_CATEGORIES
from ..specs.hardware import HardwareProfile
from ..specs.layout import DP_COMPRESSION_CODES, MOE_DISPATCH_CODES, RECOMPUTE_CODES, SCHEDULE_CODES, Layout
from ..specs.loading import load_hardware, load_model, validate_spec
from ..specs.model import ModelSpec
from ..specs.network import NetworkConditions
from ..specs.scenario import Scenario
from ..specs.training import TrainDtype, TrainingSpec
from ..units import GIGA
from .enumerate import EmptySearchSpace, SearchSpace, divisors, enumerate_layouts, parse_space  # noqa: F401

Objective = Literal["throughput", "memory", "cost"]
OBJECTIVES = ("throughput", "memory", "cost")
RECOMPUTE_NAMES = tuple(sorted(RECOMPUTE_CODES, key=RECOMPUTE_CODES.get))      # code -> name
SCHEDULE_NAMES = tuple(sorted(SCHEDULE_CODES, key=SCHEDULE_CODES.get))
RANK_NAMES = ("first", "middle", "last")

#: Columns of evaluate() copied into the result frame (in this order, after the layout columns).
RESULT_COLUMNS = (
    "num_micro_batches", "mfu", "hfu", "step_time_s", "tokens_per_s", "tflops_per_device",
    *(f"time_{k}_s" for k in TIME_CATEGORIES), "bubble_fraction",    # the breakdown categories (simulator.results)
    "mem_weights_bytes", "mem_grads_bytes", "mem_optimizer_bytes", "mem_activations_bytes", "mem_reserved_bytes",
    "mem_total_bytes", "mem_capacity_bytes", "fits", "reasons",
)
LAYOUT_COLUMNS = ("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "zero", "recompute", "schedule",
                  "sequence_parallel", "moe_dispatch", "dp_compression", "local_sgd_tau")
MOE_DISPATCH_NAMES = tuple(sorted(MOE_DISPATCH_CODES, key=MOE_DISPATCH_CODES.get))
DP_COMPRESSION_NAMES = tuple(sorted(DP_COMPRESSION_CODES, key=DP_COMPRESSION_CODES.get))
#: The step-time breakdown columns (they sum to step_time_s).
BREAKDOWN_COLUMNS = tuple(c for c in RESULT_COLUMNS if c.startswith("time_"))


# ---------------------------------------------------------------------------------------------------------------
# reasons as text, vectorized
# ---------------------------------------------------------------------------------------------------------------

def _s(x) -> pd.Series:
    return pd.Series(np.asarray(x)).astype(str)


def _gb(x) -> pd.Series:
    """'1,234.5'-style GB text with one decimal, like analytic.reasons.describe (each distinct value formatted
    once)."""
    tenths = np.rint(np.asarray(x, dtype=float) / (GIGA / 10.0)).astype(np.int64)
    uniq, inv = np.unique(tenths, return_inverse=True)
    text = np.array([f"{u / 10.0:,.1f}" for u in uniq.tolist()], dtype=object)
    return pd.Series(text[inv]).astype(str)


def reason_text(frame: pd.DataFrame, model: ModelSpec, training: TrainingSpec, num_devices: int) -> pd.Series:
    """The `reason` column: the sentences of analytic.reasons.describe joined by '; ', '' for feasible rows.

    Vectorized: one string operation per reason bit over the rows that carry it (no per-row Python except
    number formatting of the memory figures).
    """
    mask = frame["reasons"].to_numpy()
    out = pd.Series([""] * len(frame), index=frame.index).astype(str)
    if not mask.any():
        return out
    present = int(np.bitwise_or.reduce(mask))
    ffn = model.moe.expert_ffn_hidden_size if model.moe else model.ffn_hidden_size
    B = training.global_batch

    def col(name, rows):
        return _s(frame[name].to_numpy()[rows])

    def msg(bit, rows):
        c = lambda k: col(k, rows)  # noqa: E731
        if bit == S.R_WORLD:
            prod = _s((frame["tp"] * frame["pp"] * frame["dp"] * frame["cp"]).to_numpy()[rows])
            return ("tp(" + c("tp") + ") * pp(" + c("pp") + ") * dp(" + c("dp") + ") * cp(" + c("cp") + ") = " + prod
                    + f" != devices ({num_devices})")
        if bit == S.R_HEADS:
            return "tp (" + c("tp") + f") must divide the attention heads ({model.num_heads})"
        if bit == S.R_KV:
            return "tp (" + c("tp") + f") and the key/value heads ({model.kv_heads}) must divide one another"
        if bit == S.R_FFN:
            return "tp (" + c("tp") + f") must divide the FFN width ({model.ffn_hidden_size}" + (
                f", expert {ffn})" if model.moe else ")")
        if bit == S.R_CHUNKS:
            prod = _s((frame["pp"] * frame["vpp"]).to_numpy()[rows])
            return ("pp(" + c("pp") + ") * vpp(" + c("vpp") + ") = " + prod
                    + f" pipeline chunks exceed the {model.num_layers} layers")
        if bit == S.R_BATCH:
            prod = _s((frame["micro_batch"] * frame["dp"]).to_numpy()[rows])
            return (f"global batch ({B}) is not a multiple of micro_batch(" + c("micro_batch") + ") * dp(" + c("dp")
                    + ") = " + prod)
        if bit == S.R_EP:
            if model.moe is None:
                return "ep (" + c("ep") + f") > 1 needs an MoE model; '{model.name}' is dense"
            return ("ep (" + c("ep") + ") must divide dp (" + c("dp")
                    + f") and the number of experts ({model.moe.num_experts})")
        if bit == S.R_CP:
            return "cp (" + c("cp") + f") must divide the sequence length ({training.seq_len})"
        if bit == S.R_INTERLEAVE:
            m = _s(B // np.maximum(1, (frame["micro_batch"] * frame["dp"]).to_numpy()[rows]))
            return ("interleaved schedule needs the micro-batch count (" + m + ") to be a multiple of pp ("
                    + c("pp") + ")")
        if bit == S.R_VPP:
            return "vpp (" + c("vpp") + ") > 1 needs pp > 1 and the interleaved schedule (and vice versa)"
        if bit == R_TWO_CHUNK:
            m = _s(B // np.maximum(1, (frame["micro_batch"] * frame["dp"]).to_numpy()[rows]))
            return ("schedule " + c("schedule") + " needs more micro-batches (" + m + ") for pp (" + c("pp")
                    + "): dualpipe an even pp and an even count >= 2 pp, zb-v >= 2 pp - 1")
        if bit == S.R_MEMORY:
            cap = frame["mem_capacity_bytes"].to_numpy()[rows]
            cap_text = _gb(cap) if np.ptp(cap) > 0 else f"{cap[0] / GIGA:,.1f}"
            return "needs " + _gb(frame["mem_total_bytes"].to_numpy()[rows]) + " GB per device, more than the " + cap_text + " GB available"
        return pd.Series([f"reason bit {bit}"] * int(rows.sum()))

    bit = 1
    while bit <= present:
        if present & bit:
            rows = (mask & bit) != 0
            idx = np.nonzero(rows)[0]
            text = msg(bit, rows).reset_index(drop=True)
            prev = out.iloc[idx].reset_index(drop=True)
            out.iloc[idx] = text.where(prev == "", prev + "; " + text).to_numpy()
        bit <<= 1
    return out


# ---------------------------------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchResult:
    """Every candidate layout of one job, ranked.

    `frame` has one row per candidate: the layout columns, the engine's figures (SI units), `feasible`,
    `reason` ('' when feasible), `rank` (1 = best, <NA> for infeasible rows). Feasible rows come first in
    objective order, then the infeasible ones, closest to fitting first.
    """

    model: ModelSpec
    hardware: HardwareProfile
    training: TrainingSpec
    num_devices: int
    objective: str
    space: SearchSpace
    frame: pd.DataFrame
    timings_s: dict = field(default_factory=dict)
    price_per_hour_usd: Optional[float] = None
    engine: str = "analytic"
    network: object = None         # specs.network.NetworkConditions of the job (None: a dedicated network)

    @property
    def num_candidates(self) -> int:
        return len(self.frame)

    @property
    def num_feasible(self) -> int:
        return int(self.frame["feasible"].sum())

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
        only_mem = inf[inf["reasons"] == S.R_MEMORY]
        pool = only_mem if len(only_mem) else inf
        return pool.nsmallest(n, "mem_total_bytes")

    def no_fit_message(self) -> str:
        """What the closest candidates need, for a search where nothing is feasible."""
        cl = self.closest(3)
        cap = self.hardware.device.memory_bytes
        lines = [f"no layout of {self.model.name} fits on {self.num_devices} x {self.hardware.name} "
                 f"(global batch {self.training.global_batch}, seq_len {self.training.seq_len}); "
                 f"{self.num_candidates:,} candidates evaluated."]
        for _, r in cl.iterrows():
            lines.append(f"closest: {layout_label(r)} needs {r['mem_total_bytes'] / GIGA:,.1f} GB per device vs "
                         f"{cap / GIGA:,.1f} GB available" + ("" if r["reasons"] == S.R_MEMORY else
                                                              f" (also: {r['reason']})"))
        if len(cl) and cl.iloc[0]["reasons"] == S.R_MEMORY:
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

    def short_status(self) -> str:
        """'ok', or one line on why nothing is feasible (memory needed, or the rules broken)."""
        if self.num_feasible:
            return "ok"
        cl = self.closest(1)
        if len(cl) and cl.iloc[0]["reasons"] == S.R_MEMORY:
            return (f"nothing fits: needs >= {cl.iloc[0]['mem_total_bytes'] / GIGA:,.1f} GB of "
                    f"{self.hardware.device.memory_bytes / GIGA:,.1f} GB")
        return "no valid layout: " + ", ".join(f"{k} {v:,}" for k, v in self.reason_counts().items())

    def reason_counts(self) -> dict:
        """Infeasible candidates per reason kind (a candidate with several reasons counts under each)."""
        masks = self.frame["reasons"].to_numpy()
        names = {S.R_WORLD: "world size", S.R_HEADS: "heads", S.R_KV: "kv heads", S.R_FFN: "ffn width",
                 S.R_CHUNKS: "layers", S.R_BATCH: "batch", S.R_EP: "experts", S.R_CP: "sequence",
                 S.R_INTERLEAVE: "interleave", S.R_VPP: "vpp", R_TWO_CHUNK: "two-chunk schedule",
                 S.R_MEMORY: "memory"}
        return {name: int(((masks & bit) != 0).sum()) for bit, name in names.items() if ((masks & bit) != 0).any()}

    def scenario(self, row) -> Scenario:
        """The Scenario of one candidate (a row of `frame`, or its index label)."""
        if not isinstance(row, pd.Series):
            row = self.frame.loc[row]
        return scenario_of(self.model, self.hardware, self.training, self.num_devices, row, self.space, self.network)

    def summary(self) -> dict:
        return {
            "model": self.model.name, "hardware": self.hardware.name, "devices": self.num_devices,
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


def pareto_front(frame: pd.DataFrame, x: str = "mem_total_bytes", y: str = "tokens_per_s") -> pd.DataFrame:
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


def layout_label(r) -> str:
    """Short text of one candidate's layout, e.g. 'tp 8 pp 8 dp 16 vpp 2 mb 1 zero 1 selective interleaved'."""
    parts = [f"tp {int(r['tp'])}", f"pp {int(r['pp'])}", f"dp {int(r['dp'])}"]
    if int(r["cp"]) > 1:
        parts.append(f"cp {int(r['cp'])}")
    if int(r["ep"]) > 1:
        parts.append(f"ep {int(r['ep'])}")
    if int(r["vpp"]) > 1:
        parts.append(f"vpp {int(r['vpp'])}")
    parts += [f"mb {int(r['micro_batch'])}", f"zero {int(r['zero'])}", str(r["recompute"]), str(r["schedule"])]
    if str(r.get("moe_dispatch", "flat")) != "flat":
        parts.append(f"{r['moe_dispatch']} dispatch")
    if str(r.get("dp_compression", "none")) != "none":
        parts.append(f"{r['dp_compression']} compression")
    if int(r.get("local_sgd_tau", 1)) > 1:
        parts.append(f"local SGD tau {int(r['local_sgd_tau'])}")
    return " ".join(parts)


def scenario_of(model, hardware, training, num_devices, row, space: SearchSpace | None = None,
                network=None) -> Scenario:
    space = space or SearchSpace()
    layout = Layout(tp=int(row["tp"]), pp=int(row["pp"]), dp=int(row["dp"]), ep=int(row["ep"]), cp=int(row["cp"]),
                    vpp=int(row["vpp"]), zero=int(row["zero"]), micro_batch=int(row["micro_batch"]),
                    recompute=str(row["recompute"]), schedule=str(row["schedule"]),
                    sequence_parallel=bool(row["sequence_parallel"]), flash_attention=space.flash_attention,
                    overlap_grad_reduce=space.overlap_grad_reduce, tp_comm_overlap=space.tp_comm_overlap,
                    ep_comm_overlap=space.ep_comm_overlap, zero3_unit=space.zero3_unit, placement=space.placement,
                    moe_dispatch=str(row.get("moe_dispatch", "flat")), moe_max_nodes=space.moe_max_nodes,
                    dp_compression=str(row.get("dp_compression", "none")),
                    onebit_warmup_fraction=space.onebit_warmup_fraction,
                    local_sgd_tau=int(row.get("local_sgd_tau", 1)))
    return Scenario(model=model, hardware=hardware, num_devices=num_devices, training=training, layout=layout,
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
    group = np.where(feasible, 0, np.where(out["reasons"] == S.R_MEMORY, 1, 2))
    key1 = np.where(feasible, primary, mem)
    key2 = np.where(feasible, np.where(objective == "memory", -tps, mem), 0.0)
    return np.lexsort((key2, key1, group))


def _frame(table: LayoutTable, out: dict, order: np.ndarray, price_per_hour: Optional[float], num_devices: int,
           objective: str) -> pd.DataFrame:
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
        elif c == "moe_dispatch":
            v = pd.Categorical.from_codes(v, MOE_DISPATCH_NAMES)
        elif c == "dp_compression":
            v = pd.Categorical.from_codes(v, DP_COMPRESSION_NAMES)
        data[c] = v
    for c in RESULT_COLUMNS:
        data[c] = np.asarray(out[c])[order]
    if price_per_hour is not None:
        data["usd_per_million_tokens"] = num_devices * price_per_hour / 3600.0 / data["tokens_per_s"] * 1e6
    data["pacing_rank"] = pd.Categorical.from_codes(np.asarray(out["pacing_rank"])[order], RANK_NAMES)
    data["memory_rank"] = pd.Categorical.from_codes(np.asarray(out["memory_rank"])[order], RANK_NAMES)
    return pd.DataFrame(data)


def search(model: Union[str, ModelSpec], hardware: Union[str, HardwareProfile], devices: int, global_batch: int,
           seq_len: Optional[int] = None, *, dtype: TrainDtype = "bf16", constraints=None,
           objective: Objective = "throughput", refine: int = 0, price_per_hour: Optional[float] = None,
           hardware_overrides: Optional[dict] = None, reasons: bool = True, moe_routing=None,
           network=None) -> SearchResult:
    """Search every layout of `model` on `devices` x `hardware` for one global batch and sequence length.

    `constraints`: a SearchSpace or a dict of its fields (e.g. {"max_tp": 8, "zero": [1, 3]}).
    `objective`: throughput (tokens/s, highest first), memory (per-device bytes, lowest first) or cost (USD per
    million tokens, lowest first; needs a price: the profile's price_per_hour_usd or `price_per_hour`).
    `refine`: re-run the best `refine` candidates with the discrete-event engine and re-rank them by its step
    time. `reasons=False` skips the reason text (the `reasons` bit mask is always there).
    Raises SpecError for bad input, contradictory constraints or an empty search space.
    """
    t0 = time.perf_counter()
    m = load_model(model)
    hw = load_hardware(hardware, overrides={k: v for k, v in (hardware_overrides or {}).items() if v is not None})
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 1:
        raise SpecError(f"devices = {devices!r}: must be a positive integer")
    if seq_len is None:
        if m.max_seq_len is None:
            raise SpecError(f"seq_len is required: model '{m.name}' has no max_seq_len")
        seq_len = m.max_seq_len
    training = validate_spec(TrainingSpec, {"seq_len": seq_len, "global_batch": global_batch, "dtype": dtype,
                                            "moe_routing": moe_routing}, "training")
    if objective not in OBJECTIVES:
        raise SpecError(f"objective = {objective!r}: must be one of {', '.join(OBJECTIVES)}")
    space = parse_space(constraints)
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
    job = Job(model=m, hardware=hw, training=training, num_devices=int(devices),
              network=network if network is not None else NetworkConditions())
    out = evaluate(job, table)
    t3 = time.perf_counter()
    cost = None
    if price is not None:
        cost = int(devices) * price / 3600.0 / out["tokens_per_s"] * 1e6
    order = _order(out, objective, cost)
    frame = _frame(table, out, order, price, int(devices), objective)
    if reasons:
        frame["reason"] = reason_text(frame, m, training, int(devices))
    t4 = time.perf_counter()
    timings = {"load_s": t1 - t0, "enumerate_s": t2 - t1, "evaluate_s": t3 - t2, "rank_s": t4 - t3}
    result = SearchResult(model=m, hardware=hw, training=training, num_devices=int(devices), objective=objective,
                          space=space, frame=frame, timings_s=timings, price_per_hour_usd=price, network=network)
    if refine:
        result = refine_with_des(result, refine, simulate)
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


def refine_with_des(result: SearchResult, k: int, simulate=None) -> SearchResult:
    """Re-run the best k feasible candidates with the discrete-event engine and re-rank them by its step time.

    Adds `des_step_time_s`, `des_tokens_per_s` and `des_mfu` (NaN for rows not refined); the refined rows
    come first in DES throughput order (objective 'throughput'/'cost') or stay in memory order ('memory').
    """
    simulate = simulate or _des_simulate()
    f = result.frame
    k = min(int(k), result.num_feasible)
    top = f.iloc[:k]
    des_step = np.array([_step_time_of(simulate(result.scenario(r))) for _, r in top.iterrows()], dtype=float)
    tokens = float(result.training.tokens_per_step)
    head = top.copy()
    head["des_step_time_s"] = des_step
    head["des_tokens_per_s"] = tokens / des_step
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
