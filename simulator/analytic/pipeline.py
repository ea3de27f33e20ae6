"""Pipeline schedules in closed form: bubble fraction, layer split over stages, step-time composition.

Sources: Narayanan et al. 2021 (arXiv 2104.04473) sec. 2.2: GPipe/1F1B bubble (p-1)/m, interleaved (p-1)/(v*m);
Qi et al. 2023 (Zero Bubble Pipeline Parallelism, arXiv 2401.10241) sec. 3: ZB-H1 bubble (p-1)(T_F + T_B - T_W).
"""
from __future__ import annotations

import numpy as np

from ..specs.layout import SCHEDULE_CODES


def bubble_fraction(pp, num_micro, vpp=1, schedule="1f1b"):
    """Idle fraction of the ideal time of a homogeneous pipeline: (p-1)/m, or (p-1)/(v*m) when interleaved.

    The one definition of the bubble. ZB-H1 with T_F = T_B = T_W (the paper's assumption) leaves a third
    of the 1F1B bubble.
    """
    code = SCHEDULE_CODES[schedule] if isinstance(schedule, str) else np.asarray(schedule)
    pp = np.asarray(pp, dtype=float)
    base = (pp - 1.0) / np.asarray(num_micro, dtype=float)
    return np.where(code == 2, base / vpp, np.where(code == 3, base / 3.0, base))


def chunk_layers(num_layers: int, pp: int, vpp: int) -> list[int]:
    """Default layers of each of the pp*vpp model chunks, in pipeline order (chunk i runs on rank i % pp).

    Even when pp*vpp divides the layers. Otherwise every chunk gets ceil(L/(pp*vpp)) layers and the surplus is
    taken from the first and the last chunk (the first gives the larger half), which also hold the embedding
    and the logits (Llama 3 405B: 126 layers on 16 stages = 7 + 14x8 + 7, Llama 3 paper sec. 3.3.2; BLOOM: 70
    on 12 stages). When the two ends cannot absorb it (few layers per chunk), one layer at a time is taken from
    the ends inwards (first, last, second, second-to-last, ...), keeping every chunk within one layer of the rest.
    """
    chunks = pp * vpp
    if chunks == 1:
        return [num_layers]
    per = -(-num_layers // chunks)
    out = [per] * chunks
    deficit = chunks * per - num_layers
    take_first = (deficit + 1) // 2
    if take_first <= per and deficit - take_first <= per:
        out[0] -= take_first
        out[-1] -= deficit - take_first
        return out
    order = [i for k in range((chunks + 1) // 2) for i in dict.fromkeys((k, chunks - 1 - k))]
    for i in order[:deficit]:
        out[i] -= 1
    return out


def rank_split(chunks: list[int], pp: int) -> tuple[int, int, int]:
    """(first, busiest middle, last) rank layers of a per-chunk list; chunk i runs on rank i % pp.
    Middle is 0 where pp < 3; first holds everything where pp = 1."""
    per_rank = [sum(chunks[r::pp]) for r in range(pp)]
    if pp == 1:
        return per_rank[0], 0, 0
    return per_rank[0], (max(per_rank[1:-1]) if pp >= 3 else 0), per_rank[-1]


def default_stage_split(num_layers: int, pp, vpp):
    """Layers on the first, busiest middle and last pipeline rank (summed over their vpp chunks) under the
    default chunk split (`chunk_layers`), for arrays of pp and vpp: computed once per distinct (pp, vpp)."""
    pp_a, vpp_a = np.broadcast_arrays(np.asarray(pp, dtype=np.int64), np.asarray(vpp, dtype=np.int64))
    # One key per (pp, vpp); a dense presence table finds the distinct pairs without sorting a million rows.
    width = int(vpp_a.max(initial=1)) + 1
    keys = pp_a * width + vpp_a
    present = np.zeros(int(keys.max(initial=0)) + 1, dtype=bool)
    present[keys] = True
    table = np.zeros((len(present), 3), dtype=np.int64)
    for key in np.flatnonzero(present):
        p, v = divmod(int(key), width)
        if 0 < p * v <= num_layers:
            table[key] = rank_split(chunk_layers(num_layers, p, v), p)
    picked = table[keys]
    return picked[..., 0], picked[..., 1], picked[..., 2]


def explicit_stage_split(stage_layers: list[int], pp: int):
    """(first, busiest middle, last) rank layers of an explicit per-chunk list."""
    return rank_split(list(stage_layers), pp)


def inflight_microbatches(pp, vpp, num_micro, schedule, rank):
    """Micro-batches (in units of the rank's whole layer set) whose activations rank `rank` holds at peak.

    1F1B: p - r (Narayanan et al. 2021 sec. 2.2.1); ZB-H1: p on every rank (rank r defers r weight-gradient
    passes, whose inputs stay alive; the peak equals 1F1B's first stage, Qi et al. 2023 sec. 3); GPipe: m;
    interleaved: Megatron's warm-up of
    2(p-r-1) + (v-1)p chunk passes plus the one in progress, divided by v. For rank 0 it equals
    p*(1 + (p-1)/(p*v)) (Korthikanti et al. 2022 sec. 4.2.3). Capped at m.
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
    """
    m = np.asarray(num_micro, dtype=float)
    code = np.asarray(schedule)
    pace = tau_max if fb_max is None else np.where(code == 0, np.maximum(fb_max, tau_max), tau_max)
    fill = np.maximum(0.0, tau_sum - pace)           # exactly 0 for one stage (no rounding below 0)
    fill = np.where(code == 2, fill / vpp, fill)
    fill = np.where(code == 3, np.maximum(0.0, fill - 2.0 * (w_sum - w_max)), fill)
    return m * pace + fill
