"""Kernel times on one device for the engines: the measured kernel model (costs.kernels) at the layouts' shapes.

Every kernel of a training step goes through `KernelRates`, built once per job (`kernel_rates`):

- GEMMs (QKV, projections, dense MLP, shared experts, router, logits): `gemm_passes_s` gives the three GEMMs of a
  linear layer, forward (M, n, k), input gradient (M, k, n) and weight gradient (n, k, M) (output rows, output
  columns, reduction depth), each at its own efficiency from the device's GEMM model, instead of backward = 2 x
  forward: a weight gradient reduces over the M tokens and runs at a different shape than the forward.
- MoE experts: `grouped_passes_s`, the same three passes as grouped GEMMs over the local experts.
- Fused attention: `attention_efficiency` of the device's attention model (bf16 peak, also in FP8 runs: attention
  stays in bf16), the kernel named by the framework where its table exists.
- Memory-bound kernels (elementwise, FP8 casts, optimizer step, cross entropy): `stream_s`, bytes at the measured
  fraction of the datasheet HBM bandwidth of their kind.

What remains fittable per hardware family is `efficiency.kernel_level` (the sustained training throughput of the
compute kernels over the tables' benchmark throughput: clocks under power limits, communication kernels sharing
the SMs), multiplying GEMM, grouped-GEMM and attention efficiencies; it is 1.0 unless a calibration sets it.
A profile with `efficiency.kernel_model: ideal` runs every kernel at peak and full bandwidth (a roofline, for
speed-of-light bounds and hand-derived tests).

Shapes depend only on a few layout columns (tp, cp, ep, etp, micro-batch, flash), so the kernel model is evaluated
once per distinct combination (`ShapeIndex`) and gathered back: a million layouts cost a handful of lookups.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np

from .kernels import KernelModel, kernel_model_for

#: Below this many rows the kernel model is evaluated row by row (deduplication would cost more than it saves).
DEDUP_MIN_ROWS = 64

#: Framework attention kernels (specs.framework.AttentionKernel) -> the kernel name of the measured tables
#: (simulator/presets/kernels/catalog.yaml); kernels not listed use the device's default attention table.
TABLE_ATTENTION_KERNEL = {"flash-attn-3": "flash3", "cudnn-fused": "te"}


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


def _factor_codes(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(codes 0..u-1, u) of a non-negative column: integer values in O(n) (a presence table, no sort), others
    by sorting."""
    x = np.asarray(x)
    xi = x.astype(np.int64, copy=False)
    if x.dtype.kind == "f" and not np.array_equal(xi, x):
        uniq, inv = np.unique(x, return_inverse=True)
        return inv.ravel(), len(uniq)
    present = np.zeros(int(xi.max()) + 1, dtype=bool)
    present[xi] = True
    code = np.cumsum(present) - 1
    return code[xi], int(present.sum())


class ShapeIndex:
    """Rows with equal values of the shape-deciding columns share kernel shapes: `rep` holds one row of each
    distinct combination, `inverse` maps every row to its combination. Callers pass only arrays that are functions
    of those columns (and scalars). Built on first use (an evaluation that composes only memory never needs it)."""

    def __init__(self, columns: tuple):
        self._columns = columns
        self._built = None

    @classmethod
    def of(cls, *columns) -> Optional["ShapeIndex"]:
        """The index of integer-valued columns (None for tables too small to gain from it)."""
        if len(columns[0]) < DEDUP_MIN_ROWS:
            return None
        return cls(columns)

    def _build(self) -> tuple:
        if self._built is None:
            columns = self._columns
            n = len(columns[0])
            key, size = None, 1
            for col in columns:
                codes, u = _factor_codes(col)
                if u == 1:                  # one value on every row: key * 1 + 0 would leave the key as it is
                    continue
                key, size = (codes, u) if key is None else (key * u + codes, size * u)
                if size > (1 << 22):
                    key, size = _factor_codes(key)
            if key is None:
                key = np.zeros(n, dtype=np.int64)
            inverse, u = _factor_codes(key)
            rep = np.empty(u, dtype=np.int64)
            rep[inverse] = np.arange(n)
            self._built, self._columns = (rep, inverse), None
        return self._built

    @property
    def rep(self) -> np.ndarray:
        return self._build()[0]

    @property
    def inverse(self) -> np.ndarray:
        return self._build()[1]

    def apply(self, fn, *args):
        """fn over the distinct rows of the array arguments (scalars pass as they are), gathered back per row."""
        n = len(self.inverse)
        red = [a[self.rep] if np.ndim(a) and np.shape(a)[0] == n else a for a in args]
        out = fn(*red)
        return tuple(np.asarray(o)[self.inverse] for o in out) if isinstance(out, tuple) else \
            np.asarray(out)[self.inverse]


def _three_passes(time_s, m, n, k, *rest):
    """time_s at (m, n, k), (m, k, n) and (n, k, m) (a linear layer's forward, input-gradient and weight-gradient
    GEMMs) in one call of the elementwise kernel lookup on the three shapes stacked (the same numbers as three
    calls, a third of the per-call work); `rest` (grouped GEMMs: the groups) is the same for the three."""
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (m, n, k, *rest)))
    shape = arrays[0].shape
    m, n, k, *rest = (a.ravel() for a in arrays)
    out = np.asarray(time_s(np.concatenate([m, m, n]), np.concatenate([n, k, k]), np.concatenate([k, n, m]),
                            *(np.concatenate([r, r, r]) for r in rest)), dtype=float)
    size = m.size
    return tuple(out[i * size:(i + 1) * size].reshape(shape) for i in range(3))


@dataclass(frozen=True)
class KernelRates:
    """The kernel times of one device for one job: the device's kernel model (None: ideal, every kernel at peak),
    the training dtype, the fittable `level`, and the shape index of the job's layout table."""

    model: Optional[KernelModel]
    dtype: str
    level: float
    peak_flops_per_s: float          # dense peak of the GEMM dtype
    bf16_peak_flops_per_s: float     # attention, router and logits run in bf16
    hbm_bytes_per_s: float
    index: Optional[ShapeIndex] = None

    def _shaped(self, fn, *args):
        return fn(*args) if self.index is None else self.index.apply(fn, *args)

    def _peak(self, dtype: str) -> float:
        return self.peak_flops_per_s if dtype == self.dtype else self.bf16_peak_flops_per_s

    def gemm_time_s(self, m, n, k, dtype: Optional[str] = None):
        """Time of an (m x k) @ (k x n) GEMM (output m x n, reduction k) in `dtype` (default: the training dtype).

        Source: costs.kernels.KernelModel.gemm_time_s (measured tables, physical fallback, transfer rule) divided
        by the level."""
        dt = dtype or self.dtype
        if self.model is None:
            return 2.0 * np.asarray(m, float) * n * k / self._peak(dt)
        return self._shaped(lambda a, b, c: self.model.gemm_time_s(a, b, c, dt), m, n, k) / self.level

    def gemm_passes_s(self, m, n, k, dtype: Optional[str] = None):
        """(forward, input gradient, weight gradient) times of a linear layer y = x W, x (m x k), W (k x n):
        forward (m, n, k), input gradient dx = dy W^T (m, k, n), weight gradient dW = x^T dy (n, k, m) (written as
        output rows, output columns, reduction).

        Source: the backward of a linear layer is two GEMMs of the forward's FLOPs (Narayanan et al. 2021, arXiv
        2104.04473, sec. 5.1: backward = 2 x forward FLOPs); Qi et al. 2023 (arXiv 2401.10241) sec. 2 (the
        weight-gradient GEMM is separable)."""
        dt = dtype or self.dtype
        if self.model is None:
            return self.gemm_time_s(m, n, k, dtype), self.gemm_time_s(m, k, n, dtype), self.gemm_time_s(n, k, m, dtype)
        passes = self._shaped(lambda a, b, c: _three_passes(lambda x, y, z: self.model.gemm_time_s(x, y, z, dt),
                                                            a, b, c), m, n, k)
        return tuple(p / self.level for p in passes)

    def grouped_time_s(self, groups, m, n, k, dtype: Optional[str] = None):
        """Time of `groups` GEMMs of per-group (m x k) @ (k x n) run as one grouped GEMM.

        Source: costs.kernels.KernelModel.grouped_gemm_time_s, divided by the level."""
        dt = dtype or self.dtype
        if self.model is None:
            return 2.0 * np.asarray(groups, float) * m * n * k / self._peak(dt)
        return self._shaped(lambda g, a, b, c: self.model.grouped_gemm_time_s(g, a, b, c, dt), groups, m, n, k) \
            / self.level

    def grouped_passes_s(self, groups, m, n, k, dtype: Optional[str] = None):
        """(forward, input gradient, weight gradient) times of `groups` experts' linear layers (gemm_passes_s per
        group, as grouped GEMMs)."""
        dt = dtype or self.dtype
        if self.model is None:
            return (self.grouped_time_s(groups, m, n, k, dtype), self.grouped_time_s(groups, m, k, n, dtype),
                    self.grouped_time_s(groups, n, k, m, dtype))
        passes = self._shaped(lambda g, a, b, c: _three_passes(
            lambda x, y, z, w: self.model.grouped_gemm_time_s(w, x, y, z, dt), a, b, c, g), groups, m, n, k)
        return tuple(p / self.level for p in passes)

    def attention_efficiency(self, seq_len, head_dim, batch_heads, pass_: str, kernel: Optional[str] = None):
        """Fraction of the bf16 peak a fused attention kernel reaches (causal), times the level; 1 when ideal.

        Source: costs.kernels.KernelModel.attention_efficiency (SimuMax/TE, FlashAttention-3 tables)."""
        if self.model is None:
            return np.ones(np.broadcast(seq_len, head_dim, batch_heads).shape)

        def eff(s, d, bh):
            try:
                return self.model.attention_efficiency(s, d, bh, True, pass_, kernel)
            except ValueError:          # the named kernel has no model on this device: the default one
                return self.model.attention_efficiency(s, d, bh, True, pass_, None)
        return self._shaped(eff, seq_len, head_dim, batch_heads) * self.level

    def attention_keys_factor(self, seq_len, keys_per_row, pass_: str, kernel: Optional[str] = None):
        """Efficiency of a fused attention kernel with `keys_per_row` keys per query row (sliding window, chunks)
        relative to the causal kernel of the same sequence length; 1 when ideal.

        Source: costs.kernels.KernelModel.attention_keys_factor."""
        if self.model is None:
            return np.ones(np.broadcast(seq_len, keys_per_row).shape)
        try:
            return self.model.attention_keys_factor(seq_len, keys_per_row, pass_, kernel)
        except ValueError:              # the named kernel has no model on this device: the default one
            return self.model.attention_keys_factor(seq_len, keys_per_row, pass_, None)

    def attention_table_kernel(self, pass_: str, kernel: Optional[str] = None) -> Optional[str]:
        """The measured table kernel (flash3, te, ...) that attention_efficiency costs `kernel` (None: the device's
        default) with for one pass; None when ideal or no named table matches the default."""
        if self.model is None:
            return None
        ops = self.model.ops
        key = (f"attention_{pass_}", "bf16", kernel)
        if kernel is not None and key in ops:
            return kernel
        default = ops.get((f"attention_{pass_}", "bf16", None))
        for op, dt, k in ops:
            if k is None or op != f"attention_{pass_}" or dt != "bf16" or default is None:
                continue
            m = ops[(op, dt, k)]
            if m is default or (m.basis == default.basis and m.level == default.level):
                return k
        return None

    def memory_efficiency(self, kind: str = "elementwise") -> float:
        """Measured fraction of the datasheet HBM bandwidth a memory-bound kernel of `kind` reaches (1 when ideal;
        a kind the device's table lacks takes the elementwise one)."""
        if self.model is None:
            return 1.0
        mem = self.model.memory
        return float((mem.get(kind) or mem["elementwise"]).efficiency)

    def stream_s(self, bytes_moved, kind: str = "elementwise"):
        """Time of memory-bound kernels of `kind` moving `bytes_moved` at the measured bandwidth fraction. The
        tables' per-kernel latency is not added: launch time is the host floor's (costs.layer.host_time_s).

        Source: SimuMax compute_mem_access_time (simumax/core/config.py, commit 4dcaae51), its measured
        efficiencies (simulator/presets/kernels/*.memory.csv)."""
        return memory_bound_time_s(bytes_moved, self.hbm_bytes_per_s, self.memory_efficiency(kind))


def kernel_rates(hw, dtype: str, index: Optional[ShapeIndex] = None,
                 framework_efficiency: float = 1.0) -> KernelRates:
    """KernelRates of profile `hw` for a job training in `dtype`: the profile's kernel model (measured tables or
    the transfer rule, costs.kernels.kernel_model_for) at level efficiency.kernel_level x `framework_efficiency`
    (the stack's fitted kernel throughput relative to the family's reference stacks, specs.overlay.
    framework_efficiency; 1.0 unless the framework calibration overlay fits one). Both multiply GEMM, grouped-GEMM
    and attention efficiencies only: memory-bound kernels, host floors and communication keep their own figures.

    Source: costs.kernels (module docstring); the profile's efficiency block for the level;
    hardware_profiles/calibration/frameworks.yaml for the framework's."""
    eff = hw.efficiency
    model = None if eff.kernel_model == "ideal" else cached_kernel_model(hw)
    return KernelRates(model=model, dtype=dtype, level=eff.kernel_level * float(framework_efficiency),
                       peak_flops_per_s=hw.peak_flops_per_s(dtype),
                       bf16_peak_flops_per_s=hw.peak_flops_per_s("bf16"),
                       hbm_bytes_per_s=hw.device.memory_bandwidth_bytes_per_s, index=index)


class _ProfileKey:
    """A profile keyed by what its kernel model reads (name, vendor, family, device), hashable for the cache."""

    def __init__(self, hw):
        self.hw = hw
        self.key = (hw.name, hw.vendor, hw.family, hw.device.model_dump_json())

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _ProfileKey) and self.key == other.key


@lru_cache(maxsize=128)
def _model_of(pk: _ProfileKey) -> KernelModel:
    return kernel_model_for(pk.hw)


def cached_kernel_model(hw) -> KernelModel:
    """kernel_model_for(hw), built once per distinct (name, vendor, family, device) in the process (calibration
    varies only the efficiency block and tiers, which the kernel model does not read)."""
    return _model_of(_ProfileKey(hw))
