"""Closed forms of a pipelined step: micro-batch count, bubble fraction, activations in flight, pipeline time.

Sources: Narayanan et al. 2021 (arXiv 2104.04473) sec. 2.2: GPipe/1F1B bubble (p-1)/m, interleaved (p-1)/(v*m);
Qi et al. 2023 (Zero Bubble Pipeline Parallelism, arXiv 2401.10241) sec. 3: ZB-H1 bubble (p-1)(T_F + T_B - T_W).
"""
from __future__ import annotations

import numpy as np

from ..specs.layout import SCHEDULE_CODES


def num_micro_batches(global_batch, micro_batch, dp):
    """Micro-batches each data-parallel replica runs per step: floor(B / (b x dp)), at least 1 (a batch that
    does not divide is a feasibility reason, not a different count).

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 2.2: m = B / (b x d)."""
    return np.maximum(1.0, np.floor(global_batch / (micro_batch * dp)))


def bubble_fraction(pp, num_micro, vpp=1, schedule="1f1b"):
    """Idle fraction of the ideal time of a homogeneous pipeline: (p-1)/m, or (p-1)/(v*m) when interleaved.

    The one definition of the bubble. ZB-H1 with T_F = T_B = T_W (the paper's assumption) leaves a third
    of the 1F1B bubble.

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 2.2.1-2.2.2; Qi et al. 2023 (arXiv 2401.10241) sec. 3.
    """
    code = SCHEDULE_CODES[schedule] if isinstance(schedule, str) else np.asarray(schedule)
    pp = np.asarray(pp, dtype=float)
    base = (pp - 1.0) / np.asarray(num_micro, dtype=float)
    return np.where(code == 2, base / vpp, np.where(code == 3, base / 3.0, base))


def inflight_microbatches(pp, vpp, num_micro, schedule, rank):
    """Micro-batches (in units of the rank's whole layer set) whose activations rank `rank` holds at peak.

    1F1B: p - r (Narayanan et al. 2021 sec. 2.2.1); ZB-H1: p on every rank (rank r defers r weight-gradient
    passes, whose inputs stay alive; the peak equals 1F1B's first stage, Qi et al. 2023 sec. 3); GPipe: m;
    interleaved: Megatron's warm-up of
    2(p-r-1) + (v-1)p chunk passes plus the one in progress, divided by v. For rank 0 it equals
    p*(1 + (p-1)/(p*v)) (Korthikanti et al. 2022 sec. 4.2.3). Capped at m.

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 2.2; Korthikanti et al. 2022 (arXiv 2205.05198)
    sec. 4.2.3; Qi et al. 2023 (arXiv 2401.10241) sec. 3.
    """
    pp = np.asarray(pp, dtype=float)
    vpp = np.asarray(vpp, dtype=float)
    m = np.asarray(num_micro, dtype=float)
    code = np.asarray(schedule)
    one_f_one_b = pp - rank
    interleaved = (2.0 * (pp - rank - 1.0) + (vpp - 1.0) * pp + 1.0) / vpp
    v = np.where(code == 0, m, np.where(code == 2, interleaved, np.where(code == 3, pp, one_f_one_b)))
    return np.clip(v, 1.0, m)


def pipeline_time_s(tau_max, tau_sum, num_micro, vpp, schedule, w_max=0.0, w_sum=0.0, fb_max=None):
    """Time of the pipelined part of a step from per-micro-batch stage times.

    With tau_i = forward + backward time of stage i for one micro-batch, 1F1B takes (m-1) tau_max + sum_i tau_i
    (fill and drain pass once through every stage, the slowest stage paces the steady state; exact when the last
    stage is the slowest, an upper bound otherwise); interleaving divides the fill/drain term by v; ZB-H1
    removes 2 T_W per stage from it (T_W: weight-gradient time, deferred into the bubble). GPipe runs all
    forwards then all backwards, so its steady state is paced by the slowest forward plus the slowest backward,
    which may sit on different stages: sum_i tau_i + (m-1)(max_i F_i + max_i B_i), given as `fb_max`.
    All reduce to (m + p - 1) tau for equal stages.

    ZB-H1 with fewer micro-batches than stages (m < p) has too few B passes to hide the W passes behind: the
    last micro-batch's F and B still cross every stage, the last stage alternates F and B, and the first stage
    ends with its last W, so the step is at least sum_i (F_i + B_i) + (m-1) max (F + B) + W (for equal stages
    (m + p - 1)(T_F + T_B) + T_W, the paper's m (T_F + T_B + T_W) + (p-1)(T_F + T_B - T_W) at m = p); the
    step is the larger of the two (a hand-drawn timeline in tests/test_pipeline.py).

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 2.2; Qi et al. 2023 (arXiv 2401.10241) sec. 3.
    """
    m = np.asarray(num_micro, dtype=float)
    code = np.asarray(schedule)
    pace = tau_max if fb_max is None else np.where(code == 0, np.maximum(fb_max, tau_max), tau_max)
    fill = np.maximum(0.0, tau_sum - pace)           # exactly 0 for one stage (no rounding below 0)
    fill = np.where(code == 2, fill / vpp, fill)
    fill = np.where(code == 3, np.maximum(0.0, fill - 2.0 * (w_sum - w_max)), fill)
    chain = (tau_sum - w_sum) + (m - 1.0) * (tau_max - w_max) + w_max     # ZB-H1's B chain when m < p
    return np.where(code == 3, np.maximum(m * pace + fill, chain), m * pace + fill)
