"""Which layers each pipeline stage holds: the default split of the model into pp x vpp chunks (even, or uneven
with lighter first and last chunks, as the frameworks do), explicit splits, and the per-rank summary (first,
busiest middle, last) both engines compose from.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import SpecError


def chunk_layers(num_layers: int, pp: int, vpp: int) -> list[int]:
    """Default layers of each of the pp*vpp model chunks, in pipeline order (chunk i runs on rank i % pp).

    Even when pp*vpp divides the layers. Otherwise every chunk gets ceil(L/(pp*vpp)) layers and the surplus is
    taken from the first and the last chunk (the first gives the larger half), which also hold the embedding
    and the logits (Llama 3 405B: 126 layers on 16 stages = 7 + 14x8 + 7, Llama 3 paper sec. 3.3.2; BLOOM: 70
    on 12 stages). When the two ends cannot absorb it (few layers per chunk), one layer at a time is taken from
    the ends inwards (first, last, second, second-to-last, ...), keeping every chunk within one layer of the rest.

    Source: Llama 3 paper (arXiv 2407.21783) sec. 3.3.2; BLOOM (arXiv 2211.05100) sec. 3.4.
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


def checked_chunk_layers(num_layers: int, pp: int, vpp: int, stage_layers=None) -> list[int]:
    """Layers of each of the pp*vpp model chunks in pipeline order: explicit `stage_layers` (pp*vpp entries
    summing to the model's layers; SpecError otherwise) or the default split (`chunk_layers`)."""
    chunks = pp * vpp
    if stage_layers is not None:
        sl = list(stage_layers)
        if len(sl) != chunks:
            raise SpecError(f"layout.stage_layers has {len(sl)} entries {sl}; it needs pp*vpp = {pp}*{vpp} = "
                            f"{chunks}, one per model chunk in pipeline order")
        if sum(sl) != num_layers:
            raise SpecError(f"layout.stage_layers {sl} sums to {sum(sl)}; it must sum to the model's "
                            f"{num_layers} layers")
        return sl
    return chunk_layers(num_layers, pp, vpp)


def rank_layers(chunks: list[int], pp: int) -> list[int]:
    """Layers of each pipeline rank (summed over its chunks; chunk i runs on rank i % pp)."""
    return [sum(chunks[r::pp]) for r in range(pp)]


def rank_split(chunks: list[int], pp: int) -> tuple[int, int, int]:
    """(first, busiest middle, last) rank layers of a per-chunk list; chunk i runs on rank i % pp.
    Middle is 0 where pp < 3; first holds everything where pp = 1."""
    per_rank = rank_layers(chunks, pp)
    if pp == 1:
        return per_rank[0], 0, 0
    return per_rank[0], (max(per_rank[1:-1]) if pp >= 3 else 0), per_rank[-1]


@lru_cache(maxsize=4096)
def _default_rank_split(num_layers: int, pp: int, vpp: int) -> tuple[int, int, int]:
    """rank_split of the default chunks (chunk_layers), once per (layers, pp, vpp) in a process: the engine asks
    for the same few dozen pairs in every block of a table."""
    return rank_split(chunk_layers(num_layers, pp, vpp), pp)


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
            table[key] = _default_rank_split(num_layers, p, v)
    picked = table[keys]
    return picked[..., 0], picked[..., 1], picked[..., 2]


def explicit_stage_split(stage_layers: list[int], pp: int):
    """(first, busiest middle, last) rank layers of an explicit per-chunk list."""
    return rank_split(list(stage_layers), pp)


def stage_split(table, num_layers: int):
    """(first, busiest middle, last) rank layers of every row of a LayoutTable, as int64 arrays: the row's
    explicit `stage_layers` where it has one, else the default split.

    Source: `chunk_layers` (Llama 3 paper, arXiv 2407.21783, sec. 3.3.2); Megatron-LM chunk i on rank i % pp."""
    if table.stage_layers is None:
        return default_stage_split(num_layers, table.pp, table.vpp)
    rows = []
    for i, sl in enumerate(table.stage_layers):
        pp, vpp = int(table.pp[i]), int(table.vpp[i])
        if sl is not None:
            rows.append(explicit_stage_split(sl, pp))
        else:
            rows.append(tuple(int(x) for x in default_stage_split(num_layers, pp, vpp)))
    f, m, la = (np.array(c, dtype=np.int64) for c in zip(*rows))
    return f, m, la


def two_chunk_rank_layers(chunks: list[int], pp: int, schedule: str) -> tuple[list[float], list[int]]:
    """(layers each rank runs per micro-batch, layers each rank holds) of a two-chunk schedule from its per-stage
    list: ZB-V's 2p stages fold into a V (rank r holds stages r and 2p-1-r and runs both for every micro-batch);
    DualPipe's p stages run in both directions (rank r holds stage r of one pipeline and stage p-1-r of the
    other: twice the parameters, and half its micro-batches pass through each).

    Source: Qi et al. 2024 (arXiv 2401.10241) sec. 6 (V placement); DeepSeek-V3 report (arXiv 2412.19437)
    sec. 3.2.1, Table 2 (DualPipe: 2x parameters)."""
    if schedule == "zb-v":
        held = [chunks[r] + chunks[2 * pp - 1 - r] for r in range(pp)]
        return [float(x) for x in held], held
    held = [chunks[r] + chunks[pp - 1 - r] for r in range(pp)]
    return [0.5 * x for x in held], held


def two_chunk_split(table, num_layers: int):
    """Per row of a table whose schedule is DualPipe (code 4) or ZB-V (code 5): the (first, busiest middle, last)
    ranks' layers per micro-batch and layers held, as float arrays ((f, m, l), (f, m, l)); zeros on other rows.
    The busiest middle rank is the one that runs the most layers."""
    from ..specs.layout import SCHEDULE_CODES
    n = len(table)
    run = np.zeros((3, n))
    held = np.zeros((3, n))
    names = {SCHEDULE_CODES["dualpipe"]: "dualpipe", SCHEDULE_CODES["zb-v"]: "zb-v"}
    for i in np.flatnonzero(np.isin(table.schedule, list(names))):
        name, pp = names[int(table.schedule[i])], int(table.pp[i])
        stages = 2 * pp if name == "zb-v" else pp
        explicit = table.stage_layers[i] if table.stage_layers is not None else None
        if stages > num_layers and explicit is None:
            continue                                  # more stages than layers: a feasibility reason
        chunks = list(explicit) if explicit is not None else chunk_layers(num_layers, stages, 1)
        if len(chunks) != stages:
            continue
        r_run, r_held = two_chunk_rank_layers(chunks, pp, name)
        mid = max(range(1, pp - 1), key=lambda r: (r_run[r], r_held[r]), default=None)
        for k, r in enumerate((0, mid, pp - 1)):
            if r is not None and not (k == 2 and pp == 1):
                run[k, i], held[k, i] = r_run[r], r_held[r]
    return tuple(run), tuple(held)
