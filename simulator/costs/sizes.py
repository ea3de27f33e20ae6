"""The dimensions every cost function reads: one job and a table of layouts, as numpy arrays (SI units).

`sizes(job, table)` is built once per evaluation; the cost functions (costs.layer, costs.communication,
costs.params, costs.stage) take it and return arrays over the table's rows, so one code path serves one layout
(the discrete-event engine, `estimate`) or a million (`search`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..pipeline.closed_form import num_micro_batches
from ..specs.routing import RoutingSpec
from ..topology.placement import TierArrays, axis_strides, tier_arrays
from ..topology.shared_network import tiers_with_background
from ..units import BYTES_PER_ELEMENT, storage_bytes
from .communication import DPGroups, data_parallel_groups, expert_tensor_parallel
from .compute import KernelRates, ShapeIndex, kernel_rates
from .flops import ModelCosts, model_costs
from ..specs.overlay import framework_efficiency
from .framework_effects import attention_peak_flops_per_s
from .moe_routing import MoeLoad, moe_load


@dataclass(frozen=True)
class Sizes:
    """A job and its layouts as arrays: parallel degrees, token and byte sizes, rank strides, network tiers."""

    job: object                  # specs.job.Job
    table: object                # specs.layout_table.LayoutTable
    costs: ModelCosts            # per-layer parameters and FLOPs of the model at the job's sequence length
    kernel: KernelRates
    tiers: TierArrays
    tp: np.ndarray               # parallel degrees as float arrays
    pp: np.ndarray
    dp: np.ndarray
    ep: np.ndarray
    cp: np.ndarray
    vpp: np.ndarray
    micro_batch: np.ndarray      # sequences per micro-batch (float)
    sequence_parallel: np.ndarray  # Megatron SP in effect (needs tp > 1)
    recompute: np.ndarray        # codes: 0 none, 1 selective, 2 full
    seq_len: float
    hidden: float
    vocab: float
    num_layers: int
    act_bytes: float             # bytes per stored activation element
    weight_bytes: float          # bytes per stored weight element
    grad_bytes: float            # bytes per gradient element (accumulation/reduction dtype)
    num_micro: np.ndarray        # micro-batches per replica per step
    tokens: np.ndarray           # tokens per micro-batch per device: b x s / cp (GEMM rows)
    heads: float
    kv_heads: float
    v_head_dim: float
    sp_factor: np.ndarray        # tp where SP splits the sequence outside the TP regions, else 1
    etp: np.ndarray              # expert tensor-parallel degree
    strides: dict                # rank stride of each parallel axis (topology.placement.axis_strides)
    dp_groups: DPGroups          # the data-parallel groups gradients are reduced over
    moe_fraction: float          # MoE share of all layers
    moe_heavy_fraction: float    # MoE share of a stage's layers (the first dense layers sit on the first stage)
    framework: object = None     # specs.framework.FrameworkSpec the job runs under (Job.stack)
    attention_kernel: str = "flash-attn-2"   # the framework's fused attention kernel on this hardware family
    attention_peak_flops_per_s: float = 0.0  # peak the attention core runs against (bf16 in fp8/int8/fp4 runs)
    moe_load: MoeLoad | None = None  # routing load of the busiest expert rank (costs.moe_routing); None: dense

    def attention_kernel_of_rows(self) -> np.ndarray:
        """The attention kernel of every row: the framework's fused kernel, 'unfused' where flash_attention is
        off (specs.stack.attention_kernel_name). The seam for per-kernel attention efficiency (costs.kernels)."""
        return np.where(self.table.flash_attention, self.attention_kernel, "unfused")

    @property
    def model(self):
        return self.job.model

    @property
    def hardware(self):
        return self.job.hardware

    @property
    def training(self):
        return self.job.training


def shape_index(table, etp):
    """The rows sharing kernel shapes: every GEMM and attention shape of a layer is a function of tp, cp, ep, the
    expert TP degree, the micro-batch and the attention path (costs.compute.ShapeIndex)."""
    return ShapeIndex.of(table.tp, table.cp, table.ep, etp, table.micro_batch, table.flash_attention)


def sizes(job, table) -> Sizes:
    """The Sizes of every layout of `table` for `job`."""
    m, hw, tr = job.model, job.hardware, job.training
    fw = job.stack if hasattr(job, "stack") else None
    if fw is None:
        from ..specs.stack import framework_named
        fw = framework_named()
    c = model_costs(m, tr.seq_len)
    f64 = np.float64
    tp, pp, dp, ep, cp, vpp = (x.astype(f64) for x in (table.tp, table.pp, table.dp, table.ep, table.cp, table.vpp))
    b = table.micro_batch.astype(f64)
    sp = table.sequence_parallel & (table.tp > 1)
    s = float(tr.seq_len)
    act_b = float(storage_bytes(tr.dtype))
    etp = expert_tensor_parallel(tp, dp, ep)
    grad_b = gradient_bytes(tr, fw)
    strides = axis_strides(table.placement, tp, cp, ep, dp, pp)
    L = m.num_layers
    tokens = b * s / cp
    load = None
    if m.moe is not None:
        heavy = c.num_moe_layers / max(1, L - m.moe.first_dense_layers)
        frac = c.num_moe_layers / L
        load = moe_load(routing_of(m, tr), m.moe.num_experts, m.moe.top_k, ep, tokens * etp / tp)
    else:
        heavy = frac = 0.0
    return Sizes(
        job=job, table=table, costs=c, kernel=kernel_rates(hw, tr.dtype, shape_index(table, etp), framework_efficiency(fw)),
        tiers=job_tiers(job),
        tp=tp, pp=pp, dp=dp, ep=ep, cp=cp, vpp=vpp, micro_batch=b, sequence_parallel=sp,
        recompute=table.recompute, seq_len=s, hidden=float(m.hidden_size), vocab=float(m.vocab_size),
        num_layers=L, act_bytes=act_b, weight_bytes=act_b, grad_bytes=grad_b,
        num_micro=num_micro_batches(tr.global_batch, b, dp), tokens=tokens,
        heads=float(m.num_heads), kv_heads=float(m.kv_heads),
        v_head_dim=float(m.mla.v_head_dim) if m.mla is not None else float(m.dim_per_head),
        sp_factor=np.where(sp, tp, 1.0), etp=etp, strides=strides,
        dp_groups=data_parallel_groups(tp, dp, ep, cp, etp, strides, m.moe is not None),
        moe_fraction=frac, moe_heavy_fraction=heavy, moe_load=load, framework=fw,
        attention_kernel=fw.attention.kernel_for(hw.family),
        attention_peak_flops_per_s=attention_peak_flops_per_s(hw, tr.dtype),
    )


def gradient_bytes(training, framework) -> float:
    """Bytes per gradient element accumulated and reduced: training.grad_dtype's, except fp16 runs of a stack that
    keeps gradients in the parameters' fp16 (FrameworkSpec.defaults.fp16_grads_in_fp32 false): 2.

    Source: NVIDIA/Megatron-LM megatron/arguments.py at 9da6e97: --accumulate-allreduce-grads-in-fp32 is opt-in
    (store_true), forced on only with --bf16; megatron/model/distributed.py allocates the grad buffer in fp32 only
    with it, else in the parameters' dtype."""
    if training.dtype == "fp16" and framework is not None and not framework.defaults.fp16_grads_in_fp32:
        return float(BYTES_PER_ELEMENT["fp16"])
    return float(BYTES_PER_ELEMENT[training.grad_dtype])


def routing_of(model, training):
    """The routing a job runs: training.moe_routing, else a capacity-only routing (max-over-mean 1) when the
    model preset states a capacity factor (moe.capacity_factor), else None (every expert rank gets the mean)."""
    if training.moe_routing is not None:
        return training.moe_routing
    cf = model.moe.capacity_factor if model.moe is not None else None
    return None if cf is None else RoutingSpec(max_over_mean=1.0, capacity_factor=cf)


def job_tiers(job) -> TierArrays:
    """The network tiers a job sees: the profile's, with the bandwidth of every tier but the first (the scale-up
    domain a job owns) reduced by the background occupancy of its network conditions.

    Source: topology.shared_network.tiers_with_background."""
    tiers = tier_arrays(job.hardware)
    net = getattr(job, "network", None)
    if net is None or net.background_occupancy == 0.0:
        return tiers
    occ = np.full(tiers.num_tiers, float(net.background_occupancy))
    occ[0] = 0.0
    return tiers_with_background(tiers, occ, elastic=net.background_elastic)
