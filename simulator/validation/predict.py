"""Predict every row of a runs file: search the row's blank layout cells, take the fastest setting that fits,
and convert the step time (or memory) into the row's own metric under its own FLOP convention.

Comparing like with like (data README sec. 3):

- `step_time_s`, `tokens_per_s_per_device`, `memory_gb`: the engine's step time, tokens/s / devices and
  per-device total memory (GB, 1e9 bytes).
- `mfu` / `hfu` / `tflops_per_device`: FLOPs of the row's global batch under its `flops_convention`, divided by
  the predicted step time (and devices, and `peak_tflops_used` or the profile's MFU peak):
  `6N`: 6 x (matmul weights every token uses, the logit layer once) per token, no attention; `6N+attn`:
  plus 12 l s (heads x head_dim) (PaLM App. B); `6N+attn_causal`: the attention term halved (MaxText);
  `megatron_eq3_norecompute`: equal to `6N+attn` (data README sec. 3); `megatron_eq3`: Narayanan et al. 2021
  eq. 3 generalised = `6N+attn` + one more forward of every transformer layer (the recompute pass it assumes).
  `unknown`: an `mfu` row is compared as `6N+attn` (the PaLM definition); a `tflops_per_device` row as the
  FLOP/s the hardware executes under the row's recompute setting (model FLOPs + recompute), since frameworks
  that log "TFLOP/s" without naming a convention count what they run (Megatron, GPT-NeoX logging).
  Sliding-window and chunked layers: `6N+attn` counts s x min(W, s) per windowed layer and the squares of the
  chunk lengths per chunked one, `6N+attn_causal` half of that (MaxText maxtext_utils.py, the only publisher of
  those conventions here); the Megatron conventions keep eq. 3's full s x s term (it has no window term).
- Blank layout cells (micro_batch, recompute, zero_stage, vpp, sequence_parallel; also ep, tp, pp when blank)
  are searched as a user would: the one layout enumeration (planning.enumerate) lists every combination of the
  blank fields under the stated ones, the vectorized analytic engine evaluates them, and the fastest that fits in
  memory is taken (data README sec. 5). Each row reports which fields were searched and what was chosen.

Rows that cannot be predicted come back as skipped RowResults with the reason, never dropped. Pure: no
printing, no files written (the CLI renders and plots the report).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .. import metrics
from ..analytic.compose import evaluate
from ..costs.flops import model_costs
from ..errors import SpecError
from ..feasibility import R_MEMORY, describe
from ..planning.enumerate import EmptySearchSpace, SearchSpace, enumerate_layouts
from ..specs.job import Job
from ..specs.layout import RECOMPUTE_CODES, Layout
from ..specs.layout_table import BOOL_COLUMNS, FLOAT_COLUMNS, INT_COLUMNS as TABLE_INT_COLUMNS, LayoutTable
from ..units import GIB, GIGA, TERA
from .report import RowResult, ValidationReport, summarize
from .rows import Case, load_cases
from .schema import MEMORY_METRICS, RECOMPUTES, RowError
from ..costs.framework_effects import memory_as_reported_bytes
from ..costs.stage import context_bytes
from ..specs.stack import as_framework

#: Layout fields a blank cell may leave open; reported in this order.
SEARCHABLE = ("tp", "pp", "ep", "vpp", "micro_batch", "recompute", "zero_stage", "sequence_parallel")
#: Largest micro-batch a blank cell is searched up to.
MAX_SEARCH_MICRO_BATCH = 64
TABLE_COLUMNS = TABLE_INT_COLUMNS + BOOL_COLUMNS
ALL_COLUMNS = TABLE_COLUMNS + FLOAT_COLUMNS


# ---------------------------------------------------------------------------------------------------------------
# the candidates of one row
# ---------------------------------------------------------------------------------------------------------------

def search_space(case: Case) -> SearchSpace:
    """The row's layout as a search space of the one layout enumeration (planning.enumerate): the stated cells as
    stated (the engine judges them), the blank ones open; blank micro-batch sizes are the divisors of the
    replica's batch up to MAX_SEARCH_MICRO_BATCH; the row's framework facts as the flags."""
    k = case.known

    def fixed(f):
        return None if k[f] is None else [k[f]]

    return SearchSpace(
        tp=fixed("tp"), pp=fixed("pp"), dp=fixed("dp"), cp=[k["cp"]], ep=fixed("ep"), vpp=fixed("vpp"),
        micro_batch=fixed("micro_batch"), micro_batch_sizes="batch-divisors",
        max_micro_batch=MAX_SEARCH_MICRO_BATCH if k["micro_batch"] is None else None,
        zero=fixed("zero_stage") or [0, 1, 2, 3], recompute=fixed("recompute") or list(RECOMPUTES),
        sequence_parallel=[False, True] if k["sequence_parallel"] is None else bool(k["sequence_parallel"]),
        flash_attention=case.flash_attention, overlap_grad_reduce=case.overlap_grad_reduce,
        tp_comm_overlap=case.tp_comm_overlap, ep_comm_overlap=case.ep_comm_overlap, zero3_unit=case.zero3_unit,
        dp_param_gather_overlap=case.dp_param_gather_overlap, moe_dispatch=[case.moe_dispatch],
        moe_max_nodes=case.moe_max_nodes, as_stated=True)


def candidate_table(case: Case) -> tuple[LayoutTable, dict, list]:
    """Every combination of the blank layout fields under the known ones, as a LayoutTable.

    Returns (table, its columns by name, names of the searched fields)."""
    searched = [f for f in SEARCHABLE if case.known.get(f) is None]
    try:
        table = enumerate_layouts(case.model, case.training, case.num_devices, search_space(case))
    except EmptySearchSpace as err:
        raise RowError(f"no layout matches the row's known fields and device count: {err.reason}") from None
    if case.stage_layers is not None:     # a stated pipeline layout: on the layouts with its pp x vpp chunks
        n = len(case.stage_layers)
        table = table.replace(stage_layers=tuple(case.stage_layers if int(p) * int(v) == n else None
                                                 for p, v in zip(table.pp, table.vpp)))
    cols = {name: getattr(table, name) for name in TABLE_COLUMNS}
    if table.stage_layers is not None:
        cols["stage_layers"] = table.stage_layers
    return table, cols, searched


def _layout_dict(cols: dict, i: int) -> dict:
    return {"tp": int(cols["tp"][i]), "pp": int(cols["pp"][i]), "dp": int(cols["dp"][i]), "ep": int(cols["ep"][i]),
            "cp": int(cols["cp"][i]), "vpp": int(cols["vpp"][i]), "micro_batch": int(cols["micro_batch"][i]),
            "recompute": RECOMPUTES[int(cols["recompute"][i])], "zero_stage": int(cols["zero"][i]),
            "sequence_parallel": int(bool(cols["sequence_parallel"][i]))}


def choose_layout(case: Case, out: dict, cols: dict, searched: list) -> tuple[int, list]:
    """Index of the fastest candidate that fits (reasons == 0); notes about the choice."""
    notes = []
    reasons = out["reasons"]
    step = out["step_time_s"]
    ok = reasons == 0
    if ok.any():
        i = int(np.argmin(np.where(ok, step, np.inf)))
        return i, notes
    mem_only = (reasons & ~R_MEMORY) == 0
    if mem_only.any():
        i = int(np.argmin(np.where(mem_only, step, np.inf)))
        notes.append(f"predicted memory {out['mem_total_bytes'][i] / GIGA:.1f} GB exceeds the "
                     f"{out['mem_capacity_bytes'][i] / GIGA:.1f} GB device; step time predicted anyway"
                     + (" (no searched setting fits)" if searched else ""))
        return i, notes
    i = 0
    row = _layout_dict(cols, i)
    msgs = describe(int(reasons[i]), case.model, case.training, case.num_devices, row,
                    {k: (v[i] if isinstance(v, np.ndarray) else v) for k, v in out.items()})
    raise RowError("layout cannot run: " + "; ".join(msgs))


# ---------------------------------------------------------------------------------------------------------------
# the row's metric
# ---------------------------------------------------------------------------------------------------------------

def conv_flops_per_token(case: Case, convention: str, recompute_code: int) -> float:
    """FLOPs per token of the row's model under a FLOP convention (module docstring)."""
    c = model_costs(case.model, case.training.seq_len)
    model = c.model_flops_per_token()               # 3 x (layers' matmuls + full attention + logits)
    attn = 3.0 * c.num_layers * c.attn_core_flops_per_token
    if convention in ("6N", "6N+attn", "6N+attn_causal"):
        emb = 6.0 * c.embedding_params if (case.convention_embedding and not case.model.tied_embeddings) else 0.0
        base = model - attn + emb
        windowed = attn * c.attn_noncausal_fraction           # MaxText's count for windowed/chunked layers
        return base + {"6N": 0.0, "6N+attn": windowed, "6N+attn_causal": 0.5 * windowed}[convention]
    if convention == "megatron_eq3_norecompute":
        return model
    if convention == "megatron_eq3":
        return model + c.recompute_flops_per_token("full")
    rc = {0: "none", 1: "selective", 2: "full"}[int(recompute_code)]
    return model + c.recompute_flops_per_token(rc)           # hardware FLOPs (hfu, unknown tflops)


def predicted_memory_gb(case: Case, allocated_bytes: float, hw) -> float:
    """A memory row's figure from the predicted allocated peak, as the row's metric measures it: allocated,
    reserved through the framework's allocator model, or (memory_gb, not stated) the framework's usual report
    (costs.framework_effects.memory_as_reported_bytes; device reports add the context outside the allocator), in
    the unit of that report (allocator.report_unit: a memory_gb row whose source states no unit printed GiB when
    the framework's usual report does).

    Source: data README sec. 2.6; the preset's allocator.source."""
    fw = case.framework or as_framework(None)
    ctx = context_bytes(hw, fw)
    unit = GIB if case.metric == "memory_gb" and fw.allocator.report_unit == "GiB" else GIGA
    return float(memory_as_reported_bytes(allocated_bytes, case.metric, fw.allocator, ctx)) / unit


def predict_metric(case: Case, step_time_s: float, mem_total_bytes: float, recompute_code: int,
                   mem_allocated_bytes: Optional[float] = None) -> float:
    """The row's metric from a predicted step time / memory."""
    tokens = case.training.tokens_per_step
    n = case.num_devices
    if case.metric == "step_time_s":
        return step_time_s
    if case.metric == "tokens_per_s_per_device":
        return metrics.tokens_per_s(tokens, step_time_s) / n
    if case.metric in MEMORY_METRICS:
        if mem_allocated_bytes is None:
            return mem_total_bytes / GIGA
        return predicted_memory_gb(case, mem_allocated_bytes, case.hardware)
    conv = case.convention or "unknown"
    if case.metric == "mfu":
        conv = "6N+attn" if conv == "unknown" else conv
    elif case.metric == "hfu":
        conv = "hardware" if conv == "unknown" else conv
    flops = conv_flops_per_token(case, conv, recompute_code) * tokens
    if case.metric == "tflops_per_device":
        return metrics.tflops_per_device(flops, step_time_s, n)
    peak = case.peak_tflops_used * TERA if case.peak_tflops_used else \
        case.hardware.mfu_peak_flops_per_s(case.training.dtype)
    return metrics.flops_utilization(flops, step_time_s, n, peak)


def implied_mfu(case: Case, predicted: float, step_time_s: float) -> Optional[float]:
    """The MFU a time or rate row's measurement implies in trainsim's own convention (simulator.metrics: 6N plus
    the causal half of attention, over the peak of the dtype the GEMMs run in, utilization_peak_flops_per_s): the
    measured step time (a rate row's measurement scales the predicted step by predicted/measured), the row's model
    FLOPs and device count. None for memory rows. Lets every time/rate row, not only `mfu` rows, state the best
    utilisation measured on its family."""
    if case.metric in MEMORY_METRICS or not case.measured or not predicted:
        return None
    measured_step = case.measured if case.metric == "step_time_s" else step_time_s * predicted / case.measured
    flops = metrics.model_flops_per_step(model_costs(case.model, case.training.seq_len),
                                         case.training.tokens_per_step)
    return float(metrics.mfu(flops, measured_step, case.num_devices,
                             case.hardware.utilization_peak_flops_per_s(case.training.dtype)))


def eval_time_s(case: Case, out: dict, i: int, step: float) -> float:
    """Forward-only evaluation time per training step: the evaluated sequences' executed forward FLOPs (a third
    of the executed FLOPs per token without recompute, simulator.metrics) at the FLOP rate the training step
    achieves."""
    c = model_costs(case.model, case.training.seq_len)
    fwd_per_token = metrics.hardware_flops_per_step(c, 1.0, 0, case.flash_attention) / 3.0
    fwd_flops = case.eval_sequences_per_step * case.training.seq_len * float(fwd_per_token)
    rate = float(out["hardware_flops_per_step"][i]) / step
    return fwd_flops / rate


def _des_step_time(case: Case, layout: dict, simulate) -> float:
    from ..specs.scenario import Scenario
    lay = Layout(tp=layout["tp"], pp=layout["pp"], dp=layout["dp"], ep=layout["ep"], cp=layout["cp"],
                 vpp=layout["vpp"], zero=layout["zero_stage"], sequence_parallel=bool(layout["sequence_parallel"]),
                 recompute=layout["recompute"], micro_batch=layout["micro_batch"],
                 flash_attention=case.flash_attention, overlap_grad_reduce=case.overlap_grad_reduce,
                 tp_comm_overlap=case.tp_comm_overlap, zero3_unit=case.zero3_unit,
                 ep_comm_overlap=case.ep_comm_overlap, dp_param_gather_overlap=case.dp_param_gather_overlap,
                 moe_dispatch=case.moe_dispatch, moe_max_nodes=case.moe_max_nodes,
                 stage_layers=(list(case.stage_layers) if case.stage_layers is not None
                               and len(case.stage_layers) == layout["pp"] * layout["vpp"] else None))
    sc = Scenario(model=case.model, hardware=case.hardware, num_devices=case.num_devices, training=case.training,
                  layout=lay, framework=case.framework)
    return float(simulate(sc).step_time_s)


def _finish(case: Case, out: dict, cols: dict, searched: list, simulate, hw) -> RowResult:
    i, notes = choose_layout(case, out, cols, searched)
    layout = _layout_dict(cols, i)
    step = float(out["step_time_s"][i])
    mem = float(out["mem_total_bytes"][i])
    if simulate is not None:
        step = _des_step_time(case, layout, simulate)
    if case.eval_sequences_per_step:
        step = step + eval_time_s(case, out, i, step)
    alloc = float(out["mem_allocated_bytes"][i]) if "mem_allocated_bytes" in out else None
    pred = predict_metric(case, step, mem, RECOMPUTE_CODES[layout["recompute"]], alloc)
    err = (pred - case.measured) / case.measured * 100.0
    return RowResult(id=case.id, metric=case.metric, measured=case.measured, predicted=pred, error_pct=err,
                     line=case.line, source=case.source, hardware=hw.name, family=hw.family,
                     moe=case.model.moe is not None, searched={f: layout[f] for f in searched}, layout=layout,
                     notes=list(case.assumptions) + notes, step_time_s=step, memory_gb=mem / GIGA,
                     framework=case.framework.name if case.framework is not None else "",
                     overrides={k: v for k, v, _ in case.overrides},
                     override_reasons=[f"{k}={v}: {why}" for k, v, why in case.overrides], policy=case.policy,
                     implied_mfu=implied_mfu(case, pred, step))


# ---------------------------------------------------------------------------------------------------------------
# many rows at once
# ---------------------------------------------------------------------------------------------------------------

#: ModelSpec fields that name and describe a model without entering any cost: cases whose models differ only in
#: these share one job (the rows of a paper name each configuration of the same architecture separately).
MODEL_LABEL_FIELDS = frozenset({"name", "source", "notes"})


def job_key(case: Case, dumps: Optional[dict] = None) -> tuple:
    """Cases with equal keys share one Job and are evaluated as one LayoutTable: equal hardware, training, device
    count, framework and model up to its labels (MODEL_LABEL_FIELDS; the Job takes the first case's model, and
    every row's result is built from its own case). `dumps` (id -> JSON, kept by the caller while the cases live)
    serialises each spec object shared by several cases once."""
    def dump(spec, exclude=None) -> str:
        if dumps is None:
            return spec.model_dump_json(exclude=exclude)
        got = dumps.get(id(spec))
        if got is None or got[0] is not spec:
            got = dumps[id(spec)] = (spec, spec.model_dump_json(exclude=exclude))
        return got[1]

    return (dump(case.model, MODEL_LABEL_FIELDS), dump(case.hardware), dump(case.training), case.num_devices,
            dump(case.framework) if case.framework is not None else "")


def _concat_tables(tables: list) -> LayoutTable:
    """The rows of `tables` (LayoutTables of one placement order) as one table, in order; one table as it is."""
    if len(tables) == 1:
        return tables[0]
    table = LayoutTable.from_columns(placement=tables[0].placement,
                                     **{k: np.concatenate([getattr(t, k) for t in tables]) for k in ALL_COLUMNS})
    if any(t.stage_layers is not None for t in tables):
        table = table.replace(stage_layers=tuple(sl for t in tables
                                                 for sl in (t.stage_layers or (None,) * len(t))))
    return table


#: Each case's candidate table, its columns, the searched fields and its job key (or the RowError of a row without
#: a candidate), kept across calls: calibration and cross-validation predict the same cases dozens of times on
#: refitted profiles, and none of these depends on the profile. id(case) -> (case, value); the case is held, so an
#: id is never reused while its entry lives.
_PREPARED: dict = {}
_PREPARED_MAX = 8192


def _prepare(case: Case, dumps: dict):
    got = _PREPARED.get(id(case))
    if got is not None and got[0] is case:
        return got[1]
    try:
        table, cols, searched = candidate_table(case)
        value = (cols, searched, table, job_key(case, dumps))
    except RowError as err:
        value = err
    if len(_PREPARED) >= _PREPARED_MAX:
        _PREPARED.clear()
    _PREPARED[id(case)] = (case, value)
    return value


def predict_cases(cases: list, simulate: Optional[Callable] = None,
                  hardware_of: Optional[Callable] = None, progress: Optional[Callable] = None) -> list:
    """RowResult (or RowError) of every case, in order. Cases sharing a job are evaluated in one table.

    `hardware_of(case)` may replace a case's profile (calibration); default the case's own. `progress(done,
    total)` is called after each group of cases sharing a job."""
    out: list = [None] * len(cases)
    prepared = {}
    groups: dict = {}
    dumps: dict = {}
    for i, case in enumerate(cases):
        got = _prepare(case, dumps)
        if isinstance(got, RowError):
            out[i] = RowError(*got.args)
            continue
        prepared[i] = got
        groups.setdefault(got[3], []).append(i)
    for g, idx in enumerate(groups.values()):
        if progress is not None and g:
            progress(g, len(groups))
        first = cases[idx[0]]
        hw = hardware_of(first) if hardware_of is not None else first.hardware
        table = _concat_tables([prepared[i][2] for i in idx])
        res = evaluate(Job(model=first.model, hardware=hw, training=first.training,
                           num_devices=first.num_devices, framework=first.framework), table)
        start = 0
        for i in idx:
            n = len(prepared[i][0]["tp"])
            sl = slice(start, start + n)
            start += n
            part = res if len(idx) == 1 else {
                k: (v[sl] if isinstance(v, np.ndarray) and v.shape[:1] == (len(table),) else v)
                for k, v in res.items()}
            try:
                out[i] = _finish(cases[i], part, prepared[i][0], prepared[i][1], simulate, hw)
            except RowError as err:
                out[i] = err
    if progress is not None and groups:
        progress(len(groups), len(groups))
    return out


def predict_case(case: Case, simulate: Optional[Callable] = None) -> RowResult:
    """Search the blank fields, take the fastest setting that fits, convert to the row's metric."""
    r = predict_cases([case], simulate)[0]
    if isinstance(r, RowError):
        raise r
    return r


# ---------------------------------------------------------------------------------------------------------------
# a whole file
# ---------------------------------------------------------------------------------------------------------------

def _des_simulate():
    """simulator.des.api.simulate if the discrete-event engine is installed; SpecError otherwise."""
    try:
        from ..des.api import simulate  # type: ignore
    except ImportError:
        raise SpecError("--engine des: the discrete-event engine (simulator.des.api.simulate) is not available "
                        "in this build; use --engine analytic") from None
    return simulate


def validate(path: str | Path, engine: str = "analytic", progress: Optional[Callable] = None) -> ValidationReport:
    """Predict every row of a runs file (published schema or vTrain) and summarize the errors.

    `engine`: "analytic" (default) or "des" (simulator.des.api.simulate on the chosen layout; the layout search
    of blank fields always uses the vectorized analytic engine)."""
    if engine not in ("analytic", "des"):
        raise SpecError(f"engine '{engine}' must be 'analytic' or 'des'")
    simulate = _des_simulate() if engine == "des" else None
    kind, items = load_cases(path)
    cases = [it for it in items if isinstance(it, Case)]
    preds = iter(predict_cases(cases, simulate, progress=progress))
    rows = []
    for it in items:
        if isinstance(it, RowResult):
            rows.append(it)
            continue
        r = next(preds)
        if isinstance(r, RowError):
            r = RowResult(id=it.id, metric=it.metric, measured=it.measured, status="skipped", reason=str(r),
                          line=it.line, source=it.source, hardware=it.hardware.name, family=it.hardware.family,
                          moe=it.model.moe is not None)
        rows.append(r)
    return ValidationReport(rows=rows, summary=summarize(rows), file_kind=kind)
