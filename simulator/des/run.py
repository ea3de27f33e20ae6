"""Seeded Monte-Carlo replay of a whole training run: failures, checkpoints, restarts (a discrete-event loop that
jumps from interruption to interruption; deterministic for a seed).

The run is `compute_s` seconds of training cut into segments of `interval_s`, each closed by a checkpoint that
blocks for `block_s`; an asynchronous checkpoint becomes durable `background_s` after its block ends. Unexpected
failures arrive as a Poisson process of mean gap `mtbf_s` (also during restarts, which then start over); each
rolls the job back to its last durable checkpoint and costs `restart_s`. Planned stops arrive at `planned_per_s`;
each checkpoints the work done so far and costs `planned_cost_s`. Times in seconds. This module takes plain numbers
(planning/goodput.py builds them) and never imports the analytic engine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_BLOCK = 1024


@dataclass(frozen=True)
class RunTimeline:
    """What one run replay needs, in seconds (and stops per second)."""

    compute_s: float
    interval_s: float
    block_s: float
    background_s: float
    restart_s: float
    mtbf_s: float
    planned_per_s: float = 0.0
    planned_cost_s: float = 0.0


@dataclass(frozen=True)
class RunSamples:
    """Replays of one run: wall-clock seconds, unexpected failures and planned stops per sample."""

    wall_s: np.ndarray
    unexpected: np.ndarray
    planned: np.ndarray
    seed: int

    def summary(self) -> dict:
        days = self.wall_s / 86400.0
        return {"samples": int(days.size), "seed": self.seed,
                "wall_clock_days_p50": float(np.percentile(days, 50)),
                "wall_clock_days_p90": float(np.percentile(days, 90)),
                "wall_clock_days_mean": float(days.mean()),
                "unexpected_interruptions_p50": float(np.percentile(self.unexpected, 50)),
                "unexpected_interruptions_p90": float(np.percentile(self.unexpected, 90)),
                "planned_interruptions_mean": float(self.planned.mean())}


class _Exponential:
    """Standard exponential variates drawn in blocks from one numpy Generator (same sequence for a seed)."""

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._buf = rng.standard_exponential(_BLOCK)
        self._i = 0

    def __call__(self, mean: float) -> float:
        if mean == math.inf:
            return math.inf
        if self._i == _BLOCK:
            self._buf = self._rng.standard_exponential(_BLOCK)
            self._i = 0
        v = self._buf[self._i]
        self._i += 1
        return mean * float(v)


def _durable_segments(elapsed: float, tl: RunTimeline, n_full: int) -> int:
    """Checkpoints made durable `elapsed` seconds after a (re)start (at most n_full)."""
    seg = tl.interval_s + tl.block_s
    k = math.floor((elapsed - tl.background_s) / seg) if elapsed >= tl.background_s else 0
    return max(0, min(k, n_full))


def _restart(t: float, tl: RunTimeline, draw: _Exponential) -> tuple[float, int]:
    """A restart that failures may interrupt (each interruption starts it over); returns (end time, failures)."""
    n = 0
    while True:
        gap = draw(tl.mtbf_s)
        if gap >= tl.restart_s:
            return t + tl.restart_s, n
        t += gap
        n += 1


def replay_run(tl: RunTimeline, draw: _Exponential) -> tuple[float, int, int]:
    """One replay: (wall-clock seconds, unexpected failures, planned stops)."""
    seg = tl.interval_s + tl.block_s
    planned_mean = 1.0 / tl.planned_per_s if tl.planned_per_s > 0 else math.inf
    t, done, n_fail, n_plan = 0.0, 0.0, 0, 0
    while True:
        rem = tl.compute_s - done
        n_full = max(math.ceil(rem / tl.interval_s) - 1, 0)        # segments that end with a checkpoint
        finish = t + n_full * seg + (rem - n_full * tl.interval_s)
        t_fail, t_plan = t + draw(tl.mtbf_s), t + draw(planned_mean)
        event = min(t_fail, t_plan)
        if event >= finish:
            return finish, n_fail, n_plan
        elapsed = event - t
        if t_fail <= t_plan:
            done += _durable_segments(elapsed, tl, n_full) * tl.interval_s
            t, extra = _restart(event, tl, draw)
            n_fail += 1 + extra
        else:
            k = min(math.floor(elapsed / seg), n_full)
            done = min(tl.compute_s, done + k * tl.interval_s + min(elapsed - k * seg, tl.interval_s))
            t = event + tl.planned_cost_s
            n_plan += 1


def replay_runs(tl: RunTimeline, samples: int, seed: int = 0) -> RunSamples:
    """`samples` replays from one seeded Generator (numpy PCG64): the same seed gives the same samples."""
    if samples < 1:
        raise ValueError(f"samples ({samples}) must be >= 1")
    if tl.interval_s <= 0 or tl.mtbf_s <= 0 or tl.compute_s < 0:
        raise ValueError(f"interval_s ({tl.interval_s}) and mtbf_s ({tl.mtbf_s}) must be > 0, compute_s >= 0")
    draw = _Exponential(np.random.default_rng(seed))
    out = np.array([replay_run(tl, draw) for _ in range(samples)], dtype=float)
    return RunSamples(wall_s=out[:, 0], unexpected=out[:, 1].astype(int), planned=out[:, 2].astype(int), seed=seed)
