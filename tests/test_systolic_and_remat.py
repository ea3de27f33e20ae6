"""The systolic rule for TPU kernels and JAX remat policies, checked against values derived by hand."""
import math

import numpy as np
import pytest

from simulator.costs.kernels import attention_shape_factor, axis_fill, kernel_model_for, systolic_fill
from simulator.costs.layer import remat_policy_s
from simulator.specs.frameworks_loading import framework_for_run
from simulator.validation.rows import remat_override, remat_policy_saved

FRACTION = 0.996          # catalog.yaml systolic.matmul_fraction (scaling-book: 95.6 ms at peak / 96 ms measured)


def test_systolic_fill_pads_weight_axes_to_the_mxu_and_rows_to_sublanes():
    # m = 12 rows -> 16 (8 sublanes), n = 300 -> 384, k = 100 -> 128 on a 128-wide MXU
    assert systolic_fill(12, 300, 100, 128, 8) == pytest.approx(12 / 16 * 300 / 384 * 100 / 128)
    # the same on v6e's 256-wide MXU: n = 300 -> 512, k = 100 -> 256
    assert systolic_fill(12, 300, 100, 256, 8) == pytest.approx(12 / 16 * 300 / 512 * 100 / 256)
    assert axis_fill(128, 256) == 0.5 and axis_fill(4096, 256) == 1.0


def test_tpu_gemm_runs_at_the_measured_mxu_fraction_times_the_padding():
    v5p, v6e = kernel_model_for("tpu-v5p"), kernel_model_for("tpu-v6e")
    assert v5p.device.systolic and v6e.device.systolic
    assert v5p.basis.startswith("transferred by the systolic rule")
    # large, MXU-aligned GEMM: the fraction itself (the roofline does not bind at 8192^3)
    assert float(v5p.gemm_efficiency(8192, 8192, 8192)) == pytest.approx(FRACTION, rel=1e-9)
    assert float(v6e.gemm_efficiency(8192, 8192, 8192)) == pytest.approx(FRACTION, rel=1e-9)
    # a 640-wide output (5 x 128): full on v5p's 128x128 MXU, 640/768 of v6e's 256x256 (intensity ~634 FLOP/B:
    # under both rooflines, 2.765 TB/s x 0.808 / 459 TF -> 205 and 1.638 x 0.808 / 918 -> 694 x 0.83)
    assert float(v5p.gemm_efficiency(65536, 640, 65536)) == pytest.approx(FRACTION, rel=1e-9)
    assert float(v6e.gemm_efficiency(65536, 640, 65536)) == pytest.approx(FRACTION * 640 / 768, rel=1e-9)
    # a small-m GEMM is under the HBM roofline: 2 m n k / ((m k + k n) 2 B + 2 m n B) x 1.638 TB/s x 0.808 / 918 TF
    m, n, k = 12.0, 4096.0, 4096.0
    roof = 2 * m * n * k / ((m * k + k * n) * 2 + 2 * m * n) * 1.638e12 * 0.807942 / 918e12
    assert float(v6e.gemm_efficiency(m, n, k)) == pytest.approx(min(FRACTION * 12 / 16, roof), rel=1e-5)


def test_nvidia_devices_keep_their_measured_tables():
    km = kernel_model_for("b200")
    assert not km.device.systolic and km.basis.startswith("measured")


def test_v6e_attention_with_head_dim_128_fills_half_the_mxu():
    km = kernel_model_for("tpu-v6e")
    om = km.op("attention_fwd")
    s, bh = 8192.0, 32.0
    unpadded = attention_shape_factor(s, bh, True, km.device.compute_units, om.half) * math.exp(
        float(om.grid(s, bh, 128.0)))
    assert float(km.attention_efficiency(s, 128, bh, True, "fwd")) == pytest.approx(0.5 * unpadded, rel=1e-9)
    unpadded_256 = attention_shape_factor(s, bh, True, km.device.compute_units, om.half) * math.exp(
        float(om.grid(s, bh, 256.0)))
    assert float(km.attention_efficiency(s, 256, bh, True, "fwd")) == pytest.approx(unpadded_256, rel=1e-9)


def test_remat_policy_replays_what_it_does_not_save():
    elem, qkv, core, out, mlp = 1.0, 2.0, 3.0, 4.0, 9.0
    # nothing but the layer input saved: everything except the MLP output GEMM (1/3 of a gated MLP)
    assert remat_policy_s(("decoder_layer_input",), elem, qkv, core, out, mlp, True) == pytest.approx(
        1 + 2 + 3 + 4 + 6)
    # MaxText 'minimal': every weight matmul output saved -> attention core and elementwise only
    assert remat_policy_s(("qkv_proj", "out_proj", "mlpwi", "mlpwo"), elem, qkv, core, out, mlp, True) == 4.0
    # qkv_proj_offloaded on a non-gated MLP: the input GEMM is half the MLP
    assert remat_policy_s(("qkv_proj",), elem, qkv, core, out, mlp, False) == pytest.approx(1 + 3 + 4 + 4.5)
    assert remat_policy_s(("context",), elem, qkv, core, out, mlp, True) == pytest.approx(1 + 2 + 4 + 6)


@pytest.mark.parametrize("notes, saved", [
    ("remat_policy=minimal (mapped to selective).", ("qkv_proj", "out_proj", "mlpwi", "mlpwo")),
    ("remat_policy=qkv_proj_offloaded (qkv projections offloaded, rest recomputed)", ("qkv_proj",)),
    ("remat_policy=custom with decoder_layer_input, out_proj and query/key/value projections offloaded to host "
     "memory (the rest recomputed): mapped to selective.", ("decoder_layer_input", "out_proj", "qkv_proj")),
    ("remat_policy=custom with decoder_layer_input kept on device and query/key/value projections recomputed: "
     "mapped to selective.", ("decoder_layer_input",)),
    ("remat_policy=custom with 'context' (attention output) and 'mlpwo' offloaded to host (the rest recomputed)",
     ("context", "mlpwo")),
    ("remat_policy=full.", None),
    ("no policy named", None),
])
def test_remat_policy_read_from_notes(notes, saved):
    assert remat_policy_saved(notes) == saved


def test_remat_override_applies_only_to_remat_policy_presets():
    mt = framework_for_run("maxtext", 2025)
    assert mt.recompute.saved == ("qkv_proj", "out_proj", "mlpwi", "mlpwo")      # preset default: 'minimal'
    fw, applied = remat_override(mt, "remat_policy=qkv_proj_offloaded")
    assert fw.recompute.saved == ("qkv_proj",) and applied[0][0] == "recompute_saved"
    same, none = remat_override(mt, "remat_policy=minimal")
    assert same is mt and none == ()
    mc = framework_for_run("megatron-core", 2025)
    assert remat_override(mc, "remat_policy=qkv_proj_offloaded") == (mc, ())


def test_full_mesh_tier_gives_a_group_only_its_peers_links():
    from simulator.specs.loading import load_hardware
    from simulator.topology.collectives import all_gather_time_s, level_bandwidth, p2p_time_s
    from simulator.topology.placement import tier_arrays
    t = tier_arrays(load_hardware("gaudi2"))          # 262.5 GB/s x 0.80 over 7 peers (3 x 100 GbE each)
    agg = 262.5e9 * 0.80
    assert t.mesh_peers[0] == 7 and t.mesh_peers[1] == 0
    assert float(level_bandwidth(t, 0, 8)) == pytest.approx(agg)
    assert float(level_bandwidth(t, 0, 2)) == pytest.approx(agg / 7)      # a TP pair: one peer's 37.5 GB/s x 0.8
    assert float(level_bandwidth(t, 0, 4)) == pytest.approx(agg * 3 / 7)
    # all-gather of 1 GB over a pair: (2-1)/2 x 1e9 / (agg/7) + one step of latency (5 us)
    assert float(all_gather_time_s(1e9, 2, 1, t)) == pytest.approx(0.5e9 / (agg / 7) + 5e-6)
    assert float(p2p_time_s(1e9, 1, t)) == pytest.approx(1e9 / (agg / 7) + 5e-6)
    # a switched tier is unchanged: NVLink on H100 gives a pair the full per-GPU bandwidth
    h = tier_arrays(load_hardware("h100-sxm5-80gb"))
    assert h.mesh_peers[0] == 0 and float(level_bandwidth(h, 0, 2)) == pytest.approx(float(h.bandwidth_bytes_per_s[0]))


def test_dense_einsum_dispatch_adds_its_mask_matmuls_by_hand():
    """Ideal toy device (100 TFLOP/s): a 2-layer MoE GPT (h 512, 4 experts of f 1024, top-2), 512-token sequences,
    micro-batch 1, capacity factor 1.25. Dense dispatch per sequence: slots = E x C = 1.25 x 512 x 2 = 1280; the
    dispatch GEMM (1280 x 512) @ (512 x 512) and the combine GEMM (512 x 1280) @ (1280 x 512), each
    2 x 1280 x 512 x 512 FLOPs, forward 2 x 671,088,640 / 1e14 s more per layer than the permute dispatch."""
    from simulator.costs.layer import layer_costs
    from simulator.costs.sizes import sizes
    from simulator.specs.job import Job
    from simulator.specs.layout_table import LayoutTable
    from simulator.specs.model import MoESpec
    from simulator.specs.routing import RoutingSpec
    from simulator.specs.training import TrainingSpec
    from .conftest import gpt, toy_hardware

    model = gpt(layers=2, moe=MoESpec(num_experts=4, top_k=2, expert_ffn_hidden_size=1024))
    tr = TrainingSpec(seq_len=512, global_batch=8, moe_routing=RoutingSpec(capacity_factor=1.25))
    mt = framework_for_run("maxtext", 2025)
    # the permute side without megablox's tile visits (costs.layer.grouped_tile_visit_factor, tested in
    # test_moe_wiring), so that the two differ by the dispatch alone
    mt = mt.model_copy(update={"moe": mt.moe.model_copy(update={"grouped_gemm_tile_rows": None})})
    dense = mt.model_copy(update={"moe": mt.moe.model_copy(update={"dispatch": "dense-einsum"})})
    table = LayoutTable.from_columns(tp=[1], pp=[1], dp=[8], micro_batch=[1])

    def mlp(fw):
        j = Job(model=model, hardware=toy_hardware(), training=tr, num_devices=8, framework=fw)
        lc = layer_costs(sizes(j, table))
        return float(lc.mlp_s[0]), float(lc.mlp_dgrad_s[0])

    (f0, d0), (f1, d1) = mlp(mt), mlp(dense)
    extra = 2 * (2 * 1280 * 512 * 512) / 1e14
    # ... less the permute dispatch's own sort traffic (costs.layer.token_permute_passes_s, no expert parallelism):
    # permute h + k h and unpermute k h + h = 3072 elements per token x 512 tokens x 2 B at the toy 1 TB/s
    sort = 3072 * 512 * 2 / 1e12
    # MaxText's gate is compiled (moe.gate_passes 'fused'): no separate one-hot passes
    assert f1 - f0 == pytest.approx(extra - sort, rel=1e-9)
    # backward: the dispatch's tokens gradient and the combine's two gradients, 3/2 of the forward's matmuls
    assert d1 - d0 == pytest.approx(1.5 * extra - sort, rel=1e-9)
