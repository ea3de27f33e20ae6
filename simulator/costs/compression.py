"""Compressed and local data-parallel communication: 1-bit Adam / 1-bit LAMB, and local SGD with overlapped
outer steps (CO2). Pure functions over numpy arrays; collective times come from topology.collectives.

1-bit Adam (Tang et al., ICML 2021, arXiv 2102.02888; DeepSpeed blog 2020-09-09 "1-bit Adam"): after a warm-up
of plain Adam (a fraction w of the steps, full fp16 gradient all-reduce), the variance is frozen and each worker
communicates its error-compensated momentum compressed to one sign bit per element plus one fp32 scale
(norm / sqrt(numel)) per tensor. The compressed all-reduce is two phases (DeepSpeed runtime/comm/nccl.py
`compressed_allreduce`): an all-to-all of the packed signs (each rank becomes the "server" of 1/n of the
elements), then an all-gather of the server's re-compressed chunk. Volume 1 bit vs 16: 1/16 of the fp16
all-reduce in the compression stage, 1/(w + (1 - w)/16) less overall (5x with w = 15%). 1-bit LAMB (Li et al.
2021, arXiv 2104.06069) compresses the same way and adds a per-layer scaling coefficient (negligible bytes).

Local SGD / CO2 (Sun et al., ICLR 2024, arXiv 2401.16265): workers take tau inner optimizer steps on their own
data, then all-reduce the parameter change (the outer step). CO2 runs that all-reduce asynchronously, overlapped
with the next tau inner steps (one-step-stale outer update), so per inner step it costs full/tau of the volume
and is exposed only by what the tau inner steps cannot cover.
"""
from __future__ import annotations

import numpy as np

from ..topology.collectives import all_gather_time_s, all_reduce_time_s, all_to_all_time_s
from ..topology.placement import TierArrays

#: Bits per element of 1-bit Adam's compressed momentum (sign only).
ONEBIT_BITS_PER_ELEMENT = 1.0
#: fp32 scale per worker tensor (DeepSpeed compressed_allreduce: worker_scale = norm / sqrt(numel)).
ONEBIT_SCALE_BYTES = 4.0
#: HBM bytes the compression kernels stream per momentum element (fp32 momentum, fp32 error buffers), counted
#: from DeepSpeed runtime/comm/nccl.py `compressed_allreduce`: worker side: add the error (read m, read e,
#: write m: 12 B), norm (read m: 4 B), new error m - scale x sign(m) (read m, write e: 8 B), sign + pack
#: (read m: 4 B, write 1/8 B); server side on n chunks of N/n: unpack n sign chunks to fp32 (write 4 B per
#: original element), average + add server error + norm + new error + pack (about 20 B per server element,
#: i.e. 20/n per original element, ignored); receiver: unpack the gathered signs (write 4 B).
#: Total about 32 B per element (memory bound).
ONEBIT_COMPRESS_BYTES_PER_ELEMENT = 32.0


def onebit_volume_ratio(warmup_fraction, bits_per_element: float = ONEBIT_BITS_PER_ELEMENT,
                        baseline_bits: float = 16.0):
    """Uncompressed / compressed gradient-communication volume over a whole run: 1 / (w + (1 - w) b / 16).

    Source: DeepSpeed 1-bit Adam blog (docs/_posts/2020-09-09-onebit-adam-blog-post.md): "16x less in the
    compression stage, 5x overall with 15% warm-up"; 1 / (0.15 + 0.85/16) = 4.92."""
    w = np.asarray(warmup_fraction, dtype=float)
    return 1.0 / (w + (1.0 - w) * bits_per_element / baseline_bits)


def onebit_compressed_bytes(num_elements, num_ranks):
    """Bytes one rank sends in a 1-bit compressed all-reduce of `num_elements` momentum values: the all-to-all
    of its packed signs ((n-1)/n x N/8) and the all-gather of its server chunk ((n-1) x N/(8n) to the others),
    plus the fp32 scales; about 2 (n-1)/n x N/8, 1/16 of the fp16 ring all-reduce's 2 (n-1)/n x 2N.
    Source: DeepSpeed runtime/comm/nccl.py compressed_allreduce (phase 1 all_to_all_single of the signs,
    phase 2 all_gather of the server signs; scales all-gathered)."""
    N = np.asarray(num_elements, dtype=float)
    n = np.asarray(num_ranks, dtype=float)
    signs = N * ONEBIT_BITS_PER_ELEMENT / 8.0
    return 2.0 * (n - 1.0) / n * signs + 2.0 * (n - 1.0) * ONEBIT_SCALE_BYTES


def onebit_allreduce_time_s(num_elements, n, stride, tiers: TierArrays):
    """Time of the compressed all-reduce: all-to-all of N/8 bytes of signs + all-gather of N/8 bytes (the
    scales are a few bytes and ride along). Source: onebit_compressed_bytes; topology.collectives."""
    signs = np.asarray(num_elements, dtype=float) * ONEBIT_BITS_PER_ELEMENT / 8.0
    scales = np.asarray(n, dtype=float) * ONEBIT_SCALE_BYTES
    return all_to_all_time_s(signs + scales, n, stride, tiers) + all_gather_time_s(signs + scales, n, stride, tiers)


def onebit_compress_time_s(num_elements, hbm_bytes_per_s: float, memory_efficiency: float):
    """GPU time of the compression/decompression passes: ONEBIT_COMPRESS_BYTES_PER_ELEMENT x N / achieved HBM.
    Source: pass count of DeepSpeed compressed_allreduce (see the constant); memory-bound roofline."""
    return ONEBIT_COMPRESS_BYTES_PER_ELEMENT * np.asarray(num_elements, dtype=float) / (
        hbm_bytes_per_s * memory_efficiency)


def onebit_mean_sync_time_s(uncompressed_s, compressed_s, compress_s, warmup_fraction):
    """Gradient-sync time per step averaged over a run: w x uncompressed + (1 - w) x (compressed + compression).
    Source: 1-bit Adam's two stages (warm-up with full-precision Adam, then the compression stage)."""
    w = np.asarray(warmup_fraction, dtype=float)
    return w * uncompressed_s + (1.0 - w) * (compressed_s + compress_s)


def local_sgd_bytes_per_step(full_bytes, tau):
    """Outer all-reduce volume per inner step: the full parameter-change volume once every tau steps.
    Source: local SGD (Stich 2019, arXiv 1805.09767); CO2 arXiv 2401.16265 sec. 3."""
    return np.asarray(full_bytes, dtype=float) / np.asarray(tau, dtype=float)


def local_sgd_exposed_per_step_s(outer_allreduce_s, tau, inner_step_s, overlap: bool = True,
                                 outer_update_s=0.0):
    """Exposed outer-step communication per inner step.

    Overlapped (CO2): the outer all-reduce runs beside the next tau inner steps and shows only what outlasts
    them, max(0, T_ar - tau x T_inner) / tau. Not overlapped (plain local SGD, DiLoCo-style): T_ar / tau.
    The outer optimizer update (memory bound) is paid every tau steps either way.
    Source: CO2 arXiv 2401.16265 sec. 3.2 (asynchronous outer communication overlapped with the inner loop)."""
    tau = np.asarray(tau, dtype=float)
    t_ar = np.asarray(outer_allreduce_s, dtype=float)
    if overlap:
        exposed = np.maximum(0.0, t_ar - tau * np.asarray(inner_step_s, dtype=float))
    else:
        exposed = t_ar
    return (exposed + outer_update_s) / tau


def data_parallel_sync_time_s(num_elements, bytes_per_element, n, stride, tiers: TierArrays):
    """Uncompressed gradient all-reduce of `num_elements` values (the baseline both methods are compared to).
    Source: topology.collectives.all_reduce_time_s (ring/hierarchical with NCCL's ring or tree latency)."""
    return all_reduce_time_s(np.asarray(num_elements, dtype=float) * bytes_per_element, n, stride, tiers)
