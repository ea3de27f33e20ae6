"""Multi-token prediction (DeepSeek-V3 report sec. 2.2) and stated Megatron-Core pipeline layouts: the layout
string parsed by hand, the MTP module priced as one more layer, one more head and its projection on the rank that
runs the output layer, the two engines agreeing on it, and the DeepSeek-V3 recipe rows carrying both."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import simulator as ts
from simulator.costs.communication import layer_comm
from simulator.costs.layer import layer_costs
from simulator.costs.sizes import sizes
from simulator.costs.stage import edge_costs, logits_s, rank_kinds, stage_times
from simulator.crosscheck import simulate
from simulator.specs.job import Job
from simulator.specs.layout_table import LayoutTable
from simulator.specs.loading import load_model
from simulator.validation.rows import RowError, load_cases, megatron_pipeline_layout, mtp_layers_of_notes

HW = "a100-sxm4-80gb"


# ---- the layout string ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout, layers, mtp", [
    ("Et*4|(t*4|)*14tmL", (4,) * 15 + (1,), 1),          # DeepSeek-V3 GB300 recipe: 16 virtual stages
    ("Et|(tt|)*30mL", (1,) + (2,) * 30 + (0,), 1),        # the 25.09 H100 recipe: the last stage runs MTP only
    ("Ettt|ttt|tttL", (3, 3, 3), 0),
    ("E(t*2)*2|t*4L", (4, 4), 0),                         # a repeated group inside a stage
])
def test_megatron_layout_strings_expand_to_layers_per_stage(layout, layers, mtp):
    assert megatron_pipeline_layout(layout) == (layers, mtp)
    assert sum(megatron_pipeline_layout(layout)[0]) == sum(layers)


@pytest.mark.parametrize("bad", ["Et*4|(t*4|*14tmL", "Et*4|t)", "Etx|tL"])
def test_malformed_layouts_are_refused_with_the_string(bad):
    with pytest.raises(ValueError, match="pipeline layout"):
        megatron_pipeline_layout(bad)


@pytest.mark.parametrize("notes, n", [("recompute modules [mla_up_proj], one MTP layer on the last stage.", 1),
                                      ("2 MTP layers", 2), ("no MTP in MaxText", 0), ("", 0)])
def test_notes_state_the_mtp_modules(notes, n):
    assert mtp_layers_of_notes(notes) == n


# ---- the cost: one more layer, one more head and its projection -------------------------------------------------
def _costs(model, pp=2, **cols):
    t = LayoutTable.from_columns(tp=np.array([1]), pp=np.array([pp]), dp=np.array([8 // pp]), ep=np.array([4]),
                                 micro_batch=np.array([1]), **cols)
    sz = sizes(Job(model=model, hardware=ts.load_hardware(HW), training=ts.TrainingSpec(seq_len=4096, global_batch=64),
                   num_devices=8), t)
    lc = layer_costs(sz)
    comm = layer_comm(sz, lc)
    edge = edge_costs(sz, lc, comm)
    return sz, lc, comm, edge, rank_kinds(sz)


def test_an_mtp_module_adds_one_layer_one_head_and_its_projection_to_the_last_rank_only():
    base = load_model("mixtral-8x7b")
    sz0, lc, comm, edge0, k0 = _costs(base)
    sz1, _, _, edge1, k1 = _costs(base.model_copy(update={"mtp_layers": 1}))
    # the first rank is unchanged, the last runs one more layer and holds it and the embedding
    assert float(k1[0].layers[0]) == float(k0[0].layers[0])
    assert float(k1[2].layers[0]) == float(k0[2].layers[0]) + 1.0
    assert float(k1[2].held()[0][0]) == float(k0[2].held()[0][0]) + 1.0
    assert float(np.asarray(k1[2].held()[1])) == 1.0 and float(np.asarray(k0[2].held()[1])) == 0.0
    # head and loss twice, plus the 2h -> h projection (forward; its two gradients in the backward)
    kr, M, h = sz0.kernel, sz0.tokens, sz0.hidden
    f0, b0 = (float(np.ravel(x)[0]) for x in logits_s(sz0))
    f1, b1 = (float(np.ravel(x)[0]) for x in logits_s(sz1))
    p_f, p_d, p_w = (float(np.ravel(x)[0]) for x in kr.gemm_passes_s(M, h, 2.0 * h))
    assert f1 == pytest.approx(2.0 * f0 + p_f, rel=1e-12)
    assert b1 == pytest.approx(2.0 * b0 + p_d + p_w, rel=1e-12)
    # the last rank's forward per micro-batch grows by one layer pass plus that output work
    s0, s1 = stage_times(lc, comm, edge0, k0[2]), stage_times(lc, comm, edge1, k1[2])
    one = lambda x: float(np.ravel(x)[0])  # noqa: E731
    assert one(s1.compute_fwd_s) - one(s0.compute_fwd_s) == pytest.approx(one(lc.forward_s) + f1 - f0, rel=1e-9)
    assert one(s1.comm_fwd_s) - one(s0.comm_fwd_s) == pytest.approx(one(comm.fwd_s), rel=1e-9)


def _both(sc):
    sc = sc.model_copy(update={"layout": sc.layout.model_copy(update={"overlap_grad_reduce": False,
                                                                       "dp_param_gather_overlap": False,
                                                                       "tp_comm_overlap": False})})
    return simulate(sc, overlap=False, contention=False), ts.estimate(sc)


@pytest.mark.parametrize("model, pp, stage_layers", [("mixtral-8x7b", 1, None), ("llama2-7b", 1, None),
                                                     ("llama2-7b", 4, None), ("llama2-7b", 4, [7, 8, 8, 9])])
def test_the_engines_agree_on_a_model_with_an_mtp_module(model, pp, stage_layers):
    m = load_model(model).model_copy(update={"mtp_layers": 1})
    kw = dict(stage_layers=stage_layers) if stage_layers else {}
    ep = 8 if m.moe is not None else 1
    # pp > 1 without data parallelism: with uneven stages the closed form charges the pacing rank's DP reduction
    # where the replay ends with the last rank to finish (test_des_api's uneven cases have no DP either)
    devices = 64 if pp == 1 else 2 * pp
    sc = ts.Scenario.build(m, HW, devices=devices, global_batch=64, seq_len=4096, tp=2, pp=pp, ep=ep, zero=1, **kw)
    r, a = _both(sc)
    assert r.step_time_s == pytest.approx(a.step_time_s, rel=1e-9)
    for k, v in a.time_breakdown_s.items():
        assert r.time_breakdown_s[k] == pytest.approx(v, rel=1e-9, abs=1e-9 * a.step_time_s), k
    assert r.memory_bytes == a.memory_bytes


def test_an_mtp_module_makes_the_step_slower_and_the_last_rank_fuller():
    m0 = load_model("mixtral-8x7b")
    build = lambda m: ts.Scenario.build(m, HW, devices=64, global_batch=64, seq_len=4096, tp=2, pp=4, ep=8,  # noqa
                                        zero=1)
    a0, a1 = ts.estimate(build(m0)), ts.estimate(build(m0.model_copy(update={"mtp_layers": 1})))
    assert a1.step_time_s > a0.step_time_s
    assert a1.memory_bytes["total_bytes"] >= a0.memory_bytes["total_bytes"]


# ---- the DeepSeek-V3 recipe rows ----------------------------------------------------------------------------------
def _case(row_id):
    _, items = load_cases(Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "published_runs.csv")
    return next(c for c in items if getattr(c, "id", None) == row_id)


@pytest.mark.parametrize("row_id, layers", [
    ("mbridge2602-dsv3-671b-b200-256", (4,) * 15 + (1,)),
    ("mbridge2602-dsv3-671b-gb200-256", (4,) * 15 + (1,)),
    ("mbridge2602-dsv3-671b-gb300-256", (4,) * 15 + (1,)),
    ("mbridge2509-dsv3-671b-1024", (1,) + (2,) * 30 + (0,)),
])
def test_the_deepseek_v3_recipe_rows_carry_their_layout_and_one_mtp_module(row_id, layers):
    c = _case(row_id)
    assert c.model.mtp_layers == 1
    assert c.stage_layers == layers
    assert any("pipeline layout" in a for a in c.assumptions)


def test_a_layout_that_does_not_add_up_to_the_model_is_a_row_error():
    from simulator.validation.rows import stage_layers_of_notes
    with pytest.raises(RowError, match="places 3 decoder layers"):
        stage_layers_of_notes("pp_layout Et|tt|L", load_model("llama2-7b"), [])
