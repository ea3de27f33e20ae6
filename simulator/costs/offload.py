"""Memory beyond the device: the host link, host memory, NVMe and the CPU optimizer (pure functions).

ZeRO-Offload (Ren et al. 2021, arXiv 2101.06840) keeps fp16 weights and the forward/backward on the device, moves
each micro-batch's gradient partition to the host during backward, runs Adam on the CPU and copies the updated fp16
weights back. ZeRO-3 Offload / ZeRO-Infinity (Rajbhandari et al. 2021, arXiv 2104.07857) also keep the weights'
partitions in host memory (or NVMe) and fetch each layer's partition over the host link before every pass that needs
it. Activation offload keeps the checkpointed layer inputs in host memory instead of device memory.

Both engines take every offload size and duration from here: `offload_memory` (device, host and NVMe bytes of a
rank), `HostRates` (the node's host link, CPU-Adam and NVMe rates as one device's share), the per-parameter and
per-byte transfer times (`param_fetch_s`, `grad_offload_s`, `activation_copy_s`), the step's optimizer phase
(`offload_update_s`) and, for the analytic engine, what compute cannot hide (`exposed_offload_s`). Tier codes are
specs.layout.OFFLOAD_CODES (0 none, 1 cpu, 2 nvme). Sizes are bytes, times seconds, rates per second; every
function works on scalars or numpy arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .flops import attention_params
from .memory import ADAM_STATE_BYTES_PER_PARAM, zero3_gathered_params, zero3_prefetches
from .params import edge_params_per_rank, layer_params_per_rank, rank_params

NONE, CPU, NVME = 0, 1, 2

#: Bytes the CPU streams per parameter in one mixed-precision Adam step as ZeRO-Offload runs it: reads the fp32
#: master weight, the fp32 gradient (converted from the fp16 copy on arrival), m and v (16 B), writes master, m, v
#: (12 B) and the fp16 weight copy sent back to the device (2 B). Source: ZeRO-Offload sec. 4.1/5.1 (what lives on
#: the CPU and what returns to the GPU); byte count derived here.
CPU_ADAM_BYTES_PER_PARAM = 30.0

#: Fraction of the host's memory bandwidth a vectorised CPU Adam (DeepSpeed CPU-Adam: AVX-512, loop unrolling,
#: OpenMP) sustains. Estimate: streaming kernels on two-socket Xeons reach ~0.8 of the DIMM bandwidth (STREAM
#: triad) and Adam adds a divide and a square root per element; 0.5 is chosen in between, to be replaced by a
#: measured `host.cpu_adam_params_per_s` where a profile has one.
CPU_ADAM_BANDWIDTH_EFFICIENCY = 0.5

#: fp32 gradient kept on the host per offloaded parameter (ZeRO-Offload accumulates and unscales gradients in fp32
#: on the CPU). Source: ZeRO-Offload sec. 4.1 (16M bytes of gradients and optimizer state on the CPU: 4 + 12).
HOST_GRAD_BYTES_PER_PARAM = 4.0

#: DeepSpeed's default gradient bucket, `reduce_bucket_size` 5e8 elements: with optimizer offload the device keeps
#: only the bucket being reduced and copied out, not the whole gradient. Source: DeepSpeed ZeRO config docs
#: (zero_optimization.reduce_bucket_size, default 5e8).
GRAD_BUCKET_ELEMENTS = 5e8

#: Layers whose checkpointed activations stay on the device with activation offload: the layer running and the
#: next one being copied in. Source: ZeRO-Infinity sec. 5.1 (activation checkpoints offloaded to CPU memory).
ACTIVATION_LAYERS_ON_DEVICE = 2.0


# ------------------------------------------------------------------------------------------------ scalar pieces
def devices_on_node(num_devices, devices_per_node):
    """Devices of the job on one node: all of a node's devices, or fewer when the job is smaller than a node.
    Source: the profile's devices_per_node (jobs fill whole nodes, hardware_profiles/README.md)."""
    return np.minimum(num_devices, devices_per_node)


def host_link_bytes_per_s(link_bytes_per_s, node_cap_bytes_per_s, num_devices_on_node):
    """Per-device host-link bandwidth when `num_devices_on_node` devices copy at once: the device's own link,
    or its share of the node's upstream cap, whichever is smaller (None cap = no shared upstream).

    Source: PCIe topology of GPU servers (each GPU has an x16 link; PCIe switches and the CPUs' lanes are shared,
    hardware_profiles/v100-sxm3-32gb.yaml host.source); the ZeRO-3 Offload post: offload "can exploit the aggregate
    PCI-E bandwidth between GPU and CPU across all the GPUs" (DeepSpeed blog 2021-03-08).
    """
    if node_cap_bytes_per_s is None:
        return np.asarray(link_bytes_per_s, dtype=float)
    return np.minimum(link_bytes_per_s, node_cap_bytes_per_s / num_devices_on_node)


def transfer_time_s(num_bytes, bytes_per_s):
    """Time to move `num_bytes` at `bytes_per_s` (bandwidth term only; copies of megabytes and more).
    Source: alpha-beta model with alpha neglected for bulk copies (Hockney 1994)."""
    return np.asarray(num_bytes, dtype=float) / bytes_per_s


def cpu_adam_params_per_s(host_memory_bytes_per_s, efficiency=CPU_ADAM_BANDWIDTH_EFFICIENCY,
                          bytes_per_param=CPU_ADAM_BYTES_PER_PARAM):
    """Parameters per second a node's CPUs update with mixed-precision Adam, from the memory-bandwidth roofline.

    Source: Adam is memory-bound on CPUs (ZeRO-Offload sec. 5.1 optimises it with SIMD, unrolling and OpenMP);
    rate = memory bandwidth x efficiency / bytes per parameter (CPU_ADAM_BYTES_PER_PARAM).
    """
    return host_memory_bytes_per_s * efficiency / bytes_per_param


def cpu_adam_time_s(params_shard, node_params_per_s, num_devices_on_node):
    """CPU time of one Adam step on a device's parameter partition, the node's CPUs shared by its devices.
    Source: ZeRO-Offload sec. 5.1 (CPU-Adam on the host) and its multi-GPU schedule (each GPU's partition is
    updated by the CPU cores of its node in parallel, sec. 4.2)."""
    return params_shard / (node_params_per_s / num_devices_on_node)


def zero_offload_update_s(adam_s, h2d_s):
    """The optimizer phase of ZeRO-Offload: CPU-Adam and the copy of updated fp16 weights to the device run in
    chunks that overlap (a chunk is copied while the next is updated), so the slower of the two sets the time.
    Source: ZeRO-Offload sec. 5.1 ("parallelizing Adam computation and parameter copy to GPU")."""
    return np.maximum(adam_s, h2d_s)


def exposed_s(transfer_s, overlap_window_s):
    """Part of a transfer that compute cannot hide: max(0, transfer - overlapping compute).
    Source: ZeRO-Offload sec. 4.2 (gradient copies overlap backward); ZeRO-Infinity sec. 6 (overlap-centric
    prefetch of parameters)."""
    return np.maximum(0.0, np.asarray(transfer_s, dtype=float) - overlap_window_s)


def nvme_optimizer_io_bytes(params_shard):
    """(read, write) NVMe bytes per step for an optimizer partition kept on NVMe: fp32 master, m and v are read
    and written back each step (12 B each way).
    Source: ZeRO-Infinity sec. 5 (optimizer states on NVMe, swapped in for the CPU update)."""
    return params_shard * ADAM_STATE_BYTES_PER_PARAM, params_shard * ADAM_STATE_BYTES_PER_PARAM


# ------------------------------------------------------------------------------------------------ the host's rates
@dataclass(frozen=True)
class HostRates:
    """One device's share of its node's host resources when all the job's devices on the node offload at once
    (the symmetric step both engines replay), and the node's capacities. A rate that the profile does not give
    is inf (its transfers take no time) and named in `missing` (a structural reason, feasibility.R_HOST_FACTS).

    `link_bytes_per_s`: host link per device and direction (PCIe is full duplex), after the node cap's share;
    `device_link_bytes_per_s`: the device's own link alone (no cap); `node_link_bytes_per_s`: the node's cap
    (inf = none); `on_node`: the job's devices on one node."""

    on_node: float
    link_bytes_per_s: float
    device_link_bytes_per_s: float
    node_link_bytes_per_s: float
    adam_params_per_s: float
    nvme_read_bytes_per_s: float
    nvme_write_bytes_per_s: float
    host_capacity_bytes: float         # per node; nan = unknown
    nvme_capacity_bytes: float         # per node; nan = unknown
    missing: tuple = ()                # (what, field) pairs the profile lacks: ("link"|"adam"|"nvme", "host.<field>")


def _or(x, default):
    return default if x is None else float(x)


def host_rates(hardware, num_devices: int) -> HostRates:
    """The HostRates of `num_devices` devices of `hardware` (its `host:` block; absent = every fact missing).

    Source: specs.host.HostSpec (sourced per profile); CPU Adam from `cpu_adam_params_per_s` or, without a
    measured rate, the memory-bandwidth roofline (`cpu_adam_params_per_s()` above)."""
    host = hardware.host
    on_node = float(devices_on_node(num_devices, hardware.devices_per_node))
    inf = math.inf
    if host is None:
        return HostRates(on_node, inf, inf, inf, inf, inf, inf, math.nan, math.nan,
                         missing=(("link", "host.link_gb_per_s"), ("adam", "host.cpu_adam_params_per_s or "
                                  "host.memory_bandwidth_gb_per_s"), ("nvme", "host.nvme_read_gb_per_s and "
                                  "host.nvme_write_gb_per_s")))
    missing = []
    dev_link = _or(host.link_bytes_per_s, inf)
    node_cap = host.link_node_bytes_per_s
    if host.link_bytes_per_s is None:
        missing.append(("link", "host.link_gb_per_s"))
    link = float(host_link_bytes_per_s(dev_link, node_cap, on_node))
    if host.cpu_adam_params_per_s is not None:
        adam_node = host.cpu_adam_params_per_s
    elif host.memory_bandwidth_bytes_per_s is not None:
        adam_node = float(cpu_adam_params_per_s(host.memory_bandwidth_bytes_per_s))
    else:
        adam_node = inf
        missing.append(("adam", "host.cpu_adam_params_per_s or host.memory_bandwidth_gb_per_s"))
    if host.nvme_read_bytes_per_s is None or host.nvme_write_bytes_per_s is None:
        missing.append(("nvme", "host.nvme_read_gb_per_s and host.nvme_write_gb_per_s"))
    return HostRates(on_node=on_node, link_bytes_per_s=link, device_link_bytes_per_s=dev_link,
                     node_link_bytes_per_s=_or(node_cap, inf), adam_params_per_s=adam_node / on_node,
                     nvme_read_bytes_per_s=_or(host.nvme_read_bytes_per_s, inf) / on_node,
                     nvme_write_bytes_per_s=_or(host.nvme_write_bytes_per_s, inf) / on_node,
                     host_capacity_bytes=_or(host.memory_bytes, math.nan),
                     nvme_capacity_bytes=_or(host.nvme_bytes, math.nan), missing=tuple(missing))


def missing_host_facts(rates: HostRates, optimizer, params, activations):
    """Per row: True where an offload choice needs a host fact the profile does not give (the host link for any
    offload, a CPU-Adam rate for optimizer offload, NVMe bandwidth for an NVMe tier).
    Source: what param_fetch_s, grad_offload_s, activation_copy_s and offload_update_s read (this module)."""
    what = {w for w, _ in rates.missing}
    opt, par, act = (np.asarray(x) for x in (optimizer, params, activations))
    any_off = (opt > NONE) | (par > NONE) | (act > NONE)
    bad = any_off & ("link" in what)
    bad = bad | ((opt > NONE) & ("adam" in what))
    return bad | (((opt == NVME) | (par == NVME)) & ("nvme" in what))


# ------------------------------------------------------------------------------------------------ memory
def offload_memory(weights, grads, optimizer, layer_acts, partition, rank_params, gathered_bytes, weight_bytes,
                   grad_bytes, opt_code, params_code, act_code, layer_act_bytes):
    """Device, host and NVMe bytes of one rank with its offload choices.

    `weights`, `grads`, `optimizer`, `layer_acts`: the on-device figures without offload (layer_acts: the
    checkpoints of its layers for the micro-batches in flight); `partition`: parameters of the rank's ZeRO
    partition (all of them without data parallelism); `rank_params`: parameters the rank holds;
    `gathered_bytes`: ZeRO-3's gather buffer (zero3_buffer_params x weight bytes); `layer_act_bytes`: one layer's
    checkpoint, one micro-batch.
    - optimizer offload: fp32 master, m, v (12 B) and fp32 gradients (4 B) of the partition leave the device
      (16 B to the host, or 12 B to NVMe and 4 B to the host); the device keeps one gradient bucket;
    - parameter offload: the fp16 partition goes to the host or NVMe; the device keeps the gather buffer only;
    - activation offload: the checkpoints go to the host; the device keeps ACTIVATION_LAYERS_ON_DEVICE layers'.
    Returns (weights, grads, optimizer, layer_acts, host, nvme), bytes per device.
    Source: ZeRO-Offload (arXiv 2101.06840) sec. 4 (16M bytes of model state on the CPU, 2M fp16 weights on the
    GPU); ZeRO-Infinity (arXiv 2104.07857) sec. 5 (parameters and optimizer states on CPU or NVMe, activation
    checkpoints on CPU).
    """
    opt, par, act = (np.asarray(x) for x in (opt_code, params_code, act_code))
    w = np.where(par > NONE, gathered_bytes, weights)
    g = np.where(opt > NONE, np.minimum(GRAD_BUCKET_ELEMENTS, rank_params) * grad_bytes, grads)
    o = np.where(opt > NONE, 0.0, optimizer)
    kept = np.minimum(layer_acts, ACTIVATION_LAYERS_ON_DEVICE * layer_act_bytes)
    a = np.where(act > NONE, kept, layer_acts)
    state = ADAM_STATE_BYTES_PER_PARAM * partition
    host = (np.where(opt == CPU, state, 0.0) + np.where(opt > NONE, HOST_GRAD_BYTES_PER_PARAM * partition, 0.0)
            + np.where(par == CPU, partition * weight_bytes, 0.0) + np.where(act > NONE, layer_acts, 0.0))
    nvme = np.where(opt == NVME, state, 0.0) + np.where(par == NVME, partition * weight_bytes, 0.0)
    return w, g, o, a, host, nvme


# ------------------------------------------------------------------------------------------------ transfer times
def param_fetch_s(params, rates: HostRates, params_code, weight_bytes):
    """Time to bring `params` fp16 parameters of an offloaded partition to the device for one pass: over the host
    link, and from NVMe first (read at the device's share of the node's NVMe bandwidth, pipelined with the link:
    the slower sets the pace); 0 where parameters are not offloaded.
    Source: ZeRO-Infinity sec. 5-6 (parameters fetched from CPU/NVMe before each use; NVMe -> CPU -> GPU
    overlapped)."""
    par = np.asarray(params_code)
    b = np.asarray(params, dtype=float) * weight_bytes
    link = b / rates.link_bytes_per_s
    t = np.where(par == NVME, np.maximum(link, b / rates.nvme_read_bytes_per_s), link)
    return np.where(par > NONE, t, 0.0)


def grad_offload_s(params, rates: HostRates, opt_code, grad_bytes):
    """Time to copy one micro-batch's gradients of `params` partition parameters to the host (ZeRO-Offload copies
    each reduced partition out during the backward and accumulates it on the CPU); 0 without optimizer offload.
    Source: ZeRO-Offload sec. 4.2; DeepSpeed stage_1_and_2.py (gradients accumulated in CPU memory each
    micro-step with cpu_offload)."""
    return np.where(np.asarray(opt_code) > NONE,
                    np.asarray(params, dtype=float) * grad_bytes / rates.link_bytes_per_s, 0.0)


def activation_copy_s(num_bytes, rates: HostRates, act_code):
    """Time to copy `num_bytes` of activation checkpoints one way over the host link (out in the forward, back in
    the backward); 0 without activation offload.
    Source: ZeRO-Infinity sec. 5.1 (activation checkpoints offloaded to CPU memory)."""
    return np.where(np.asarray(act_code) > NONE, np.asarray(num_bytes, dtype=float) / rates.link_bytes_per_s, 0.0)


@dataclass(frozen=True)
class UpdateTimes:
    """The optimizer phase of an offloaded step, per device: CPU Adam, the fp16 copy of the updated partition
    (to the device, or to NVMe when the parameters live there), the NVMe swap of optimizer state, and the phase
    (`update_s`: they run pipelined, the slowest sets it)."""

    cpu_adam_s: object
    param_copy_s: object
    nvme_s: object
    update_s: object


def offload_update_s(partition, rates: HostRates, opt_code, params_code, weight_bytes) -> UpdateTimes:
    """The optimizer phase of a step with offload.

    Optimizer on the host (cpu/nvme): CPU Adam over the partition at the device's share of the node's rate; the
    updated fp16 partition goes back to the device over the link (parameters on the device), stays in host memory
    (parameters on the host) or is written to NVMe; NVMe optimizer state is read and written once (12 B each way).
    Parameters offloaded but the optimizer on the device: the GPU step (category optimizer) is followed by the
    copy of the fp16 partition to the host (and NVMe). Chunks of the CPU step, the copy and the swap overlap, so
    the slowest of them is the phase's time. 0 without optimizer or parameter offload.
    Source: ZeRO-Offload sec. 5.1 (Adam and the parameter copy in parallel chunks); ZeRO-Infinity sec. 6
    (overlapped NVMe swapping of optimizer state, DeepSpeed pipeline_read/pipeline_write)."""
    opt, par = np.asarray(opt_code), np.asarray(params_code)
    p = np.asarray(partition, dtype=float)
    wbytes = p * weight_bytes
    adam = np.where(opt > NONE, p / rates.adam_params_per_s, 0.0)
    to_device = np.where((opt > NONE) & (par == NONE), wbytes / rates.link_bytes_per_s, 0.0)
    to_host = np.where((opt == NONE) & (par > NONE), wbytes / rates.link_bytes_per_s, 0.0)
    rd, wr = nvme_optimizer_io_bytes(p)
    nvme = np.where(opt == NVME, rd / rates.nvme_read_bytes_per_s + wr / rates.nvme_write_bytes_per_s, 0.0)
    nvme = nvme + np.where(par == NVME, wbytes / rates.nvme_write_bytes_per_s, 0.0)
    copy = to_device + to_host
    return UpdateTimes(cpu_adam_s=adam, param_copy_s=copy, nvme_s=nvme,
                       update_s=np.maximum(zero_offload_update_s(adam, copy), nvme))


def exposed_offload_s(fwd_window_s, bwd_window_s, h2d_fwd_s, d2h_fwd_s, h2d_bwd_s, d2h_bwd_s, update_s, overlap,
                      delayed_update):
    """Offload time a step adds (the analytic engine's `offload` category).

    With overlap, each phase's transfers run on the host link beside its compute, each direction on its own (PCIe
    is full duplex): the forward exposes max(0, max(h2d, d2h) - forward compute), the backward the same with its
    compute (recompute included); the optimizer phase follows the backward, or with the delayed update overlaps
    the next step's compute (max(0, update - forward - backward)). Without overlap every transfer and the update
    block the step.
    Source: ZeRO-Offload sec. 4.2 (gradient copies overlap backward) and sec. 5.2 (one-step delayed parameter
    update); ZeRO-Infinity sec. 6 (overlap-centric prefetch of parameters, also in the backward); DeepSpeed
    `overlap_comm` switches these overlaps together with the gradient reduction's (here: overlap_grad_reduce)."""
    ov = np.asarray(overlap, dtype=bool)
    fwd = np.where(ov, exposed_s(np.maximum(h2d_fwd_s, d2h_fwd_s), fwd_window_s), h2d_fwd_s + d2h_fwd_s)
    bwd = np.where(ov, exposed_s(np.maximum(h2d_bwd_s, d2h_bwd_s), bwd_window_s), h2d_bwd_s + d2h_bwd_s)
    upd = np.where(ov & np.asarray(delayed_update, dtype=bool),
                   exposed_s(update_s, np.asarray(fwd_window_s) + bwd_window_s), update_s)
    return fwd + bwd + upd


# ------------------------------------------------------------------------------------------------ a rank's share
@dataclass(frozen=True)
class RankPartition:
    """Parameters of one rank kind's ZeRO partition (what it offloads), by piece: one layer's, the input
    embedding's and the output layer's (0 where the rank does not hold them); `total` for the rank; `held` the
    parameters the rank holds; `unit` the largest gather unit it brings in at once (zero3_unit_params)."""

    layer: object
    embedding: object
    output: object
    total: object
    held: object
    unit: object


def largest_tensor_params(model) -> float:
    """Parameters of a layer's largest weight tensor, unsharded (DeepSpeed ZeRO-3 gathers tensor by tensor):
    the fused QKV projection, an MLP matrix (one of the gate/up/down matrices of a gated MLP) or an expert's.
    Multi-head latent attention takes its whole attention block as the bound.
    Source: Megatron-LM / Hugging Face layer structure (costs.flops)."""
    h = float(model.hidden_size)
    if model.mla is None:
        attn = h * (model.num_heads + 2 * model.kv_heads) * model.dim_per_head
    else:
        attn = float(attention_params(model))
    mlp = h * model.ffn_hidden_size
    expert = h * model.moe.expert_ffn_hidden_size if model.moe is not None else 0.0
    return max(attn, mlp, expert)


def rank_partition(sz, kind) -> RankPartition:
    """The RankPartition of a rank kind (costs.stage.RankKind) of every layout of `sz`: dense parameters shard
    over the dense data-parallel group (dp x cp), routed experts over the expert one (ZeRO's partition; a
    single replica keeps everything); the output layer counts once on a single rank with tied embeddings.
    Source: Rajbhandari et al. 2020 (ZeRO) sec. 5; costs.params (the rank's parameters)."""
    g = sz.dp_groups
    layer_d, layer_e = layer_params_per_rank(sz)
    emb, out = edge_params_per_rank(sz)
    if sz.model.tied_embeddings:
        out = np.where(sz.table.pp == 1, 0.0, out)
    layer = layer_d / g.dense_size + layer_e / g.expert_size
    emb_p = kind.embedding * emb / g.dense_size
    out_p = kind.logits * out / g.dense_size
    dense, expert = rank_params(sz, kind.layers, kind.embedding, kind.logits)
    return RankPartition(layer=layer, embedding=emb_p, output=out_p, total=kind.layers * layer + emb_p + out_p,
                         held=dense + expert, unit=zero3_unit_params(sz, kind))


def deepspeed_semantics(sz) -> bool:
    """Whether the job's ZeRO-3 is DeepSpeed's (gathers by leaf submodule, prefetch bucket, max live parameters).
    Source: the framework preset's fsdp.implementation."""
    fw = sz.framework
    return fw is not None and fw.fsdp.implementation == "deepspeed-zero3"


def zero3_unit_params(sz, kind, memo: dict | None = None):
    """Parameters of the largest ZeRO-3 gather unit a rank kind holds gathered at once: a layer (FSDP's unit, the
    transformer block), or with tensor-by-tensor gathers (zero3_unit tensor) or DeepSpeed's ZeRO-3 (which gathers
    and releases by leaf submodule) a layer's largest weight tensor; the input embedding or output layer where the
    rank holds one and it is larger.
    Source: Zhao et al. 2023 (PyTorch FSDP, arXiv 2304.11277) sec. 3 (one FlatParameter per unit); DeepSpeed
    partitioned_param_coordinator.py (fetch_sub_module / release_sub_module per submodule). `memo`: a dict one
    caller keeps for the rank kinds of one table (what depends on the table alone)."""
    emb, out = _kind_free(memo, "edge_params", edge_params_per_rank, sz)
    return np.maximum(_kind_free(memo, "layer_unit", layer_unit_params, sz), np.maximum(kind.embedding * emb,
                                                                                        kind.logits * out))


def _kind_free(memo: dict | None, key: str, fn, sz):
    """fn(sz), computed once per `memo` (None: every call)."""
    if memo is None:
        return fn(sz)
    if key not in memo:
        memo[key] = fn(sz)
    return memo[key]


def layer_unit_params(sz):
    """Parameters of one ZeRO-3 gather unit of the layers (zero3_unit_params without the embedding and output).
    Source: zero3_unit_params."""
    layer_d, layer_e = layer_params_per_rank(sz)
    tensor = (sz.table.zero3_unit == 1) | deepspeed_semantics(sz)
    return np.where(tensor, largest_tensor_params(sz.model) / sz.tp, layer_d + layer_e)


def zero3_prefetch_limits(sz) -> tuple:
    """(prefetch bucket, max live) parameters of the job's ZeRO-3: DeepSpeed's from the preset, (None, None) for
    FSDP semantics (costs.memory.zero3_gathered_params)."""
    if not deepspeed_semantics(sz):
        return None, None
    f = sz.framework.fsdp
    return f.prefetch_bucket_params, f.max_live_params


def zero3_buffer_params(sz, kind, memo: dict | None = None):
    """Parameters of a rank kind's ZeRO-3 gather buffer (costs.memory.zero3_gathered_params of its largest unit,
    followed by layer units).
    Source: costs.memory.zero3_gathered_params; zero3_unit_params."""
    return zero3_gathered_params(zero3_unit_params(sz, kind, memo), _kind_free(memo, "layer_unit", layer_unit_params,
                                                                                sz), *zero3_prefetch_limits(sz))


def zero3_prefetch_possible(sz):
    """Where the layers' ZeRO-3 gathers can be prefetched at all (costs.memory.zero3_prefetches of a layer unit):
    DeepSpeed does not prefetch when one unit reaches stage3_max_live_parameters. Both engines gate their ZeRO-3
    overlap with it.
    Source: costs.memory.zero3_prefetches."""
    unit = layer_unit_params(sz)
    return zero3_prefetches(unit, unit, *zero3_prefetch_limits(sz))


def tier_fits(need, capacity):
    """Where a tier's bytes can be shown to fit: nothing kept there, or no more than a known capacity (nan =
    unknown: the planner cannot promise a fit it cannot check).
    Source: docs/plan.md (memory tiers: an unknown capacity is a reason)."""
    need = np.asarray(need, dtype=float)
    return (need <= 0) | (need <= capacity)


def tier_columns(sz, tiers, kinds) -> dict:
    """Host and NVMe bytes per node as columns (mem_host_bytes, mem_nvme_bytes) and whether each fits its node's
    capacity (fits_host, fits_nvme; HostRates.host_capacity_bytes / nvme_capacity_bytes).

    `tiers`: (host, nvme) bytes per device of each rank kind. A node's devices all hold the fullest kind's share
    (the job's devices on a node x the largest per-device figure among the kinds that exist): exact when a node
    holds devices of one pipeline stage (the default placement puts pp outermost), an upper bound otherwise.
    Source: specs.host.HostSpec (capacities per node); costs.offload.offload_memory (bytes per device)."""
    n = len(sz.table)
    rates = host_rates(sz.hardware, sz.job.num_devices)
    out = {}
    for i, name in enumerate(("host", "nvme")):
        if all(np.ndim(x[i]) == 0 and x[i] == 0.0 and not np.signbit(x[i]) for x in tiers):
            per_dev = np.zeros(n)                     # nothing on this tier (no row offloads): the same zeros
        else:
            per_dev = np.max(np.stack([np.where(k.valid, np.broadcast_to(x[i], (n,)), 0.0)
                                       for x, k in zip(tiers, kinds)]), axis=0)
        need = per_dev * rates.on_node
        cap = rates.host_capacity_bytes if name == "host" else rates.nvme_capacity_bytes
        out[f"mem_{name}_bytes"] = need
        out[f"fits_{name}"] = tier_fits(need, cap)
    return out
