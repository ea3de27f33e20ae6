"""Framework spec: the software stack that runs a training job, as a first-class input.

The same model, layout and devices train at different speeds and memory under Megatron-Core, torchtitan,
DeepSpeed or MaxText. A `FrameworkSpec` says what the stack does where a user states nothing: which attention
kernel runs, which collectives overlap what by default, what "selective" recompute keeps, how FSDP behaves under
pipeline parallelism, how the loss materialises the logits, how much host time a layer pass costs, what the
caching allocator reserves over what tensors need, and how it fills knobs a published run leaves blank.

Every field group carries a `source` (framework code at a named file, documentation, or paper); presets live in
`simulator/presets/frameworks/*.yaml`, one per framework and behaviour era. Fields are the framework's *usual*
setting for a training run (what its documented recipes and launch scripts use), and the `source` says where
that differs from the bare code default. A user or a published run's notes override individual fields.

Units follow the rest of the specs: YAML in human units (`_us`, `_ms`, `_gb`), properties give SI values.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..units import GIGA, MS, US
from .base import Spec

#: Values of the `framework` column of the published-runs schema (data README sec. 2.5), in its order.
FRAMEWORK_COLUMN_VALUES = ("megatron-lm", "megatron-core", "nemo", "megatron-bridge", "megatron-deepspeed",
                           "deepspeed", "torchtitan", "maxtext", "pax", "jax", "llm-foundry", "internevo",
                           "megascale", "mindspeed", "mindspore", "gpt-neox", "metaseq", "in-house", "unknown")
FrameworkColumn = Literal["megatron-lm", "megatron-core", "nemo", "megatron-bridge", "megatron-deepspeed",
                          "deepspeed", "torchtitan", "maxtext", "pax", "jax", "llm-foundry", "internevo",
                          "megascale", "mindspeed", "mindspore", "gpt-neox", "metaseq", "in-house", "unknown"]

#: Attention kernels. `unfused`: QK^T and softmax(.)V as separate batched GEMMs with the s x s scores in HBM
#: (Megatron's fused scale-mask-softmax, XLA einsum attention). `flash-attn-1/2/3`: Dao et al. 2022 / Dao 2023 /
#: Shah et al. 2024 (PyTorch SDPA's flash backend is flash-attn-2). `cudnn-fused`: cuDNN flash attention (Transformer
#: Engine FusedAttention, SDPA's cuDNN backend, JAX cudnn_flash_te). `triton`: Triton flash attention
#: (llm-foundry 2023, the Triton tutorial kernel). `xla-splash`: TPU Pallas splash/flash attention (MaxText
#: attention=flash). `npu-fusion`: Ascend npu_fusion_attention. `hpu-fused`: Gaudi FusedSDPA. `ck-flash`: AMD
#: Composable Kernel flash attention (ROCm).
AttentionKernel = Literal["unfused", "flash-attn-1", "flash-attn-2", "flash-attn-3", "cudnn-fused", "triton",
                          "triton-pre-mlir", "xla-splash", "npu-fusion", "hpu-fused", "ck-flash"]

#: What "selective" recompute keeps. `core-attention`: Megatron's selective recompute, the attention core (softmax,
#: dropout, scores x V) is recomputed (Korthikanti et al. 2022 sec. 4.1). `op-level-sac`: torchtitan's op-level
#: selective checkpointing: every matmul output except every second one, SDPA outputs and reduce-scatters are
#: saved, everything else recomputed. `every-nth-layer`: whole layers checkpointed every n-th (torchtitan
#: selective_ac_option = n). `remat-policy`: a JAX remat policy names the saved tensors (MaxText minimal,
#: save_dot_*, custom). `mlp`: Megatron-Core --recompute-modules mlp: the MLP (MoE: router, dispatch, experts,
#: combine) keeps only its input and replays its forward in the backward. `none`: the framework has no selective
#: mode.
UnfusedSoftmax = Literal["fused-kernel", "torch-fp32"]
SelectiveKind = Literal["core-attention", "op-level-sac", "every-nth-layer", "remat-policy", "mlp", "none"]
#: Tensors a JAX remat policy can save (or offload to host) in a decoder layer, by MaxText's checkpoint names:
#: `qkv_proj` (query_proj, key_proj, value_proj, qkv_proj), `context` (the attention output), `out_proj`, `mlpwi`
#: (mlpwi, mlpwi_0, mlpwi_1), `mlpwo`, `decoder_layer_input` (the scanned layer's input, kept in every policy).
RematTensor = Literal["qkv_proj", "context", "out_proj", "mlpwi", "mlpwo", "decoder_layer_input"]
Recompute = Literal["none", "selective", "full"]
GatherUnit = Literal["layer", "tensor"]
FsdpImpl = Literal["none", "fsdp1", "fsdp2", "deepspeed-zero3", "megatron-fsdp", "gspmd", "internevo-fsdp"]
ReshardPolicy = Literal["always", "never", "not-under-pp"]
CrossEntropyKind = Literal["fp32-materialized", "fused-bf16", "inplace-grad"]
HostMode = Literal["eager", "torch-compile", "cuda-graphs", "xla", "graph-mode"]
#: What a Transformer Engine / Megatron-Core CUDA graph captures per layer (Megatron-Core TransformerConfig
#: cuda_graph_impl 'transformer_engine' with cuda_graph_modules, CudaGraphModule): `attn` (TransformerLayer.
#: _forward_attention: norms, projections, attention core), `mlp` (a dense layer's MLP), `moe_router` (router GEMM,
#: top-k, aux loss), `moe_preprocess` (the dispatcher's metadata: token counts and splits), `moe` (the whole MoE
#: block; only capturable with a capacity factor and padding, static shapes), `full_iteration` (cuda_graph_impl
#: full_iteration: the whole forward-backward step).
CudaGraphScope = Literal["attn", "mlp", "moe_router", "moe_preprocess", "moe", "full_iteration"]
AllocatorKind = Literal["pytorch-caching", "xla", "npu-caching", "hpu"]
MemoryReport = Literal["allocated", "reserved", "allocated-and-reserved", "device", "unknown"]
MicroBatchRule = Literal["fastest-that-fits", "pp-stages", "micro-batch-one"]
#: How context-parallel attention exchanges keys and values. `p2p-ring`: cp - 1 ring steps, each sending one K/V
#: block while the attention of the previous block computes (Megatron-Core --cp-comm-type p2p, Ring Attention);
#: `all-gather`: K and V all-gathered before the attention and their gradients reduce-scattered after it (torch
#: context_parallel rotate method 'allgather', MaxText, Megatron --cp-comm-type all_gather); `all-to-all`:
#: DeepSpeed-Ulysses, heads <-> sequence all-to-alls of q, k, v and the output (Jacobs et al. 2023).
CpExchange = Literal["p2p-ring", "all-gather", "all-to-all"]


class AttentionSpec(Spec):
    """Which attention kernel runs; efficiencies come from the kernel table (costs.framework_effects)."""

    kernel: AttentionKernel = Field(description="kernel on hardware families not named in kernel_by_family")
    kernel_by_family: dict[str, AttentionKernel] = Field(
        default_factory=dict, description="hardware family (profile `family`) -> kernel where it differs, e.g. "
                                          "nvidia-hopper: cudnn-fused")
    unfused_softmax: UnfusedSoftmax = Field(
        "fused-kernel", description="how the s x s softmax runs when attention is unfused: Megatron's fused "
                                    "scale-mask-softmax kernel, or 'torch-fp32': --no-masked-softmax-fusion with "
                                    "--attention-softmax-in-fp32 (cast to fp32, mask, softmax, cast back as torch ops)")
    bwd_over_fwd_by_kernel: dict[AttentionKernel, float] = Field(
        default_factory=dict,
        description="fused-attention kernel -> its backward's executed FLOPs over its forward's where the stack runs "
                    "it otherwise than FlashAttention-2's one fused backward (5 matmuls over the forward's 2: 2.5, "
                    "costs.layer.FLASH_BWD_OVER_FWD), e.g. xla-splash: 3.5 for Pallas splash attention with "
                    "separate dq and dk/dv backward kernels (each recomputes the scores and dP)")
    source: str = Field(min_length=1, description="where the kernel choice comes from")

    @field_validator("bwd_over_fwd_by_kernel")
    @classmethod
    def _bwd_ratio_range(cls, v):
        for k, r in v.items():
            if not 2.0 <= r <= 5.0:
                raise ValueError(f"bwd_over_fwd_by_kernel[{k}] = {r}: must lie in [2, 5] (backward matmuls over the "
                                 f"forward's 2)")
        return v

    def kernel_for(self, family: str) -> AttentionKernel:
        """The kernel this stack runs on a hardware family."""
        return self.kernel_by_family.get(family, self.kernel)

    @property
    def fused(self) -> bool:
        """True when the default kernel keeps no s x s scores in memory (any flash-style kernel)."""
        return self.kernel != "unfused"


class OverlapSpec(Spec):
    """Which collectives the stack hides behind compute by default."""

    tp_comm_overlap: bool = Field(description="TP all-gather/reduce-scatter overlapped with GEMMs "
                                              "(Transformer Engine userbuffers, async TP)")
    dp_grad_reduce_overlap: bool = Field(description="DP gradient all-reduce / reduce-scatter bucketed under the "
                                                     "backward pass (False: after the last micro-batch's backward)")
    dp_param_gather_overlap: bool = Field(description="distributed-optimizer parameter all-gather overlapped with "
                                                      "the next forward (Megatron --overlap-param-gather)")
    tp_overlap_scope: Literal["all", "all-gather"] = Field(
        "all", description="what TP comm overlap hides when it is on: 'all' (the all-gathers and the reduce-scatters "
                           "or all-reduces: Transformer Engine userbuffers, XLA collective matmul decomposing both "
                           "sides); 'all-gather' (XLA --xla_tpu_decompose_all_gather_einsum alone: the all-gather "
                           "half of each TP collective runs under its einsum, the reduce-scatter half stays exposed)")
    tp_bwd_async: bool = Field(False, description="the TP collectives of a column-parallel layer's backward run "
                                                  "asynchronously under its own GEMMs: the input-gradient all-reduce "
                                                  "under the weight-gradient GEMM; with SP, the input all-gather under "
                                                  "the input-gradient GEMM and the reduce-scatter under the weight "
                                                  "gradient (Megatron-LM since 2021-09)")
    pp_p2p_overlap: bool = Field(False, description="interleaved pipelines: the steady 1F1B phase's pipeline sends "
                                                    "run asynchronously under the opposite pass (Megatron "
                                                    "overlap_p2p_comm); warm-up and cool-down sends stay exposed")
    zero3_prefetch: bool = Field(description="ZeRO-3/FSDP gathers the next unit's parameters while this one computes")
    zero3_reduce_blocking_families: tuple[str, ...] = Field(
        (), description="hardware families on which the stack's ZeRO-3/FSDP gradient reduce-scatter blocks the "
                        "backward instead of running beside it (XLA:TPU without a SparseCore or continuation-fusion "
                        "all-reduce); the weight gathers keep their prefetch")
    zero3_reduce_all_reduce: bool = Field(
        False, description="the ZeRO-3/FSDP gradient reduction runs as an all-reduce followed by a dynamic slice (twice "
                           "a reduce-scatter's bytes) instead of a reduce-scatter: XLA:TPU without its reduce-scatter "
                           "fusion flags (MaxText LAYOUT_FOR_ALL_REDUCE_SCATTER / REDUCE_SCATTER_FUSION)")
    zero3_gather_unit: GatherUnit = Field(description="ZeRO-3 gather granularity: one flat gather per layer "
                                                      "(FSDP, coalesced DeepSpeed) or per parameter tensor")
    ep_a2a_overlap: bool = Field(description="MoE all-to-alls hidden behind another micro-batch's compute")
    sp_wgrad_regather: bool = Field(
        False, description="with sequence parallelism the column-parallel linears save only their sequence shard "
                           "and all-gather the input again in the backward for the weight gradient (Megatron-Core / "
                           "Transformer Engine); False: the stack keeps the gathered input")
    source: str = Field(min_length=1)


class RecomputeSpec(Spec):
    """What activation checkpointing means in this stack, and its default."""

    selective: SelectiveKind = Field(description="what the layout value recompute='selective' keeps")
    selective_every_n_layers: Optional[int] = Field(
        None, ge=1, description="for selective='every-nth-layer': checkpoint one layer in n")
    saved: Optional[tuple[RematTensor, ...]] = Field(
        None, description="for selective='remat-policy': the tensors the policy saves or offloads; the backward "
                          "recomputes every other forward op it needs (costs.layer.recompute_pass_s). None: the "
                          "attention core only (Megatron-style selective)")
    default: Recompute = Field(description="the code default: what runs when no recompute flag is given")
    replayed_modules: tuple[Literal["layernorm", "moe_act", "mla_up_proj"], ...] = Field(
        (), description="small modules replayed in the backward under any layout recompute setting but 'full' "
                        "(Megatron-Core --recompute-modules layernorm / moe_act / mla_up_proj: the separate pre-MLP "
                        "norm, the routed experts' activation and MLA's up-projections with their RoPE, "
                        "checkpointed without their outputs); () none")
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _every_n(self):
        if (self.selective == "every-nth-layer") != (self.selective_every_n_layers is not None):
            raise ValueError(f"selective_every_n_layers ({self.selective_every_n_layers}) must be set exactly when "
                             f"selective is 'every-nth-layer' (selective = '{self.selective}')")
        if self.saved is not None and self.selective != "remat-policy":
            raise ValueError(f"saved ({list(self.saved)}) applies only to selective 'remat-policy' "
                             f"(selective = '{self.selective}')")
        return self


class FsdpSpec(Spec):
    """Weight sharding (ZeRO-3 / FSDP) semantics, in particular under pipeline parallelism."""

    implementation: FsdpImpl = Field(description="the stack's ZeRO-3 implementation ('none' if it has none)")
    reshard_after_forward: ReshardPolicy = Field(
        description="free the gathered parameters after a unit's forward: always, never, or not under PP "
                    "(torchtitan's default: with PP the stage keeps them for all micro-batches)")
    unsharded_grad_accumulation_under_pp: bool = Field(
        description="under PP the stage accumulates unsharded gradients across micro-batches and reduce-scatters "
                    "once after the last (torch.distributed.pipelining with FSDP2)")
    accumulated_grad_bytes: float = Field(4.0, gt=0, description="bytes per element of accumulated gradients "
                                                                 "(fp32 reduce dtype: 4)")
    prefetch_bucket_params: Optional[float] = Field(
        None, ge=0, description="DeepSpeed stage3_prefetch_bucket_size: parameters gathered ahead of the submodule "
                                "computing (whole tensors until reached); null: FSDP semantics, the next unit")
    max_live_params: Optional[float] = Field(
        None, ge=0, description="DeepSpeed stage3_max_live_parameters: no prefetch beyond this many gathered "
                                "parameters; null: no limit (FSDP)")
    source: str = Field(min_length=1)


class LossSpec(Spec):
    """How the loss materialises the logits."""

    cross_entropy: CrossEntropyKind = Field(
        description="fp32-materialized: an fp32 softmax of the (vocab-parallel) logits is kept for backward and "
                    "its bf16 gradient is made from it (6 bytes per logit at the peak); fused-bf16: a fused kernel "
                    "keeps the bf16 logits and writes a new bf16 gradient (4 bytes); inplace-grad: the gradient "
                    "overwrites the bf16 logits (2 bytes)")
    source: str = Field(min_length=1)


class HostTimeSpec(Spec):
    """Host (CPU, launch, framework) time: how kernels are launched and what that costs."""

    mode: HostMode = Field(description="eager launches per op; torch-compile fuses; cuda-graphs replays captured "
                                       "graphs; xla / graph-mode compile the step")
    layer_overhead_us: Optional[float] = Field(
        None, ge=0, description="host time per layer pass; a pass takes max(device time, this). null: not "
                                "published, the calibrated hardware-profile value applies")
    micro_batch_overhead_us: Optional[float] = Field(
        None, ge=0, description="host time per micro-batch outside the layers (schedule, send/recv, loss); null: "
                                "not published")
    step_overhead_ms: Optional[float] = Field(None, ge=0, description="fixed time per step; null: not published")
    kernel_host_us: Optional[float] = Field(
        None, ge=0, le=1000,
        description="host (CPU) time to dispatch one kernel in eager mode (Python module, autograd, dispatcher, "
                    "driver launch), us; the kernel-count host model (costs.host) prices a layer pass from it. null: "
                    "no kernel-count model (the layer_overhead_us floor alone)")
    cuda_graph_scope: tuple[CudaGraphScope, ...] = Field(
        (), description="parts of each layer replayed from CUDA graphs (one graph launch each instead of their "
                        "kernels); empty: everything launched eagerly")
    source: str = Field(min_length=1)

    @field_validator("cuda_graph_scope")
    @classmethod
    def _scope(cls, v):
        if len(set(v)) != len(v):
            raise ValueError(f"cuda_graph_scope {list(v)} names a scope twice")
        return tuple(v)

    @property
    def kernel_host_s(self) -> Optional[float]:
        return None if self.kernel_host_us is None else self.kernel_host_us * US

    @property
    def layer_overhead_s(self) -> Optional[float]:
        return None if self.layer_overhead_us is None else self.layer_overhead_us * US

    @property
    def step_overhead_s(self) -> Optional[float]:
        return None if self.step_overhead_ms is None else self.step_overhead_ms * MS


class AllocatorSpec(Spec):
    """Memory as the framework reports it: reserved = allocated / utilisation + fragmentation."""

    kind: AllocatorKind
    utilisation: float = Field(gt=0, le=1, description="peak allocated / peak reserved of the caching allocator")
    fragmentation_gb: float = Field(0.0, ge=0, description="reserved memory beyond allocated / utilisation, GB")
    context_gb: Optional[float] = Field(
        None, ge=0, description="device memory outside the allocator (runtime context, communicator buffers), GB; "
                                "counted only in 'device' reports; null: the hardware profile's estimate applies")
    memory_report: MemoryReport = Field(description="what the framework's own memory log prints: the allocated "
                                                    "peak, the reserved peak, both, whole-device use, or not stated")
    report_unit: Literal["GB", "GiB"] = Field(
        "GB", description="unit of that usual report; a memory_gb row (unit not stated by its source) is read in it")
    source: str = Field(min_length=1)

    @property
    def fragmentation_bytes(self) -> float:
        return self.fragmentation_gb * GIGA

    @property
    def context_bytes(self) -> Optional[float]:
        return None if self.context_gb is None else self.context_gb * GIGA


_MEGATRON_CP_SOURCE = ("Megatron-Core context parallelism: --cp-comm-type defaults to p2p (megatron/core/transformer/"
                       "transformer_config.py cp_comm_type); the sequence is cut into 2 x cp chunks and rank i holds "
                       "chunks i and 2cp-1-i so causal work is balanced (megatron/core/utils.py "
                       "get_batch_on_this_cp_rank)")


class ContextParallelSpec(Spec):
    """How context-parallel attention runs: its K/V exchange and whether causal work is balanced over the ranks."""

    exchange: CpExchange = Field("p2p-ring", description="K/V exchange of context-parallel attention")
    load_balanced: bool = Field(True, description="causal work balanced over the CP ranks (zig-zag / head-tail "
                                                   "sharding); False: rank i of cp holds the i-th contiguous block "
                                                   "and the last rank does cp causal blocks to the first's one")
    source: str = Field(_MEGATRON_CP_SOURCE, min_length=1)


MoeDispatch = Literal["permute", "dense-einsum"]


class MoeDispatchSpec(Spec):
    """How routed tokens reach the experts. `permute`: tokens are sorted/gathered into per-expert buffers (Megatron
    token permutation, MaxText sparse_matmul with megablox), memory-bound. `dense-einsum`: one-hot dispatch and
    combine masks applied as einsums per sequence, "BSM,BSEC->EBCM" and "EBCM,BSEC->BSM" (GShard; MaxText's
    dropping path with sparse_matmul false), each 2 x S x E x C x M matmul FLOPs per sequence, C = capacity."""

    dispatch: MoeDispatch = Field("permute", description="permute (sort/gather) or dense-einsum (one-hot masks)")
    dense_group: Literal["sequence", "micro-batch"] = Field(
        "sequence", description="the token group S a dense-einsum dispatch builds its masks over: each sequence "
                                "(MaxText) or every token of the rank's micro-batch at once (DeepSpeed-MoE)")
    gate_passes: Literal["fused", "eager-fp32"] = Field(
        "fused",
        description="how a dense-einsum gate materialises its one-hot tensors: 'fused' (a compiler fuses the mask "
                    "construction and casts into the einsums' operands; no separate memory passes counted: MaxText/"
                    "XLA) or 'eager-fp32' (PyTorch eager kernels over [S, E] and [S, E, C] with the softmax and the "
                    "combine tensor in fp32, cast to the activation dtype for the einsums: DeepSpeed top1gating/"
                    "top2gating, costs.dense_dispatch.gate_stream_bytes)")
    grouped_gemm_tile_rows: Optional[int] = Field(
        None, ge=1, le=65536,
        description="row tile of a grouped-GEMM kernel that visits a row tile once per group it holds (Pallas "
                    "megablox gmm/tgmm: ceil(m/tm) + groups - 1 tile visits, each a full tile of MXU work); null: "
                    "per-group GEMMs padded only to the device's matrix unit (cuBLAS/CUTLASS grouped GEMMs)")
    overlap_comm_sms: int = Field(
        0, ge=0, le=1024,
        description="streaming multiprocessors (compute units) the EP dispatch/combine kernels hold while they run "
                    "beside another micro-batch's compute (overlapped all-to-all): that compute runs at (1 - sms / "
                    "the device's compute units) of its rate for the overlapped span "
                    "(costs.communication.ep_overlap_exposed_s); 0: the communication takes no compute units")
    probs_all_to_all: bool = Field(
        False,
        description="a sort-based dispatch over the EP group sends the routed copies' probabilities (one fp32 value "
                    "per copy) in an all-to-all of their own after the tokens' (Megatron-Core "
                    "MoEAlltoAllTokenDispatcher.token_dispatch), and its gradient back in the backward; false: the "
                    "probabilities stay on the sending rank or ride in the dispatch kernel (DeepEP/HybridEP)")
    permute_gathered_over_tp: bool = Field(
        False,
        description="the sender-side permute (sort of the tokens by expert and the gather of their k copies) runs "
                    "on the whole TP group's tokens, gathered over the TP ranks (MaxText sparse_matmul: shard_map "
                    "input replicated over 'tensor'), not on each rank's 1/tp share; the unpermute still runs on "
                    "the reduce-scattered h/tp columns. False: every permutation on the rank's tokens / tp "
                    "(Megatron-Core with sequence parallelism)")
    flex_backend: Literal["deepep", "hybridep"] = Field(
        "deepep",
        description="kernels of a node-limited dispatch (layout moe_dispatch node-limited; Megatron-Core "
                    "--moe-flex-dispatcher-backend): deepep (DeepEP normal kernels, which reach the network tier's "
                    "bandwidth) or hybridep (NVIDIA HybridEP, whose torch-API dispatch reaches less of it across "
                    "nodes: topology.moe_dispatch.hybridep_network_scale)")
    source: str = Field("Megatron-Core token permutation (moe/moe_utils.py permute)", min_length=1)


class DefaultsSpec(Spec):
    """How the stack fills what a run leaves open (the blank-field policy)."""

    micro_batch_rule: MicroBatchRule = Field(
        description="how an unstated micro-batch is filled: fastest-that-fits (the framework needs it stated, so a "
                    "blank cell is searched as its authors would tune it); pp-stages (the local batch is split into "
                    "as many micro-batches as pipeline stages); micro-batch-one (micro-batch size 1 under PP)")
    vpp: Optional[int] = Field(None, ge=1, description="interleaving when unstated (null: search)")
    sequence_parallel_with_tp: Optional[bool] = Field(
        None, description="sequence parallelism when TP > 1 and unstated (null: search)")
    zero_stage: Optional[int] = Field(None, ge=0, le=3, description="ZeRO stage when unstated (null: search)")
    recompute: Optional[Recompute] = Field(None, description="recompute when unstated (null: search)")
    fp16_grads_in_fp32: bool = Field(True, description="fp16 runs accumulate and reduce gradients in fp32 (False: in "
                                                       "fp16, Megatron-LM's default before Megatron-Core without "
                                                       "--accumulate-allreduce-grads-in-fp32)")
    source: str = Field(min_length=1)


#: Weight-gradient buffers beyond the gradients themselves. `none`; `linear`: Transformer Engine (>= 2.3) with
#: gradient-accumulation fusion returns a cached dummy weight gradient per distinct weight shape of its Linear
#: modules (the real gradient goes into main_grad), kept for the whole run; `linear-and-grouped`: also its
#: GroupedLinear (MoE experts, TE >= 2.10), one per expert weight shape. Megatron's own output layer returns a
#: weight-sized dummy in the same way during its backward, at the activation peak.
WgradDummy = Literal["none", "linear", "linear-and-grouped"]


class BuffersSpec(Spec):
    """Buffers the stack keeps beyond model states and activations."""

    wgrad_dummy: WgradDummy = Field("none", description="cached dummy weight gradients (activation dtype), one per "
                                                        "distinct weight shape of the rank's linear layers")
    optimizer_grad_copy_bytes: float = Field(
        0.0, ge=0, description="bytes per optimizer-shard parameter that the optimizer step holds beyond the model "
                               "states as counted (weights, gradients at the training gradient dtype, optimizer "
                               "state): gradient copies made for the step (InternEvo: a flat bf16 copy and its fp32 "
                               "cast). They exist after the backward pass, when the activations are freed, so the "
                               "peak is the larger of the two")
    grad_buffer_passes: bool = Field(
        True, description="the optimizer step also streams the persistent gradient buffer: zeroes it each iteration "
                          "and scales it by 1/dp in place before the data-parallel reduction (Megatron-Core "
                          "param_and_grad_buffer.py, PyTorch DDP/FSDP, DeepSpeed); false for functional stacks "
                          "(JAX) whose gradients are fresh values averaged by the loss (costs.optimizer)")
    grad_average_pass: bool = Field(
        True, description="the gradient buffer is scaled by 1/dp in place before the data-parallel reduction "
                          "(Megatron-Core average_in_collective False, its default); false where the collective "
                          "averages (ReduceOp.AVG)")
    grad_check_pass: bool = Field(
        False, description="a NaN/Inf check reads the whole gradient buffer (a norm per bucket) before the "
                           "reduction (Megatron-Core DDP check_for_nan_in_grad)")
    source: str = Field("not modelled: no buffer beyond the model states and activations", min_length=1)


class FusionSpec(Spec):
    """Elementwise kernels the stack fuses (costs.layer.elementwise_s counts the bytes they move)."""

    bias_dropout_add: bool = Field(
        False, description="dropout (with the preceding bias add) and the residual add run as one kernel that reads "
                           "the branch output and the residual and writes the sum and a 1-byte dropout mask "
                           "(Megatron's bias_dropout_add_fused_train), instead of a dropout kernel and an add kernel")
    glu_clamp: Literal["fused", "eager"] = Field(
        "fused", description="a clamped GLU (ModelSpec.glu_clamp): 'eager' clamps the gate and linear halves and "
                             "concatenates them with separate PyTorch kernels (autograd-tracked) before the fused "
                             "activation; 'fused': inside the activation kernel (no extra traffic)")
    expert_bias: Literal["fused", "eager-per-expert"] = Field(
        "fused", description="the routed experts' output (fc2) bias (ModelSpec.linear_bias): 'eager-per-expert' "
                             "adds bias x routing probability per local expert with PyTorch ops and concatenates "
                             "the chunks; 'fused': in the GEMM epilogue")
    scaled_rope: Literal["fused", "eager"] = Field(
        "fused", description="RoPE with a YaRN attention temperature (ModelSpec.yarn_mscale != 1): "
                             "'eager' runs the unfused PyTorch rotary (rotate-half, two products, a sum, "
                             "concatenations) on q and k; 'fused': a fused RoPE kernel like plain RoPE")
    source: str = Field("not stated: separate dropout and residual-add kernels assumed", min_length=1)


class FrameworkSpec(Spec):
    """One training stack in one behaviour era. See the module docstring."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", description="preset name, e.g. megatron-core, deepspeed-2020")
    framework: FrameworkColumn = Field(description="the published-runs `framework` column value it stands for")
    version: str = Field(min_length=1, description="versions / commits / containers this preset describes")
    years: tuple[int, Optional[int]] = Field(description="[first, last] year of runs it describes; last null = open")
    description: str = Field(min_length=1)
    source: str = Field(min_length=1, description="main references for the preset as a whole")
    attention: AttentionSpec
    overlap: OverlapSpec
    recompute: RecomputeSpec
    fsdp: FsdpSpec
    loss: LossSpec
    host: HostTimeSpec
    allocator: AllocatorSpec
    defaults: DefaultsSpec
    context_parallel: ContextParallelSpec = Field(default_factory=ContextParallelSpec)
    buffers: BuffersSpec = Field(default_factory=BuffersSpec)
    moe: MoeDispatchSpec = Field(default_factory=MoeDispatchSpec)
    fusions: FusionSpec = Field(default_factory=FusionSpec)
    notes: str = ""

    @field_validator("years")
    @classmethod
    def _years(cls, v):
        first, last = v
        if not 2015 <= first <= 2100:
            raise ValueError(f"first year {first} must be in 2015-2100")
        if last is not None and last < first:
            raise ValueError(f"last year {last} is before the first year {first}")
        return v

    def covers_year(self, year: int) -> bool:
        """True if runs of `year` fall in this preset's era."""
        first, last = self.years
        return year >= first and (last is None or year <= last)
