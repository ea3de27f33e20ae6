"""Pipeline schedules as pure data: the ordered list of passes each pipeline rank executes in one step.

An op is `Op(kind, micro, chunk)`: kind "F" (forward), "B" (backward; input and weight gradients together, or
only the input gradient when the schedule splits it off) or "W" (weight gradient, zero-bubble schedules);
`micro` is the micro-batch (0-based) and `chunk` the rank's model chunk (0-based; always 0 without virtual
stages). With `p` ranks and `v` chunks per rank, chunk `c` of rank `r` is model chunk `c*p + r` in pipeline order
(Megatron's interleaving). A schedule is a tuple with one tuple of ops per rank; no timing is involved here.

Sources:
- GPipe: Huang et al. 2019 (arXiv 1811.06965) Fig. 2c; all forwards, then all backwards, here in micro-batch
  order as drawn by Narayanan et al. 2021 (arXiv 2104.04473) Fig. 3.
- 1F1B (PipeDream-Flush): Narayanan et al. 2021 Fig. 4 (top): rank r runs min(p-r-1, m) warm-up forwards,
  then alternates one forward and one backward, then drains the remaining backwards.
- Interleaved 1F1B: Narayanan et al. 2021 Fig. 4 (bottom) and Megatron-LM
  `forward_backward_pipelining_with_interleaving`: warm-up of 2(p-r-1) + (v-1)p chunk passes (all of them when
  that reaches m*v); virtual pass k runs chunk (k // p) % v of micro-batch (k // (p*v))*p + k % p; backward
  chunks in reverse. Needs m to be a multiple of p.
- ZB-H1: Qi et al. 2023, "Zero Bubble Pipeline Parallelism" (arXiv 2401.10241) sec. 3.1, Fig. 3: the 1F1B order
  with the backward split into B (input gradient, on the critical path) and W (weight gradient); rank r defers
  its first r W passes so that the drain is filled with them. Every rank still holds at most p micro-batches
  (the same peak memory as 1F1B), and for T_F = T_B = T_W the bubble is (p-1)(T_F + T_B - T_W), a third of 1F1B's.
- DualPipe and ZB-V (two model chunks per rank placed by the schedule): pipeline.two_chunk. `chunk_position` says
  which pipeline and stage a (rank, chunk) is for every schedule.
"""
from __future__ import annotations

from typing import NamedTuple

from ..errors import SpecError

SCHEDULE_NAMES = ("gpipe", "1f1b", "interleaved", "zb-h1", "dualpipe", "zb-v")


class Op(NamedTuple):
    """One pass of one micro-batch through one model chunk of a rank."""

    kind: str   # "F", "B" or "W"
    micro: int
    chunk: int = 0

    def __str__(self) -> str:
        return f"{self.kind}{self.micro}" + (f".{self.chunk}" if self.chunk else "")


Schedule = tuple  # tuple[tuple[Op, ...], ...], one entry per pipeline rank


def gpipe(pp: int, num_micro: int) -> Schedule:
    """GPipe: every rank runs all forwards, then all backwards (micro-batch order)."""
    _check(pp, num_micro, 1)
    ranks = []
    for _ in range(pp):
        ranks.append(tuple(Op("F", i) for i in range(num_micro)) + tuple(Op("B", i) for i in range(num_micro)))
    return tuple(ranks)


def one_f_one_b(pp: int, num_micro: int) -> Schedule:
    """1F1B (PipeDream-Flush): p-r-1 warm-up forwards, then one forward / one backward, then the drain."""
    _check(pp, num_micro, 1)
    ranks = []
    for r in range(pp):
        warm = min(pp - r - 1, num_micro)
        ops = [Op("F", i) for i in range(warm)]
        for i in range(num_micro - warm):
            ops += [Op("F", warm + i), Op("B", i)]
        ops += [Op("B", i) for i in range(num_micro - warm, num_micro)]
        ranks.append(tuple(ops))
    return tuple(ranks)


def interleaved_1f1b(pp: int, num_micro: int, vpp: int) -> Schedule:
    """Megatron's interleaved 1F1B with `vpp` model chunks per rank (m must be a multiple of p)."""
    _check(pp, num_micro, vpp)
    if num_micro % pp != 0:
        raise SpecError(f"interleaved schedule: micro-batches ({num_micro}) must be a multiple of pp ({pp})")
    total = num_micro * vpp

    def virtual(k: int, backward: bool) -> tuple[int, int]:
        chunk = (k // pp) % vpp
        micro = (k // (pp * vpp)) * pp + k % pp
        return micro, (vpp - 1 - chunk) if backward else chunk

    ranks = []
    for r in range(pp):
        warm = min((pp - r - 1) * 2 + (vpp - 1) * pp, total)
        ops = [Op("F", *virtual(k, False)) for k in range(warm)]
        for i in range(total - warm):
            ops += [Op("F", *virtual(warm + i, False)), Op("B", *virtual(i, True))]
        ops += [Op("B", *virtual(k, True)) for k in range(total - warm, total)]
        ranks.append(tuple(ops))
    return tuple(ranks)


def zb_h1(pp: int, num_micro: int) -> Schedule:
    """ZB-H1: 1F1B with the backward split into B and W, rank r deferring its first r W passes."""
    _check(pp, num_micro, 1)
    ranks = []
    for r, base in enumerate(one_f_one_b(pp, num_micro)):
        ops = []
        done_b = 0
        next_w = 0
        for op in base:
            ops.append(op)
            if op.kind == "B":
                done_b += 1
                if done_b > r:                # after the (r+1)-th B, one W per B, oldest first
                    ops.append(Op("W", next_w))
                    next_w += 1
        ops += [Op("W", i) for i in range(next_w, num_micro)]
        ranks.append(tuple(ops))
    return tuple(ranks)


def schedule_ops(name: str, pp: int, num_micro: int, vpp: int = 1) -> Schedule:
    """The schedule `name` for p ranks, m micro-batches (DualPipe: both directions together) and v chunks."""
    if name == "gpipe":
        return gpipe(pp, num_micro)
    if name == "1f1b":
        return one_f_one_b(pp, num_micro)
    if name == "interleaved":
        return interleaved_1f1b(pp, num_micro, vpp)
    if name == "zb-h1":
        return zb_h1(pp, num_micro)
    if name in ("dualpipe", "zb-v"):
        from .two_chunk import dualpipe, zb_v
        return dualpipe(pp, num_micro) if name == "dualpipe" else zb_v(pp, num_micro)
    raise SpecError(f"schedule '{name}' is not one of {', '.join(SCHEDULE_NAMES)}")


def chunks_per_rank(name: str, vpp: int = 1) -> int:
    """Model chunks each rank holds: 2 for DualPipe and ZB-V, vpp otherwise."""
    return 2 if name in ("dualpipe", "zb-v") else vpp


def num_stages(name: str, pp: int, vpp: int = 1) -> int:
    """Stages of one pipeline: 2p for ZB-V's V, p for each of DualPipe's two pipelines, p x v otherwise."""
    return 2 * pp if name == "zb-v" else (pp if name == "dualpipe" else pp * vpp)


def chunk_position(name: str, rank: int, chunk: int, pp: int) -> tuple[int, int]:
    """(pipeline, stage) of chunk `chunk` of rank `rank`: DualPipe's two opposite pipelines, ZB-V's V, or
    Megatron's interleaving (stage chunk*p + rank of one pipeline)."""
    if name == "dualpipe":
        return chunk, (rank if chunk == 0 else pp - 1 - rank)
    if name == "zb-v":
        return 0, (rank if chunk == 0 else 2 * pp - 1 - rank)
    return 0, chunk * pp + rank


def micro_per_chunk(name: str, num_micro: int) -> int:
    """Micro-batches each chunk of a rank runs: DualPipe splits them over its two directions."""
    return num_micro // 2 if name == "dualpipe" else num_micro


def global_chunk(rank: int, chunk: int, pp: int) -> int:
    """Position in pipeline order of chunk `chunk` of rank `rank`: chunk*p + rank."""
    return chunk * pp + rank


def rank_of(global_index: int, pp: int) -> tuple[int, int]:
    """(rank, chunk) that runs model chunk `global_index`."""
    return global_index % pp, global_index // pp


def max_in_flight(ops: tuple, split_backward: bool = False) -> int:
    """Most micro-batch chunk passes whose activations a rank holds at once: a forward adds one, the
    backward (W when the backward is split) releases it."""
    release = "W" if split_backward else "B"
    held = peak = 0
    for op in ops:
        if op.kind == "F":
            held += 1
            peak = max(peak, held)
        elif op.kind == release:
            held -= 1
    return peak


def check_schedule(sched: Schedule, pp: int, num_micro: int, vpp: int = 1, split_backward: bool = False) -> None:
    """Raise ValueError unless every rank runs each (kind, micro, chunk) exactly once, forwards of a chunk in
    micro-batch order, and each backward after its forward (and W after its B)."""
    kinds = ("F", "B", "W") if split_backward else ("F", "B")
    want = {Op(k, i, c) for k in kinds for i in range(num_micro) for c in range(vpp)}
    if len(sched) != pp:
        raise ValueError(f"{len(sched)} ranks, expected {pp}")
    for r, ops in enumerate(sched):
        if len(ops) != len(want) or set(ops) != want:
            raise ValueError(f"rank {r}: ops {sorted(set(ops) ^ want)} missing or extra")
        pos = {op: i for i, op in enumerate(ops)}
        for i in range(num_micro):
            for c in range(vpp):
                if pos[Op("B", i, c)] < pos[Op("F", i, c)]:
                    raise ValueError(f"rank {r}: B{i}.{c} before its forward")
                if split_backward and pos[Op("W", i, c)] < pos[Op("B", i, c)]:
                    raise ValueError(f"rank {r}: W{i}.{c} before its B")
                if i and pos[Op("F", i, c)] < pos[Op("F", i - 1, c)]:
                    raise ValueError(f"rank {r}: forwards of chunk {c} out of order")


def _check(pp: int, num_micro: int, vpp: int) -> None:
    for name, v in (("pp", pp), ("num_micro", num_micro), ("vpp", vpp)):
        if not isinstance(v, int) or v < 1:
            raise SpecError(f"{name} = {v!r}: must be an integer >= 1")
