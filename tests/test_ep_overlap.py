"""MoE expert-parallel all-to-all: overlap with another micro-batch's compute (Megatron-Core combined 1F1B) and
the activation memory of the permuted tokens."""
import pytest

import simulator as ts
from simulator.specs.model import MoESpec

from .conftest import gpt, toy_hardware


def _moe():
    return gpt(layers=4, hidden=512, heads=8, moe=MoESpec(num_experts=8, top_k=2, expert_ffn_hidden_size=1024))


def _est(**kw):
    sc = ts.Scenario.build(_moe(), toy_hardware(), devices=8 * kw.get("pp", 1), global_batch=16, seq_len=128, tp=1,
                           dp=8, ep=8, recompute="none", micro_batch=1, **kw)
    d = ts.estimate(sc).to_dict()
    assert d["runnable"], d["reasons"]
    return d


def test_ep_overlap_hides_part_of_the_all_to_all_and_never_adds_time():
    off = _est(pp=2, vpp=2, ep_comm_overlap=False)
    on = _est(pp=2, vpp=2, ep_comm_overlap=True)
    assert off["time_breakdown_s"]["ep_comm"] > 0
    assert on["time_breakdown_s"]["ep_comm"] < off["time_breakdown_s"]["ep_comm"]
    assert on["step_time_s"] <= off["step_time_s"]


def test_ep_overlap_needs_an_interleaved_schedule_when_pipelined():
    """Megatron-Core runs the EP overlap only with pp == 1 or the interleaved schedule."""
    off = _est(pp=2, ep_comm_overlap=False)
    on = _est(pp=2, ep_comm_overlap=True)
    assert on["step_time_s"] == pytest.approx(off["step_time_s"], rel=1e-12)


def test_permuted_tokens_are_saved_once():
    """MoE activations per token: k x (gate+1) x ffn_e + k x h (the fc1 input), not 2 k x h (Megatron-Core v0.13
    moves the probs multiply into the activation, so the unpermute saves no copy)."""
    import numpy as np

    from simulator.costs.layer import mlp_elements
    from simulator.costs.sizes import sizes
    from simulator.specs.job import Job
    from simulator.specs.layout_table import LayoutTable
    m = _moe()
    sz = sizes(Job(m, toy_hardware(), ts.TrainingSpec(seq_len=128, global_batch=16), 8),
               LayoutTable.from_columns(tp=np.array([1]), dp=np.array([8]), ep=np.array([8])))
    assert float(mlp_elements(sz).stored_heavy) == pytest.approx(2 * 2 * 1024 + 2 * 512)


def test_ep_overlap_needs_a_partner_micro_batch():
    """With one micro-batch there is nothing to overlap with: the all-to-alls stay exposed."""
    sc_kw = dict(devices=8, global_batch=8, seq_len=128, tp=1, dp=8, ep=8, recompute="none", micro_batch=1)
    off = ts.estimate(ts.Scenario.build(_moe(), toy_hardware(), ep_comm_overlap=False, **sc_kw))
    on = ts.estimate(ts.Scenario.build(_moe(), toy_hardware(), ep_comm_overlap=True, **sc_kw))
    assert on.num_micro_batches == 1
    assert on.time_breakdown_s["ep_comm"] == pytest.approx(off.time_breakdown_s["ep_comm"], rel=1e-12)
