"""Host-bound eager execution (costs.host): kernel launches per layer pass, CUDA-graph scopes, the dropless MoE
dispatcher's device-to-host sync, and their wiring into the layer passes of both engines. Counts are derived by
hand from the per-block constants (Megatron-Core code paths, module docstring of costs.host)."""
from __future__ import annotations

import numpy as np
import pytest

import simulator as ts
from simulator.costs import host as H
from simulator.costs.host import layer_kernel_host, synced_pass_s
from simulator.costs.layer import layer_costs
from simulator.costs.sizes import sizes
from simulator.crosscheck import simulate
from simulator.specs.frameworks_loading import load_framework
from simulator.specs.job import Job
from simulator.specs.layout_table import LayoutTable
from simulator.specs.model import MoESpec
from simulator.specs.routing import RoutingSpec
from simulator.validation.rows import cuda_graph_override

from .conftest import gpt, toy_hardware

K = 10e-6   # 10 us per kernel: counts read off as host seconds / K


def _sz(moe=True, ep=2, dtype="bf16", routing=None, framework=None):
    m = gpt(layers=2, hidden=512, heads=8,
            moe=MoESpec(num_experts=8, top_k=2, expert_ffn_hidden_size=1024) if moe else None)
    tr = ts.TrainingSpec(seq_len=128, global_batch=16, dtype=dtype, moe_routing=routing)
    fw = framework or load_framework("megatron-core")
    return sizes(Job(m, toy_hardware(), tr, 8, framework=fw),
                 LayoutTable.from_columns(tp=np.array([1]), dp=np.array([8]), ep=np.array([ep]),
                                          micro_batch=np.array([2])))


def _counts(lk):
    return {k: round(float(np.ravel(getattr(lk, k))[0]) / K, 6)
            for k in ("dense_fwd_s", "dense_bwd_s", "moe_fwd_s", "moe_bwd_s", "moe_post_sync_fwd_s")}


def test_moe_layer_kernel_counts_by_hand_bf16():
    """8 experts over ep 2: 4 local. Forward: attention 8, router 12, metadata + permute 11 + 2, after the sync
    9 + 2 GEMMs x 4 experts = 17: 50. Backward re-dispatches each kernel and splits every GEMM in two: attention
    8 + 2, router 12 + 1, metadata 13, after the sync 17 + 8: 61. Dense layer: attention 8 + MLP 4 forward,
    10 + 6 backward."""
    c = _counts(layer_kernel_host(_sz(), K, (), fp8=False))
    assert c == {"dense_fwd_s": 12, "dense_bwd_s": 16, "moe_fwd_s": 50, "moe_bwd_s": 61, "moe_post_sync_fwd_s": 17}


def test_fp8_adds_a_quantisation_per_gemm_input_and_gradient():
    """FP8: one quantisation per GEMM input forward, per gradient input backward (the bf16 router excepted).
    Attention 8 + 2 = 10 / 10 + 2 x 3 = 16; after the sync 17 + 8 = 25 / 25 + 8 x 3 = 49; MoE forward
    10 + 12 + 13 + 25 = 60, backward 16 + 13 + 13 + 49 = 91."""
    c = _counts(layer_kernel_host(_sz(dtype="fp8"), K, (), fp8=True))
    assert c["moe_fwd_s"] == 60 and c["moe_bwd_s"] == 91 and c["moe_post_sync_fwd_s"] == 25
    assert c["dense_fwd_s"] == 10 + 6 and c["dense_bwd_s"] == 16 + 6 + 2 * 3


def test_more_expert_parallelism_means_fewer_local_expert_gemms():
    """ep 8 over 8 experts: one local expert, its 2 GEMMs instead of 8: forward 50 - 6 = 44."""
    assert _counts(layer_kernel_host(_sz(ep=8), K, (), fp8=False))["moe_fwd_s"] == 44


def test_dropless_syncs_and_drop_and_pad_does_not():
    """Dropless (no capacity factor) and a capacity factor without padding wait on the device-to-host copy
    (Megatron-Core _maybe_dtoh_and_synchronize); drop-and-pad has static shapes: no copy, no wait."""
    dropless = layer_kernel_host(_sz(), K, (), fp8=False)
    no_pad = layer_kernel_host(_sz(routing=RoutingSpec(capacity_factor=1.0, pad_to_capacity=False)), K, (), False)
    padded = layer_kernel_host(_sz(routing=RoutingSpec(capacity_factor=1.0, pad_to_capacity=True)), K, (), False)
    assert float(dropless.moe_syncs[0]) == 1.0 and float(no_pad.moe_syncs[0]) == 1.0
    assert float(padded.moe_syncs[0]) == 0.0 and float(padded.moe_post_sync_fwd_s[0]) == 0.0


def test_cuda_graph_scopes_replace_their_kernels_by_one_launch():
    """attn: attention 8 -> 1 forward (10 -> 1 backward); moe_router + moe_preprocess: 12 -> 1 and 13 -> 1. The
    whole MoE block ('moe') is captured only with drop-and-pad (dropless shapes are dynamic): then 1 launch for
    the 17 post-sync kernels and no sync; without padding the scope does not capture it."""
    base = _counts(layer_kernel_host(_sz(), K, (), False))
    attn = _counts(layer_kernel_host(_sz(), K, ("attn",), False))
    assert base["moe_fwd_s"] - attn["moe_fwd_s"] == 7 and base["moe_bwd_s"] - attn["moe_bwd_s"] == 9
    assert base["dense_fwd_s"] - attn["dense_fwd_s"] == 7
    router = _counts(layer_kernel_host(_sz(), K, ("moe_router", "moe_preprocess"), False))
    assert base["moe_fwd_s"] - router["moe_fwd_s"] == 11 + 12
    assert router["moe_post_sync_fwd_s"] == 17          # the sync stays: what follows it is still eager
    padded = _sz(routing=RoutingSpec(capacity_factor=1.0, pad_to_capacity=True))
    moe = layer_kernel_host(padded, K, ("moe_router", "moe_preprocess", "moe"), False)
    assert _counts(moe)["moe_fwd_s"] == 8 + 1 + 1 + 1 and float(moe.moe_syncs[0]) == 0.0
    dropless_moe = layer_kernel_host(_sz(), K, ("moe",), False)
    assert _counts(dropless_moe)["moe_fwd_s"] == 50 and float(dropless_moe.moe_syncs[0]) == 1.0
    full = layer_kernel_host(_sz(), K, ("full_iteration",), False)
    assert _counts(full)["moe_fwd_s"] == 4 and float(full.moe_syncs[0]) == 0.0


def test_exposed_host_time_after_the_sync_by_hand():
    """G 1.0 of which 0.4 after the sync, H 0.9 of which 0.6 after it: the host waits for the GPU's 0.6 before the
    sync, then dispatches 0.6 of kernels the GPU's 0.4 cannot hide: max(1.0, 0.6 + max(0.6, 0.3)) = 1.2. Without
    the sync the host runs ahead: max(1.0, 0.9) = 1.0."""
    assert float(synced_pass_s(1.0, 0.4, 0.9, 0.6, 1.0)) == pytest.approx(1.2)
    assert float(synced_pass_s(1.0, 0.4, 0.9, 0.6, 0.0)) == pytest.approx(1.0)
    # host-bound before the sync too: 0.6 + 0.7 = 1.3 = H: the sync adds nothing to a host-bound pass
    assert float(synced_pass_s(1.0, 0.4, 1.3, 0.6, 1.0)) == pytest.approx(1.3)


def _host_heavy(us):
    fw = load_framework("megatron-core")
    return fw.model_copy(update={"host": fw.host.model_copy(update={"kernel_host_us": us})})


def test_layer_passes_take_the_synced_host_time_where_the_host_is_slower():
    """A 1 ms kernel on the toy device makes every pass host-bound: the MoE layer's forward is H_post +
    max(G_pre, H_pre) = H (its host time: 50 kernels), backward max(G, H) = 61 kernels; the dense layer 12 / 16.
    With kernel_host_us null the passes keep the layer_overhead_us floor (0 on the toy device): the GPU time."""
    sz = _sz(framework=_host_heavy(1000.0))
    lc = layer_costs(sz)
    frac = sz.moe_fraction
    assert float(np.ravel(lc.forward_s)[0]) == pytest.approx((1 - frac) * 12e-3 + frac * 50e-3)
    assert float(np.ravel(lc.backward_s)[0]) == pytest.approx((1 - frac) * 16e-3 + frac * 61e-3)
    off = layer_costs(_sz(framework=_host_heavy(None)))
    assert np.allclose(off.forward_s, off.gpu_fwd_s) and np.allclose(off.backward_s, off.gpu_bwd_s)


def test_both_engines_agree_on_a_host_bound_moe_step():
    """The host-bound pass times enter both engines through the layer costs: replay == estimate."""
    sc = ts.Scenario.build("mixtral-8x7b", "a100-sxm4-80gb", devices=64, global_batch=64, seq_len=4096, tp=2,
                           pp=4, ep=8, zero=1, framework=_host_heavy(400.0))
    sc = sc.model_copy(update={"layout": sc.layout.model_copy(update={
        "overlap_grad_reduce": False, "dp_param_gather_overlap": False, "tp_comm_overlap": False})})
    r, a = simulate(sc, overlap=False, contention=False), ts.estimate(sc)
    assert a.time_breakdown_s["host"] > 0.0
    assert r.step_time_s == pytest.approx(a.step_time_s, rel=1e-12)
    assert r.time_breakdown_s["host"] == pytest.approx(a.time_breakdown_s["host"], rel=1e-9)


def test_recipe_notes_set_the_cuda_graph_scope():
    fw = load_framework("megatron-bridge")
    g, o = cuda_graph_override(fw, "... Transformer Engine CUDA graphs of attn, moe_router and moe_preprocess.")
    assert g.host.cuda_graph_scope == ("attn", "moe_router", "moe_preprocess") and o[0][:2] == (
        "cuda_graphs", "attn,moe_router,moe_preprocess")
    g, _ = cuda_graph_override(fw, "EP8, Transformer Engine CUDA graphs of moe_router and moe_preprocess.")
    assert g.host.cuda_graph_scope == ("moe_router", "moe_preprocess")
    assert cuda_graph_override(fw, "alltoall token dispatcher, no CUDA graphs.") == (fw, ())
    assert cuda_graph_override(fw, "nothing stated") == (fw, ())


@pytest.mark.parametrize("scope, rule", [(("attn", "attn"), "names a scope twice"), (("layers",), "attn")])
def test_bad_cuda_graph_scope_is_refused_with_the_field(scope, rule):
    fw = load_framework("megatron-core")
    with pytest.raises(Exception) as e:
        type(fw.host).model_validate({**fw.host.model_dump(), "cuda_graph_scope": list(scope)})
    assert "cuda_graph_scope" in str(e.value) and rule in str(e.value)


def test_kernel_counts_are_the_documented_constants():
    """The per-block constants the docstring derives (a change must be deliberate)."""
    assert (H.ATTN_KERNELS_FWD, H.ROUTER_KERNELS_FWD, H.PREPROCESS_KERNELS_FWD, H.PERMUTE_KERNELS_FWD,
            H.POST_SYNC_KERNELS_FWD, H.EXPERT_GEMMS) == (8.0, 12.0, 11.0, 2.0, 9.0, 2.0)


def test_with_cuda_graphs_parses_none_and_scope_lists():
    from simulator.specs.stack import with_cuda_graphs
    fw = load_framework("megatron-core")
    assert with_cuda_graphs(fw, "none").host.cuda_graph_scope == ()
    assert with_cuda_graphs(fw, "attn, moe_router").host.cuda_graph_scope == ("attn", "moe_router")
    assert with_cuda_graphs(fw, ["full_iteration"]).host.cuda_graph_scope == ("full_iteration",)


MOE_JOB = ["--model", "mixtral-8x7b", "--hardware", "h100-sxm5-80gb", "--devices", "64", "--global-batch", "64",
           "--seq-len", "4096", "--tp", "2", "--pp", "4", "--ep", "8"]


def test_cli_cuda_graphs_flag_is_validated_with_field_value_and_rule(capsys):
    from simulator.cli import main
    code = main(["estimate", *MOE_JOB, "--cuda-graphs", "attn,layers"])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: cuda_graphs = 'attn,layers': must be 'none' or distinct scopes")
    assert "Traceback" not in err


def test_cli_cuda_graphs_flag_reaches_the_estimate(capsys):
    """A host-heavy preset (kernel_host_us 400 us, YAML) is host-bound eager; CUDA graphs of the whole iteration
    remove the launches: the host-bound time goes to zero and the step gets shorter."""
    import json
    import tempfile
    from pathlib import Path
    from simulator.cli import main
    fw = _host_heavy(400.0)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "heavy.yaml"
        import yaml
        path.write_text(yaml.safe_dump(json.loads(fw.model_dump_json())))
        steps = {}
        for graphs in ("none", "full_iteration"):
            assert main(["estimate", *MOE_JOB, "--framework", str(path), "--cuda-graphs", graphs,
                         "--format", "json"]) == 0
            out = json.loads(capsys.readouterr().out)
            steps[graphs] = (out["step_time_s"], out["time_breakdown_s"]["host"])
    assert steps["none"][1] > 0.0 and steps["full_iteration"][1] == 0.0
    assert steps["full_iteration"][0] < steps["none"][0]
