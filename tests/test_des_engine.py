"""The SimPy engine on hand-drawn timelines (SimPy-style: whole timelines compared, times derived by hand)."""
from __future__ import annotations

import numpy as np
import pytest
import simpy

from simulator.des.engine import CATEGORIES, Bucket, EngineSpec, Seg, SharedLink, StageSpec, simulate_spec
from simulator.pipeline.schedules import gpipe, interleaved_1f1b, one_f_one_b, schedule_ops, zb_h1


def toy(sched, f, b, w=None, *, vpp=1, p2p=0.0, overlap=False, comm_f=(), **kw) -> EngineSpec:
    """Engine spec with per-stage (or per-chunk, pipeline order) forward/backward/W times and no other cost."""
    pp = len(sched)
    J = pp * vpp
    f = list(f) if np.ndim(f) else [f] * J
    b = list(b) if np.ndim(b) else [b] * J
    w = (list(w) if np.ndim(w) else [w] * J) if w is not None else None
    m = sum(1 for op in sched[0] if op.kind == "F") // vpp
    stages = []
    for r in range(pp):
        segs = {}
        for c in range(vpp):
            j = c * pp + r
            tail = (Seg(post=(("pp", p2p),)),) if (p2p and not overlap) else ()
            segs[("F", c)] = (Seg(compute_s=f[j], post=tuple(comm_f)),) + tail
            segs[("B", c)] = (Seg(compute_s=b[j]),) + tail
            if w is not None:
                segs[("W", c)] = (Seg(compute_s=w[j]),)
        stages.append(StageSpec(ops=sched[r], segments=segs))
    return EngineSpec(pp=pp, vpp=vpp, num_micro=m, stages=tuple(stages), p2p_s=p2p, overlap=overlap,
                      contention=False, **kw)


def ops_timeline(res):
    """[(stage, op, start, end)] of the compute streams in the order the engine recorded them."""
    return [(s.stage, s.name, s.start_s, s.end_s) for s in res.timeline.spans if s.stream == "compute"]


def test_gpipe_two_stages_two_micro_batches_fwd_1s_bwd_2s_takes_9s():
    res = simulate_spec(toy(gpipe(2, 2), f=1.0, b=2.0))
    assert res.step_time_s == 9.0
    log = sorted(ops_timeline(res))
    assert log == [(0, "B0", 5.0, 7.0), (0, "B1", 7.0, 9.0), (0, "F0", 0.0, 1.0), (0, "F1", 1.0, 2.0),
                   (1, "B0", 3.0, 5.0), (1, "B1", 5.0, 7.0), (1, "F0", 1.0, 2.0), (1, "F1", 2.0, 3.0)]


def test_same_time_events_are_recorded_in_a_pinned_order():
    # At t=2 stage 0 finishes F1 and stage 1 finishes F0; at t=5 stage 1 finishes B0 and would start B1.
    # SimPy processes equal times by (priority, insertion): stage 0's F1 timeout was scheduled before the
    # arrival that woke stage 1, so its span comes first.
    res = simulate_spec(toy(gpipe(2, 2), f=1.0, b=2.0))
    assert ops_timeline(res) == [(0, "F0", 0.0, 1.0), (0, "F1", 1.0, 2.0), (1, "F0", 1.0, 2.0),
                                 (1, "F1", 2.0, 3.0), (1, "B0", 3.0, 5.0), (1, "B1", 5.0, 7.0),
                                 (0, "B0", 5.0, 7.0), (0, "B1", 7.0, 9.0)]


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 8), (8, 32), (3, 5)])
def test_1f1b_takes_m_plus_p_minus_1_passes_and_its_bubble_is_p_minus_1_over_m(pp, m):
    res = simulate_spec(toy(one_f_one_b(pp, m), f=1.0, b=2.0))
    assert res.step_time_s == pytest.approx((m + pp - 1) * 3.0, rel=1e-12)
    bd = res.breakdown_s
    assert bd["bubble"] / (bd["compute"]) == pytest.approx((pp - 1) / m, rel=1e-12)


def test_interleaving_divides_the_fill_by_v():
    pp, m, v = 4, 8, 2
    res = simulate_spec(toy(interleaved_1f1b(pp, m, v), f=1.0 / v, b=2.0 / v, vpp=v))
    assert res.step_time_s == pytest.approx(m * 3.0 + (pp - 1) * 3.0 / v, rel=1e-12)


def test_zb_h1_bubble_is_p_minus_1_times_tf_plus_tb_minus_tw():
    pp, m = 4, 8
    res = simulate_spec(toy(zb_h1(pp, m), f=1.0, b=1.0, w=1.0))
    assert res.step_time_s == pytest.approx(3.0 * m + (pp - 1) * 1.0, rel=1e-12)      # 1F1B would take 3m + 3(p-1)


def test_closed_form_overestimates_1f1b_when_a_middle_stage_paces():
    # f = (1, 2, 1), b = (2, 4, 2), m = 4. Hand-drawn 1F1B timeline: stage 1 runs F0 [1,3] F1 [3,5] B0 [6,10]
    # F2 [10,12] B1 [12,16] F3 [16,18] B2 [18,22] B3 [22,26]; stage 0 ends with B3 [26,28].
    # The closed form (m-1) tau_max + sum tau_i = 3*6 + 12 = 30 charges the fill/drain of every stage; the
    # stages after the slowest one are only on the critical path once.
    res = simulate_spec(toy(one_f_one_b(3, 4), f=[1.0, 2.0, 1.0], b=[2.0, 4.0, 2.0]))
    assert res.step_time_s == 28.0
    s1 = [(op, t0, t1) for st, op, t0, t1 in ops_timeline(res) if st == 1]
    assert s1 == [("F0", 1, 3), ("F1", 3, 5), ("B0", 6, 10), ("F2", 10, 12), ("B1", 12, 16), ("F3", 16, 18),
                  ("B2", 18, 22), ("B3", 22, 26)]


def test_closed_form_is_exact_when_the_last_stage_paces():
    f, b, m = [1.0, 1.0, 1.3], [2.0, 2.0, 2.6], 5
    tau = [x + y for x, y in zip(f, b)]
    for sched in (one_f_one_b(3, m), gpipe(3, m)):
        res = simulate_spec(toy(sched, f=f, b=b))
        assert res.step_time_s == pytest.approx((m - 1) * max(tau) + sum(tau), rel=1e-12)


def test_blocking_sends_are_charged_once_per_pass_on_every_stage():
    # overlap off: each pass is followed by its exchange (0.5 s), pipeline ends included, as the analytic
    # engine charges it: tau = 1 + 2 + 2*0.5 = 4, and (m + p - 1) tau = 5 * 4.
    res = simulate_spec(toy(one_f_one_b(2, 4), f=1.0, b=2.0, p2p=0.5, overlap=False))
    assert res.step_time_s == pytest.approx(20.0)
    assert res.breakdown_s["pp_comm"] == pytest.approx(4 * 2 * 0.5)


def test_asynchronous_sends_expose_only_the_transfer_the_receiver_waits_for():
    # overlap on: stage 1 waits for each forward's activation 0.5 s after stage 0 finishes it
    res = simulate_spec(toy(gpipe(2, 1), f=1.0, b=2.0, p2p=0.5, overlap=True))
    log = ops_timeline(res)
    assert log == [(0, "F0", 0.0, 1.0), (1, "F0", 1.5, 2.5), (1, "B0", 2.5, 4.5), (0, "B0", 5.0, 7.0)]
    assert res.step_time_s == 7.0
    assert res.breakdown_s["pp_comm"] == pytest.approx(1.0)         # two transfers on the critical path


@pytest.mark.parametrize("name,vpp", [("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("zb-h1", 1)])
def test_every_rank_accounts_for_the_whole_step(name, vpp):
    sched = schedule_ops(name, 4, 8, vpp)
    spec = toy(sched, f=[0.5 + 0.1 * j for j in range(4 * vpp)], b=1.3, w=0.4 if name == "zb-h1" else None,
               vpp=vpp, p2p=0.05, overlap=True, overhead_s=0.25)
    res = simulate_spec(spec)
    for key, acct in res.accounts.items():
        assert sum(acct.values()) == pytest.approx(res.step_time_s - 0.25, rel=1e-12), key
    assert sum(res.breakdown_s.values()) == pytest.approx(res.step_time_s, rel=1e-12)
    assert set(res.breakdown_s) == set(CATEGORIES) | {"overhead"}


def test_jitter_is_deterministic_given_the_generator_seed():
    spec = toy(one_f_one_b(4, 8), f=1.0, b=2.0, jitter=0.1)
    a = simulate_spec(spec, np.random.default_rng(7))
    b = simulate_spec(spec, np.random.default_rng(7))
    c = simulate_spec(spec, np.random.default_rng(8))
    assert a.timeline.spans == b.timeline.spans and a.step_time_s == b.step_time_s
    assert c.step_time_s != a.step_time_s
    assert abs(a.step_time_s - 33.0) < 0.3 * 33.0


def test_a_slow_stage_paces_the_pipeline():
    # stage 1 of 2 computes 1.5x slower: its passes take 1.5 and 3 s; 1F1B, m = 4: 1 + 4*4.5 + 2 = 21 s
    spec = toy(one_f_one_b(2, 4), f=1.0, b=2.0, slowdown=((1.0, 1.5),))
    assert simulate_spec(spec).step_time_s == pytest.approx(21.0)


def test_two_equal_transfers_on_one_port_each_take_twice_as_long():
    env = simpy.Environment()
    link = SharedLink(env)
    done = []
    for name in ("a", "b"):
        link.transfer(1.0).callbacks.append(lambda _e, n=name: done.append((n, env.now)))
    env.run()
    assert done == [("a", 2.0), ("b", 2.0)]


def test_a_transfer_joining_midway_shares_the_rest():
    # a: 1 s alone from 0; b: 1 s from 0.5. Shared from 0.5: a needs 0.5 more at half speed -> ends 1.5;
    # b has then done 0.5 and finishes the rest alone -> 2.0.
    env = simpy.Environment()
    link = SharedLink(env)
    done = []
    link.transfer(1.0).callbacks.append(lambda _e: done.append(("a", env.now)))

    def later():
        yield env.timeout(0.5)
        yield link.transfer(1.0)
        done.append(("b", env.now))

    env.process(later())
    env.run()
    assert done == [("a", 1.5), ("b", 2.0)]


def test_bandwidth_sharing_on_one_tier_halves_two_concurrent_gradient_buckets():
    # One stage, two 1 s buckets ready at the same instant (end of the only backward). With contention both
    # share the port of their tier and end 2 s later; without, they run back to back on the dp stream (FIFO).
    import networkx as nx

    from simulator.des.engine import StepSimulation

    g = nx.Graph()
    g.add_edge(("device", 0), ("switch", 1, 0), kind="port", tier=1)
    base = toy(gpipe(1, 1), f=1.0, b=1.0)
    st = base.stages[0]
    buckets = (Bucket(reduce_s=1.0, trigger=("B", 0, 0)), Bucket(reduce_s=1.0, trigger=("B", 0, 0)))
    from dataclasses import replace
    spec = replace(base, stages=(replace(st, buckets=buckets),), contention=True, overlap=True,
                   tier_shares={"dp": ((1, 1.0),)}, devices=((0,),), graph=g)
    sim = StepSimulation(spec)
    # issue both buckets at once on the shared port: each gets half the bandwidth
    ends = []
    for _ in range(2):
        sim.comm(0, 0, "dp", 1.0).callbacks.append(lambda _e: ends.append(sim.env.now))
    sim.env.run()
    assert ends == [2.0, 2.0]
    # the dp stream itself is FIFO: the step is 2 s of compute + 2 s of buckets, with or without contention
    assert simulate_spec(spec).step_time_s == pytest.approx(4.0)
    assert simulate_spec(replace(spec, contention=False)).step_time_s == pytest.approx(4.0)
