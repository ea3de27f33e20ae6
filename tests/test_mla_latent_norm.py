"""MLA's latent RMSNorms as memory-bound passes over the compressed latents (costs.layer)."""
from types import SimpleNamespace

import pytest

from simulator.costs.layer import mla_latent_norm_elements


def _model(q_lora, kv_lora):
    return SimpleNamespace(mla=SimpleNamespace(q_lora_rank=q_lora, kv_lora_rank=kv_lora))


def test_deepseek_v2_by_hand():
    # q_a_layernorm over 1536 + kv_a_layernorm over 512: each reads and writes its latent, 2 x 2048 = 4096
    assert mla_latent_norm_elements(_model(1536, 512)) == 4096.0


def test_no_query_compression():
    # DeepSeek-V2-Lite: no q_lora_rank, only the KV latent's norm: 2 x 512
    assert mla_latent_norm_elements(_model(None, 512)) == 1024.0


def test_other_attention_zero():
    assert mla_latent_norm_elements(SimpleNamespace(mla=None)) == 0.0


def test_elementwise_pass_adds_the_latents_unsplit_by_tp():
    """10 tokens, h = 100, tp 8, fused bias-dropout-add (11 h outside TP), 800 MLP elements split tp ways, plus
    DeepSeek-V2's 4096 latent-norm elements, not split: 2 bytes x 10 x (1100 + 100 + 4096)."""
    from simulator.costs.layer import elementwise_s
    from simulator.specs.frameworks_loading import framework_for_run

    sz = SimpleNamespace(framework=framework_for_run("megatron-lm", 2022), act_bytes=2.0, tokens=10.0, hidden=100.0,
                         sp_factor=1.0, tp=8.0, kernel=SimpleNamespace(stream_s=lambda b: b), model=_model(1536, 512))
    assert elementwise_s(sz, 800.0) == 2.0 * 10.0 * (1100.0 + 100.0 + 4096.0)


def test_mla_up_proj_replay_by_hand():
    """Megatron-Core's 'mla_up_proj' module replays q_up (M x n (d_n + d_r) from q_lora) and kv_up (M x n (d_n +
    d_v) from kv_lora) forward GEMMs and the RoPE / assembly forward. 10 tokens, 4 heads, tp 2 (n = 2), d_n 8, d_r
    4, d_v 8, q_lora 16, kv_lora 32, GEMMs at 2 m n k / 1e3 s, bytes at 1 s each: q_up 2 x 10 x 24 x 16 = 7,680;
    kv_up 2 x 10 x 32 x 32 = 20,480; assembly 2 B x 10 x (2 x (16 + 16 + 12) + 4) = 1,840: 28,160 / 1e3 +
    1,840. Without the module, with full recompute's replay or for other attention: nothing."""
    from simulator.costs.layer import mla_up_proj_replay_s

    mla = SimpleNamespace(q_lora_rank=16, kv_lora_rank=32, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8)
    model = SimpleNamespace(mla=mla, num_heads=4)
    kernel = SimpleNamespace(gemm_passes_s=lambda m, n, k: (2.0 * m * n * k / 1e3, 0.0, 0.0), stream_s=lambda b: b)

    def sz(mods, m=model):
        fw = SimpleNamespace(recompute=SimpleNamespace(replayed_modules=mods))
        return SimpleNamespace(model=m, framework=fw, kernel=kernel, tokens=10.0, heads=4.0, tp=2.0, hidden=64.0,
                               act_bytes=2.0)

    assert mla_up_proj_replay_s(sz(("mla_up_proj",))) == pytest.approx((7_680 + 20_480) / 1e3 + 1_840)
    assert mla_up_proj_replay_s(sz(("layernorm", "moe_act"))) == 0.0
    assert mla_up_proj_replay_s(sz(("mla_up_proj",), SimpleNamespace(mla=None, num_heads=4))) == 0.0
