"""Compute time on one device: roofline with a shape-dependent matmul efficiency and memory-bound ops.

GEMM efficiency is the product of two saturations (matmul_max is the best-shape fraction of peak, stas00/
ml-engineering MAMF tables, hardware.md sec. 6.1):
- output fill: a GEMM is cut into output tiles, one per SM at a time, so it fills the machine only once its
  output area A = batch x M x N covers about one wave of tiles: A / (A + matmul_half_dim^2). matmul_half_dim is
  the side of the half-fill output square (fitted: A100 about 1450 = 128 tiles of 128x128 on its 108 SMs, H100 about
  1590 = 154 tiles on its 132 SMs: about one wave; the values and their data are in the profiles);
- reduction depth: a short K loop cannot amortise the tile's prologue/epilogue (loading the pipeline, writing
  the output tile): K / (K + matmul_k_half).
eff = matmul_max * A / (A + half^2) * K / (K + k_half). Both halves are fitted per family by
benchmarks/calibrate.py. The 1-D curve matmul_efficiency(d) = matmul_max * d / (d + half) remains for the fused
attention kernel (saturating in the sequence length). Memory-bound kernels run at memory_bound x HBM bandwidth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def matmul_efficiency(min_dim, matmul_max: float, half_dim: float):
    """1-D saturating curve matmul_max * d / (d + half_dim) (fused attention, in the sequence length)."""
    d = np.asarray(min_dim, dtype=float)
    return matmul_max * d / (d + half_dim)


def gemm_efficiency(m, k, n, matmul_max: float, half_dim: float, k_half=None, batch=1.0):
    """Fraction of peak FLOP/s of `batch` (m x k) @ (k x n) GEMMs: output fill x reduction-depth saturation.

    k_half None (a family whose profile has no fitted value) falls back to half_dim."""
    m = np.asarray(m, dtype=float)
    kh = half_dim if k_half is None else k_half
    area = batch * m * n
    return matmul_max * area / (area + half_dim * half_dim) * (k / (k + kh))


def gemm_time_s(m, k, n, peak_flops_per_s: float, matmul_max: float, half_dim: float, k_half=None):
    """Time of an (m x k) @ (k x n) GEMM: 2mkn / (peak x gemm_efficiency(m, k, n))."""
    flops = 2.0 * np.asarray(m, dtype=float) * k * n
    eff = gemm_efficiency(m, k, n, matmul_max, half_dim, k_half)
    return flops / (peak_flops_per_s * eff)


def memory_bound_time_s(bytes_moved, hbm_bytes_per_s: float, efficiency: float):
    """Streaming kernel time: bytes read + written / achieved HBM bandwidth."""
    return np.asarray(bytes_moved, dtype=float) / (hbm_bytes_per_s * efficiency)


def elementwise_bytes_per_token(hidden, mlp_act_elems, act_bytes: float = 2.0) -> float:
    """Bytes the non-GEMM kernels of one layer's forward read and write per token.

    Two norms (read h, write h each), two residual adds (read 2h, write h), two dropouts/bias-adds
    (read h, write h), the activation function (read its input, write its output: `mlp_act_elems`),
    softmax statistics are inside the fused attention kernel. ~ (4 + 6 + 4) h + mlp_act_elems elements.
    Backward moves about twice as much (Korthikanti et al. 2022 treat these ops as memory bound).
    """
    return act_bytes * (14.0 * hidden + mlp_act_elems)


@dataclass(frozen=True)
class KernelRates:
    """The rates a device runs kernels at for one training dtype: GEMM peak and saturation curve, attention
    kernel ceiling, achieved HBM bandwidth. Built once per job (`kernel_rates`)."""

    peak_flops_per_s: float
    matmul_max: float
    half_dim: float
    k_half: float | None
    attention_max: float
    hbm_bytes_per_s: float
    memory_bound: float

    def gemm_s(self, m, k, n):
        """Time of an (m x k) @ (k x n) GEMM (gemm_time_s at these rates)."""
        return gemm_time_s(m, k, n, self.peak_flops_per_s, self.matmul_max, self.half_dim, self.k_half)

    def stream_s(self, bytes_moved):
        """Time of a memory-bound kernel moving `bytes_moved` (memory_bound_time_s at these rates)."""
        return memory_bound_time_s(bytes_moved, self.hbm_bytes_per_s, self.memory_bound)


def kernel_rates(hw, dtype: str) -> KernelRates:
    """KernelRates of profile `hw` for GEMMs in `dtype`: FP8 GEMMs use the profile's fp8_matmul_max where it has
    one; attention runs at attention_max (else the GEMM ceiling), at the dtype's peak.

    Source: the profile's efficiency block (hardware_profiles/*.yaml, fitted values and their data there)."""
    eff = hw.efficiency
    mm_max = eff.fp8_matmul_max if (dtype == "fp8" and eff.fp8_matmul_max) else eff.matmul_max
    return KernelRates(peak_flops_per_s=hw.peak_flops_per_s(dtype), matmul_max=mm_max, half_dim=eff.matmul_half_dim,
                       k_half=eff.matmul_k_half, attention_max=eff.attention_max or mm_max,
                       hbm_bytes_per_s=hw.device.memory_bandwidth_bytes_per_s, memory_bound=eff.memory_bound)
