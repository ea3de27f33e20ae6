"""Predictions versus published measured training runs.

Reads a runs file in the schema of `../shared/data/README.md` (44 columns, one measured figure per row) or one
of the vTrain ground-truth files (detected by their header), turns every row into a job (model, hardware
profile with the row's overrides, batch, layout), predicts the row's own metric under its own FLOP convention,
and reports the signed error of every row plus summary figures.

    schema   columns, closed choices, typed parsing with line- and column-named errors
    rows     row -> Case (job, stated layout cells, framework facts; vTrain adapter)
    predict  search of blank cells (planning.enumerate), fastest fitting layout, the row's metric; validate()
    report   RowResult, ValidationReport, error statistics

Pure: no printing, no files written (the CLI renders and plots the report).
"""
from .predict import (MAX_SEARCH_MICRO_BATCH, SEARCHABLE, candidate_table, choose_layout, conv_flops_per_token,
                      eval_time_s, job_key, predict_case, predict_cases, predict_metric, search_space, validate)
from .report import RowResult, ValidationReport, error_stats, summarize
from .rows import (Case, case_from_row, framework_facts, hardware_from_row, load_cases, model_from_row,
                   vtrain_case, vtrain_hardware)
from .schema import (COLUMNS, CONVENTIONS, DTYPES, FLOAT_COLUMNS, INT_COLUMNS, METRICS, RECOMPUTES, VTRAIN_MULTI,
                     VTRAIN_SINGLE, VTRAIN_SOURCE, RowError, detect_kind, parse_published_row)

__all__ = [
    "COLUMNS", "CONVENTIONS", "DTYPES", "FLOAT_COLUMNS", "INT_COLUMNS", "MAX_SEARCH_MICRO_BATCH", "METRICS",
    "RECOMPUTES", "SEARCHABLE", "VTRAIN_MULTI", "VTRAIN_SINGLE", "VTRAIN_SOURCE", "Case", "RowError", "RowResult",
    "ValidationReport", "candidate_table", "case_from_row", "choose_layout", "conv_flops_per_token", "detect_kind",
    "error_stats", "eval_time_s", "framework_facts", "hardware_from_row", "job_key", "load_cases", "model_from_row",
    "parse_published_row", "predict_case", "predict_cases", "predict_metric", "search_space", "summarize",
    "validate", "vtrain_case", "vtrain_hardware",
]
