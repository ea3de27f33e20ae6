"""The runs-file schemas (data README sec. 2 and 4): columns, closed choices, and parsing of one record into typed
values, with errors that name the line, the column, the value and the rule.

Two kinds of file: the published-runs schema (44 columns, one measured figure per row; a 45th `framework` column
may follow) and vTrain's two ground-truth files (Bang et al. 2023, arXiv 2312.12391), recognised by their header.
"""
from __future__ import annotations

import csv
import io
import math

from ..errors import SpecError

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
METRICS = ("mfu", "hfu", "tflops_per_device", "step_time_s", "tokens_per_s_per_device", "memory_gb",
           "memory_allocated_gb", "memory_reserved_gb")
#: Memory metrics (data README sec. 2.6): the allocated peak, the caching allocator's reserved peak, or not stated.
MEMORY_METRICS = ("memory_gb", "memory_allocated_gb", "memory_reserved_gb")
#: Metrics compared as FLOP rates under the row's `flops_convention`.
FLOP_METRICS = ("mfu", "hfu", "tflops_per_device")
CONVENTIONS = ("6N", "6N+attn", "6N+attn_causal", "megatron_eq3", "megatron_eq3_norecompute", "unknown")
DTYPES = ("bf16", "fp16", "fp8", "int8")
RECOMPUTES = ("none", "selective", "full")
#: Closed choices of text columns (a blank cell is allowed: unknown).
CHOICES = {"dtype": DTYPES, "recompute": RECOMPUTES}
#: 0/1 columns.
BINARY_COLUMNS = ("gated_mlp", "sequence_parallel")
#: Integer columns that must be >= 1 when given.
POSITIVE_COLUMNS = ("n_layers", "hidden", "n_heads", "vocab", "seq_len", "n_devices", "tp", "pp", "dp", "ep", "cp",
                    "vpp", "micro_batch", "global_batch", "devices_per_node")

VTRAIN_SINGLE = ("# GPUs", "global batch", "micro batch", "hidden size", "attention heads", "# layers",
                 "sequence length", "tensor parallelism", "data parallelism", "pipeline parallelism",
                 "iteration time (ms)")
VTRAIN_MULTI = ("Parameters (billion)",) + VTRAIN_SINGLE
VTRAIN_FLOAT_COLUMNS = ("Parameters (billion)", "iteration time (ms)")
VTRAIN_SOURCE = {"single": "vTrain (Bang et al. 2023) single node", "multi": "vTrain (Bang et al. 2023) multi-node"}


class RowError(Exception):
    """A row that cannot be predicted; the message is the reason."""


def records(text: str) -> tuple[list[str], list]:
    """The header, and (line number of the record's first line, list of cells) of every non-blank record."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise SpecError("runs file is empty (no header row)") from None
    except csv.Error as err:
        raise SpecError(f"runs file, line 1: not readable as CSV ({err})") from None
    out = []
    prev = reader.line_num
    try:
        for cells in reader:
            start = prev + 1
            prev = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            out.append((start, cells))
    except csv.Error as err:     # a cell over csv.field_size_limit() (128 KiB), a NUL byte, an open quote
        raise SpecError(f"runs file, line {reader.line_num}: not readable as CSV ({err})") from None
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


#: Largest integer a cell may hold (int64 numpy columns downstream; no real run is near it).
MAX_CELL_INT = 2 ** 40


def parse_int(v: str, col: str, line: int):
    """An integer cell (None when blank); RowError naming line, column and value otherwise."""
    if v == "":
        return None
    try:
        n = int(v)
    except ValueError:
        raise RowError(f"line {line}, column '{col}': '{v[:40]}' is not an integer") from None
    if abs(n) > MAX_CELL_INT:
        raise RowError(f"line {line}, column '{col}': {v[:40]} is out of range (at most {MAX_CELL_INT:,})")
    return n


def parse_float(v: str, col: str, line: int):
    """A finite number (None when blank); RowError naming line, column and value otherwise."""
    if v == "":
        return None
    try:
        x = float(v)
    except ValueError:
        raise RowError(f"line {line}, column '{col}': '{v}' is not a number") from None
    if not math.isfinite(x):
        raise RowError(f"line {line}, column '{col}': '{v}' is not a finite number")
    return x


def _check_choices(row: dict, line: int) -> None:
    """Metric, measured value, FLOP convention (FLOP metrics; blank = unknown), dtype and recompute."""
    if row["metric"] not in METRICS:
        raise RowError(f"line {line}, column 'metric': '{row['metric']}' is not one of {', '.join(METRICS)}")
    if row["value"] is None:
        raise RowError(f"line {line}, column 'value': blank (a measured value is required)")
    if row["metric"] in FLOP_METRICS:
        conv = row["flops_convention"] or "unknown"
        if conv not in CONVENTIONS:
            raise RowError(f"line {line}, column 'flops_convention': '{conv}' is not one of {', '.join(CONVENTIONS)}")
        row["flops_convention"] = conv
    for c, allowed in CHOICES.items():
        if row[c] and row[c] not in allowed:
            raise RowError(f"line {line}, column '{c}': '{row[c]}' is not one of {', '.join(allowed)}")


def _check_ranges(row: dict, line: int) -> None:
    for c in BINARY_COLUMNS:
        if row[c] is not None and row[c] not in (0, 1):
            raise RowError(f"line {line}, column '{c}': {row[c]} must be 0 or 1")
    if row["zero_stage"] is not None and not 0 <= row["zero_stage"] <= 3:
        raise RowError(f"line {line}, column 'zero_stage': {row['zero_stage']} must be 0-3")
    for c in POSITIVE_COLUMNS:
        if row[c] is not None and row[c] < 1:
            raise RowError(f"line {line}, column '{c}': {row[c]} must be >= 1")
    if row["value"] is not None and not row["value"] > 0:
        raise RowError(f"line {line}, column 'value': {row['value']} must be > 0 (a measured figure)")
    if not row["id"]:
        raise RowError(f"line {line}, column 'id': blank")


def parse_published_row(header: list[str], cells: list[str], line: int) -> dict:
    """Typed dict of one published-runs record; RowError naming line and column when malformed."""
    if len(cells) != len(header):
        raise RowError(f"line {line}: {len(cells)} cells, the header has {len(header)} columns")
    raw = {h: c.strip() for h, c in zip(header, cells)}
    row = dict(raw)
    for c in INT_COLUMNS:
        row[c] = parse_int(raw.get(c, ""), c, line)
    for c in FLOAT_COLUMNS:
        row[c] = parse_float(raw.get(c, ""), c, line)
    _check_choices(row, line)
    _check_ranges(row, line)
    return row


def parse_vtrain_row(kind: str, cells: list[str], line: int) -> dict:
    """Typed values of one vTrain record (every cell required); RowError naming line and column otherwise."""
    cols = VTRAIN_MULTI if kind == "vtrain-multi" else VTRAIN_SINGLE
    if len(cells) != len(cols):
        raise RowError(f"line {line}: {len(cells)} cells, the header has {len(cols)} columns")
    vals = {}
    for c, v in zip(cols, cells):
        v = v.strip()
        vals[c] = parse_float(v, c, line) if c in VTRAIN_FLOAT_COLUMNS else parse_int(v, c, line)
        if vals[c] is None:
            raise RowError(f"line {line}, column '{c}': blank")
        if not vals[c] > 0:
            raise RowError(f"line {line}, column '{c}': {vals[c]} must be > 0")
    return vals
