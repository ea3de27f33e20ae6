"""Which layers each pipeline stage holds: the default split of the model into pp x vpp chunks (even, or uneven
with lighter first and last chunks, as the frameworks do), explicit splits, and the per-rank summary (first,
busiest middle, last) both engines compose from.
"""
from __future__ import annotations

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
