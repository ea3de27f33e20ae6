"""Memory beyond the device: the host link, host memory, NVMe and the CPU optimizer (pure functions).

ZeRO-Offload (Ren et al. 2021, arXiv 2101.06840) keeps fp16 weights and the forward/backward on the device, moves
gradients to the host during backward, runs Adam on the CPU and copies the updated fp16 weights back. ZeRO-3 Offload
/ ZeRO-Infinity (Rajbhandari et al. 2021, arXiv 2104.07857) also keep the weights' partitions in host memory (or
NVMe) and prefetch each layer's partition over the host link before the layer runs. Activation offload keeps the
checkpointed layer inputs in host memory instead of device memory. All sizes are bytes, times seconds, rates per
second; every function works on scalars or numpy arrays.
"""
from __future__ import annotations

import numpy as np

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


def devices_on_node(num_devices, devices_per_node):
    """Devices of the job on one node: all of a node's devices, or fewer when the job is smaller than a node."""
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


#: DeepSpeed's default gradient bucket, `reduce_bucket_size` 5e8 elements: with optimizer offload the device keeps
#: only the bucket being reduced and copied out, not the whole gradient. Source: DeepSpeed ZeRO config docs
#: (zero_optimization.reduce_bucket_size, default 5e8).
GRAD_BUCKET_ELEMENTS = 5e8

#: Units (layers or parameter tensors) whose gathered fp16 weights a ZeRO-3 rank holds at once: the one computing
#: and the one being prefetched. Source: DeepSpeed ZeRO-3 / PyTorch FSDP prefetch of the next unit (the analytic
#: engine's ZeRO-3 buffer uses the same two layers).
ZERO3_UNITS_IN_FLIGHT = 2.0

#: Layers whose checkpointed activations stay on the device with activation offload: the layer running and the
#: next one being copied in. Source: ZeRO-Infinity sec. 5.1 (activation checkpoints offloaded to CPU memory).
ACTIVATION_LAYERS_ON_DEVICE = 2.0


def offloaded_state_bytes(params_rank, dp_shard, weight_bytes, grad_bytes, zero, optimizer_to, params_to,
                          working_params):
    """Model-state bytes of one device and of its share of host and NVMe, with ZeRO-(Offload|Infinity).

    `params_rank` parameters on the device's model-parallel rank, sharded `dp_shard` ways by ZeRO; `optimizer_to`
    and `params_to` are 'none', 'cpu' or 'nvme'; `working_params` the parameters of one ZeRO-3 gather unit.
    Weights: all of the rank's fp16 weights (ZeRO < 3), or the partition plus the units in flight (ZeRO-3), or only
    the units in flight when the partition is offloaded (2 B per parameter to the host or NVMe).
    Optimizer offload: fp32 master, m, v (12 B) and fp32 gradients (4 B) of the partition leave the device (16 B
    to the host, or 12 B to NVMe and 4 B to the host); the device keeps one gradient bucket.
    Returns (device weights, device grads or None, device optimizer or None, host bytes, nvme bytes); None =
    not offloaded (the on-device estimate's figure stands).
    Source: ZeRO-Offload (arXiv 2101.06840) sec. 4 (16M bytes of model state on the CPU, 2M fp16 weights on
    the GPU); ZeRO-Infinity (arXiv 2104.07857) sec. 5 (parameters and optimizer states on CPU or NVMe).
    """
    shard = params_rank / dp_shard
    in_flight = ZERO3_UNITS_IN_FLIGHT * working_params * weight_bytes
    if zero < 3:
        dev_w = params_rank * weight_bytes
    elif params_to == "none":
        dev_w = shard * weight_bytes + in_flight
    else:
        dev_w = in_flight
    host = shard * weight_bytes if params_to == "cpu" else 0.0
    nvme = shard * weight_bytes if params_to == "nvme" else 0.0
    if optimizer_to == "none":
        return dev_w, None, None, host, nvme
    dev_g = min(GRAD_BUCKET_ELEMENTS, params_rank) * grad_bytes
    if optimizer_to == "cpu":
        host += shard * 16.0
    else:
        host += shard * 4.0
        nvme += shard * 12.0
    return dev_w, dev_g, 0.0, host, nvme


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
    and written back each step (12 B each way). Source: ZeRO-Infinity sec. 5 (optimizer states on NVMe, swapped
    in for the CPU update)."""
    return params_shard * 12.0, params_shard * 12.0
