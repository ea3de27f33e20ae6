"""TP communication physics on hand-worked cases: the sequence-parallel weight-gradient re-gather, the per-call
latency of collectives, the measured B200 NVLink5 fit against SimuMax's own formula, and the framework presets that
turn TP overlap on (Megatron-Bridge and NeMo performance recipes)."""
import numpy as np
import pytest

from simulator.costs.communication import SP_WGRAD_REGATHER_ALL_REDUCES, tp_collectives_per_pass
from simulator.specs.hardware import HardwareProfile
from simulator.specs.loading import load_hardware
from simulator.specs.stack import as_framework
from simulator.topology.collectives import (all_gather_time_s, all_reduce_time_s, all_to_all_time_s,
                                            call_latency_s, reduce_scatter_time_s)
from simulator.topology.placement import tier_arrays

from .conftest import toy_hardware

GB = 1e9


def _toy_with_call_latency(fast_us: float, slow_us: float):
    data = toy_hardware().model_dump()
    data["tiers"][0]["call_latency_us"] = fast_us
    data["tiers"][1]["call_latency_us"] = slow_us
    return tier_arrays(HardwareProfile.model_validate(data))


def test_sp_backward_adds_one_all_reduce_equivalent_per_layer():
    """Forward: 2 all-reduce equivalents (attention, MLP). Backward: 2, + 1 with SP's wgrad re-gather (two
    all-gathers of [s, b, h], one per column-parallel block = one all-reduce), + 2 under full recompute."""
    fwd, bwd = tp_collectives_per_pass(np.array([False, True, False, True]), np.array([0, 0, 2, 2]))
    assert SP_WGRAD_REGATHER_ALL_REDUCES == 1.0
    assert fwd.tolist() == [2.0, 2.0, 2.0, 2.0]
    assert bwd.tolist() == [2.0, 3.0, 4.0, 5.0]


def test_megatron_stacks_regather_and_others_keep_the_gathered_input():
    assert as_framework("megatron-core").overlap.sp_wgrad_regather
    assert as_framework("megatron-bridge").overlap.sp_wgrad_regather
    assert as_framework("nemo").overlap.sp_wgrad_regather
    assert not as_framework("maxtext").overlap.sp_wgrad_regather
    assert not as_framework("torchtitan").overlap.sp_wgrad_regather


def test_performance_recipes_run_tp_comm_overlap():
    """Megatron-Bridge v0.3.0 llama3/llama31/qwen3 recipes and NeMo-Framework-Launcher 24.07 configs set it."""
    assert as_framework("megatron-bridge").overlap.tp_comm_overlap
    assert as_framework("nemo").overlap.tp_comm_overlap
    assert not as_framework("megatron-core").overlap.tp_comm_overlap


def test_call_latency_is_paid_once_per_phase_at_the_outermost_tier():
    """Toy tiers (100 / 10 GB/s, no step latency), call latency 20 us inside a node, 50 us across nodes.
    4 ranks in a node: all-gather of 1 GB = 3/4 GB / 100 GB/s = 7.5 ms + 20 us; all-reduce = 2 phases = 15 ms + 40 us;
    8 ranks over 2 nodes: the cross-node call, 50 us per phase; one rank: no call at all."""
    t = _toy_with_call_latency(20.0, 50.0)
    assert float(call_latency_s(4, 1, t)) == pytest.approx(20e-6)
    assert float(call_latency_s(8, 1, t)) == pytest.approx(50e-6)
    assert float(call_latency_s(1, 1, t)) == 0.0
    assert float(all_gather_time_s(GB, 4, 1, t)) == pytest.approx(0.0075 + 20e-6)
    assert float(reduce_scatter_time_s(GB, 4, 1, t)) == pytest.approx(0.0075 + 20e-6)
    assert float(all_reduce_time_s(GB, 4, 1, t)) == pytest.approx(0.015 + 40e-6)
    # 8 ranks: 15 ms in the node + 2 * 1/2 * 0.25 GB / 10 GB/s = 25 ms across, + 2 x 50 us
    assert float(all_reduce_time_s(GB, 8, 1, t)) == pytest.approx(0.040 + 100e-6)
    # all-to-all of 1 GB over 4 ranks: 3/4 GB / 100 GB/s + one call
    assert float(all_to_all_time_s(GB, 4, 1, t)) == pytest.approx(0.0075 + 20e-6)


def test_zero_call_latency_leaves_the_collectives_unchanged():
    t0 = tier_arrays(toy_hardware())
    t = _toy_with_call_latency(0.0, 0.0)
    for f in (all_gather_time_s, all_reduce_time_s, all_to_all_time_s):
        assert float(f(GB, 8, 1, t)) == float(f(GB, 8, 1, t0))


def test_b200_tp8_all_gather_matches_simumax_measured_model():
    """A 64 MiB TP all-gather (4096 tokens x 8192 x 2 B) on 8 x B200. SimuMax (config.py compute_net_op_time with
    b200_bf16_ceperm.json): 7/8 x 64 MiB / (0.6735 x 900 GiB/s) + 7 x 9.1828 us + 23.1049 us = 177.6 us.
    The profile (tier mean of all-gather and reduce-scatter: 0.72 of 900 GB/s, 8.6 us per step, 24.3 us per call):
    58.72 MB / 648 GB/s + 60.2 us + 24.3 us = 175.1 us, within 2%."""
    size = 4096 * 8192 * 2.0
    simumax = size * 7 / 8 / (0.6735 * 900 * 1024 ** 3) + (7 * 9.1828 + 23.1049) * 1e-6
    ours = float(all_gather_time_s(size, 8, 1, tier_arrays(load_hardware("b200"))))
    assert simumax == pytest.approx(177.6e-6, rel=1e-3)
    assert ours == pytest.approx(size * 7 / 8 / (0.72 * 900e9) + (7 * 8.6 + 24.3) * 1e-6, rel=1e-9)
    assert ours == pytest.approx(simumax, rel=0.02)


def test_h100_all_gather_matches_nccl_tests_at_64_mib():
    """nccl-tests on 8 x H100 (SimuMax nccl_fit.py sample data): all_gather of 67108864 B in 211.3 us. The profile
    without its call latency (nccl-tests time the collective alone): 58.72 MB / (0.77 x 450 GB/s) + 7 x 5.7 us =
    209.4 us, within 1%."""
    hw = load_hardware("h100-sxm5-80gb")
    t = tier_arrays(hw)
    call = hw.tiers[0].call_latency_s
    got = float(all_gather_time_s(67108864.0, 8, 1, t)) - call
    assert got == pytest.approx(211.3e-6, rel=0.01)


# ---------------------------------------------------------------------------------------------------------------
# attention kernels without a table of their own
# ---------------------------------------------------------------------------------------------------------------

def test_kernel_speed_ratio_against_the_table_kernel_by_hand():
    """H100, head dim 128 (FlashAttention-3 paper Fig. 5-6 bars): FlashAttention-2 forward 335 against
    FlashAttention-3's 616 TFLOP/s = 0.5438; backward 322 against cuDNN's 516 (the te table's kernel) = 0.6240.
    The 2022 Triton kernel (triton-pre-mlir) is FlashAttention-2 halved: 167.5 / 616 = 0.2719."""
    from simulator.costs.framework_effects import attention_kernel_speed_ratio as r
    assert r("flash-attn-2", "flash3", "nvidia-hopper", 128, "fwd") == pytest.approx(335 / 616)
    assert r("flash-attn-2", "te", "nvidia-hopper", 128, "bwd") == pytest.approx(322 / 516)
    assert r("triton-pre-mlir", "flash3", "nvidia-hopper", 128, "fwd") == pytest.approx(167.5 / 616)
    assert r("triton-pre-mlir", "te", "nvidia-hopper", 64, "bwd") == pytest.approx(145.5 / 433)


def test_kernel_speed_ratio_is_one_without_both_measurements():
    from simulator.costs.framework_effects import attention_kernel_speed_ratio as r
    assert r("flash-attn-3", "flash3", "nvidia-hopper", 128, "fwd") == 1.0      # the table's own kernel
    assert r("flash-attn-2", "te", "nvidia-ampere", 128, "fwd") == 1.0          # no cuDNN row on Ampere
    assert r("flash-attn-2", None, "nvidia-hopper", 128, "fwd") == 1.0          # no named table
    assert r(None, "flash3", "nvidia-hopper", 128, "fwd") == 1.0


def test_h100_default_attention_tables_are_named():
    """H100's default forward table is FlashAttention-3 (fa3-h100), its backward the te table transferred."""
    from simulator.costs.compute import kernel_rates
    kr = kernel_rates(load_hardware("h100-sxm5-80gb"), "bf16")
    assert kr.attention_table_kernel("fwd") == "flash3"
    assert kr.attention_table_kernel("bwd") == "te"
    assert kr.attention_table_kernel("fwd", "te") == "te"


def test_llm_foundry_2023_runs_the_pre_mlir_triton_kernel_on_hopper():
    fw = as_framework("llm-foundry-2023")
    assert fw.attention.kernel_for("nvidia-hopper") == "triton-pre-mlir"
    assert fw.attention.kernel_for("nvidia-ampere") == "triton"


def _tp_exposed(scope: str, overlap: bool):
    from simulator.costs.communication import tp_exposed_s
    from simulator.costs.layer import layer_costs
    from simulator.costs.sizes import sizes
    from simulator.specs.job import Job
    from simulator.specs.layout_table import LayoutTable
    from simulator.specs.training import TrainingSpec
    from .conftest import gpt
    fw = as_framework("maxtext")
    fw = fw.model_copy(update={"overlap": fw.overlap.model_copy(update={"tp_overlap_scope": scope})})
    job = Job(model=gpt(), hardware=toy_hardware(), training=TrainingSpec(seq_len=128, global_batch=1),
              num_devices=2, framework=fw)
    sz = sizes(job, LayoutTable.from_columns(tp=2, pp=1, dp=1, micro_batch=1, tp_comm_overlap=overlap))
    lc = layer_costs(sz)
    coll, f, b = tp_exposed_s(sz, lc)
    return (float(np.asarray(coll).reshape(-1)[0]), float(np.asarray(f).reshape(-1)[0]),
            float(np.asarray(b).reshape(-1)[0]), float(np.asarray(lc.gemm_fwd_s).reshape(-1)[0]),
            float(np.asarray(lc.gemm_bwd_s).reshape(-1)[0]))


def test_all_gather_only_overlap_leaves_the_reduce_scatter_half_exposed():
    """XLA's decomposed all-gather einsum (overlap.tp_overlap_scope 'all-gather') hides the all-gather half of each
    TP all-reduce (reduce-scatter + all-gather of equal cost) under the pass's GEMMs: exposed = n/2 x collective +
    max(0, n/2 x collective - GEMMs); scope 'all' hides everything that fits; no overlap exposes n x collective
    (n = 2 collectives per forward pass, 2 per backward without recompute)."""
    coll, off_f, off_b, gf, gb = _tp_exposed("all-gather", False)
    assert coll > 0.0 and off_f == pytest.approx(2.0 * coll) and off_b == pytest.approx(2.0 * coll)
    _, ag_f, ag_b, _, _ = _tp_exposed("all-gather", True)
    assert ag_f == pytest.approx(coll + max(0.0, coll - gf))
    assert ag_b == pytest.approx(coll + max(0.0, coll - gb))
    _, all_f, all_b, _, _ = _tp_exposed("all", True)
    assert all_f == pytest.approx(max(0.0, 2.0 * coll - gf))
    assert all_b == pytest.approx(max(0.0, 2.0 * coll - gb))
    assert all_f <= ag_f <= off_f


def test_mlperf_v5p_notes_turn_on_all_gather_side_tp_overlap():
    """The MLPerf v4.0 v5p GPT-3 scripts set --xla_tpu_decompose_all_gather_einsum=true and no reduce-scatter
    decomposition: the recipe notes give the rows TP overlap with scope 'all-gather'."""
    from simulator.validation.rows import tp_scope_override
    fw = as_framework("maxtext")
    assert fw.overlap.tp_overlap_scope == "all"
    got, why = tp_scope_override(fw, "LIBTPU_INIT_ARGS: --xla_tpu_decompose_all_gather_einsum=true")
    assert got.overlap.tp_overlap_scope == "all-gather" and why[0][:2] == ("tp_overlap_scope", "all-gather")
    both = ("--xla_tpu_decompose_all_gather_einsum=true --xla_tpu_decompose_einsum_reduce_scatter=true")
    assert tp_scope_override(fw, both)[0].overlap.tp_overlap_scope == "all"
