"""A trainsim ModelSpec from a Hugging Face `config.json` (offline: the file only, no hub access, no transformers).

`model_from_hf_config(config)` is a pure function of the parsed JSON object; `load_hf_config(path)` reads the file
(what `--model path/to/config.json` and a scenario's `model: x.json` call).

Supported `architectures` (the first entry is used; when the key is absent, `model_type` names the family) and
the transformers configuration class whose fields are read. Field names and defaults follow
huggingface/transformers src/transformers/models/<family>/configuration_<family>.py (read at commit
008e574391258935f3ecc3035c882e73bbcac419; Mistral and DeepSeek-V3 at 001f85b38fb432858ace93f18622f07cec46d874):

    LlamaForCausalLM (Llama 1/2/3)  LlamaConfig     num_hidden_layers, hidden_size, num_attention_heads,
    MistralForCausalLM              MistralConfig   num_key_value_heads, head_dim, intermediate_size, vocab_size,
    Qwen2ForCausalLM                Qwen2Config     tie_word_embeddings, max_position_embeddings, rope_scaling
    Qwen3ForCausalLM                Qwen3Config     (rope_parameters in transformers >= 5)
    MixtralForCausalLM              MixtralConfig   + num_local_experts (alias num_experts), num_experts_per_tok;
                                                      every layer is MoE, expert width = intermediate_size
    Qwen2MoeForCausalLM             Qwen2MoeConfig  + num_experts, num_experts_per_tok, moe_intermediate_size,
    Qwen3MoeForCausalLM             Qwen3MoeConfig    decoder_sparse_step, mlp_only_layers,
                                                      shared_expert_intermediate_size (Qwen2-MoE: one shared expert)
    DeepseekV2ForCausalLM           DeepseekV2Config  + MLA: q_lora_rank (null = full-rank q), kv_lora_rank,
    DeepseekV3ForCausalLM           DeepseekV3Config    qk_nope_head_dim, qk_rope_head_dim, v_head_dim; MoE:
                                                      n_routed_experts (null = dense), n_shared_experts,
                                                      num_experts_per_tok, moe_intermediate_size,
                                                      first_k_dense_replace, moe_layer_freq
    GPTNeoXForCausalLM              GPTNeoXConfig   two-matrix GeLU MLP of intermediate_size, multi-head attention
    Gemma2ForCausalLM               Gemma2Config    GeGLU MLP; head_dim, num_key_value_heads and sliding_window
    Gemma3ForCausalLM               Gemma3TextConfig  required; tie_word_embeddings defaults to true
    Llama4ForCausalLM               Llama4TextConfig  MoE on moe_layers (default every interleave_moe_layer_step-th):
                                                      num_local_experts of intermediate_size plus one shared MLP of
                                                      the same width; dense layers intermediate_size_mlp;
                                                      attention_chunk_size required (chunked on the RoPE layers)
    Llama4ForConditionalGeneration, Gemma3ForConditionalGeneration: their `text_config` (the vision tower is not
                                                      imported)
    GptOssForCausalLM               GptOssConfig    Mixtral-style MoE (num_local_experts, num_experts_per_tok, expert
                                                      width = intermediate_size); head_dim, sliding_window required

Local attention (sliding window, chunked) follows `_local_attention`: `layer_types` where given, else each
family's rule (sliding_window, use_sliding_window + max_window_layers, sliding_window_pattern,
attention_chunk_size + no_rope_layers); ModelSpec keeps it as attention_window / attention_chunk with
global_attention_every (a period) or attention_layer_types (any other per-layer list).

Which layers are MoE follows the modelling code: Qwen2-MoE/Qwen3-MoE layer i is MoE iff i is not in
`mlp_only_layers` and `(i + 1) % decoder_sparse_step == 0` (modeling_qwen2_moe.py, Qwen2MoeDecoderLayer);
DeepSeek layer i iff `n_routed_experts` is set, `i >= first_k_dense_replace` and `i % moe_layer_freq == 0`
(DeepSeek's own modeling_deepseek.py on the hub; `moe_layer_freq` exists only there, default 1, and transformers'
port makes every layer from first_k_dense_replace on MoE, the same set when it is 1). The shared experts of a
DeepSeek layer are one MLP of width `moe_intermediate_size * n_shared_experts` (DeepseekV3MoE), the same weights
as `n_shared_experts` experts of `moe_intermediate_size`.

Defaults for absent keys: a key that fixes a tensor shape is required, except where every transformers version
derives it from other keys (num_key_value_heads -> num_attention_heads in LlamaConfig/DeepseekV2Config; head_dim ->
hidden_size // num_attention_heads). A key whose class default is one model's constant (Qwen3Config head_dim 128,
MistralConfig num_key_value_heads 8, DeepseekV3Config first_k_dense_replace 3, ...) is required too, so that a
hand-written file never silently takes another model's shape. tie_word_embeddings defaults to false (the default
of every class above); decoder_sparse_step to 1, mlp_only_layers to [] and moe_layer_freq to 1.

What trainsim does not model is ignored and listed in the spec's notes: biases (Qwen2 q/k/v, GPT-NeoX), the
Qwen2-MoE shared-expert gate (hidden x 1), MLA's latent norms, DeepSeek-V3's
multi-token-prediction layers, GPT-NeoX's parallel residual and partial rotary, Gemma's extra norms and soft-caps,
GPT-OSS's attention sinks and biases.
`max_seq_len` is the context before RoPE extension (`rope_scaling.original_max_position_embeddings`, e.g. 4096
for DeepSeek-V3's YaRN), else `max_position_embeddings`.
"""
from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import SpecError
from .loading import validate_spec
from .model import ModelSpec

#: A config.json is a few kilobytes; refuse anything far larger before parsing it.
MAX_CONFIG_BYTES = 4 * 1024 * 1024

_MISSING = object()


@dataclass(frozen=True)
class _Family:
    """How one Hugging Face architecture maps onto ModelSpec."""

    config_class: str
    moe: Optional[str] = None           # None | "mixtral" | "qwen" | "deepseek"
    mla: bool = False
    gated_mlp: bool = True
    kv_heads_default_mha: bool = False  # num_key_value_heads absent -> num_attention_heads (class default None)
    head_dim_required: bool = False     # class default is a constant, not hidden_size // num_attention_heads
    mha_only: bool = False              # no num_key_value_heads key at all (GPT-NeoX)
    shared_expert: bool = False         # Qwen2-MoE: one shared expert of shared_expert_intermediate_size
    ignored: str = ""
    local: Optional[str] = None         # local-attention rule (_local_attention): None | "mistral" | "qwen" |
                                        # "gemma2" | "gemma3" | "gpt_oss"
    tied_default: bool = False          # tie_word_embeddings when absent (Gemma configs: true)
    dense_ffn_key: str = "intermediate_size"   # the dense MLP's width (Llama 4: intermediate_size_mlp)
    qk_norm: bool = False               # per-head q/k RMSNorms (ModelSpec.qk_norm)


ARCHITECTURES: dict[str, _Family] = {
    "LlamaForCausalLM": _Family("LlamaConfig", kv_heads_default_mha=True, ignored="attention/MLP biases if set"),
    "MistralForCausalLM": _Family("MistralConfig", local="mistral"),
    "MixtralForCausalLM": _Family("MixtralConfig", moe="mixtral", local="mistral"),
    "Qwen2ForCausalLM": _Family("Qwen2Config", local="qwen", ignored="q/k/v biases"),
    "Qwen3ForCausalLM": _Family("Qwen3Config", head_dim_required=True, local="qwen", qk_norm=True),
    "Qwen2MoeForCausalLM": _Family("Qwen2MoeConfig", moe="qwen", shared_expert=True, local="qwen",
                                   ignored="q/k/v biases; the shared-expert gate (hidden x 1)"),
    "Qwen3MoeForCausalLM": _Family("Qwen3MoeConfig", moe="qwen", local="qwen", qk_norm=True),
    "Gemma2ForCausalLM": _Family("Gemma2Config", head_dim_required=True, local="gemma2", tied_default=True,
                                 ignored="post-attention and post-FFN norms; logit soft-capping"),
    "Gemma3ForCausalLM": _Family("Gemma3TextConfig", head_dim_required=True, local="gemma3", tied_default=True,
                                 qk_norm=True, ignored="post-attention and post-FFN norms"),
    "Llama4ForCausalLM": _Family("Llama4TextConfig", moe="llama4", head_dim_required=True, local="llama4",
                                 dense_ffn_key="intermediate_size_mlp",
                                 ignored="the router's sigmoid scaling of the expert input; q/k L2 norms"),
    "GptOssForCausalLM": _Family("GptOssConfig", moe="mixtral", head_dim_required=True, local="gpt_oss",
                                 ignored="attention sinks (learnable softmax offsets)"),
    "DeepseekV2ForCausalLM": _Family("DeepseekV2Config", moe="deepseek", mla=True, kv_heads_default_mha=True,
                                     ignored="MLA latent RMSNorms"),
    "DeepseekV3ForCausalLM": _Family("DeepseekV3Config", moe="deepseek", mla=True,
                                     ignored="MLA latent RMSNorms; the router's expert-bias vector; "
                                             "the multi-token-prediction layers (num_nextn_predict_layers)"),
    "GPTNeoXForCausalLM": _Family("GPTNeoXConfig", gated_mlp=False, mha_only=True,
                                  ignored="biases; parallel attention+MLP residual (costed as sequential); "
                                          "partial rotary (rotary_pct)"),
}

#: `model_type` -> architecture, for files without an `architectures` list.
MODEL_TYPES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "mixtral": "MixtralForCausalLM",
               "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "qwen2_moe": "Qwen2MoeForCausalLM",
               "qwen3_moe": "Qwen3MoeForCausalLM", "deepseek_v2": "DeepseekV2ForCausalLM",
               "deepseek_v3": "DeepseekV3ForCausalLM", "gpt_neox": "GPTNeoXForCausalLM",
               "gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM", "gpt_oss": "GptOssForCausalLM",
               "llama4_text": "Llama4ForCausalLM"}

#: Multimodal wrappers whose language model is a supported text architecture, read from their `text_config`.
TEXT_CONFIG_WRAPPERS = {"Llama4ForConditionalGeneration": "Llama4ForCausalLM",
                        "Gemma3ForConditionalGeneration": "Gemma3ForCausalLM"}


def _show(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 60 else s[:57] + "..."


class _Reader:
    """Typed access to the config's keys; every failure names the file, the key, the value and the rule."""

    def __init__(self, config: Mapping[str, Any], where: str, arch: str):
        self.config, self.where, self.arch = config, where, arch

    def _get(self, key: str, default: Any, aliases: tuple[str, ...] = ()) -> tuple[str, Any]:
        for k in (key, *aliases):
            if k in self.config:
                return k, self.config[k]
        if default is _MISSING:
            also = f" (or {', '.join(repr(a) for a in aliases)})" if aliases else ""
            raise SpecError(f"{self.where}: missing required key '{key}'{also} for {self.arch}")
        return key, default

    def int(self, key: str, default: Any = _MISSING, minimum: int = 1, aliases: tuple[str, ...] = (),
            nullable: bool = False) -> Optional[int]:
        k, v = self._get(key, default, aliases)
        if v is None and nullable:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            rule = f"an integer >= {minimum}" + (" or null" if nullable else "")
            raise SpecError(f"{self.where}: {k} = {_show(v)}: must be {rule}")
        return v

    def bool(self, key: str, default: bool) -> bool:
        k, v = self._get(key, default)
        if not isinstance(v, bool):
            raise SpecError(f"{self.where}: {k} = {_show(v)}: must be true or false")
        return v

    def int_list(self, key: str) -> list[int]:
        k, v = self._get(key, None)
        v = [] if v is None else v
        if not isinstance(v, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in v):
            raise SpecError(f"{self.where}: {k} = {_show(v)}: must be a list of layer indices")
        return v


def _architecture(config: Mapping[str, Any], where: str) -> str:
    """The supported architecture named by `architectures[0]`, else by `model_type`."""
    supported = ", ".join(sorted(ARCHITECTURES))
    archs = config.get("architectures")
    if archs is None:
        mt = config.get("model_type")
        if isinstance(mt, str) and mt in MODEL_TYPES:
            return MODEL_TYPES[mt]
        if mt is None:
            raise SpecError(f"{where}: missing required key 'architectures' (one of: {supported})")
        raise SpecError(f"{where}: model_type = {_show(mt)} and no 'architectures': not a supported family; "
                        f"supported model types: {', '.join(MODEL_TYPES)}")
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        raise SpecError(f"{where}: architectures = {_show(archs)}: must be a non-empty list of class names")
    arch = archs[0]
    if arch not in ARCHITECTURES:
        near = difflib.get_close_matches(arch, list(ARCHITECTURES), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise SpecError(f"{where}: architectures = {_show(archs)}: '{arch}' is not a supported Hugging Face "
                        f"architecture (supported: {supported}){hint}")
    return arch


def _context_length(r: _Reader) -> Optional[int]:
    """The pre-extension context: rope_scaling/rope_parameters.original_max_position_embeddings, else
    max_position_embeddings (None when neither is given)."""
    for key in ("rope_scaling", "rope_parameters"):
        rope = r.config.get(key)
        if isinstance(rope, Mapping) and "original_max_position_embeddings" in rope:
            return _Reader(rope, f"{r.where}: {key}", r.arch).int("original_max_position_embeddings")
    return r.int("max_position_embeddings", default=None, nullable=True)


def _attention_fields(r: _Reader, fam: _Family, hidden: int, heads: int) -> dict[str, Any]:
    """num_kv_heads and head_dim (None where trainsim's own default gives the same value), or the MLA block."""
    if fam.mla:
        mla = {"q_lora_rank": r.int("q_lora_rank", nullable=True), "kv_lora_rank": r.int("kv_lora_rank"),
               "qk_nope_head_dim": r.int("qk_nope_head_dim"), "qk_rope_head_dim": r.int("qk_rope_head_dim", minimum=0),
               "v_head_dim": r.int("v_head_dim")}
        # after up-projection every head has its own K and V; head_dim is only a fallback for MLA-unaware code
        return {"num_kv_heads": None, "head_dim": mla["v_head_dim"], "mla": mla}
    if fam.mha_only:
        kv = None
    else:
        kv = r.int("num_key_value_heads", default=heads if fam.kv_heads_default_mha else _MISSING)
    head_dim = r.int("head_dim", default=_MISSING if fam.head_dim_required else None, nullable=True)
    if head_dim is not None and hidden % heads == 0 and head_dim == hidden // heads:
        head_dim = None
    return {"num_kv_heads": kv, "head_dim": head_dim}


#: Hugging Face `layer_types` entries -> ModelSpec attention_layer_types (transformers configuration_utils
#: ALLOWED_LAYER_TYPES: the attention kinds trainsim models).
_LAYER_TYPES = {"full_attention": "full", "sliding_attention": "local", "chunked_attention": "local"}


def _local_attention(r: _Reader, fam: _Family, num_layers: int) -> tuple[dict[str, Any], str]:
    """ModelSpec local-attention fields (attention_window / attention_chunk, global_attention_every or
    attention_layer_types) and a note, by the family's configuration class:

    - `layer_types`, when given, lists every layer's kind ("sliding_attention", "chunked_attention",
      "full_attention"; transformers >= 4.53 writes it for Gemma 2/3, GPT-OSS, Qwen2/3, Mistral);
    - Mistral/Mixtral: `sliding_window` (null: none) on every layer; an absent key reads as null (the published
      configs state it: 4096 for Mistral 7B v0.1, null from v0.2 and for Mixtral; MistralConfig's class default
      4096 is v0.1's constant);
    - Qwen2/Qwen3 (and their MoE): `sliding_window` only when `use_sliding_window` (default false), on the layers
      i >= `max_window_layers` (Qwen2Config: layer_types "sliding_attention" if sliding_window is not None and
      i >= max_window_layers);
    - Gemma 2 and GPT-OSS: `sliding_window` on the even layers, every 2nd global (Gemma2Config / GptOssConfig:
      "sliding_attention" if (i + 1) % 2 else "full_attention");
    - Gemma 3: every `sliding_window_pattern`-th layer global (Gemma3TextConfig, default 6);
    - `attention_chunk_size` with `no_rope_layers` (1 = RoPE layer, chunked; 0 = NoPE, full; Llama4TextConfig)
      or `no_rope_layer_interval` where a config states them.
    A window or chunk at least the context (max_position_embeddings) is kept: the cost functions treat it as full.

    Source: huggingface/transformers configuration_{mistral,qwen2,gemma2,gemma3,gpt_oss,llama4}.py and
    masking_utils.py (sliding_window_causal, chunked_causal)."""
    if fam.local is None:
        return {}, ""
    if fam.local == "qwen" and not r.bool("use_sliding_window", False):
        window = None
    elif fam.local in ("gemma2", "gemma3", "gpt_oss"):
        window = r.int("sliding_window")
    elif fam.local == "llama4":
        window = None
    else:
        window = r.int("sliding_window", default=None, nullable=True)
    chunk = r.int("attention_chunk_size", default=_MISSING if fam.local == "llama4" else None, nullable=True)
    if window is not None and chunk is not None:
        raise SpecError(f"{r.where}: sliding_window = {window} and attention_chunk_size = {chunk}: trainsim models "
                        "one local attention kind per model")
    if window is None and chunk is None:
        return {}, ""
    field = {"attention_window": window} if window is not None else {"attention_chunk": chunk}
    what = f"sliding window {window}" if window is not None else f"chunked attention {chunk}"
    types = r.config.get("layer_types")
    if types is not None:
        if not isinstance(types, list) or len(types) != num_layers or any(t not in _LAYER_TYPES for t in types):
            raise SpecError(f"{r.where}: layer_types = {_show(types)}: must list one of "
                            f"{', '.join(_LAYER_TYPES)} for each of the {num_layers} layers")
        kinds = [_LAYER_TYPES[t] for t in types]
    elif chunk is not None:
        flags = r.config.get("no_rope_layers")
        if flags:
            if not isinstance(flags, list) or len(flags) != num_layers or any(f not in (0, 1) for f in flags):
                raise SpecError(f"{r.where}: no_rope_layers = {_show(flags)}: must list 0 or 1 for each of the "
                                f"{num_layers} layers")
            kinds = ["local" if f else "full" for f in flags]
        else:
            k = r.int("no_rope_layer_interval", default=4)
            kinds = ["full" if (i + 1) % k == 0 else "local" for i in range(num_layers)]
    elif fam.local == "qwen":
        first = r.int("max_window_layers", minimum=0)
        kinds = ["local" if i >= first else "full" for i in range(num_layers)]
    elif fam.local in ("gemma2", "gpt_oss"):
        kinds = ["full" if (i + 1) % 2 == 0 else "local" for i in range(num_layers)]
    elif fam.local == "gemma3":
        k = r.int("sliding_window_pattern", default=6)
        kinds = ["full" if (i + 1) % k == 0 else "local" for i in range(num_layers)]
    else:
        kinds = ["local"] * num_layers
    n_local = kinds.count("local")
    if n_local == 0:
        return {}, f"{what} on no layer (full attention)"
    period = next((k for k in range(1, num_layers + 1)
                   if kinds == ["full" if (i + 1) % k == 0 else "local" for i in range(num_layers)]), None)
    if n_local == num_layers:
        field["global_attention_every"] = None
    elif period is not None:
        field["global_attention_every"] = period
    else:
        field["attention_layer_types"] = kinds
    return field, f"{what} on {n_local} of {num_layers} layers"


def _moe_layers(r: _Reader, fam: _Family, num_layers: int) -> tuple[list[int], int]:
    """Indices of the MoE layers, by the modelling code's rule, and the config's MoE period."""
    if fam.moe == "mixtral":
        return list(range(num_layers)), 1
    if fam.moe == "llama4":                 # Llama4TextConfig: moe_layers, else every interleave_moe_layer_step-th
        step = r.int("interleave_moe_layer_step", default=1)
        given = r.config.get("moe_layers")
        if given is not None:
            return sorted(set(r.int_list("moe_layers"))), step
        return list(range(step - 1, num_layers, step)), step
    if fam.moe == "qwen":
        step = r.int("decoder_sparse_step", default=1)
        dense = set(r.int_list("mlp_only_layers"))
        n = r.int("num_experts", minimum=0, aliases=("num_local_experts",))
        return [i for i in range(num_layers) if i not in dense and n > 0 and (i + 1) % step == 0], step
    if r.int("n_routed_experts", nullable=True) is None:    # DeepSeek: null routed experts = a dense model
        return [], 1
    first = r.int("first_k_dense_replace", minimum=0)
    freq = r.int("moe_layer_freq", default=1)
    return [i for i in range(num_layers) if i >= first and i % freq == 0], freq


def _moe_placement(layers: list[int], num_layers: int, period: int) -> tuple[int, int, bool]:
    """(first_dense_layers, layer_freq, exact) reproducing `layers` under ModelSpec's rule (after a dense prefix
    of f layers, every k-th layer is MoE, the first at f + k - 1); when no (f, k) does, the same number of MoE
    layers after a dense prefix (exact=False: parameters and FLOPs agree, the dense layers' position does not)."""
    first = layers[0] - (period - 1)
    if first >= 0 and layers == list(range(layers[0], num_layers, period)):
        return first, period, True
    return num_layers - len(layers), 1, False


def _moe_block(r: _Reader, fam: _Family, num_layers: int, hidden_ffn: int) -> tuple[Optional[dict], str]:
    """The ModelSpec `moe` mapping (None for a dense model) and a note on the layer placement."""
    layers, period = _moe_layers(r, fam, num_layers)
    if not layers:
        return None, "no MoE layer (dense model)"
    if fam.moe == "mixtral":
        experts = r.int("num_local_experts", aliases=("num_experts",))
        width, shared, shared_w = hidden_ffn, 0, None
    elif fam.moe == "llama4":               # Llama4TextMoe: routed experts and one shared MLP of intermediate_size
        experts = r.int("num_local_experts")
        width = r.int("intermediate_size")
        shared, shared_w = 1, width
    elif fam.moe == "qwen":
        experts = r.int("num_experts", aliases=("num_local_experts",))
        width = r.int("moe_intermediate_size")
        shared_w = r.int("shared_expert_intermediate_size", minimum=0) if fam.shared_expert else 0
        shared, shared_w = (1, shared_w) if shared_w else (0, None)
    else:
        experts = r.int("n_routed_experts")
        width = r.int("moe_intermediate_size")
        shared = r.int("n_shared_experts", minimum=0, nullable=True) or 0
        shared_w = width if shared else None
    first, freq, exact = _moe_placement(layers, num_layers, period)
    moe = {"num_experts": experts, "top_k": r.int("num_experts_per_tok"), "expert_ffn_hidden_size": width,
           "num_shared_experts": shared, "shared_expert_ffn_hidden_size": shared_w, "layer_freq": freq,
           "first_dense_layers": first, "capacity_factor": None}
    where = (f"{len(layers)} of {num_layers} layers MoE" if exact else
             f"{len(layers)} of {num_layers} layers MoE, not all at the positions the config gives "
             f"(modelled as a dense prefix of {first} layers)")
    return moe, where + ", dropless"


def model_from_hf_config(config: Mapping[str, Any], *, where: str = "config.json",
                         name: Optional[str] = None) -> ModelSpec:
    """The ModelSpec of a parsed Hugging Face `config.json` object (see the module docstring for the fields read).

    `where` names the file in error messages; `name` defaults to the config's `_name_or_path` or model_type.
    Raises SpecError naming the file, the key, its value and the rule.

    Source: huggingface/transformers configuration_<family>.py and modeling_<family>.py (fields, defaults, which
    layers are MoE); DeepSeek-V2 (arXiv 2405.04434, sec. 2.1) for MLA.
    """
    if not isinstance(config, Mapping):
        raise SpecError(f"{where}: expected a JSON object of config keys, got {type(config).__name__}")
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and archs[0] in TEXT_CONFIG_WRAPPERS:
        text = config.get("text_config")
        if not isinstance(text, Mapping):
            raise SpecError(f"{where}: architectures = {_show(archs)}: needs a 'text_config' object (the language "
                            "model trainsim imports)")
        config = {**text, "architectures": [TEXT_CONFIG_WRAPPERS[archs[0]]]}
        where = f"{where}: text_config"
    arch = _architecture(config, where)
    fam = ARCHITECTURES[arch]
    r = _Reader(config, where, arch)
    layers, hidden, heads = r.int("num_hidden_layers"), r.int("hidden_size"), r.int("num_attention_heads")
    ffn = r.int(fam.dense_ffn_key)
    data: dict[str, Any] = {
        "name": name or _sanitize(str(config.get("_name_or_path") or config.get("model_type") or "hf-model")),
        "source": f"Hugging Face config {where} ({arch}, fields as in transformers' {fam.config_class})",
        "num_layers": layers, "hidden_size": hidden, "num_heads": heads, "ffn_hidden_size": ffn,
        "gated_mlp": fam.gated_mlp, "vocab_size": r.int("vocab_size"),
        "tied_embeddings": r.bool("tie_word_embeddings", fam.tied_default), "max_seq_len": _context_length(r),
    }
    data.update(_attention_fields(r, fam, hidden, heads))
    local, local_note = _local_attention(r, fam, layers)
    data.update({k: v for k, v in local.items() if v is not None})
    data.update(_model_features(r, fam))
    moe_note = ""
    if fam.moe is not None:
        data["moe"], moe_note = _moe_block(r, fam, layers, ffn)
    data["notes"] = "; ".join(x for x in (f"imported from {arch}", local_note, moe_note,
                                          f"not modelled: {fam.ignored}" if fam.ignored else "") if x)
    try:
        return validate_spec(ModelSpec, data, where)
    except SpecError as err:                 # the rule names trainsim's fields: say which keys they came from
        keys = [f"{field} <- {key}" for field, key in _FIELD_KEYS.items() if re.search(rf"\b{field}\b", str(err))]
        raise SpecError(f"{err} (trainsim fields from the config's keys: {', '.join(keys)})" if keys
                        else str(err)) from None


def _yarn_temperature(rope: Mapping[str, Any], where: str) -> float:
    """YaRN's attention factor: `attention_factor` where given, else get_mscale(factor, mscale) /
    get_mscale(factor, mscale_all_dim) with both given, else get_mscale(factor) = 0.1 ln(factor) + 1 (1 for a
    factor <= 1).

    Source: transformers modeling_rope_utils.py _compute_yarn_parameters (get_mscale); Megatron-Core
    yarn_rotary_pos_embedding.py _yarn_get_concentration_factor (the same rule)."""
    def get_mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1.0 else 0.1 * m * math.log(scale) + 1.0

    def num(key: str, default):
        v = rope.get(key, default)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise SpecError(f"{where}: {key} = {_show(v)}: must be a number")
        return v

    if num("attention_factor", None) is not None:
        return float(rope["attention_factor"])
    factor = float(num("factor", 1.0))
    ms, ms_all = num("mscale", None), num("mscale_all_dim", None)
    if ms and ms_all:
        return get_mscale(factor, float(ms)) / get_mscale(factor, float(ms_all))
    return get_mscale(factor)


def _model_features(r: _Reader, fam: _Family) -> dict[str, Any]:
    """ModelSpec feature fields the config states: yarn_mscale, YaRN's attention temperature, from rope_scaling /
    rope_parameters of rope_type (or type) yarn where it is not 1 (_yarn_temperature); for GPT-OSS also
    linear_bias (attention_bias, default true; the experts always carry gate_up_proj_bias and down_proj_bias) and
    glu_clamp (swiglu_limit, default 7.0); qk_norm for the families with per-head q/k RMSNorms (Qwen3, Qwen3-MoE,
    Gemma 3: modeling_qwen3.py / modeling_qwen3_moe.py / modeling_gemma3.py q_norm and k_norm over head_dim).

    Source: huggingface/transformers configuration_gpt_oss.py (GptOssConfig: attention_bias True, swiglu_limit 7.0,
    rope_scaling {"rope_type": "yarn", "factor": 32.0, ...}) and modeling_gpt_oss.py (GptOssExperts biases,
    clamp(min=None, max=limit) / clamp(-limit, limit) of the gate and up halves)."""
    out: dict[str, Any] = {}
    for key in ("rope_scaling", "rope_parameters"):
        rope = r.config.get(key)
        if isinstance(rope, Mapping) and str(rope.get("rope_type", rope.get("type", ""))).lower() == "yarn":
            t = _yarn_temperature(rope, f"{r.where}: {key}")
            if t != 1.0:
                out["yarn_mscale"] = t
    if fam.qk_norm:
        out["qk_norm"] = True
    if fam.local == "gpt_oss":
        out["linear_bias"] = True if r.config.get("attention_bias") is None else r.bool("attention_bias", True)
        limit = r.config.get("swiglu_limit", 7.0)
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0:
            raise SpecError(f"{r.where}: swiglu_limit = {_show(limit)}: must be a positive number (the clamp of the "
                            "SwiGLU halves)")
        out["glu_clamp"] = float(limit)
    return out


#: trainsim field <- Hugging Face key, for messages about a rule that spans fields.
_FIELD_KEYS = {"num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
               "num_kv_heads": "num_key_value_heads", "ffn_hidden_size": "intermediate_size",
               "num_experts": "num_experts/num_local_experts/n_routed_experts", "top_k": "num_experts_per_tok",
               "first_dense_layers": "first_k_dense_replace/mlp_only_layers",
               "attention_window": "sliding_window", "attention_chunk": "attention_chunk_size",
               "global_attention_every": "layer_types/sliding_window_pattern",
               "attention_layer_types": "layer_types/max_window_layers"}


def _sanitize(text: str) -> str:
    """A ModelSpec name (lower case, digits, '.', '-') from a file or repository name."""
    s = re.sub(r"[^a-z0-9.\-]+", "-", text.strip().split("/")[-1].lower()).strip("-.")
    return s or "hf-model"


def model_name_for(path: Path, config: Any) -> str:
    """The model's name: the file's stem (`llama3-8b.json`), or for a file called config.json its
    `_name_or_path`, else its folder's name (a downloaded snapshot `Meta-Llama-3-8B/config.json`)."""
    if path.stem.lower() != "config":
        return _sanitize(path.stem)
    if isinstance(config, Mapping) and isinstance(config.get("_name_or_path"), str) and config["_name_or_path"]:
        return _sanitize(config["_name_or_path"])
    return _sanitize(path.resolve().parent.name)


def _no_constant(token: str):
    raise ValueError(f"{token} is not a number JSON allows")


def read_json(path: Path) -> Any:
    """Parse a JSON file; every failure is a SpecError naming the file (and line where there is one)."""
    try:
        if path.is_dir():
            raise SpecError(f"{path}: is a folder; give the config.json file inside it")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise SpecError(f"{path}: {path.stat().st_size} bytes; a model config is at most "
                            f"{MAX_CONFIG_BYTES} bytes")
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
        return json.loads(text, parse_constant=_no_constant)
    except SpecError:
        raise
    except FileNotFoundError:
        raise SpecError(f"model file not found: {path}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}: not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    except ValueError as err:                       # NaN / Infinity
        raise SpecError(f"{path}: not valid JSON: {err}") from None
    except RecursionError:
        raise SpecError(f"{path}: JSON nested too deeply") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read the file ({err.strerror or err})") from None


def load_hf_config(path: str | Path) -> ModelSpec:
    """The ModelSpec of a Hugging Face `config.json` file (what `--model path/to/config.json` loads)."""
    p = Path(path)
    config = read_json(p)
    return model_from_hf_config(config, where=str(p), name=model_name_for(p, config))
