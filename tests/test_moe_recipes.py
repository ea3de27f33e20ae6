"""MoE recipe facts stated in a row's notes (issue 15): DeepEP / HybridEP dispatch, node-limited routing, the
Megatron-Core recompute modules (selective kind 'mlp'), and the per-peer all-to-all latency default. Numbers
derived by hand in the comments."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from simulator.analytic.estimate import estimate_row
from simulator.costs.layer import recompute_pass_s
from simulator.specs.layout import Layout
from simulator.specs.loading import load_hardware, load_model
from simulator.specs.network import NetworkConditions
from simulator.specs.scenario import Scenario
from simulator.specs.training import TrainingSpec
from simulator.topology.collectives import all_to_all_time_s
from simulator.topology.placement import TierArrays
from simulator.validation.rows import _framework_for, _recompute_modules, framework_facts


def _facts(notes: str):
    fw = _framework_for("megatron-bridge", 2026)
    return framework_facts({"notes": notes}, fw, "nvidia-hopper")


def test_deepep_and_hybridep_notes_select_node_limited_dispatch_and_say_so():
    for notes in ("DeepEP (flex token dispatcher)", "the HybridEP flex token dispatcher"):
        facts, applied = _facts(notes)
        assert facts["moe_dispatch"] == "node-limited"
        assert any(k == "moe_dispatch" and v == "node-limited" for k, v, _ in applied)
    facts, applied = _facts("alltoall token dispatcher")
    assert facts["moe_dispatch"] == "flat" and facts["moe_max_nodes"] is None and applied == ()


def test_node_limited_routing_note_sets_the_node_cap():
    facts, applied = _facts("group-limited routing: at most 4 nodes per token")
    assert facts["moe_max_nodes"] == 4 and ("moe_max_nodes", 4) in [(k, v) for k, v, _ in applied]


@pytest.mark.parametrize("notes, recompute, kind", [
    ("recompute modules [mla_up_proj, mlp]", "selective", "mlp"),
    ("recompute modules [core_attn]", "selective", "core-attention"),
    ("recompute modules [mla_up_proj]", "none", "core-attention"),
    ("recompute not stated", None, "core-attention"),
])
def test_recompute_modules_fix_the_blank_recompute_cell(notes, recompute, kind):
    fw = _framework_for("megatron-bridge", 2026)
    known, assumptions = {"recompute": None}, []
    fw2, known, overrides = _recompute_modules(notes, fw, known, (), assumptions)
    assert known["recompute"] == recompute and fw2.recompute.selective == kind
    assert fw.recompute.selective == "core-attention"        # the cached preset itself is untouched
    stated = {"recompute": "full"}
    _recompute_modules(notes, fw, stated, (), [])
    assert stated["recompute"] == "full"                      # a stated cell wins


def test_mlp_selective_recompute_replays_the_dense_mlp_forward_only():
    # recompute codes 0/1/2 = none/selective/full: none 0, selective (kind mlp) the dense layers' MLP forward
    # averaged over the layers (1 ms of the 3 ms layer-average MLP: MoE layers replay nothing), full the whole
    # forward 10 ms
    sz = SimpleNamespace(recompute=np.array([0, 1, 2]),
                         framework=SimpleNamespace(recompute=SimpleNamespace(selective="mlp")))
    out = recompute_pass_s(sz, forward_s=10e-3, core_f=1e-3, gemm_f=8e-3, elem_f=0.5e-3,
                           parts={"qkv": 2e-3, "out_proj": 1e-3, "mlp": 3e-3, "dense_mlp": 1e-3})
    assert out == pytest.approx([0.0, 1e-3, 10e-3])


def _moe_scenario(recompute: str, selective_kind: str | None, model=None):
    from simulator.specs.stack import as_framework
    fw = as_framework("megatron-bridge")
    if selective_kind is not None:
        fw = fw.model_copy(update={"recompute": fw.recompute.model_copy(update={"selective": selective_kind})})
    return Scenario(model=model or load_model("mixtral-8x7b"), hardware=load_hardware("h100-sxm5-80gb"),
                    num_devices=64,
                    training=TrainingSpec(seq_len=4096, global_batch=256, dtype="bf16"),
                    layout=Layout(tp=1, pp=1, dp=64, ep=8, micro_batch=1, recompute=recompute,
                                  ep_comm_overlap=False),
                    framework=fw)


def test_mlp_recompute_module_leaves_moe_layers_alone():
    # Megatron-Core's 'mlp' recompute module checkpoints dense MLPs only (transformer_layer.py: recompute_mlp
    # only `if not self.is_moe_layer`): in Mixtral (every layer MoE) it replays no all-to-all, no GEMM and keeps
    # every activation, as no recompute; full recompute replays dispatch + combine in the backward (6 all-to-alls
    # a layer instead of 4: EP time x 1.5)
    none = estimate_row(_moe_scenario("none", None))
    mlp = estimate_row(_moe_scenario("selective", "mlp"))
    full = estimate_row(_moe_scenario("full", None))
    assert none["time_ep_comm_s"] > 0 and mlp["time_ep_comm_s"] == pytest.approx(none["time_ep_comm_s"])
    assert full["time_ep_comm_s"] == pytest.approx(1.5 * none["time_ep_comm_s"])
    assert mlp["time_recompute_s"] == 0.0 == none["time_recompute_s"] < full["time_recompute_s"]
    assert mlp["mem_total_bytes"] == pytest.approx(none["mem_total_bytes"])


def test_mlp_recompute_module_replays_the_dense_layers_of_a_mixed_model():
    # Mixtral's dims with every second layer MoE (layer_freq 2): the 'mlp' module replays the 16 dense layers'
    # MLP forward, half of what the same model all dense replays (16 of 32 layers), and drops their MLP
    # activations only: selective keeps less than none and more than the all-dense model's selective
    m = load_model("mixtral-8x7b")
    half = m.model_copy(update={"moe": m.moe.model_copy(update={"layer_freq": 2})})
    dense = m.model_copy(update={"moe": None})
    rc_half = estimate_row(_moe_scenario("selective", "mlp", half))["time_recompute_s"]
    rc_dense = estimate_row(_moe_scenario("selective", "mlp", dense))["time_recompute_s"]
    assert rc_dense > 0 and rc_half == pytest.approx(0.5 * rc_dense, rel=1e-6)
    none = estimate_row(_moe_scenario("none", None, half))["mem_total_bytes"]
    sel = estimate_row(_moe_scenario("selective", "mlp", half))["mem_total_bytes"]
    assert sel < none


def test_flat_all_to_all_latency_per_tier_by_default_per_peer_on_request():
    assert NetworkConditions().all_to_all_latency == "per-tier"
    # one tier of 16 ranks at 100 GB/s and 2 us, 16 MB per rank: 15/16 x 16 MB / 100 GB/s = 150 us of data;
    # per-peer latency 15 x 2 us = 30 us, per-tier 2 us
    tiers = TierArrays(np.array([16.0]), np.array([100e9]), np.array([2e-6]), np.array([0]), np.array([1.0]))
    assert all_to_all_time_s(16e6, 16, 1, tiers, per_peer_latency=True) == pytest.approx(150e-6 + 30e-6)
    assert all_to_all_time_s(16e6, 16, 1, tiers, per_peer_latency=False) == pytest.approx(150e-6 + 2e-6)


def test_the_deepseek_v3_h100_recipe_row_runs_deepep_overlap_and_mlp_recompute():
    from pathlib import Path
    from simulator.validation.rows import load_cases
    _, items = load_cases(Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "published_runs.csv")
    case = next(c for c in items if getattr(c, "id", "") == "mbridge2509-dsv3-671b-1024")
    assert (case.moe_dispatch, case.moe_max_nodes, case.ep_comm_overlap) == ("node-limited", 4, True)
    assert case.known["recompute"] == "selective" and case.framework.recompute.selective == "mlp"
    assert {k for k, _, _ in case.overrides} >= {"moe_dispatch", "moe_max_nodes", "ep_comm_overlap",
                                                  "selective_recompute", "overlap_grad_reduce"}
