"""MoE expert-parallel all-to-all: overlap with another micro-batch's compute (Megatron-Core combined 1F1B) and
the activation memory of the permuted tokens."""
import pytest

import simulator as ts
from simulator.specs.model import MoESpec

from .conftest import gpt, toy_hardware


def _moe():
    return gpt(layers=4, hidden=512, heads=8, moe=MoESpec(num_experts=8, top_k=2, expert_ffn_hidden_size=1024))


def _est(**kw):
    sc = ts.Scenario.build(_moe(), toy_hardware(), devices=8 * kw.get("pp", 1), global_batch=64, seq_len=128, tp=1,
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


def _gpu_toy():
    """The toy device as an NVIDIA part (its SM count from the nearest catalogued NVIDIA device): collectives
    there run on SMs."""
    return toy_hardware().model_copy(update={"vendor": "nvidia"})


def test_overlapped_all_to_all_slows_its_partner_compute_by_the_sms_it_holds():
    """Hand-derived: an all-to-all of 1.0 ms holding 20 % of the SMs beside 0.5 ms of compute: the compute needs
    0.5 / 0.8 = 0.625 ms < 1 ms, so the pair takes 1 ms and exposes 0.5 ms (a2a - compute). Beside 2.0 ms of
    compute: during the 1 ms all-to-all 0.8 ms of compute gets done, 1.2 ms is left at full rate: the pair takes
    2.2 ms, exposing 0.2 ms (share x a2a). Share 0 gives the contention-free max(0, a2a - compute)."""
    import numpy as np

    from simulator.costs.communication import ep_overlap_exposed_s
    assert float(ep_overlap_exposed_s(1.0e-3, 0.5e-3, 0.2)) == pytest.approx(0.5e-3)
    assert float(ep_overlap_exposed_s(1.0e-3, 2.0e-3, 0.2)) == pytest.approx(0.2e-3)
    assert float(ep_overlap_exposed_s(1.0e-3, 0.8e-3, 0.2)) == pytest.approx(0.2e-3)   # the two cases meet
    assert float(ep_overlap_exposed_s(1.0e-3, 2.0e-3, 0.0)) == 0.0
    out = ep_overlap_exposed_s(np.array([1.0, 1.0]), np.array([0.5, 2.0]), 0.15)
    assert out.tolist() == pytest.approx([0.5, 0.15])


def test_ep_overlap_sm_share_costs_time_only_with_the_overlap_on():
    """The megatron-core preset's 20 SMs (DeepSeek-V3 sec. 3.2.2) lengthen an overlapped step over
    the contention-free one, and leaves a step without the overlap unchanged."""
    from simulator.specs.frameworks_loading import load_framework
    fw = load_framework("megatron-core")
    assert fw.moe.overlap_comm_sms == 20
    free = fw.model_copy(update={"moe": fw.moe.model_copy(update={"overlap_comm_sms": 0})})

    def step(framework, overlap):
        sc = ts.Scenario.build(_moe(), _gpu_toy(), devices=16, global_batch=64, seq_len=128, tp=1, dp=8, ep=8,
                               pp=2, vpp=2, recompute="none", micro_batch=1, ep_comm_overlap=overlap,
                               framework=framework)
        return ts.estimate(sc).to_dict()

    on, on_free = step(fw, True), step(free, True)
    assert on["time_breakdown_s"]["ep_comm"] > on_free["time_breakdown_s"]["ep_comm"]
    assert step(fw, False)["step_time_s"] == pytest.approx(step(free, False)["step_time_s"], rel=1e-12)


def test_des_charges_the_same_ep_contention_as_the_analytic_engine():
    """Both engines take the exposed all-to-all of a layer from costs.communication.ep_exposed_s: the SM share
    lengthens the DES step (no port contention) by what it lengthens the analytic step."""
    from simulator.specs.frameworks_loading import load_framework
    fw = load_framework("megatron-core")
    free = fw.model_copy(update={"moe": fw.moe.model_copy(update={"overlap_comm_sms": 0})})
    steps = []
    for f in (fw, free):
        sc = ts.Scenario.build(_moe(), _gpu_toy(), devices=16, global_batch=64, seq_len=128, tp=1, dp=8, ep=8,
                               pp=2, vpp=2, recompute="none", micro_batch=1, ep_comm_overlap=True, framework=f)
        steps.append((ts.estimate(sc).step_time_s, ts.simulate(sc, contention=False).step_time_s))
    (a_on, d_on), (a_free, d_free) = steps
    assert a_on > a_free and d_on > d_free
    assert d_on - d_free == pytest.approx(a_on - a_free, rel=1e-6)


def test_sm_share_is_the_presets_sms_over_the_devices_compute_units():
    """20 SMs of the H100's 132 (kernel catalogue compute_units) = 0.1515; of the B200's 148 = 0.1351; a preset
    without them (DeepSpeed) holds none."""
    import numpy as np

    from simulator.costs.communication import ep_overlap_sm_share
    from simulator.costs.sizes import sizes
    from simulator.specs.frameworks_loading import load_framework
    from simulator.specs.job import Job
    from simulator.specs.layout_table import LayoutTable

    def share(hw_name, fw_name):
        job = Job(_moe(), ts.load_hardware(hw_name), ts.TrainingSpec(seq_len=128, global_batch=16), 8,
                  framework=load_framework(fw_name))
        return ep_overlap_sm_share(sizes(job, LayoutTable.from_columns(tp=np.array([1]), dp=np.array([8]),
                                                                        ep=np.array([8]))))
    assert share("h100-sxm5-80gb", "megatron-core") == pytest.approx(20 / 132)
    assert share("b200", "megatron-bridge") == pytest.approx(20 / 148)
    assert share("h100-sxm5-80gb", "deepspeed") == 0.0
    assert share("tpu-v5p", "megatron-core") == 0.0            # TPU collectives run on DMA engines


def test_megatron_alltoall_dispatch_sends_the_probabilities_in_an_all_to_all_of_their_own():
    """Megatron-Core's alltoall dispatcher runs a second all-to-all of one fp32 probability per routed copy after the
    tokens' (token_dispatcher.py token_dispatch), in the forward and for its gradient in the backward. Toy cluster,
    EP 8 over two 4-device nodes, zero latency: the slow tier carries 4/8 of a rank's bytes at 10 GB/s, so the
    probabilities (128 tokens x top-2 x 4 B = 1024 B) take 0.5 x 1024 / 1e10 s beside the tokens' 0.5 x 128 x 2 x
    512 x 2 B / 1e10 s."""
    import numpy as np

    from simulator.costs.communication import ep_exposed_s, moe_probs_all_to_all_s
    from simulator.costs.layer import layer_costs
    from simulator.costs.sizes import sizes
    from simulator.specs.frameworks_loading import framework_for_run
    from simulator.specs.job import Job
    from simulator.specs.layout_table import LayoutTable
    m = _moe()
    fw = framework_for_run("megatron-core", 2026)
    assert fw.moe.probs_all_to_all
    table = LayoutTable.from_columns(tp=np.array([1]), dp=np.array([8]), ep=np.array([8]))
    training = ts.TrainingSpec(seq_len=128, global_batch=16)
    sz = sizes(Job(m, toy_hardware(), training, 8, framework=fw), table)
    probs, tokens = 0.5 * 1024 / 1e10, 0.5 * 128 * 2 * 512 * 2 / 1e10
    assert float(moe_probs_all_to_all_s(sz)[0]) == pytest.approx(probs, rel=1e-9)
    f, b = ep_exposed_s(sz, layer_costs(sz))
    assert float(f[0]) == pytest.approx(2 * tokens + probs, rel=1e-9)
    assert float(b[0]) == pytest.approx(2 * tokens + probs, rel=1e-9)
    off = fw.model_copy(update={"moe": fw.moe.model_copy(update={"probs_all_to_all": False})})
    f0, _ = ep_exposed_s(sizes(Job(m, toy_hardware(), training, 8, framework=off), table), layer_costs(sz))
    assert float(f0[0]) == pytest.approx(2 * tokens, rel=1e-9)


def test_passes_without_a_partner_follow_megatrons_warm_up_count():
    """Hand-derived from get_pp_rank_microbatches: pp 1, m 8: the first forward / last backward, 1/8. PP 4, VPP 2,
    m 16 (first stage): 2 x 3 + 1 x 4 + 1 = 11 warm-up forwards of 32 chunk passes. PP 2, VPP 2, m 2: 2 + 2 + 1 = 5
    >= 4 chunk passes, every pass alone (Megatron: are_all_microbatches_in_warmup)."""
    from simulator.costs.communication import ep_overlap_unpaired_fraction
    got = ep_overlap_unpaired_fraction([8, 16, 2], [1, 4, 2], [1, 2, 2])
    assert got.tolist() == pytest.approx([1 / 8, 11 / 32, 1.0])


def _ab_gain(model, hardware, framework, **kw):
    """(analytic, DES) step-time ratio without / with the EP overlap of one scenario."""
    out = []
    for engine in (ts.estimate, lambda sc: ts.simulate(sc, contention=False)):
        t = [engine(ts.Scenario.build(model, hardware, framework=framework, ep_comm_overlap=v, **kw)).step_time_s
             for v in (False, True)]
        out.append(t[0] / t[1])
    return out


def test_published_ab_deepseek_v3_proxy_pipelined_with_full_recompute():
    """Megatron-LM PR #6429 (and its dev counterpart #6311, 2026-08), the overlap on/off arms at the same setting:
    DeepSeek-V3 shapes at 14 layers (256 routed experts, MTP 1), 64 x H100 (8 nodes), TP1 PP4 EP16, layout
    Ett|(tt|)*6mL (VPP 2), alltoall dispatcher, seq 2048, MBS 1, GBS 256 (16 micro-batches), BF16, full recompute
    (uniform, 1 layer; the replayed all-to-all stays exposed): 3044 ms without the overlap, 2839 ms with it,
    1.072x. Assumed: the preset's first 3 dense layers kept (the PR states none). The warm-up and cool-down
    passes of the interleaved schedule (11 of 32 here) run without a partner; pricing only the first and last
    (1/m) gave 1.138x. Within 3.5 points in both engines."""
    m = ts.load_model("deepseek-v3").model_copy(update={"num_layers": 14, "mtp_layers": 1})
    a, d = _ab_gain(m, "h100-sxm5-80gb", "megatron-core", devices=64, global_batch=256, seq_len=2048, dtype="bf16",
                    tp=1, pp=4, vpp=2, dp=16, ep=16, micro_batch=1, recompute="full",
                    stage_layers=(2, 2, 2, 2, 2, 2, 2, 0))
    assert a == pytest.approx(3044 / 2839, abs=0.035)
    assert d == pytest.approx(a, rel=0.02)


def test_published_ab_qwen3_30b_a3b_without_pipelining():
    """Megatron-Bridge PR #5094 (2026-07), the recipe's overlap switched on at an otherwise fixed setting:
    Qwen3-30B-A3B, 16 x H100 (2 nodes), BF16, seq 4096, MBS 1, GBS 1024, TP1 PP1 CP1 EP16, forced load balance,
    HybridEP (node-limited dispatch here): step 24.714 s -> 20.992 s, 1.177x. Architecture from the HF config
    (48 layers, hidden 2048, 32 query / 4 KV heads of 128, 128 experts top-8 of width 768, vocab 151936). Within
    3.5 points in both engines."""
    from simulator.specs.model import ModelSpec
    m = ModelSpec(name="qwen3-30b-a3b", num_layers=48, hidden_size=2048, num_heads=32, num_kv_heads=4, head_dim=128,
                  ffn_hidden_size=6144, gated_mlp=True, vocab_size=151936, max_seq_len=4096,
                  moe=MoESpec(num_experts=128, top_k=8, expert_ffn_hidden_size=768))
    a, d = _ab_gain(m, "h100-sxm5-80gb", "megatron-bridge", devices=16, global_batch=1024, seq_len=4096,
                    dtype="bf16", tp=1, pp=1, dp=16, ep=16, micro_batch=1, recompute="none",
                    moe_dispatch="node-limited")
    assert a == pytest.approx(24.714 / 20.992, abs=0.035)
    assert d == pytest.approx(a, rel=0.02)
