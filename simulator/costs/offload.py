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
