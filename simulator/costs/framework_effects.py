"""What the software stack adds to the physics: allocator reserve, attention-kernel speed, FSDP under pipeline
parallelism, and the loss's logits buffers.

Pure functions over numbers and specs (no I/O); the engines call them with the fields of a `FrameworkSpec`
(specs/framework.py). Every function cites its source; the attention table cites a figure per row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..specs.framework import AllocatorSpec
from ..specs.hardware import HardwareProfile

# ---------------------------------------------------------------------------------------------------------------
# Allocator: memory as frameworks report it
# ---------------------------------------------------------------------------------------------------------------


def reserved_bytes(allocated_bytes, utilisation: float, fragmentation_bytes: float = 0.0):
    """Peak memory reserved by a caching allocator for a peak of `allocated_bytes` held by tensors:
    allocated / utilisation + fragmentation.

    Source: SimuMax (MooreThreads/SimuMax simumax/core/perf_llm.py: peak_mem_with_reserved = peak_mem / mem_factor,
    mem_factor 0.94 in simumax/core/config.py); its B200 Megatron measurements (published_runs.csv rows
    simumax-b200-*-mem-alloc / -mem-reserved) give allocated/reserved 0.915-0.973, mean 0.950.
    """
    if not 0.0 < utilisation <= 1.0:
        raise ValueError(f"allocator utilisation {utilisation} must be in (0, 1]")
    return np.asarray(allocated_bytes, dtype=float) / utilisation + fragmentation_bytes


def memory_as_reported_bytes(allocated_bytes, metric: str, allocator: AllocatorSpec,
                             context_bytes_default: float = 0.0):
    """The peak a run's memory figure measures, from the predicted allocated peak.

    `metric`: 'memory_allocated_gb' -> allocated; 'memory_reserved_gb' -> reserved (allocator model);
    'memory_gb' (the source does not say) -> what the framework's own log prints (allocator.memory_report):
    allocated for 'allocated', reserved for 'reserved', 'allocated-and-reserved' and 'unknown' (caching allocators
    report the reserve to device-level tools too), reserved + context for 'device'. `context_bytes_default` stands
    in when the preset leaves context_gb null (the hardware profile's estimate).
    Source: data README sec. 2.6 (the three memory metrics); torch.cuda max_memory_allocated/max_memory_reserved.
    """
    res = reserved_bytes(allocated_bytes, allocator.utilisation, allocator.fragmentation_bytes)
    if metric == "memory_allocated_gb":
        return np.asarray(allocated_bytes, dtype=float)
    if metric == "memory_reserved_gb":
        return res
    if metric != "memory_gb":
        raise ValueError(f"metric '{metric}' is not a memory metric (memory_allocated_gb, memory_reserved_gb, "
                         "memory_gb)")
    if allocator.memory_report == "allocated":
        return np.asarray(allocated_bytes, dtype=float)
    if allocator.memory_report == "device":
        ctx = allocator.context_bytes if allocator.context_bytes is not None else context_bytes_default
        return res + ctx
    return res


# ---------------------------------------------------------------------------------------------------------------
# Attention kernels: a sourced efficiency table
# ---------------------------------------------------------------------------------------------------------------

#: Ratio of backward to forward FLOPs of an attention kernel: 5 matmuls against 2 (the convention of the
#: FlashAttention benchmarks, flash-attention benchmarks/benchmark_flash_attention.py, and of SimuMax).
ATTENTION_BWD_OVER_FWD_FLOPS = 2.5

_FA3_PAPER = ("Shah et al. 2024, FlashAttention-3 (arXiv 2407.08608), H100 80GB SXM5 BF16, seqlen 16k (batch x seqlen "
              "= 16k, hidden 2048): Fig. 5 forward with causal mask (of each head dim's two forward charts, the lower "
              "one), Fig. 6 backward")
_TRITON_PRE_MLIR = ("HazyResearch/flash-attention flash_attn/flash_attn_triton.py at eff9fe6b (copied into llm-foundry "
                    "as llmfoundry/models/layers/flash_attn_triton.py): 'Overall Triton forward + backward is slightly "
                    "slower than CUDA forward + backward' (FlashAttention-1); Dao 2023 (FlashAttention-2, arXiv "
                    "2307.08691): FlashAttention-2 is about 2x FlashAttention-1; FlashAttention-2's H100 bars from "
                    + "Shah et al. 2024 (FlashAttention-3, arXiv 2407.08608) Fig. 5-6, halved")
_FA3_BWD_256 = "; head dim 256 has no backward chart: bwd = fwd x the kernel's head-dim-128 bwd/fwd ratio"


@dataclass(frozen=True)
class AttentionKernelRow:
    """Measured forward and backward speed of one attention kernel on one hardware family at one head dim, at
    long sequences (the plateau), in TFLOP/s of executed work (a causal kernel's FLOPs counted halved)."""

    kernel: str
    family: str
    head_dim: int
    fwd_tflops: float
    bwd_tflops: float
    peak_tflops: float       # the dense bf16/fp16 peak of the measured device
    source: str


ATTENTION_KERNEL_TABLE: tuple[AttentionKernelRow, ...] = (
    # --- Hopper (H100 SXM5, 989 TFLOP/s bf16), FlashAttention-3 paper figures --------------------------------
    AttentionKernelRow("flash-attn-3", "nvidia-hopper", 64, 473, 474, 989, _FA3_PAPER),
    AttentionKernelRow("flash-attn-3", "nvidia-hopper", 128, 616, 561, 989, _FA3_PAPER),
    AttentionKernelRow("flash-attn-3", "nvidia-hopper", 256, 642, 642 * 561 / 616, 989, _FA3_PAPER + _FA3_BWD_256),
    AttentionKernelRow("cudnn-fused", "nvidia-hopper", 64, 388, 433, 989, _FA3_PAPER + " (cuDNN bars)"),
    AttentionKernelRow("cudnn-fused", "nvidia-hopper", 128, 539, 516, 989, _FA3_PAPER + " (cuDNN bars)"),
    AttentionKernelRow("cudnn-fused", "nvidia-hopper", 256, 509, 509 * 516 / 539, 989,
                       _FA3_PAPER + " (cuDNN bars)" + _FA3_BWD_256),
    AttentionKernelRow("flash-attn-2", "nvidia-hopper", 64, 299, 291, 989, _FA3_PAPER + " (FlashAttention-2 bars)"),
    AttentionKernelRow("flash-attn-2", "nvidia-hopper", 128, 335, 322, 989, _FA3_PAPER + " (FlashAttention-2 bars)"),
    AttentionKernelRow("flash-attn-2", "nvidia-hopper", 256, 298, 298 * 322 / 335, 989,
                       _FA3_PAPER + " (FlashAttention-2 bars)" + _FA3_BWD_256),
    AttentionKernelRow("triton", "nvidia-hopper", 64, 363, 363 * 291 / 299, 989,
                       _FA3_PAPER + " (Triton bars, forward only: bwd = fwd x FlashAttention-2's bwd/fwd ratio)"),
    AttentionKernelRow("triton", "nvidia-hopper", 128, 378, 378 * 322 / 335, 989,
                       _FA3_PAPER + " (Triton bars, forward only: bwd = fwd x FlashAttention-2's bwd/fwd ratio)"),
    # The 2022 Triton FlashAttention (flash_attn_triton.py, Triton 2.0.0.dev20221202, pre-MLIR backend; llm-foundry
    # 2023 runs it through the `triton-pre-mlir` sm90 fork): its docstring puts forward + backward "slightly slower"
    # than the CUDA FlashAttention of the time (FlashAttention-1), which the FlashAttention-2 paper measures at about
    # half of FlashAttention-2 (2x speed-up, arXiv 2307.08691 abstract and sec. 4.1). On H100: FlashAttention-2's
    # bars halved.
    AttentionKernelRow("triton-pre-mlir", "nvidia-hopper", 64, 299 / 2, 291 / 2, 989, _TRITON_PRE_MLIR),
    AttentionKernelRow("triton-pre-mlir", "nvidia-hopper", 128, 335 / 2, 322 / 2, 989, _TRITON_PRE_MLIR),
    # --- Ampere (A100 SXM4, 312 TFLOP/s bf16) ------------------------------------------------------------------
    AttentionKernelRow("flash-attn-2", "nvidia-ampere", 128, 0.73 * 312, 0.63 * 312, 312,
                       "Dao 2023, FlashAttention-2 (arXiv 2307.08691), A100 80GB SXM4: up to 73% of the theoretical "
                       "peak forward and 63% backward (abstract, sec. 4.1): the best of its grid (head dims 64/128, "
                       "seqlen 512-16k); causal runs reach a few % less. Cross-check: SimuMax's A100-PCIe Transformer "
                       "Engine measurement (causal, head dim 128, seqlen 4k) gives 59% / 50%"),
    AttentionKernelRow("flash-attn-2", "nvidia-ampere", 64, 0.73 * 312 * 299 / 335, 0.63 * 312 * 291 / 322, 312,
                       "Dao 2023 A100 maxima (head dim 128 row) x FlashAttention-2's head-dim-64 / head-dim-128 ratio "
                       "on H100 (Shah et al. 2024 Fig. 5-6: 299/335 forward, 291/322 backward): a transfer rule"),
    AttentionKernelRow("flash-attn-1", "nvidia-ampere", 128, 0.40 * 312, 0.40 * 312, 312,
                       "Dao 2023 (FlashAttention-2) sec. 1: FlashAttention reaches only 25-40% of the A100's "
                       "theoretical maximum (upper end taken)"),
    # --- Blackwell (B200, 2250 TFLOP/s bf16) -------------------------------------------------------------------
    AttentionKernelRow("cudnn-fused", "nvidia-blackwell", 128, 1.2017567855566 / 2 * 2250, 0.95485601732121 / 2 * 2250,
                       2250,
                       "SimuMax v1.2 B200 system file (shared/data/kernels/simumax/b200_bf16_ceperm.json, sdp_fwd / "
                       "sdp_bwd, Transformer Engine fused attention, causal, batch 1, seqlen 32768, 8 query heads, "
                       "1 kv head): factors 1.2018 / 0.9549 of 2250 under SimuMax's full (non-causal) FLOP count "
                       "(simu_tools/efficency_test/test_fa_efficiency.py: fwd 4*b*s^2*h*d, bwd 2.5x), halved here "
                       "to executed FLOPs"),
    AttentionKernelRow("flash-attn-2", "nvidia-blackwell", 64, 379.44, 333.95, 2250,
                       "Dao-AILab/flash-attention issue #1589 (flash_attn 2.7.4.post1 on B200, "
                       "benchmarks/benchmark_flash_attention.py, head dim 64, seqlen 16384, without causal mask)"),
)


@dataclass(frozen=True)
class AttentionEfficiency:
    """Fractions of the device's bf16 peak an attention kernel reaches (long sequences), and where from."""

    fwd: float
    bwd: float
    source: str

    @property
    def fwd_bwd(self) -> float:
        """Efficiency of forward + backward together: FLOPs (1 + r) over time (1/fwd + r/bwd), r = bwd/fwd FLOPs."""
        r = ATTENTION_BWD_OVER_FWD_FLOPS
        return (1.0 + r) / (1.0 / self.fwd + r / self.bwd)


def _row_efficiency(row: AttentionKernelRow) -> tuple[float, float]:
    return row.fwd_tflops / row.peak_tflops, row.bwd_tflops / row.peak_tflops


def attention_kernel_efficiency(kernel: str, family: str, head_dim: float) -> Optional[AttentionEfficiency]:
    """Forward and backward efficiency of `kernel` on a hardware `family` at `head_dim`, from
    ATTENTION_KERNEL_TABLE; None where the table has no row for the pair (the caller keeps the hardware
    profile's fitted attention efficiency) and for 'unfused' (not a fused kernel: separate GEMMs and softmax).

    Head dims between two tabulated ones are interpolated linearly; outside the tabulated range the nearest row
    applies. The efficiency is relative to the bf16/fp16 peak: fp8/int8/fp4 training runs attention in bf16
    (attention_compute_dtype).
    Source: the row's `source` (FlashAttention-2/-3 papers, SimuMax B200 measurements, flash-attention issue #1589).
    """
    rows = sorted((r for r in ATTENTION_KERNEL_TABLE if r.kernel == kernel and r.family == family),
                  key=lambda r: r.head_dim)
    if not rows:
        return None
    dims = [r.head_dim for r in rows]
    effs = [_row_efficiency(r) for r in rows]
    fwd = float(np.interp(head_dim, dims, [e[0] for e in effs]))
    bwd = float(np.interp(head_dim, dims, [e[1] for e in effs]))
    lo = max((r for r in rows if r.head_dim <= head_dim), default=rows[0], key=lambda r: r.head_dim)
    hi = min((r for r in rows if r.head_dim >= head_dim), default=rows[-1], key=lambda r: r.head_dim)
    where = lo.source if lo is hi else f"interpolated between head dim {lo.head_dim} ({lo.source}) and " \
                                      f"{hi.head_dim} ({hi.source})"
    return AttentionEfficiency(fwd=fwd, bwd=bwd, source=where)


#: The framework kernel name of each measured attention table kernel (simulator/presets/kernels/catalog.yaml).
TABLE_KERNEL_AS_FRAMEWORK = {"flash3": "flash-attn-3", "te": "cudnn-fused"}


def attention_kernel_speed_ratio(kernel: Optional[str], table_kernel: Optional[str], family: str, head_dim: float,
                                 pass_: str) -> float:
    """How fast `kernel` runs one pass ("fwd" or "bwd") relative to the measured table the kernel model costs it
    with (`table_kernel`: the table's kernel, flash3 or te), on a hardware `family` at `head_dim`: the ratio of the
    two kernels' efficiencies in ATTENTION_KERNEL_TABLE. 1 where the kernel is the table's own, or either kernel
    has no row on the family (no measurement to scale by: the table's efficiency stands).

    Source: ATTENTION_KERNEL_TABLE (the same benchmark, e.g. the FlashAttention-3 paper's Fig. 5-6 bars of
    FlashAttention-2, cuDNN, Triton and FlashAttention-3 on one H100, gives their ratios)."""
    ref = TABLE_KERNEL_AS_FRAMEWORK.get(table_kernel or "")
    if kernel is None or ref is None or kernel == ref:
        return 1.0
    mine = attention_kernel_efficiency(kernel, family, head_dim)
    base = attention_kernel_efficiency(ref, family, head_dim)
    if mine is None or base is None:
        return 1.0
    return (mine.fwd / base.fwd) if pass_ == "fwd" else (mine.bwd / base.bwd)


def attention_compute_dtype(train_dtype: str) -> str:
    """The dtype the attention core computes in: bf16 for fp8, int8 and fp4 training, else the training dtype.

    Source: Transformer Engine FP8 recipes quantise the Linear GEMMs only (DotProductAttention stays bf16 unless
    fp8_dpa is set); torchtitan's float8 converter swaps nn.Linear only (models/attention.py runs SDPA on the bf16
    q, k, v); MaxText's int8 (AQT) quantises the dense-layer matmuls while splash attention runs in bf16 (data README
    sec. 2.4: "FP8 GEMMs with BF16 elsewhere").
    """
    return "bf16" if train_dtype in ("fp8", "int8", "fp4") else train_dtype


def attention_peak_flops_per_s(hardware: HardwareProfile, train_dtype: str) -> float:
    """Peak FLOP/s the attention core runs against: the device's peak in attention_compute_dtype(train_dtype)."""
    return hardware.peak_flops_per_s(attention_compute_dtype(train_dtype))


# ---------------------------------------------------------------------------------------------------------------
# FSDP (FSDP2) under pipeline parallelism
# ---------------------------------------------------------------------------------------------------------------

#: FSDP2 mixed precision keeps the sharded parameters in fp32 (4), their gradients in fp32 (4) and Adam's two
#: moments in fp32 (8): 16 bytes per parameter, divided over the shard group. torchtitan: training.dtype float32
#: ("put all parameters ... in" fp32 unless set to bfloat16), mixed_precision_param bfloat16 for compute.
FSDP2_SHARDED_BYTES_PER_PARAM = 16.0


@dataclass(frozen=True)
class FsdpStageMemory:
    """Parameter and gradient memory of one rank of one pipeline stage under FSDP (bytes)."""

    sharded_state_bytes: float      # fp32 parameters, fp32 gradients, Adam m and v, over the shard group
    unsharded_params_bytes: float   # gathered (bf16) parameters held at the peak
    unsharded_grads_bytes: float    # unsharded gradients held at the peak (reduce dtype)

    @property
    def total_bytes(self) -> float:
        return self.sharded_state_bytes + self.unsharded_params_bytes + self.unsharded_grads_bytes


def fsdp_stage_memory(stage_params: float, unit_params: float, dp_shard: int, pp: int, reshard_after_forward: str,
                      grad_accumulation_under_pp: bool, param_bytes: float = 2.0,
                      accumulated_grad_bytes: float = 4.0) -> FsdpStageMemory:
    """Memory of one FSDP rank holding `stage_params` parameters of its pipeline stage, in units (transformer
    blocks) of `unit_params`, sharded over `dp_shard` ranks.

    - Under PP (pp > 1) with reshard_after_forward 'not-under-pp' or 'never', the stage keeps all its parameters
      gathered across micro-batches: stage_params x param_bytes (bf16). Otherwise two units are gathered at a time
      (the one computing and the one prefetched).
    - Under PP with unsharded gradient accumulation, every micro-batch's backward adds into an unsharded gradient
      upcast to the reduce dtype, reduce-scattered once after the last: stage_params x accumulated_grad_bytes.
      Otherwise one unit's gradient waits for its reduce-scatter at a time: unit_params x accumulated_grad_bytes.
    Source: torchtitan distributed/fsdp.py get_fsdp_reshard_after_forward_policy ('default' = not pp_enabled);
    pytorch torch/distributed/pipelining/stage.py backward_maybe_with_nosync (set_reshard_after_backward(False),
    set_requires_gradient_sync(False) per micro-batch); torch/distributed/fsdp/_fully_shard/_fsdp_param.py
    to_accumulated_grad_if_needed (unsharded gradient upcast to reduce_dtype); FSDP2 implicit prefetch.
    """
    if dp_shard < 1 or pp < 1:
        raise ValueError(f"dp_shard ({dp_shard}) and pp ({pp}) must be >= 1")
    sharded = stage_params * FSDP2_SHARDED_BYTES_PER_PARAM / dp_shard
    keep_params = reshard_after_forward == "never" or (reshard_after_forward == "not-under-pp" and pp > 1)
    params = stage_params * param_bytes if keep_params else 2.0 * unit_params * param_bytes
    keep_grads = grad_accumulation_under_pp and pp > 1
    grads = (stage_params if keep_grads else unit_params) * accumulated_grad_bytes
    return FsdpStageMemory(sharded_state_bytes=sharded, unsharded_params_bytes=params, unsharded_grads_bytes=grads)


# ---------------------------------------------------------------------------------------------------------------
# Cross-entropy: the logits' buffers
# ---------------------------------------------------------------------------------------------------------------

#: Bytes per logit element (per vocab-parallel shard) at the loss's peak, by cross-entropy kind (specs.framework).
LOGIT_PEAK_BYTES_PER_ELEMENT = {"fp32-materialized": 6.0, "fused-bf16": 4.0, "inplace-grad": 2.0}


def logits_peak_bytes(tokens, vocab: int, tp: int, cross_entropy: str):
    """Peak memory of the loss's logits buffers for `tokens` tokens on one rank (vocab split over `tp`).

    fp32-materialized (6 B): Megatron upcasts the bf16 logits (logits.float()), keeps the fp32 softmax
    (exp_logits, 4 B) for backward and makes the bf16 gradient (2 B) from it; torchtitan and MaxText cast the
    logits to fp32 the same way. fused-bf16 (4 B): flash-attn's CrossEntropyLoss keeps the bf16 logits and writes a
    new bf16 gradient. inplace-grad (2 B): the gradient overwrites the bf16 logits (inplace_backward=True).
    Source: Megatron-LM megatron/core/tensor_parallel/cross_entropy.py (calculate_logits_max .float(),
    save_for_backward(exp_logits)), megatron/core/fusions/fused_cross_entropy.py (grad_input.to(bfloat16));
    flash-attention flash_attn/losses/cross_entropy.py (inplace_backward); InternEvo internlm/model/loss.py.
    """
    try:
        per = LOGIT_PEAK_BYTES_PER_ELEMENT[cross_entropy]
    except KeyError:
        raise ValueError(f"cross_entropy '{cross_entropy}' must be one of "
                         f"{', '.join(LOGIT_PEAK_BYTES_PER_ELEMENT)}") from None
    return np.asarray(tokens, dtype=float) * vocab / tp * per


def fsdp_unsharded_bytes(stage_params, unit_params, pp, reshard_after_forward: str,
                         grad_accumulation_under_pp: bool, param_bytes: float = 2.0,
                         accumulated_grad_bytes: float = 4.0):
    """(gathered parameter bytes, unsharded gradient bytes) an FSDP rank holds at its peak beyond its shards, as
    arrays over layouts: the vectorised unsharded part of fsdp_stage_memory (same rules, same sources).

    Source: see fsdp_stage_memory (torchtitan get_fsdp_reshard_after_forward_policy; torch.distributed.pipelining
    backward_maybe_with_nosync; FSDP2 to_accumulated_grad_if_needed)."""
    pp = np.asarray(pp, dtype=float)
    keep_params = np.full(pp.shape, reshard_after_forward == "never") | (
        (reshard_after_forward == "not-under-pp") & (pp > 1))
    params = np.where(keep_params, stage_params, 2.0 * unit_params) * param_bytes
    keep_grads = grad_accumulation_under_pp & (pp > 1)
    grads = np.where(keep_grads, stage_params, unit_params) * accumulated_grad_bytes
    return params, grads


def op_sac_saved_elements_per_token(hidden, heads, kv_heads, head_dim, ffn, tp, sp_factor):
    """Elements per token one layer keeps under torchtitan's op-level selective checkpointing: the layer input
    (split by SP), the saved outputs of every second matmul in forward order (wq, wv, w1: q, v and the first MLP
    projection), and the attention (SDPA) output; norms, rope, wk, wo, w3, w2 and the activations are recomputed.

    Source: torchtitan models/llama3/parallelize_llama.py at e7c0cae (_save_list: aten.mm saved except every second
    one, _scaled_dot_product_flash/efficient_attention, reduce_scatter_tensor, max; _custom_policy counts mm per
    layer)."""
    return hidden / sp_factor + (2.0 * heads * head_dim + kv_heads * head_dim + ffn) / tp
