"""Stragglers: a fraction of devices computes slower. Each distinct pattern of slow stages among the data-parallel
replicas becomes one group of representative ranks the engine replays (the data-parallel collectives of a stage
wait for every group)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: At most this many replica groups (distinct straggler patterns) are replayed; beyond it the patterns with the
#: most slow stages are kept (a straggler pattern that is a subset of another is never slower and is dropped).
MAX_GROUPS = 16


@dataclass(frozen=True)
class Stragglers:
    """A fraction of the devices runs its compute `slowdown` times slower (thermal throttling, a bad host)."""

    fraction: float
    slowdown: float = 1.5


def representative_devices(pp: int, pp_stride: int, dp_stride: int, replicas: list[int]) -> tuple:
    """Device index of each stage's representative rank, per replayed replica (rank = stage x pp stride +
    replica x dp stride, topology.placement)."""
    return tuple(tuple(r * pp_stride + rep * dp_stride for r in range(pp)) for rep in replicas)


def straggler_groups(rng: np.random.Generator, num_devices: int, pp: int, dp: int, strag: Stragglers | None):
    """Replica groups to replay: [(replica index, per-stage slowdown tuple, label)]. Each straggling device
    slows its pipeline stage in its data-parallel replica (TP/CP peers wait for it every layer).

    Source: modelling choice (a synchronous step waits for its slowest participant); draws from the seeded
    numpy Generator `rng`."""
    if strag is None or strag.fraction <= 0 or strag.slowdown == 1.0:
        return [(0, (1.0,) * pp, "")]
    k = int(rng.binomial(num_devices, strag.fraction))
    if k == 0:
        return [(0, (1.0,) * pp, "no straggler drawn")]
    stage = rng.integers(0, pp, size=k)
    replica = rng.integers(0, dp, size=k)
    pattern = {}
    for s_, rep in zip(stage.tolist(), replica.tolist()):
        pattern.setdefault(rep, set()).add(s_)
    distinct = {}
    for rep in sorted(pattern):
        distinct.setdefault(frozenset(pattern[rep]), rep)
    pats = sorted(distinct, key=lambda p_: (-len(p_), sorted(p_)))
    maximal = [p_ for p_ in pats if not any(p_ < q for q in pats)]
    maximal = maximal[:MAX_GROUPS]
    out = []
    for p_ in maximal:
        slow = tuple(strag.slowdown if r in p_ else 1.0 for r in range(pp))
        out.append((distinct[p_], slow, f"replica {distinct[p_]}: stage{'s' if len(p_) > 1 else ''} "
                                        f"{', '.join(str(x) for x in sorted(p_))} slow"))
    return out
