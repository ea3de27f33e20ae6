"""The per-micro-batch host work outside the layers (costs.stage head_host_s, tail_host_s, tail_lead_s): Megatron-LM
of 2021-22 drains the GPU at every pass boundary (its timers' and p2p_communication's torch.cuda.synchronize), so
the work at a pass's head (batch fetch, pipeline bookkeeping, embedding forward, loss backward) is exposed, while
the work at its tail (loss forward, embedding backward) runs under the GPU work the pass has queued ahead of the
host. Derived by hand: the split of the HOST_LAYERS_* passes, and a two-stage 1F1B timeline whose passes carry
that host work, replayed by the discrete-event engine and composed by the analytic one."""
from __future__ import annotations

import numpy as np
import pytest

import simulator as ts
from simulator.costs.layer import layer_costs
from simulator.costs.sizes import sizes
from simulator.costs.stage import (exposed_tail_host_s, head_host_s, logits_s, rank_host_s, tail_host_s,
                                   tail_lead_s)
from simulator.crosscheck import simulate
from simulator.specs.job import Job
from simulator.specs.layout_table import LayoutTable

from .conftest import floor_only_framework, gpt, toy_hardware

H_US = 700.0            # host time of one layer pass (the profile's layer_overhead_us)
H = H_US * 1e-6


def test_split_of_the_micro_batch_host_work_by_hand():
    """In layer passes (host_pass 1): every rank 2 (1 with each pass), embedding 2 and loss 2 (1 forward, 1
    backward each). Head: forward 1 + embedding forward 1 on the first rank; backward 1 + loss backward 1 on the
    last. Tail: the loss forward (last rank), the embedding backward (first rank). Head + tail = rank_host_s."""
    assert head_host_s(1.0, 1.0, 0.0) == (2.0, 1.0)
    assert head_host_s(1.0, 0.0, 1.0) == (1.0, 2.0)
    assert head_host_s(1.0, 0.0, 0.0) == (1.0, 1.0)
    assert head_host_s(1.0, 0.0, 0.0, every=1.0 / 3.0) == pytest.approx((1.0 / 3.0, 1.0 / 3.0))
    assert tail_host_s(1.0, 1.0, 0.0) == (0.0, 1.0) and tail_host_s(1.0, 0.0, 1.0) == (1.0, 0.0)
    for emb, out in ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.0, 0.0)):
        assert sum(head_host_s(1.0, emb, out)) + sum(tail_host_s(1.0, emb, out)) == rank_host_s(1.0, emb, out)
    # a tail of 1.0 behind 0.4 of queued GPU work shows 0.6; behind 2.0 nothing
    assert float(exposed_tail_host_s(1.0, 0.4)) == pytest.approx(0.6)
    assert float(exposed_tail_host_s(1.0, 2.0)) == 0.0
    # the lead: 3 layers leaving 0.2 each, plus the loss forward's own logits GEMM (0.1) on the last rank
    assert tail_lead_s(0.2, 0.5, 3.0, 0.1, 1.0) == pytest.approx((0.7, 1.5))
    assert tail_lead_s(0.2, 0.5, 3.0, 0.1, 0.0) == pytest.approx((0.6, 1.5))


def _scenario(pp=2, global_batch=2):
    m = gpt(layers=2, hidden=2048, heads=16, vocab=1000)
    return ts.Scenario.build(m, toy_hardware(layer_overhead_us=H_US), devices=pp, global_batch=global_batch,
                             seq_len=1024, tp=1, pp=pp, dp=1, micro_batch=1, recompute="none",
                             framework=floor_only_framework())


def _passes(sc):
    """(layer forward, layer backward, logits forward, logits backward) of the toy scenario (one layer a stage)."""
    sz = sizes(Job(sc.model, sc.hardware, sc.training, sc.num_devices, framework=sc.framework),
               LayoutTable.from_columns(tp=np.array([1]), dp=np.array([1]), pp=np.array([sc.layout.pp]),
                                        micro_batch=np.array([1]), recompute=np.array([0])))
    lc = layer_costs(sz)
    f, b = logits_s(sz)
    one = lambda x: float(np.ravel(x)[0])  # noqa: E731
    assert one(lc.gpu_fwd_s) > H and one(lc.gpu_bwd_s) > H     # GPU-bound layers: the passes leave a lead
    assert one(lc.recompute_s) == 0.0
    return one(lc.forward_s), one(lc.backward_s), one(f), one(b)


def test_two_stage_1f1b_timeline_by_hand():
    """pp 2, one layer per stage, m 2, host 700 us per layer pass, every layer pass GPU-bound (t_f, t_b > H).

    Exposed host work per micro-batch outside the layer (heads, and the tails beyond the lead):
      stage 0: every rank 2 H + embedding forward H + max(0, H - (t_b - H))   (embedding backward under the lead)
      stage 1: every rank 2 H + loss backward H + max(0, H - (t_f - H) - logits_f)      (loss forward, partly)
    half of it with each pass (E0, E1), P one blocking pipeline send after each pass:
      F0 = E0/2 + t_f + P,  B0 = E0/2 + t_b + P,  F1 = E1/2 + t_f + logits_f + P,  B1 = E1/2 + logits_b + t_b + P
    1F1B, p 2, m 2: stage 0 runs F(1) F(2) B(1) B(2), stage 1 F(1) B(1) F(2) B(2):
      x = F0 + F1 + B1 (S1.B1 ends); S1.F2 starts max(x, 2 F0); S0.B1 runs from max(2 F0, x);
      S1.B2 ends max(x, 2 F0) + F1 + B1; S0.B2 starts max(S0.B1 end, S1.B2 end), ends + B0.
    The step adds the optimizer and the fixed overhead (no data parallelism)."""
    sc = _scenario()
    t_f, t_b, lf, lb = _passes(sc)
    r = simulate(sc, overlap=False, contention=False)
    a = ts.estimate(sc)
    p2p = a.time_breakdown_s["pp_comm"] / (2 * 2)          # m 2 x (one send forward + one backward)
    loss_fwd = max(0.0, H - (t_f - H) - lf)
    emb_bwd = max(0.0, H - (t_b - H))
    assert 0.0 < loss_fwd < H                               # the loss forward shows in part: the toy's lead is short
    assert emb_bwd == 0.0                                   # the embedding backward hides entirely
    E0, E1 = 3 * H + emb_bwd, 3 * H + loss_fwd
    F0, B0 = E0 / 2 + t_f + p2p, E0 / 2 + t_b + p2p
    F1, B1 = E1 / 2 + t_f + lf + p2p, E1 / 2 + lb + t_b + p2p
    x = F0 + F1 + B1
    s1_b2 = max(x, 2 * F0) + F1 + B1
    s0_b1 = max(2 * F0, x) + B0
    pipeline = max(s0_b1, s1_b2) + B0
    rest = r.time_breakdown_s["optimizer"] + r.time_breakdown_s["overhead"]
    assert r.step_time_s == pytest.approx(pipeline + rest, rel=1e-9)
    assert a.step_time_s == pytest.approx(r.step_time_s, rel=1e-9)
    # the exposed host work of the pacing (last) stage, both micro-batches
    assert a.time_breakdown_s["host"] == pytest.approx(2 * E1, rel=1e-9)
    assert r.time_breakdown_s["host"] == pytest.approx(2 * E1, rel=1e-9)


def test_hidden_tail_shortens_the_pacing_stage_by_what_its_lead_covers():
    """m 8. Costed serially (every part exposed) the last stage would expose 2 H (every rank) + 2 H (loss) per
    micro-batch; with the loss forward at the forward's tail, what of its H the lead covers comes off: the host
    breakdown is 8 (4 H - hidden) with 0 < hidden < H here."""
    sc = _scenario(global_batch=8)
    a = ts.estimate(sc)
    t_f, t_b, lf, lb = _passes(sc)
    hidden = H - max(0.0, H - (t_f - H) - lf)
    assert 0.0 < hidden < H
    assert a.time_breakdown_s["host"] == pytest.approx(8 * (4 * H - hidden), rel=1e-9)
