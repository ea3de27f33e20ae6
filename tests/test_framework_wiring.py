"""The framework as an input (issue 10): --framework on the job commands, the attention core at the bf16 peak in
FP8 runs, memory as frameworks report it, FSDP2 under pipeline parallelism, context-parallel exchange and
imbalance, and validation driven by each row's `framework` column."""
from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest

import simulator as ts
from simulator.cli import main
from simulator.costs.communication import cp_imbalance_factor
from simulator.costs.framework_effects import fsdp_unsharded_bytes, memory_as_reported_bytes
from simulator.costs.layer import layer_costs
from simulator.costs.sizes import sizes
from simulator.specs.framework import FRAMEWORK_COLUMN_VALUES
from simulator.specs.frameworks_loading import framework_for_run
from simulator.specs.job import Job
from simulator.specs.layout_table import LayoutTable
from simulator.specs.stack import framework_named
from simulator.validation import validate

GB = 1e9


def cli_json(*argv) -> dict:
    buf = io.StringIO()
    with redirect_stdout(buf):
        main(list(argv))
    return json.loads(buf.getvalue())


# ---- attention in FP8 runs --------------------------------------------------------------------------------------
def test_fp8_attention_core_runs_at_the_bf16_peak():
    """Same model and layout in bf16 and fp8: the GEMM peak doubles on H100 (1979 vs 989 TFLOP/s dense) but the
    attention core is charged at the bf16 peak both times, so its time is identical; by hand it is the causal half
    of the core FLOPs over bf16 peak x the attention efficiency."""
    sc = ts.Scenario.build("llama3-8b", "h100-sxm5-80gb", 8, 8, seq_len=8192, tp=8)
    out = {}
    for dtype in ("bf16", "fp8"):
        tr = sc.training.model_copy(update={"dtype": dtype})
        job = Job(model=sc.model, hardware=sc.hardware, training=tr, num_devices=8)
        sz = sizes(job, LayoutTable.from_layouts([sc.layout]))
        assert sz.attention_peak_flops_per_s == pytest.approx(989.4e12, rel=0.01)
        out[dtype] = (float(layer_costs(sz).attention_core_s[0]), sz)
    assert out["fp8"][0] == pytest.approx(out["bf16"][0], rel=1e-12)
    assert out["fp8"][1].kernel.peak_flops_per_s == pytest.approx(2 * out["bf16"][1].kernel.peak_flops_per_s,
                                                                 rel=0.01)


# ---- memory as frameworks report it -----------------------------------------------------------------------------
def test_reserved_is_allocated_over_the_allocator_utilisation():
    """50 GB allocated: reserved 50 / 0.94 = 53.19 GB (Megatron, PyTorch caching allocator); a `memory_gb` row of
    torchtitan (which logs max_reserved) compares against that, of MaxText (XLA, allocated report) against 50."""
    mc, tt, mx = framework_named("megatron-core"), framework_named("torchtitan"), framework_named("maxtext")
    assert float(memory_as_reported_bytes(50 * GB, "memory_allocated_gb", mc.allocator)) == pytest.approx(50 * GB)
    assert float(memory_as_reported_bytes(50 * GB, "memory_reserved_gb", mc.allocator)) == pytest.approx(
        50 * GB / 0.94)
    assert float(memory_as_reported_bytes(50 * GB, "memory_gb", tt.allocator)) == pytest.approx(50 * GB / 0.94)
    assert float(memory_as_reported_bytes(50 * GB, "memory_gb", mx.allocator)) == pytest.approx(50 * GB)


def test_estimate_reports_allocated_reserved_and_device_peaks():
    d = cli_json("estimate", "--model", "llama3-8b", "--hardware", "h100-sxm5-80gb", "--devices", "8",
                 "--global-batch", "8", "--seq-len", "4096", "--tp", "8", "--format", "json")
    p = d["memory_peaks"]
    kinds = sum(d["memory"][k] for k in ("weights_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes"))
    assert p["allocated_bytes"] == pytest.approx(kinds)
    assert p["reserved_bytes"] == pytest.approx(kinds / 0.94)
    assert p["device_bytes"] == pytest.approx(p["reserved_bytes"] + 2.0 * GB)     # + the profile's 2 GB context
    assert d["memory"]["total_bytes"] == pytest.approx(kinds + 2.0 * GB)       # what must fit: allocated + context


def test_torchtitan_fsdp2_under_pp_holds_the_stage_gathered_and_fp32_grads_by_hand():
    """A stage of 4e9 parameters in 32 blocks of 0.125e9 under PP 2: torchtitan keeps the stage's bf16 parameters
    gathered (4e9 x 2 B = 8 GB) and accumulates unsharded fp32 gradients (4e9 x 4 B = 16 GB); without PP two
    blocks are gathered (2 x 0.125e9 x 2 B = 0.5 GB) and one block's gradient waits (0.5 GB)."""
    tt = framework_named("torchtitan").fsdp
    p, g = fsdp_unsharded_bytes(4e9, 0.125e9, np.array([2.0, 1.0]), tt.reshard_after_forward,
                                tt.unsharded_grad_accumulation_under_pp, 2.0, tt.accumulated_grad_bytes)
    assert p.tolist() == pytest.approx([8 * GB, 0.5 * GB])
    assert g.tolist() == pytest.approx([16 * GB, 0.5 * GB])


def test_llama3_8b_torchtitan_and_megatron_core_differ_as_explained():
    """Llama 3 8B, 8 x H100, zero 3, pp 2: torchtitan's FSDP2 holds stage 0's 16 layers + embedding gathered in
    bf16 and their fp32 gradients (weights and grads much larger than Megatron's sharded ZeRO-3), its op-level
    SAC keeps fewer activations than Megatron's core-attention selective recompute and recomputes more."""
    args = ["estimate", "--model", "llama3-8b", "--hardware", "h100-sxm5-80gb", "--devices", "8", "--global-batch",
            "64", "--seq-len", "8192", "--zero", "3", "--pp", "2", "--recompute", "selective", "--format", "json"]
    mc = cli_json(*args, "--framework", "megatron-core")
    tt = cli_json(*args, "--framework", "torchtitan")
    assert (mc["framework"], tt["framework"]) == ("megatron-core", "torchtitan")
    assert (mc["attention_kernel"], tt["attention_kernel"]) == ("cudnn-fused", "flash-attn-2")
    # first rank: 16 layers of (q, o: 4096^2; k, v: 1024 x 4096; 3 MLP matrices 4096 x 14336; 2 norms) = 218.1e6
    # plus the 128256 x 4096 embedding: 4.015e9. Both shard 2 B/param over dp 4; Megatron adds its gather buffer
    # (the embedding unit and the layer after it, (525.3e6 + 218.1e6) x 2 B; costs.memory.zero3_gathered_params),
    # torchtitan the whole stage in bf16 (4.015e9 x 2 B).
    layer = 2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 4096 * 14336 + 2 * 4096
    stage = 16 * layer + 128256 * 4096
    assert tt["memory"]["weights_bytes"] - mc["memory"]["weights_bytes"] == pytest.approx(
        2.0 * stage - 2.0 * (128256 * 4096 + layer), rel=1e-3)
    assert tt["memory"]["grads_bytes"] > mc["memory"]["grads_bytes"] + 3.5 * stage
    assert tt["memory"]["activations_bytes"] < mc["memory"]["activations_bytes"]
    assert tt["time_breakdown_s"]["recompute"] > mc["time_breakdown_s"]["recompute"]


def test_stated_flags_are_overrides_of_the_framework():
    d = cli_json("estimate", "--model", "llama3-8b", "--hardware", "h100-sxm5-80gb", "--devices", "8",
                 "--global-batch", "8", "--seq-len", "4096", "--tp", "8", "--tp-comm-overlap", "on",
                 "--framework", "torchtitan", "--format", "json")
    assert d["framework_overrides"] == {"tp_comm_overlap": True}
    assert d["layout"]["tp_comm_overlap"] is True and d["layout"]["zero3_unit"] == "layer"


def test_search_takes_the_framework():
    res = ts.search("llama3-8b", "h100-sxm5-80gb", 8, 8, 4096, constraints={"tp": [8]}, framework="torchtitan")
    assert res.summary()["framework"] == "torchtitan"
    assert res.scenario(0).framework.name == "torchtitan"


# ---- context parallelism ----------------------------------------------------------------------------------------
def test_ring_without_load_balancing_waits_for_the_last_rank():
    """Causal attention over cp contiguous blocks: rank i computes i + 1 blocks, the last cp; the mean is
    (cp + 1) / 2, so the slowest over the mean is 2 cp / (cp + 1): 1.6 at cp 4, 1 when balanced."""
    assert cp_imbalance_factor(np.array([1.0, 2.0, 4.0]), False).tolist() == pytest.approx([1.0, 4 / 3, 1.6])
    assert cp_imbalance_factor(4.0, True) == pytest.approx(1.0)


# ---- validation driven by the framework column ------------------------------------------------------------------
HEADER = ("id,source,url,table_ref,year,model_name,n_layers,hidden,ffn_hidden,n_heads,n_kv_heads,vocab,seq_len,"
          "gated_mlp,moe_experts,moe_topk,moe_expert_ffn,moe_shared_experts,moe_layer_freq,hardware_profile,"
          "n_devices,devices_per_node,device_memory_gb,scaleup_gbps_per_device,scaleout_gbps_per_device,dtype,tp,pp,"
          "dp,ep,cp,vpp,zero_stage,sequence_parallel,recompute,micro_batch,global_batch,metric,value,"
          "flops_convention,peak_tflops_used,inferred,confidence,notes,framework")


def fixture_csv(tmp_path):
    """One Llama-style 8B row per framework column value (2024, 8 x H100, tp 8, step time 1 s), and a
    megatron-core row whose notes state TP comm overlap."""
    lines = [HEADER]
    for fw in FRAMEWORK_COLUMN_VALUES:
        lines.append(f"fx-{fw},fixture,,,2024,8B,32,4096,14336,32,8,128256,4096,1,,,,,,h100-sxm5-80gb,8,8,,,,bf16,"
                     f"8,1,1,1,1,1,1,1,selective,1,8,step_time_s,1.0,,,,,,{fw}")
    lines.append("fx-tpov,fixture,,,2024,8B,32,4096,14336,32,8,128256,4096,1,,,,,,h100-sxm5-80gb,8,8,,,,bf16,"
                 "8,1,1,1,1,1,1,1,selective,1,8,step_time_s,1.0,,,,,\"with --tp-comm-overlap\",megatron-core")
    p = tmp_path / "runs.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_each_row_runs_under_the_preset_of_its_framework_column(tmp_path):
    rep = validate(fixture_csv(tmp_path))
    rows = {r.id: r for r in rep.rows}
    for fw in FRAMEWORK_COLUMN_VALUES:
        r = rows[f"fx-{fw}"]
        assert r.status == "ok", (fw, r.reason)
        assert r.framework == framework_for_run(fw, 2024).name
        assert r.overrides == {} and r.policy.startswith(r.framework)
    assert rows["fx-tpov"].overrides == {"tp_comm_overlap": True}
    assert rows["fx-tpov"].step_time_s < rows["fx-megatron-core"].step_time_s   # the overlap hides TP time
    d = rep.to_dict()
    assert {"framework", "overrides", "policy"} <= set(d["rows"][0])
    assert set(d["summary"]["by_framework"]) >= {"megatron-core", framework_for_run("torchtitan", 2024).name,
                                                  "maxtext"}


def test_compare_runs_every_profile_under_the_framework():
    d = cli_json("compare", "--model", "llama3-8b", "--hardware", "h100-sxm5-80gb", "--devices", "8",
                 "--global-batch", "16", "--seq-len", "4096", "--max-pp", "1", "--tp", "8", "--framework",
                 "torchtitan", "--format", "json")
    assert d["framework"] == "torchtitan"


def test_param_gather_without_overlap_is_exposed_in_both_engines():
    """ZeRO-1 over dp 8: with the parameter all-gather overlapped (megatron-core's default) the forward hides it;
    stated off (as presets such as `unknown` have it) it is exposed, in the analytic engine and in the replay by
    the same amount: one all-gather of the rank's parameters."""
    kw = dict(seq_len=2048, tp=1, zero=1, micro_batch=1)
    on = ts.Scenario.build("llama2-7b", "a100-sxm4-80gb", 8, 16, **kw)
    off = ts.Scenario.build("llama2-7b", "a100-sxm4-80gb", 8, 16, dp_param_gather_overlap=False, **kw)
    assert off.overrides == {"dp_param_gather_overlap": False}
    assert framework_named("unknown").overlap.dp_param_gather_overlap is False
    a_on, a_off = ts.estimate(on), ts.estimate(off)
    exposed = a_off.time_breakdown_s["dp_comm"] - a_on.time_breakdown_s["dp_comm"]
    assert exposed > 0
    from simulator.crosscheck import simulate
    d_on, d_off = simulate(on), simulate(off)
    assert d_off.step_time_s - d_on.step_time_s == pytest.approx(exposed, rel=0.05)


def test_blank_micro_batch_follows_the_presets_rule():
    """Global batch 64 over dp 4 (local batch 16), pp 2, micro-batch blank: torchtitan (2025-) runs micro-batch 1
    under PP (16 micro-batches); torchtitan-2024 splits the local batch into as many micro-batches as stages
    (micro-batch 8); Megatron-Core leaves it to the search; without PP torchtitan runs the local batch at once."""
    from simulator.validation.rows import blank_field_policy
    known = {"micro_batch": None, "pp": 2, "dp": 4}
    assert blank_field_policy(framework_named("torchtitan"), known, 64)[0] == 1
    assert blank_field_policy(framework_named("torchtitan-2024"), known, 64)[0] == 8
    assert blank_field_policy(framework_named("megatron-core"), known, 64)[0] is None
    assert blank_field_policy(framework_named("torchtitan"), dict(known, pp=1), 64)[0] == 16


def test_blank_cells_a_preset_fixes_take_its_defaults():
    from simulator.validation.rows import framework_default_fill
    known = {"zero_stage": None, "recompute": None, "vpp": None, "sequence_parallel": None, "tp": 2}
    filled = framework_default_fill(framework_named("torchtitan"), known)
    assert filled == {"zero_stage": 3, "recompute": "selective", "sequence_parallel": 1}
    assert known["vpp"] is None                                        # torchtitan fixes no vpp: searched
    assert framework_default_fill(framework_named("megatron-core"), {"zero_stage": None, "recompute": None,
                                                                      "vpp": None, "sequence_parallel": None}) == {}


def test_scenario_file_takes_the_framework(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("model: llama3-8b\nhardware: h100-sxm5-80gb\ndevices: 8\nglobal_batch: 8\nseq_len: 4096\n"
                 "tp: 8\nframework: torchtitan\n")
    d = cli_json("estimate", "--scenario", str(f), "--format", "json")
    assert d["framework"] == "torchtitan"
    assert cli_json("estimate", "--scenario", str(f), "--framework", "maxtext", "--format", "json")[
        "framework"] == "maxtext"
