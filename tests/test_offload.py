"""Offload in both engines (ZeRO-Offload, ZeRO-3 Offload / ZeRO-Infinity, activation offload): device, host and NVMe
memory against capacity, hand-derived transfer and CPU-Adam times, the published capacity claims on DGX-2 V100
nodes, the cross-check of the two engines and the host link as a contended resource of the replay."""
import numpy as np
import pytest
import simpy

import simulator as ts
from simulator.costs import offload as off
from simulator.des.engine import SharedLink
from simulator.des.simulate import simulate as replay
from simulator.errors import InfeasibleLayoutError
from simulator.specs.model import ModelSpec
from simulator.specs.scenario import Scenario

DGX2 = "v100-sxm3-32gb"        # 16 V100 32 GB, 1.5 TB host, PCIe Gen3 x16 (0.76 of 15.75 GB/s), 256 GB/s DRAM
LINK_V100 = 15.75e9 * 0.76     # 11.97 GB/s achieved PCIe Gen3 x16, one device alone on its node
ADAM_DGX2 = 256e9 * 0.5 / 30   # 4.27e9 params/s per node (memory-bandwidth roofline)


def gpt(name, layers, hidden):
    """GPT-2-style model of the DeepSpeed examples of 2020-21 (4h MLP, 50,257 vocabulary, untied for simplicity)."""
    return ModelSpec(name=name, source="test shape", num_layers=layers, hidden_size=hidden, num_heads=32,
                     ffn_hidden_size=4 * hidden, vocab_size=50257, max_seq_len=1024)


def params_of(layers, h, vocab=50257):
    return 12 * h * h * layers + 2 * h * layers + 2 * vocab * h       # layers (weights, biases ignored) + 2 norms


GPT10B = gpt("gpt-10b", 50, 4096)     # DeepSpeed ZeRO-Offload tutorial: 50 layers, hidden 4096, batch 10
GPT13B = gpt("gpt-13b", 62, 4096)     # ZeRO (arXiv 1910.02054) Table 10: 13B = 62 layers, hidden 4096
GPT40B = gpt("gpt-40b", 50, 8192)


def one_v100(model, batch, **kw):
    # assumptions (the sources do not give them): sequence 1024, fp16, full recompute, no flash attention (V100);
    # DeepSpeed fp16 training keeps 2-byte gradients (grad_dtype bf16 stands for any 2-byte gradient dtype)
    return Scenario.build(model, DGX2, 1, batch, seq_len=1024, dtype="fp16", grad_dtype="bf16", recompute="full",
                          micro_batch=batch, flash_attention=False, **kw)


def test_13b_fits_one_32gb_v100_with_optimizer_offload_and_not_without():
    without = ts.estimate(one_v100(GPT13B, 1, zero=2))
    with_cpu = ts.estimate(one_v100(GPT13B, 1, zero=2, offload_optimizer="cpu"))
    assert not without.feasible and "per device" in without.reasons[0]       # 16 B/param: ~200 GB
    assert with_cpu.feasible and with_cpu.fits
    assert with_cpu.memory_bytes["total_bytes"] <= 32e9 and with_cpu.memory_bytes["optimizer_bytes"] == 0
    assert with_cpu.memory_bytes["grads_bytes"] == 5e8 * 2                     # one 5e8-element fp16 bucket
    assert with_cpu.memory_tiers["host_bytes_per_node"] == pytest.approx(params_of(62, 4096) * 16)
    assert with_cpu.memory_tiers["host_capacity_bytes_per_node"] == 1500e9


def test_zero_offload_10b_transfer_and_cpu_adam_times_by_hand():
    plain = ts.estimate(one_v100(GPT10B, 10, zero=2))
    r = ts.estimate(one_v100(GPT10B, 10, zero=2, offload_optimizer="cpu"))
    p = params_of(50, 4096)                                                    # 10.478e9
    t = r.extra["offload_s"]
    assert t["d2h_bwd"] == pytest.approx(p * 2 / LINK_V100)                    # 1.75 s of fp16 gradients
    assert t["cpu_adam"] == pytest.approx(p / ADAM_DGX2)                       # 2.46 s
    assert t["param_copy"] == pytest.approx(p * 2 / LINK_V100)                 # fp16 weights back to the device
    assert t["update"] == pytest.approx(max(p / ADAM_DGX2, p * 2 / LINK_V100))
    assert t["h2d_fwd"] == t["h2d_bwd"] == t["d2h_fwd"] == 0
    # the gradient copy hides under the backward (several seconds of V100 compute); the CPU update is exposed and
    # replaces the GPU Adam step
    assert t["d2h_bwd"] < r.time_breakdown_s["compute"] / 3
    assert r.time_breakdown_s["offload"] == pytest.approx(t["update"]) and r.time_breakdown_s["optimizer"] == 0
    assert r.step_time_s == pytest.approx(plain.step_time_s - plain.time_breakdown_s["optimizer"] + t["update"],
                                          rel=1e-12)


def test_delayed_parameter_update_hides_the_cpu_step_behind_compute():
    plain = ts.estimate(one_v100(GPT10B, 10, zero=2))
    dpu = ts.estimate(one_v100(GPT10B, 10, zero=2, offload_optimizer="cpu", offload_delayed_update=True))
    assert dpu.time_breakdown_s["offload"] == 0
    assert dpu.step_time_s == pytest.approx(plain.step_time_s - plain.time_breakdown_s["optimizer"], rel=1e-12)


def test_40b_trains_on_one_v100_with_zero3_offload_and_1_5_tb_host_but_not_with_zero2_offload():
    """DeepSpeed ZeRO-3 Offload post (2021-03-08): 40B on one 32 GB V100 + 1.5 TB; ZeRO-2 Offload tops out ~13B."""
    z3 = ts.estimate(one_v100(GPT40B, 1, zero=3, offload_optimizer="cpu", offload_params="cpu"))
    assert z3.feasible
    p = params_of(50, 8192)                                                    # 41.1e9
    assert z3.memory_tiers["host_bytes_per_node"] == pytest.approx(p * 18)   # fp16 params + 16 B: 740 GB
    # the device keeps two gathered units (layers: 12 h^2 + 2 norms of h, larger than the 50,257 x h embedding)
    assert z3.memory_bytes["weights_bytes"] == pytest.approx(2 * (12 * 8192**2 + 2 * 8192) * 2)
    z2 = ts.estimate(one_v100(GPT40B, 1, zero=2, offload_optimizer="cpu"))
    assert not z2.feasible and "per device" in z2.reasons[0]                   # 82 GB of fp16 weights


def zero3_1t(n, micro_batch=1, **kw):
    return Scenario.build("megatron-1t", DGX2, n, n * micro_batch, seq_len=1024, dtype="fp16", zero=3,
                          zero3_unit="tensor", recompute="full", micro_batch=micro_batch, flash_attention=False,
                          offload_optimizer="cpu", offload_params="cpu", **kw)


def test_1t_zero3_offload_fits_256_v100_and_runs_out_of_host_memory_on_128():
    """DeepSpeed ZeRO-3 Offload post: 1T parameters on 256 DGX-2 V100 (3D parallelism needs 800). Per node, 16
    devices x 1.008e12 x 18 B / devices: 1.13 TB on 256 GPUs, 2.27 TB (> 1.5 TB) on 128."""
    ok, short = ts.estimate(zero3_1t(256)), ts.estimate(zero3_1t(128))
    assert ok.feasible and ok.memory_tiers["host_bytes_per_node"] == pytest.approx(1.0079502e12 * 18 / 256 * 16,
                                                                                   rel=1e-6)
    need = short.memory_tiers["host_bytes_per_node"]
    assert short.reasons == [f"needs {need / 1e9:,.1f} GB of host memory per node, more than the 1,500 GB available"]
    assert short.runnable and not short.fits


def test_activation_offload_moves_checkpoints_to_the_host():
    kept = ts.estimate(zero3_1t(512, micro_batch=4))
    moved = ts.estimate(zero3_1t(512, micro_batch=4, offload_activations="cpu"))
    assert not kept.feasible and moved.feasible
    layer = 2 * 1024 * 4 * 25600                                   # full recompute keeps 2sbh per layer (Korthikanti)
    dev = kept.memory_bytes["activations_bytes"] - moved.memory_bytes["activations_bytes"]
    assert dev == pytest.approx((128 - 2) * layer)                 # 2 of 128 layers stay on the device
    host = moved.memory_tiers["host_bytes_per_node"] - kept.memory_tiers["host_bytes_per_node"]
    assert host == pytest.approx(16 * 128 * layer)
    # out in the forward, back in the backward: one layer's checkpoint each way per layer and micro-batch
    link = 94.5e9 * 0.76 / 16                                      # DGX-2: 16 GPUs share the CPUs' PCIe lanes
    assert moved.extra["offload_s"]["d2h_fwd"] == pytest.approx(128 * layer / link)


def test_host_link_is_shared_under_the_node_cap():
    # DGX-2: 16 GPUs behind 94.5 GB/s of CPU lanes: 5.9 GB/s each, below the 15.75 GB/s x16 link
    assert off.host_link_bytes_per_s(15.75e9, 94.5e9, 16) == pytest.approx(94.5e9 / 16)
    assert off.host_link_bytes_per_s(15.75e9, 94.5e9, 1) == pytest.approx(15.75e9)
    assert off.host_link_bytes_per_s(63e9, None, 8) == pytest.approx(63e9)


def test_cpu_adam_roofline_and_exposed_time():
    assert off.cpu_adam_params_per_s(256e9) == pytest.approx(256e9 * 0.5 / 30)
    assert off.cpu_adam_time_s(1e9, 4e9, 16) == pytest.approx(4.0)            # 16 devices share the node's CPUs
    assert off.exposed_s(3.0, 5.0) == 0.0 and off.exposed_s(7.0, 5.0) == pytest.approx(2.0)


def test_exposed_offload_per_phase_and_direction_by_hand():
    # forward 4 s of compute, 5 s in and 1 s out -> 1 s exposed; backward 6 s, 3 s in and 7 s out -> 1 s; update 2 s
    args = dict(fwd_window_s=4.0, bwd_window_s=6.0, h2d_fwd_s=5.0, d2h_fwd_s=1.0, h2d_bwd_s=3.0, d2h_bwd_s=7.0,
                update_s=2.0)
    assert off.exposed_offload_s(**args, overlap=True, delayed_update=False) == pytest.approx(4.0)
    assert off.exposed_offload_s(**args, overlap=True, delayed_update=True) == pytest.approx(2.0)
    assert off.exposed_offload_s(**args, overlap=False, delayed_update=True) == pytest.approx(18.0)


def test_offload_rules_and_missing_host_facts_are_reasons():
    sc = Scenario.build("llama2-7b", DGX2, 8, 16, seq_len=4096, zero=2, offload_params="cpu")
    r = ts.estimate(sc)
    assert not r.runnable and ("offload_params=cpu needs zero 3 (ZeRO-3 Offload) when the parameters are sharded "
                               "(dp x cp = 8), got zero 2") in r.reasons
    assert ts.estimate(one_v100(GPT10B, 1, zero=0, offload_params="cpu", offload_optimizer="cpu")).feasible
    r = ts.estimate(one_v100(GPT10B, 1, zero=2, offload_optimizer="nvme"))
    assert r.reasons == ["offload needs host.nvme_read_gb_per_s and host.nvme_write_gb_per_s of hardware "
                         "'v100-sxm3-32gb', which its profile does not give"]
    tpu = Scenario.build("llama2-7b", "tpu-v4", 8, 64, seq_len=4096, zero=2, offload_optimizer="cpu")
    assert any("offload needs host.link_gb_per_s" in x for x in ts.estimate(tpu).reasons)
    with pytest.raises(InfeasibleLayoutError):
        replay(tpu)


def test_nvme_optimizer_io_by_hand_and_unknown_nvme_capacity_is_a_reason():
    # 8 H200 share 48 GB/s read / 26 GB/s write (DeepNVMe, 8x Gen5 RAID-0); each step reads and writes 12 B/param
    sc = Scenario.build("llama2-7b", "h200-sxm-141gb", 8, 64, seq_len=4096, zero=2, offload_optimizer="nvme")
    r = ts.estimate(sc)
    from simulator.costs.flops import model_costs
    shard = model_costs(sc.model, 4096).total_params(sc.model.tied_embeddings) / 8
    t = r.extra["offload_s"]
    assert t["nvme"] == pytest.approx(12 * shard / 6e9 + 12 * shard / 3.25e9)
    assert t["update"] == pytest.approx(max(t["cpu_adam"], t["nvme"], t["param_copy"]))
    assert r.memory_tiers["nvme_bytes_per_node"] == pytest.approx(8 * 12 * shard)
    assert r.reasons == [f"needs {8 * 12 * shard / 1e9:,.1f} GB of NVMe per node; hardware 'h200-sxm-141gb' gives "
                         "no host.nvme_gb"]


@pytest.mark.parametrize("kw", [
    dict(devices=8, global_batch=16, zero=2, offload_optimizer="cpu"),
    dict(devices=8, global_batch=16, zero=2, offload_optimizer="cpu", offload_delayed_update=True),
    dict(devices=1, global_batch=4, zero=0, offload_optimizer="cpu", offload_activations="cpu", recompute="full"),
    dict(devices=8, global_batch=32, zero=2, offload_activations="cpu", recompute="full", micro_batch=2),
])
def test_both_engines_agree_without_overlap_or_contention(kw):
    sc = Scenario.build("llama2-7b", "h200-sxm-141gb", seq_len=4096, overlap_grad_reduce=False,
                        dp_param_gather_overlap=False, **kw)
    r, a = replay(sc, overlap=False, contention=False), ts.estimate(sc)
    assert r.time_breakdown_s["offload"] > 0
    assert r.step_time_s == pytest.approx(a.step_time_s, rel=1e-12)
    for k, v in a.time_breakdown_s.items():
        assert r.time_breakdown_s[k] == pytest.approx(v, rel=1e-12, abs=1e-12 * a.step_time_s), k
    assert r.memory_bytes == a.memory_bytes and r.memory_tiers == a.memory_tiers


def test_zero3_offload_and_pipelines_agree_on_the_offload_category():
    """With parameter offload (ZeRO-3) or a pipeline the replay copies inside every pass (fill and drain grow, as
    ZeRO-3's gathers do); the offload time of the pacing rank is the same in both engines."""
    for kw in (dict(devices=8, zero=3, offload_optimizer="cpu", offload_params="cpu", recompute="full"),
               dict(devices=8, tp=2, pp=4, zero=2, offload_optimizer="cpu", offload_activations="cpu")):
        sc = Scenario.build("llama2-7b", "h200-sxm-141gb", global_batch=32, seq_len=4096, overlap_grad_reduce=False,
                            **kw)
        r, a = replay(sc, overlap=False, contention=False), ts.estimate(sc)
        assert r.time_breakdown_s["offload"] == pytest.approx(a.time_breakdown_s["offload"], rel=1e-12)
        assert r.step_time_s >= a.step_time_s * (1 - 1e-12) or kw.get("zero") == 3


def test_overlap_hides_gradient_copies_in_the_replay_as_in_the_estimate():
    sc = Scenario.build("llama2-7b", "h200-sxm-141gb", 8, 16, seq_len=4096, zero=2, offload_optimizer="cpu")
    r, a = replay(sc), ts.estimate(sc)
    u = a.extra["offload_s"]
    assert a.time_breakdown_s["offload"] == pytest.approx(u["update"])           # copies hidden, the update not
    assert r.time_breakdown_s["offload"] == pytest.approx(u["update"], rel=1e-3)
    assert "host" in r.timeline.streams


def test_host_link_shares_a_node_cap_among_the_copies_in_flight():
    """rate(a) = min(alpha, beta / a): one copy of 1 s (at the all-devices share) alone runs at alpha = 2 (0.5 s);
    two started together run at 1 each (both end at 1 s); a third started at 0.25 s slows them to 2/3."""
    env = simpy.Environment()
    link = SharedLink(env, "host", rate=lambda a: min(2.0, 2.0 / a))
    ends = {}
    link.transfer(1.0).callbacks.append(lambda e: ends.setdefault("alone", env.now))
    env.run()
    assert ends["alone"] == pytest.approx(0.5)
    env = simpy.Environment()
    link = SharedLink(env, "host", rate=lambda a: min(2.0, 2.0 / a))
    for name in ("a", "b"):
        link.transfer(1.0).callbacks.append(lambda e, n=name: ends.setdefault(n, env.now))
    env.run()
    assert ends["a"] == pytest.approx(1.0) and ends["b"] == pytest.approx(1.0)


def test_stages_sharing_a_node_share_its_host_link_in_the_replay():
    """tp 8 x pp 2 on one DGX-2 node: both stages' representative ranks copy over the node's capped host link (16
    GPUs share 71.8 GB/s: 4.5 GB/s each when all copy, twice that when one stage does); with contention they run
    faster than the all-devices-at-once share while the other stage is not copying, never slower, and the
    (negative) delay is reported."""
    sc = Scenario.build(GPT10B, DGX2, 16, 8, seq_len=1024, dtype="fp16", tp=8, pp=2, zero=2,
                        offload_optimizer="cpu", offload_activations="cpu", recompute="full", flash_attention=False)
    on, nominal = replay(sc, contention=True), replay(sc, contention=False)
    assert on.time_breakdown_s["offload"] <= nominal.time_breakdown_s["offload"] + 1e-9
    assert on.extra["contention_delay_s"].get("offload", 0.0) < 0
    assert np.isfinite(on.step_time_s)


def test_zero_offload_10b_on_one_v100_within_20_percent_of_40_tflops():
    """ZeRO-Offload (Ren et al. 2021, arXiv 2101.06840): 10B parameters on one 32 GB V100 at 40 TFLOP/s. Assumptions
    the paper does not give in full: GPT 50 x 4096, sequence 1024, fp16 with 2-byte gradients, full recompute, no
    flash attention, batch 10 in micro-batches of 5 (the largest that fits), DGX-2 host (`v100-sxm3-32gb`), and the
    gradient transfer to the host overlapped with the backward pass as the paper's design describes (sec. 4.2;
    DeepSpeed's overlap_comm, off by default for stage 2: without it 28 TFLOP/s)."""
    import simulator as ts
    from simulator.specs.model import ModelSpec
    m = ModelSpec(name="gpt-10b", source="ZeRO-Offload 10B (50 x 4096)", num_layers=50, hidden_size=4096,
                  num_heads=32, ffn_hidden_size=16384, vocab_size=50257, max_seq_len=1024)

    def run(overlap):
        sc = ts.Scenario.build(m, "v100-sxm3-32gb", devices=1, global_batch=10, seq_len=1024, micro_batch=5, zero=2,
                               recompute="full", dtype="fp16", framework="deepspeed", offload_optimizer="cpu",
                               flash_attention=False, grad_dtype="bf16", overlap_grad_reduce=overlap)
        return ts.estimate(sc)
    r = run(True)
    assert r.fits and r.tflops_per_device == pytest.approx(40.0, rel=0.20)
    assert run(False).step_time_s > r.step_time_s              # the exposed gradient copies cost time
