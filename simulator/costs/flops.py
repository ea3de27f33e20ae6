"""Parameter and FLOP counts of a decoder-only transformer.

Conventions (one definition each):
- A multiply-add is 2 FLOPs. Backward = 2 x forward (Narayanan et al. 2021, sec. 5.1).
- Attention scores and values are counted over the full s x s matrix (non-causal), as Megatron's eq. 3 and
  PaLM App. B do; causal flash-attention kernels execute about half of it, which the compute-time model uses
  (`attention_executed_fraction`); simulator.metrics counts the causal half for MFU (this full count stays the
  convention `validate` applies to published figures that state it).
- Model FLOPs (MFU) exclude recomputation; hardware FLOPs (HFU) include it (Chowdhery et al. 2022, App. B).
- Logits (the output layer) are counted; the input embedding lookup is not a matmul and is free.
- Sliding-window and chunked (local) attention layers: the model FLOPs count the (query, key) pairs the mask
  keeps (`causal_attention_pairs`), as a share of the causal pairs (`ModelCosts.attn_causal_fraction`), which
  scales the causal half; the full s x s figure above stays the full-matrix convention for every layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

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


def causal_attention_pairs(seq_len: int, window: Optional[int] = None, chunk: Optional[int] = None) -> float:
    """(query, key) pairs one head's causal attention scores over a sequence of S tokens.

    Full causal: query i sees keys 0..i, sum_{i<S} (i + 1) = S (S + 1) / 2.
    Sliding window W (query i sees keys max(0, i - W + 1)..i, itself included): sum_{i<S} min(i + 1, W)
    = W (W + 1) / 2 + (S - W) W = S W - W (W - 1) / 2 for W < S (the first W queries fill the window, the other
    S - W see W keys each), the full causal count for W >= S.
    Chunked C (query i sees keys floor(i / C) C..i): n = S // C full chunks of C (C + 1) / 2 pairs and a last one
    of r = S - n C tokens, n C (C + 1) / 2 + r (r + 1) / 2; the full causal count for C >= S.

    Source: Beltagy et al. 2020 (Longformer, arXiv 2004.05150) sec. 3.1 (sliding window: O(S W)); Megatron-Bridge
    src/megatron/bridge/training/utils/flop_utils.py (the same closed form, "exact average causal SWA context");
    Hugging Face transformers masking_utils (sliding_window_causal: kv_idx > q_idx - W; chunked_causal:
    kv_idx // C == q_idx // C)."""
    S = int(seq_len)
    if window is not None and window < S:
        W = int(window)
        return W * (W + 1) / 2.0 + (S - W) * float(W)
    if chunk is not None and chunk < S:
        n, r = divmod(S, int(chunk))
        return n * chunk * (chunk + 1) / 2.0 + r * (r + 1) / 2.0
    return S * (S + 1) / 2.0


def attention_tiles(seq_len: int, tile: int, window: Optional[int] = None, chunk: Optional[int] = None) -> float:
    """(query tile, key tile) blocks of `tile` x `tile` that hold at least one kept pair: the blocks a fused
    attention kernel that skips fully masked blocks executes. Query block q covers rows [q T, min((q + 1) T, S)),
    whose keys span [lo, last row] with lo = 0 (causal), the window's first key of the first row (sliding) or the
    start of the first row's chunk (chunked); the block runs the key tiles lo // T .. last // T.

    Source: Dao 2023 (FlashAttention-2, arXiv 2307.08691) sec. 3.1 (blocks where the mask is all zero are skipped);
    FlashAttention's flash_fwd_kernel / mask.h local (window_size_left) masking by block."""
    S, T = int(seq_len), int(tile)
    q_lo = np.arange(0, S, T, dtype=np.int64)
    q_hi = np.minimum(q_lo + T, S) - 1
    if window is not None and window < S:
        lo = np.maximum(0, q_lo - int(window) + 1)
    elif chunk is not None and chunk < S:
        lo = (q_lo // int(chunk)) * int(chunk)
    else:
        lo = np.zeros_like(q_lo)
    return float(np.sum(q_hi // T - lo // T + 1))


def attention_layer_fractions(m: ModelSpec, seq_len: int) -> tuple[float, float]:
    """(attended pairs over the causal pairs, the windowed/chunked non-causal s x min(W, s) count over s^2),
    averaged over the model's layers; (1, 1) for a model of full-attention layers only.

    The first is trainsim's model-FLOPs share (module docstring). The second is the count MaxText reports for
    windowed layers (maxtext_utils.py calculate_mixed_attention_model_tflops_training_per_device: 4 b s min(W, s)
    h d per local layer; _calculate_chunked_attention_flops_per_layer: the squares of the chunk lengths), which its
    causal convention then halves; published figures under the 6N+attn conventions use it.

    Source: causal_attention_pairs; AI-Hypercomputer/maxtext src/MaxText/maxtext_utils.py."""
    S = int(seq_len)
    full = causal_attention_pairs(S)
    kept = noncausal = 0.0
    for kind, size, n in m.attention_layer_counts:
        if kind == "sliding":
            kept += n * causal_attention_pairs(S, window=size)
            noncausal += n * min(size, S) / S
        elif kind == "chunked":
            kept += n * causal_attention_pairs(S, chunk=size)
            c = min(size, S)
            noncausal += n * ((S // c) * c * c + (S % c) ** 2) / (S * S)
        else:
            kept += n * full
            noncausal += n
    return kept / full / m.num_layers, noncausal / m.num_layers


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
    attn_causal_fraction: float = 1.0     # attended (query, key) pairs over the causal pairs, mean of the layers
    attn_noncausal_fraction: float = 1.0  # MaxText's windowed s x min(W, s) count over s^2, mean of the layers
    attn_layer_counts: tuple = ()         # (kind, window/chunk, layers) of ModelSpec.attention_layer_counts
    seq_len: int = 0

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
    causal_frac, noncausal_frac = attention_layer_fractions(m, seq_len)
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
        attn_causal_fraction=causal_frac,
        attn_noncausal_fraction=noncausal_frac,
        attn_layer_counts=m.attention_layer_counts,
        seq_len=int(seq_len),
    )


def attention_kind_shapes(costs: ModelCosts, tile: int) -> tuple[tuple[float, float, float], ...]:
    """(share of the layers, executed tiles over the causal kernel's, mean keys per query row) of each attention
    kind of the model (full layers: share, 1, (S + 1) / 2).

    Source: attention_tiles, causal_attention_pairs."""
    S, L = costs.seq_len, float(costs.num_layers)
    causal = attention_tiles(S, tile)
    out = []
    for kind, size, n in costs.attn_layer_counts:
        w, ch = (size, None) if kind == "sliding" else (None, size) if kind == "chunked" else (None, None)
        out.append((n / L, attention_tiles(S, tile, window=w, chunk=ch) / causal,
                    causal_attention_pairs(S, window=w, chunk=ch) / S))
    return tuple(out)


def attention_tile_fraction(costs: ModelCosts, tile: int) -> float:
    """Executed attention tiles of the model's layers over those of full causal attention on every layer (1 when
    every layer is full): the share of a causal fused kernel's work that windowed/chunked kernels run.

    Source: attention_kind_shapes."""
    if all(kind == "full" for kind, _, _ in costs.attn_layer_counts) or costs.seq_len <= 0:
        return 1.0
    return sum(share * tiles for share, tiles, _ in attention_kind_shapes(costs, tile))


def megatron_eq3_flops(batch: int, seq_len: int, layers: int, hidden: int, vocab: int) -> float:
    """FLOPs per step of a GPT model with full recompute, Narayanan et al. 2021, eq. 3:
    96 B s l h^2 (1 + s/(6h) + V/(16 l h))."""
    B, s, l, h, V = batch, seq_len, layers, hidden, vocab
    return 96.0 * B * s * l * h * h * (1.0 + s / (6.0 * h) + V / (16.0 * l * h))
