"""Calibration of the few physical efficiency parameters of a hardware family against measured runs.

    fit       parameters <-> profile, the weighted robust least-squares fit, per-source and
              leave-one-source-out errors
    overlays  what each family fits (FAMILY_FITS, UNFITTED), fit_families (every family's fit as a dict) and
              the fitted values as profile text with their provenance paragraph

    crossval  in-sample, leave-one-source-out and leave-one-family-out errors of the shipped calibration

Pure: reads the runs files, returns numbers and text (fit_families returns each fit's overlay document,
specs/overlay.py); `trainsim calibrate --out` (benchmarks/calibrate.py) prints them and writes a new overlay file.
"""
from .fit import (EFFICIENCY_FIELDS, PARAMETERS, ROBUST_LOSS, ROBUST_SCALE, TIME_METRICS, FitResult, FitSet,
                  apply_params, current_values, fit, leave_one_source_out, load_fitsets, log_errors, make_fitset,
                  predictions, robust_cost, source_stats)
from .overlays import (CALIBRATION_MARK, FAMILY_FITS, UNFITTED, FamilyFit, describe_fit, fit_families, fit_family,
                       profile_text_with_fit)

__all__ = [
    "CALIBRATION_MARK", "EFFICIENCY_FIELDS", "FAMILY_FITS", "PARAMETERS", "ROBUST_LOSS", "ROBUST_SCALE",
    "TIME_METRICS", "UNFITTED", "FamilyFit", "FitResult", "FitSet", "apply_params", "current_values", "describe_fit",
    "fit", "fit_families", "fit_family", "leave_one_source_out", "load_fitsets", "log_errors", "make_fitset", "predictions",
    "profile_text_with_fit", "robust_cost", "source_stats",
]
