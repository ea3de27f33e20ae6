"""SimPy replay of one training step over one representative rank per pipeline stage.

Symmetry: all data-parallel (and TP/CP) replicas of a pipeline stage do the same work at the same time, so one
representative rank per stage stands for all of them and the event count grows with stages x micro-batches x
layer chunks, not with devices. Stragglers break the symmetry; each distinct pattern of slow stages among the
replicas becomes one more *group* of representative ranks (des.stragglers), and the data-parallel collectives of a
stage wait for every group.

Actors (SimPy processes) per representative rank: the compute stream, which executes the schedule's ops in order
with the exposed TP/EP/CP collectives inline (they block it), and communication streams: `pp` (sends to the
neighbouring stages, asynchronous when overlap is on), `dp` (gradient reduce-scatter/all-reduce buckets and,
for ZeRO-1/2, the parameter all-gathers) and `gather` (ZeRO-3 weight all-gathers, prefetched one layer ahead).
Contended things are `SharedLink`s, one per port of a representative device of the cluster (topology.graph: tier x
device): concurrent transfers on one port share its bandwidth equally (processor sharing).

All durations come in through an `EngineSpec` (des.spec) built by des.plan from the shared cost functions; this
module only orders them and keeps the accounts (des.accounting). Ties at equal times resolve in SimPy's (time,
priority, insertion) order, so a run is deterministic; jitter and stragglers come from an explicit numpy
Generator.
"""
from __future__ import annotations

import heapq

import numpy as np
import simpy

from .accounting import CATEGORIES, Account, ReplayLog, critical_path_breakdown  # noqa: F401 (CATEGORIES re-exported)
from .spec import Bucket, EngineResult, EngineSpec, Seg, Span, StageSpec, Timeline  # noqa: F401 (re-exported)


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

    __slots__ = ("env", "name", "_v", "_last", "_heap", "_seq", "_gen", "busy_s", "peak_flows", "_rate")

    def __init__(self, env: simpy.Environment, name: str = "", rate=None):
        """`rate(n)`: the speed of each of n concurrent transfers relative to a transfer alone at full bandwidth
        (None: processor sharing, 1/n)."""
        self.env = env
        self.name = name
        self._rate = rate
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
            self._v += (now - self._last) / n if self._rate is None else (now - self._last) * self._rate(n)
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
        ahead = self._heap[0][0] - self._v
        wait = max(0.0, ahead * len(self._heap) if self._rate is None else ahead / self._rate(len(self._heap)))
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

    def __init__(self, spec: EngineSpec, rng: np.random.Generator | None = None, env=None, links=None):
        self.spec = spec
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.env = env if env is not None else CountingEnvironment()
        s = spec
        self.num_groups = max(1, len(s.slowdown))
        self.slow = s.slowdown or ((1.0,) * s.pp,)
        self.num_chunks = s.num_stages or s.pp * s.vpp          # stages of one pipeline
        self.pending_sends = {}                                  # (g, r) -> {op index: [(op index, op)]}
        self.rank_at = {pos: r for r, row in enumerate(s.positions) for pos in row}   # (pipeline, stage) -> rank
        self.spans: list = []
        self.log = ReplayLog()
        self.busy = {}
        self.delay = {}
        self.links = dict(links or {})                # (g, r, tier) -> SharedLink, possibly another job's too
        if s.contention and s.graph is not None and links is None:
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
        self.host_links = self._host_links() if s.contention else {}
        self.arrivals = {}
        self.pipeline_end = 0.0
        self._prep_ops()

    def _host_links(self) -> dict:
        """One host link per node and direction (h2d, d2h) for the representative ranks that copy over it,
        keyed (group, stage, direction); empty when the plan has no host transfers or no devices."""
        s = self.spec
        moves = any(x.fetch_s > 0 or x.offload_s > 0 or any(k == "offload" for k, _ in x.pre + x.post)
                    for st in s.stages for segs in st.segments.values() for x in segs)
        if not moves or not s.devices:
            return {}
        links, out = {}, {}
        for g in range(self.num_groups):
            nodes = [int(s.devices[g][r]) // max(1, s.devices_per_node) for r in range(s.pp)]
            for r, node in enumerate(nodes):
                k = nodes.count(node)
                alpha, beta = s.host_link_ratio, s.host_node_ratio * k
                for d in ("h2d", "d2h"):
                    if (g, node, d) not in links:
                        links[(g, node, d)] = SharedLink(self.env, f"node {node} host {d}",
                                                         rate=lambda a, al=alpha, be=beta: min(al, be / a))
                    out[(g, r, d)] = links[(g, node, d)]
        return out

    def host(self, g: int, r: int, direction: str, seconds: float):
        """Event for a host-link copy of `seconds` (at the device's share) in `direction` (h2d, d2h) from rank
        (g, r): on its node's link with contention, else a fixed delay."""
        link = self.host_links.get((g, r, direction))
        if seconds <= 0.0 or link is None:
            return self.env.timeout(max(0.0, seconds))
        start, done = self.env.now, self.env.event()

        def finished(_e):
            self.delay["offload"] = self.delay.get("offload", 0.0) + (self.env.now - start - seconds)
            done.succeed()

        link.transfer(seconds).callbacks.append(finished)
        return done

    # ---- preparation: per (stage, kind, chunk) op totals by category and segment end offsets ------------------
    def _prep_ops(self) -> None:
        s = self.spec
        self.op_info = []
        for r, st in enumerate(s.stages):
            info = {}
            for key, segs in st.segments.items():
                comp = sum(x.compute_s for x in segs)
                rc = sum(x.recompute_s for x in segs)
                parts = {}
                for x in segs:
                    for cat, sec in x.parts:
                        parts[cat] = parts.get(cat, 0.0) + sec
                comm = {}
                for x in segs:
                    for kind, sec in x.pre + x.post:
                        comm[kind] = comm.get(kind, 0.0) + sec
                ends = []
                t = 0.0
                for x in segs:
                    t += x.compute_s + sum(sec for _, sec in x.pre + x.post)
                    ends.append(t)
                needs_segments = any(x.gather_s > 0 or x.reduce_s > 0 or x.fetch_s > 0 or x.offload_s > 0
                                     for x in segs)
                has_comm = any(k_ in self.flow_kinds for x in segs for k_, _ in x.pre + x.post)
                info[key] = (comp, rc, parts, comm, tuple(ends), needs_segments, has_comm)
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
        self.start()
        self.env.run()
        return self.finish()

    def start(self) -> None:
        """Create the step's events and processes (the environment runs them: run(), or replay_together)."""
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
        # ZeRO-3 and host-link streams; the delayed CPU optimizer step (from the step's start)
        self.z3 = {}
        self.cpu_done = {}
        for g in range(G):
            for r, st in enumerate(s.stages):
                seq = []
                n_red = n_d2h = 0
                for oi, op in enumerate(st.ops):
                    for si, x in enumerate(st.segments[(op.kind, op.chunk)]):
                        if x.gather_s > 0 or x.fetch_s > 0:
                            seq.append((oi, si, x.gather_s, x.fetch_s))
                        n_red += x.reduce_s > 0
                        n_d2h += x.offload_s > 0
                if seq or n_red or n_d2h:
                    z = {"seq": seq, "done": [env.event() for _ in seq], "used": [env.event() for _ in seq],
                         "fetched": [0.0] * len(seq), "store": simpy.Store(env), "n_red": n_red,
                         "red_done": env.event(), "next": 0, "d2h": simpy.Store(env), "n_d2h": n_d2h,
                         "d2h_done": env.event()}
                    self.z3[(g, r)] = z
                    if seq:
                        env.process(self._z3_gathers(g, r, z))
                    if n_red:
                        env.process(self._z3_reduces(g, r, z))
                    if n_d2h:
                        env.process(self._d2h_copies(g, r, z))
                if st.offload_update_s > 0 and s.offload_delayed_update:
                    self.cpu_done[(g, r)] = env.timeout(st.offload_update_s * self.slow[g][r])
        for g in range(G):
            for r in range(P):
                self.log.accounts[(g, r)] = Account()
                env.process(self._stage(g, r))

    def finish(self) -> EngineResult:
        """The EngineResult of a replay whose environment has run."""
        s, env = self.spec, self.env
        G, P = self.num_groups, s.pp
        log = self.log
        if len(log.end_time) != G * P:                  # a schedule whose dependencies cannot all be met
            stuck = sorted(set(self.done_ev) - set(log.end_time))
            raise RuntimeError(f"replay stopped at t={env.now:.6g} s with ranks {stuck} unfinished")
        end = max(log.end_time.values())
        step = end + s.overhead_s
        accounts = {k: v.as_dict() for k, v in log.accounts.items()}
        pace, bd = critical_path_breakdown(log, s.overhead_s)
        streams = ["compute", "pp", "dp"] + (["gather"] if any(z["seq"] for z in self.z3.values()) else []) \
            + (["host"] if any(sp.stream == "host" for sp in self.spans) else [])
        tl = Timeline(spans=tuple(self.spans), num_stages=P, streams=tuple(streams),
                      stage_labels=tuple(st.label for st in s.stages), group_labels=tuple(s.group_labels),
                      step_time_s=step)
        return EngineResult(step_time_s=step, pipeline_end_s=self.pipeline_end, accounts=accounts,
                            busy_s=dict(self.busy), ops_s=dict(log.ops_busy), end_s=dict(log.end_time),
                            ops_end_s=dict(log.ops_end), tails={k: tuple(v) for k, v in log.tails.items()},
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
        """Prefetch stream: what segment i needs is brought in once segment i-1 has started (prefetch 1): its
        host-to-device copy (offload), then its ZeRO-3 weight all-gather."""
        env = self.env
        for i, (oi, si, sec, fetch) in enumerate(z["seq"]):
            if i > 0 and not z["used"][i - 1].processed:
                yield z["used"][i - 1]
            if fetch > 0:
                t0 = env.now
                yield self.host(g, r, "h2d", fetch)
                self._span(g, r, "host", "host to device", "offload", t0, env.now)
            z["fetched"][i] = env.now
            if sec > 0:
                t0 = env.now
                yield self.comm(g, r, "dp", sec)
                self._span(g, r, "gather", "all-gather", "dp", t0, env.now)
            z["done"][i].succeed()

    def _d2h_copies(self, g: int, r: int, z: dict):
        """Device-to-host stream: activation checkpoints and gradient partitions, in the order they are queued."""
        return self._serve_queue(g, r, z["n_d2h"], z["d2h"], self.host, "d2h",
                                 ("host", "device to host", "offload"), z["d2h_done"])

    def _z3_reduces(self, g: int, r: int, z: dict):
        """ZeRO-3 gradient reduce-scatters, one per layer, in the order the backward queues them."""
        return self._serve_queue(g, r, z["n_red"], z["store"], self.comm, "dp", ("dp", "reduce-scatter", "dp"),
                                 z["red_done"])

    def _serve_queue(self, g: int, r: int, n: int, queue, transfer, kind: str, span: tuple, done):
        """A stream that serves `n` queued transfers in order (each `transfer(g, r, kind, seconds)`), draws each as
        a span (lane, name, category) and triggers `done` after the last."""
        env = self.env
        for _ in range(n):
            sec = yield queue.get()
            t0 = env.now
            yield transfer(g, r, kind, sec)
            self._span(g, r, span[0], span[1], span[2], t0, env.now)
        done.succeed()

    def _stage(self, g: int, r: int):
        """Compute stream of stage r in group g: the schedule's passes in order, then the step's tail."""
        env = self.env
        acct = self.log.accounts[(g, r)]
        busy = 0.0
        free = 0.0
        log = self.log.op_log[(g, r)] = []
        st = self.spec.stages[r]
        for oi, op in enumerate(st.ops):
            if st.send_after and st.send_after[oi] > oi and (oi == 0 or st.send_after[oi - 1] < oi):
                for k in range(oi + 1, st.send_after[oi] + 1):     # a unit starts once all its inputs are in
                    key = self._input_key(g, r, st.ops[k])
                    if key is not None and not self._arrival(key).processed:
                        yield self._arrival(key)
            dep_key = yield from self._wait_input(g, r, op, free, acct)
            start = env.now
            waits = yield from self._run_op(g, r, oi, op, acct)
            end = env.now
            log.append((start, end, dep_key, waits))
            busy += end - start
            self._span(g, r, "compute", str(op), op.kind, start, end)
            free = end
            self._send_output(g, r, oi, op)
        self.pipeline_end = max(self.pipeline_end, env.now)
        self.log.ops_busy[(g, r)] = busy
        self.log.ops_end[(g, r)] = env.now
        busy = yield from self._tail(g, r, busy, acct)
        self.busy[(g, r)] = busy

    def _input_key(self, g: int, r: int, op):
        """Key of the arrival pass `op` of rank (g, r) waits for, None at the pipeline's ends (and for W)."""
        pipe, j = self.position(r, op.chunk)
        base = pipe * self.num_chunks
        if op.kind == "F" and j > 0:
            return (g, "F", op.micro, base + j)
        if op.kind == "B" and j < self.num_chunks - 1:
            return (g, "B", op.micro, base + j)
        return None

    def _wait_input(self, g: int, r: int, op, free: float, acct: Account):
        """Wait for the input of pass `op` (sent by the neighbouring stage); the wait counts as pipeline transfer
        (the part after the send left) and bubble. Returns the input's key (None at the pipeline's ends)."""
        env = self.env
        dep_key = self._input_key(g, r, op)
        if dep_key is None:
            if env.now > free:
                acct.bubble += env.now - free
            return None
        dep = self._arrival(dep_key)
        if not dep.processed:
            yield dep
        now = env.now
        if now > free:
            pp_wait = max(0.0, now - max(free, dep.value))
            acct.bubble += (now - free) - pp_wait
            acct.pp_comm += pp_wait
        return dep_key

    def _run_op(self, g: int, r: int, oi: int, op, acct: Account):
        """Run pass `op` (op index `oi`) of rank (g, r): as one timeout when nothing can happen inside it, else
        segment by segment. Returns the waits inside it [(category, t0, t1)]."""
        s, env = self.spec, self.env
        kind, micro, chunk = op
        jit = self.jit[(g, r)]
        f_jit = 1.0 if jit is None else float(jit[oi])
        cf = self.slow[g][r] * f_jit
        st = s.stages[r]
        seg_key = st.op_segments[oi] if st.op_segments else (kind, chunk)
        comp, rc, parts, comm_tot, ends, needs_seg, has_comm = self.op_info[r][seg_key]
        trig_here = self.triggers[r].get((kind, chunk)) if micro == s.num_micro - 1 else None
        fu = self.first_uses[r]
        fu_here = fu.get if (kind == "F" and micro == 0 and fu) else None
        if s.per_layer or needs_seg or fu_here is not None or (bool(self.flow_kinds) and has_comm):
            waits = []
            yield from self._run_segments(g, r, op, st.segments[seg_key], cf, f_jit, acct,
                                          self.z3.get((g, r)), trig_here, fu_here, waits)
            yield from self._op_extra(g, r, oi, f_jit, acct)
            return waits
        d = comp * cf + sum(comm_tot.values()) * f_jit
        if trig_here:
            for si, b in trig_here:
                t_ready = ends[si] * (d / ends[-1]) if ends[-1] > 0 else 0.0
                self._timer(t_ready, self.bucket_ready[(r, b)][g])
        yield env.timeout(d)
        acct.compute += (comp - rc - sum(parts.values())) * cf
        acct.recompute += rc * cf
        for cat, sec in parts.items():
            acct.add(cat, sec * cf)
        for k_, sec in comm_tot.items():
            acct.add_comm(k_, sec * f_jit)
        yield from self._op_extra(g, r, oi, f_jit, acct)
        return ()

    def _op_extra(self, g: int, r: int, oi: int, f_jit: float, acct: Account):
        """The all-to-all time an overlapped unit could not hide, charged after its last op (StageSpec.op_extra_s)."""
        st = self.spec.stages[r]
        extra = st.op_extra_s[oi] if st.op_extra_s else 0.0
        if extra > 0:
            t0 = self.env.now
            yield self.comm(g, r, "ep", extra * f_jit)
            acct.add_comm("ep", self.env.now - t0)

    def position(self, r: int, chunk: int) -> tuple:
        """(pipeline, stage) of chunk `chunk` of rank r (Megatron's interleaving unless the spec places it)."""
        s = self.spec
        return s.positions[r][chunk] if s.positions else (0, chunk * s.pp + r)

    def _send_output(self, g: int, r: int, oi: int, op) -> None:
        """Send the output of pass `op` to the neighbouring stage (forward: the next chunk, backward: the previous),
        once the op the stage's `send_after` names has ended (DualPipe's units hand on their outputs together);
        a neighbour on the same rank (ZB-V's turn of the V) gets it at once."""
        s = self.spec
        st = s.stages[r]
        release = st.send_after[oi] if st.send_after else oi
        if release != oi:
            self.pending_sends.setdefault((g, r), {}).setdefault(release, []).append((oi, op))
        else:
            self._deliver(g, r, oi, op)
        for oi_, op_ in self.pending_sends.get((g, r), {}).pop(oi, ()):
            self._deliver(g, r, oi_, op_)

    def _deliver(self, g: int, r: int, oi: int, op) -> None:
        s = self.spec
        pipe, j = self.position(r, op.chunk)
        base = pipe * self.num_chunks
        if op.kind == "F" and j < self.num_chunks - 1:
            key, to, name = (g, "F", op.micro, base + j + 1), j + 1, f"send F{op.micro}"
        elif op.kind == "B" and j > 0:
            key, to, name = (g, "B", op.micro, base + j - 1), j - 1, f"send B{op.micro}"
        else:
            return
        rr = self.rank_at.get((pipe, to), to % s.pp)
        if rr == r and not s.positions:
            return                                   # one rank, one chunk: nothing to hand on
        self._send(g, r, oi, key, name, s.overlap and rr != r, s.p2p_pair_s.get((r, rr), s.p2p_s))

    def _tail(self, g: int, r: int, busy: float, acct: Account):
        """After the last pass: gradient reduction, the barrier (gradient norm), the optimizer, the ZeRO-1/2
        parameter gather and the step's final barrier. Returns the updated busy time."""
        s, env = self.spec, self.env
        st = s.stages[r]
        z = self.z3.get((g, r))
        tail = self.log.tails[(g, r)] = []
        t0 = env.now
        if st.dp_reduce_s > 0:
            yield self.comm(g, r, "dp", st.dp_reduce_s)
            self._span(g, r, "dp", "gradient reduce", "dp", t0, env.now)
            busy += env.now - t0
        if st.buckets:
            pending = [e for e in (self.bucket_done[(r, b)] for b in range(len(st.buckets))) if not e.processed]
            if pending:
                yield env.all_of(pending)
        if z is not None and z["n_red"] and not z["red_done"].processed:
            yield z["red_done"]
        acct.dp_comm += env.now - t0
        tail.append(("dp_comm", t0, env.now))
        if z is not None and z["n_d2h"] and not z["d2h_done"].processed:
            t5 = env.now
            yield z["d2h_done"]
            acct.offload += env.now - t5
            tail.append(("offload", t5, env.now))
        self.log.done_time[(g, r)] = env.now
        self.done_ev[(g, r)].succeed()
        t1 = env.now
        if not self.barrier.processed:
            yield self.barrier
        acct.bubble += env.now - t1
        tail.append(("bubble", t1, env.now))
        t2 = env.now
        opt = st.optimizer_s * self.slow[g][r]
        if opt > 0:
            yield env.timeout(opt)
            self._span(g, r, "compute", "optimizer", "optimizer", t2, env.now)
        acct.optimizer += opt
        tail.append(("optimizer", t2, t2 + opt))
        busy += opt
        yield from self._offload_update(g, r, st, acct, tail)
        if st.dp_gather_s > 0:
            t3 = env.now
            yield self.comm(g, r, "dp", st.dp_gather_s)
            self._span(g, r, "dp", "parameter all-gather", "dp", t3, env.now)
            acct.dp_comm += env.now - t3
            tail.append(("dp_comm", t3, env.now))
            busy += env.now - t3
        self.log.end_time[(g, r)] = env.now
        self.end_ev[(g, r)].succeed()
        t4 = env.now
        if not self.final.processed:
            yield self.final
        acct.bubble += env.now - t4
        tail.append(("bubble", t4, env.now))
        return busy

    def _offload_update(self, g: int, r: int, st, acct: Account, tail: list):
        """The offloaded optimizer phase after the barrier, or the wait for the delayed one started with the step."""
        env = self.env
        t0 = env.now
        if (g, r) in self.cpu_done:
            if not self.cpu_done[(g, r)].processed:
                yield self.cpu_done[(g, r)]
        elif st.offload_update_s > 0:
            yield env.timeout(st.offload_update_s * self.slow[g][r])
        if env.now > t0:
            self._span(g, r, "host", "CPU optimizer", "offload", t0, env.now)
            acct.offload += env.now - t0
            tail.append(("offload", t0, env.now))

    def _timer(self, delay: float, ev: simpy.Event) -> None:
        self.env.timeout(delay).callbacks.append(lambda _e: ev.succeed())

    def _send(self, g, r, oi, key, name, overlap, seconds: float | None = None):
        env = self.env
        ev = self._arrival(key)
        t0 = env.now
        if not overlap:
            self.log.send_log[key] = (g, r, oi, t0, t0)
            ev.succeed(t0)                       # the blocking exchange was part of the op
            return
        done = self.comm(g, r, "pp", self.spec.p2p_s if seconds is None else seconds)

        def arrived(_e, t0=t0):
            self._span(g, r, "pp", name, "pp", t0, env.now)
            self.log.send_log[key] = (g, r, oi, t0, env.now)
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
                        acct.dp_comm += env.now - t0
                        waits.append(("dp_comm", t0, env.now))
            if (x.gather_s > 0 or x.fetch_s > 0) and z is not None:
                i = z["next"]
                z["next"] = i + 1
                ev = z["done"][i]
                if not ev.processed:
                    t0 = env.now
                    yield ev
                    t_f = min(max(z["fetched"][i], t0), env.now)     # the host copy's part of the wait, then the gather's
                    for cat, a, b in (("offload", t0, t_f), ("dp_comm", t_f, env.now)):
                        if b > a:
                            acct.add(cat, b - a)
                            waits.append((cat, a, b))
                z["used"][i].succeed()
            for kind, sec in x.pre:
                t0 = env.now
                yield self.comm(g, r, kind, sec * f_jit)
                acct.add_comm(kind, env.now - t0)
            if x.compute_s > 0:
                yield env.timeout(x.compute_s * cf)
                acct.compute += (x.compute_s - x.recompute_s - sum(sec for _, sec in x.parts)) * cf
                acct.recompute += x.recompute_s * cf
                for cat, sec in x.parts:
                    acct.add(cat, sec * cf)
            for kind, sec in x.post:
                t0 = env.now
                yield self.comm(g, r, kind, sec * f_jit)
                acct.add_comm(kind, env.now - t0)
            if x.reduce_s > 0 and z is not None:
                z["store"].put(x.reduce_s)
            if x.offload_s > 0 and z is not None:
                z["d2h"].put(x.offload_s)
            for b in trig_at.get(si, ()):
                self.bucket_ready[(r, b)][g].succeed()


def simulate_spec(spec: EngineSpec, rng: np.random.Generator | None = None) -> EngineResult:
    """Replay `spec` once."""
    return StepSimulation(spec, rng).run()


def replay_together(specs: list, shared_ports: dict, rngs: list | None = None) -> list:
    """Replay several jobs' steps in one environment, their transfers sharing the ports `shared_ports` names:
    {(job, group, rank, tier): port name}; entries with the same name are one SharedLink (processor sharing), so
    each job's transfers slow the other's where they meet. A job's ports not listed are its own (none when its
    spec has no graph). Returns one EngineResult per job, each timed from the common start.

    Source: processor sharing of a link by concurrent flows (Kleinrock; SharedLink); a second job replayed on the
    first one's ports (issue 15: shared networks, the SimAI / ASTRA-sim multi-job requests)."""
    env = CountingEnvironment()
    by_name = {}
    sims = []
    for i, spec in enumerate(specs):
        links = {}
        for (job, g, r, tier), name in shared_ports.items():
            if job == i:
                if name not in by_name:
                    by_name[name] = SharedLink(env, name)
                links[(g, r, tier)] = by_name[name]
        rng = rngs[i] if rngs is not None else None
        sims.append(StepSimulation(spec, rng, env=env, links=links or None))
    for sim in sims:
        sim.start()
    env.run()
    return [sim.finish() for sim in sims]
