"""The stages' dense/MoE layer mix (costs.layer_mix): a model whose first layers are dense puts them on the first
pipeline stage, so the later stages run MoE layers only."""
from types import SimpleNamespace

import numpy as np
import pytest

from simulator.costs.layer_mix import is_moe_layer, kind_moe_excess, mixed_layers, moe_layer_prefix
from simulator.costs.stage import EdgeCosts, RankKind, stage_times


def _model(layers, first_dense=0, freq=1):
    return SimpleNamespace(num_layers=layers, moe=SimpleNamespace(first_dense_layers=first_dense, layer_freq=freq))


def test_prefix_of_a_dense_prefix_and_of_every_other_layer():
    # DeepSeek-V2 truncated to 4 layers, the first dense: MoE layers 1, 2, 3
    assert moe_layer_prefix(_model(4, 1)).tolist() == [0, 0, 1, 2, 3]
    # every second layer MoE (layer_freq 2): layers 1, 3, 5
    assert moe_layer_prefix(_model(6, 0, 2)).tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert is_moe_layer(_model(4, 1), 1) and not is_moe_layer(_model(4, 1), 0)


def test_only_a_dense_and_moe_mix_counts():
    assert mixed_layers(_model(4, 1)) and mixed_layers(_model(6, 0, 2))
    assert not mixed_layers(_model(4, 0)) and not mixed_layers(SimpleNamespace(num_layers=4, moe=None))


def test_two_stages_of_deepseek_v2_l4_by_hand():
    # f = 3/4; first stage layers 0-1 (one MoE): 1 - 2 x 0.75 = -0.5; last stage layers 2-3: 2 - 1.5 = +0.5
    first, middle, last = kind_moe_excess(_model(4, 1), 4, np.array([2]), np.array([2]), np.array([0]),
                                          np.array([2]))
    assert first.tolist() == [-0.5] and middle.tolist() == [0.0] and last.tolist() == [0.5]


def test_one_stage_two_chunk_schedules_and_uniform_mix_add_nothing():
    m = _model(4, 1)
    for x in kind_moe_excess(m, 4, np.array([1]), np.array([4]), np.array([0]), np.array([4])):
        assert x.tolist() == [0.0]
    for x in kind_moe_excess(m, 4, np.array([2]), np.array([2]), np.array([0]), np.array([2]),
                             two_chunk=np.array([True])):
        assert x.tolist() == [0.0]
    # all layers MoE: no mix
    for x in kind_moe_excess(_model(4, 0), 4, np.array([2]), np.array([2]), np.array([0]), np.array([2])):
        assert x.tolist() == [0.0]


def test_middle_kind_and_interleaved_first_rank():
    # 8 layers, 2 dense, pp 4 (2 each): f = 6/8; middle stage next to the last holds layers 4-5 (MoE): 2 - 1.5
    m = _model(8, 2)
    first, middle, last = kind_moe_excess(m, 8, np.array([4]), np.array([2]), np.array([2]), np.array([2]))
    assert first.tolist() == [2 * 0 - 2 * 0.75] and middle.tolist() == [0.5] and last.tolist() == [0.5]
    # pp 2, vpp 2, chunks of 2: rank 0 holds layers 0-1 (dense) and 4-5 (MoE): 2 - 4 x 0.75 = -1
    first, _, last = kind_moe_excess(m, 8, np.array([2]), np.array([4]), np.array([0]), np.array([4]),
                                     first_chunk=np.array([2]))
    assert first.tolist() == [-1.0] and last.tolist() == [1.0]


def test_stage_times_add_the_excess_times_the_delta():
    lc = SimpleNamespace(forward_s=1.0, backward_s=2.0, recompute_s=0.0, elementwise_pass_s=0.1, fp8_cast_pass_s=0.0,
                         host_fwd_s=0.0, host_bwd_s=0.0, issue_fwd_s=0.0, issue_bwd_s=0.0, gpu_fwd_s=1.0,
                         gpu_bwd_s=2.0)
    comm = SimpleNamespace(fwd_s=0.2, bwd_s=0.3)
    edge = EdgeCosts(logits_fwd_s=0.0, logits_bwd_s=0.0, embedding_comm_s=0.0, micro_host_s=0.0)
    delta = SimpleNamespace(forward_s=0.4, backward_s=0.8, recompute_s=0.0, comm_fwd_s=0.1, comm_bwd_s=0.1,
                            elementwise_pass_s=0.02, fp8_cast_pass_s=0.0, host_fwd_s=0.0, host_bwd_s=0.0)
    kind = RankKind(2.0, 0.0, 0.0, True, moe_excess=0.5)
    st = stage_times(lc, comm, edge, kind, 1.0, delta)
    base = stage_times(lc, comm, edge, kind, 1.0)
    # 2 layers x 1.0 + 0.5 x 0.4; backward 2 x 2.0 + 0.5 x 0.8; comm 2 x 0.2 + 0.5 x 0.1
    assert st.compute_fwd_s - base.compute_fwd_s == pytest.approx(0.2)
    assert st.compute_bwd_s - base.compute_bwd_s == pytest.approx(0.4)
    assert st.comm_fwd_s == pytest.approx(0.45) and st.comm_bwd_s == pytest.approx(0.65)
    assert st.elementwise_s == pytest.approx(0.21)


@pytest.mark.parametrize("schedule", ["1f1b", "gpipe"])
def test_engines_agree_on_a_dense_prefix_model_over_two_stages(schedule):
    """DeepSeek-V2 (first layer dense) on two stages: the replay prices every layer as its kind, the closed form
    each stage's MoE excess; with overlap and contention off they agree to rounding."""
    from tests.test_des_api import both, scenario
    r, a = both(scenario(model="deepseek-v2", devices=16, global_batch=16, seq_len=4096, tp=1, pp=2, ep=8,
                         zero=1, schedule=schedule))
    assert r.step_time_s == pytest.approx(a.step_time_s, rel=1e-9)
    for k, v in a.time_breakdown_s.items():
        assert r.time_breakdown_s[k] == pytest.approx(v, rel=1e-9, abs=1e-9 * a.step_time_s), k


def test_zb_h1_replay_within_the_closed_form_bound():
    """ZB-H1's closed form removes 2 W per non-pacing stage from the fill, exact for equal stages only (the same
    holds for an uneven layer split, tests/test_des_api.py): with the stages' dense/MoE mix the replay is shorter
    by a few parts in ten thousand, never longer."""
    from tests.test_des_api import both, scenario
    r, a = both(scenario(model="deepseek-v2", devices=16, global_batch=16, seq_len=4096, tp=1, pp=2, ep=8,
                         zero=1, schedule="zb-h1"))
    assert a.step_time_s * (1 - 1e-3) <= r.step_time_s <= a.step_time_s * (1 + 1e-12)


def test_the_all_moe_stage_paces_and_is_slower_than_the_average():
    """The last stage of DeepSeek-V2 on two stages holds MoE layers only: the step is longer than with every stage
    at the model's average layer (the excess set to zero)."""
    import simulator as ts
    import simulator.costs.stage as S
    sc = ts.Scenario.build("deepseek-v2", "b200", devices=16, global_batch=16, seq_len=4096, tp=1, pp=2, ep=8,
                           zero=1)
    with_mix = ts.estimate(sc).step_time_s
    orig = S.kind_moe_excess
    try:
        S.kind_moe_excess = lambda *a, **k: tuple(np.zeros(np.shape(a[2])) for _ in range(3))
        without = ts.estimate(sc).step_time_s
    finally:
        S.kind_moe_excess = orig
    assert with_mix > without
