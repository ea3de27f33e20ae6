"""Transformer model spec: dense GPT/Llama (MHA, GQA, MQA, SwiGLU) and MoE (routed + shared experts),
with optional multi-head latent attention (MLA, DeepSeek-V2/V3)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from .base import MAX_EXPERTS, MAX_HEADS, MAX_LAYERS, MAX_NAME, MAX_SEQ_LEN, MAX_TEXT, MAX_VOCAB, MAX_WIDTH, Spec


class MoESpec(Spec):
    """Mixture-of-experts FFN. `layer_freq` k: every k-th layer is MoE; `first_dense_layers` are dense (use the
    model's ffn_hidden_size) regardless."""

    num_experts: int = Field(ge=2, le=MAX_EXPERTS, description="routed experts per MoE layer")
    top_k: int = Field(ge=1, le=MAX_EXPERTS, description="routed experts per token")
    expert_ffn_hidden_size: int = Field(ge=1, le=MAX_WIDTH, description="FFN width of one routed expert")
    num_shared_experts: int = Field(0, ge=0, le=MAX_EXPERTS, description="always-active experts per MoE layer")
    shared_expert_ffn_hidden_size: Optional[int] = Field(None, ge=1, le=MAX_WIDTH, description="default expert_ffn_hidden_size")
    layer_freq: int = Field(1, ge=1, le=MAX_LAYERS)
    first_dense_layers: int = Field(0, ge=0, le=MAX_LAYERS)
    capacity_factor: Optional[float] = Field(None, gt=0, description="token capacity factor; null = dropless")

    @model_validator(mode="after")
    def _topk(self):
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) must not exceed num_experts ({self.num_experts})")
        return self


class MLASpec(Spec):
    """Multi-head latent attention (DeepSeek-V2, arXiv 2405.04434, sec. 2.1): low-rank q and kv projections."""

    q_lora_rank: Optional[int] = Field(None, ge=1, le=MAX_WIDTH, description="null = full-rank q projection")
    kv_lora_rank: int = Field(ge=1, le=MAX_WIDTH)
    qk_nope_head_dim: int = Field(ge=1, le=MAX_WIDTH)
    qk_rope_head_dim: int = Field(ge=0, le=MAX_WIDTH)
    v_head_dim: int = Field(ge=1, le=MAX_WIDTH)


class ModelSpec(Spec):
    """A decoder-only transformer. `source` cites where the configuration comes from (every shipped preset has
    one; optional in a user's own file)."""

    name: str = Field(max_length=MAX_NAME, pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    source: str = Field("", max_length=MAX_TEXT)
    num_layers: int = Field(ge=1, le=MAX_LAYERS)
    hidden_size: int = Field(ge=1, le=MAX_WIDTH)
    num_heads: int = Field(ge=1, le=MAX_HEADS)
    num_kv_heads: Optional[int] = Field(None, ge=1, le=MAX_HEADS, description="default num_heads (MHA); 1 = MQA; between = GQA")
    head_dim: Optional[int] = Field(None, ge=1, le=MAX_WIDTH, description="default hidden_size / num_heads")
    ffn_hidden_size: int = Field(ge=1, le=MAX_WIDTH, description="dense FFN width (each of gate/up for gated MLPs)")
    gated_mlp: bool = Field(False, description="SwiGLU/GeGLU: three hidden x ffn matrices")
    vocab_size: int = Field(ge=1, le=MAX_VOCAB)
    tied_embeddings: bool = False
    max_seq_len: Optional[int] = Field(None, ge=1, le=MAX_SEQ_LEN, description="context length of the published model")
    moe: Optional[MoESpec] = None
    mla: Optional[MLASpec] = None
    dropout: Optional[bool] = Field(
        None, description="trained with hidden/attention dropout (its masks are kept for backward); null: none for "
                          "gated-MLP models (Llama, Mistral/Mixtral, DeepSeek, Qwen: no hidden dropout, attention "
                          "dropout 0 in their configs; Megatron's Llama/DeepSeek recipes pass --hidden-dropout 0 "
                          "--attention-dropout 0), dropout for GPT-style models (GPT-3 and Megatron GPT: 0.1)")
    mtp_layers: int = Field(
        0, ge=0, le=MAX_LAYERS,
        description="multi-token prediction modules trained with the model (DeepSeek-V3 report arXiv 2412.19437 "
                    "sec. 2.2: each is a projection of [norm(h); norm(embedding)] (2h -> h), one transformer layer "
                    "like the model's own, and the shared output head and its loss; HF config "
                    "num_nextn_predict_layers, 1 for DeepSeek-V3). A training choice (Megatron-Core --mtp-num-layers, "
                    "default none), so 0 unless the run states it; Megatron-Core places them on the last pipeline "
                    "stage")
    attention_window: Optional[int] = Field(
        None, ge=1, le=MAX_SEQ_LEN,
        description="sliding-window (local) attention: each query attends to the W most recent keys, itself "
                    "included (Hugging Face `sliding_window`: Mistral 7B v0.1 4096, Gemma 2 4096, Gemma 3 1024, "
                    "GPT-OSS 128); applies to the local layers (global_attention_every / attention_layer_types); "
                    "null: no sliding window")
    attention_chunk: Optional[int] = Field(
        None, ge=1, le=MAX_SEQ_LEN,
        description="chunked (local) attention: the sequence is cut into blocks of C tokens and each query attends "
                    "causally within its block (Hugging Face `attention_chunk_size`: Llama 4 8192); applies to the "
                    "local layers; null: no chunked attention")
    global_attention_every: Optional[int] = Field(
        None, ge=1, le=MAX_LAYERS,
        description="with a window or chunk: every k-th layer (0-based index i with (i + 1) % k == 0) is global "
                    "(full causal) attention, the others local (Gemma 2 and GPT-OSS 2, Llama 4 4, Gemma 3 6; "
                    "transformers' Gemma3 `sliding_window_pattern`, Llama4 `no_rope_layer_interval`); null: every "
                    "layer local unless attention_layer_types says otherwise")
    attention_layer_types: Optional[tuple[Literal["full", "local"], ...]] = Field(
        None, max_length=MAX_LAYERS,
        description="explicit per-layer attention kind, one entry per layer: full (global causal) or local (the "
                    "window or chunk); for patterns no period describes (Qwen2 max_window_layers); excludes "
                    "global_attention_every")
    linear_bias: bool = Field(
        False, description="additive biases on the attention projections and the MLP / expert linears (GPT-OSS: HF "
                           "attention bias true and the experts' gate_up_proj_bias / down_proj_bias; Megatron-Core "
                           "add_bias_linear); false for Llama-style models")
    glu_clamp: Optional[float] = Field(
        None, gt=0, description="clamped gated activation: the gate half clamped from above and the linear half to "
                                "[-limit, limit] before the GLU (GPT-OSS swiglu_limit 7.0; Megatron-Core "
                                "activation_func_clamp_value); null: no clamp")
    yarn_mscale: Optional[float] = Field(
        None, gt=0, description="YaRN RoPE's attention temperature (Peng et al. 2023, arXiv 2309.00071, eq. 23), the "
                                "factor on cos and sin: 0.1 ln(factor) + 1 unless the config gives mscale and "
                                "mscale_all_dim (their ratio); GPT-OSS (factor 32): 1.3466; DeepSeek-V3 (mscale = "
                                "mscale_all_dim): 1; null: plain RoPE or no temperature")
    qk_norm: bool = Field(
        False, description="a per-head RMSNorm on the queries and keys before RoPE (Qwen3 and Qwen3-MoE: "
                           "Qwen3RMSNorm q_norm / k_norm over head_dim; Megatron-Core qk_layernorm, TENorm on each "
                           "head); false for Llama-style models. MLA's latent norms are counted with MLA")
    notes: str = Field("", max_length=MAX_TEXT)

    @model_validator(mode="after")
    def _glu_clamp(self):
        if self.glu_clamp is not None and not self.gated_mlp:
            raise ValueError(f"glu_clamp ({self.glu_clamp}) needs a gated MLP (gated_mlp true): the clamp acts on "
                             "the GLU's gate and linear halves")
        return self

    @model_validator(mode="after")
    def _attention_pattern(self):
        if self.attention_window is not None and self.attention_chunk is not None:
            raise ValueError(f"attention_window ({self.attention_window}) and attention_chunk "
                             f"({self.attention_chunk}): give one local attention kind, not both")
        local = self.attention_window is not None or self.attention_chunk is not None
        if not local and (self.global_attention_every is not None or self.attention_layer_types is not None):
            what = "global_attention_every" if self.global_attention_every is not None else "attention_layer_types"
            raise ValueError(f"{what} is set but neither attention_window nor attention_chunk is: a layer pattern "
                             "needs a local attention kind")
        if self.global_attention_every is not None and self.attention_layer_types is not None:
            raise ValueError("global_attention_every and attention_layer_types: give one layer pattern, not both")
        if self.global_attention_every is not None and self.global_attention_every > self.num_layers:
            raise ValueError(f"global_attention_every ({self.global_attention_every}) exceeds num_layers "
                             f"({self.num_layers}): the pattern would have no global layer")
        if self.attention_layer_types is not None and len(self.attention_layer_types) != self.num_layers:
            raise ValueError(f"attention_layer_types has {len(self.attention_layer_types)} entries for num_layers "
                             f"({self.num_layers}): give one per layer")
        return self

    @model_validator(mode="after")
    def _heads(self):
        kv = self.kv_heads
        if self.num_heads % kv != 0:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({kv})")
        if self.head_dim is None and self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads}) "
                "unless head_dim is given")
        if self.moe is not None and self.moe.first_dense_layers > self.num_layers:
            raise ValueError(f"moe.first_dense_layers ({self.moe.first_dense_layers}) exceeds num_layers")
        return self

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads if self.num_kv_heads is not None else self.num_heads

    @property
    def dim_per_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    @property
    def trains_with_dropout(self) -> bool:
        """`dropout`, or its default: no dropout for gated-MLP models, dropout for the others."""
        return self.dropout if self.dropout is not None else not self.gated_mlp

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def num_moe_layers(self) -> int:
        """Layers whose FFN is an MoE block."""
        if self.moe is None:
            return 0
        return sum(1 for i in range(self.moe.first_dense_layers, self.num_layers)
                   if (i - self.moe.first_dense_layers) % self.moe.layer_freq == self.moe.layer_freq - 1
                   or self.moe.layer_freq == 1)

    @property
    def attention_layer_kinds(self) -> tuple[str, ...]:
        """Attention kind of each layer: "full" (global causal), "sliding" (attention_window) or "chunked"
        (attention_chunk), by global_attention_every or attention_layer_types (every layer local when neither is
        given)."""
        local = "sliding" if self.attention_window is not None else "chunked" if self.attention_chunk is not None \
            else None
        if local is None:
            return ("full",) * self.num_layers
        if self.attention_layer_types is not None:
            return tuple(local if t == "local" else "full" for t in self.attention_layer_types)
        k = self.global_attention_every
        return tuple("full" if k is not None and (i + 1) % k == 0 else local for i in range(self.num_layers))

    @property
    def attention_layer_counts(self) -> tuple[tuple[str, Optional[int], int], ...]:
        """(kind, window or chunk size (None for full), number of layers) for each kind present, full first."""
        kinds = self.attention_layer_kinds
        size = {"full": None, "sliding": self.attention_window, "chunked": self.attention_chunk}
        return tuple((k, size[k], kinds.count(k)) for k in ("full", "sliding", "chunked") if kinds.count(k))
