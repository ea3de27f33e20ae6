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
