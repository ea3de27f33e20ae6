"""Rank by the time or the cost to train T tokens, failures and checkpoints included (goodput), for `search` and
`compare` (`--tokens T --rank-by time-to-train|cost-to-train`).

    compute      = T / tokens per second                                   (the layout's step)
    wall clock   = planning.goodput.wall_clock_s(run facts, compute, step)  (checkpoints, failures, restarts)
    goodput      = compute / wall clock
    cost         = devices x price per device-hour x wall clock; energy = devices x board power x wall clock

The run facts (checkpoint size and write, job MTBF, restarts) depend on the job, not on its layout, so one
evaluation serves a whole search; across hardware profiles (`compare`) each profile's job has its own. Without a
run preset the failure model is DEFAULT_RUN (below), stated in every result.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import SpecError
from .goodput import run_facts, wall_clock_s

RANK_BY = ("time-to-train", "cost-to-train")
#: The run model used when none is given: Llama 3's published interruption rate by cause (419 unexpected in 54 days
#: on 16,384 H100: 1.97e-5 per device-hour), its 2 TB/s checkpoint storage and MegaScale's restart figures
#: (presets/runs/llama3-405b-16k.yaml): the only per-device failure table published for a large run.
DEFAULT_RUN = "llama3-405b-16k"
TRAIN_COLUMNS = ("train_compute_s", "train_wall_clock_s", "train_goodput", "train_cost_usd", "train_energy_mwh")


def _check(tokens, rank_by: str) -> None:
    if rank_by not in RANK_BY:
        raise SpecError(f"rank_by = {rank_by!r}: must be one of {', '.join(RANK_BY)}")
    if tokens is None or not tokens > 0:
        raise SpecError(f"tokens = {tokens!r}: ranking by {rank_by} needs the tokens to train (--tokens T, > 0)")


def train_columns(scenario, tokens: float, step_s, tokens_per_s, run=None, checkpoint_mode: Optional[str] = None,
                  price_per_hour: Optional[float] = None, power_w: Optional[float] = None) -> dict:
    """The train_* columns of layouts of one job (`scenario`: any of them; arrays of step time and throughput),
    plus the run facts' reasons (`reasons`) and the run's name (`run`)."""
    facts = run_facts(scenario, run or DEFAULT_RUN, checkpoint_mode)
    compute = tokens / np.asarray(tokens_per_s, dtype=float)
    wall = wall_clock_s(facts, compute, step_s)
    n = scenario.num_devices
    return {"train_compute_s": compute, "train_wall_clock_s": wall, "train_goodput": compute / wall,
            "train_cost_usd": np.full(np.shape(wall), np.nan) if price_per_hour is None
            else n * price_per_hour * wall / 3600.0,
            "train_energy_mwh": np.full(np.shape(wall), np.nan) if power_w is None else n * power_w * wall / 3.6e9,
            "reasons": facts.reasons, "run": facts.run.name}


def _key(frame: pd.DataFrame, rank_by: str) -> np.ndarray:
    col = "train_wall_clock_s" if rank_by == "time-to-train" else "train_cost_usd"
    key = frame[col].to_numpy(dtype=float)
    if rank_by == "cost-to-train" and np.isnan(key[frame["feasible"].to_numpy(bool)]).any():
        raise SpecError("ranking by cost-to-train needs a price per device-hour: the profile has none; pass "
                        "--price-per-hour")
    return key


def rank_search(result, tokens: float, rank_by: str = "time-to-train", run=None,
                checkpoint_mode: Optional[str] = None):
    """The SearchResult with the train_* columns on its feasible rows (NaN elsewhere) and its feasible rows
    re-ranked by wall-clock time or cost to train `tokens` (ties keep the search's order)."""
    _check(tokens, rank_by)
    f = result.frame.copy()
    ok = f["feasible"].to_numpy(bool)
    for c in TRAIN_COLUMNS:
        f[c] = np.nan
    if ok.any():
        first = f.index[ok][0]
        cols = train_columns(result.scenario(f.loc[first]), tokens, f.loc[ok, "step_time_s"],
                             f.loc[ok, "tokens_per_s"], run, checkpoint_mode, result.price_per_hour_usd,
                             result.hardware.device.power_w)
        for c in TRAIN_COLUMNS:
            f.loc[ok, c] = cols[c]
        key = _key(f, rank_by)
        head = f[ok].iloc[np.argsort(key[ok], kind="stable")].copy()
        head["rank"] = pd.array(np.arange(1, len(head) + 1), dtype="Int64")
        f = pd.concat([head, f[~ok]], ignore_index=True)
        f.attrs["run"] = cols["run"]
    return replace(result, frame=f, objective=rank_by)


def rank_compare(result, rank_by: str = "time-to-train", run=None, checkpoint_mode: Optional[str] = None):
    """The CompareResult with the train_* columns of each profile's best layout (its own job's run facts) and
    its rows ordered by wall-clock time or cost to train the result's tokens (profiles that fit first)."""
    _check(result.tokens, rank_by)
    f = result.frame.copy()
    for c in TRAIN_COLUMNS:
        f[c] = np.nan
    run_name = None
    for i, r in f.iterrows():
        res = result.searches.get(r["hardware"])
        if not r["feasible"] or res is None or res.best is None:
            continue
        cols = train_columns(res.scenario(res.best), result.tokens, float(r["step_time_s"]),
                             float(r["tokens_per_s"]), run, checkpoint_mode, r["price_per_hour_usd"]
                             if pd.notna(r["price_per_hour_usd"]) else None,
                             r["power_w"] if pd.notna(r["power_w"]) else None)
        for c in TRAIN_COLUMNS:
            f.loc[i, c] = float(cols[c])
        run_name = cols["run"]
    ok = f["feasible"].to_numpy(bool)
    key = f["train_wall_clock_s" if rank_by == "time-to-train" else "train_cost_usd"].to_numpy(dtype=float)
    order = np.lexsort((np.where(np.isnan(key), np.inf, key), ~ok))
    f = f.iloc[order].reset_index(drop=True)
    notes = result.notes + (f"ranked by {rank_by} of {result.tokens:.4g} tokens with checkpoints, failures and "
                            f"restarts of run model '{run_name or run or DEFAULT_RUN}' (planning.goodput)",)
    return replace(result, frame=f, notes=notes)
