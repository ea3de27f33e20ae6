"""Cross-validated error of the shipped calibration on a runs file: in-sample, leave-one-source-out (LOSO) and
leave-one-family-out (LOFO) MAPE over the time/rate rows, overall and per hardware family.

- in-sample: every row predicted with the shipped profiles and their calibration overlays (what `validate` says).
- LOSO: for a family whose overlay is fitted (FAMILY_FITS), the overlay's parameters are refitted on the file's
  rows of that family without one source, and that source's rows are predicted with the refit; in turn for every
  source. Rows of families without a fit are predicted as in-sample (nothing was fitted on them).
- LOFO: every family's rows predicted without its own overlay (sourced values only: what a family that was never
  fitted gets). Families without an overlay: as in-sample.

Framework efficiencies (calibration.frameworks; hardware_profiles/calibration/frameworks.yaml) are fitted across
families, so both held-out figures refit them too: for LOSO, the efficiencies are refitted without the held-out
source's rows (the refusal rule applied again: a preset left with one source runs at 1.0) and the family refit and
the held-out prediction use those; for LOFO, they are refitted without the held-out family's rows. (The refit
efficiencies are fitted on the shipped family calibrations; only the family parameters are refitted without the
source as well.) A source with no rows of a fitted preset's candidates keeps the shipped efficiencies: the data of
their fit is unchanged.

Refits start from the overlay's values and use few optimiser evaluations (`max_nfev`): the LOSO figure is that of
a short refit, stated as such. Pure: returns numbers.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..validation import Case, RowError, error_stats, load_cases, predict_cases
from .fit import TIME_METRICS, current_values, make_fitset, param_path


def _errors(cases: list, hardware_of=None) -> np.ndarray:
    res = predict_cases(cases, hardware_of=hardware_of) if hardware_of else predict_cases(cases)
    out = []
    for c, r in zip(cases, res):
        out.append(np.nan if isinstance(r, RowError) or r.predicted is None else
                   (r.predicted - c.measured) / c.measured * 100.0)
    return np.array(out, dtype=float)


def _load(paths: Sequence[str], calibration: bool) -> list:
    from ..specs.overlay import calibration_disabled
    import contextlib
    ctx = contextlib.nullcontext() if calibration else calibration_disabled()
    cases = []
    with ctx:
        for p in paths:
            _, items = load_cases(p)
            cases += [it for it in items if isinstance(it, Case) and it.metric in TIME_METRICS]
    return cases


def _framework_values_without(cal: list, drop, shipped: dict, calibrated: list, max_nfev: int) -> dict:
    """Framework efficiencies refitted on the calibrated rows `drop(case)` leaves (each on its shipped family
    calibration); the shipped values when no dropped row belongs to a candidate preset (same data, same fit)."""
    from .frameworks import candidate_cases, fit_frameworks
    cand = {id(c) for cs in candidate_cases(cal, calibrated).values() for c in cs}
    if not any(drop(c) for c in cal if id(c) in cand):
        return dict(shipped)
    keep = [c for c in cal if not drop(c)]
    return fit_frameworks(keep, hardware_of=lambda c: c.hardware, calibrated_families=calibrated,
                          max_nfev=max_nfev, start=shipped)["values"]


def cross_validate(paths: Sequence[str], max_nfev: int = 20, families: Optional[Sequence[str]] = None) -> dict:
    """{"families": {family: {"n", "in_sample", "loso", "lofo", "fitted", "sources"}}, "overall": {...},
    "loso_params", "framework_values": {"shipped", "loso": {source: values}, "lofo": {family: values}}} with
    error_stats dicts (MAPE etc., percent) per column."""
    from ..specs.loading import profiles_dir
    from ..specs.overlay import family_overlay, framework_efficiencies, framework_overlay
    from . import FAMILY_FITS
    from .fit import fit, predictions

    fov = framework_overlay()
    shipped_fw = dict(fov.values) if fov is not None else {}
    cal = _load(paths, calibration=True)
    src = _load(paths, calibration=False)
    assert [c.id for c in cal] == [c.id for c in src]
    with framework_efficiencies(shipped_fw):
        e_in = _errors(cal)
    fits = {ff.family: ff for ff in FAMILY_FITS}
    calibrated = [f for f in fits if family_overlay(profiles_dir(), f) is not None]
    fam_of = np.array([c.hardware.family for c in cal], dtype=object)
    # LOFO: each family sourced-only, with the framework efficiencies refitted without the family's rows
    e_lofo = np.full(len(cal), np.nan)
    fw_lofo = {}
    for fam in sorted(set(fam_of)):
        idx = [i for i, c in enumerate(src) if c.hardware.family == fam]
        vals = _framework_values_without(cal, lambda c: c.hardware.family == fam, shipped_fw, calibrated, max_nfev)
        fw_lofo[str(fam)] = vals
        with framework_efficiencies(vals):
            e_lofo[idx] = _errors([src[i] for i in idx])
    e_loso = e_in.copy()
    fitted = {}
    fw_loso = {}
    for fam in sorted(set(fam_of)):
        ov = family_overlay(profiles_dir(), fam)
        ff = fits.get(fam)
        if ov is None or ff is None or families and fam not in families:
            continue
        idx = [i for i, c in enumerate(src) if c.hardware.family == fam and c.hardware.name in ov.profiles]
        fs = make_fitset(fam, [src[i] for i in idx])
        if len(fs.sources) < 2:
            continue
        x0 = [ov.values.get(param_path(n), v) for n, v in zip(ff.params, current_values(fs.cases[0].hardware,
                                                                                            ff.params))]
        pos = {id(c): i for i, c in zip(idx, fs.cases)}
        fitted[fam] = {}
        for s in fs.sources:
            train = fs.subset(lambda c: c.source != s)
            test = fs.subset(lambda c: c.source == s)
            vals = _framework_values_without(cal, lambda c: c.source == s and c.hardware.family == fam, shipped_fw,
                                             calibrated, max_nfev)
            fw_loso[s] = vals
            with framework_efficiencies(vals):
                r = fit(train, ff.params, x0=x0, max_nfev=max_nfev)
                pred = predictions(test.cases, r.params)
            for c, p in zip(test.cases, pred):
                e_loso[pos[id(c)]] = (p - c.measured) / c.measured * 100.0
            fitted[fam][s] = {k: r.params[k] for k in ff.params}
    out = {"families": {}, "overall": {}}
    for name, arr in (("in_sample", e_in), ("loso", e_loso), ("lofo", e_lofo)):
        out["overall"][name] = error_stats(arr[np.isfinite(arr)])
    for fam in sorted(set(fam_of)):
        sel = fam_of == fam
        out["families"][str(fam)] = {
            "sources": len({c.source for c, s in zip(cal, sel) if s}),
            "fitted": fam in fitted,
            **{name: error_stats(arr[sel & np.isfinite(arr)]) for name, arr in
               (("in_sample", e_in), ("loso", e_loso), ("lofo", e_lofo))}}
    from .frameworks import preset_name
    pre = np.array([preset_name(c) for c in cal], dtype=object)
    out["frameworks"] = {str(p): {"sources": len({c.source for c, s in zip(cal, pre == p) if s}),
                                  "fitted": p in shipped_fw,
                                  **{name: error_stats(arr[(pre == p) & np.isfinite(arr)]) for name, arr in
                                     (("in_sample", e_in), ("loso", e_loso), ("lofo", e_lofo))}}
                         for p in sorted(set(pre))}
    out["loso_params"] = fitted
    out["framework_values"] = {"shipped": shipped_fw, "loso": fw_loso, "lofo": fw_lofo}
    return out
