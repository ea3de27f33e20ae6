"""The physics added for fidelity, each checked against a number derivable by hand on the toy hardware
(100 TFLOP/s, 1 TB/s, efficiencies 1 unless set): host-bound floor, unfused attention on the matmul curve,
ZeRO sharding over DP x CP, expert parallelism carved out of TP x DP, FP8-saved GEMM inputs."""
import numpy as np
import pytest

from simulator.analytic.compose import evaluate
from simulator.costs.communication import layer_comm
from simulator.costs.layer import layer_costs
from simulator.costs.sizes import sizes
from simulator.costs.stage import MICRO_BATCH_HOST_LAYERS, edge_costs
from simulator.feasibility import R_EP
from simulator.specs.job import Job
from simulator.specs.layout_table import LayoutTable
from simulator.costs.memory import activation_bytes_per_layer
from simulator.specs.model import MoESpec
from simulator.specs.training import TrainingSpec

from .conftest import gpt, toy_hardware


def job(model=None, devices=8, batch=8, seq=512, hw=None, dtype="bf16"):
    return Job(model=model or gpt(layers=4, hidden=512, heads=8, vocab=1000), hardware=hw or toy_hardware(),
               training=TrainingSpec(seq_len=seq, global_batch=batch, dtype=dtype), num_devices=devices)


def table(**cols):
    return LayoutTable.from_columns(**cols)


def test_layer_pass_takes_the_host_time_when_kernels_are_shorter():
    """max(GPU, host) per pass (He 2022): a 1 ms host time dominates a tiny layer, not a big one."""
    host_us = 1000.0
    sz = sizes(job(hw=toy_hardware(layer_overhead_us=host_us)), table(tp=[1], pp=[1], dp=[8]))
    small = layer_costs(sz)
    assert float(small.gpu_fwd_s[0]) < 1e-3
    assert float(small.forward_s[0]) == pytest.approx(host_us * 1e-6)
    edge = edge_costs(sz, small, layer_comm(sz, small))
    assert float(edge.micro_host_s) == pytest.approx(MICRO_BATCH_HOST_LAYERS * host_us * 1e-6)
    big = layer_costs(sizes(job(model=gpt(layers=4, hidden=8192, heads=64, vocab=1000), seq=4096,
                                hw=toy_hardware(layer_overhead_us=host_us)), table(tp=[1], pp=[1], dp=[8])))
    assert float(big.forward_s[0]) == pytest.approx(float(big.gpu_fwd_s[0]))
    assert float(big.gpu_fwd_s[0]) > host_us * 1e-6


def test_unfused_attention_runs_as_batched_gemms():
    """Without flash: QK^T (512 x 64 x 512) and PV (512 x 512 x 64) as batched GEMMs over a x b = 8 heads, the full
    s x s (no causal skipping), at peak on the ideal toy device; plus the s x s scores streamed through HBM by the
    fused scale-mask-softmax (read 2 + write 2 bytes per element) and attention dropout (read 2, write 2, mask 1):
    9 bytes forward; backward, dropout (read 2 + mask 1, write 2) and softmax backward (read 2 + 2, write 2):
    11 bytes, with twice the forward's GEMMs. The kernel model's shape dependence is tested in
    tests/test_kernel_wiring.py."""
    j = job()
    lc = layer_costs(sizes(j, table(tp=[1], pp=[1], dp=[8], flash_attention=[False])))
    s, b, h, a, d = 512, 1, 512, 8, 64
    flops = 2.0 * s * a * (d + d) * s * b                  # QK^T + PV forward, full s x s
    elements = a * s * s * b
    assert float(lc.attention_core_s[0]) == pytest.approx(flops / 100e12 + 9.0 * elements / 1e12)
    assert float(lc.attention_core_bwd_s[0]) == pytest.approx(2.0 * flops / 100e12 + 11.0 * elements / 1e12)


def test_unfused_score_bytes_follow_the_activation_width():
    """4 x act_bytes + 1 forward, 5 x act_bytes + 1 backward (the dropout mask is one byte whatever the dtype):
    fp16 9 / 11 bytes, fp32 17 / 21."""
    from simulator.costs.layer import unfused_score_bytes_per_element
    assert unfused_score_bytes_per_element(2.0) == (9.0, 11.0)
    assert unfused_score_bytes_per_element(4.0) == (17.0, 21.0)


def test_unfused_torch_fp32_softmax_moves_every_step_through_hbm():
    """--no-masked-softmax-fusion with --attention-softmax-in-fp32, bf16 scores: forward cast 2+4, mask 4+1+4,
    softmax 4+4, cast back 4+2, dropout 2+2+1 = 34 bytes; backward dropout 2+1+2, cast 2+4, softmax 4+4+4,
    mask 4+1+4, cast 4+2 = 38 bytes. MindSpeed's preset says its unfused path runs this way."""
    from simulator.costs.layer import unfused_score_bytes_per_element
    from simulator.specs.frameworks_loading import framework_for_run
    assert unfused_score_bytes_per_element(2.0, "torch-fp32") == (34.0, 38.0)
    assert framework_for_run("mindspeed", 2024).attention.unfused_softmax == "torch-fp32"
    assert framework_for_run("megatron-core", 2024).attention.unfused_softmax == "fused-kernel"


def test_optimizer_state_is_sharded_over_dp_times_cp():
    """ZeRO-1 with dp 2 x cp 2 shards Adam's 12 bytes/param four ways, half of dp 2 x cp 1 on 4 devices."""
    j4 = job(devices=4, batch=4, seq=1024)
    out = evaluate(j4, table(tp=[1, 1], pp=[1, 1], dp=[2, 4], cp=[2, 1], zero=[1, 1]))
    assert out["mem_optimizer_bytes"][0] == pytest.approx(out["mem_optimizer_bytes"][1])
    out2 = evaluate(job(devices=2, batch=2, seq=1024), table(tp=[1], pp=[1], dp=[2], cp=[1], zero=[1]))
    assert out["mem_optimizer_bytes"][0] == pytest.approx(out2["mem_optimizer_bytes"][0] / 2)


def test_expert_parallelism_may_span_tp_times_dp():
    """EP 4 over TP 2 x DP 2 (expert TP 1): feasible, and each device holds E/ep = 2 unsplit experts."""
    m = gpt(layers=2, hidden=512, heads=8, vocab=1000,
            moe=MoESpec(num_experts=8, top_k=2, expert_ffn_hidden_size=1024))
    j = job(model=m, devices=4, batch=4)
    t = table(tp=[2, 2], pp=[1, 1], dp=[2, 2], ep=[4, 2], zero=[0, 0])
    out = evaluate(j, t)
    assert not (out["reasons"] & R_EP).any()
    sz = sizes(j, t)
    assert float(sz.etp[0]) == 1.0 and float(sz.etp[1]) == 2.0
    assert float(sz.dp_groups.expert_size[0]) == 1.0 and float(sz.dp_groups.expert_size[1]) == 1.0


def test_fp8_saves_gemm_inputs_in_one_byte():
    """GPT layer, no parallelism, flash, no recompute: 34 sbh in bf16 (Korthikanti Table 2 without the 5as/h
    term); with FP8-saved QKV/fc1 inputs (4 -> 2), proj input (2 -> 1) and fc2 input (8 -> 4): 27 sbh."""
    s, b, h = 2048, 1, 4096
    kw = dict(seq=s, micro_batch=b, hidden=h, heads=32, head_dim=128, kv_heads=32, mlp_act_elems=8 * h, tp=1,
              sp=False, recompute=0, flash=True)
    bf16 = float(activation_bytes_per_layer(**kw))
    fp8 = float(activation_bytes_per_layer(**kw, gemm_input_bytes=1.0, fc2_input_elems=4 * h))
    assert bf16 == pytest.approx(34 * s * b * h)
    assert fp8 == pytest.approx(27 * s * b * h)


def test_wide_expert_parallel_groups_are_contiguous_ranks():
    """EP 32 over TP 2 x DP 16 (expert TP 1): Megatron-Core's expert ranks are etp-ep-dp-pp, so the 32 members are
    consecutive ranks (stride etp = 1) and the expert-data-parallel group strides over them (32); EP 4 inside
    DP 8 keeps the DP stride (tp = 2)."""
    m = gpt(layers=2, hidden=512, heads=8, vocab=1000,
            moe=MoESpec(num_experts=64, top_k=2, expert_ffn_hidden_size=1024))
    sz = sizes(job(model=m, devices=32, batch=32), table(tp=[2, 2], pp=[1, 1], dp=[16, 16], ep=[32, 4]))
    assert [float(x) for x in sz.strides["ep"]] == [1.0, 2.0]
    assert [float(x) for x in sz.strides["edp"]] == [32.0, 8.0]


def test_async_tp_backward_hides_column_parallel_collectives_under_their_gemms():
    """Megatron-LM 2022 (tp_bwd_async): without SP the two input-gradient all-reduces (QKV's, FC1's) run under those
    layers' weight-gradient GEMMs; with SP one all-reduce's worth (the row-parallel layers' gradient all-gathers)
    stays exposed and two hide under the column-parallel dgrad + wgrad GEMMs. Toy device (100 TFLOP/s, 100 GB/s
    in a 4-GPU node, no latency), GPT h = 512, tp = 4, one 512-token sequence: M = 512 rows.
    All-reduce of the 512 x 512 x 2-byte activation over 4: 2 (3/4) 524288 B / 100 GB/s = 7.864 us;
    column-parallel weight gradients: QKV 2 M (3h) h / tp + FC1 2 M (4h) h / tp = 2 M 7 h^2 / 4 = 469.8 MFLOP
    = 4.698 us (the input gradients the same)."""
    from simulator.costs.communication import tp_exposed_s
    from simulator.specs.frameworks_loading import load_framework
    M, h, tp = 512.0, 512.0, 4.0
    ar = 2.0 * 3.0 / 4.0 * M * h * 2.0 / 100e9
    col = 2.0 * M * 7.0 * h * h / tp / 100e12
    for fw, sp, expected in (("megatron-lm", False, 2.0 * ar), ("megatron-lm-2022", False, 2.0 * ar - col),
                             ("megatron-lm-2022", True, ar + 2.0 * ar - 2.0 * col)):
        j = Job(model=gpt(layers=4, hidden=512, heads=8, vocab=1000), hardware=toy_hardware(),
                training=TrainingSpec(seq_len=512, global_batch=2, dtype="bf16"), num_devices=8,
                framework=load_framework(fw))
        sz = sizes(j, table(tp=[4], pp=[1], dp=[2], micro_batch=[1], sequence_parallel=[sp]))
        coll, _, bwd = tp_exposed_s(sz, layer_costs(sz))
        assert float(coll[0]) == pytest.approx(ar)
        assert float(bwd[0]) == pytest.approx(expected), (fw, sp)


def test_megatron_lm_reduces_fp16_gradients_in_fp16():
    """Megatron-LM before Megatron-Core all-reduces fp16 runs' gradients in fp16 (--accumulate-allreduce-grads-in-fp32
    is opt-in, forced only with bf16): 2 bytes per gradient; bf16 runs and other stacks keep fp32 (4 bytes)."""
    from simulator.costs.sizes import gradient_bytes
    from simulator.specs.frameworks_loading import load_framework
    fp16, bf16 = TrainingSpec(seq_len=512, global_batch=8, dtype="fp16"), TrainingSpec(seq_len=512, global_batch=8)
    for name in ("megatron-lm", "megatron-lm-2022"):
        assert gradient_bytes(fp16, load_framework(name)) == 2.0
        assert gradient_bytes(bf16, load_framework(name)) == 4.0
    assert gradient_bytes(fp16, load_framework("megatron-core")) == 4.0
    j = job(dtype="fp16")
    j = Job(model=j.model, hardware=j.hardware, training=j.training, num_devices=8,
            framework=load_framework("megatron-lm"))
    assert sizes(j, table(tp=[1], pp=[1], dp=[8])).grad_bytes == 2.0


def test_fused_bias_dropout_add_moves_11h_instead_of_14h_outside_the_tp_regions():
    """Elementwise bytes of one forward pass per token, by hand: two norms (2h each) + two dropout/residual pairs
    (dropout read h write h, add read 2h write h: 5h each) = 14 h elements; Megatron's fused bias-dropout-add reads
    2h and writes h and a 1-byte mask (3.5 h of 2-byte elements) each: 11 h. The MLP's elements (here 8h, split
    tp ways) are the same in both."""
    from types import SimpleNamespace

    from simulator.costs.layer import elementwise_s
    from simulator.specs.frameworks_loading import framework_for_run

    def sz(framework):
        return SimpleNamespace(framework=framework, act_bytes=2.0, tokens=10.0, hidden=100.0, sp_factor=1.0, tp=8.0,
                               kernel=SimpleNamespace(stream_s=lambda b: b), model=SimpleNamespace(mla=None))
    unfused, fused = framework_for_run("megatron-lm", 2019), framework_for_run("megatron-lm", 2021)
    assert not unfused.fusions.bias_dropout_add and fused.fusions.bias_dropout_add
    assert framework_for_run("megatron-lm", 2022).fusions.bias_dropout_add
    assert elementwise_s(sz(unfused), 800.0) == 2.0 * 10.0 * (14.0 * 100.0 + 100.0)
    assert elementwise_s(sz(fused), 800.0) == 2.0 * 10.0 * (11.0 * 100.0 + 100.0)
