"""SimPy replay of one training step over one representative rank per pipeline stage.

Symmetry: all data-parallel (and TP/CP) replicas of a pipeline stage do the same work at the same time, so one
representative rank per stage stands for all of them and the event count grows with stages x micro-batches x
layer chunks, not with devices. Stragglers break the symmetry; each distinct pattern of slow stages among the
replicas becomes one more *group* of representative ranks (see api.py), and the data-parallel collectives of a
stage wait for every group.

Actors (SimPy processes) per representative rank: the compute stream, which executes the schedule's ops in order
with the exposed TP/EP/CP collectives inline (they block it), and communication streams: `pp` (sends to the
neighbouring stages, asynchronous when overlap is on), `dp` (gradient reduce-scatter/all-reduce buckets and,
for ZeRO-1/2, the parameter all-gathers) and `gather` (ZeRO-3 weight all-gathers, prefetched one layer ahead).
Contended things are `SharedLink`s, one per port of a representative device in the cluster graph (tier x
device): concurrent transfers on one port share its bandwidth equally (processor sharing).

All durations come in through an `EngineSpec` built by api.py from the shared cost functions; this module only
orders them. Ties at equal times resolve in SimPy's (time, priority, insertion) order, so a run is deterministic;
jitter and stragglers come from an explicit numpy Generator.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import simpy

from .schedules import Op

#: Time categories of a rank's compute stream; they partition the step (with `overhead`).
CATEGORIES = ("compute", "recompute", "tp_comm", "cp_comm", "ep_comm", "pp_comm", "bubble", "dp_comm", "optimizer")
_COMM_CATEGORY = {"tp": "tp_comm", "cp": "cp_comm", "ep": "ep_comm", "pp": "pp_comm", "dp": "dp_comm"}
_IDX = {c: i for i, c in enumerate(CATEGORIES)}


# ------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Seg:
    """One piece of an op (usually one layer): `pre` blocking communication, compute, `post` blocking
    communication. Communication entries are (kind, seconds), kind one of tp, cp, ep, pp, dp.

    `gather_s` (ZeRO-3 with overlap) is a weight all-gather the segment needs, issued ahead by the gather stream;
    `reduce_s` a gradient reduce-scatter queued on the dp stream after it; `label` names it in traces.
    """

    compute_s: float = 0.0
    recompute_s: float = 0.0
    pre: tuple = ()
    post: tuple = ()
    gather_s: float = 0.0
    reduce_s: float = 0.0
    label: str = ""


@dataclass(frozen=True)
class Bucket:
    """A data-parallel gradient bucket (ZeRO 0-2, overlap on): reduced once the op `trigger` = (kind, chunk,
    segment index) of the last micro-batch has run that segment; `gather_s` > 0 re-gathers its parameters at the
    start of the step before the forward segment `first_use` = (chunk, segment index) of micro-batch 0."""

    reduce_s: float
    trigger: tuple
    gather_s: float = 0.0
    first_use: tuple = (0, 0)
    label: str = ""


@dataclass(frozen=True)
class StageSpec:
    """Work of one pipeline stage: its op list and the segments of each (kind, chunk) pass, plus the step's
    tail: blocking DP reduction (no bucket overlap), optimizer, blocking ZeRO-1/2 parameter all-gather."""

    ops: tuple
    segments: dict
    optimizer_s: float = 0.0
    dp_reduce_s: float = 0.0
    dp_gather_s: float = 0.0
    buckets: tuple = ()
    label: str = ""


@dataclass(frozen=True)
class EngineSpec:
    """Everything the engine replays. `tier_shares[kind]` = ((tier, fraction), ...) of that kind's traffic;
    `devices[g][r]` is the representative device of stage r in group g (its ports are the links);
    `slowdown[g][r]` multiplies compute of stage r in group g (stragglers)."""

    pp: int
    vpp: int
    num_micro: int
    stages: tuple
    p2p_s: float = 0.0
    overlap: bool = True
    contention: bool = True
    tier_shares: dict = field(default_factory=dict)
    overhead_s: float = 0.0
    slowdown: tuple = ()
    devices: tuple = ()
    graph: object = None
    jitter: float = 0.0
    group_labels: tuple = ()
    per_layer: bool = False     # replay every segment as its own events (same times; for checks and benchmarks)


# ------------------------------------------------------------------------------------------------ outputs
class Span(NamedTuple):
    """One interval of a timeline: group, stage, stream, name, category, start and end (seconds)."""

    group: int
    stage: int
    stream: str
    name: str
    category: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Timeline:
    spans: tuple
    num_stages: int
    streams: tuple
    stage_labels: tuple = ()
    group_labels: tuple = ()
    step_time_s: float = 0.0


@dataclass(frozen=True)
class EngineResult:
    step_time_s: float                  # including the fixed overhead
    pipeline_end_s: float               # when the last op of any stage finished
    accounts: dict                      # (group, stage) -> {category: seconds}, partitioning step - overhead
    busy_s: dict                        # (group, stage) -> seconds the compute stream was occupied (ops, tail)
    ops_s: dict                         # (group, stage) -> seconds of pipeline ops (forward/backward passes)
    end_s: dict                         # (group, stage) -> when the stage finished its step (before overhead)
    ops_end_s: dict                     # (group, stage) -> when the stage finished its last pipeline op
    tails: dict                         # (group, stage) -> [(category, start, end)] after its last op
    pacing: tuple                       # (group, stage) with the most pipeline work
    breakdown_s: dict                   # the step by category along its critical path (sums to step_time_s):
    # the pacing rank's passes and waits up to the end of the pipeline, its waits split into what the ops it
    # waited for spent on transfers and parameter gathers (pp_comm, dp_comm) and the rest (bubble: other
    # stages computing); after the pipeline, the tail of the rank that finishes last (exposed gradient
    # reduction, barrier, optimizer, parameter gather); plus the fixed overhead.
    contention_delay_s: dict            # kind -> seconds transfers took beyond their nominal time (all ranks)
    num_events: int
    timeline: Timeline


# ------------------------------------------------------------------------------------------------ resources
class CountingEnvironment(simpy.Environment):
    """simpy.Environment that counts processed events."""

    def __init__(self):
        super().__init__()
        self.num_events = 0

    def step(self):
        self.num_events += 1
        return super().step()


class SharedLink:
    """One port (device x tier) whose bandwidth concurrent transfers share equally (processor sharing).

    A transfer is given in seconds at the full bandwidth. With n transfers active each progresses at 1/n: a
    virtual clock advances at rate 1/n and a transfer finishes when it has advanced by its size, so two equal
    transfers started together both take twice as long (Kleinrock's processor sharing; NCCL channels of
    concurrent collectives on one NIC share it about equally).
    """

    __slots__ = ("env", "name", "_v", "_last", "_heap", "_seq", "_gen", "busy_s", "peak_flows")

    def __init__(self, env: simpy.Environment, name: str = ""):
        self.env = env
        self.name = name
        self._v = 0.0
        self._last = 0.0
        self._heap: list = []
        self._seq = 0
        self._gen = 0
        self.busy_s = 0.0
        self.peak_flows = 0

    def _advance(self) -> None:
        n = len(self._heap)
        now = self.env.now
        if n:
            self._v += (now - self._last) / n
            self.busy_s += now - self._last
        self._last = now

    def transfer(self, seconds: float) -> simpy.Event:
        """Event that fires when a transfer of `seconds` (at full bandwidth) started now has finished."""
        ev = self.env.event()
        self._advance()
        heapq.heappush(self._heap, (self._v + seconds, self._seq, ev))
        self._seq += 1
        self.peak_flows = max(self.peak_flows, len(self._heap))
        self._schedule()
        return ev

    @property
    def active(self) -> int:
        return len(self._heap)

    def _schedule(self) -> None:
        self._gen += 1
        if not self._heap:
            return
        wait = max(0.0, (self._heap[0][0] - self._v) * len(self._heap))
        gen = self._gen
        self.env.timeout(wait).callbacks.append(lambda _e: self._wake(gen))

    def _wake(self, gen: int) -> None:
        if gen != self._gen:
            return                                   # superseded by a later arrival or departure
        self._advance()
        vf = self._heap[0][0]
        self._v = max(self._v, vf)
        while self._heap and self._heap[0][0] <= self._v + 1e-12 * max(1.0, abs(self._v)):
            heapq.heappop(self._heap)[2].succeed()
        self._schedule()


# ------------------------------------------------------------------------------------------------- engine
class StepSimulation:
    """One replay of `spec`. `rng` draws jitter; `run()` returns an EngineResult."""

    def __init__(self, spec: EngineSpec, rng: np.random.Generator | None = None):
        self.spec = spec
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.env = CountingEnvironment()
        s = spec
        self.num_groups = max(1, len(s.slowdown))
        self.slow = s.slowdown or ((1.0,) * s.pp,)
        self.num_chunks = s.pp * s.vpp
        self.spans: list = []
        self.accounts = {}
        self.busy = {}
        self.delay = {}
        self.links = {}
        if s.contention and s.graph is not None:
            from ..topology.graph import ports
            for g in range(self.num_groups):
                for r in range(s.pp):
                    for tier, dev, sw in ports(s.graph, s.devices[g][r]):
                        self.links[(g, r, tier)] = SharedLink(self.env, f"{dev}->{sw}")
        # jitter: one lognormal factor (mean 1) per op of each representative rank, drawn in a fixed order
        self.jit = {}
        for g in range(self.num_groups):
            for r in range(s.pp):
                n = len(s.stages[r].ops)
                if s.jitter > 0:
                    self.jit[(g, r)] = self.rng.lognormal(-0.5 * s.jitter ** 2, s.jitter, size=n)
                else:
                    self.jit[(g, r)] = None
        # Which kinds of transfer go through the shared ports. Asynchronous streams (pipeline sends with overlap,
        # data-parallel/ZeRO collectives) do; an inline (blocking) collective can only be slowed by them, so it
        # becomes a port transfer only where its tiers meet theirs, else a fixed delay (same result, fewer events).
        self.flow_kinds = set()
        if self.links:
            tiers = lambda k: {t for t, _ in s.tier_shares.get(k, ())}
            async_kinds = {"dp"} | ({"pp"} if s.overlap else set())
            async_tiers = set().union(*(tiers(k) for k in async_kinds))
            self.flow_kinds = set(async_kinds)
            for k in ("tp", "ep", "cp"):
                if tiers(k) & async_tiers:
                    self.flow_kinds.add(k)
            if not s.overlap:
                self.flow_kinds = set()           # everything blocks: one transfer per rank at a time
        self.arrivals = {}
        self.pipeline_end = 0.0
        self.tails = {}
        self.end_time = {}
        self.ops_busy = {}
        self.ops_end = {}
        self.done_time = {}
        self.op_log = {}          # (g, r) -> [(start, end, input key or None, [(category, t0, t1) waits inside])]
        self.send_log = {}        # input key -> (g, r, op index, sent at, arrived at)
        self._prep_ops()

    # ---- preparation: per (stage, kind, chunk) op totals by category and segment end offsets ------------------
    def _prep_ops(self) -> None:
        s = self.spec
        self.op_info = []
        for r, st in enumerate(s.stages):
            info = {}
            for key, segs in st.segments.items():
                comp = sum(x.compute_s for x in segs)
                rc = sum(x.recompute_s for x in segs)
                comm = {}
                for x in segs:
                    for kind, sec in x.pre + x.post:
                        comm[kind] = comm.get(kind, 0.0) + sec
                ends = []
                t = 0.0
                for x in segs:
                    t += x.compute_s + sum(sec for _, sec in x.pre + x.post)
                    ends.append(t)
                needs_segments = any(x.gather_s > 0 or x.reduce_s > 0 for x in segs)
                has_comm = any(k_ in self.flow_kinds for x in segs for k_, _ in x.pre + x.post)
                info[key] = (comp, rc, comm, tuple(ends), needs_segments, has_comm)
            self.op_info.append(info)
        # bucket triggers and first uses per stage
        self.triggers = []
        self.first_uses = []
        for r, st in enumerate(s.stages):
            trig = {}
            fu = {}
            for b, bk in enumerate(st.buckets):
                trig.setdefault((bk.trigger[0], bk.trigger[1]), []).append((bk.trigger[2], b))
                if bk.gather_s > 0:
                    fu.setdefault(bk.first_use, []).append(b)
            self.triggers.append(trig)
            self.first_uses.append(fu)

    # ---- communication -------------------------------------------------------------------------------------
    def comm(self, g: int, r: int, kind: str, seconds: float):
        """Event for a transfer of `kind` taking `seconds` when uncontended, from representative rank (g, r):
        a fixed delay, or transfers on the rank's ports of the tiers the kind crosses, one after the other,
        each taking its share of the time at full bandwidth (hierarchical collectives run level by level)."""
        env = self.env
        if seconds <= 0.0:
            return env.timeout(0.0)
        if kind not in self.flow_kinds:
            return env.timeout(seconds)
        shares = self.spec.tier_shares.get(kind, ())
        parts = [(self.links[(g, r, k)], seconds * w) for k, w in shares if (g, r, k) in self.links]
        if not parts:
            return env.timeout(seconds)
        start = env.now
        done = env.event()

        def step(i: int):
            if i == len(parts):
                self.delay[kind] = self.delay.get(kind, 0.0) + (env.now - start - seconds)
                done.succeed()
                return
            link, sec = parts[i]
            link.transfer(sec).callbacks.append(lambda _e: step(i + 1))

        step(0)
        return done

    def _arrival(self, key):
        ev = self.arrivals.get(key)
        if ev is None:
            ev = self.arrivals[key] = self.env.event()
        return ev

    # ---- processes -----------------------------------------------------------------------------------------
    def run(self) -> EngineResult:
        s, env = self.spec, self.env
        G, P = self.num_groups, s.pp
        self.done_ev = {(g, r): env.event() for g in range(G) for r in range(P)}
        self.end_ev = {(g, r): env.event() for g in range(G) for r in range(P)}
        self.barrier = env.all_of(list(self.done_ev.values()))
        self.final = env.all_of(list(self.end_ev.values()))
        # data-parallel buckets (shared by the groups), ZeRO-1/2 start-of-step gathers
        self.bucket_ready = {}
        self.bucket_done = {}
        self.gather_done = {}
        for r, st in enumerate(s.stages):
            for b, bk in enumerate(st.buckets):
                self.bucket_ready[(r, b)] = [env.event() for _ in range(G)]
                self.bucket_done[(r, b)] = env.event()
                if bk.gather_s > 0:
                    self.gather_done[(r, b)] = env.event()
            if st.buckets:
                env.process(self._dp_buckets(r))
        # ZeRO-3 streams
        self.z3 = {}
        for g in range(G):
            for r, st in enumerate(s.stages):
                seq = []
                n_red = 0
                for oi, op in enumerate(st.ops):
                    for si, x in enumerate(st.segments[(op.kind, op.chunk)]):
                        if x.gather_s > 0:
                            seq.append((oi, si, x.gather_s))
                        if x.reduce_s > 0:
                            n_red += 1
                if seq or n_red:
                    z = {"seq": seq, "done": [env.event() for _ in seq], "used": [env.event() for _ in seq],
                         "store": simpy.Store(env), "n_red": n_red, "red_done": env.event(), "next": 0}
                    self.z3[(g, r)] = z
                    if seq:
                        env.process(self._z3_gathers(g, r, z))
                    if n_red:
                        env.process(self._z3_reduces(g, r, z))
        for g in range(G):
            for r in range(P):
                self.accounts[(g, r)] = [0.0] * len(CATEGORIES)
                env.process(self._stage(g, r))
        env.run()
        if len(self.end_time) != G * P:                 # a schedule whose dependencies cannot all be met
            stuck = sorted(set(self.done_ev) - set(self.end_time))
            raise RuntimeError(f"replay stopped at t={env.now:.6g} s with ranks {stuck} unfinished")
        end = max(self.end_time.values())
        step = end + s.overhead_s
        accounts = {k: dict(zip(CATEGORIES, v)) for k, v in self.accounts.items()}
        pace, bd = self.breakdown(s.overhead_s)
        streams = ["compute", "pp", "dp"] + (["gather"] if any(z["seq"] for z in self.z3.values()) else [])
        tl = Timeline(spans=tuple(self.spans), num_stages=P, streams=tuple(streams),
                      stage_labels=tuple(st.label for st in s.stages), group_labels=tuple(s.group_labels),
                      step_time_s=step)
        return EngineResult(step_time_s=step, pipeline_end_s=self.pipeline_end, accounts=accounts,
                            busy_s=dict(self.busy), ops_s=dict(self.ops_busy), end_s=dict(self.end_time),
                            ops_end_s=dict(self.ops_end), tails={k: tuple(v) for k, v in self.tails.items()},
                            pacing=pace, breakdown_s=bd,
                            contention_delay_s=dict(self.delay),
                            num_events=env.num_events, timeline=tl)

    def _span(self, g, r, stream, name, cat, t0, t1):
        self.spans.append(Span(g, r, stream, name, cat, t0, t1))

    def _dp_buckets(self, r: int):
        """dp stream of stage r: start-of-step parameter gathers (forward order), then bucket reductions."""
        env, st = self.env, self.spec.stages[r]
        order = [b for b in reversed(range(len(st.buckets))) if st.buckets[b].gather_s > 0]
        for b in order:
            t0 = env.now
            yield self.comm(0, r, "dp", st.buckets[b].gather_s)
            self._span(0, r, "dp", f"all-gather {st.buckets[b].label}", "dp", t0, env.now)
            self.gather_done[(r, b)].succeed()
        for b, bk in enumerate(st.buckets):
            ready = self.bucket_ready[(r, b)]
            yield ready[0] if len(ready) == 1 else env.all_of(ready)
            t0 = env.now
            yield self.comm(0, r, "dp", bk.reduce_s)
            self._span(0, r, "dp", f"reduce {bk.label}", "dp", t0, env.now)
            self.bucket_done[(r, b)].succeed()

    def _z3_gathers(self, g: int, r: int, z: dict):
        """ZeRO-3 gather stream: weights of segment i are gathered once segment i-1 has started (prefetch 1)."""
        env = self.env
        for i, (oi, si, sec) in enumerate(z["seq"]):
            if i > 0 and not z["used"][i - 1].processed:
                yield z["used"][i - 1]
            t0 = env.now
            yield self.comm(g, r, "dp", sec)
            self._span(g, r, "gather", "all-gather", "dp", t0, env.now)
            z["done"][i].succeed()

    def _z3_reduces(self, g: int, r: int, z: dict):
        env = self.env
        for _ in range(z["n_red"]):
            sec = yield z["store"].get()
            t0 = env.now
            yield self.comm(g, r, "dp", sec)
            self._span(g, r, "dp", "reduce-scatter", "dp", t0, env.now)
        z["red_done"].succeed()

    def _stage(self, g: int, r: int):
        """Compute stream of stage r in group g."""
        s, env = self.spec, self.env
        st = s.stages[r]
        acct = self.accounts[(g, r)]
        info = self.op_info[r]
        jit = self.jit[(g, r)]
        slow = self.slow[g][r]
        J = self.num_chunks
        m_last = s.num_micro - 1
        overlap = s.overlap
        segmented_all = bool(self.flow_kinds)
        per_layer = s.per_layer
        z = self.z3.get((g, r))
        trig = self.triggers[r]
        fu = self.first_uses[r]
        busy = 0.0
        free = 0.0
        log = self.op_log[(g, r)] = []
        for oi, op in enumerate(st.ops):
            kind, micro, chunk = op
            j = chunk * s.pp + r
            # ---- wait for the input of this pass ----
            dep = dep_key = None
            if kind == "F" and j > 0:
                dep_key = (g, "F", micro, j)
            elif kind == "B" and j < J - 1:
                dep_key = (g, "B", micro, j)
            if dep_key is not None:
                dep = self._arrival(dep_key)
            if dep is not None:
                if not dep.processed:
                    yield dep
                now = env.now
                if now > free:
                    sent = dep.value
                    pp_wait = max(0.0, now - max(free, sent))
                    acct[6] += (now - free) - pp_wait
                    acct[5] += pp_wait
            start = env.now
            if start > free and dep is None:
                acct[6] += start - free
            f_jit = 1.0 if jit is None else float(jit[oi])
            cf = slow * f_jit
            comp, rc, comm_tot, ends, needs_seg, has_comm = info[(kind, chunk)]
            trig_here = trig.get((kind, chunk)) if micro == m_last else None
            fu_here = fu.get if (kind == "F" and micro == 0 and fu) else None
            segmented = per_layer or needs_seg or fu_here is not None or (segmented_all and has_comm)
            if not segmented:
                d = comp * cf + sum(comm_tot.values()) * f_jit
                if trig_here:
                    for si, b in trig_here:
                        t_ready = ends[si] * (d / ends[-1]) if ends[-1] > 0 else 0.0
                        self._timer(t_ready, self.bucket_ready[(r, b)][g])
                yield env.timeout(d)
                acct[0] += (comp - rc) * cf
                acct[1] += rc * cf
                for k_, sec in comm_tot.items():
                    acct[_IDX[_COMM_CATEGORY[k_]]] += sec * f_jit
                waits = ()
            else:
                waits = []
                yield from self._run_segments(g, r, op, st.segments[(kind, chunk)], cf, f_jit, acct, z,
                                              trig_here, fu_here, waits)
            end = env.now
            log.append((start, end, dep_key, waits))
            busy += end - start
            self._span(g, r, "compute", str(op), kind, start, end)
            free = end
            # ---- send the output to the neighbouring stage ----
            if s.pp > 1:
                if kind == "F" and j < J - 1:
                    self._send(g, r, oi, (g, "F", micro, j + 1), f"send F{micro}", overlap)
                elif kind == "B" and j > 0:
                    self._send(g, r, oi, (g, "B", micro, j - 1), f"send B{micro}", overlap)
        self.pipeline_end = max(self.pipeline_end, env.now)
        self.ops_busy[(g, r)] = busy
        self.ops_end[(g, r)] = env.now
        tail = self.tails[(g, r)] = []
        # ---- tail: gradient reduction, barrier, optimizer, parameter gather ----
        t0 = env.now
        if st.dp_reduce_s > 0:
            yield self.comm(g, r, "dp", st.dp_reduce_s)
            self._span(g, r, "dp", "gradient reduce", "dp", t0, env.now)
            busy += env.now - t0
        if st.buckets:
            last = [self.bucket_done[(r, b)] for b in range(len(st.buckets))]
            pending = [e for e in last if not e.processed]
            if pending:
                yield env.all_of(pending)
        if z is not None and z["n_red"]:
            if not z["red_done"].processed:
                yield z["red_done"]
        acct[7] += env.now - t0
        tail.append(("dp_comm", t0, env.now))
        self.done_time[(g, r)] = env.now
        self.done_ev[(g, r)].succeed()
        t1 = env.now
        if not self.barrier.processed:
            yield self.barrier
        acct[6] += env.now - t1
        tail.append(("bubble", t1, env.now))
        t2 = env.now
        opt = st.optimizer_s * slow
        if opt > 0:
            yield env.timeout(opt)
            self._span(g, r, "compute", "optimizer", "optimizer", t2, env.now)
        acct[8] += opt
        tail.append(("optimizer", t2, t2 + opt))
        busy += opt
        if st.dp_gather_s > 0:
            t3 = env.now
            yield self.comm(g, r, "dp", st.dp_gather_s)
            self._span(g, r, "dp", "parameter all-gather", "dp", t3, env.now)
            acct[7] += env.now - t3
            tail.append(("dp_comm", t3, env.now))
            busy += env.now - t3
        self.end_time[(g, r)] = env.now
        self.end_ev[(g, r)].succeed()
        t4 = env.now
        if not self.final.processed:
            yield self.final
        acct[6] += env.now - t4
        tail.append(("bubble", t4, env.now))
        self.busy[(g, r)] = busy

    # ---- attribution ----------------------------------------------------------------------------------------
    def _explain(self, g: int, r: int, idx: int, lo: float, out: dict) -> None:
        """Walk the chain of ops that ends with op `idx` of rank (g, r) back to time `lo`, adding to `out` the
        waits on it that are not computation: transfers in flight between stages (pp_comm) and waits for
        parameter gathers (dp_comm). At each op the chain continues with what started it: its input, when that
        arrived after the rank's previous op ended, else the previous op."""
        log = self.op_log
        while idx >= 0:
            start, end, dep, waits = log[(g, r)][idx]
            if end <= lo:
                return
            for cat, a, b in waits:
                if b > lo:
                    out[cat] = out.get(cat, 0.0) + b - max(a, lo)
            if start <= lo:
                return
            prev_end = log[(g, r)][idx - 1][1] if idx > 0 else 0.0
            if dep is not None:
                sg, sr, sidx, t_sent, t_arr = self.send_log[dep]
                if t_arr > prev_end:
                    if t_arr > max(t_sent, lo):
                        out["pp_comm"] = out.get("pp_comm", 0.0) + t_arr - max(t_sent, lo)
                    g, r, idx = sg, sr, sidx
                    continue
            idx -= 1

    def breakdown(self, overhead_s: float) -> tuple[tuple, dict]:
        """The step time split by kind, and the pacing rank (see EngineResult.breakdown_s)."""
        ops_s, end_s, ops_end = self.ops_busy, self.end_time, self.ops_end
        pace = sorted(ops_s, key=lambda k: (-ops_s[k], k))[0]
        t_pipe = max(ops_end.values())
        t_end = max(end_s.values())
        acct = dict(zip(CATEGORIES, self.accounts[pace]))
        for cat, t0, t1 in self.tails[pace]:
            acct[cat] -= t1 - t0
        # the pacing rank's idle time: what the chain it waited for spent on transfers and gathers
        moved = {}
        log = self.op_log[pace]
        for i, (start, end, dep, waits) in enumerate(log):
            free = log[i - 1][1] if i else 0.0
            if dep is not None and start > free:
                sg, sr, sidx, t_sent, t_arr = self.send_log[dep]
                if t_sent > free:
                    self._explain(sg, sr, sidx, free, moved)
        last = sorted(ops_end, key=lambda k: (-ops_end[k], k))[0]
        if t_pipe > ops_end[pace]:
            acct["bubble"] += t_pipe - ops_end[pace]
            self._explain(last[0], last[1], len(self.op_log[last]) - 1, ops_end[pace], moved)
        for cat, v in moved.items():
            acct[cat] += v
            acct["bubble"] -= v
        # after the pipeline: up to the barrier (gradient norm, before the optimizer) the rank that reached it
        # last (its exposed gradient reduction), after it the rank that finishes the step last
        done = self.done_time
        t_barrier = max(done.values())
        tol = 1e-12 * max(1.0, t_end)
        key = lambda times: (lambda k: (-round(times[k] / tol), -round(ops_end[k] / tol), k))
        last_in = sorted(done, key=key(done))[0]
        crit = sorted(end_s, key=key(end_s))[0]
        for rank, lo_, hi_ in ((last_in, t_pipe, t_barrier), (crit, t_barrier, t_end)):
            for cat, t0, t1 in self.tails[rank]:
                lo, hi = max(t0, lo_), min(t1, hi_)
                if hi > lo:
                    acct[cat] += hi - lo
        acct["overhead"] = float(overhead_s)
        return pace, acct

    def _timer(self, delay: float, ev: simpy.Event) -> None:
        self.env.timeout(delay).callbacks.append(lambda _e: ev.succeed())

    def _send(self, g, r, oi, key, name, overlap):
        env = self.env
        ev = self._arrival(key)
        t0 = env.now
        if not overlap:
            self.send_log[key] = (g, r, oi, t0, t0)
            ev.succeed(t0)                       # the blocking exchange was part of the op
            return
        done = self.comm(g, r, "pp", self.spec.p2p_s)

        def arrived(_e, t0=t0):
            self._span(g, r, "pp", name, "pp", t0, env.now)
            self.send_log[key] = (g, r, oi, t0, env.now)
            ev.succeed(t0)

        done.callbacks.append(arrived)

    def _run_segments(self, g, r, op, segs, cf, f_jit, acct, z, trig_here, fu_here, waits):
        """Run an op segment by segment (contention, ZeRO gathers, bucket triggers at segment ends)."""
        env = self.env
        trig_at = {}
        if trig_here:
            for si, b in trig_here:
                trig_at.setdefault(si, []).append(b)
        for si, x in enumerate(segs):
            if fu_here is not None:
                for b in fu_here((op.chunk, si), ()):
                    ev = self.gather_done[(r, b)]
                    if not ev.processed:
                        t0 = env.now
                        yield ev
                        acct[7] += env.now - t0
                        waits.append(("dp_comm", t0, env.now))
            if x.gather_s > 0 and z is not None:
                i = z["next"]
                z["next"] = i + 1
                ev = z["done"][i]
                if not ev.processed:
                    t0 = env.now
                    yield ev
                    acct[7] += env.now - t0
                    waits.append(("dp_comm", t0, env.now))
                z["used"][i].succeed()
            for kind, sec in x.pre:
                t0 = env.now
                yield self.comm(g, r, kind, sec * f_jit)
                acct[_IDX[_COMM_CATEGORY[kind]]] += env.now - t0
            if x.compute_s > 0:
                yield env.timeout(x.compute_s * cf)
                acct[0] += (x.compute_s - x.recompute_s) * cf
                acct[1] += x.recompute_s * cf
            for kind, sec in x.post:
                t0 = env.now
                yield self.comm(g, r, kind, sec * f_jit)
                acct[_IDX[_COMM_CATEGORY[kind]]] += env.now - t0
            if x.reduce_s > 0 and z is not None:
                z["store"].put(x.reduce_s)
            for b in trig_at.get(si, ()):
                self.bucket_ready[(r, b)][g].succeed()


def simulate_spec(spec: EngineSpec, rng: np.random.Generator | None = None) -> EngineResult:
    """Replay `spec` once."""
    return StepSimulation(spec, rng).run()
