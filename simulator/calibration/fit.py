"""Fitting the few physical efficiency parameters of a hardware family to measured runs.

What is fitted (per accelerator family, e.g. nvidia-ampere = A100 40/80 GB and A800), each a field that the
profile's `efficiency:` block or its network tiers already carry:

- `kernel_level`: sustained training efficiency of the compute kernels over the measured kernel model's
  (costs.compute; kernel shapes and memory-bound bandwidths come from the kernel tables, never from a fit).
- `layer_overhead_us`: kernel-launch / framework host time per layer per pass.
- per network tier: bus-bandwidth `efficiency` and per-ring-step `latency_us`.

Objective: log(predicted / measured) of every row whose metric is a time or a rate (memory rows do not
depend on these parameters), weighted so that every source (paper, vendor table, vTrain file) carries the same
total weight whatever its number of rows: w = 1 / sqrt(rows of the source in the family). A fit therefore
never follows one row, and the leave-one-source-out check (`leave_one_source_out`) refits without each source
in turn and reports the error on the source left out, so overfitting shows.

Pure: reads the runs files, returns numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..specs.hardware import HardwareProfile
from ..validation import Case, RowError, error_stats, load_cases, predict_cases

#: Fittable parameters: (lower bound, upper bound, scale used by the optimiser).
PARAMETERS = {
    "kernel_level": (0.3, 1.5, 0.1),
    "layer_overhead_us": (0.0, 3000.0, 100.0),
    "step_overhead_ms": (0.0, 5000.0, 100.0),
    "fast_tier_efficiency": (0.2, 1.0, 0.1),      # achieved bus bandwidth cannot exceed the link rate
    "fast_tier_latency_us": (0.1, 200.0, 5.0),
    "slow_tier_efficiency": (0.2, 1.0, 0.1),
    "slow_tier_latency_us": (0.1, 200.0, 5.0),
}

#: Robust loss on the weighted log errors (scipy least_squares): rows the model misses by far more than
#: ROBUST_SCALE (a log error of 0.02 = 2%) pull on the parameters linearly, not quadratically (close to a weighted
#: mean absolute log error, the figure validate reports as MAPE), so that a few rows
#: whose physics the model lacks cannot drag every other row off.
ROBUST_LOSS = "soft_l1"
ROBUST_SCALE = 0.02

#: Metrics that depend on time (memory rows are compared, never fitted).
TIME_METRICS = ("mfu", "hfu", "tflops_per_device", "step_time_s", "tokens_per_s_per_device")

#: Parameters that are fields of the profile's `efficiency:` block.
EFFICIENCY_FIELDS = ("kernel_level", "layer_overhead_us", "step_overhead_ms")
#: Optional efficiency fields and the field whose value they take when unset.
EFFICIENCY_FALLBACKS: dict = {}
#: Network-tier parameters: name -> (tier index: first = fast, last = slow; the tier's field).
TIER_PARAMETERS = {"fast_tier_efficiency": (0, "efficiency"), "fast_tier_latency_us": (0, "latency_us"),
                   "slow_tier_efficiency": (-1, "efficiency"), "slow_tier_latency_us": (-1, "latency_us")}


# ---------------------------------------------------------------------------------------------------------------
# parameters <-> profile
# ---------------------------------------------------------------------------------------------------------------

def current_values(hw: HardwareProfile, names: Sequence[str]) -> list[float]:
    """The profile's present values of the named parameters (the fit's starting point)."""
    e = hw.efficiency
    out = []
    for n in names:
        if n in TIER_PARAMETERS:
            idx, attr = TIER_PARAMETERS[n]
            out.append(getattr(hw.tiers[idx], attr))
        elif n in EFFICIENCY_FALLBACKS:
            v = getattr(e, n)
            out.append(v if v is not None else getattr(e, EFFICIENCY_FALLBACKS[n]))
        else:
            out.append(float(getattr(e, n)))
    return out


def apply_params(hw: HardwareProfile, params: dict) -> HardwareProfile:
    """A copy of `hw` with the named parameters replaced (fast tier = first, slow tier = last; a single-tier
    profile takes only the slow-tier values)."""
    eff_upd = {k: float(v) for k, v in params.items() if k in EFFICIENCY_FIELDS}
    eff = hw.efficiency.model_copy(update=eff_upd) if eff_upd else hw.efficiency
    tiers = list(hw.tiers)
    for which, idx in (("fast", 0), ("slow", -1)):
        if which == "fast" and len(tiers) <= 1:
            continue
        up = {attr: float(params[n]) for n, (i, attr) in TIER_PARAMETERS.items()
              if n.startswith(which) and n in params}
        if up:
            tiers[idx] = tiers[idx].model_copy(update=up)
    return hw.model_copy(update={"efficiency": eff, "tiers": tiers})


# ---------------------------------------------------------------------------------------------------------------
# the data of a fit
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class FitSet:
    """The cases of one family that a fit uses, with their weights."""

    family: str
    cases: list
    weights: np.ndarray
    sources: list

    def subset(self, keep) -> "FitSet":
        idx = [i for i, c in enumerate(self.cases) if keep(c)]
        cases = [self.cases[i] for i in idx]
        return make_fitset(self.family, cases)


def make_fitset(family: str, cases: list) -> FitSet:
    """The cases with their weights: 1 / sqrt(rows of the case's source), so every source weighs the same."""
    counts: dict = {}
    for c in cases:
        counts[c.source] = counts.get(c.source, 0) + 1
    w = np.array([1.0 / np.sqrt(counts[c.source]) for c in cases])
    return FitSet(family=family, cases=cases, weights=w, sources=sorted(counts))


def load_fitsets(paths: Sequence[str]) -> dict:
    """Family -> FitSet of the predictable time/rate rows of the given runs files."""
    by_family: dict = {}
    for p in paths:
        _, items = load_cases(p)
        for it in items:
            if isinstance(it, Case) and it.metric in TIME_METRICS:
                by_family.setdefault(it.hardware.family, []).append(it)
    return {f: make_fitset(f, cs) for f, cs in by_family.items()}


def predictions(cases: list, params: dict) -> np.ndarray:
    """Predicted metric of every case with `params` applied to its profile (nan where it cannot be predicted)."""
    res = predict_cases(cases, hardware_of=lambda c: apply_params(c.hardware, params))
    return np.array([np.nan if isinstance(r, RowError) else r.predicted for r in res])


def log_errors(fs: FitSet, params: dict) -> np.ndarray:
    """log(predicted / measured) of every case (0 where it cannot be predicted)."""
    pred = predictions(fs.cases, params)
    meas = np.array([c.measured for c in fs.cases])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.log(pred / meas)
    return np.where(np.isfinite(r), r, 0.0)


# ---------------------------------------------------------------------------------------------------------------
# fitting and checking
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class FitResult:
    family: str
    params: dict
    start: dict
    cost_start: float
    cost: float
    n_rows: int
    sources: list
    stats: dict = field(default_factory=dict)


def robust_cost(r: np.ndarray) -> float:
    """scipy least_squares' soft_l1 cost (with f_scale ROBUST_SCALE) of weighted residuals `r`."""
    z = (np.asarray(r, dtype=float) / ROBUST_SCALE) ** 2
    return float(ROBUST_SCALE ** 2 * np.sum(2.0 * (np.sqrt(1.0 + z) - 1.0)) / 2.0)


def fit(fs: FitSet, names: Sequence[str], x0: Optional[Sequence[float]] = None, fixed: Optional[dict] = None,
        max_nfev: int = 60) -> FitResult:
    """Weighted least squares of log errors over the named parameters (scipy trust-region reflective)."""
    from scipy.optimize import least_squares

    fixed = dict(fixed or {})
    names = list(names)
    if x0 is None:
        x0 = current_values(fs.cases[0].hardware, names)
    lo = np.array([PARAMETERS[n][0] for n in names])
    hi = np.array([PARAMETERS[n][1] for n in names])
    scale = np.array([PARAMETERS[n][2] for n in names])
    x0 = np.clip(np.asarray(x0, dtype=float), lo + 1e-9, hi - 1e-9)

    def fun(x):
        p = dict(fixed)
        p.update(dict(zip(names, x)))
        return fs.weights * log_errors(fs, p)

    r0 = fun(x0)
    sol = least_squares(fun, x0, bounds=(lo, hi), x_scale=scale, diff_step=0.02, max_nfev=max_nfev,
                        loss=ROBUST_LOSS, f_scale=ROBUST_SCALE)
    params = dict(fixed)
    params.update({n: float(v) for n, v in zip(names, sol.x)})
    return FitResult(family=fs.family, params=params, start=dict(zip(names, map(float, x0))),
                     cost_start=robust_cost(r0), cost=float(sol.cost), n_rows=len(fs.cases), sources=fs.sources)


def source_stats(fs: FitSet, params: dict) -> dict:
    """Error figures (percent) per source with `params` applied."""
    pred = predictions(fs.cases, params)
    meas = np.array([c.measured for c in fs.cases])
    err = (pred - meas) / meas * 100.0
    out = {}
    for s in fs.sources:
        e = [x for x, c in zip(err, fs.cases) if c.source == s and np.isfinite(x)]
        out[s] = error_stats(e)
    out["(all)"] = error_stats([x for x in err if np.isfinite(x)])
    return out


def leave_one_source_out(fs: FitSet, names: Sequence[str], x0=None, fixed=None, max_nfev: int = 40,
                         row_errors: bool = False) -> dict:
    """For every source: refit without it, then the error figures on the left-out source (and, with
    `row_errors`, its rows' (case, signed % error) under "row_errors")."""
    out = {}
    for s in fs.sources:
        train = fs.subset(lambda c: c.source != s)
        test = fs.subset(lambda c: c.source == s)
        if not train.cases:
            continue
        r = fit(train, names, x0=x0, fixed=fixed, max_nfev=max_nfev)
        st = source_stats(test, r.params)[s]
        st["params"] = {k: r.params[k] for k in names}
        if row_errors:
            pred = predictions(test.cases, r.params)
            st["row_errors"] = [(c, (p - c.measured) / c.measured * 100.0) for c, p in zip(test.cases, pred)]
        out[s] = st
    return out


# ---------------------------------------------------------------------------------------------------------------
# what the rows support, bounds, field paths
# ---------------------------------------------------------------------------------------------------------------

#: A family's fit needs at least this many time/rate rows per fitted parameter ...
MIN_ROWS_PER_PARAMETER = 5
#: ... and rows from at least this many independent sources (one source's systematic error is not physics).
MIN_SOURCES = 2
#: A fitted value closer to a bound than this fraction of the bounds' range is reported as sitting on it.
BOUND_TOLERANCE = 1e-3


def supported(fs: FitSet, names: Sequence[str]) -> Optional[str]:
    """None when the rows support fitting `names`, else the reason (the rule: >= MIN_ROWS_PER_PARAMETER rows per
    parameter and >= MIN_SOURCES sources)."""
    need = MIN_ROWS_PER_PARAMETER * len(names)
    if len(fs.cases) < need:
        return (f"{len(fs.cases)} time/rate rows for {len(names)} parameters: the rule is at least "
                f"{MIN_ROWS_PER_PARAMETER} rows per parameter ({need} rows)")
    if len(fs.sources) < MIN_SOURCES:
        return (f"{len(fs.sources)} source(s): the rule is rows from at least {MIN_SOURCES} sources, so that one "
                "source's systematic error is not taken for physics")
    return None


def at_bound(name: str, value: float) -> bool:
    lo, hi, _ = PARAMETERS[name]
    tol = BOUND_TOLERANCE * (hi - lo)
    return value <= lo + tol or value >= hi - tol


def param_path(name: str) -> str:
    """The profile field path (specs/overlay.py) of a fitted parameter."""
    if name in TIER_PARAMETERS:
        idx, attr = TIER_PARAMETERS[name]
        return f"tiers[{idx}].{attr}"
    return f"efficiency.{name}"


def thin_sources(fs: FitSet, max_rows_per_source: int) -> FitSet:
    """The FitSet with every source over `max_rows_per_source` rows cut to that many, evenly spaced in file order
    (deterministic). Each source weighs the same whatever its row count (make_fitset), so this changes the weight
    of no source, only the cost of a fit (vTrain's 1,440 single-node rows dominate it otherwise)."""
    by: dict = {}
    for c in fs.cases:
        by.setdefault(c.source, []).append(c)
    keep = set()
    for rows in by.values():
        n = len(rows)
        if n <= max_rows_per_source:
            keep.update(id(c) for c in rows)
        else:
            keep.update(id(rows[int(i * n / max_rows_per_source)]) for i in range(max_rows_per_source))
    return fs.subset(lambda c: id(c) in keep)
