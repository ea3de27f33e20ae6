"""Memory of the model definition and of the software stack, on hand-derived cases: multi-head latent attention
(parameters, activations, the notes of a truncated DeepSeek row), the first dense layers on the first stage,
Transformer Engine's dummy weight-gradient buffers, and InternEvo's device-level report and optimizer-step copies."""
from __future__ import annotations

import numpy as np
import pytest

import simulator as ts
from simulator.analytic.compose import evaluate
from simulator.costs.flops import attention_params, model_costs
from simulator.costs.framework_effects import memory_as_reported_bytes
from simulator.costs.memory import activation_bytes_per_layer, distinct_shapes_bytes, mla_saved_elements_per_token
from simulator.specs.framework import BuffersSpec
from simulator.specs.job import Job
from simulator.specs.layout_table import LayoutTable
from simulator.specs.loading import load_model
from simulator.specs.model import ModelSpec
from simulator.specs.stack import framework_named
from simulator.units import GIB
from simulator.validation.rows import mla_of_notes

GB = 1e9


# ---- MLA: parameters ----------------------------------------------------------------------------------------------
def test_deepseek_v3_mla_attention_parameters_by_hand():
    """DeepSeek-V3 (h 7168, 128 heads, q_lora 1536, kv_lora 512, qk 128 + rope 64, v 128), per layer:
    q_down 7168 x 1536 = 11,010,048; q_up 1536 x 128 x 192 = 37,748,736; kv_down 7168 x 576 = 4,128,768;
    kv_up 512 x 128 x 256 = 16,777,216; o 128 x 128 x 7168 = 117,440,512; sum 187,105,280 (as plain MHA with head
    dim 128 it would be 4 x 7168 x 16384 = 469,762,048)."""
    m = load_model("deepseek-v3")
    assert attention_params(m) == 11_010_048 + 37_748_736 + 4_128_768 + 16_777_216 + 117_440_512 == 187_105_280


def test_deepseek_v3_total_and_active_parameters_match_the_report():
    """DeepSeek-V3 report (arXiv 2412.19437) abstract: 671B total, 37B activated (MTP module excluded). By hand
    with the MLA count above: 3 dense layers (attention 187.1M + SwiGLU 3 x 7168 x 18432 = 396.4M), 58 MoE layers
    (attention + router 7168 x 256 + 257 experts of 3 x 7168 x 2048 = 44.04M, 9 of them active), embedding and
    output 129280 x 7168 each: 671.03B total, 37.55B active (embedding included)."""
    m = load_model("deepseek-v3")
    c = model_costs(m, 4096)
    assert c.total_params(m.tied_embeddings) / 1e9 == pytest.approx(671.0, rel=0.002)
    active = (c.num_dense_layers * c.dense_layer_params
              + c.num_moe_layers * (c.attn_params + c.router_params + c.top_k * c.expert_params
                                    + c.shared_expert_params + c.norm_params_per_layer)
              + c.embedding_params + c.output_params)
    assert active / 1e9 == pytest.approx(37.0, rel=0.02)


# ---- MLA: a truncated row's notes -------------------------------------------------------------------------------
SIMUMAX_NOTE = ("Truncated model: 4 of 60 layers (the measured layer count). MLA (multi-head latent attention): "
                "head_dim 128 (v_head_dim; qk_head_dim 128 + rope 64 = 192), q_lora_rank 1536, kv_lora_rank 512, "
                "qk-layernorm.")


def test_mla_dimensions_come_from_the_notes_of_a_truncated_row():
    mla, missing = mla_of_notes(SIMUMAX_NOTE)
    assert (mla.q_lora_rank, mla.kv_lora_rank, mla.qk_nope_head_dim, mla.qk_rope_head_dim, mla.v_head_dim) == \
        (1536, 512, 128, 64, 128)
    assert missing == []
    short, _ = mla_of_notes("MLA (q_lora 1536, kv_lora 512, qk_nope 128, qk_rope 64, v_head 128; no kv-head count)")
    assert short == mla
    ranks_only, missing = mla_of_notes("MLA (q_lora 1536, kv_lora 512), 64 heads")
    assert ranks_only == mla and missing == ["qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"]
    assert mla_of_notes("MLA (no kv-head count)") == (None, [])


# ---- MLA: activations ---------------------------------------------------------------------------------------------
def test_mla_activations_by_hand():
    """DeepSeek-V2 attention (128 heads, q_lora 1536, kv_lora 512, qk 192, v 128), s 4096, b 1, h 5120, tp 1, flash,
    no recompute. Kept per token: q and k after RoPE 2 x 128 x 192 = 49,152, v 16,384, the attention output 16,384,
    the latents 2 x (1536 + 512) = 4,096: 86,016 elements = 172,032 bytes, which replace MHA's q, k, v and output
    (with kv heads 0 and no MLP the rest of the layer is the 10 sbh outside the TP regions)."""
    s, h = 4096, 5120
    mla = mla_saved_elements_per_token(128, 1536, 512, 192, 128)
    assert mla == (128 * (2 * 192 + 128), 128 * 128, 2048, 2048)
    got = activation_bytes_per_layer(s, 1, h, 128, 128, 0, 0.0, 1, False, 0, True, mla_elems=mla)
    assert got == pytest.approx(s * (10 * h + 172_032))
    # the per-head part splits over TP, the latent part does not
    tp2 = activation_bytes_per_layer(s, 1, h, 128, 128, 0, 0.0, 2, False, 0, True, mla_elems=mla)
    assert tp2 == pytest.approx(s * (10 * h + 2 * (65_536 + 16_384) / 2 + 2 * 4096))


# ---- dense prefix and TE dummy weight gradients ----------------------------------------------------------------------
def _mem(model, layout, framework="megatron-core", devices=8, seq=4096, batch=None):
    sc = ts.Scenario.build(model, "b200", devices, batch or devices, seq_len=seq, **layout)
    job = Job(model=sc.model, hardware=sc.hardware, training=sc.training, num_devices=devices,
              framework=framework_named(framework) if isinstance(framework, str) else framework)
    return evaluate(job, LayoutTable.from_layouts([sc.layout]))


def test_te_dummy_weight_gradients_of_a_llama3_70b_first_stage_by_hand():
    """Llama3-70B, tp 1, pp 2 (first stage: no output layer): one bf16 buffer per TE weight shape, QKV 10240 x 8192,
    output projection 8192 x 8192, fc1 57344 x 8192, fc2 8192 x 28672: 1,711,276,032 bytes (1.594 GiB, SimuMax's
    te_dummy_wgrad for the same stage). Megatron-Core carries them; a stack without the buffers does not."""
    mc = framework_named("megatron-core")
    off = mc.model_copy(update={"buffers": BuffersSpec()})
    layout = dict(tp=1, pp=2, dp=4, micro_batch=1)
    with_buf, without = _mem("llama3-70b", layout, mc), _mem("llama3-70b", layout, off)
    assert int(with_buf["memory_rank"][0]) == int(without["memory_rank"][0]) == 0
    extra = float(with_buf["mem_grads_bytes"][0] - without["mem_grads_bytes"][0])
    assert extra == pytest.approx(2 * (10240 * 8192 + 8192 * 8192 + 57344 * 8192 + 8192 * 28672))
    assert extra / GIB == pytest.approx(1.594, abs=1e-3)


def test_distinct_shapes_are_counted_once():
    """Two linears of one shape share one cached buffer; an absent one costs nothing."""
    shapes = [(4096.0, 7168.0), (4096.0, 7168.0), (7168.0, 2048.0)]
    assert distinct_shapes_bytes(shapes, [True, True, True], 2.0) == 2.0 * (4096 * 7168 + 7168 * 2048)
    assert distinct_shapes_bytes(shapes, [False, True, False], 2.0) == 2.0 * 4096 * 7168
    both = distinct_shapes_bytes(shapes, [np.array([True, False]), np.array([True, True]), True], 2.0)
    assert list(both) == [2.0 * (4096 * 7168 + 7168 * 2048)] * 2


def test_first_dense_layers_sit_on_the_first_stage():
    """A 4-layer MoE model whose first layer is dense, on one stage: it holds 3 MoE layers' experts, not 4. By hand
    the expert parameters per rank (ep 8) are 3 x 64/8 x 3 x 1024 x 512 = 37,748,736 (bf16 weights 75.5 MB)."""
    m = ModelSpec(name="moe-4", num_layers=4, hidden_size=1024, num_heads=8, ffn_hidden_size=4096, gated_mlp=True,
                  vocab_size=32000, moe={"num_experts": 64, "top_k": 4, "expert_ffn_hidden_size": 512,
                                         "first_dense_layers": 1})
    from simulator.costs.params import rank_params
    from simulator.costs.sizes import sizes
    sc = ts.Scenario.build(m, "b200", 8, 8, seq_len=1024, dp=8, ep=8)
    job = Job(model=sc.model, hardware=sc.hardware, training=sc.training, num_devices=8)
    sz = sizes(job, LayoutTable.from_layouts([sc.layout]))
    dense, expert = rank_params(sz, np.array([4.0]), np.array([1.0]), np.array([1.0]))
    assert float(expert[0]) == 3 * 8 * 3 * 1024 * 512
    c = sz.costs
    assert float(dense[0]) == pytest.approx(4 * c.attn_params + 4 * c.norm_params_per_layer + c.dense_mlp_params
                                            + 3 * c.router_params + c.embedding_params + c.output_params)


# ---- InternEvo: what its tables report ---------------------------------------------------------------------------
def test_internevo_memory_gb_is_a_device_reading_in_gib():
    """InternEvo's 'GPU Memory (GB)': allocated 40 GB -> reserved 40 / 0.94 = 42.553 GB, + the 2 GB context of the
    profile = 44.553e9 bytes = 41.49 GiB, the figure its table would print."""
    fw = framework_named("internevo")
    assert (fw.allocator.memory_report, fw.allocator.report_unit) == ("device", "GiB")
    got = float(memory_as_reported_bytes(40 * GB, "memory_gb", fw.allocator, 2 * GB))
    assert got == pytest.approx(40 * GB / 0.94 + 2 * GB)
    assert got / GIB == pytest.approx(41.494, abs=1e-3)


def test_internevo_optimizer_step_copies_raise_the_peak_by_hand():
    """InternEvo-like 1.3B-parameter job on one device (dp 1, ZeRO-1 shards nothing) with full recompute: the step's
    gradient copies hold 2 bytes per shard parameter beyond the state count (6 bytes of flat bf16 + fp32 copies,
    the 4-byte gradients gone); the activations (freed by then) offset them, so the optimizer column grows by
    2 x params - activations."""
    ie = framework_named("internevo")
    plain = ie.model_copy(update={"buffers": BuffersSpec()})
    layout = dict(tp=1, pp=1, dp=1, micro_batch=1, recompute="full", zero=1)
    a, b = _mem("llama2-7b", layout, ie, devices=1, seq=2048, batch=1), \
        _mem("llama2-7b", layout, plain, devices=1, seq=2048, batch=1)
    params = float(b["mem_weights_bytes"][0]) / 2.0
    extra = float(a["mem_optimizer_bytes"][0] - b["mem_optimizer_bytes"][0])
    assert extra == pytest.approx(2.0 * params - float(b["mem_activations_bytes"][0]))
    assert float(a["mem_activations_bytes"][0]) == float(b["mem_activations_bytes"][0])


# ---- dropout masks -------------------------------------------------------------------------------------------------
def test_models_without_dropout_keep_no_masks():
    """Korthikanti et al. Table 2 counts 2sbh of dropout masks outside the TP regions (and 1 byte per s x s entry
    plus the dropout output, 3 of the 5as/h, in an unfused attention core). Llama-style (gated-MLP) models train
    without dropout: 2sbh less with flash; 2sbh + 3as^2b less without."""
    assert load_model("llama3-70b").trains_with_dropout is False
    assert load_model("gpt3-175b").trains_with_dropout is True
    s, b, h, a = 4096, 1, 8192, 64
    kw = dict(seq=s, micro_batch=b, hidden=h, heads=a, head_dim=128, kv_heads=8, mlp_act_elems=3 * 28672, tp=1,
              sp=False, recompute=0)
    assert activation_bytes_per_layer(flash=True, **kw) - activation_bytes_per_layer(flash=True, dropout=False, **kw) \
        == pytest.approx(2 * s * b * h)
    assert activation_bytes_per_layer(flash=False, **kw) - activation_bytes_per_layer(flash=False, dropout=False, **kw) \
        == pytest.approx(2 * s * b * h + 3 * a * s * s * b)
