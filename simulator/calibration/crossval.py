"""Cross-validated error of the shipped calibration on a runs file: in-sample, leave-one-source-out (LOSO) and
leave-one-family-out (LOFO) MAPE over the time/rate rows, overall and per hardware family.

- in-sample: every row predicted with the shipped profiles and their calibration overlays (what `validate` says).
- LOSO: for a family whose overlay is fitted (FAMILY_FITS), the overlay's parameters are refitted on the file's
  rows of that family without one source, and that source's rows are predicted with the refit; in turn for every
  source. Rows of families without a fit are predicted as in-sample (nothing was fitted on them).
- LOFO: every family's rows predicted without its own overlay (sourced values only: what a family that was never
  fitted gets). Families without an overlay: as in-sample.

Refits start from the overlay's values and use few optimiser evaluations (`max_nfev`): the LOSO figure is that of
a short refit, stated as such. Pure: returns numbers.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..validation import Case, RowError, error_stats, load_cases, predict_cases
from .fit import TIME_METRICS, current_values, leave_one_source_out, make_fitset, param_path


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


def cross_validate(paths: Sequence[str], max_nfev: int = 20, families: Optional[Sequence[str]] = None) -> dict:
    """{"families": {family: {"n", "in_sample", "loso", "lofo", "fitted", "sources"}}, "overall": {...}} with
    error_stats dicts (MAPE etc., percent) per column."""
    from ..specs.loading import profiles_dir
    from ..specs.overlay import family_overlay
    from . import FAMILY_FITS

    cal = _load(paths, calibration=True)
    src = _load(paths, calibration=False)
    assert [c.id for c in cal] == [c.id for c in src]
    e_in = _errors(cal)
    e_lofo = _errors(src)
    e_loso = e_in.copy()
    fits = {ff.family: ff for ff in FAMILY_FITS}
    fam_of = np.array([c.hardware.family for c in cal], dtype=object)
    fitted = {}
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
        lo = leave_one_source_out(fs, ff.params, x0=x0, max_nfev=max_nfev, row_errors=True)
        pos = {id(c): i for i, c in zip(idx, fs.cases)}
        for s, st in lo.items():
            for c, err in st["row_errors"]:
                e_loso[pos[id(c)]] = err
        fitted[fam] = {s: st["params"] for s, st in lo.items()}
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
    out["loso_params"] = fitted
    return out
