"""Kernel compute model: the efficiency of each kernel, keyed by op and shape, per device.

Ops: GEMM (m, n, k, dtype; output m x n, reduction depth k), grouped GEMM (the experts of a MoE layer: `groups`
GEMMs of the same per-group m, n, k), fused attention (sequence, head dim, batch x heads, causal, forward or
backward, kernel) and memory-bound kernels (bytes moved, kind). Efficiency is a fraction of the device's dense peak
of the dtype (attention: of the bf16 peak, on executed FLOPs, i.e. half the s x s matrix when causal, the
FlashAttention-2/-3 papers' convention); memory-bound efficiency is a fraction of the datasheet HBM bandwidth.

How an efficiency is made (every op the same way):

    efficiency(shape) = min( shape_factor(shape; device) * exp(residual(shape)),  roofline(shape; device) )

- `shape_factor` is the physics the tables are normalised by: tile and wave quantisation over the device's compute
  units (a GEMM is cut into ceil(m/Tm) * ceil(n/Tn) output tiles per group, one per SM/CU at a time, in
  waves = ceil(tiles / units); fill = useful area / (waves * units * Tm * Tn)), times a saturation in the work
  each tile does (K depth for GEMMs, k / (k + k_half): a short reduction cannot amortise the tile's prologue and
  epilogue; keys per query row for attention, whose tiles are 128 query rows of one head).
  Source: NVIDIA Matrix Multiplication Background User's Guide (tile and wave quantisation); stas00/ml-engineering
  training/performance README, "Do more SMs give more TFLOPS?" (waves = ceil(C/S), C = ceil(m/Tm) * ceil(n/Tn)).
- `residual` is what the physics misses, learnt from the measured table: log(measured / shape_factor) at each
  measured shape, smoothed by Nadaraya-Watson kernel regression in log2-shape space (Gaussian kernel, bandwidth
  chosen by leave-one-out cross-validation), with a background term (the table's median residual, the device's
  measured ceiling) that takes over away from the data: residual(x) = (sum_i w_i(x) r_i + w0 r0) / (sum_i w_i(x)
  + w0), w_i = exp(-|x - x_i|^2 / (2 sigma^2)), w0 = PRIOR_WEIGHT. Why this scheme: the measured shapes are
  scattered (model-driven shape lists, not a grid), so tensor-product interpolators do not apply and a Delaunay
  interpolant is undefined outside the thin convex hull; inverse-distance weighting is exact at the points but
  spiky and needs the distances to every point per query. Kernel regression of the residual of a physical model
  averages the repeated measurements of a shape (TN/NN/NT layouts), is smooth, and decays to the physical
  fallback times the device ceiling beyond the table. A GEMM table's K half-point is the one whose shape factor
  leaves the least residual spread (`_select`: leave-one-out cannot tell half-points apart, the residual absorbs
  them near the data), the kernel width is chosen by leave-one-out. It is evaluated once at load time on a regular grid
  (GRID_STEP octave spacing; one matrix product per grid) and read by multilinear interpolation, so a lookup is
  index arithmetic on numpy arrays (benchmarks/bench_kernels.py: millions of lookups per second).
- `roofline`: a GEMM moves at least its operands and output once: efficiency <= intensity * HBM bandwidth *
  memory efficiency / peak (Williams et al. 2009, roofline model).

Beyond the table the residual is the background r0, so the efficiency is exactly the physical fallback:
ceiling * fill * k / (k + k_half) (tests/test_kernels.py checks it by hand).

Transfer rule (devices without a table for an op; `kernel_model_for`):
1. A table measured on the profile's own silicon is used as is (basis "measured"). A table of the same device in
   another dtype gives the shape dependence, its level scaled by the devices' MAMF ratio of the two dtypes.
2. Otherwise the relatives that have the table are ranked by `relative_distance`: same vendor first (a vendor
   change costs 10), then architecture generation distance, then |log2| ratios of compute units (wave size),
   tile area, and HBM bandwidth per FLOP. The nearest (and any within 0.25 of it, averaged) lend their residual
   surface; the target's own units, tile and bandwidth go into its shape factor and roofline.
3. The level moves by the ratio of best-shape GEMM fractions (MAMF / peak, a measurement of the device's sustained
   clocks and software): level_T = level_S * mamf_fraction_T / mamf_fraction_S, when both are measured.
4. Systolic rule (devices of an architecture listed in catalog.yaml `systolic`: TPU MXUs under XLA). GPU tables do
   not transfer to them: a GPU table's residual surface and level encode SM wave quantisation, cuBLAS tile choices
   and the GPU's sustained clocks, none of which a statically scheduled systolic array has. A (grouped) GEMM runs at
   the measured MXU matmul fraction times its padding fill, systolic_fill = m / (ceil(m/R) R) * n / (ceil(n/T) T) *
   k / (ceil(k/T) T) (weight axes k, n padded to the MXU width T, streamed rows m to R sublanes), under the
   roofline. Attention (Pallas splash/flash kernels, no TPU table) keeps the transferred attention surface, times
   the fill of the head dimension, which is the contraction of Q K^T and an output axis of P V (d / (ceil(d/T) T):
   0.5 for d = 128 on a 256-wide MXU).
5. Each derived op carries `basis` ("measured", "measured (bf16 shape, fp8 level from MAMF)", "transferred from X")
   and an expected error: the table's leave-one-out error when measured; the held-out check of the rule when
   transferred within a vendor (catalog.yaml `transfer_validation`, regenerated by
   benchmarks/kernels/transfer_check.py; B200 predicted without its tables); twice that across vendors (a stated
   convention: no cross-vendor table exists to validate it).
6. Softmax rule (attention transferred between devices that both give `softmax` facts in catalog.yaml: tensor
   FLOPs and MUFU exponentials per clock per SM). A fused attention kernel on these GPUs runs its matmuls and its
   softmax exponentials on different units that the measured kernels do not fully overlap (FlashAttention-4,
   arXiv 2603.05451: on B200 the exponential, at 16 per clock per SM against 8192 MMA FLOPs, bounds the forward
   pass); the time is taken as matmul + exponential time, t ~ 1 + r with r = softmax_exp_ratio, so a target's
   efficiency is the source's times (1 + r_source) / (1 + r_target). It moves only attention between devices whose
   exponential throughput per tensor FLOP differs (Blackwell Ultra doubles the MUFU rate at the same tensor rate).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from ..specs.hardware import HardwareProfile
from .kernel_data import KernelCatalog, MeasuredTable, load_kernel_catalog

GRID_STEP = 0.25                       # octaves between grid nodes
PRIOR_WEIGHT = 0.1                     # background weight: data farther than ~2.1 sigma yield to the device ceiling
BANDWIDTHS = (0.25, 0.35, 0.5, 0.7, 1.0)   # candidate kernel widths (octaves), chosen by leave-one-out
K_HALVES = (0.0, 32.0, 64.0, 128.0, 192.0, 256.0, 384.0, 512.0, 768.0)   # candidate saturation half-points
TILE_CHOICES = ((1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (0.5, 0.5), (2.0, 1.0), (1.0, 2.0))   # x the device tile
#: TILE_CHOICES as arrays for gemm_fill: the distinct m and n factors, each choice's index into them, its area
_TILE_AXES = tuple(np.array(x) for x in (
    sorted({c[0] for c in TILE_CHOICES}), sorted({c[1] for c in TILE_CHOICES}),
    [sorted({c[0] for c in TILE_CHOICES}).index(c[0]) for c in TILE_CHOICES],
    [sorted({c[1] for c in TILE_CHOICES}).index(c[1]) for c in TILE_CHOICES]))
_TILE_AREAS = np.array([fm * fn for fm, fn in TILE_CHOICES])
ATTENTION_TILE_Q = 128                 # query rows per attention tile (FlashAttention-2/3 forward block size)
CROSS_VENDOR_ERROR_FACTOR = 2.0
SPREAD_TIE = 1e-6                      # residual spreads closer than this are equal (`_select`)
GRID_AXES = {                          # log2 range of each residual axis
    "gemm": ((4.0, 20.0), (4.0, 20.0), (4.0, 20.0)),           # m, n, k
    "grouped_gemm": ((4.0, 20.0), (4.0, 20.0), (4.0, 20.0)),   # per-group m, n, k
    "attention": ((7.0, 20.0), (0.0, 12.0), (5.0, 9.0)),       # seq, batch x heads, head dim
}
PEAK_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp6", "fp4")
CHUNK = 1 << 15                        # elements per block of a lookup: temporaries stay in cache
MEMO_MAX_ELEMENTS = 256                # lookups this small go through the per-model memo (KernelModel._memo)
MEMO_MAX_ENTRIES = 1 << 16             # entries a model's memo holds before it is cleared


def chunked(fn, *arrays):
    """fn over broadcast, flattened arrays in blocks of CHUNK elements (same result as one call, several times
    faster on large inputs: numpy temporaries are reused from cache instead of freshly allocated)."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in arrays))
    shape = arrays[0].shape
    flat = [a.ravel() for a in arrays]
    size = flat[0].size
    if size <= CHUNK:
        return np.asarray(fn(*flat), dtype=float).reshape(shape)
    out = np.empty(size)
    for lo in range(0, size, CHUNK):
        out[lo:lo + CHUNK] = fn(*(a[lo:lo + CHUNK] for a in flat))
    return out.reshape(shape)


def memoized(memo: dict, tag: tuple, fn, *arrays):
    """chunked(fn, *arrays) for small inputs, each distinct element tuple computed once per `memo` (a dict kept by
    the caller) under `tag` (what else the result depends on). fn is elementwise, so an element's value does not
    depend on the other elements it is computed with: the same numbers as chunked, without re-running the
    lookup's fixed numpy work for shapes already seen (validation evaluates hundreds of small tables)."""
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        arrays = np.broadcast_arrays(*arrays)
        shape = arrays[0].shape
    if arrays[0].size > MEMO_MAX_ELEMENTS:
        return chunked(fn, *arrays)
    keys = [tag + k for k in zip(*(a.ravel().tolist() for a in arrays))]
    vals = [memo.get(k) for k in keys]
    missing = [i for i, v in enumerate(vals) if v is None]
    if missing:                       # computed into a local dict: another thread may clear the memo meanwhile
        new = list(dict.fromkeys(keys[i] for i in missing))
        cols = [np.array([k[len(tag) + j] for k in new], dtype=float) for j in range(len(arrays))]
        computed = dict(zip(new, np.asarray(fn(*cols), dtype=float).ravel().tolist()))
        if len(memo) > MEMO_MAX_ENTRIES:
            memo.clear()
        memo.update(computed)
        vals = [computed[k] if v is None else v for k, v in zip(keys, vals)]
    return np.array(vals, dtype=float).reshape(shape)


# ----------------------------------------------------------------------------------------------- physics
def wave_fill(tiles, units: int):
    """Fraction of the unit-slots doing work: tiles / (ceil(tiles / units) * units).

    Source: stas00/ml-engineering training/performance README ("wave quantization"); NVIDIA Matrix Multiplication
    Background User's Guide."""
    tiles = np.maximum(np.asarray(tiles, dtype=float), 1.0)
    return tiles / (np.ceil(tiles / units) * units)


def gemm_fill(m, n, groups, units: int, tile_m: int, tile_n: int):
    """Useful output area / area of the tile-slots occupied (tile padding and wave quantisation together),
    groups * m * n / (waves * units * Tm * Tn), waves = ceil(groups * ceil(m/Tm) * ceil(n/Tn) / units), for the
    best of the tile shapes a GEMM library chooses among per problem: the device's tile T = tile_m x tile_n, its
    halves (T/2 x T, T x T/2, T/2 x T/2) and doubles (2T x T, T x 2T) (cuBLAS heuristics; hipBLASLt/Tensile
    solution tables). Of these candidate sets, this one gave the lowest leave-one-out error on both SimuMax tables.

    Source: NVIDIA Matrix Multiplication Background User's Guide (tile and wave quantisation)."""
    m, n, g = (np.asarray(x, dtype=float) for x in (m, n, groups))
    fm, fn, im, jn = _TILE_AXES
    rows = np.ceil(m[..., None] / (fm * tile_m))          # tiles along m (n) for each distinct factor, last axis
    cols = np.ceil(n[..., None] / (fn * tile_n))
    area = np.ceil(g[..., None] * rows[..., im] * cols[..., jn] / units) * _TILE_AREAS   # every choice at once
    slots = area.min(axis=-1)              # fewest occupied tile-slot areas = best fill
    return g * m * n / (slots * (units * tile_m * tile_n))


def saturation(x, half: float):
    """x / (x + half): work per tile amortising a fixed prologue/epilogue (K depth; keys per attention row)."""
    x = np.asarray(x, dtype=float)
    return x / (x + half) if half > 0 else np.ones_like(x)


def axis_fill(x, width: float):
    """x / (ceil(x / width) * width): the used fraction of an axis padded to a multiple of `width`."""
    x = np.maximum(np.asarray(x, dtype=float), 1.0)
    return x / (np.ceil(x / width) * width)


def systolic_fill(m, n, k, tile: int, row_pad: int):
    """Used fraction of a systolic MXU by an (m x k) @ (k x n) matmul: the weight axes k and n padded to the MXU
    width `tile`, the streamed rows m to `row_pad` sublanes.

    Source: Austin et al. 2025, How To Scale Your Model (jax-ml/scaling-book tpus.md): the MXU multiplies
    bf16[8,128] @ bf16[128,128] per 8 cycles; "weight matrices need to be padded to at least size 128 (256 on TPU
    v6) in both dimensions"."""
    return axis_fill(m, row_pad) * axis_fill(n, tile) * axis_fill(k, tile)


def gemm_shape_factor(m, n, k, groups, units: int, tile_m: int, tile_n: int, k_half: float):
    """Physical shape dependence of a (grouped) GEMM: gemm_fill * k / (k + k_half)."""
    return gemm_fill(m, n, groups, units, tile_m, tile_n) * saturation(k, k_half)


def attention_shape_factor(seq_len, batch_heads, causal, units: int, kv_half: float):
    """Physical shape dependence of a fused attention kernel: wave fill of its b*h*ceil(s/128) tiles times the
    saturation in keys per query row (s/2 on average when causal).

    Source: Dao 2023, FlashAttention-2 (arXiv 2307.08691) sec. 3.2: one thread block per (batch, head, 128-row
    query block)."""
    s = np.asarray(seq_len, dtype=float)
    tiles = np.asarray(batch_heads, dtype=float) * np.ceil(s / ATTENTION_TILE_Q)
    keys = np.where(np.asarray(causal, dtype=bool), 0.5 * s, s)
    return wave_fill(tiles, units) * saturation(keys, kv_half)


def gemm_roofline(m, n, k, groups, in_bytes: float, peak_flops_per_s: float, hbm_bytes_per_s: float,
                  memory_efficiency: float):
    """Highest efficiency HBM traffic allows: flops / bytes * achieved bandwidth / peak (operands in the dtype,
    output in bf16, each moved once).

    Source: Williams, Waterman, Patterson 2009, "Roofline" (CACM 52(4))."""
    m, n, k, g = (np.asarray(x, dtype=float) for x in (m, n, k, groups))
    flops = 2.0 * g * m * n * k
    moved = g * ((m * k + k * n) * in_bytes + 2.0 * m * n)
    return flops / moved * hbm_bytes_per_s * memory_efficiency / peak_flops_per_s


# ---------------------------------------------------------------------------------- residual surface
def kernel_weights(x, points, sigma: float):
    """Gaussian weights exp(-|x - p|^2 / (2 sigma^2)) of every point for every query (queries x points)."""
    d2 = ((np.asarray(x, float)[:, None, :] - np.asarray(points, float)[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * sigma * sigma))


def smoothed_residual(x, points, values, sigma: float, background: float, prior_weight: float = PRIOR_WEIGHT):
    """Nadaraya-Watson estimate at x (queries x dims, log2 units) with a background value:
    (sum_i w_i v_i + w0 * background) / (sum_i w_i + w0). Source: Nadaraya 1964; Watson 1964."""
    w = kernel_weights(np.atleast_2d(x), points, sigma)
    return (w @ values + prior_weight * background) / (w.sum(1) + prior_weight)


def loo_error(points, values, sigma: float, background: float, prior_weight: float = PRIOR_WEIGHT) -> float:
    """Median |exp(leave-one-out estimate - value) - 1| over the points: the surface's predictive error."""
    w = kernel_weights(points, points, sigma)
    np.fill_diagonal(w, 0.0)
    est = (w @ values + prior_weight * background) / (w.sum(1) + prior_weight)
    return float(np.median(np.abs(np.expm1(est - values))))


@dataclass(frozen=True)
class LogGrid:
    """Values on a regular grid in log2 coordinates; multilinear interpolation, clamped at the edges."""

    lo: tuple[float, ...]
    step: float
    values: np.ndarray = field(hash=False, compare=False)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_layout_cache"}     # pickles without the cache

    def _layout(self) -> tuple:
        """(strides in elements, lo and clip bound per axis as a column, the flat offset of each of the 2^d
        corners in the order __call__ weights them, flattened values), computed once per grid."""
        cached = self.__dict__.get("_layout_cache")
        if cached is None:
            shape = self.values.shape
            strides = [int(s) for s in np.cumprod((1,) + shape[:0:-1])[::-1]]
            offsets = [0]                      # axis d's upper corner adds strides[d]: the lower half first
            for st in strides:
                offsets = offsets + [o + st for o in offsets]
            cached = (strides, np.array(self.lo, dtype=float)[:, None],
                      np.array([n - 1.000001 for n in shape], dtype=float)[:, None], np.array(offsets, dtype=np.intp),
                      self.values.ravel())
            object.__setattr__(self, "_layout_cache", cached)
        return cached

    def __call__(self, *coords) -> np.ndarray:
        """Multilinear interpolation at the coordinates (broadcast together), every axis at once: the same numbers
        as interpolating axis by axis (each element sees the same operations in the same order; the corner weights
        are the products lower-axis first), in a fixed number of numpy calls (a validation run makes ~1,000 small
        lookups)."""
        arrays = [np.asarray(c, dtype=float) for c in coords]
        if any(a.shape != arrays[0].shape for a in arrays):
            arrays = np.broadcast_arrays(*arrays)
        out_shape = arrays[0].shape
        strides, lo, bounds, offsets, flat = self._layout()
        u = np.log2(np.maximum(np.array([a.ravel() for a in arrays]), 1e-300))     # (axes, points)
        u -= lo
        u /= self.step
        np.clip(u, 0.0, bounds, out=u)
        i = u.astype(np.intp)                  # u >= 0: truncation is floor
        base = i[0] * strides[0]
        for d in range(1, len(strides)):
            base += i[d] * strides[d]
        frac = u - i
        pairs = np.array([1.0 - frac, frac])   # (lower, upper corner) weight of each axis
        weight = pairs[:, 0]                   # corner weights, axis 0 fastest
        for d in range(1, len(strides)):
            weight = (pairs[:, d, None, :] * weight[None, :, :]).reshape(-1, u.shape[1])
        terms = weight * flat.take(np.add.outer(offsets, base))     # every corner's values in one take
        out = np.zeros(u.shape[1])
        for term in terms:                     # corner by corner, as the axis-by-axis sum added them
            out += term
        return out.reshape(out_shape)


def residual_grid(points, values, sigma: float, background: float, axes: Sequence[tuple[float, float]],
                  step: float = GRID_STEP, prior_weight: float = PRIOR_WEIGHT) -> LogGrid:
    """`smoothed_residual` evaluated on every node of a regular log2 grid, as one matrix product: the Gaussian
    kernel is a product over axes, so the sums over points factor into (axis-0 weights) @ (Khatri-Rao product of
    the other axes' weights)."""
    points, values = np.asarray(points, float), np.asarray(values, float)
    nodes = [np.arange(lo, hi + 1e-9, step) for lo, hi in axes]
    per_axis = [np.exp(-(nd[:, None] - points[None, :, d]) ** 2 / (2.0 * sigma * sigma)) for d, nd in enumerate(nodes)]
    rest = per_axis[1]
    for w in per_axis[2:]:
        rest = (rest[:, None, :] * w[None, :, :]).reshape(-1, len(points))
    num = (per_axis[0] * values[None, :]) @ rest.T
    den = per_axis[0] @ rest.T
    grid = ((num + prior_weight * background) / (den + prior_weight)).reshape([len(nd) for nd in nodes])
    return LogGrid(lo=tuple(lo for lo, _ in axes), step=step, values=grid)


# ------------------------------------------------------------------------------------------- devices
@dataclass(frozen=True)
class DeviceFacts:
    """What the physical fallback and the transfer rule need to know about a device (catalog.yaml + profile)."""

    name: str
    vendor: str
    arch: str
    generation: int
    compute_units: int
    tile_m: int
    tile_n: int
    peak_flops_per_s: Mapping[str, float] = field(hash=False, compare=False)
    hbm_bytes_per_s: float = 0.0
    mamf_flops_per_s: Mapping[str, float] = field(default_factory=dict, hash=False, compare=False)
    note: str = ""
    systolic_fraction: Optional[float] = None   # systolic rule (module docstring, 4): measured matmul fraction
    row_pad: int = 8                            # systolic rule: sublanes the streamed rows are padded to
    flops_per_exp: Optional[float] = None       # softmax rule (module docstring, 6): bf16 tensor FLOPs per exp

    @property
    def systolic(self) -> bool:
        """True for a systolic-rule device (catalog.yaml `systolic`)."""
        return self.systolic_fraction is not None

    def compute_dtype(self, dtype: str) -> str:
        """The dtype whose peak a GEMM in `dtype` runs at (HardwareProfile.peak_flops_per_s's fallbacks)."""
        order = {"bf16": ("bf16", "fp16"), "fp16": ("fp16", "bf16"), "fp8": ("fp8", "bf16", "fp16"),
                 "fp4": ("fp4", "fp8", "bf16", "fp16"), "int8": ("int8", "bf16", "fp16"), "fp32": ("fp32",),
                 "tf32": ("tf32", "fp32")}[dtype]
        for d in order:
            if d in self.peak_flops_per_s:
                return d
        raise ValueError(f"device {self.name} has no peak for dtype {dtype}")

    def peak(self, dtype: str) -> float:
        return self.peak_flops_per_s[self.compute_dtype(dtype)]

    def mamf_fraction(self, dtype: str) -> Optional[float]:
        """Best-shape GEMM throughput / peak (MAMF), None where not measured; fp16 shares bf16's."""
        d = self.compute_dtype(dtype)
        key = "bf16" if d == "fp16" else d
        v = self.mamf_flops_per_s.get(key)
        return None if v is None else v / self.peak_flops_per_s[d]


def relative_distance(target: DeviceFacts, source: DeviceFacts) -> float:
    """How far a measured relative is from the target: vendor change 10, then generation steps within the vendor's
    line, then 0.5 |log2| compute-unit ratio (wave size), 0.25 |log2| tile-area ratio, 0.25 |log2| ratio of HBM
    bandwidth per bf16 FLOP."""
    d = 0.0 if target.vendor == source.vendor else 10.0
    if target.vendor == source.vendor:
        d += abs(target.generation - source.generation)
    d += 0.5 * abs(math.log2(target.compute_units / source.compute_units))
    d += 0.25 * abs(math.log2(target.tile_m * target.tile_n / (source.tile_m * source.tile_n)))
    bpf_t = target.hbm_bytes_per_s / target.peak("bf16")
    bpf_s = source.hbm_bytes_per_s / source.peak("bf16")
    return d + 0.25 * abs(math.log2(bpf_t / bpf_s))


def _profile_facts(hw: HardwareProfile, entry: Mapping, note: str = "") -> DeviceFacts:
    p = hw.device.peak_tflops
    peaks = {d: getattr(p, d) * 1e12 for d in PEAK_DTYPES if getattr(p, d, None) is not None}
    return DeviceFacts(
        name=hw.name, vendor=hw.vendor, arch=entry["arch"], generation=int(entry["generation"]),
        compute_units=int(entry["compute_units"]), tile_m=int(entry["tile"][0]), tile_n=int(entry["tile"][1]),
        peak_flops_per_s=peaks, hbm_bytes_per_s=hw.device.memory_bandwidth_bytes_per_s,
        mamf_flops_per_s={d: v * 1e12 for d, v in (entry.get("mamf") or {}).items()}, note=note,
        flops_per_exp=_flops_per_exp(entry))


def _flops_per_exp(entry: Mapping) -> Optional[float]:
    """bf16 tensor-core FLOPs per softmax exponential, per clock and SM (catalog `softmax`: tensor FLOPs and MUFU
    exponentials per clock per SM), None where the catalogue does not give them."""
    sm = entry.get("softmax")
    if not sm:
        return None
    return float(sm["tensor_bf16_flops_per_clock_per_sm"]) / float(sm["exp_per_clock_per_sm"])


def softmax_exp_ratio(flops_per_exp, head_dim, pass_: str):
    """Time of the softmax exponentials over the time of the attention matmuls of one kernel, per (query, key)
    pair: one exponential per pair in either pass (the backward recomputes P = exp(S - LSE)) against 4 d matmul
    FLOPs forward (Q K^T and P V) and 2.5 x that backward; r = flops_per_exp / (4 d) forward, / (10 d) backward.

    Source: Zadouri, Hoehnerbach, Shah, Liu, Thakkar, Dao 2026, FlashAttention-4 (arXiv 2603.05451) sec. 2-3
    (B200: 8192 bf16 MMA FLOPs and 16 MUFU exponentials per clock per SM; the exponential, not the MMA, bounds the
    forward pass); Dao 2023 (arXiv 2307.08691) sec. 4.1 (backward = 2.5 x forward FLOPs)."""
    d = np.asarray(head_dim, dtype=float)
    return flops_per_exp / ((10.0 if pass_ == "bwd" else 4.0) * d)


def power_scaled_mamf(facts: DeviceFacts, entry: Mapping, catalog: KernelCatalog) -> DeviceFacts:
    """A device whose catalogue entry says `mamf_from: {device: D}` (no MAMF of its own) takes D's measured MAMF
    scaled by the sustained-clock ratio of the two board powers under the DVFS rule of specs/power.py: D runs at
    clock_fraction_for_power(P_D, P_self) of this device's clock when P_D < P_self (1 otherwise), so
    MAMF_self = MAMF_D / that fraction (same tensor cores per clock and the same dense peaks; only the power limit
    that sets the sustained clock differs). Said in `note`.

    Source: specs/power.py (P_dyn ~ f^3 under DVFS, static share 15%); the profiles' power_w."""
    src = (entry.get("mamf_from") or {}).get("device")
    if not src or facts.mamf_flops_per_s:
        return facts
    from ..specs.loading import load_hardware
    from ..specs.power import clock_fraction_for_power
    sib_hw = load_hardware(src)
    sib = _profile_facts(sib_hw, catalog.devices[src])
    p_self, p_sib = load_hardware(facts.name).device.power_w, sib_hw.device.power_w
    frac = clock_fraction_for_power(p_sib, p_self) if p_self and p_sib else 1.0
    mamf = {d: v / frac for d, v in sib.mamf_flops_per_s.items()}
    note = (facts.note + "; " if facts.note else "") + (
        f"MAMF from {src} x {1.0 / frac:.3f} (sustained clock at {p_self:g} W vs {p_sib:g} W, specs/power.py)")
    return replace(facts, mamf_flops_per_s=mamf, note=note)


def _sibling_mamf(facts: DeviceFacts, catalog: KernelCatalog) -> DeviceFacts:
    """A device without a MAMF takes the MAMF fractions of a catalogued sibling of the same architecture and
    generation (same silicon at another clock or power, e.g. MI350X from MI355X), said in `note`."""
    if facts.mamf_flops_per_s:
        return facts
    from ..specs.loading import load_hardware
    for name, e in catalog.devices.items():
        if e.get("mamf") and e["arch"] == facts.arch and int(e["generation"]) == facts.generation:
            sib = _profile_facts(load_hardware(name), e)
            mamf = {d: sib.mamf_fraction(d) * facts.peak(d) for d in sib.mamf_flops_per_s}
            note = (facts.note + "; " if facts.note else "") + f"MAMF fraction assumed from {name}"
            return replace(facts, mamf_flops_per_s=mamf, note=note)
    return facts


def device_facts(hw: HardwareProfile, catalog: KernelCatalog) -> DeviceFacts:
    """Facts for a profile: its catalogue entry, else those of the catalogued device of the same family (or
    vendor) with the nearest bf16 peak, said in `note`; a missing MAMF from a same-generation sibling."""
    if hw.name in catalog.devices:
        entry = catalog.devices[hw.name]
        facts = power_scaled_mamf(_profile_facts(hw, entry), entry, catalog)
        return _with_systolic(_sibling_mamf(facts, catalog), catalog)
    from ..specs.loading import load_hardware
    same = [n for n, e in catalog.devices.items() if e["arch"] == hw.family]
    same = same or [n for n in catalog.devices if load_hardware(n).vendor == hw.vendor] or list(catalog.devices)
    peak = hw.peak_flops_per_s("bf16")
    best = min(same, key=lambda n: abs(math.log(load_hardware(n).peak_flops_per_s("bf16") / peak)))
    entry = dict(catalog.devices[best])
    entry.pop("mamf", None)
    return _with_systolic(_sibling_mamf(_profile_facts(hw, entry, note=f"compute units and tile assumed from {best}"),
                                        catalog), catalog)


def _with_systolic(facts: DeviceFacts, catalog: KernelCatalog) -> DeviceFacts:
    """The systolic rule's facts (catalog.yaml `systolic`) on a device of a listed architecture."""
    sy = catalog.systolic or {}
    if facts.arch not in (sy.get("archs") or ()):
        return facts
    return replace(facts, systolic_fraction=float(sy["matmul_fraction"]), row_pad=int(sy.get("row_pad", 8)))


def machine_facts(table: MeasuredTable, catalog: KernelCatalog) -> DeviceFacts:
    """Facts of the machine a table was measured on: its profile, or the profile it is a SKU of with the
    machine's own MAMF and bandwidth."""
    from ..specs.loading import load_hardware
    base = device_facts(load_hardware(table.silicon), catalog)
    m = catalog.machines.get(table.machine)
    if m is None:
        return base
    mamf = {d: v * 1e12 for d, v in (m.get("mamf") or {}).items()}
    return replace(base, name=table.machine, mamf_flops_per_s=mamf,
                   hbm_bytes_per_s=float(m.get("hbm_tb_per_s", base.hbm_bytes_per_s / 1e12)) * 1e12)


# --------------------------------------------------------------------------------------- fitted surfaces
@dataclass(frozen=True)
class OpSurface:
    """The residual surface of one op fitted on one measured table (on the machine it was measured on)."""

    op: str                 # gemm | grouped_gemm | attention_fwd | attention_bwd
    dtype: str
    kernel: Optional[str]
    default: bool           # the kernel the default training stack runs (False: used only when asked by name)
    table_id: str
    machine: DeviceFacts
    half: float             # k_half (GEMMs) or kv_half (attention), chosen with sigma by leave-one-out
    sigma: float
    level: float            # background log residual: log of the measured ceiling
    grid: LogGrid
    loo_error: float        # median relative leave-one-out error of the table's own shapes
    num_shapes: int


def _aggregate(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean residual per distinct shape (a shape measured in several layouts counts once)."""
    uniq, inv = np.unique(np.round(points, 9), axis=0, return_inverse=True)
    sums = np.bincount(inv.ravel(), weights=values, minlength=len(uniq))
    return uniq, sums / np.bincount(inv.ravel(), minlength=len(uniq))


def _background(points: np.ndarray, values: np.ndarray, large_log2: float) -> float:
    """The device ceiling: median residual of the large shapes (every axis >= 2**large_log2) when the table has at
    least three of them, else of all shapes (a table dominated by tiny, latency-bound shapes must not set the
    level of large ones)."""
    big = (points >= large_log2).all(axis=1)
    return float(np.median(values[big] if big.sum() >= 3 else values))


def residual_spread(values: np.ndarray) -> float:
    """Median absolute deviation of log residuals: how much of a table the physical shape factor leaves
    unexplained (0: the physics alone reproduces every shape up to one level)."""
    return float(np.median(np.abs(values - np.median(values))))


def _select(points: np.ndarray, factor_for, measured: np.ndarray, halves: Sequence[float], large_log2: float = 10.0,
            half_by: str = "loo"):
    """(loo, half, sigma, points, values, background) minimising the leave-one-out error over the kernel width and,
    with half_by="loo", over the saturation half-point too; with half_by="spread" the half-point is the one whose
    physical shape factor explains the table best (least `residual_spread`; ties, as in a table that does not vary
    the saturating axis, keep the smallest), then the width by leave-one-out.

    Why GEMM tables take half_by="spread": the smoothed residual absorbs any K half-point near the measured shapes
    (the A100 table's leave-one-out error is 1.74-1.85% for every k_half from 0 to 768), so leave-one-out cannot
    tell them apart, yet away from the data the residual decays to the background and the efficiency follows
    k / (k + k_half) alone. The A100 tables have no k below 512 (k = 512: 0.61-0.65 of peak, k >= 4096: about
    0.75): the leave-one-out choice (k_half 512 GEMM, 384 grouped) put batched GEMMs of k = 128 (unfused
    attention's QK^T) at 0.22 of peak, the least-spread one (256 both) at 0.28. Attention tables keep the
    leave-one-out choice (B200's backward table, the one that varies the sequence, is reproduced better by it)."""
    by_half = []
    for half in halves:
        pts, vals = _aggregate(points, np.log(measured / factor_for(half)))
        by_half.append((residual_spread(vals), half, pts, vals))
    if half_by == "spread":
        least = min(c[0] for c in by_half)
        by_half = [next(c for c in by_half if c[0] <= least + SPREAD_TIE)]
    best = None
    for _, half, pts, vals in by_half:
        bg = _background(pts, vals, large_log2)
        for sigma in BANDWIDTHS:
            e = loo_error(pts, vals, sigma, bg)
            if best is None or e < best[0] - 1e-12:
                best = (e, half, sigma, pts, vals, bg)
    return best


def fit_gemm_surface(table: MeasuredTable, machine: DeviceFacts, op: str) -> OpSurface:
    """Residual surface of a (grouped) GEMM table; efficiencies re-expressed against the machine's peak."""
    c = table.columns
    m, n, k = c["m"], c["n"], c["k"]
    g = c["groups"] if "groups" in c else np.ones_like(m)
    eff = c["efficiency"] * table.peak_tflops * 1e12 / machine.peak(table.dtype)
    pts = np.log2(np.stack([m, n, k], axis=1))
    u, tm, tn = machine.compute_units, machine.tile_m, machine.tile_n
    loo, half, sigma, p, v, bg = _select(pts, lambda h: gemm_shape_factor(m, n, k, g, u, tm, tn, h), eff, K_HALVES,
                                         half_by="spread")
    return OpSurface(op=op, dtype=table.dtype, kernel=table.kernel, default=table.default, table_id=table.table_id,
                     machine=machine, half=half,
                     sigma=sigma, level=bg, grid=residual_grid(p, v, sigma, bg, GRID_AXES[op]), loo_error=loo,
                     num_shapes=len(v))


def fit_attention_surfaces(table: MeasuredTable, machine: DeviceFacts) -> list[OpSurface]:
    """One residual surface per pass (forward, backward) of a fused-attention table (bf16 peak)."""
    c, out = table.columns, []
    for pass_ in ("fwd", "bwd"):
        sel = c["pass"] == pass_
        if not sel.any():
            continue
        s, bh = c["seq_len"][sel], (c["batch"] * c["heads"])[sel]
        causal = c["causal"][sel] == "true"
        eff = c["efficiency"][sel] * table.peak_tflops * 1e12 / machine.peak("bf16")
        pts = np.log2(np.stack([s, bh, c["head_dim_qk"][sel]], axis=1))
        u = machine.compute_units
        loo, half, sigma, p, v, bg = _select(pts, lambda h: attention_shape_factor(s, bh, causal, u, h), eff,
                                             (0.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0), large_log2=99.0)
        out.append(OpSurface(op=f"attention_{pass_}", dtype="bf16", kernel=table.kernel, default=table.default,
                             table_id=table.table_id,
                             machine=machine, half=half, sigma=sigma, level=bg,
                             grid=residual_grid(p, v, sigma, bg, GRID_AXES["attention"]), loo_error=loo,
                             num_shapes=len(v)))
    return out


@dataclass(frozen=True)
class MemoryKind:
    """Achieved fraction of the datasheet HBM bandwidth of one kind of memory-bound kernel, and its fixed time."""

    efficiency: float
    latency_s: float
    basis: str


@lru_cache(maxsize=1)
def measured_surfaces() -> tuple[tuple[OpSurface, ...], tuple[tuple[str, DeviceFacts, Mapping[str, MemoryKind]], ...]]:
    """Every table of the catalogue fitted once: (op surfaces, (table id, machine, memory kinds)).

    The fit (~0.3 s) is kept in a per-user cache file named by a hash of the tables and of this code
    (surfaces_cache.py), so a fresh process reads it instead of refitting; any change of either refits."""
    from .surfaces_cache import cached
    return cached(_fit_measured_surfaces)


def _fit_measured_surfaces():
    cat = load_kernel_catalog()
    surfaces, memories = [], []
    for t in cat.tables:
        machine = machine_facts(t, cat)
        if t.op in ("gemm", "grouped_gemm"):
            surfaces.append(fit_gemm_surface(t, machine, t.op))
        elif t.op == "attention":
            surfaces.extend(fit_attention_surfaces(t, machine))
        elif t.op == "memory":
            kinds = {str(kd): MemoryKind(float(e), float(l) * 1e-6, f"measured ({t.table_id})")
                     for kd, e, l in zip(t.columns["kind"], t.columns["efficiency"], t.columns["latency_us"])}
            memories.append((t.table_id, machine, kinds))
    return tuple(surfaces), tuple(memories)


# ------------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class OpModel:
    """An op's efficiency surface as used on one device: residual grid (level moved), saturation half-point,
    how it is grounded and the error to expect."""

    grid: LogGrid
    half: float
    level: float                     # log of the ceiling on this device
    basis: str
    expected_error_pct: float
    sources: tuple[str, ...]
    source_flops_per_exp: Optional[float] = None   # softmax rule: the measured machine's, when every source has one

    @property
    def ceiling(self) -> float:
        """The device's measured (or transferred) large-shape efficiency: exp(background residual)."""
        return math.exp(self.level)


def _dtype_class(dtype: str) -> str:
    return "bf16" if dtype in ("bf16", "fp16") else dtype


def _level_shift(target: DeviceFacts, t_dtype: str, source: DeviceFacts, s_dtype: str) -> float:
    """log(mamf_fraction_T / mamf_fraction_S) (rule step 3). A dtype without a MAMF on either side falls back to
    both devices' bf16 fractions (the dtypes' sustained fractions assumed to move together); 0 when the target or
    the source has no MAMF at all."""
    ft, fs = target.mamf_fraction(t_dtype), source.mamf_fraction(s_dtype)
    if ft is None or fs is None:
        if target.name == source.name:
            return 0.0
        ft, fs = target.mamf_fraction("bf16"), source.mamf_fraction("bf16")
    return 0.0 if ft is None or fs is None else math.log(ft / fs)


def derive_op(target: DeviceFacts, op: str, dtype: str, surfaces: Sequence[OpSurface],
              validation: Mapping[str, dict], kernel: Optional[str] = None) -> Optional[OpModel]:
    """The transfer rule (module docstring) for one op and dtype on `target`; None when no table has the op."""
    cands = [s for s in surfaces if s.op == op and (s.default if kernel is None else s.kernel == kernel)]
    if not cands:
        return None
    cdt = _dtype_class(target.compute_dtype(dtype))
    if target.systolic and op in ("gemm", "grouped_gemm"):
        return systolic_op(target, cands[0].grid, validation)
    own = [s for s in cands if s.machine.name == target.name]
    own_same = [s for s in own if _dtype_class(s.dtype) == cdt]
    if own_same or own:
        s = (own_same or own)[0]
        shift = 0.0 if own_same else _level_shift(target, cdt, s.machine, s.dtype)
        basis = (f"measured ({s.table_id})" if own_same else
                 f"measured {s.dtype} shape ({s.table_id}), {cdt} level from MAMF")
        err = 100.0 * (s.loo_error + abs(shift))
        return OpModel(LogGrid(s.grid.lo, s.grid.step, s.grid.values + shift), s.half, s.level + shift, basis,
                       err, (s.table_id,))
    dist = {id(s): relative_distance(target, s.machine) + (0.0 if _dtype_class(s.dtype) == cdt else 3.0)
            for s in cands}
    best = min(dist.values())
    chosen = [s for s in cands if dist[id(s)] <= best + 0.5]
    shifts = [_level_shift(target, cdt, s.machine, s.dtype) for s in chosen]
    values = ShiftedMean([s.grid.values for s in chosen], shifts)
    level = float(np.mean([s.level + sh for s, sh in zip(chosen, shifts)]))
    names = " + ".join(f"{s.machine.name} ({s.table_id})" for s in chosen)
    loo = 100.0 * max(s.loo_error for s in chosen)
    if all(s.machine.arch == target.arch and s.machine.generation == target.generation for s in chosen):
        err = loo + 100.0 * max(abs(x) for x in shifts)          # another SKU of the same silicon (not validated)
    else:
        v = validation.get(op, validation.get("gemm", {}))
        err = float(v.get("median_error_pct", 50.0)) + loo
        if any(s.machine.vendor != target.vendor for s in chosen):
            err *= CROSS_VENDOR_ERROR_FACTOR
    fpe = [s.machine.flops_per_exp for s in chosen]
    src_fpe = float(np.mean(fpe)) if op.startswith("attention") and all(f is not None for f in fpe) else None
    return OpModel(LogGrid(chosen[0].grid.lo, chosen[0].grid.step, values), float(np.mean([s.half for s in chosen])),
                   level, f"transferred from {names}", err, tuple(s.table_id for s in chosen), src_fpe)


class ShiftedMean:
    """np.mean([g + s for g, s in zip(grids, shifts)], axis=0) of a transferred op's residual grids, computed only
    at the elements a lookup reads (LogGrid.__call__ reads its values through shape, ravel() and take()): averaging
    whole 65^3 grids took ~3 ms per op, and validation derives ~100 ops to read a few hundred points of each. An
    element is the same sum in the same order divided by the same count as np.mean's (bit for bit);
    np.asarray(...) gives the whole grid."""

    __slots__ = ("grids", "shifts", "shape")

    def __init__(self, grids, shifts):
        self.grids = tuple(np.asarray(g) for g in grids)
        self.shifts = tuple(shifts)
        self.shape = self.grids[0].shape

    def ravel(self) -> "ShiftedMean":
        return ShiftedMean([g.ravel() for g in self.grids], self.shifts)

    def take(self, indices) -> np.ndarray:
        acc = self.grids[0].take(indices) + self.shifts[0]       # np.mean's reduction: first + second + ..., / k
        for g, sh in zip(self.grids[1:], self.shifts[1:]):
            acc += g.take(indices) + sh
        acc /= float(len(self.grids))
        return acc

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.mean([g + sh for g, sh in zip(self.grids, self.shifts)], axis=0)
        return out if dtype is None else out.astype(dtype)


def systolic_op(target: DeviceFacts, like: LogGrid, validation: Mapping[str, dict]) -> OpModel:
    """A (grouped) GEMM under the systolic rule (module docstring, 4): a flat residual at log(matmul fraction) on
    the grid of `like`, no saturation half-point (the shape dependence is systolic_fill). No kernel table of the
    vendor exists, so it carries the widest band, as every cross-vendor transfer: the GEMM transfer check's median
    error (catalog.yaml transfer_validation) times CROSS_VENDOR_ERROR_FACTOR (a stated convention)."""
    level = math.log(target.systolic_fraction)
    err = float(validation.get("gemm", {}).get("median_error_pct", 50.0)) * CROSS_VENDOR_ERROR_FACTOR
    return OpModel(LogGrid(like.lo, like.step, np.full_like(like.values, level)), 0.0, level,
                   f"transferred by the systolic rule: MXU matmul fraction {target.systolic_fraction:g} (TPU v2 "
                   f"profile) x MXU padding fill (catalog.yaml systolic)", err, ())


def derive_memory(target: DeviceFacts, memories) -> dict[str, MemoryKind]:
    """Memory-bound kinds: the device's own table, else the nearest relative's efficiencies (rule step 2)."""
    own = [m for m in memories if m[1].name == target.name]
    if own:
        return dict(own[0][2])
    if not memories:
        return {}
    tid, src, kinds = min(memories, key=lambda m: relative_distance(target, m[1]))
    return {k: replace(v, basis=f"transferred from {src.name} ({tid})") for k, v in kinds.items()}


@dataclass(frozen=True)
class KernelModel:
    """Efficiency and time of kernels on one device, vectorised over numpy arrays of shapes.

    `ops` maps (op, dtype, kernel) -> OpModel: op gemm | grouped_gemm | attention_fwd | attention_bwd; dtype as
    asked for (bf16, fp16, fp8, fp4; attention bf16); kernel None for the default training stack's kernels, or a
    named one (deepgemm, flash3, te, ...). `memory` maps a kind (elementwise, permute_fwd, permute_bwd,
    cross_entropy, ...) -> MemoryKind."""

    device: DeviceFacts
    ops: Mapping[tuple[str, str, Optional[str]], OpModel] = field(hash=False)
    memory: Mapping[str, MemoryKind] = field(hash=False)
    _memo: dict = field(default_factory=dict, init=False, repr=False, hash=False, compare=False)

    def op(self, op: str, dtype: str = "bf16", kernel: Optional[str] = None) -> OpModel:
        """The OpModel of `op`; `dtype` runs as the device's compute dtype (fp8 on a device without fp8: bf16)."""
        try:
            key = (op, self.device.compute_dtype(dtype), kernel)
            return self.ops[key if key in self.ops else (op, dtype, kernel)]   # attention: keyed bf16 (V100: fp16)
        except KeyError:
            have = sorted(f"{d}/{k or 'default'}" for o, d, k in self.ops if o == op)
            raise ValueError(f"{self.device.name}: no {op} model for dtype {dtype}, kernel {kernel or 'default'}; "
                             f"available: {', '.join(have)}") from None

    @property
    def basis(self) -> str:
        """How the headline op (bf16 GEMM) is grounded: 'measured (...)' or 'transferred from ...'."""
        return self.op("gemm").basis

    @property
    def expected_error_pct(self) -> float:
        return self.op("gemm").expected_error_pct

    def bases(self) -> dict[str, str]:
        """Basis of every op, by 'op/dtype/kernel' (and 'memory/<kind>')."""
        out = {f"{o}/{d}/{k or 'default'}": m.basis for (o, d, k), m in self.ops.items()}
        out.update({f"memory/{k}": m.basis for k, m in self.memory.items()})
        return out

    def _roofline(self, m, n, k, groups, dtype: str):
        mem = self.memory.get("elementwise")
        if mem is None:
            return np.inf
        in_bytes = {"fp8": 1.0, "int8": 1.0, "fp4": 0.5}.get(self.device.compute_dtype(dtype), 2.0)
        return gemm_roofline(m, n, k, groups, in_bytes, self.device.peak(dtype), self.device.hbm_bytes_per_s,
                             mem.efficiency)

    def _systolic_fill(self, m, n, k):
        """systolic_fill on this device's MXU (systolic rule)."""
        return systolic_fill(m, n, k, self.device.tile_n, self.device.row_pad)

    def grouped_gemm_efficiency(self, groups, m, n, k, dtype: str = "bf16", kernel: Optional[str] = None):
        """Fraction of the dtype's peak reached by `groups` GEMMs of per-group (m x k) @ (k x n).

        Source: the residual surface of the measured grouped-GEMM table (module docstring), fill over all groups'
        tiles; SimuMax B200/A100 tables (commit 4dcaae51), DeepGEMM H800 FP8."""
        om = self.op("grouped_gemm", dtype, kernel)
        d = self.device

        def block(g, m, n, k):
            phys = self._systolic_fill(m, n, k) if d.systolic else \
                gemm_shape_factor(m, n, k, g, d.compute_units, d.tile_m, d.tile_n, om.half)
            return np.minimum(phys * np.exp(om.grid(m, n, k)), self._roofline(m, n, k, g, dtype))
        return memoized(self._memo, ("grouped_gemm", dtype, kernel), block, groups, m, n, k)

    def gemm_efficiency(self, m, n, k, dtype: str = "bf16", kernel: Optional[str] = None):
        """Fraction of the dtype's dense peak reached by an (m x k) @ (k x n) GEMM.

        Source: measured GEMM tables (SimuMax commit 4dcaae51; DeepGEMM) with the physical fallback and transfer
        rule of the module docstring; MAMF (stas00/ml-engineering) for the level of transferred devices."""
        om = self.op("gemm", dtype, kernel)
        d = self.device

        def block(m, n, k):
            phys = self._systolic_fill(m, n, k) if d.systolic else \
                gemm_shape_factor(m, n, k, 1.0, d.compute_units, d.tile_m, d.tile_n, om.half)
            return np.minimum(phys * np.exp(om.grid(m, n, k)), self._roofline(m, n, k, 1.0, dtype))
        return memoized(self._memo, ("gemm", dtype, kernel), block, m, n, k)

    def gemm_time_s(self, m, n, k, dtype: str = "bf16", kernel: Optional[str] = None):
        """2 m n k / (peak x gemm_efficiency)."""
        flops = 2.0 * np.asarray(m, float) * np.asarray(n, float) * np.asarray(k, float)
        return flops / (self.device.peak(dtype) * self.gemm_efficiency(m, n, k, dtype, kernel))

    def grouped_gemm_time_s(self, groups, m, n, k, dtype: str = "bf16", kernel: Optional[str] = None):
        """2 groups m n k / (peak x grouped_gemm_efficiency)."""
        flops = 2.0 * np.asarray(groups, float) * np.asarray(m, float) * np.asarray(n, float) * np.asarray(k, float)
        return flops / (self.device.peak(dtype) * self.grouped_gemm_efficiency(groups, m, n, k, dtype, kernel))

    def attention_efficiency(self, seq_len, head_dim, batch_heads, causal=True, pass_: str = "fwd",
                             kernel: Optional[str] = None):
        """Fraction of the bf16 peak a fused attention kernel reaches on its executed FLOPs (fp8 runs keep
        attention in bf16). `batch_heads` = micro-batch x query heads on the device.

        Source: SimuMax B200/A100 fused-attention tables (TransformerEngine/cuDNN), FlashAttention-3 on H100
        (pytorch/benchmark ff65cb67), with the wave-fill fallback of `attention_shape_factor`."""
        om = self.op(f"attention_{pass_}", "bf16", kernel)
        units = self.device.compute_units
        mxu = float(self.device.tile_n) if self.device.systolic else 0.0

        fpe_s, fpe_t = om.source_flops_per_exp, self.device.flops_per_exp

        def block(s, d, bh, c):
            eff = attention_shape_factor(s, bh, c > 0.5, units, om.half) * np.exp(om.grid(s, bh, d))
            if fpe_s is not None and fpe_t is not None and fpe_s != fpe_t:     # softmax rule (module docstring, 6)
                eff = eff * (1.0 + softmax_exp_ratio(fpe_s, d, pass_)) / (1.0 + softmax_exp_ratio(fpe_t, d, pass_))
            return eff * axis_fill(d, mxu) if mxu else eff
        return memoized(self._memo, ("attention", pass_, kernel), block, seq_len, head_dim, batch_heads,
                        np.asarray(causal, dtype=bool))

    def attention_keys_factor(self, seq_len, keys_per_row, pass_: str = "fwd", kernel: Optional[str] = None):
        """Efficiency of a causal fused attention kernel whose query rows see `keys_per_row` keys on average
        (sliding-window or chunked masks) relative to one of the same sequence length (s/2 keys per row): the
        ratio of the key saturations of `attention_shape_factor`, at most 1 (a short row amortises the query
        block's fixed prologue and epilogue over fewer key blocks).

        Source: Dao 2023 (FlashAttention-2, arXiv 2307.08691) sec. 3.1-3.2 (per query block: load Q, loop over
        key/value blocks, rescale and write O)."""
        half = self.op(f"attention_{pass_}", "bf16", kernel).half
        s = np.asarray(seq_len, dtype=float)
        keys = np.minimum(np.asarray(keys_per_row, dtype=float), 0.5 * s)
        return saturation(keys, half) / saturation(0.5 * s, half)

    def attention_time_s(self, batch, heads, seq_len, head_dim, causal=True, pass_: str = "fwd",
                         kernel: Optional[str] = None):
        """Executed FLOPs / (bf16 peak x efficiency): forward 4 b h s^2 d (half when causal), backward 2.5x.

        Source: Dao 2023 (arXiv 2307.08691) sec. 4.1 FLOP counts (backward = 2.5 x forward)."""
        b, h, s, d = (np.asarray(x, float) for x in (batch, heads, seq_len, head_dim))
        executed = np.where(np.asarray(causal, bool), 0.5, 1.0) * (2.5 if pass_ == "bwd" else 1.0)
        flops = 4.0 * b * h * s * s * d * executed
        eff = self.attention_efficiency(s, d, b * h, causal, pass_, kernel)
        return flops / (self.device.peak("bf16") * eff)

    def memory_bound_time_s(self, bytes_moved, kind: str = "elementwise"):
        """latency + bytes / (datasheet HBM bandwidth x efficiency of the kind); 0 bytes take no time.

        Source: SimuMax compute_mem_access_time (simumax/core/config.py, commit 4dcaae51) and its measured
        efficiencies and latencies."""
        mk = self.memory[kind]
        b = np.asarray(bytes_moved, dtype=float)
        return np.where(b > 0, mk.latency_s + b / (self.device.hbm_bytes_per_s * mk.efficiency), 0.0)


def _gemm_dtypes(dev: DeviceFacts) -> list[str]:
    return [d for d in ("bf16", "fp16", "fp8", "int8", "fp4") if d in dev.peak_flops_per_s or d == "bf16"]


def build_kernel_model(hw: HardwareProfile, exclude_tables: Sequence[str] = ()) -> KernelModel:
    """The kernel model of a profile from the shipped tables, leaving out `exclude_tables` (held-out checks)."""
    cat = load_kernel_catalog()
    surfaces, memories = measured_surfaces()
    surfaces = [s for s in surfaces if s.table_id not in exclude_tables]
    memories = [m for m in memories if m[0] not in exclude_tables]
    dev = device_facts(hw, cat)
    ops: dict[tuple[str, str, Optional[str]], tuple] = {}
    for op in ("gemm", "grouped_gemm", "attention_fwd", "attention_bwd"):
        dtypes = ["bf16"] if op.startswith("attention") else _gemm_dtypes(dev)
        kernels = [None] + sorted({s.kernel for s in surfaces if s.op == op and s.kernel})
        for dt in dtypes:
            for kern in kernels:
                if kern is not None and not any(s.kernel == kern and _dtype_class(s.dtype) ==
                                                _dtype_class(dev.compute_dtype(dt)) for s in surfaces):
                    continue                  # a named kernel only in the dtypes it was measured in
                if any(s.op == op and (s.default if kern is None else s.kernel == kern) for s in surfaces):
                    ops[(op, dt, kern)] = (dev, op, dt, surfaces, cat.transfer_validation, kern)
    return KernelModel(device=dev, ops=DerivedOps(ops), memory=derive_memory(dev, memories))


class DerivedOps(Mapping):
    """(op, dtype, kernel) -> OpModel, each derived (derive_op) on first use: a process asks for a few of a
    device's ops, and deriving one moves or averages whole residual grids. Keys are those derive_op answers for
    (an op some table measures: derive_op returns None exactly when none does)."""

    def __init__(self, args: Mapping[tuple[str, str, Optional[str]], tuple]):
        self._args, self._done = dict(args), {}

    def __getitem__(self, key) -> OpModel:
        om = self._done.get(key)
        if om is None:
            dev, op, dt, surfaces, validation, kern = self._args[key]
            om = self._done[key] = derive_op(dev, op, dt, surfaces, validation, kernel=kern)
        return om

    def __contains__(self, key) -> bool:
        return key in self._args

    def __iter__(self):
        return iter(self._args)

    def __len__(self) -> int:
        return len(self._args)


@lru_cache(maxsize=64)
def _model_by_name(name: str, exclude_tables: tuple[str, ...]) -> KernelModel:
    from ..specs.loading import load_hardware
    return build_kernel_model(load_hardware(name), exclude_tables)


def kernel_model_for(profile: Union[str, HardwareProfile], exclude_tables: Sequence[str] = ()) -> KernelModel:
    """The kernel model of a hardware profile (name or object) with its basis: measured tables where the
    profile's silicon was measured, the transfer rule elsewhere (module docstring). Models of named profiles are
    built once per process."""
    if isinstance(profile, str):
        return _model_by_name(profile, tuple(exclude_tables))
    return build_kernel_model(profile, exclude_tables)


def table_predictions(model: KernelModel, table: MeasuredTable) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(predicted, measured) efficiencies of every row of a measured table, by op, on `model`'s device peak."""
    c, out = table.columns, {}
    if table.op in ("gemm", "grouped_gemm"):
        meas = c["efficiency"] * table.peak_tflops * 1e12 / model.device.peak(table.dtype)
        if table.op == "gemm":
            pred = model.gemm_efficiency(c["m"], c["n"], c["k"], table.dtype)
        else:
            pred = model.grouped_gemm_efficiency(c["groups"], c["m"], c["n"], c["k"], table.dtype)
        out[table.op] = (pred, meas)
    elif table.op == "attention":
        for pass_ in ("fwd", "bwd"):
            sel = c["pass"] == pass_
            if sel.any():
                pred = model.attention_efficiency(c["seq_len"][sel], c["head_dim_qk"][sel],
                                                  (c["batch"] * c["heads"])[sel], c["causal"][sel] == "true", pass_)
                meas = c["efficiency"][sel] * table.peak_tflops * 1e12 / model.device.peak("bf16")
                out[f"attention_{pass_}"] = (pred, meas)
    return out


def held_out_errors(profile: str, table_id: str) -> dict[str, dict[str, float]]:
    """The transfer rule checked on a held-out table: predict `table_id`'s rows on `profile` with that table left
    out. Per op: median |predicted/measured - 1| (%), median predicted/measured, the median error once that level
    ratio is divided out (the shape part, %), and the row count."""
    model = kernel_model_for(profile, exclude_tables=(table_id,))
    out = {}
    for t in load_kernel_catalog().tables:
        if t.table_id != table_id:
            continue
        for op, (pred, meas) in table_predictions(model, t).items():
            ratio = pred / meas
            level = float(np.median(ratio))
            out[op] = {"median_error_pct": 100.0 * float(np.median(np.abs(ratio - 1.0))), "median_ratio": level,
                       "shape_error_pct": 100.0 * float(np.median(np.abs(ratio / level - 1.0))), "rows": len(ratio)}
    return out
