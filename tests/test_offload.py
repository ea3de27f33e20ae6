"""Offload (ZeRO-Offload, ZeRO-3 Offload / ZeRO-Infinity, activation offload): memory by tier against capacity,
hand-derived transfer and CPU-Adam times, and the published capacity claims on DGX-2 V100 nodes."""
import pytest

from simulator.costs import offload as off
from simulator.errors import SpecError
from simulator.planning.offload import estimate_offload
from simulator.specs.model import ModelSpec
from simulator.specs.offload import Offload
from simulator.specs.scenario import Scenario

DGX2 = "v100-sxm3-32gb"        # 16 V100 32 GB, 1.5 TB host, PCIe Gen3 x16 (0.76 of 15.75 GB/s), 256 GB/s DRAM


def gpt(name, layers, hidden):
    """GPT-2-style model of the DeepSpeed examples of 2020-21 (4h MLP, 50,257 vocabulary, untied for simplicity)."""
    return ModelSpec(name=name, source="test shape", num_layers=layers, hidden_size=hidden, num_heads=32,
                     ffn_hidden_size=4 * hidden, vocab_size=50257, max_seq_len=1024)


GPT10B = gpt("gpt-10b", 50, 4096)     # DeepSpeed ZeRO-Offload tutorial: 50 layers, hidden 4096, batch 10
GPT13B = gpt("gpt-13b", 62, 4096)     # ZeRO (arXiv 1910.02054) Table 10: 13B = 62 layers, hidden 4096
GPT40B = gpt("gpt-40b", 50, 8192)


def one_v100(model, batch, zero):
    # assumptions (the sources do not give them): sequence 1024, fp16, full recompute, no flash attention (V100)
    return Scenario.build(model, DGX2, 1, batch, seq_len=1024, dtype="fp16", zero=zero, recompute="full",
                          micro_batch=batch, flash_attention=False)


def test_13b_fits_one_32gb_v100_with_optimizer_offload_and_not_without():
    sc = one_v100(GPT13B, 1, 2)
    without = estimate_offload(sc, Offload())
    with_cpu = estimate_offload(sc, Offload(optimizer="cpu"))
    assert not without.feasible and "per device" in without.reasons[0]       # 16 B/param: ~200 GB
    assert with_cpu.feasible                                                   # fp16 weights 25.4 GB stay
    assert with_cpu.device_memory["total_bytes"] <= 32e9
    params = 12 * 4096**2 * 62 + 2 * 4096 * 62 + 2 * 50257 * 4096             # 12.89e9
    assert with_cpu.host_bytes_per_node == pytest.approx(params * 16)          # fp32 master, m, v + fp32 grads


def test_zero_offload_10b_transfer_and_cpu_adam_times_by_hand():
    r = estimate_offload(one_v100(GPT10B, 10, 2), Offload(optimizer="cpu"))
    params = 12 * 4096**2 * 50 + 2 * 4096 * 50 + 2 * 50257 * 4096              # 10.478e9
    link = 15.75e9 * 0.76                                                      # 11.97 GB/s achieved PCIe Gen3
    adam_rate = 256e9 * 0.5 / 30                                               # 4.27e9 params/s (roofline)
    t = r.transfers_s
    assert t["grad_d2h_s"] == pytest.approx(params * 2 / link)                 # 1.75 s, hidden by backward
    assert t["cpu_adam_s"] == pytest.approx(params / adam_rate)                # 2.46 s
    assert t["update_s"] == pytest.approx(max(t["cpu_adam_s"], params * 2 / link))
    # the GPU Adam step leaves, the CPU update (not overlapped without the delayed update) comes in
    assert r.step_time_s == pytest.approx(r.step.step_time_s - r.step.time_breakdown_s["optimizer"]
                                          + t["update_s"], rel=1e-9)


def test_delayed_parameter_update_hides_the_cpu_step_behind_compute():
    sc = one_v100(GPT10B, 10, 2)
    plain = estimate_offload(sc, Offload(optimizer="cpu"))
    dpu = estimate_offload(sc, Offload(optimizer="cpu", delayed_update=True), step=plain.step)
    assert dpu.step_time_s == pytest.approx(plain.step.step_time_s - plain.step.time_breakdown_s["optimizer"])


def test_40b_trains_on_one_v100_with_zero3_offload_and_1_5_tb_host_but_not_with_zero2_offload():
    """DeepSpeed ZeRO-3 Offload post (2021-03-08): 40B on one 32 GB V100 + 1.5 TB; ZeRO-2 Offload tops out ~13B."""
    z3 = estimate_offload(one_v100(GPT40B, 1, 3), Offload(optimizer="cpu", params="cpu"))
    assert z3.feasible
    params = 12 * 8192**2 * 50 + 2 * 8192 * 50 + 2 * 50257 * 8192              # 41.1e9
    assert z3.host_bytes_per_node == pytest.approx(params * 18)                # fp16 params + 16 B: 740 GB
    z2 = estimate_offload(one_v100(GPT40B, 1, 2), Offload(optimizer="cpu"))
    assert not z2.feasible and "per device" in z2.reasons[0]                   # 82 GB of fp16 weights


def test_1t_zero3_offload_fits_256_v100_and_runs_out_of_host_memory_on_128():
    """DeepSpeed ZeRO-3 Offload post: 1T parameters on 256 DGX-2 V100 (3D parallelism needs 800). Per node, 16
    devices x 1.008e12 x 18 B / devices: 1.13 TB on 256 GPUs, 2.27 TB (> 1.5 TB) on 128."""
    def run(n):
        sc = Scenario.build("megatron-1t", DGX2, n, n, seq_len=1024, dtype="fp16", zero=3, zero3_unit="tensor",
                            recompute="full", micro_batch=1, flash_attention=False)
        return estimate_offload(sc, Offload(optimizer="cpu", params="cpu"))
    ok, short = run(256), run(128)
    assert ok.feasible and ok.host_bytes_per_node == pytest.approx(1.0079502e12 * 18 / 256 * 16, rel=1e-6)
    assert short.reasons == (f"needs {short.host_bytes_per_node / 1e9:,.1f} GB of host memory per node, more than "
                             "the 1,500 GB available",)


def test_activation_offload_moves_checkpoints_to_the_host():
    sc = Scenario.build("megatron-1t", DGX2, 512, 2048, seq_len=1024, dtype="fp16", zero=3, zero3_unit="tensor",
                        recompute="full", micro_batch=4, flash_attention=False)
    kept = estimate_offload(sc, Offload(optimizer="cpu", params="cpu"))
    moved = estimate_offload(sc, Offload(optimizer="cpu", params="cpu", activations="cpu"), step=kept.step)
    assert not kept.feasible and moved.feasible
    acts = kept.device_memory["activations_bytes"]
    assert moved.device_memory["activations_bytes"] == pytest.approx(acts * 2 / 128)   # 2 of 128 layers stay
    assert moved.host_bytes_per_node - kept.host_bytes_per_node == pytest.approx(16 * acts)


def test_host_link_is_shared_under_the_node_cap():
    # DGX-2: 16 GPUs behind 94.5 GB/s of CPU lanes: 5.9 GB/s each, below the 15.75 GB/s x16 link
    assert off.host_link_bytes_per_s(15.75e9, 94.5e9, 16) == pytest.approx(94.5e9 / 16)
    assert off.host_link_bytes_per_s(15.75e9, 94.5e9, 1) == pytest.approx(15.75e9)
    assert off.host_link_bytes_per_s(63e9, None, 8) == pytest.approx(63e9)


def test_cpu_adam_roofline_and_exposed_time():
    assert off.cpu_adam_params_per_s(256e9) == pytest.approx(256e9 * 0.5 / 30)
    assert off.cpu_adam_time_s(1e9, 4e9, 16) == pytest.approx(4.0)            # 16 devices share the node's CPUs
    assert off.exposed_s(3.0, 5.0) == 0.0 and off.exposed_s(7.0, 5.0) == pytest.approx(2.0)


def test_bad_offload_combinations_name_the_rule():
    with pytest.raises(SpecError, match="offload params=cpu needs zero 3"):
        estimate_offload(one_v100(GPT10B, 1, 2), Offload(params="cpu"))
    with pytest.raises(SpecError, match="nvme_read_gb_per_s"):
        estimate_offload(one_v100(GPT10B, 1, 2), Offload(optimizer="nvme"))
    sc = Scenario.build("llama2-7b", "tpu-v4", 8, 64, seq_len=4096)
    with pytest.raises(SpecError, match="host.link_gb_per_s"):
        estimate_offload(sc, Offload(optimizer="cpu"))


def test_nvme_optimizer_io_by_hand_and_unknown_nvme_capacity_is_a_reason():
    # 8 H200 share 48 GB/s read / 26 GB/s write (DeepNVMe, 8x Gen5 RAID-0); each step reads and writes 12 B/param
    sc = Scenario.build("llama2-7b", "h200-sxm-141gb", 8, 64, seq_len=4096, zero=2)
    r = estimate_offload(sc, Offload(optimizer="nvme"))
    from simulator.costs.flops import model_costs
    shard = model_costs(sc.model, 4096).total_params(sc.model.tied_embeddings) / 8
    assert r.transfers_s["nvme_optimizer_s"] == pytest.approx(12 * shard / 6e9 + 12 * shard / 3.25e9)
    assert r.transfers_s["update_s"] == pytest.approx(max(r.transfers_s["cpu_adam_s"], r.transfers_s["nvme_optimizer_s"],
                                                          r.transfers_s["param_h2d_update_s"]))
    assert any("gives no host.nvme_gb" in x for x in r.reasons)
