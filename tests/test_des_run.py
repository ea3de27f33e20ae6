"""Monte-Carlo run replay: hand-drawn timelines with scripted failures, determinism for a seed, agreement with
Daly's analytic model."""
import math

import numpy as np
import pytest

from simulator.des.run import RunTimeline, replay_run, replay_runs
from simulator.planning.goodput import wall_time_per_compute_s


class Scripted:
    """A draw that returns scripted failure gaps, then 'never' (and never a planned stop)."""

    def __init__(self, gaps):
        self.gaps = list(gaps)

    def __call__(self, mean):
        if mean == math.inf or not self.gaps:
            return math.inf
        return self.gaps.pop(0)


def test_no_failures_costs_only_the_checkpoints():
    # 10,000 s of training in 1,000 s segments: 9 checkpoints of 10 s (none after the last segment)
    tl = RunTimeline(compute_s=10_000, interval_s=1000, block_s=10, background_s=0, restart_s=100, mtbf_s=1e18)
    assert replay_run(tl, Scripted([])) == (10_090.0, 0, 0)


def test_sync_failure_rolls_back_to_the_last_checkpoint():
    # segments end at 1010 and 2020 (durable 1000, 2000); a failure at 2500 keeps 2000, restarts until 2600, and the
    # last 1000 s finish at 3600
    tl = RunTimeline(compute_s=3000, interval_s=1000, block_s=10, background_s=0, restart_s=100, mtbf_s=5000)
    assert replay_run(tl, Scripted([2500, 1e9])) == (3600.0, 1, 0)


def test_async_failure_before_the_background_write_ends_loses_one_more_segment():
    # background 600 s: checkpoint 1 durable at 1610, checkpoint 2 only at 2620 > 2500, so the job restarts from
    # 1000 s of work: 2600 + one segment with checkpoint (1010) + the last 1000 s = 4610
    tl = RunTimeline(compute_s=3000, interval_s=1000, block_s=10, background_s=600, restart_s=100, mtbf_s=5000)
    assert replay_run(tl, Scripted([2500, 1e9])) == (4610.0, 1, 0)


def test_a_failure_during_the_restart_starts_the_restart_over():
    # failure at 500 (nothing durable), another 50 s into the restart, then a full restart and the whole run again
    # (3,000 s + 2 checkpoints): 500 + 50 + 100 + 3020
    tl = RunTimeline(compute_s=3000, interval_s=1000, block_s=10, background_s=0, restart_s=100, mtbf_s=5000)
    assert replay_run(tl, Scripted([500, 50, 1e9])) == (3670.0, 2, 0)


def test_same_seed_same_samples_and_another_seed_differs():
    tl = RunTimeline(compute_s=20 * 86400, interval_s=600, block_s=5, background_s=0, restart_s=700, mtbf_s=11000,
                     planned_per_s=1e-5, planned_cost_s=60)
    a, b, c = replay_runs(tl, 50, seed=7), replay_runs(tl, 50, seed=7), replay_runs(tl, 50, seed=8)
    assert np.array_equal(a.wall_s, b.wall_s) and np.array_equal(a.unexpected, b.unexpected)
    assert np.array_equal(a.planned, b.planned)
    assert not np.array_equal(a.wall_s, c.wall_s)


def test_monte_carlo_mean_agrees_with_dalys_model_sync():
    tl = RunTimeline(compute_s=20 * 86400, interval_s=600, block_s=5, background_s=0, restart_s=700, mtbf_s=11000)
    s = replay_runs(tl, 400, seed=1)
    analytic = tl.compute_s * wall_time_per_compute_s(600, 5, 0, 700, 11000)
    assert s.wall_s.mean() == pytest.approx(analytic, rel=0.005)
    assert s.unexpected.mean() == pytest.approx(analytic / 11000, rel=0.02)   # Poisson count over the wall clock


def test_monte_carlo_mean_agrees_with_the_first_order_async_model():
    tl = RunTimeline(compute_s=20 * 86400, interval_s=600, block_s=1, background_s=300, restart_s=900, mtbf_s=5000)
    s = replay_runs(tl, 400, seed=2)
    analytic = tl.compute_s * wall_time_per_compute_s(600, 1, 300, 900, 5000)
    assert s.wall_s.mean() == pytest.approx(analytic, rel=0.01)


def test_summary_percentiles_are_ordered():
    tl = RunTimeline(compute_s=5 * 86400, interval_s=600, block_s=5, background_s=0, restart_s=700, mtbf_s=11000)
    s = replay_runs(tl, 100, seed=3).summary()
    assert s["samples"] == 100 and s["seed"] == 3
    assert 5 < s["wall_clock_days_p50"] <= s["wall_clock_days_p90"]


def test_bad_sample_count_is_an_error():
    tl = RunTimeline(compute_s=1, interval_s=1, block_s=0, background_s=0, restart_s=0, mtbf_s=1)
    with pytest.raises(ValueError, match="samples"):
        replay_runs(tl, 0)
