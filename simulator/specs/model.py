"""Transformer model spec: dense GPT/Llama (MHA, GQA, MQA, SwiGLU) and MoE (routed + shared experts),
with optional multi-head latent attention (MLA, DeepSeek-V2/V3)."""
from __future__ import annotations

from typing import Optional

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
    notes: str = Field("", max_length=MAX_TEXT)

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
