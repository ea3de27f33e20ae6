"""Sliding-window and chunked (local) attention: the pair and tile counts by hand and by brute force, the spec's
layer pattern and its errors, the FLOP conventions, the kernel time, both engines, the HF import and the
validation rows that state a window."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import simulator as ts
from simulator import metrics
from simulator.costs.flops import (attention_layer_fractions, attention_tile_fraction, attention_tiles,
                                   causal_attention_pairs, model_costs)
from simulator.crosscheck import simulate
from simulator.errors import SpecError
from simulator.specs.hf_config import load_hf_config, model_from_hf_config
from simulator.specs.loading import load_model, validate_spec
from simulator.specs.model import ModelSpec
from simulator.validation.rows import attention_pattern_of_notes

REPO = Path(__file__).parent.parent
HF = Path(__file__).parent / "fixtures" / "hf"
TINY = dict(name="tiny", num_layers=12, hidden_size=256, num_heads=4, ffn_hidden_size=1024, vocab_size=1000)


def kept(q, k, window=None, chunk=None):
    """Whether causal query q attends to key k under the window / chunk mask (transformers masking_utils rules)."""
    if k > q:
        return False
    if window is not None and not k > q - window:
        return False
    return chunk is None or k // chunk == q // chunk


def brute_pairs(S, window=None, chunk=None):
    """Kept (query, key) pairs by enumerating the mask."""
    return sum(kept(q, k, window, chunk) for q in range(S) for k in range(q + 1))


def brute_tiles(S, T, window=None, chunk=None):
    """T x T blocks holding at least one kept pair, by enumeration."""
    return len({(q // T, k // T) for q in range(S) for k in range(q + 1) if kept(q, k, window, chunk)})


# ---- the closed forms ----------------------------------------------------------------------------------------

def test_sliding_window_pairs_by_hand():
    # S = 8, W = 3: queries 0, 1, 2 see 1, 2, 3 keys, the other 5 see 3 each: 1 + 2 + 3 + 5 x 3 = 21
    assert causal_attention_pairs(8, window=3) == 21
    # closed form S W - W (W - 1) / 2 = 24 - 3 = 21; full causal 8 x 9 / 2 = 36
    assert causal_attention_pairs(8) == 36
    # chunked C = 3 over 8 tokens: chunks of 3, 3, 2 -> 6 + 6 + 3
    assert causal_attention_pairs(8, chunk=3) == 15


@pytest.mark.parametrize("S", [1, 2, 7, 16, 33])
@pytest.mark.parametrize("size", [1, 2, 5, 16, 40])
def test_pair_counts_equal_the_enumerated_mask(S, size):
    assert causal_attention_pairs(S, window=size) == brute_pairs(S, window=size)
    assert causal_attention_pairs(S, chunk=size) == brute_pairs(S, chunk=size)


@pytest.mark.parametrize("S,size", [(16, 16), (16, 17), (100, 4096)])
def test_window_or_chunk_at_least_the_sequence_is_full_causal(S, size):
    full = S * (S + 1) / 2
    assert causal_attention_pairs(S, window=size) == full == causal_attention_pairs(S, chunk=size)
    assert attention_tiles(S, 4, window=size) == attention_tiles(S, 4) == attention_tiles(S, 4, chunk=size)


def test_tiles_by_hand():
    # S = 8, T = 2, W = 3: query blocks [0,1] [2,3] [4,5] [6,7] reach back to keys 0, 0, 2, 4: 1 + 2 + 2 + 2 = 7
    # key blocks; causal 1 + 2 + 3 + 4 = 10
    assert attention_tiles(8, 2, window=3) == 7
    assert attention_tiles(8, 2) == 10


@pytest.mark.parametrize("S,T,size", [(37, 4, 5), (64, 8, 8), (64, 8, 20), (50, 16, 7), (33, 4, 33)])
def test_tile_counts_equal_the_enumerated_blocks(S, T, size):
    assert attention_tiles(S, T, window=size) == brute_tiles(S, T, window=size)
    assert attention_tiles(S, T) == brute_tiles(S, T)
    # chunks aligned to the tiles: exact; others may count a straddling block's union (an upper bound)
    if size % T == 0:
        assert attention_tiles(S, T, chunk=size) == brute_tiles(S, T, chunk=size)
    assert attention_tiles(S, T, chunk=size) >= brute_tiles(S, T, chunk=size)


# ---- the spec ------------------------------------------------------------------------------------------------

def test_every_kth_layer_global():
    m = ModelSpec(**TINY, attention_window=64, global_attention_every=6)
    kinds = m.attention_layer_kinds
    assert [i for i, k in enumerate(kinds) if k == "full"] == [5, 11]      # (i + 1) % 6 == 0, Gemma 3's rule
    assert m.attention_layer_counts == (("full", None, 2), ("sliding", 64, 10))
    every = ModelSpec(**TINY, attention_chunk=128)                          # no pattern: every layer local
    assert every.attention_layer_counts == (("chunked", 128, 12),)
    listed = ModelSpec(**TINY, attention_window=8, attention_layer_types=["full"] * 4 + ["local"] * 8)
    assert listed.attention_layer_kinds == ("full",) * 4 + ("sliding",) * 8
    assert ModelSpec(**TINY).attention_layer_counts == (("full", None, 12),)


@pytest.mark.parametrize("extra,message", [
    (dict(attention_window=0), "attention_window"),
    (dict(attention_chunk=-4), "attention_chunk"),
    (dict(attention_window=8, global_attention_every=13), "global_attention_every (13) exceeds num_layers (12)"),
    (dict(attention_window=8, attention_layer_types=["local"] * 13), "attention_layer_types has 13 entries"),
    (dict(attention_window=8, attention_chunk=8), "give one local attention kind"),
    (dict(global_attention_every=2), "neither attention_window nor attention_chunk"),
    (dict(attention_window=8, attention_layer_types=["local", "sliding"] + ["full"] * 10), "attention_layer_types"),
])
def test_bad_patterns_give_one_message_naming_the_field(extra, message):
    with pytest.raises(SpecError) as err:
        validate_spec(ModelSpec, {**TINY, **extra}, "model.yaml")
    assert message in str(err.value)
    assert "Traceback" not in str(err.value)


def test_cli_bad_window_exits_2_with_one_message(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("\n".join(f"{k}: {v}" for k, v in TINY.items()) + "\nattention_window: 0\n")
    res = subprocess.run([sys.executable, "-m", "simulator", "estimate", "--model", str(p), "--hardware",
                          "h100-sxm5-80gb", "--devices", "8", "--global-batch", "8", "--seq-len", "2048"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "attention_window" in res.stderr


# ---- FLOPs ---------------------------------------------------------------------------------------------------

def test_model_flops_count_the_kept_pairs():
    S = 4096
    full, win = ModelSpec(**TINY), ModelSpec(**TINY, attention_window=512, global_attention_every=4)
    cf, cw = model_costs(full, S), model_costs(win, S)
    frac = (3 * causal_attention_pairs(S) + 9 * causal_attention_pairs(S, window=512)) / (12 * S * (S + 1) / 2)
    assert cw.attn_causal_fraction == pytest.approx(frac, rel=1e-15)
    attn = 3.0 * 12 * cf.attn_core_flops_per_token                       # full s x s, fwd + bwd, all layers
    saved = metrics.model_flops_per_step(cf, 1.0) - metrics.model_flops_per_step(cw, 1.0)
    assert saved == pytest.approx(0.5 * attn * (1 - frac), rel=1e-12)
    # the windowed layers' share by hand: 9 layers of S W - W (W - 1) / 2 pairs over S (S + 1) / 2
    assert frac == pytest.approx((3 + 9 * (S * 512 - 512 * 511 / 2) / (S * (S + 1) / 2)) / 12, rel=1e-15)
    # hardware FLOPs with flash execute the same kept pairs; without flash the whole matrix
    assert metrics.hardware_flops_per_step(cw, 1.0, 0, True) == pytest.approx(
        metrics.model_flops_per_step(cw, 1.0), rel=1e-15)
    assert metrics.hardware_flops_per_step(cw, 1.0, 0, False) == metrics.hardware_flops_per_step(cf, 1.0, 0, False)


def test_window_at_least_the_sequence_changes_nothing():
    S = 2048
    cf, cw = model_costs(ModelSpec(**TINY), S), model_costs(ModelSpec(**TINY, attention_window=S), S)
    assert cw.attn_causal_fraction == 1.0 and cw.attn_noncausal_fraction == 1.0
    assert metrics.model_flops_per_step(cw, 1.0) == metrics.model_flops_per_step(cf, 1.0)
    assert attention_tile_fraction(cw, 128) == 1.0


def test_maxtext_window_convention():
    # MaxText counts s x min(W, s) per local layer (maxtext_utils.py calculate_mixed_attention_model_tflops_...)
    # and the squares of the chunk lengths per chunked layer
    S = 1000
    m = ModelSpec(**TINY, attention_window=100, global_attention_every=6)
    assert attention_layer_fractions(m, S)[1] == pytest.approx((2 + 10 * 100 / S) / 12)
    c = ModelSpec(**TINY, attention_chunk=300, global_attention_every=4)    # chunks 300, 300, 300, 100
    assert attention_layer_fractions(c, S)[1] == pytest.approx((3 + 9 * (3 * 300 ** 2 + 100 ** 2) / S ** 2) / 12)


def test_gemma3_row_reproduces_maxtexts_reported_tflops():
    """The Gemma 3 12B v6e-256 recipe log: 349.442 TFLOP/s/device at 7.318 s per step (MaxText's count, windows
    included); trainsim's 6N+attn_causal count of the same row's model gives the same FLOPs per device."""
    from simulator.validation.predict import conv_flops_per_token
    from simulator.validation.rows import load_cases
    _, items = load_cases(REPO / "benchmarks" / "data" / "published_runs.csv")
    case = next(c for c in items if getattr(c, "id", None) == "tpurecipes-v6e-gemma3-12b-32k-256")
    assert case.model.attention_window == 1024 and case.model.global_attention_every == 6
    per_device = conv_flops_per_token(case, "6N+attn_causal", 0) * case.training.tokens_per_step / case.num_devices
    assert per_device / 1e12 == pytest.approx(349.442 * 7.318, rel=2e-3)   # 2557 TFLOP; printed to 3-4 digits


# ---- kernel time and the engines -----------------------------------------------------------------------------

def _scenario(model, seq_len=8192, hw="h100-sxm5-80gb"):
    return ts.Scenario.build(model, hw, devices=8, global_batch=8, seq_len=seq_len, tp=1, pp=1, micro_batch=1)


def test_windowed_attention_runs_faster_and_full_window_equals_full():
    full = ModelSpec(**{**TINY, "hidden_size": 2048, "num_heads": 16}, max_seq_len=8192)
    win = full.model_copy(update={"attention_window": 1024, "global_attention_every": 4})
    same = full.model_copy(update={"attention_window": 8192})
    a_full, a_win, a_same = (ts.estimate(_scenario(m)) for m in (full, win, same))
    assert a_same.step_time_s == a_full.step_time_s
    assert a_win.step_time_s < a_full.step_time_s
    # the attention core of the windowed layers: at least their tile share, and the step no faster than dropping it
    f = model_costs(win, 8192)
    assert 0.25 + 0.75 * attention_tiles(8192, 128, window=1024) / attention_tiles(8192, 128) == pytest.approx(
        attention_tile_fraction(f, 128))


def test_engines_agree_on_a_windowed_model():
    m = ModelSpec(**{**TINY, "hidden_size": 2048, "num_heads": 16}, attention_window=512, global_attention_every=2)
    sc = ts.Scenario.build(m, "a100-sxm4-80gb", devices=8, global_batch=16, seq_len=4096, tp=2, pp=2, zero=1,
                           micro_batch=1)
    sc = sc.model_copy(update={"layout": sc.layout.model_copy(update={
        "overlap_grad_reduce": False, "dp_param_gather_overlap": False, "tp_comm_overlap": False})})
    r, a = simulate(sc, overlap=False, contention=False), ts.estimate(sc)
    assert r.step_time_s == pytest.approx(a.step_time_s, rel=1e-12)
    assert r.mfu == pytest.approx(a.mfu, rel=1e-12)


# ---- Hugging Face import -------------------------------------------------------------------------------------

def test_gemma3_1b_counts_and_pattern():
    m = load_hf_config(HF / "gemma3-1b.json")
    assert m.attention_window == 512 and m.global_attention_every == 6 and m.tied_embeddings
    assert m.attention_layer_counts == (("full", None, 4), ("sliding", 512, 22))
    # google/gemma-3-1b-pt safetensors total 999,885,952; not modelled, by hand: two more RMSNorms per layer
    # (2 x 1152), the q/k norms (2 x 256) and the final norm (1152)
    n = model_costs(m, 2048).total_params(True)
    assert n + 26 * (2 * 1152 + 2 * 256) + 1152 == 999_885_952


def test_gpt_oss_120b_counts_and_pattern():
    m = load_hf_config(HF / "gpt-oss-120b.json")
    assert m.attention_window == 128 and m.global_attention_every == 2 and m.num_moe_layers == 36
    assert m.max_seq_len == 4096                                          # YaRN's original context
    c = model_costs(m, 4096)
    # OpenAI gpt-oss model card (2025) Table 1: 116.83B total, 5.13B active (embedding lookup excluded); trainsim
    # leaves out the attention sinks and biases and the expert biases (0.04B)
    assert c.total_params(False) / 1e9 == pytest.approx(116.83, rel=1e-3)
    active = c.total_params(False) - 36 * (128 - 4) * c.expert_params - c.embedding_params
    assert active / 1e9 == pytest.approx(5.13, rel=2e-3)


def _cfg(name, **kw):
    cfg = json.loads((HF / f"{name}.json").read_text())
    cfg.update(kw)
    return cfg


def test_qwen2_window_follows_use_sliding_window_and_max_window_layers():
    assert model_from_hf_config(_cfg("qwen2-7b")).attention_window is None          # use_sliding_window false
    m = model_from_hf_config(_cfg("qwen2-7b", use_sliding_window=True, sliding_window=4096, max_window_layers=20))
    assert m.attention_window == 4096
    assert m.attention_layer_kinds == ("full",) * 20 + ("sliding",) * 8                # i >= max_window_layers
    assert m.attention_layer_types is not None and m.global_attention_every is None
    none = model_from_hf_config(_cfg("qwen2-7b", use_sliding_window=True, sliding_window=4096, max_window_layers=28))
    assert none.attention_window is None and "full attention" in none.notes


def test_mistral_window_and_layer_types():
    v01 = load_hf_config(HF / "mistral-7b.json")
    assert v01.attention_layer_counts == (("sliding", 4096, 32),)
    assert model_from_hf_config(_cfg("mistral-7b", sliding_window=None)).attention_window is None
    assert model_from_hf_config({k: v for k, v in _cfg("mistral-7b").items()
                                 if k != "sliding_window"}).attention_window is None
    alt = model_from_hf_config(_cfg("mistral-7b", layer_types=["sliding_attention", "full_attention"] * 16))
    assert alt.global_attention_every == 2


@pytest.mark.parametrize("kw,message", [
    (dict(sliding_window=0), "sliding_window = 0"),
    (dict(layer_types=["sliding_attention"] * 31), "layer_types"),
    (dict(layer_types=["mamba"] * 32), "layer_types"),
    (dict(attention_chunk_size=8192), "attention_chunk_size"),
])
def test_bad_hf_attention_keys_are_spec_errors(kw, message):
    with pytest.raises(SpecError) as err:
        model_from_hf_config(_cfg("mistral-7b", **kw), where="config.json")
    assert message in str(err.value) and "config.json" in str(err.value)


def test_gemma_requires_its_window():
    cfg = {k: v for k, v in _cfg("gemma3-1b").items() if k != "sliding_window"}
    with pytest.raises(SpecError, match="sliding_window"):
        model_from_hf_config(cfg)


# ---- validation rows -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("note,expected", [
    ("Gemma 3 attention: 5 of every 6 layers use a 1,024-token sliding window, every 6th layer is global;",
     dict(attention_window=1024, global_attention_every=6)),
    ("Alternating sliding-window (128) and full attention. head_dim 64",
     dict(attention_window=128, global_attention_every=2)),
    ("1 shared expert (width 8192); chunked attention (8192) with every 4th layer NoPE; head_dim 128.",
     dict(attention_chunk=8192, global_attention_every=4)),
    ("MaxText mistral-7b config has no sliding window (full attention at 8192).", {}),
    ("Interleaved schedule, 3 chunks per pipeline rank (m=3).", {}),
])
def test_row_notes_state_the_local_attention(note, expected):
    assert attention_pattern_of_notes(note) == expected


def test_chunk_equal_to_the_sequence_leaves_llama4_rows_full():
    m = load_model("llama2-7b").model_copy(update={"attention_chunk": 8192, "global_attention_every": 4})
    c = model_costs(m, 8192)
    assert c.attn_causal_fraction == 1.0 and attention_tile_fraction(c, 128) == 1.0


def test_llama4_scout_text_config_chunked_every_4th_layer_nope():
    m = load_hf_config(HF / "llama4-scout.json")                 # Llama4ForConditionalGeneration: its text_config
    assert m.attention_chunk == 8192 and m.global_attention_every == 4      # no_rope_layer_interval default 4
    assert [i for i, k in enumerate(m.attention_layer_kinds) if k == "full"][:3] == [3, 7, 11]
    assert m.num_moe_layers == 48 and m.moe.num_shared_experts == 1 and m.ffn_hidden_size == 16384
    assert m.max_seq_len == 8192                                            # rope_scaling original context
    c = model_costs(m, 8192)
    # Meta's Llama 4 model card: 17B active, 109B total (the total includes the vision encoder, not imported:
    # stated tolerance 2%; the active count printed to 2 digits: 3%)
    total = c.total_params(False)
    active = total - 48 * (16 - 1) * c.expert_params
    assert total / 1e9 == pytest.approx(109, rel=0.02)
    assert active / 1e9 == pytest.approx(17, rel=0.03)
    # at its 8192-token training context the chunk spans the whole sequence: full causal cost
    assert c.attn_causal_fraction == 1.0
    assert model_costs(m, 32768).attn_causal_fraction < 0.5


def test_llama4_explicit_no_rope_layers_and_missing_chunk():
    cfg = json.loads((HF / "llama4-scout.json").read_text())
    text = dict(cfg["text_config"], no_rope_layers=[1, 1, 0] * 16)
    m = model_from_hf_config(dict(cfg, text_config=text))
    assert m.global_attention_every == 3
    text.pop("attention_chunk_size")
    with pytest.raises(SpecError, match="attention_chunk_size"):
        model_from_hf_config(dict(cfg, text_config=text))
    with pytest.raises(SpecError, match="text_config"):
        model_from_hf_config({k: v for k, v in cfg.items() if k != "text_config"})


@pytest.mark.parametrize("preset,fixture", [("gpt-oss-120b", "gpt-oss-120b.json"),
                                            ("llama4-scout", "llama4-scout.json")])
def test_presets_equal_their_hf_configs(preset, fixture):
    p, h = load_model(preset), load_hf_config(HF / fixture)
    keys = ("num_layers", "hidden_size", "num_heads", "kv_heads", "dim_per_head", "vocab_size", "tied_embeddings",
            "attention_window", "attention_chunk", "attention_layer_kinds", "num_moe_layers", "moe", "max_seq_len",
            "linear_bias", "glu_clamp")
    for k in keys:
        assert getattr(p, k) == getattr(h, k), k


def test_local_attention_presets():
    assert load_model("mistral-7b").attention_layer_counts == (("sliding", 4096, 32),)
    g = load_model("gemma3-12b")
    assert g.attention_layer_counts == (("full", None, 8), ("sliding", 1024, 40))
    # Gemma 3 report Table 1: 10,759M non-embedding parameters (trainsim leaves out 2 extra norms per layer and the
    # q/k norms: 48 x (2 x 3840 + 2 x 256) = 0.4M)
    c = model_costs(g, 4096)
    assert (c.total_params(True) - c.embedding_params) / 1e6 == pytest.approx(10_759, abs=1.0)
