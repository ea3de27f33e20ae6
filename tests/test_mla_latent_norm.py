"""MLA's latent RMSNorms as memory-bound passes over the compressed latents (costs.layer)."""
from types import SimpleNamespace

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
