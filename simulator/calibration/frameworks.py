"""Framework efficiencies fitted across hardware families: what a training stack loses on its compute kernels.

The same GEMMs and attention kernels run slower under some stacks than under others: DeepSpeed-era stacks
(DeepSpeed 2020-21, Megatron-DeepSpeed's pipeline engine 2021-22) are predicted 10-90% too fast on every visible
row once the family's kernel level is set by the Megatron-LM sources (Korthikanti et al. 2022, vTrain), an
efficiency the hardware does not explain. One number per framework preset captures it:

    framework efficiency e_f in [0.5, 1.0]: the sustained throughput of the compute kernels (GEMM, grouped GEMM,
    attention) under preset f, relative to the family's kernel_level; it multiplies the level (costs.compute.
    kernel_rates), never memory-bound kernels, host floors or communication.

Why on kernel throughput and not on the whole step: the family's kernel_level is already a multiplier there, so the
two compose (level x e_f) and the network, overlap and host-floor physics stay as modelled; a whole-step factor
would also rescale exposed communication, which the family's fitted network efficiency already covers.

Reference stacks: each family's kernel_level is the level of its vendor's own stacks (REFERENCE_FRAMEWORKS:
NVIDIA's Megatron-LM / Megatron-Core / NeMo / Megatron-Bridge, Google's MaxText / JAX / Pax), which run 1.0 by
definition; an efficiency is fitted only for other stacks, relative to them (else level and efficiency are one
number and neither is identified).

The refusal rule (`framework_supported`): a preset is fitted only with time/rate rows from at least
MIN_FRAMEWORK_SOURCES (2) independent sources (so at least 2 rows), counted over calibrated families only (FAMILY_FITS:
rows of uncalibrated families, e.g. SimuMax's B200 checks, are never fitted on). Objective as for the families
(fit.py): weighted robust least squares of log(predicted / measured), every source weighing the same.
A value on a bound is reported; `loso_min/max` is its spread over refits without each of its sources. The
stability rule (`fold_unstable`): where such refits are possible (three sources or more), each must stay within
MAX_FOLD_DEVIATION (0.1) of the fit, else the fit is refused as one source's, not the stack's.

Pure: returns numbers and documents; `trainsim calibrate --frameworks` / benchmarks/calibrate.py write files.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from .fit import ROBUST_LOSS, ROBUST_SCALE, RowError, error_stats, make_fitset, predict_cases, robust_cost

#: Physical bounds of a framework efficiency: no stack runs the same kernels faster than the vendor's own
#: reference stack (upper 1.0); below half, the stack is doing something else than the model describes.
FRAMEWORK_BOUNDS = (0.5, 1.0)
#: The refusal rule: rows and independent sources a framework fit needs (over calibrated families).
#: One parameter per preset: two independent sources are the least that tells a stack's efficiency from one
#: source's systematic error; rows beyond one per source are not asked for (a leave-one-source-out refit of a
#: three-source preset must still be possible, else its fold spread says nothing).
MIN_FRAMEWORK_ROWS = 2
MIN_FRAMEWORK_SOURCES = 2
#: The stability rule: where leave-one-source-out refits are possible (three sources or more), each must stay within
#: this of the all-sources value, else the value belongs to one source, not to the stack, and the fit is refused.
MAX_FOLD_DEVIATION = 0.1
#: `framework` column values whose presets set the family levels (efficiency 1.0 by definition).
REFERENCE_FRAMEWORKS = ("megatron-lm", "megatron-core", "nemo", "megatron-bridge", "maxtext", "jax", "pax")
#: What the efficiency multiplies, as the overlay states it.
APPLIES_TO = ("compute kernel throughput (GEMM, grouped GEMM, attention): kernel_level x efficiency "
              "(costs.compute.kernel_rates); memory-bound kernels, host floors and communication unchanged")
RULE = (f"fitted for a non-reference preset with time/rate rows from >= {MIN_FRAMEWORK_SOURCES} sources in "
        f"calibrated families; bounds {FRAMEWORK_BOUNDS[0]}-{FRAMEWORK_BOUNDS[1]}; a leave-one-source-out refit the "
        "rule refuses counts as 1.0")


def preset_name(case) -> str:
    """The framework preset a case runs under (the default preset's name when the row names none)."""
    if case.framework is not None:
        return case.framework.name
    from ..specs.stack import framework_named
    return framework_named().name


def framework_column(case) -> str:
    if case.framework is not None:
        return case.framework.framework
    from ..specs.stack import framework_named
    return framework_named().framework


def candidate_cases(cases: Sequence, calibrated_families: Sequence[str]) -> dict:
    """Preset name -> its cases in calibrated families, for the non-reference stacks (the only ones fitted)."""
    out: dict = {}
    fams = set(calibrated_families)
    for c in cases:
        if c.hardware.family in fams and framework_column(c) not in REFERENCE_FRAMEWORKS:
            out.setdefault(preset_name(c), []).append(c)
    return out


def sets_family_level(case, framework_values: dict) -> bool:
    """True when a row may set its family's fitted parameters: it runs a reference stack (REFERENCE_FRAMEWORKS,
    efficiency 1.0 by definition) or a preset whose efficiency the framework fit gave (`framework_values`).

    A row of a non-reference stack the framework fit refused (too few sources, unstable) runs at 1.0 only because
    its efficiency is unknown: fitted with the family, its stack's losses would lower the family's kernel_level,
    and every reference-stack prediction with it (the module docstring: the family level is the reference
    stacks'). Such rows are still validated and reported, never fitted on."""
    return framework_column(case) in REFERENCE_FRAMEWORKS or preset_name(case) in framework_values


def framework_supported(cases: Sequence) -> Optional[str]:
    """None when the rows support fitting a framework efficiency, else the reason (the refusal rule)."""
    srcs = {c.source for c in cases}
    if len(cases) < MIN_FRAMEWORK_ROWS:
        return (f"{len(cases)} time/rate row(s) in calibrated families: the rule is at least {MIN_FRAMEWORK_ROWS} "
                "rows")
    if len(srcs) < MIN_FRAMEWORK_SOURCES:
        return (f"{len(srcs)} source(s): the rule is rows from at least {MIN_FRAMEWORK_SOURCES} sources, so that "
                "one source's systematic error is not taken for the framework's")
    return None


def fold_unstable(value: float, refits: dict) -> Optional[str]:
    """None when every possible leave-one-source-out refit (source -> value) lies within MAX_FOLD_DEVIATION of
    `value`, else the reason (the stability rule; with two sources no refit is possible and nothing is checked)."""
    bad = {s: v for s, v in refits.items() if abs(v - value) > MAX_FOLD_DEVIATION}
    if not bad:
        return None
    lo, hi = min(refits.values()), max(refits.values())
    return (f"unstable: {value:.3f} on all sources, {lo:.3f}-{hi:.3f} leaving one out (the rule: within "
            f"{MAX_FOLD_DEVIATION} of the fit); the value follows one source, not the stack")


def _log_errors(cases: list, weights: np.ndarray, name: str, value: float, hardware_of: Callable) -> np.ndarray:
    from ..specs.overlay import framework_efficiencies
    with framework_efficiencies({name: float(value)}):
        res = predict_cases(cases, hardware_of=hardware_of)
    pred = np.array([np.nan if isinstance(r, RowError) else r.predicted for r in res], dtype=float)
    meas = np.array([c.measured for c in cases], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.log(pred / meas)
    return weights * np.where(np.isfinite(r), r, 0.0)


def fit_one(name: str, cases: list, hardware_of: Callable, x0: float = 0.85, max_nfev: int = 30) -> dict:
    """Fit one preset's efficiency on `cases` (hardware_of gives each case's calibrated profile): {value, cost_start,
    cost, at_bound, rows, sources, before, after} (before/after: error_stats in percent)."""
    from scipy.optimize import least_squares

    lo, hi = FRAMEWORK_BOUNDS
    fs = make_fitset("frameworks", cases)
    x0 = float(np.clip(x0, lo + 1e-6, hi - 1e-6))
    fun = lambda x: _log_errors(fs.cases, fs.weights, name, x[0], hardware_of)  # noqa: E731
    r0 = fun([1.0])
    sol = least_squares(fun, [x0], bounds=([lo], [hi]), x_scale=[0.05], diff_step=0.02, max_nfev=max_nfev,
                        loss=ROBUST_LOSS, f_scale=ROBUST_SCALE)
    v = float(sol.x[0])
    tol = 1e-3 * (hi - lo)
    counts: dict = {}
    for c in fs.cases:
        counts[c.source] = counts.get(c.source, 0) + 1
    return {"value": v, "source_rows": counts, "row_ids": [str(c.id) for c in fs.cases], "cost_start": robust_cost(r0), "cost": float(sol.cost), "at_bound": v <= lo + tol or
            v >= hi - tol, "rows": len(fs.cases), "sources": fs.sources,
            "before": _stats(fs.cases, name, 1.0, hardware_of), "after": _stats(fs.cases, name, v, hardware_of)}


def _stats(cases, name, value, hardware_of) -> dict:
    from ..specs.overlay import framework_efficiencies
    with framework_efficiencies({name: value}):
        res = predict_cases(cases, hardware_of=hardware_of)
    err = [(r.predicted - c.measured) / c.measured * 100.0 for c, r in zip(cases, res) if not isinstance(r, RowError)]
    return error_stats(err)


def fit_frameworks(cases: Sequence, hardware_of: Callable, calibrated_families: Sequence[str], loso: bool = False,
                   max_nfev: int = 30, start: Optional[dict] = None) -> dict:
    """Every supported non-reference preset's efficiency: {"values": {name: e}, "fits": {name: fit_one(...) [+
    "loso": {source: value}]}, "refused": {name: reason}}. `hardware_of(case)` is the profile each case is
    predicted on (the family calibration to fit on top of)."""
    out = {"values": {}, "fits": {}, "refused": {}}
    start = start or {}
    for name, cs in sorted(candidate_cases(cases, calibrated_families).items()):
        why = framework_supported(cs)
        if why:
            out["refused"][name] = why
            continue
        f = fit_one(name, cs, hardware_of, x0=start.get(name, 0.85), max_nfev=max_nfev)
        f["loso"], refits = {}, {}
        for s in f["sources"]:                    # always: the stability rule needs the folds
            rest = [c for c in cs if c.source != s]
            if framework_supported(rest):
                f["loso"][s] = 1.0                # refused without the source: the preset runs unfitted
            else:
                f["loso"][s] = refits[s] = fit_one(name, rest, hardware_of, x0=f["value"],
                                                   max_nfev=max(5, max_nfev // 2))["value"]
        why = fold_unstable(f["value"], refits)
        if why:
            out["refused"][name] = why
            continue
        if not loso:
            f.pop("loso")
        out["values"][name] = f["value"]
        out["fits"][name] = f
    return out


def framework_overlay_document(res: dict, date: str, command: str = "") -> dict:
    """The framework overlay (specs.overlay.FrameworkOverlay) of a fit_frameworks result."""
    from ..specs.overlay import MODEL_VERSION
    from .overlays import _round

    lo, hi = FRAMEWORK_BOUNDS
    params, fits = {}, {}
    for name, f in res["fits"].items():
        rec = {"lower": lo, "upper": hi, "at_bound": bool(f["at_bound"]), "sourced": 1.0}
        if f.get("loso"):
            vals = list(f["loso"].values())
            rec["loso_min"], rec["loso_max"] = _round(min(vals)), _round(max(vals))
        params[name] = rec
        fits[name] = {"rows": f["rows"], "sources": dict(sorted(f["source_rows"].items())),
                      "row_ids": list(f.get("row_ids", [])),
                      "in_sample_mape_pct": None if f["after"]["mape_pct"] is None else round(f["after"]["mape_pct"], 2),
                      "command": command,
                      "note": f"MAPE on its rows before the fit (efficiency 1.0): {f['before']['mape_pct']:.1f}%"}
    return {"kind": "framework-efficiency", "model_version": MODEL_VERSION, "date": date, "applies_to": APPLIES_TO,
            "rule": RULE, "reference": list(REFERENCE_FRAMEWORKS),
            "values": {k: _round(v) for k, v in res["values"].items()}, "parameters": params, "fits": fits,
            "refused": dict(res["refused"])}


def framework_overlay_text(doc: dict) -> str:
    import yaml

    head = ("# Framework calibration overlay (simulator/specs/overlay.py FrameworkOverlay), written by `trainsim calibrate"
            " --frameworks`.\n# Fitted kernel-throughput efficiencies of non-reference stacks (simulator/calibration/"
            "frameworks.py);\n# the presets (simulator/presets/frameworks/) never hold them. Review, then copy to "
            "hardware_profiles/calibration/frameworks.yaml.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, width=116, allow_unicode=True)
