"""Predictions versus published measured training runs.

Reads a runs file in the schema of `../shared/data/README.md` (44 columns, one measured figure per row) or one
of the vTrain ground-truth files (detected by their header), turns every row into a job (model, hardware
profile with the row's overrides, batch, layout), predicts the row's own metric under its own FLOP convention,
and reports the signed error of every row plus summary figures.

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
- Blank layout cells (micro_batch, recompute, zero_stage, vpp, sequence_parallel; also ep, tp, pp when blank)
  are searched as a user would: every combination of the blank fields under the known ones is evaluated by the
  vectorized analytic engine and the fastest that fits in memory is taken (data README sec. 5). Each row
  reports which fields were searched and what was chosen.
- Framework facts that the schema has no column for are derived from the row, with a stated rule:
  FlashAttention (Dao et al., May 2022) is used by rows from 2023 on or whose notes name it; rows published
  up to 2022 without ZeRO-3 reduce gradients after the backward pass (Megatron-LM's local DDP before its 2023
  overlapped distributed optimizer; Korthikanti et al. 2022 sec. 6.3 "DP gradient all-reduce not overlapped");
  TP communication overlaps GEMMs only where the notes say so (`tp comm overlap`, `--tp-comm-overlap`); likewise
  the MoE expert-parallel all-to-alls overlap another micro-batch's compute only where the notes say so
  (`EP A2A overlap`, `--overlap-moe-expert-parallel-comm`).

Rows whose notes start with `UNUSABLE`, rows with an unknown hardware profile, malformed rows (named by line
and column) and rows that still cannot be predicted are returned with status "skipped" and a reason; they are
excluded from the summary figures, never dropped.

vTrain files (Bang et al. 2023, arXiv 2312.12391; data README sec. 4): GPT models (4h GELU MLP, MHA, vocab
50257), fp16, full recompute, 1F1B without interleaving, no sequence parallelism, no FlashAttention (vTrain's
model uses Megatron's fused softmax), plain data parallelism (ZeRO 0) with the gradient all-reduce after the
backward pass (vTrain's `use_gradient_bucket` default false), on `a100-sxm4-80gb` with 8 GPUs per node and
800 Gb/s of scale-out per node (vTrain's `inter_node_bandwidth` default; 100 Gb/s per GPU). Row ids are
`vtrain-single-<n>` / `vtrain-multi-<n>` (n: 1-based data row), metric `step_time_s`.

Pure: no printing, no files written (the CLI renders and plots the report).
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .analytic.layouts import BOOL_COLUMNS, INT_COLUMNS as TABLE_INT_COLUMNS, LayoutTable
from .analytic.step import R_MEMORY, Job, evaluate
from .costs.flops import model_costs
from .errors import SpecError
from .specs.hardware import HardwareProfile
from .specs.layout import RECOMPUTE_CODES, Layout
from .specs.loading import available_models, load_hardware, load_model, override_hardware
from .specs.model import MLASpec, ModelSpec, MoESpec
from .specs.training import TrainingSpec
from .planning.enumerate import EmptySearchSpace, SearchSpace, enumerate_layouts
from .units import GIGA

TABLE_COLUMNS = TABLE_INT_COLUMNS + BOOL_COLUMNS

# ---------------------------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------------------------

COLUMNS = ("id", "source", "url", "table_ref", "year", "model_name", "n_layers", "hidden", "ffn_hidden", "n_heads",
           "n_kv_heads", "vocab", "seq_len", "gated_mlp", "moe_experts", "moe_topk", "moe_expert_ffn",
           "moe_shared_experts", "moe_layer_freq", "hardware_profile", "n_devices", "devices_per_node",
           "device_memory_gb", "scaleup_gbps_per_device", "scaleout_gbps_per_device", "dtype", "tp", "pp", "dp",
           "ep", "cp", "vpp", "zero_stage", "sequence_parallel", "recompute", "micro_batch", "global_batch",
           "metric", "value", "flops_convention", "peak_tflops_used", "inferred", "confidence", "notes")
INT_COLUMNS = ("year", "n_layers", "hidden", "ffn_hidden", "n_heads", "n_kv_heads", "vocab", "seq_len", "gated_mlp",
               "moe_experts", "moe_topk", "moe_expert_ffn", "moe_shared_experts", "moe_layer_freq", "n_devices",
               "devices_per_node", "tp", "pp", "dp", "ep", "cp", "vpp", "zero_stage", "sequence_parallel",
               "micro_batch", "global_batch")
FLOAT_COLUMNS = ("device_memory_gb", "scaleup_gbps_per_device", "scaleout_gbps_per_device", "value",
                 "peak_tflops_used")
METRICS = ("mfu", "hfu", "tflops_per_device", "step_time_s", "tokens_per_s_per_device", "memory_gb")
CONVENTIONS = ("6N", "6N+attn", "6N+attn_causal", "megatron_eq3", "megatron_eq3_norecompute", "unknown")
DTYPES = ("bf16", "fp16", "fp8", "int8")
RECOMPUTES = ("none", "selective", "full")

VTRAIN_SINGLE = ("# GPUs", "global batch", "micro batch", "hidden size", "attention heads", "# layers",
                 "sequence length", "tensor parallelism", "data parallelism", "pipeline parallelism",
                 "iteration time (ms)")
VTRAIN_MULTI = ("Parameters (billion)",) + VTRAIN_SINGLE
VTRAIN_SOURCE = {"single": "vTrain (Bang et al. 2023) single node", "multi": "vTrain (Bang et al. 2023) multi-node"}

#: Layout fields a blank cell may leave open; searched in this order.
SEARCHABLE = ("tp", "pp", "ep", "vpp", "micro_batch", "recompute", "zero_stage", "sequence_parallel")

MAX_SEARCH_MICRO_BATCH = 64


@dataclass(frozen=True)
class Case:
    """One row turned into a job whose blank layout fields are still open (None)."""

    id: str
    line: int
    source: str
    metric: str
    measured: float
    convention: Optional[str]
    peak_tflops_used: Optional[float]
    model: ModelSpec
    hardware: HardwareProfile
    training: TrainingSpec
    num_devices: int
    known: dict                 # layout field -> value or None (blank, to search)
    flash_attention: bool
    overlap_grad_reduce: bool
    tp_comm_overlap: bool
    convention_embedding: bool  # 6N conventions whose N counts the input embedding too
    assumptions: tuple = ()
    eval_sequences_per_step: float = 0.0   # forward-only evaluation inside the measured window, per step
    zero3_unit: str = "layer"              # ZeRO-3 gather unit of the row's framework (specs.layout)
    ep_comm_overlap: bool = False          # MoE all-to-alls hidden behind another micro-batch (specs.layout)


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

    def to_dict(self) -> dict:
        return {"id": self.id, "metric": self.metric, "measured": self.measured, "predicted": self.predicted,
                "error_pct": self.error_pct, "status": self.status, "reason": self.reason, "line": self.line,
                "source": self.source, "hardware": self.hardware, "family": self.family,
                "kind": "moe" if self.moe else "dense", "searched": dict(self.searched), "layout": dict(self.layout),
                "notes": list(self.notes), "step_time_s": self.step_time_s, "memory_gb": self.memory_gb}


@dataclass
class ValidationReport:
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


class RowError(Exception):
    """A row that cannot be predicted; the message is the reason."""


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------

def _records(text: str):
    """(line number of the record's first line, list of cells) for every record after the header, and the header."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise SpecError("runs file is empty (no header row)") from None
    out = []
    prev = reader.line_num
    for cells in reader:
        start = prev + 1
        prev = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        out.append((start, cells))
    return [h.strip() for h in header], out


def detect_kind(header: list[str]) -> str:
    """'published', 'vtrain-single' or 'vtrain-multi' from a header row; SpecError otherwise."""
    h = tuple(header)
    if h == VTRAIN_MULTI:
        return "vtrain-multi"
    if h == VTRAIN_SINGLE:
        return "vtrain-single"
    missing = [c for c in COLUMNS if c not in header]
    if not missing:
        return "published"
    raise SpecError(f"header is neither the published-runs schema nor a vTrain ground-truth file: missing "
                    f"column(s) {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} "
                    f"(expected the 44 columns of the data README, sec. 2)")


def _parse_int(v: str, col: str, line: int):
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise RowError(f"line {line}, column '{col}': '{v}' is not an integer") from None


def _parse_float(v: str, col: str, line: int):
    if v == "":
        return None
    try:
        x = float(v)
    except ValueError:
        raise RowError(f"line {line}, column '{col}': '{v}' is not a number") from None
    if not math.isfinite(x):
        raise RowError(f"line {line}, column '{col}': '{v}' is not a finite number")
    return x


def parse_published_row(header: list[str], cells: list[str], line: int) -> dict:
    """Typed dict of one published-runs record; RowError naming line and column when malformed."""
    if len(cells) != len(header):
        raise RowError(f"line {line}: {len(cells)} cells, the header has {len(header)} columns")
    raw = {h: c.strip() for h, c in zip(header, cells)}
    row = dict(raw)
    for c in INT_COLUMNS:
        row[c] = _parse_int(raw.get(c, ""), c, line)
    for c in FLOAT_COLUMNS:
        row[c] = _parse_float(raw.get(c, ""), c, line)
    if row["metric"] not in METRICS:
        raise RowError(f"line {line}, column 'metric': '{row['metric']}' is not one of {', '.join(METRICS)}")
    if row["value"] is None:
        raise RowError(f"line {line}, column 'value': blank (a measured value is required)")
    if row["metric"] in ("mfu", "hfu", "tflops_per_device"):
        conv = row["flops_convention"] or "unknown"
        if conv not in CONVENTIONS:
            raise RowError(f"line {line}, column 'flops_convention': '{conv}' is not one of {', '.join(CONVENTIONS)}")
        row["flops_convention"] = conv
    if row["dtype"] and row["dtype"] not in DTYPES:
        raise RowError(f"line {line}, column 'dtype': '{row['dtype']}' is not one of {', '.join(DTYPES)}")
    if row["recompute"] and row["recompute"] not in RECOMPUTES:
        raise RowError(f"line {line}, column 'recompute': '{row['recompute']}' is not one of {', '.join(RECOMPUTES)}")
    for c in ("gated_mlp", "sequence_parallel"):
        if row[c] is not None and row[c] not in (0, 1):
            raise RowError(f"line {line}, column '{c}': {row[c]} must be 0 or 1")
    if row["zero_stage"] is not None and not 0 <= row["zero_stage"] <= 3:
        raise RowError(f"line {line}, column 'zero_stage': {row['zero_stage']} must be 0-3")
    for c in ("n_layers", "hidden", "n_heads", "vocab", "seq_len", "n_devices", "tp", "pp", "dp", "ep", "cp", "vpp",
              "micro_batch", "global_batch", "devices_per_node"):
        if row[c] is not None and row[c] < 1:
            raise RowError(f"line {line}, column '{c}': {row[c]} must be >= 1")
    if not row["id"]:
        raise RowError(f"line {line}, column 'id': blank")
    return row


# ---------------------------------------------------------------------------------------------------------------
# Rows -> cases
# ---------------------------------------------------------------------------------------------------------------

_HEAD_DIM = re.compile(r"head_dim\s+(\d+)", re.I)
_EVAL_BLOCK = re.compile(r"([\d,]+) tokens per eval block.*?eval \(([\d,]+) sequences forward\)", re.I | re.S)
_DENSE_PREFIX = re.compile(r"first\s+(\d+)\s+layers\s+dense", re.I)


def _mla_from_presets(hidden: int, layers: int, heads: int) -> Optional[MLASpec]:
    """MLA dimensions of a shipped preset with the same hidden size, depth and heads (the schema has no MLA
    columns)."""
    for name in available_models():
        m = load_model(name)
        if m.mla is not None and m.hidden_size == hidden and m.num_layers == layers and m.num_heads == heads:
            return m.mla
    return None


def model_from_row(row: dict, assumptions: list) -> ModelSpec:
    """A ModelSpec from the row's model columns (notes give head_dim, a dense prefix, MLA)."""
    need = ("n_layers", "hidden", "n_heads", "vocab", "seq_len")
    blank = [c for c in need if row[c] is None]
    if blank:
        raise RowError(f"model column(s) blank: {', '.join(blank)}")
    notes = row.get("notes") or ""
    h, L, a = row["hidden"], row["n_layers"], row["n_heads"]
    m = _HEAD_DIM.search(notes)
    head_dim = int(m.group(1)) if m else None
    if head_dim is None and h % a != 0:
        raise RowError(f"hidden ({h}) is not a multiple of n_heads ({a}) and the notes give no head_dim")
    kv = row["n_kv_heads"]
    mla = None
    if kv is None:
        if "MLA" in notes or "latent" in notes.lower():
            mla = _mla_from_presets(h, L, a)
            if mla is not None:
                assumptions.append("MLA dimensions taken from the shipped preset of the same shape")
            else:
                assumptions.append("MLA approximated as multi-head attention (no MLA dimensions in the row)")
        else:
            assumptions.append("n_kv_heads blank: multi-head attention assumed")
    gated = bool(row["gated_mlp"]) if row["gated_mlp"] is not None else False
    moe = None
    ffn = row["ffn_hidden"]
    if row["moe_experts"] is not None:
        for c in ("moe_topk", "moe_expert_ffn"):
            if row[c] is None:
                raise RowError(f"MoE row with blank {c}")
        pm = _DENSE_PREFIX.search(notes)
        first_dense = int(pm.group(1)) if pm else 0
        moe = MoESpec(num_experts=row["moe_experts"], top_k=row["moe_topk"],
                      expert_ffn_hidden_size=row["moe_expert_ffn"],
                      num_shared_experts=row["moe_shared_experts"] or 0,
                      layer_freq=row["moe_layer_freq"] or 1, first_dense_layers=first_dense)
        if ffn is None:
            ffn = row["moe_expert_ffn"]          # no dense layers: the value is unused
    if ffn is None:
        ffn = 4 * h
        assumptions.append("ffn_hidden blank: 4 x hidden assumed")
    name = re.sub(r"[^a-z0-9.\-]", "-", row["id"].lower()) or "row"
    try:
        return ModelSpec(name=name, source=row.get("source") or "runs file", num_layers=L, hidden_size=h,
                         num_heads=a, num_kv_heads=kv if mla is None else None, head_dim=head_dim if mla is None else
                         (mla.v_head_dim if mla else None), ffn_hidden_size=ffn, gated_mlp=gated,
                         vocab_size=row["vocab"], max_seq_len=row["seq_len"], moe=moe, mla=mla)
    except Exception as err:  # pydantic ValidationError
        raise RowError(f"model columns do not form a valid model: {err}".splitlines()[0]) from None


def hardware_from_row(row: dict) -> HardwareProfile:
    """The row's profile with its per-row overrides (Gb/s columns converted to GB/s)."""
    name = row["hardware_profile"]
    if not name:
        raise RowError("hardware_profile blank")
    try:
        hw = load_hardware(name)
    except SpecError as err:
        msg = str(err)
        if msg.startswith("unknown hardware profile"):
            raise RowError(f"unknown hardware profile '{name}'") from None
        raise RowError(msg) from None
    over = {}
    if row["devices_per_node"] is not None and row["devices_per_node"] != hw.devices_per_node:
        over["devices_per_node"] = row["devices_per_node"]
    if row["device_memory_gb"] is not None:
        over["memory_gb"] = row["device_memory_gb"]
    if row["scaleup_gbps_per_device"] is not None:
        over["scaleup_gb_per_s"] = row["scaleup_gbps_per_device"] / 8.0
    if row["scaleout_gbps_per_device"] is not None:
        over["scaleout_gb_per_s"] = row["scaleout_gbps_per_device"] / 8.0
    if over:
        try:
            hw = override_hardware(hw, **over)
        except SpecError as err:
            raise RowError(str(err)) from None
    return hw


def case_from_row(row: dict, line: int) -> Case:
    """A Case from a typed published-runs row; RowError with the reason when it cannot be predicted."""
    notes = row.get("notes") or ""
    if notes.strip().upper().startswith("UNUSABLE"):
        raise RowError(notes.strip().split(".")[0].strip())
    assumptions: list = []
    hw = hardware_from_row(row)
    model = model_from_row(row, assumptions)
    if row["n_devices"] is None:
        raise RowError("n_devices blank")
    if row["global_batch"] is None:
        raise RowError("global_batch blank")
    dtype = row["dtype"] or "bf16"
    if not row["dtype"]:
        assumptions.append("dtype blank: bf16 assumed")
    try:
        training = TrainingSpec(seq_len=row["seq_len"], global_batch=row["global_batch"], dtype=dtype)
    except Exception as err:
        raise RowError(f"training columns invalid: {err}".splitlines()[0]) from None
    n = row["n_devices"]
    known = {k: row[k] for k in ("tp", "pp", "dp", "ep", "cp", "vpp", "micro_batch")}
    known["zero_stage"] = row["zero_stage"]
    known["recompute"] = row["recompute"] or None
    known["sequence_parallel"] = row["sequence_parallel"]
    if model.moe is None:
        known["ep"] = 1
    if known["cp"] is None:
        known["cp"] = 1
        assumptions.append("cp blank: 1 assumed")
    if known["tp"] == 1:
        known["sequence_parallel"] = 0
    if known["pp"] == 1:
        known["vpp"] = 1
    if None not in (known["tp"], known["pp"], known["dp"]):
        prod = known["tp"] * known["pp"] * known["dp"] * known["cp"]
        if prod != n:
            raise RowError(f"tp({known['tp']}) * pp({known['pp']}) * dp({known['dp']}) * cp({known['cp']}) = {prod} "
                           f"!= n_devices ({n})")
    year = row["year"] or 0
    low = notes.lower()
    flash = year >= 2023 or "flash" in low
    # GPU frameworks of 2021-2022 (Megatron-LM before its overlapped distributed optimizer, DeepSpeed) reduce
    # gradients after the backward pass; later ones overlap. Two exceptions: XLA on TPUs schedules the FSDP and
    # data-parallel collectives under compute (GSPMD), and FSDP-style ZeRO-3 (FairScale/PyTorch FSDP) prefetches
    # its gathers and reduce-scatters during the backward (Zhao et al. 2023 sec. 3.3). DeepSpeed's ZeRO-3 of that
    # time gathers parameters tensor by tensor as modules run (Rajbhandari et al. 2021, ZeRO-Infinity sec. 7;
    # Narayanan et al. 2021 sec. 5.2), on demand.
    deepspeed_zero3 = known["zero_stage"] == 3 and "deepspeed" in low and bool(year) and year <= 2022
    fsdp_zero3 = known["zero_stage"] == 3 and not deepspeed_zero3
    overlap = not (year and year <= 2022 and hw.family != "tpu" and not fsdp_zero3)
    zero3_unit = "tensor" if deepspeed_zero3 else "layer"
    tp_overlap = bool(re.search(r"tp[ _-]comm[ _-]overlap", low))
    # Megatron-Core's EP all-to-all overlap (--overlap-moe-expert-parallel-comm) only where the notes say so
    ep_overlap = bool(re.search(r"ep[ _-]a2a[ _-]overlap|overlap[ _-]moe[ _-]expert[ _-]parallel[ _-]comm", low))
    conv_emb = bool(re.search(r"incl(\.|udes|uding)? embeddings|includes embeddings|incl\. embeddings", low))
    # Throughput measured over windows that include a forward-only evaluation (data README sec. 3, pitfall 5):
    # when the notes give the window's tokens and the evaluated sequences, predict the same window.
    eval_per_step = 0.0
    ev = _EVAL_BLOCK.search(notes)
    if ev:
        block_tokens = float(ev.group(1).replace(",", ""))
        steps_per_block = block_tokens / float(training.tokens_per_step)
        eval_per_step = float(ev.group(2).replace(",", "")) / steps_per_block
        assumptions.append(f"measured window includes evaluation: {ev.group(2)} sequences forward per "
                           f"{ev.group(1)} training tokens, predicted the same way")
    return Case(id=row["id"], line=line, source=row.get("source") or "", metric=row["metric"],
                measured=row["value"], convention=row.get("flops_convention") or None,
                peak_tflops_used=row["peak_tflops_used"], model=model, hardware=hw, training=training,
                num_devices=n, known=known, flash_attention=flash, overlap_grad_reduce=overlap,
                tp_comm_overlap=tp_overlap, convention_embedding=conv_emb, assumptions=tuple(assumptions),
                eval_sequences_per_step=eval_per_step, zero3_unit=zero3_unit, ep_comm_overlap=ep_overlap)


def vtrain_case(kind: str, cells: list[str], index: int, line: int, hw: HardwareProfile) -> Case:
    """A Case from one vTrain ground-truth record (all layout fields known)."""
    cols = VTRAIN_MULTI if kind == "vtrain-multi" else VTRAIN_SINGLE
    if len(cells) != len(cols):
        raise RowError(f"line {line}: {len(cells)} cells, the header has {len(cols)} columns")
    vals = {}
    for c, v in zip(cols, cells):
        v = v.strip()
        if c in ("Parameters (billion)", "iteration time (ms)"):
            vals[c] = _parse_float(v, c, line)
        else:
            vals[c] = _parse_int(v, c, line)
        if vals[c] is None:
            raise RowError(f"line {line}, column '{c}': blank")
    h, a, L, s = vals["hidden size"], vals["attention heads"], vals["# layers"], vals["sequence length"]
    model = ModelSpec(name=f"vtrain-gpt-{L}l-{h}h", source="vTrain ground truth (GPT, 4h MLP, MHA)", num_layers=L,
                      hidden_size=h, num_heads=a, ffn_hidden_size=4 * h, vocab_size=50257, max_seq_len=s)
    training = TrainingSpec(seq_len=s, global_batch=vals["global batch"], dtype="fp16")
    known = {"tp": vals["tensor parallelism"], "pp": vals["pipeline parallelism"], "dp": vals["data parallelism"],
             "ep": 1, "cp": 1, "vpp": 1, "micro_batch": vals["micro batch"], "zero_stage": 0, "recompute": "full",
             "sequence_parallel": 0}
    short = "multi" if kind == "vtrain-multi" else "single"
    return Case(id=f"vtrain-{short}-{index}", line=line, source=VTRAIN_SOURCE[short], metric="step_time_s",
                measured=vals["iteration time (ms)"] / 1000.0, convention=None, peak_tflops_used=None, model=model,
                hardware=hw, training=training, num_devices=vals["# GPUs"], known=known, flash_attention=False,
                overlap_grad_reduce=False, tp_comm_overlap=False, convention_embedding=False)


def vtrain_hardware() -> HardwareProfile:
    """A100 80GB, 8 per node, 800 Gb/s scale-out per node (vTrain's defaults; data README sec. 4)."""
    return override_hardware(load_hardware("a100-sxm4-80gb"), scaleout_gb_per_s=800.0 / 8.0 / 8.0)


# ---------------------------------------------------------------------------------------------------------------
# Layout search and metric conversion
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
        as_stated=True)


def candidate_table(case: Case) -> tuple[LayoutTable, dict, list]:
    """Every combination of the blank layout fields under the known ones, as a LayoutTable.

    Returns (table, its columns by name, names of the searched fields)."""
    searched = [f for f in SEARCHABLE if case.known.get(f) is None]
    try:
        table = enumerate_layouts(case.model, case.training, case.num_devices, search_space(case))
    except EmptySearchSpace as err:
        raise RowError(f"no layout matches the row's known fields and device count: {err.reason}") from None
    cols = {name: getattr(table, name) for name in TABLE_COLUMNS}
    return table, cols, searched


def conv_flops_per_token(case: Case, convention: str, recompute_code: int) -> float:
    """FLOPs per token of the row's model under a FLOP convention (module docstring)."""
    c = model_costs(case.model, case.training.seq_len)
    model = c.model_flops_per_token()               # 3 x (layers' matmuls + full attention + logits)
    attn = 3.0 * c.num_layers * c.attn_core_flops_per_token
    if convention in ("6N", "6N+attn", "6N+attn_causal"):
        emb = 6.0 * c.embedding_params if (case.convention_embedding and not case.model.tied_embeddings) else 0.0
        base = model - attn + emb
        return base + {"6N": 0.0, "6N+attn": attn, "6N+attn_causal": 0.5 * attn}[convention]
    if convention == "megatron_eq3_norecompute":
        return model
    if convention == "megatron_eq3":
        return model + c.recompute_flops_per_token("full")
    rc = {0: "none", 1: "selective", 2: "full"}[int(recompute_code)]
    return model + c.recompute_flops_per_token(rc)           # hardware FLOPs (hfu, unknown tflops)


def predict_metric(case: Case, step_time_s: float, mem_total_bytes: float, recompute_code: int) -> float:
    """The row's metric from a predicted step time / memory."""
    tokens = case.training.tokens_per_step
    n = case.num_devices
    if case.metric == "step_time_s":
        return step_time_s
    if case.metric == "tokens_per_s_per_device":
        return tokens / step_time_s / n
    if case.metric == "memory_gb":
        return mem_total_bytes / GIGA
    conv = case.convention or "unknown"
    if case.metric == "mfu":
        conv = "6N+attn" if conv == "unknown" else conv
    elif case.metric == "hfu":
        conv = "hardware" if conv == "unknown" else conv
    flops = conv_flops_per_token(case, conv, recompute_code) * tokens
    per_device = flops / step_time_s / n
    if case.metric == "tflops_per_device":
        return per_device / 1e12
    peak = case.peak_tflops_used * 1e12 if case.peak_tflops_used else \
        case.hardware.mfu_peak_flops_per_s(case.training.dtype)
    return per_device / peak


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
    from .analytic.reasons import describe
    i = 0
    row = _layout_dict(cols, i)
    msgs = describe(int(reasons[i]), case.model, case.training, case.num_devices, row,
                    {k: (v[i] if isinstance(v, np.ndarray) else v) for k, v in out.items()})
    raise RowError("layout cannot run: " + "; ".join(msgs))


def _des_step_time(case: Case, layout: dict, simulate) -> float:
    from .specs.scenario import Scenario
    lay = Layout(tp=layout["tp"], pp=layout["pp"], dp=layout["dp"], ep=layout["ep"], cp=layout["cp"],
                 vpp=layout["vpp"], zero=layout["zero_stage"], sequence_parallel=bool(layout["sequence_parallel"]),
                 recompute=layout["recompute"], micro_batch=layout["micro_batch"],
                 flash_attention=case.flash_attention, overlap_grad_reduce=case.overlap_grad_reduce,
                 tp_comm_overlap=case.tp_comm_overlap, zero3_unit=case.zero3_unit,
                 ep_comm_overlap=case.ep_comm_overlap)
    sc = Scenario(model=case.model, hardware=case.hardware, num_devices=case.num_devices, training=case.training,
                  layout=lay)
    return float(simulate(sc).step_time_s)


def job_key(case: Case) -> tuple:
    """Cases with equal keys share one Job and are evaluated as one LayoutTable."""
    return (case.model.model_dump_json(), case.hardware.model_dump_json(), case.training.model_dump_json(),
            case.num_devices)


def _concat_tables(parts: list[dict]) -> tuple[LayoutTable, dict]:
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    table = LayoutTable.from_columns(**cols)
    return table, cols


def predict_cases(cases: list, simulate: Optional[Callable] = None,
                  hardware_of: Optional[Callable] = None) -> list:
    """RowResult (or RowError) of every case, in order. Cases sharing a job are evaluated in one table.

    `hardware_of(case)` may replace a case's profile (calibration); default the case's own."""
    out: list = [None] * len(cases)
    prepared = {}
    groups: dict = {}
    for i, case in enumerate(cases):
        try:
            table, cols, searched = candidate_table(case)
        except RowError as err:
            out[i] = err
            continue
        prepared[i] = (cols, searched)
        groups.setdefault(job_key(case), []).append(i)
    for key, idx in groups.items():
        first = cases[idx[0]]
        hw = hardware_of(first) if hardware_of is not None else first.hardware
        table, cols = _concat_tables([prepared[i][0] for i in idx])
        res = evaluate(Job(model=first.model, hardware=hw, training=first.training,
                           num_devices=first.num_devices), table)
        start = 0
        for i in idx:
            n = len(prepared[i][0]["tp"])
            sl = slice(start, start + n)
            start += n
            part = {k: (v[sl] if isinstance(v, np.ndarray) and v.shape[:1] == (len(table),) else v)
                    for k, v in res.items()}
            try:
                out[i] = _finish(cases[i], part, prepared[i][0], prepared[i][1], simulate, hw)
            except RowError as err:
                out[i] = err
    return out


def _finish(case: Case, out: dict, cols: dict, searched: list, simulate, hw) -> RowResult:
    i, notes = choose_layout(case, out, cols, searched)
    layout = _layout_dict(cols, i)
    step = float(out["step_time_s"][i])
    mem = float(out["mem_total_bytes"][i])
    if simulate is not None:
        step = _des_step_time(case, layout, simulate)
    if case.eval_sequences_per_step:
        step = step + eval_time_s(case, out, i, step)
    pred = predict_metric(case, step, mem, RECOMPUTE_CODES[layout["recompute"]])
    err = (pred - case.measured) / case.measured * 100.0
    return RowResult(id=case.id, metric=case.metric, measured=case.measured, predicted=pred, error_pct=err,
                     line=case.line, source=case.source, hardware=hw.name, family=hw.family,
                     moe=case.model.moe is not None, searched={f: layout[f] for f in searched}, layout=layout,
                     notes=list(case.assumptions) + notes, step_time_s=step, memory_gb=mem / GIGA)


def eval_time_s(case: Case, out: dict, i: int, step: float) -> float:
    """Forward-only evaluation time per training step: the evaluated sequences' forward FLOPs (a third of the
    model FLOPs per token) at the FLOP rate the training step achieves."""
    c = model_costs(case.model, case.training.seq_len)
    fwd_flops = case.eval_sequences_per_step * case.training.seq_len * c.model_flops_per_token() / 3.0
    rate = float(out["hardware_flops_per_step"][i]) / step
    return fwd_flops / rate


def predict_case(case: Case, simulate: Optional[Callable] = None) -> RowResult:
    """Search the blank fields, take the fastest setting that fits, convert to the row's metric."""
    r = predict_cases([case], simulate)[0]
    if isinstance(r, RowError):
        raise r
    return r


# ---------------------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------------------

def error_stats(errors) -> dict:
    """n, MAPE, median and max absolute percentage error (and mean signed error) of signed % errors."""
    signed = np.asarray(list(errors), dtype=float)
    e = np.abs(signed)
    if e.size == 0:
        return {"n": 0, "mape_pct": None, "median_ape_pct": None, "max_ape_pct": None, "mean_signed_pct": None}
    return {"n": int(e.size), "mape_pct": float(e.mean()), "median_ape_pct": float(np.median(e)),
            "max_ape_pct": float(e.max()), "mean_signed_pct": float(signed.mean())}


def summarize(rows: list) -> dict:
    ok = [r for r in rows if r.status == "ok"]
    s = error_stats(r.error_pct for r in ok)
    s["n_skipped"] = len(rows) - len(ok)

    def group(key):
        keys = sorted({key(r) for r in ok})
        return {k: error_stats(r.error_pct for r in ok if key(r) == k) for k in keys}

    s["by_hardware"] = group(lambda r: r.family or r.hardware)
    s["by_profile"] = group(lambda r: r.hardware)
    s["by_source"] = group(lambda r: r.source)
    s["by_kind"] = group(lambda r: "moe" if r.moe else "dense")
    s["by_metric"] = group(lambda r: r.metric)
    return s


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------

def _des_simulate():
    """simulator.des.api.simulate if the discrete-event engine is installed; SpecError otherwise."""
    try:
        from .des.api import simulate  # type: ignore
    except ImportError:
        raise SpecError("--engine des: the discrete-event engine (simulator.des.api.simulate) is not available "
                        "in this build; use --engine analytic") from None
    return simulate


def load_cases(path: str | Path) -> tuple[str, list]:
    """(file kind, list of Case or RowResult-skips in file order) of a runs file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpecError(f"runs file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text ({err})") from None
    header, records = _records(text)
    kind = detect_kind(header)
    items = []
    vt_hw = vtrain_hardware() if kind.startswith("vtrain") else None
    for idx, (line, cells) in enumerate(records, start=1):
        rid = f"{kind}-{idx}" if kind.startswith("vtrain") else (cells[0].strip() if cells else f"line-{line}")
        try:
            if kind == "published":
                row = parse_published_row(header, cells, line)
                items.append(case_from_row(row, line))
            else:
                items.append(vtrain_case(kind, cells, idx, line, vt_hw))
        except RowError as err:
            items.append(_skip(rid, line, str(err), cells, header if kind == "published" else None, kind))
    return kind, items


def _skip(rid, line, reason, cells, header, kind) -> RowResult:
    metric, measured, source, hwname = "step_time_s", None, "", ""
    if header is not None and len(cells) == len(header):
        d = dict(zip(header, (c.strip() for c in cells)))
        metric, source, hwname = d.get("metric", ""), d.get("source", ""), d.get("hardware_profile", "")
        try:
            measured = float(d.get("value", ""))
        except ValueError:
            measured = None
    elif kind.startswith("vtrain"):
        source = VTRAIN_SOURCE["multi" if kind == "vtrain-multi" else "single"]
    return RowResult(id=rid, metric=metric, measured=measured, status="skipped", reason=reason, line=line,
                     source=source, hardware=hwname)


def validate(path: str | Path, engine: str = "analytic") -> ValidationReport:
    """Predict every row of a runs file (published schema or vTrain) and summarize the errors.

    `engine`: "analytic" (default) or "des" (simulator.des.api.simulate on the chosen layout; the layout search
    of blank fields always uses the vectorized analytic engine)."""
    if engine not in ("analytic", "des"):
        raise SpecError(f"engine '{engine}' must be 'analytic' or 'des'")
    simulate = _des_simulate() if engine == "des" else None
    kind, items = load_cases(path)
    cases = [it for it in items if isinstance(it, Case)]
    preds = iter(predict_cases(cases, simulate))
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
