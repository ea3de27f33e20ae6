"""GPT-OSS's model features cost what Megatron-Core's eager ops move: the clamped GLU, the per-expert output bias,
the unfused YaRN RoPE, and the replayed recompute modules (costs.model_ops)."""
import numpy as np
import pytest

from simulator.costs import model_ops
from simulator.costs.layer import layer_costs
from simulator.costs.sizes import sizes
from simulator.specs.framework import FusionSpec
from simulator.specs.frameworks_loading import framework_for_run
from simulator.specs.job import Job
from simulator.specs.layout_table import LayoutTable
from simulator.specs.model import MoESpec
from simulator.specs.training import TrainingSpec
from simulator.validation.rows import load_cases, model_features_of_notes

from .conftest import gpt, toy_hardware


def _model(**kw):
    feats = dict(linear_bias=True, glu_clamp=7.0, yarn_mscale=1.3466)
    feats.update(kw)
    return gpt(hidden=512, heads=8, num_kv_heads=2, head_dim=64, gated_mlp=True,
               moe=MoESpec(num_experts=8, top_k=2, expert_ffn_hidden_size=256), **feats)


def _costs(model, fw, recompute=0):
    job = Job(model=model, hardware=toy_hardware(), training=TrainingSpec(seq_len=128, global_batch=1),
              num_devices=1, framework=fw)
    table = LayoutTable.from_columns(tp=1, pp=1, dp=1, micro_batch=1, recompute=recompute)
    return layer_costs(sizes(job, table))


def _v(x):
    return float(np.asarray(x).reshape(-1)[0])


def test_eager_op_bytes_by_hand_in_bf16():
    """Counted from the code paths (costs.model_ops docstrings): clamp 8a / 11a + 8, expert bias 6a / 8a, RoPE
    12a / 14a per element."""
    assert model_ops.clamped_glu_bytes(2.0) == (16.0, 30.0)
    assert model_ops.expert_bias_bytes(2.0) == (12.0, 16.0)
    # fp32 probabilities (DeepEP / HybridEP): b x p 4, t + bp 2 + 4 + 4, cat 8, cast back 4 + 2 = 28; backward the
    # casts 6 + 6, the product's gradients 2 x 12, the split's cat 4 = 40
    assert model_ops.expert_bias_bytes(2.0, 4.0) == (28.0, 40.0)
    assert model_ops.unfused_rope_bytes(2.0) == (24.0, 28.0)
    assert model_ops.moe_act_replay_bytes(2.0, gated=True, eager_clamp=True) == 22.0
    assert model_ops.moe_act_replay_bytes(2.0, gated=True, eager_clamp=False) == 6.0


def test_megatron_core_pays_the_eager_ops_by_hand():
    """128 tokens, top-2: 256 routed copies. Forward: clamp 256 x 256 fe x 16 B + bias 256 x 512 h x 12 B + RoPE
    128 x (8 + 2) heads x 64 x 24 B = 4,587,520 B = 4.5875 us at 1 TB/s; backward 256 x 256 x 30 + 256 x 512 x 16
    + 128 x 640 x 28 = 6,356,992 B."""
    c = _costs(_model(), framework_for_run("megatron-core", 2026))
    assert _v(c.model_ops_fwd_s) == pytest.approx(4_587_520 / 1e12)
    assert _v(c.model_ops_bwd_s) == pytest.approx(6_356_992 / 1e12)


def test_fused_framework_or_plain_model_adds_nothing():
    mc = framework_for_run("megatron-core", 2026)
    fused = mc.model_copy(update={"fusions": FusionSpec()})
    with_ops, without = _costs(_model(), mc), _costs(_model(), fused)
    plain = _costs(_model(linear_bias=False, glu_clamp=None, yarn_mscale=None), mc)
    assert _v(without.model_ops_fwd_s) == 0.0 and _v(plain.model_ops_bwd_s) == 0.0
    assert _v(with_ops.gpu_fwd_s) - _v(without.gpu_fwd_s) == pytest.approx(_v(with_ops.model_ops_fwd_s))
    assert _v(with_ops.gpu_bwd_s) - _v(without.gpu_bwd_s) == pytest.approx(_v(with_ops.model_ops_bwd_s))
    assert _v(with_ops.elementwise_pass_s) - _v(without.elementwise_pass_s) == pytest.approx(
        _v(with_ops.model_ops_fwd_s) + _v(with_ops.model_ops_bwd_s))


def test_replayed_modules_by_hand_and_not_under_full_recompute():
    """moe_act: 256 copies x 256 fe x (3 x 2 + 16) B = 1,441,792 B; layernorm: 128 x 512 x 4 B = 262,144 B."""
    mc = framework_for_run("megatron-core", 2026)
    fw = mc.model_copy(update={"recompute": mc.recompute.model_copy(
        update={"replayed_modules": ("layernorm", "moe_act")})})
    assert _v(_costs(_model(), fw).recompute_s) == pytest.approx(1_703_936 / 1e12)
    assert _v(_costs(_model(), mc).recompute_s) == 0.0
    full = _costs(_model(), fw, recompute=2)
    assert _v(full.recompute_s) == pytest.approx(_v(full.forward_s))


def test_glu_clamp_needs_a_gated_mlp():
    with pytest.raises(ValueError, match="glu_clamp"):
        gpt(glu_clamp=7.0)


def test_notes_state_the_provider_features():
    notes = ("quick_gelu GLU with glu_linear_offset 1.0 and activation_func_clamp_value 7.0, add_bias_linear True, "
             "position_embedding_type yarn (yarn_rotary_scaling_factor 32)")
    assert model_features_of_notes(notes) == {"glu_clamp": 7.0, "linear_bias": True,
                                              "yarn_mscale": pytest.approx(0.1 * np.log(32.0) + 1.0)}
    assert model_features_of_notes("alternating sliding-window (128) and full attention") == {}


def test_gpt_oss_rows_carry_the_features_and_their_recompute_modules():
    _, cases = load_cases("benchmarks/data/published_runs.csv")
    rows = {c.id: c for c in cases if hasattr(c, "model") and "gptoss" in c.id}
    assert len(rows) == 5
    for c in rows.values():
        assert (c.model.glu_clamp, c.model.linear_bias) == (7.0, True)
        assert c.model.yarn_mscale == pytest.approx(1.3466, abs=1e-4)
    assert rows["mbridge2602-gptoss-120b-gb200-64"].framework.recompute.replayed_modules == ("layernorm", "moe_act")
    assert rows["mbridge2602-gptoss-120b-gb300-64"].framework.recompute.replayed_modules == ()


def test_eager_op_kernels_by_hand():
    """8 local experts: MoE forward clamp 3 + bias cat 1 + 2 x 8 = 20, backward 7 + 1 + 4 x 8 = 40; attention: the
    unfused RoPE's 12 forward / 7 backward kernels per tensor over the fused one's 1, for q and k: 22 and 12."""
    job = Job(model=_model(), hardware=toy_hardware(), training=TrainingSpec(seq_len=128, global_batch=1),
              num_devices=1, framework=framework_for_run("megatron-core", 2026))
    sz = sizes(job, LayoutTable.from_columns(tp=1, pp=1, dp=1, micro_batch=1))
    attn_f, attn_b, moe_f, moe_b = model_ops.eager_op_kernels(sz)
    assert (attn_f, attn_b) == (22.0, 12.0)
    assert (_v(moe_f), _v(moe_b)) == (20.0, 40.0)


def test_hf_import_of_the_features():
    """GPT-OSS: attention_bias true, swiglu_limit 7.0, YaRN factor 32 without mscale keys: 0.1 ln 32 + 1 = 1.3466
    (as the preset); DeepSeek-V3's YaRN has mscale = mscale_all_dim: temperature 1, no eager RoPE."""
    from simulator.specs.loading import load_model
    h = load_model("tests/fixtures/hf/gpt-oss-120b.json")
    assert (h.linear_bias, h.glu_clamp) == (True, 7.0)
    assert h.yarn_mscale == pytest.approx(0.1 * np.log(32.0) + 1.0)
    assert load_model("gpt-oss-120b").yarn_mscale == pytest.approx(h.yarn_mscale, abs=1e-4)
    assert load_model("tests/fixtures/hf/deepseek-v3.json").yarn_mscale is None


def test_activation_memory_of_the_experts_activation_by_hand():
    """Top-2, fe 256, h 512, gated, all layers MoE: kept per token 2 x (3 x 256 + 512) = 2560 elements; the eager
    clamp keeps the clamped copy too (+ 2 x 2 x 256 = 3584); the moe_act replay drops the activation output
    (- 2 x 256 = 2048)."""
    from simulator.costs.layer import mlp_elements
    mc = framework_for_run("megatron-core", 2026)
    replay = mc.model_copy(update={"recompute": mc.recompute.model_copy(update={"replayed_modules": ("moe_act",)})})

    def stored(fw):
        job = Job(model=_model(), hardware=toy_hardware(), training=TrainingSpec(seq_len=128, global_batch=1),
                  num_devices=1, framework=fw)
        return _v(mlp_elements(sizes(job, LayoutTable.from_columns(tp=1, pp=1, dp=1, micro_batch=1))).stored_heavy)

    assert stored(mc.model_copy(update={"fusions": FusionSpec()})) == pytest.approx(2560.0)
    assert stored(mc) == pytest.approx(3584.0)
    assert stored(replay) == pytest.approx(2048.0)


def test_qk_norm_bytes_and_elements_by_hand():
    """Per-head q/k RMSNorm: forward read + write 2a, backward read dy and x, write dx 3a (bf16: 4 and 6 B). 8 heads,
    2 kv heads, head_dim 64, 128 tokens: tp 1 normalises 128 x (8 + 2) x 64 = 81,920 elements (327,680 B forward,
    491,520 B backward = 0.32768 / 0.49152 us at the toy 1 TB/s); tp 2: 4 + 1 heads = 40,960; tp 4: 2 query heads
    and one key group (Megatron-Core gives each rank at least one) = 3 x 64 x 128 = 24,576."""
    assert model_ops.qk_norm_bytes(2.0) == (4.0, 6.0)
    plain = dict(linear_bias=False, glu_clamp=None, yarn_mscale=None)
    mc = framework_for_run("megatron-core", 2026)
    c = _costs(_model(qk_norm=True, **plain), mc)
    assert _v(c.model_ops_fwd_s) == pytest.approx(327_680 / 1e12)
    assert _v(c.model_ops_bwd_s) == pytest.approx(491_520 / 1e12)
    assert _v(_costs(_model(**plain), mc).model_ops_fwd_s) == 0.0
    # the norms are kernels of their own in any framework, fused eager-op presets or none
    fused = mc.model_copy(update={"fusions": FusionSpec()})
    assert _v(_costs(_model(qk_norm=True, **plain), fused).model_ops_bwd_s) == pytest.approx(491_520 / 1e12)
    job = Job(model=_model(qk_norm=True, **plain), hardware=toy_hardware(),
              training=TrainingSpec(seq_len=128, global_batch=1), num_devices=4, framework=mc)
    sz = sizes(job, LayoutTable.from_columns(tp=[1, 2, 4], pp=1, dp=[4, 2, 1], micro_batch=1))
    assert np.allclose(np.asarray(model_ops.qk_norm_elements(sz)), [81_920, 40_960, 24_576])
    attn_f, attn_b, _, _ = model_ops.eager_op_kernels(sz)
    assert (attn_f, attn_b) == (2.0, 4.0)


def test_qwen3_rows_and_hf_configs_carry_the_qk_norms():
    assert model_features_of_notes("Qwen3MoEModelProvider ...: qk_layernorm True (a per-head RMSNorm)") == {
        "qk_norm": True}
    _, cases = load_cases("benchmarks/data/published_runs.csv")
    qwen3 = [c for c in cases if hasattr(c, "model") and "qwen3" in c.id]
    assert len(qwen3) == 11 and all(c.model.qk_norm for c in qwen3)
    assert not any(c.model.qk_norm for c in cases if hasattr(c, "model") and "qwen3" not in c.id)
    from simulator.specs.loading import load_model
    assert load_model("tests/fixtures/hf/qwen3-30b-a3b.json").qk_norm
    assert load_model("tests/fixtures/hf/qwen3-8b.json").qk_norm
    assert not load_model("tests/fixtures/hf/qwen2-7b.json").qk_norm
