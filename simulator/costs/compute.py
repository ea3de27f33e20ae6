"""Compute time on one device: roofline with a shape-dependent matmul efficiency and memory-bound ops.

Matmul efficiency saturates in the GEMM's smallest dimension d (tile and wave quantisation: a GEMM narrower
than a few tiles cannot fill the machine): eff(d) = matmul_max * d / (d + matmul_half_dim). matmul_max is the
best-shape fraction of peak (stas00/ml-engineering MAMF tables, hardware.md sec. 6.1); half_dim is fitted per
device family by benchmarks/calibrate.py. Memory-bound kernels run at memory_bound x HBM bandwidth.
"""
from __future__ import annotations

import numpy as np


def matmul_efficiency(min_dim, matmul_max: float, half_dim: float):
    """Fraction of peak FLOP/s a GEMM whose smallest dimension is `min_dim` reaches."""
    d = np.asarray(min_dim, dtype=float)
    return matmul_max * d / (d + half_dim)


def gemm_time_s(m, k, n, peak_flops_per_s: float, matmul_max: float, half_dim: float):
    """Time of an (m x k) @ (k x n) GEMM: 2mkn / (peak x eff(min(m, k, n)))."""
    flops = 2.0 * np.asarray(m, dtype=float) * k * n
    eff = matmul_efficiency(np.minimum(np.minimum(m, k), n), matmul_max, half_dim)
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
