"""Closed forms of a pipelined step: micro-batch count, bubble fraction, activations in flight, pipeline time.

Sources: Narayanan et al. 2021 (arXiv 2104.04473) sec. 2.2: GPipe/1F1B bubble (p-1)/m, interleaved (p-1)/(v*m);
Qi et al. 2023 (Zero Bubble Pipeline Parallelism, arXiv 2401.10241) sec. 3: ZB-H1 bubble (p-1)(T_F + T_B - T_W);
sec. 6: ZB-V; DeepSeek-V3 report (arXiv 2412.19437) sec. 3.2.1 and Table 2: DualPipe. The two-chunk forms are
checked against the list-timing replay of the op orders (pipeline.two_chunk.timeline) in tests/test_moe_wiring.py.
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
    of the 1F1B bubble; ZB-V leaves (p-1)/(6m) (one forward chunk per fill step), DualPipe (p/2-1)(F&B + B - 3W)
    over the work, 2(p/2-1)/(3m) without overlap.

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 2.2.1-2.2.2; Qi et al. 2023 (arXiv 2401.10241) sec. 3.
    """
    code = SCHEDULE_CODES[schedule] if isinstance(schedule, str) else np.asarray(schedule)
    pp = np.asarray(pp, dtype=float)
    m = np.asarray(num_micro, dtype=float)
    base = (pp - 1.0) / m
    # ZB-V, T_F = T_B = T_W = t per chunk pass: (p-1) t over 6 m t of work; DualPipe, F = B = W = t and F&B = 3t:
    # (p/2 - 1)(3t + 2t - 3t) over 3 m t
    zbv = (pp - 1.0) / (6.0 * m)
    dual = 2.0 * (pp / 2.0 - 1.0) / (3.0 * m)
    out = np.where(code == 2, base / vpp, np.where(code == 3, base / 3.0, base))
    return np.where(code == 4, dual, np.where(code == 5, zbv, out))


def inflight_microbatches(pp, vpp, num_micro, schedule, rank):
    """Micro-batches (in units of the rank's whole layer set) whose activations rank `rank` holds at peak.

    1F1B: p - r (Narayanan et al. 2021 sec. 2.2.1); DualPipe: p + 1 chunk passes of the rank's per-micro-batch
    layers (DeepSeek-V3 report Table 2); ZB-V: 2p half-size chunk passes, p (Qi et al. 2024 sec. 6); ZB-H1: p on
    every rank (rank r defers r weight-gradient
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
    v = np.where(code == 4, pp + 1.0, np.where(code == 5, pp, v))
    return np.clip(v, 1.0, m)


def two_chunk_pipeline_time_s(schedule, pp, num_micro, f_s, b_s, w_s, fb_unit_s=None):
    """Pipelined time of DualPipe (code 4) or ZB-V (code 5) from the pacing rank's per-micro-batch forward `f_s`,
    input-gradient backward `b_s` (with its recompute) and weight gradient `w_s` (both chunks of a ZB-V rank;
    one chunk pass of a DualPipe rank), and DualPipe's overlapped forward-and-full-backward unit `fb_unit_s`
    (pipeline.two_chunk.overlapped_forward_backward_s; default f + b + w: no overlap).

    ZB-V: m (F + B + W) + (p - 1) max(F, B, 2(B - W)) / 2: the work plus the V's fill of p - 1 chunk passes
    (forward ones when T_F = T_B = T_W: exact there, Qi et al. 2024 sec. 6, zero bubble beyond the fill), which
    input-gradient passes longer than a forward, or than two weight-gradient passes can cover, stretch; within
    4% of the replayed op order for B/F in 0.6-3 and W/F in 0.3-1.5 with m >= 2p - 1 (tests). DualPipe (m counts both directions):
    m (F + B + W) - n (F + B + W - F&B) + (p/2 - 1)(F&B + B + W - 3W), n = m - 3p/2 + 1 overlapped units on an end
    rank (one fewer with p = 2, where the end ranks are also the middle pair whose first unit is not overlapped):
    the report's Table 2 bubble on top of the work; exact without overlap for F = B = W, an upper bound otherwise.

    Source: Qi et al. 2024 (arXiv 2401.10241) sec. 6; DeepSeek-V3 report (arXiv 2412.19437) Table 2;
    pipeline.two_chunk (the op orders, checked by list-timing replay in tests)."""
    code = np.asarray(schedule)
    p = np.asarray(pp, dtype=float)
    m = np.asarray(num_micro, dtype=float)
    work = f_s + b_s + w_s
    zbv = m * work + (p - 1.0) * np.maximum(np.maximum(f_s, b_s), 2.0 * (b_s - w_s)) / 2.0
    fb = work if fb_unit_s is None else fb_unit_s
    n_fb = np.maximum(0.0, m - 1.5 * p + 1.0 - np.where(p == 2, 1.0, 0.0))
    dual = m * work - n_fb * (work - fb) + np.maximum(0.0, p / 2.0 - 1.0) * (fb + b_s - 2.0 * w_s)
    return np.where(code == 4, dual, zbv)


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


def interleaved_steady_fraction(num_micro, pp, vpp):
    """Share of the first pipeline rank's chunk passes that run in the steady 1F1B phase of Megatron's interleaved
    schedule: of its m x v forward chunk passes, the first min(m v, (v - 1) p + 2 (p - 1)) are warm-up (and as
    many backward ones cool-down); with m = p every pass is warm-up. With overlap_p2p_comm the pipeline sends of the
    steady phase run under the other direction's pass; those of warm-up and cool-down stay exposed.

    Source: NVIDIA/Megatron-LM megatron/core/pipeline_parallel/schedules.py (core_r0.7.0)
    forward_backward_pipelining_with_interleaving: num_warmup_microbatches = (pp - rank - 1) x 2 + (v - 1) x pp,
    all warm-up when num_microbatches == pp; NeMo docs features/optimizations/communication_overlap.rst ("The PP
    communications in pipeline fill and flush are still exposed")."""
    m, p, v = (np.asarray(x, dtype=float) for x in (num_micro, pp, vpp))
    total = m * v
    warm = np.minimum(total, (v - 1.0) * p + 2.0 * (p - 1.0))
    return np.where((v > 1) & (p > 1) & (m != p), np.maximum(0.0, total - warm) / np.maximum(total, 1.0), 0.0)
