"""Two-chunk pipeline schedules as pure data (DualPipe, ZB-V), and a list-timing replay to check them.

Same format as pipeline.schedules (shared by both engines): one tuple of `Op(kind, micro, chunk)` per pipeline
rank, kinds F / B / W (B is the input gradient, W the weight gradient; a full backward is a B immediately
followed by its W). Each rank holds two model chunks; which pipeline stage a (rank, chunk) is differs per schedule
(`position`):

- DualPipe (DeepSeek-V3 report, arXiv 2412.19437, sec. 3.2.1, Fig. 5; code: github.com/deepseek-ai/DualPipe,
  dualpipe/dualpipe.py `DualPipe.step`): micro-batches enter from both ends. Chunk 0 is the forward-direction
  pipeline (stage r on rank r), chunk 1 the reverse-direction pipeline (stage p-1-r on rank r), each with its own
  parameters (2x parameters per rank). `num_micro` counts both directions (DualPipe's num_chunks, even and
  >= 2 pp); micro-batch ids run 0..num_micro/2-1 within each direction. Forward of one chunk and full backward
  of the other run as one overlapped unit (`dualpipe_overlaps`): the dispatch/combine of one hides under the
  other's compute. Per-rank steps (half_rank h = min(r, p-1-r), P = p/2): nF0 2(P-h-1); nF0F1 h+1;
  nB1W1F1 P-h-1 (zero-bubble split); main nF0B1F1B0 m/2-p+h+1; nB1F1B0 P-h-1; nB1B0 h+1 (the second half
  split); nWB0 P-h-1; nW h+1. Bubble (p/2 - 1)(F&B + B - 3W) (report Table 2).
- ZB-V (Qi et al., "Zero Bubble Pipeline Parallelism", arXiv 2401.10241 sec. 6; the handcrafted form of
  PyTorch torch.distributed.pipelining ScheduleZBVZeroBubble): V placement, chunk 0 is stage r and chunk 1 stage
  2p-1-r of one 2p-stage pipeline. Rank r: warm-up 2(p-r)-1 F0, r x (F1 F0), p-r x (F1 B1 W1); steady
  F0 B0 W0 F1 B1 W1 until all forwards ran; cool-down r x (B0 B1), p-r x (B0 W0), then the deferred W.
  Zero bubble for T_F = T_B = T_W at 1F1B's activation memory (p micro-batches: 2p half-size chunk passes).

`timeline` replays a schedule with given pass durations (no SimPy): each rank runs its ops in order, an op
waits for its producer on the neighbouring stage (F for F, the next stage's B for B, the own F at the last
stage). Used by the tests to compare the published bubble formulas and figures, and the analytic engine's
closed forms (pipeline.closed_form), with the op order itself.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from ..errors import SpecError
from .schedules import Op, chunk_position

TWO_CHUNK_NAMES = ("dualpipe", "zb-v")


def _dualpipe_rank(rank: int, pp: int, num_micro: int):
    """(ops, overlap groups) of one DualPipe rank, transcribed from DualPipe.step (see the module docstring)."""
    half = pp // 2
    h = min(rank, pp - 1 - rank)
    second = rank >= half
    middle = rank in (half - 1, half)
    f = [0, 0]
    b = [0, 0]
    pending = deque()
    ops: list[Op] = []
    groups: list[tuple[int, ...]] = []

    def fwd(phase):
        d = phase ^ second
        ops.append(Op("F", f[d], d))
        f[d] += 1

    def bwd(phase, zb=False, fused=True):
        d = phase ^ second
        ops.append(Op("B", b[d], d))
        if zb:
            pending.append(Op("W", b[d], d))
        else:                            # full backward: input and weight gradients in one pass
            ops.append(Op("W", b[d], d))
            if fused:
                groups.append((len(ops) - 2, len(ops) - 1))
        b[d] += 1

    def weight():
        ops.append(pending.popleft())

    def fwd_bwd(p0, p1):
        start = len(ops)
        fwd(p0)
        bwd(p1, fused=False)
        groups.append(tuple(range(start, len(ops))))

    for _ in range(2 * (half - h - 1)):
        fwd(0)
    for _ in range(h + 1):
        fwd(0)
        fwd(1)
    for _ in range(half - h - 1):
        bwd(1, zb=True)
        weight()
        fwd(1)
    for i in range(num_micro // 2 - pp + h + 1):
        if i == 0 and middle:
            fwd(0)                       # "we don't overlap these two chunks to further reduce bubble size"
            bwd(1)
        else:
            fwd_bwd(0, 1)
        fwd_bwd(1, 0)
    for _ in range(half - h - 1):
        bwd(1)
        fwd_bwd(1, 0)
    zb = False
    for i in range(h + 1):
        if i == (h + 1) // 2 and h % 2 == 1:
            zb = True
        bwd(1, zb)
        if i == (h + 1) // 2 and h % 2 == 0:
            zb = True
        bwd(0, zb)
    for _ in range(half - h - 1):
        weight()
        bwd(0, zb=True)
    for _ in range(h + 1):
        weight()
    return tuple(ops), tuple(groups)


def overlapped_forward_backward_s(compute_f_s, compute_b_s, comm_f_s, comm_b_s):
    """Duration of one DualPipe F&B unit: the forward chunk's all-to-all (dispatch, combine) and PP sends run
    beside the backward chunk's compute and the other way round, on SMs split between the two, so the unit
    takes max(compute of both, communication of both). Source: DeepSeek-V3 report arXiv 2412.19437
    sec. 3.2.1 (attention / dispatch / MLP / combine rearranged so that "both all-to-all and PP communication
    can be fully hidden during execution"), Fig. 4."""
    return np.maximum(np.asarray(compute_f_s, dtype=float) + compute_b_s, np.asarray(comm_f_s, dtype=float) + comm_b_s)


def _check_dualpipe(pp: int, num_micro: int) -> None:
    for name, v in (("pp", pp), ("num_micro", num_micro)):
        if not isinstance(v, int) or v < 1:
            raise SpecError(f"{name} = {v!r}: must be an integer >= 1")
    if pp % 2 != 0 or pp < 2:
        raise SpecError(f"dualpipe: pp ({pp}) must be even and >= 2")
    if num_micro % 2 != 0 or num_micro < 2 * pp:
        raise SpecError(f"dualpipe: num_micro ({num_micro}, both directions) must be even and >= 2*pp ({2 * pp})")


def dualpipe(pp: int, num_micro: int):
    """DualPipe: per-rank op lists; chunk = direction (0 forward, 1 reverse), micro per direction."""
    _check_dualpipe(pp, num_micro)
    return tuple(_dualpipe_rank(r, pp, num_micro)[0] for r in range(pp))


def dualpipe_groups(pp: int, num_micro: int):
    """Per rank, the op-index groups that run as one unit and hand their outputs on when the unit ends:
    (F, B, W) = one overlapped forward & full backward (F&B), (B, W) = one full backward (input and weight
    gradients in one pass; DualPipe sends the input gradient after it). Split backwards (zero-bubble) are
    not grouped: their B hands on its gradient before the deferred W runs."""
    _check_dualpipe(pp, num_micro)
    return tuple(_dualpipe_rank(r, pp, num_micro)[1] for r in range(pp))


def dualpipe_position(rank: int, chunk: int, pp: int) -> tuple[int, int]:
    """(pipeline, stage) of a DualPipe chunk: two pipelines of pp stages running in opposite directions."""
    return chunk_position("dualpipe", rank, chunk, pp)


def zb_v(pp: int, num_micro: int):
    """ZB-V: per-rank op lists over the V placement (chunk 0 = stage r, chunk 1 = stage 2p-1-r)."""
    if not isinstance(pp, int) or pp < 1 or not isinstance(num_micro, int) or num_micro < 1:
        raise SpecError(f"zb-v: pp ({pp!r}) and num_micro ({num_micro!r}) must be integers >= 1")
    n = max(2 * pp - 1, num_micro)          # the handcrafted pattern needs 2p-1; extra passes are dropped
    ranks = []
    for r in range(pp):
        ops: list[Op] = []
        cnt = {"F0": 0, "F1": 0, "B0": 0, "B1": 0}

        def put(kind, chunk, micro=None):
            key = f"{kind}{chunk}"
            if micro is None:
                micro = cnt[key]
                cnt[key] += 1
            ops.append(Op(kind, micro, chunk))

        for _ in range(2 * (pp - r) - 1):
            put("F", 0)
        for _ in range(r):
            put("F", 1)
            put("F", 0)
        for _ in range(pp - r):
            put("F", 1)
            put("B", 1)
            put("W", 1, cnt["B1"] - 1)
        while cnt["F1"] < cnt["F0"] or cnt["F0"] < n:
            if cnt["F0"] < n:
                put("F", 0)
            put("B", 0)
            put("W", 0, cnt["B0"] - 1)
            put("F", 1)
            put("B", 1)
            put("W", 1, cnt["B1"] - 1)
        w0, w1 = cnt["B0"], cnt["B1"]
        for _ in range(r):
            put("B", 0)
            put("B", 1)
        for _ in range(pp - r):
            put("B", 0)
            put("W", 0, w0)
            w0 += 1
        ops += [Op("W", i, 1) for i in range(w1, cnt["B1"])]
        ops += [Op("W", i, 0) for i in range(w0, cnt["B0"])]
        ranks.append(tuple(op for op in ops if op.micro < num_micro))
    return tuple(ranks)


def zb_v_position(rank: int, chunk: int, pp: int) -> tuple[int, int]:
    """(pipeline, stage) of a ZB-V chunk: one pipeline of 2p stages folded in a V."""
    return chunk_position("zb-v", rank, chunk, pp)


def _producers(pp: int, position, num_stages: int):
    """Map (pipeline, stage) -> (rank, chunk) and a dependency function for timeline()."""
    where = {}
    for r in range(pp):
        for c in (0, 1):
            where[position(r, c, pp)] = (r, c)

    def deps(rank: int, op: Op):
        pipe, stage = position(rank, op.chunk, pp)
        if op.kind == "F" and stage > 0:
            r, c = where[(pipe, stage - 1)]
            return [(r, Op("F", op.micro, c))]
        if op.kind == "B":
            if stage == num_stages - 1:
                return [(rank, Op("F", op.micro, op.chunk))]
            r, c = where[(pipe, stage + 1)]
            return [(r, Op("B", op.micro, c))]
        if op.kind == "W":
            return [(rank, Op("B", op.micro, op.chunk))]
        return []

    return deps


def _units(sched, groups):
    """Per rank, the ops as run units: a group's op indices together, every other op alone."""
    out = []
    for r, ops in enumerate(sched):
        own = groups[r] if groups else ()
        grouped = {i for g in own for i in g}
        first = {g[0]: tuple(g) for g in own}
        out.append([first[i] if i in first else (i,) for i in range(len(ops)) if i in first or i not in grouped])
    return out


def timeline(sched, position, num_stages: int, durations: dict, groups=None, group_duration=None,
             p2p_s: float = 0.0):
    """Replay a schedule: start and end time of every op, as {rank: [(op, start, end), ...]}.

    durations: seconds per kind ("F", "B" = input-gradient part, "W"); groups: per rank, tuples of op indices
    that run as one unit and all end together, taking the sum of their ops (a full backward B+W), or
    `group_duration` for a unit with a forward (DualPipe's F&B; default the sum, i.e. no overlap gain);
    p2p_s: transfer time between neighbouring stages on different ranks. Raises SpecError on a deadlock (an
    order that cannot run). Source: list scheduling of the op order (each rank is one compute stream), as
    pipeline figures are drawn (Narayanan et al. 2021 Fig. 4; DeepSeek-V3 Fig. 5)."""
    deps = _producers(len(sched), position, num_stages)
    units = _units(sched, groups)
    end: dict = {}
    out = {r: [] for r in range(len(sched))}
    ptr = [0] * len(sched)
    free = [0.0] * len(sched)
    while any(ptr[r] < len(units[r]) for r in range(len(sched))):
        progressed = False
        for r, ops in enumerate(sched):
            while ptr[r] < len(units[r]):
                unit = units[r][ptr[r]]
                inside = {ops[i] for i in unit}
                ready = free[r]
                for i in unit:
                    for rr, dep in deps(r, ops[i]):
                        if rr == r and dep in inside:
                            continue
                        if (rr, dep) not in end:
                            ready = None
                            break
                        ready = max(ready, end[(rr, dep)] + (p2p_s if rr != r else 0.0))
                    if ready is None:
                        break
                if ready is None:
                    break
                kinds = [ops[i].kind for i in unit]
                dur = sum(durations[k] for k in kinds)
                if len(unit) > 1 and group_duration is not None and "F" in kinds:
                    dur = group_duration
                for i in unit:
                    end[(r, ops[i])] = ready + dur
                    out[r].append((ops[i], ready, ready + dur))
                free[r] = ready + dur
                ptr[r] += 1
                progressed = True
        if not progressed:
            stuck = {r: sched[r][units[r][ptr[r]][0]] for r in range(len(sched)) if ptr[r] < len(units[r])}
            raise SpecError(f"schedule deadlocks: ranks wait on each other at {stuck}")
    return out


def bubble_s(tl) -> dict:
    """Per rank: idle time between its first op's start and its last op's end (the bubble the zero-bubble and
    DualPipe papers count; the initial offset of later ranks is not idle work lost within the step's span)."""
    out = {}
    for r, items in tl.items():
        spans = sorted({(s, e) for _, s, e in items})
        busy = sum(e - s for s, e in spans)
        out[r] = spans[-1][1] - spans[0][0] - busy
    return out


def makespan_s(tl) -> float:
    """Time from the first op's start to the last op's end over all ranks."""
    return max(e for items in tl.values() for _, _, e in items) - min(s for items in tl.values() for _, s, _ in items)
