"""Parameter and FLOP counts of a decoder-only transformer.

Conventions (one definition each):
- A multiply-add is 2 FLOPs. Backward = 2 x forward (Narayanan et al. 2021, sec. 5.1).
- Attention scores and values are counted over the full s x s matrix (non-causal), as Megatron's eq. 3 and
  PaLM App. B do; causal flash-attention kernels execute about half of it, which the compute-time model uses
  (`attention_executed_fraction`); simulator.metrics counts the causal half for MFU (this full count stays the
  convention `validate` applies to published figures that state it).
- Model FLOPs (MFU) exclude recomputation; hardware FLOPs (HFU) include it (Chowdhery et al. 2022, App. B).
- Logits (the output layer) are counted; the input embedding lookup is not a matmul and is free.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.model import ModelSpec


def attention_params(m: ModelSpec) -> int:
    """Weights of one attention block (q, k, v, o projections; MLA's low-rank factors when present).

    Source: Vaswani et al. 2017; GQA (Ainslie et al. 2023) shares k/v over head groups; MLA per DeepSeek-V2
    (arXiv 2405.04434, eqs. 9-14).
    """
    h, a = m.hidden_size, m.num_heads
    if m.mla is not None:
        c = m.mla
        qk = c.qk_nope_head_dim + c.qk_rope_head_dim
        q = h * a * qk if c.q_lora_rank is None else h * c.q_lora_rank + c.q_lora_rank * a * qk
        kv = h * (c.kv_lora_rank + c.qk_rope_head_dim) + c.kv_lora_rank * a * (c.qk_nope_head_dim + c.v_head_dim)
        o = a * c.v_head_dim * h
        return q + kv + o
    d = m.dim_per_head
    return h * a * d + 2 * h * m.kv_heads * d + a * d * h


def attention_core_flops_per_token(m: ModelSpec, seq_len: int) -> float:
    """Forward FLOPs of QK^T and attention x V per token (full, non-causal s x s): 2*s*a*(d_qk + d_v)."""
    if m.mla is not None:
        c = m.mla
        d_qk, d_v = c.qk_nope_head_dim + c.qk_rope_head_dim, c.v_head_dim
    else:
        d_qk = d_v = m.dim_per_head
    return 2.0 * seq_len * m.num_heads * (d_qk + d_v)


def param_tensors_per_layer(m: ModelSpec) -> int:
    """Parameter tensors of one transformer layer as a framework holds them (Megatron-LM module layout): two
    norms and four linear layers (fused QKV, output projection, fused gate/up or fc1, fc2). GPT-style layers
    (two-matrix MLP: GPT-2/3, Megatron GPT, Radford et al. 2019) carry a bias on each of them: 12 tensors;
    Llama-style layers (gated MLP, RMSNorm, no biases; Touvron et al. 2023) carry 6. A framework that gathers
    ZeRO-3 weights tensor by tensor pays one collective latency per tensor."""
    return 6 if m.gated_mlp else 12


def mlp_params(hidden: int, ffn: int, gated: bool) -> int:
    """Weights of one MLP: 2 matrices (GELU) or 3 (SwiGLU/GeGLU), biases ignored."""
    return (3 if gated else 2) * hidden * ffn


@dataclass(frozen=True)
class ModelCosts:
    """Per-layer, per-token figures of one model at one sequence length (scalars; engines vectorize over layouts)."""

    num_layers: int
    num_moe_layers: int
    attn_params: int              # per layer
    dense_mlp_params: int         # per dense layer
    expert_params: int            # one routed expert
    num_experts: int
    top_k: int
    shared_expert_params: int     # all shared experts of one MoE layer
    router_params: int
    embedding_params: int         # V*h (input)
    output_params: int            # V*h (logits; 0 extra storage when tied)
    attn_core_flops_per_token: float  # forward, per layer, full s x s
    norm_params_per_layer: int

    # ---- parameters -------------------------------------------------------------------------------------
    @property
    def moe_layer_params(self) -> int:
        return self.attn_params + self.router_params + self.num_experts * self.expert_params \
            + self.shared_expert_params + self.norm_params_per_layer

    @property
    def dense_layer_params(self) -> int:
        return self.attn_params + self.dense_mlp_params + self.norm_params_per_layer

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    def total_params(self, tied_embeddings: bool) -> int:
        out = 0 if tied_embeddings else self.output_params
        return self.num_dense_layers * self.dense_layer_params + self.num_moe_layers * self.moe_layer_params \
            + self.embedding_params + out

    # ---- FLOPs ------------------------------------------------------------------------------------------
    @property
    def dense_layer_matmul_flops_per_token(self) -> float:
        """Forward GEMM FLOPs per token of a dense layer: 2 x its weights."""
        return 2.0 * (self.attn_params + self.dense_mlp_params)

    @property
    def moe_layer_matmul_flops_per_token(self) -> float:
        """Forward GEMM FLOPs per token of an MoE layer: router + top-k routed + shared experts."""
        return 2.0 * (self.attn_params + self.router_params + self.top_k * self.expert_params
                      + self.shared_expert_params)

    @property
    def mean_layer_matmul_flops_per_token(self) -> float:
        """Forward GEMM FLOPs per token averaged over all layers (dense and MoE)."""
        L = self.num_layers
        return (self.num_dense_layers * self.dense_layer_matmul_flops_per_token
                + self.num_moe_layers * self.moe_layer_matmul_flops_per_token) / L

    @property
    def mean_layer_flops_per_token(self) -> float:
        """Forward FLOPs per token per layer (GEMMs + attention core), averaged over layers."""
        return self.mean_layer_matmul_flops_per_token + self.attn_core_flops_per_token

    @property
    def logits_flops_per_token(self) -> float:
        return 2.0 * self.output_params

    def model_flops_per_token(self) -> float:
        """Training FLOPs per token without recompute: 3 x forward (fwd + 2x bwd) of all layers and logits."""
        return 3.0 * (self.num_layers * self.mean_layer_flops_per_token + self.logits_flops_per_token)

    def recompute_flops_per_token(self, recompute: str) -> float:
        """Extra forward FLOPs per token spent recomputing activations.

        full: every layer's forward again (not the logits); selective: the attention core only
        (Korthikanti et al. 2022, sec. 5).
        """
        if recompute == "full":
            return self.num_layers * self.mean_layer_flops_per_token
        if recompute == "selective":
            return self.num_layers * self.attn_core_flops_per_token
        return 0.0


def model_costs(m: ModelSpec, seq_len: int) -> ModelCosts:
    """Per-layer parameter and FLOP figures of `m` at `seq_len`."""
    h = m.hidden_size
    moe = m.moe
    if moe is not None:
        expert = mlp_params(h, moe.expert_ffn_hidden_size, m.gated_mlp)
        shared_w = moe.shared_expert_ffn_hidden_size or moe.expert_ffn_hidden_size
        shared = moe.num_shared_experts * mlp_params(h, shared_w, m.gated_mlp)
        router, E, k = h * moe.num_experts, moe.num_experts, moe.top_k
    else:
        expert = shared = router = 0
        E, k = 0, 0
    return ModelCosts(
        num_layers=m.num_layers,
        num_moe_layers=m.num_moe_layers,
        attn_params=attention_params(m),
        dense_mlp_params=mlp_params(h, m.ffn_hidden_size, m.gated_mlp),
        expert_params=expert,
        num_experts=E,
        top_k=k,
        shared_expert_params=shared,
        router_params=router,
        embedding_params=m.vocab_size * h,
        output_params=m.vocab_size * h,
        attn_core_flops_per_token=attention_core_flops_per_token(m, seq_len),
        norm_params_per_layer=2 * h,
    )


def megatron_eq3_flops(batch: int, seq_len: int, layers: int, hidden: int, vocab: int) -> float:
    """FLOPs per step of a GPT model with full recompute, Narayanan et al. 2021, eq. 3:
    96 B s l h^2 (1 + s/(6h) + V/(16 l h))."""
    B, s, l, h, V = batch, seq_len, layers, hidden, vocab
    return 96.0 * B * s * l * h * h * (1.0 + s / (6.0 * h) + V / (16.0 * l * h))
