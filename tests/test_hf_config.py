"""Hugging Face config.json import: one fixture per family, checked against published parameter counts, the
shipped presets of the same models, the modelling code's MoE-layer rule, and clear errors (exit 2)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.costs.flops import model_costs
from simulator.errors import SpecError
from simulator.specs.hf_config import load_hf_config, model_from_hf_config
from simulator.specs.loading import load_model

HF = Path(__file__).parent / "fixtures" / "hf"
REPO = Path(__file__).parent.parent


def total_params(m) -> int:
    return model_costs(m, 2048).total_params(m.tied_embeddings)


def active_params(m, count_input_embedding: bool = True) -> int:
    """Parameters one token uses: all but the unselected routed experts; DeepSeek's convention leaves the input
    embedding (a lookup) out (DeepSeek-V2-Lite: 15.7B total, 2.4B activated only holds without it)."""
    c = model_costs(m, 2048)
    act = c.total_params(m.tied_embeddings) - c.num_moe_layers * (c.num_experts - c.top_k) * c.expert_params
    return act if count_input_embedding else act - c.embedding_params


# Exact parameter counts of the released checkpoints (the safetensors total on each Hugging Face model page; for
# GPT-NeoX-20B the model card's table), and the tensors trainsim does not count, by hand: the final norm (h; 2h for
# a LayerNorm with bias), Qwen2's q/k/v biases (h + 2*kv*d per layer), GPT-NeoX's biases and LayerNorm biases
# (3h qkv + h dense + 4h fc1 + h fc2 + 2h LN = 11h per layer). Both sides must agree to the parameter.
EXACT = [
    ("llama2-7b", 6_738_415_616, 4096),
    ("llama3-8b", 8_030_261_248, 4096),
    ("mistral-7b", 7_241_732_096, 4096),
    ("mixtral-8x7b", 46_702_792_704, 4096),
    ("qwen2-7b", 7_615_616_512, 3584 + 28 * (3584 + 2 * 512)),
    ("gpt-neox-20b", 20_554_567_680, 44 * 11 * 6144 + 2 * 6144),
]


@pytest.mark.parametrize("fixture,published,unmodelled", EXACT)
def test_dense_and_mixtral_counts_equal_the_checkpoints(fixture, published, unmodelled):
    m = load_hf_config(HF / f"{fixture}.json")
    n = total_params(m)
    assert n == pytest.approx(published, rel=1e-3)          # stated tolerance: 0.1% (what trainsim leaves out)
    assert n + unmodelled == published


# Published figures rounded as printed: (fixture, total B, active B or None, source). Stated tolerances: 1% on the
# totals (printed to 3 significant digits or better: 671, 236, 15.7, 30.5, 8.2, 47); 3% on the activated counts
# (printed to 2 significant digits: 2.4, 3.3, 13, 14, 21, 37, where rounding alone is worth up to 3.8%).
ROUNDED = [
    ("qwen3-8b", 8.2, None, "Qwen/Qwen3-8B model card: 8.2B parameters"),
    ("qwen3-30b-a3b", 30.5, 3.3, "Qwen/Qwen3-30B-A3B model card: 30.5B total, 3.3B activated"),
    ("qwen2-57b-a14b", 57.41, 14.0, "Qwen2 report (arXiv 2407.10671) 57B-A14B; model page 57.41B"),
    ("deepseek-v2-lite", 15.7, 2.4, "DeepSeek-V2 (arXiv 2405.04434) App.: 15.7B total, 2.4B activated"),
    ("deepseek-v2", 236.0, 21.0, "DeepSeek-V2 (arXiv 2405.04434) abstract: 236B total, 21B activated"),
    ("deepseek-v3", 671.0, 37.0, "DeepSeek-V3 report (arXiv 2412.19437) abstract: 671B total, 37B activated"),
    ("mixtral-8x7b", 47.0, 13.0, "Mixtral (arXiv 2401.04088) sec. 1: 47B total, 13B active"),
]


@pytest.mark.parametrize("fixture,total_b,active_b,source", ROUNDED)
def test_moe_and_qwen3_counts_match_published_sizes(fixture, total_b, active_b, source):
    m = load_hf_config(HF / f"{fixture}.json")
    assert total_params(m) / 1e9 == pytest.approx(total_b, rel=0.01), source
    if active_b is not None:
        deepseek = fixture.startswith("deepseek")
        assert active_params(m, count_input_embedding=not deepseek) / 1e9 == pytest.approx(active_b, rel=0.03), source


def test_qwen3_non_embedding_counts_match_model_cards():
    # Qwen3-8B card: 6.95B non-embedding; Qwen3-30B-A3B card: 29.9B (input + output embeddings out), equal to our
    # count rounded to the printed digits
    for fixture, non_emb_b, half_unit in (("qwen3-8b", 6.95, 0.005), ("qwen3-30b-a3b", 29.9, 0.05)):
        m = load_hf_config(HF / f"{fixture}.json")
        c = model_costs(m, 2048)
        assert (total_params(m) - c.embedding_params - c.output_params) / 1e9 == pytest.approx(non_emb_b, abs=half_unit)


@pytest.mark.parametrize("preset", ["llama2-7b", "llama3-8b", "mixtral-8x7b", "deepseek-v2", "deepseek-v3",
                                    "gpt-neox-20b"])
def test_import_equals_the_hand_written_preset(preset):
    """The preset (written from the papers) and the import (from config.json) are the same model."""
    skip = {"name", "source", "notes"}
    imported = load_model(str(HF / f"{preset}.json"))
    assert imported.model_dump(exclude=skip) == load_model(preset).model_dump(exclude=skip)
    assert total_params(imported) == total_params(load_model(preset))


def test_family_specific_fields_are_read():
    q3 = load_hf_config(HF / "qwen3-30b-a3b.json")
    assert (q3.head_dim, q3.num_kv_heads, q3.max_seq_len) == (128, 4, 40960)   # head_dim != 2048 / 32
    assert (q3.moe.num_experts, q3.moe.top_k, q3.moe.expert_ffn_hidden_size, q3.num_moe_layers) == (128, 8, 768, 48)
    q2 = load_hf_config(HF / "qwen2-57b-a14b.json").moe
    assert (q2.num_shared_experts, q2.shared_expert_ffn_hidden_size) == (1, 20480)
    lite = load_hf_config(HF / "deepseek-v2-lite.json")
    assert lite.mla.q_lora_rank is None and lite.moe.first_dense_layers == 1 and lite.num_moe_layers == 26
    assert (lite.moe.num_shared_experts, lite.moe.shared_expert_ffn_hidden_size) == (2, 1408)
    assert lite.max_seq_len == 4096                     # rope_scaling.original_max_position_embeddings, not 163840
    neox = load_hf_config(HF / "gpt-neox-20b.json")
    assert not neox.gated_mlp and neox.num_kv_heads is None and "parallel" in neox.notes
    assert load_hf_config(HF / "qwen3-8b.json").name == "qwen3-8b"


def _cfg(fixture, **changes):
    d = json.loads((HF / f"{fixture}.json").read_text())
    d.update(changes)
    return d


@pytest.mark.parametrize("changes,moe_layers,first_dense,freq,exact", [
    # Qwen rule: layer i is MoE iff i not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0
    (dict(num_hidden_layers=8, decoder_sparse_step=2), [1, 3, 5, 7], 0, 2, True),
    (dict(num_hidden_layers=8, mlp_only_layers=[0, 1]), [2, 3, 4, 5, 6, 7], 2, 1, True),
    (dict(num_hidden_layers=8, mlp_only_layers=[3]), [0, 1, 2, 4, 5, 6, 7], 1, 1, False),
    (dict(num_hidden_layers=8, num_experts=0), [], None, None, True),
])
def test_qwen_moe_layers_follow_the_modelling_rule(changes, moe_layers, first_dense, freq, exact):
    m = model_from_hf_config(_cfg("qwen3-30b-a3b", **changes), name="t")
    assert m.num_moe_layers == len(moe_layers)
    if not moe_layers:
        assert m.moe is None
        return
    assert (m.moe.first_dense_layers, m.moe.layer_freq) == (first_dense, freq)
    assert ("not all at the positions" in m.notes) == (not exact)


def test_deepseek_moe_layer_freq_and_dense_model():
    # DeepSeek rule: MoE iff i >= first_k_dense_replace and i % moe_layer_freq == 0 -> layers 2, 4, 6 of 8
    m = model_from_hf_config(_cfg("deepseek-v3", num_hidden_layers=8, first_k_dense_replace=1, moe_layer_freq=2),
                             name="t")
    assert (m.num_moe_layers, m.moe.first_dense_layers, m.moe.layer_freq) == (3, 1, 2)
    assert model_from_hf_config(_cfg("deepseek-v3", n_routed_experts=None), name="t").moe is None


def test_model_type_names_the_family_when_architectures_is_absent():
    d = _cfg("llama3-8b")
    del d["architectures"]
    assert total_params(model_from_hf_config(d, name="t")) == total_params(load_hf_config(HF / "llama3-8b.json"))


@pytest.mark.parametrize("changes,message", [
    (dict(architectures=["LlamaForCausalLm"]), "did you mean 'LlamaForCausalLM'"),
    (dict(architectures=["GemmaForCausalLM"]), "'GemmaForCausalLM' is not a supported"),
    (dict(architectures=None, model_type=None), "missing required key 'architectures'"),
    (dict(num_hidden_layers=None), "num_hidden_layers = None: must be an integer >= 1"),
    (dict(hidden_size="4096"), "hidden_size = '4096': must be an integer"),
    (dict(tie_word_embeddings="no"), "tie_word_embeddings = 'no': must be true or false"),
    (dict(num_key_value_heads=5), "num_kv_heads <- num_key_value_heads"),
])
def test_bad_config_names_file_key_and_rule(changes, message):
    with pytest.raises(SpecError, match="my.json") as err:
        model_from_hf_config(_cfg("llama3-8b", **changes), where="my.json")
    assert message in str(err.value)


def test_missing_family_key_is_named():
    d = _cfg("qwen3-8b")
    del d["head_dim"]              # Qwen3Config's default (128) is one model's constant: required
    with pytest.raises(SpecError, match="missing required key 'head_dim' for Qwen3ForCausalLM"):
        model_from_hf_config(d, where="q.json")


@pytest.mark.parametrize("content,message", [
    (b'{"architectures": ["LlamaForCausalLM"', "not valid JSON"),
    (b'{"hidden_size": NaN}', "NaN"),
    (b"[1, 2]", "expected a JSON object"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_unreadable_files_are_spec_errors(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(SpecError, match=message):
        load_model(str(p))


def test_source_is_optional_in_a_user_yaml(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("name: mine\nnum_layers: 2\nhidden_size: 64\nnum_heads: 4\nffn_hidden_size: 256\nvocab_size: 100\n")
    assert load_model(str(p)).source == ""


ESTIMATE = ["estimate", "--hardware", "h100-sxm5-80gb", "--devices", "8", "--tp", "2", "--global-batch", "64",
            "--micro-batch", "1", "--seq-len", "8192", "--format", "json"]


def test_cli_estimate_from_config_json_equals_the_preset(capsys):
    assert main(["estimate", "--model", str(HF / "llama3-8b.json")] + ESTIMATE[1:]) == 0
    from_json = json.loads(capsys.readouterr().out)
    assert main(["estimate", "--model", "llama3-8b"] + ESTIMATE[1:]) == 0
    from_preset = json.loads(capsys.readouterr().out)
    for key in ("mfu", "hfu", "step_time_s", "tokens_per_s"):
        assert from_json[key] == from_preset[key]
    assert from_json["memory"]["total_bytes"] == from_preset["memory"]["total_bytes"]


def test_cli_process_exit_codes(tmp_path):
    """The command as a user types it: exit 0 for the fixture, exit 2 with one message for a bad file."""
    ok = subprocess.run([sys.executable, "-m", "simulator"] + ESTIMATE[:1]
                        + ["--model", "tests/fixtures/hf/llama3-8b.json"] + ESTIMATE[1:],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["model"] == "llama3-8b"
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps(_cfg("llama3-8b", architectures=["FooForCausalLM"])))
    res = subprocess.run([sys.executable, "-m", "simulator", "estimate", "--model", str(bad)] + ESTIMATE[1:],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and str(bad) in res.stderr and "FooForCausalLM" in res.stderr
