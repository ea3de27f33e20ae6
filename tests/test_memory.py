"""Memory: Korthikanti et al. 2022 Table 2 activations and ZeRO sharding on hand-worked cases."""
import numpy as np
import pytest

from simulator.costs.memory import ADAM_STATE_BYTES_PER_PARAM, activation_bytes_per_layer, logits_bytes, \
    model_state_bytes
from simulator.specs.loading import load_model

# Korthikanti et al. 2022 (arXiv 2205.05198) Table 3 models: (heads a, hidden h); s = 2048.
KORTHIKANTI_MODELS = {"megatron-22b": (64, 6144), "gpt3-175b": (96, 12288), "megatron-530b": (128, 20480),
                      "megatron-1t": (160, 25600)}


def act(name, t, sp, rc, flash=False, b=1, s=2048):
    m = load_model(name)
    return activation_bytes_per_layer(s, b, m.hidden_size, m.num_heads, m.dim_per_head, m.kv_heads,
                                      2 * m.ffn_hidden_size, t, sp, rc, flash)


@pytest.mark.parametrize("name", sorted(KORTHIKANTI_MODELS))
def test_table2_rows(name):
    """Table 2: no parallelism sbh(34 + 5as/h); TP sbh(10 + 24/t + 5as/(ht)); TP+SP sbh/t(34 + 5as/h);
    TP+SP+selective 34sbh/t; full recompute 2sbh/t with SP."""
    a, h = KORTHIKANTI_MODELS[name]
    s, b, t = 2048, 1, 8
    sbh = s * b * h
    assert act(name, 1, False, 0) == pytest.approx(sbh * (34 + 5 * a * s / h))
    assert act(name, t, False, 0) == pytest.approx(sbh * (10 + 24 / t + 5 * a * s / (h * t)))
    assert act(name, t, True, 0) == pytest.approx(sbh / t * (34 + 5 * a * s / h))
    assert act(name, t, True, 1) == pytest.approx(34 * sbh / t)
    assert act(name, t, True, 2) == pytest.approx(2 * sbh / t)


def test_table2_22b_selective_recompute_in_gb():
    """22B (h 6144, tp 8, sp, selective): 34 x 2048 x 6144 / 8 bytes = 53.5 MB per layer per micro-batch;
    48 layers with one micro-batch in flight is 2.57 GB (hand-derived from Table 2)."""
    per_layer = act("megatron-22b", 8, True, 1)
    assert per_layer == pytest.approx(53_477_376)
    assert 48 * per_layer / 1e9 == pytest.approx(2.567, rel=1e-3)


def test_flash_attention_drops_the_s2_term():
    a, h = KORTHIKANTI_MODELS["gpt3-175b"]
    sbh = 2048 * 12288
    assert act("gpt3-175b", 1, False, 0, flash=True) == pytest.approx(34 * sbh)


def test_zero_stages_shard_states_by_dp():
    """1e9 params, bf16 weights (2 B), fp32 grads (4 B), Adam 12 B, dp = 8 (Rajbhandari et al. 2020, Fig. 1)."""
    P, dp = 1e9, 8
    rows = {z: [float(x) for x in model_state_bytes(P, 2, 4, z, dp)] for z in range(4)}
    assert rows[0] == [2e9, 4e9, 12e9]
    assert rows[1] == [2e9, 4e9, 1.5e9]
    assert rows[2] == [2e9, 0.5e9, 1.5e9]
    assert rows[3] == [0.25e9, 0.5e9, 1.5e9]
    assert ADAM_STATE_BYTES_PER_PARAM == 12


def test_more_zero_never_means_more_memory():
    P = np.array([1e8, 1e9, 7e9])
    for dp in (1, 2, 64):
        totals = [sum(model_state_bytes(P, 2, 4, z, dp)) for z in range(4)]
        for lo, hi in zip(totals[1:], totals[:-1]):
            assert np.all(lo <= hi)


def test_logits_fp32_with_gradient():
    assert logits_bytes(2048, 1, 51200, 8) == pytest.approx(2 * 4 * 2048 * 51200 / 8)
