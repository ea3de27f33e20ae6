"""The analytic engine: one training step of every layout in a LayoutTable, composed in closed form over numpy
arrays from the shared cost functions (composition only: every duration comes from simulator.costs).

Composition (all per device of the busiest pipeline rank, one step):

    step = m * tau_max                       compute + exposed TP/EP/CP/PP comm of one micro-batch, slowest rank
         + (pipeline fill/drain)             bubble, per schedule (pipeline.closed_form.pipeline_time_s)
         + exposed DP / ZeRO communication   what backward/forward does not hide (costs.communication)
         + exposed offload                   host link, NVMe and CPU optimizer (analytic.offload, costs.offload)
         + optimizer step + fixed overhead   (costs.optimizer, none where offloaded; the profile's step_overhead_ms)

One code path evaluates one layout or a million.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import reduce

import numpy as np

from .. import metrics
from ..costs.communication import dp_step_comm_s, layer_comm, local_sgd_sync_s
from ..costs.flops import param_tensors_per_layer
from ..costs.compute import ShapeIndex
from ..costs.layer import LayerCosts, layer_costs
from ..costs.layer_mix import LayerKindDelta, layer_kind_delta, mixed_layers
from ..costs.offload import zero3_prefetch_possible
from ..costs.optimizer import grad_buffer_passes, optimizer_step_time_s
from ..costs.params import rank_params
from ..costs.sizes import sizes
from ..costs.stage import (HOST_LAYERS_EVERY_RANK, RankKind, edge_costs,
                           first_max, logits_s, memory_columns, rank_kinds, stage_times, step_overhead_s)
from ..feasibility import memory_reason, structural_reasons, subject_of
from ..pipeline.closed_form import (interleaved_steady_fraction, num_micro_batches, pipeline_time_s,
                                     two_chunk_pipeline_time_s)
from ..pipeline.two_chunk import overlapped_forward_backward_s
from ..specs.layout import SCHEDULE_CODES
from ..specs.job import Job
from ..specs.layout_table import LayoutTable
from .offload import offload_columns, offload_terms


def pick(idx, arrays, masks=None) -> np.ndarray:
    """Per row, the entry of per-kind (first, middle, last) values chosen by `idx` (0, 1, 2). `masks`: idx == k for
    k = 0, 1, ... (kind_masks), when the caller picks several times with one idx."""
    n = len(idx)
    out = np.broadcast_to(arrays[-1], (n,))
    for k in range(len(arrays) - 2, -1, -1):
        out = np.where(idx == k if masks is None else masks[k], arrays[k], out)
    return out


def kind_masks(idx) -> tuple:
    """(idx == 0, idx == 1): the masks pick() compares for, computed once for the picks of one rank choice."""
    return idx == 0, idx == 1


@dataclass(frozen=True)
class PipelinePace:
    """The pipelined part of a step: which rank kind paces it (`idx`: 0 first, 1 middle, 2 last), its time per
    micro-batch, its compute per micro-batch, its layers, the pipeline time and its bubble."""

    idx: np.ndarray
    tau_max: np.ndarray
    compute_fwd_s: np.ndarray
    compute_bwd_s: np.ndarray
    p2p_per_micro_s: np.ndarray
    pipeline_s: np.ndarray
    bubble_s: np.ndarray
    layers: np.ndarray
    elementwise_s: np.ndarray     # per micro-batch, of the pacing rank
    fp8_cast_s: np.ndarray
    host_s: np.ndarray
    hidden_ep_s: object = 0.0     # EP / PP communication DualPipe's overlapped units hide (per step)
    hidden_pp_s: object = 0.0
    embedding: object = None      # the pacing rank's embedding share per micro-batch (None: 1 on the first rank)
    pass_fwd_s: object = None     # the pacing rank's forward / backward pass per micro-batch (compute + exposed comm)
    pass_bwd_s: object = None
    masks: object = None          # kind_masks(idx), for further picks by the pacing rank
    moe_excess: object = 0.0      # the pacing rank's MoE layers beyond the average share (costs.layer_mix)
    delta: object = None          # costs.layer_mix.LayerKindDelta (None: no dense/MoE mix to price)


def pipeline_pace(sz, lc, comm, edge, kinds, delta=None) -> PipelinePace:
    """Per-micro-batch time tau of each rank kind (compute, exposed communication, two pipeline sends per chunk
    boundary), the slowest one, and the pipeline time of the schedule from tau_max and the sum over stages.
    `delta`: costs.layer_mix.LayerKindDelta where the stages' dense/MoE layer mix differs (None: it does not)."""
    code = sz.table.schedule
    chunks = np.where(code == SCHEDULE_CODES["zb-v"], 2.0, np.where(code == SCHEDULE_CODES["dualpipe"], 1.0, sz.vpp))
    p2p_per_micro = 2.0 * comm.p2p_s * chunks          # one send forward and one backward per chunk a micro-batch passes
    times = [stage_times(lc, comm, edge, k, chunks, delta) for k in kinds]
    tau, fwd, bwd = [], [], []
    for st, k in zip(times, kinds):
        cf, cb, mf, mb = st.compute_fwd_s, st.compute_bwd_s, st.comm_fwd_s, st.comm_bwd_s
        tau.append(np.where(k.valid, cf + cb + mf + mb + p2p_per_micro, -np.inf))
        fwd.append(np.where(k.valid, cf + mf + 0.5 * p2p_per_micro, -np.inf))
        bwd.append(np.where(k.valid, cb + mb + 0.5 * p2p_per_micro, -np.inf))
    fb_max = reduce(np.maximum, fwd) + reduce(np.maximum, bwd)     # GPipe's pace (np.max over the kinds, unstacked)
    idx, tau_max = first_max(tau)
    masks = kind_masks(idx)
    nl_pace = pick(idx, [k.layers for k in kinds], masks)
    pass_fwd, pass_bwd = pick(idx, fwd, masks), pick(idx, bwd, masks)
    # sum over all stages of one micro-batch's time (fill/drain passes once through each); multi-token prediction
    # modules run one more layer each (costs.stage.with_mtp)
    layers_run = sz.num_layers + sz.model.mtp_layers
    tau_sum = (layers_run * (lc.forward_s + lc.backward_s + lc.recompute_s + comm.fwd_s + comm.bwd_s)
               + edge.logits_fwd_s + edge.logits_bwd_s + edge.embedding_comm_s + sz.pp * p2p_per_micro
               + edge_host_sum_s(sz, edge, times))
    w_pace = nl_pace * lc.wgrad_s
    if delta is not None:
        w_pace = w_pace + pick(idx, [k.moe_excess for k in kinds], masks) * delta.wgrad_s
    t_pipe = pipeline_time_s(tau_max, tau_sum, sz.num_micro, sz.vpp, code, w_pace,
                             layers_run * lc.wgrad_s, fb_max)
    hid_ep = hid_pp = 0.0
    if sz.framework is not None and sz.framework.overlap.pp_p2p_overlap:
        # overlap_p2p_comm: the steady phase's sends run under the opposite pass (interleaved schedule only)
        hid_pp = np.where(code == SCHEDULE_CODES["interleaved"],
                          sz.num_micro * p2p_per_micro * interleaved_steady_fraction(sz.num_micro, sz.pp, sz.vpp), 0.0)
        t_pipe = t_pipe - hid_pp
    two = (code == SCHEDULE_CODES["dualpipe"]) | (code == SCHEDULE_CODES["zb-v"])
    if np.any(two):
        t2, hid_ep, hid_pp2 = two_chunk_time_s(sz, lc, comm, idx, nl_pace, pass_fwd, pass_bwd, p2p_per_micro)
        t_pipe = np.where(two, t2, t_pipe)
        hid_ep, hid_pp = np.where(two, hid_ep, 0.0), np.where(two, hid_pp2, hid_pp)
    return PipelinePace(idx=idx, tau_max=tau_max, compute_fwd_s=pick(idx, [t.compute_fwd_s for t in times], masks),
                        pass_fwd_s=pass_fwd, pass_bwd_s=pass_bwd,
                        compute_bwd_s=pick(idx, [t.compute_bwd_s for t in times], masks),
                        p2p_per_micro_s=p2p_per_micro,
                        pipeline_s=t_pipe, bubble_s=t_pipe - sz.num_micro * tau_max + hid_ep + hid_pp,
                        layers=nl_pace, elementwise_s=pick(idx, [t.elementwise_s for t in times], masks),
                        fp8_cast_s=pick(idx, [t.fp8_cast_s for t in times], masks),
                        host_s=pick(idx, [t.host_s for t in times], masks), hidden_ep_s=hid_ep, hidden_pp_s=hid_pp,
                        embedding=pick(idx, [k.embedding for k in kinds], masks), masks=masks,
                        moe_excess=(pick(idx, [k.moe_excess for k in kinds], masks) if delta is not None else 0.0),
                        delta=delta)


def edge_host_sum_s(sz, edge, times):
    """Host work outside the layers that one micro-batch exposes summed over the pipeline's stages: every stage's
    every-rank part, and beyond it what the first rank's embedding and the last rank's loss expose (costs.stage.
    pass_host_s; one rank is both with pp = 1)."""
    every = edge.host_pass_s * HOST_LAYERS_EVERY_RANK
    first, last = times[0].edge_host_s - every, times[-1].edge_host_s - every
    return sz.pp * every + first + np.where(sz.pp > 1, last, 0.0)


def two_chunk_time_s(sz, lc, comm, idx, nl_pace, f_pace, bwd_pace, p2p_per_micro):
    """(pipelined time, hidden EP time, hidden PP time) of DualPipe / ZB-V rows (pipeline.closed_form.
    two_chunk_pipeline_time_s) from the pacing rank's forward and backward per micro-batch. DualPipe's unit of one
    forward and one full backward runs the EP all-to-alls and pipeline sends of each beside the other's compute
    (pipeline.two_chunk.overlapped_forward_backward_s); what its n units hide comes off the EP and PP time.

    Source: DeepSeek-V3 report (arXiv 2412.19437) sec. 3.2.1; Qi et al. 2024 (arXiv 2401.10241) sec. 6."""
    w = nl_pace * lc.wgrad_s
    ep_f, ep_b, pp_half = nl_pace * comm.ep_fwd_s, nl_pace * comm.ep_bwd_s, 0.5 * p2p_per_micro
    fb = overlapped_forward_backward_s(f_pace - ep_f - pp_half, bwd_pace - ep_b - pp_half, ep_f + pp_half,
                                       ep_b + pp_half)
    code, p, m = sz.table.schedule, sz.pp, sz.num_micro
    t = two_chunk_pipeline_time_s(code, p, m, f_pace, bwd_pace - w, w, fb)
    n_fb = np.where(code == SCHEDULE_CODES["dualpipe"],
                    np.maximum(0.0, m - 1.5 * p + 1.0 - np.where(p == 2, 1.0, 0.0)), 0.0)
    hidden = n_fb * (f_pace + bwd_pace - fb)
    comm_unit = np.maximum(ep_f + ep_b + 2.0 * pp_half, 1e-300)
    return t, hidden * (ep_f + ep_b) / comm_unit, hidden * 2.0 * pp_half / comm_unit


def time_columns(sz, lc, comm, edge, pace: PipelinePace, dp_exposed, t_opt, t_fixed, t_offload=0.0) -> dict:
    """The step's time breakdown (time_*_s columns, results.TIME_CATEGORIES) of the pacing rank: its micro-batches'
    compute split into GEMM/attention compute, elementwise kernels, FP8 casts, host-bound time and recompute,
    its exposed communication by kind, the bubble, the exposed DP/ZeRO traffic, the optimizer and the overhead."""
    shape = pace.tau_max.shape
    mm, nl_pace = sz.num_micro, pace.layers
    emb_pace = np.where(pace.idx == 0, 1.0, 0.0) if pace.embedding is None else pace.embedding
    bd_recompute = mm * nl_pace * lc.recompute_s
    bd_elem, bd_fp8, bd_host = mm * pace.elementwise_s, mm * pace.fp8_cast_s, mm * pace.host_s
    d, x = pace.delta, pace.moe_excess
    tp_x = ep_x = cp_x = 0.0
    if d is not None:       # the pacing rank's MoE layers beyond the average share (costs.layer_mix)
        bd_recompute = bd_recompute + mm * x * d.recompute_s
        tp_x, ep_x, cp_x = (mm * x * (a + b) for a, b in ((d.tp_fwd_s, d.tp_bwd_s), (d.ep_fwd_s, d.ep_bwd_s),
                                                          (d.cp_fwd_s, d.cp_bwd_s)))
    return {
        "time_compute_s": mm * (pace.compute_fwd_s + pace.compute_bwd_s) - bd_recompute - bd_elem - bd_fp8 - bd_host,
        "time_elementwise_s": bd_elem,
        "time_fp8_cast_s": bd_fp8,
        "time_host_s": bd_host,
        "time_recompute_s": bd_recompute,
        "time_tp_comm_s": mm * (nl_pace * (comm.tp_fwd_s + comm.tp_bwd_s) + emb_pace * edge.embedding_comm_s) + tp_x,
        "time_ep_comm_s": mm * nl_pace * (comm.ep_fwd_s + comm.ep_bwd_s) - pace.hidden_ep_s + ep_x,
        "time_cp_comm_s": mm * nl_pace * (comm.cp_fwd_s + comm.cp_bwd_s) + cp_x,
        "time_pp_comm_s": mm * pace.p2p_per_micro_s - pace.hidden_pp_s,
        "time_bubble_s": pace.bubble_s,
        "time_dp_comm_s": dp_exposed,
        "time_offload_s": np.broadcast_to(t_offload, shape),
        "time_optimizer_s": np.broadcast_to(t_opt, shape),
        "time_overhead_s": np.broadcast_to(np.float64(t_fixed), shape),
    }


def zero3_fill_passes(sz):
    """Forward + backward passes the pipeline's fill and drain put on the critical path beyond the m of its steady
    state: ZeRO-3's per-pass gathers lengthen each of them (costs.communication.zero3_step_exposed_s). p - 1, or
    (p - 1) / v interleaved, 0 without pipelining; 0 for ZB-H1, whose deferred W passes absorb part of the fill
    (measured against the discrete-event engine, tests/test_engine_agreement_small_m.py).

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 2.2 ((m + p - 1) passes on the critical path, each
    lengthened by what it waits for); Zhao et al. 2023 (PyTorch FSDP, arXiv 2304.11277) sec. 3.3 (the gather
    precedes each pass)."""
    code = sz.table.schedule
    fill = np.where(code == SCHEDULE_CODES["interleaved"], (sz.pp - 1.0) / sz.vpp, sz.pp - 1.0)
    return np.where(code == SCHEDULE_CODES["zb-h1"], 0.0, fill)


def metric_columns(sz, step) -> dict:
    """MFU, HFU, TFLOP/s per device, tokens/s and the FLOPs per step (simulator.metrics)."""
    job = sz.job
    tokens = float(sz.training.tokens_per_step)
    model_flops = metrics.model_flops_per_step(sz.costs, tokens)
    hw_flops = metrics.hardware_flops_per_step(sz.costs, tokens, sz.recompute, sz.table.flash_attention)
    peak = sz.hardware.utilization_peak_flops_per_s(sz.training.dtype)
    return {
        "step_time_s": step,
        "mfu": metrics.mfu(model_flops, step, job.num_devices, peak),
        "hfu": metrics.hfu(hw_flops, step, job.num_devices, peak),
        "tokens_per_s": metrics.tokens_per_s(tokens, step),
        "tflops_per_device": metrics.tflops_per_device(model_flops, step, job.num_devices),
        "model_flops_per_step": np.broadcast_to(np.float64(model_flops), step.shape),
        "hardware_flops_per_step": hw_flops,
    }


#: Rows evaluated together. The engine makes ~1,100 whole-array passes; blocks of this size keep every float64
#: temporary (16,000 rows x 8 B = 128,000 B) in the CPU's cache and just under glibc's default mmap threshold
#: (128 KiB: no fresh page mappings per temporary even where the threshold is fixed, as Dask's
#: MALLOC_TRIM_THRESHOLD_ fixes it), so a million rows take a fraction of the memory (issue #13: 2.2x faster than
#: one pass, 0.2 GB instead of 1.4 GB). Twice the earlier 8,192 rows halves the per-block Python work (~2.5 ms a
#: block): 1.16x the layouts/s on the search's formable rows, 1.25x on a mostly unformable table.
BLOCK_ROWS = 16000


def _rows(t: LayoutTable, rows, filled: dict | None = None) -> LayoutTable:
    """The rows `rows` (a slice or an index array) of `t`. A one-value column (a stride-0 broadcast, as
    LayoutTable.from_columns stores one) is written out for the block, no gather: a contiguous column keeps numpy's
    SIMD loops, which a stride-0 operand does not get (+6% instructions per evaluation). `filled` (a dict the
    caller keeps across its blocks) holds those written-out columns (read-only) for the last block length, so
    each is written once for blocks of one length."""
    n = len(range(len(t))[rows]) if isinstance(rows, slice) else len(rows)
    if filled is not None and filled.get("n") != n:
        filled.clear()
        filled["n"] = n
    part = {}
    for f in fields(t):
        v = getattr(t, f.name)
        if not isinstance(v, np.ndarray):
            continue
        if v.strides == (0,) and len(v):
            key = (f.name, v.dtype.str, v[0].item())
            col = None if filled is None else filled.get(key)
            if col is None:
                col = np.full(n, v[0], v.dtype)
                col.flags.writeable = False
                if filled is not None:
                    filled[key] = col
            part[f.name] = col
        else:
            part[f.name] = v[rows]
    if t.stage_layers is not None:
        part["stage_layers"] = t.stage_layers[rows] if isinstance(rows, slice) else \
            tuple(t.stage_layers[i] for i in rows.tolist())
    return t.replace(**part)


def _contiguous(rows: np.ndarray):
    """A slice for a run of consecutive row indices (views instead of copies), else the indices."""
    return slice(int(rows[0]), int(rows[-1]) + 1) if len(rows) and rows[-1] - rows[0] + 1 == len(rows) else rows


#: An unformable block whose rows lie within this many times their number of consecutive table rows is composed as
#: that slice (_span).
SPAN_SLACK = 1.25


def _span(rows: np.ndarray):
    """The rows of an unformable block as a slice of the table where they are most of the rows between their first
    and last (views, no gather of the layout columns nor scatter of the results): the few formable rows inside get
    their memory composed too, and evaluate() writes their own evaluation over it afterwards. Else the indices."""
    if len(rows) and rows[-1] - rows[0] + 1 <= SPAN_SLACK * len(rows):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def structural_mask(job: Job, t: LayoutTable) -> np.ndarray:
    """The structural reason bits (feasibility.RULES but memory) of every row of `t`, from integer checks on the
    layout columns alone (no cost is computed): the rows with a bit cannot be formed.

    Source: feasibility.structural_reasons (the one table of rules); pipeline.closed_form.num_micro_batches."""
    m = num_micro_batches(job.training.global_batch, t.micro_batch, t.dp)
    return structural_reasons(subject_of(job.model, job.training, job.num_devices, t, m, job.hardware))


#: Result columns at least this large come from Python's allocator (_fresh_column).
FRESH_MAP_BYTES = 1 << 22


def _fresh_column(n: int, dtype) -> np.ndarray:
    """An n-row result column (zero-filled). Large ones come from Python's allocator (a bytearray) rather than
    numpy's, which on Linux asks for transparent huge pages above 4 MB: where the kernel compacts memory for them on
    first touch (THP defrag 'madvise'), a fresh process spent 0.3-0.6 s of system time per million-row result on
    it, most of a first call's excess over a warm one (issue #13); with 4 KB pages it spends 0.1-0.2 s."""
    dtype = np.dtype(dtype)
    nbytes = n * dtype.itemsize
    if nbytes < FRESH_MAP_BYTES:
        return np.empty(n, dtype=dtype)
    return np.frombuffer(bytearray(nbytes), dtype=dtype, count=n)


def _same(a, b) -> bool:
    return bool(a == b) or bool(a != a and b != b)          # NaN equals NaN


#: Columns that are often one value over a whole table (zero where the job or its layouts have no such cost or
#: tier: no offload, a dense model, no FP8, no context parallelism): evaluate keeps them as broadcasts when they are.
CONSTANT_CANDIDATES = frozenset((
    "time_fp8_cast_s", "time_ep_comm_s", "time_cp_comm_s", "time_offload_s", "off_h2d_fwd_s", "off_d2h_fwd_s",
    "off_h2d_bwd_s", "off_d2h_bwd_s", "off_cpu_adam_s", "off_param_copy_s", "off_nvme_s", "off_update_s",
    "mem_host_bytes", "mem_nvme_bytes", "fits_host", "fits_nvme"))


def _constant(v: np.ndarray):
    """v[0] if every entry of the 1-d array v has its bits, else None."""
    if v.ndim != 1 or v.size == 0:
        return None
    bits = v.view(np.uint64) if v.dtype == np.float64 else v
    return v[0] if bool((bits == bits[0]).all()) else None


class _Columns:
    """The output columns of a table evaluated in parts: each part's columns land on its rows. A column that is one
    0-d or broadcast (stride 0) constant in every part stays a read-only broadcast of it. `keep` (None: all) names
    the columns kept; the others are dropped part by part."""

    def __init__(self, n: int, keep=None):
        self.n, self.out, self.const, self.order = n, {}, {}, []
        self.keep = None if keep is None else frozenset(keep)

    def add(self, rows, res: dict) -> None:
        n = self.n
        for k, v in res.items():
            if self.keep is not None and k not in self.keep:
                continue
            v = np.asarray(v)
            bcast = v.ndim == 0 or (v.ndim == 1 and v.strides == (0,))
            if not bcast and k in CONSTANT_CANDIDATES and k not in self.out:
                c = _constant(v)
                if c is not None:
                    v, bcast = np.broadcast_to(c, v.shape), True
            if k not in self.out and k not in self.const:
                self.order.append(k)
                if bcast:
                    self.const[k] = v.reshape(-1)[0] if v.size else v
                    continue
                self.out[k] = _fresh_column(n, v.dtype) if v.ndim == 1 else np.empty((n,) + v.shape[1:], v.dtype)
            elif k in self.const:
                c = self.const[k]
                if bcast and v.dtype == np.asarray(c).dtype and _same(v.reshape(-1)[0], c):
                    continue
                full = _fresh_column(n, np.result_type(v, c)) if v.ndim == 1 else \
                    np.empty((n,) + v.shape[1:], dtype=np.result_type(v, c))
                full[...] = c                        # rows written so far held the constant; later ones overwrite
                self.out[k] = full
                del self.const[k]
            self.out[k][rows] = v

    def result(self) -> dict:
        return {k: (np.broadcast_to(self.const[k], (self.n,)) if k in self.const else self.out[k]) for k in self.order}


def _kept(res: dict, columns) -> dict:
    """`res` with only the keys in `columns` (every key for None), in its order."""
    if columns is None:
        return res
    keep = frozenset(columns)
    return {k: v for k, v in res.items() if k in keep}


def evaluate(job: Job, t: LayoutTable, block_rows: int = BLOCK_ROWS, prune: bool = True,
             columns=None) -> dict:
    """Evaluate every layout of `t`. Returns a dict of equal-length numpy arrays (SI units).

    `columns` (None: every column) names the keys the caller needs: the others are dropped block by block, so a
    million-row evaluation holds only those (the same numbers, in evaluate_block's order).

    Tables longer than `block_rows` are evaluated in blocks of that many rows (evaluate_block on each) and the
    columns assembled; the numbers are those of one call on the whole table (every formula is row-wise).
    A column that is one constant in every block stays a read-only broadcast of it (as evaluate_block returns it).

    `prune` (default): rows with a structural reason (structural_mask: integer checks, before any cost) skip the
    time model: only their memory is composed (evaluate_unformable_block), so their memory columns, fits, memory
    bits and reasons are those of the full evaluation, while the figures an impossible split does not have (step
    time and its breakdown, MFU, HFU, throughput, bubble, offload and DP traffic) are NaN and `pacing_rank` -1.
    Formable rows get exactly the numbers of `prune=False`.

    Source: step = pipeline time of the slowest rank kind + exposed DP/ZeRO communication + optimizer + overhead
    (Narayanan et al. 2021, arXiv 2104.04473, sec. 2.2 and 3; Rajbhandari et al. 2020, arXiv 1910.02054, sec. 5);
    evaluate_block composes it.
    """
    n = len(t)
    structural, filled = None, {}
    if prune:                                       # in blocks too: cache-sized temporaries
        if n <= block_rows:
            structural = structural_mask(job, t)
        else:                                       # written block by block, in reasons' compact type
            structural = np.empty(n, COMPACT_DTYPES["reasons"])
            for a in range(0, n, block_rows):
                structural[a:a + block_rows] = structural_mask(job, _rows(t, slice(a, a + block_rows), filled))
    formable = None if structural is None else structural == 0
    if formable is None or formable.all():
        if n <= block_rows:
            return _kept(evaluate_block(job, t, structural), columns)
        cols, cache = _Columns(n, columns), {}
        for a in range(0, n, block_rows):
            rows = slice(a, min(n, a + block_rows))
            cols.add(rows, evaluate_block(job, _rows(t, rows, filled), None if structural is None else structural[rows],
                                          cache))
        return cols.result()
    cols, cache = _Columns(n, columns), {}
    ok, bad = np.flatnonzero(formable), np.flatnonzero(~formable)
    for a in range(0, len(bad), block_rows):       # first: their NaN columns stay constants until a formable block
        rows = _span(bad[a:a + block_rows])       # fills the whole column with them (_Columns.add)
        cols.add(rows, evaluate_unformable_block(job, _rows(t, rows, filled), structural[rows]))
    for a in range(0, len(ok), block_rows):
        rows = _contiguous(ok[a:a + block_rows])
        cols.add(rows, evaluate_block(job, _rows(t, rows, filled), np.zeros(len(formable[rows]), np.int64), cache))
    return cols.result()


def distinct_layer_costs(job: Job, sz, cache: dict | None = None) -> tuple:
    """(costs.layer.layer_costs, costs.stage.logits_s) of every row of `sz`, computed once per distinct combination
    of the columns they depend on (tp, cp, ep, the expert TP degree, micro-batch, flash attention, sequence
    parallelism, recompute) and gathered back: the same numbers (every formula is row-wise, the kernel model too),
    a fraction of the passes. `cache` (a dict evaluate() keeps for one job across its blocks) holds the
    combinations already computed, so each is computed once per evaluation."""
    t = sz.table
    index = ShapeIndex.of(t.tp, t.cp, t.ep, sz.etp, t.micro_batch, t.flash_attention, sz.sequence_parallel,
                          t.recompute)
    if index is None or (cache is None and 4 * len(index.rep) > len(t)):
        return layer_costs(sz), logits_s(sz)
    rep = index.rep
    keys = list(zip(*(np.asarray(c)[rep].tolist() for c in (t.tp, t.cp, t.ep, sz.etp, t.micro_batch,
                                                          t.flash_attention, sz.sequence_parallel, t.recompute))))
    cache = {} if cache is None else cache
    missing = [i for i, k in enumerate(keys) if k not in cache]
    names = [f.name for f in fields(LayerCosts)] + ["logits_fwd", "logits_bwd"]
    if missing:
        sub = sizes(job, _rows(t, rep[missing]))
        lc = layer_costs(sub)
        values = [getattr(lc, f.name) for f in fields(lc)] + list(logits_s(sub))
        if "scalars" not in cache:
            cache["scalars"] = {k: v for k, v in zip(names, values) if np.ndim(v) == 0}
        arrays = [np.broadcast_to(v, (len(missing),)) for k, v in zip(names, values) if k not in cache["scalars"]]
        for j, row in enumerate(np.stack(arrays, axis=1) if arrays else np.zeros((len(missing), 0))):
            cache[keys[missing[j]]] = row
    scalars = cache["scalars"]
    per_key = np.stack([cache[k] for k in keys], axis=1)     # (column, combination): each column contiguous
    inverse = index.inverse
    cols = dict(zip([k for k in names if k not in scalars], (c.take(inverse) for c in per_key)))   # one gather each
    cols.update(scalars)
    return (LayerCosts(**{f.name: cols[f.name] for f in fields(LayerCosts)}),
            (cols["logits_fwd"], cols["logits_bwd"]))


def kind_delta(job: Job, sz, kinds):
    """costs.layer_mix.LayerKindDelta (an MoE layer's passes over a dense layer's) of every row of `sz`, computed
    only on the rows whose rank kinds hold other than the model's average dense/MoE mix (zero on the others); None
    where no row does (a dense model, an all-MoE model, one pipeline stage)."""
    if not mixed_layers(job.model):
        return None
    need = reduce(np.logical_or, [np.asarray(k.moe_excess) != 0 for k in kinds])
    if not np.any(need):
        return None
    rows = np.flatnonzero(need)
    sub = sz if len(rows) == len(sz.table) else sizes(job, _rows(sz.table, rows))
    d = layer_kind_delta(sub, layer_costs, layer_comm)
    if sub is sz:
        return d
    n = len(sz.table)

    def spread(v):
        out = np.zeros(n)
        out[rows] = np.broadcast_to(v, (len(rows),))
        return out

    return LayerKindDelta(**{f.name: spread(getattr(d, f.name)) for f in fields(LayerKindDelta)})


def evaluate_block(job: Job, t: LayoutTable, structural=None, cache: dict | None = None) -> dict:
    """Evaluate every layout of `t` in one vectorised pass (evaluate's keys and numbers).

    Keys: step_time_s, mfu, hfu, tokens_per_s, tflops_per_device, the time breakdown (time_*_s), the memory
    breakdown (mem_*_bytes, mem_total_bytes), fits, reasons (bit mask, 0 = feasible), num_micro_batches,
    bubble_fraction and the per-rank layer split.

    Source: step = pipeline time of the slowest rank kind + exposed DP/ZeRO communication + optimizer + overhead
    (Narayanan et al. 2021, arXiv 2104.04473, sec. 2.2 and 3; Rajbhandari et al. 2020, arXiv 1910.02054, sec. 5).
    """
    sz = sizes(job, t)
    lc, logits = distinct_layer_costs(job, sz, cache)
    comm = layer_comm(sz, lc)
    edge = edge_costs(sz, lc, comm, logits)
    kinds = rank_kinds(sz)
    delta = kind_delta(job, sz, kinds)
    if structural is None:
        structural = structural_reasons(subject_of(job.model, job.training, job.num_devices, t, sz.num_micro,
                                                   job.hardware))
    reasons = np.array(structural, dtype=np.int64)
    pace = pipeline_pace(sz, lc, comm, edge, kinds, delta)
    mem = memory_columns(sz, kinds)
    reasons |= memory_reason(mem)

    params = [rank_params(sz, *k.held()) for k in kinds]
    idx, masks = pace.idx, pace.masks
    dense_t, expert_t = pick(idx, [p[0] for p in params], masks), pick(idx, [p[1] for p in params], masks)
    pace_kind = RankKind(pace.layers, pace.embedding, pick(idx, [k.logits for k in kinds], masks), True)
    dp_exposed, dp_total = dp_step_comm_s(sz, dense_t, expert_t, pace.compute_fwd_s, pace.compute_bwd_s,
                                          np.maximum(1.0, pace.layers), param_tensors_per_layer(job.model),
                                          fill_passes=zero3_fill_passes(sz), pass_f=pace.pass_fwd_s,
                                          pass_b=pace.pass_bwd_s,
                                          zero3_overlap=t.overlap_grad_reduce & zero3_prefetch_possible(sz))
    kr, g = sz.kernel, sz.dp_groups
    t_opt = optimizer_step_time_s(dense_t, expert_t, t.zero, g.dense_size, g.expert_size, kr.hbm_bytes_per_s,
                                  kr.memory_efficiency(), sz.grad_bytes, sz.weight_bytes,
                                  grad_buffer_passes(sz.framework))
    t_opt = np.where(t.offload_optimizer > 0, 0.0, t_opt)                 # the CPU steps instead (offload)
    off = offload_terms(sz, pace_kind, sz.num_micro, pace.compute_fwd_s, pace.compute_bwd_s)
    t_fixed = step_overhead_s(job.hardware, sz.framework)
    if t.local_sgd_tau is not None and np.any(t.local_sgd_tau > 1):
        local = t.local_sgd_tau > 1
        l_exp, l_tot = local_sgd_sync_s(sz, dense_t, expert_t, pace.pipeline_s + off.offload_s + t_opt + t_fixed)
        dp_exposed, dp_total = np.where(local, l_exp, dp_exposed), np.where(local, l_tot, dp_total)
    step = pace.pipeline_s + dp_exposed + off.offload_s + t_opt + t_fixed

    out = metric_columns(sz, step)
    out.update(time_columns(sz, lc, comm, edge, pace, dp_exposed, t_opt, t_fixed, off.offload_s))
    out.update(offload_columns(off))
    out["dp_comm_total_s"] = dp_total
    out.update(mem)
    Lf, Lm, Ll = (k.layers for k in kinds)
    out.update({"reasons": reasons, "num_micro_batches": sz.num_micro,
                "bubble_fraction": pace.bubble_s / np.maximum(sz.num_micro * pace.tau_max, 1e-30),
                "pacing_rank": pace.idx, "layers_first": Lf, "layers_mid": Lm, "layers_last": Ll})
    return compact(out)


#: Integer columns evaluate returns in a narrower type than the engine computes them in (the same values): the
#: reason bits (feasibility: the highest is 1 << 15) and the rank kinds (0, 1, 2; -1 for none). 1 and 4 bytes a
#: row instead of 8: 18 MB less for a million rows (issue #13).
COMPACT_DTYPES = {"reasons": np.int32, "memory_rank": np.int8, "pacing_rank": np.int8}


def compact(out: dict) -> dict:
    """`out` with the COMPACT_DTYPES columns in their narrow types (in place)."""
    for k, dtype in COMPACT_DTYPES.items():
        if k in out:
            out[k] = np.asarray(out[k]).astype(dtype, copy=False)
    return out


#: Columns evaluate_block returns, in its order, and what an unformable row holds in each (evaluate(prune=True)):
#: "nan" a figure the time model computes, "memory" / "reasons" / "layers" / "micro" what the memory composition
#: and the rules give, "job" a constant of the job, "none" pacing rank -1.
UNFORMABLE_COLUMNS = (
    ("step_time_s", "nan"), ("mfu", "nan"), ("hfu", "nan"), ("tokens_per_s", "nan"), ("tflops_per_device", "nan"),
    ("model_flops_per_step", "job"), ("hardware_flops_per_step", "nan"),
    *((f"time_{k}_s", "job" if k == "overhead" else "nan") for k in (
        "compute", "elementwise", "fp8_cast", "host", "recompute", "tp_comm", "ep_comm", "cp_comm", "pp_comm",
        "bubble", "dp_comm", "offload", "optimizer", "overhead")),                    # time_columns' order
    *((f"off_{k}_s", "nan") for k in ("h2d_fwd", "d2h_fwd", "h2d_bwd", "d2h_bwd", "cpu_adam", "param_copy", "nvme",
                                      "update")),
    ("dp_comm_total_s", "nan"), ("memory", "memory"), ("reasons", "reasons"), ("num_micro_batches", "micro"),
    ("bubble_fraction", "nan"), ("pacing_rank", "none"), ("layers_first", "layers"), ("layers_mid", "layers"),
    ("layers_last", "layers"),
)


def evaluate_unformable_block(job: Job, t: LayoutTable, structural: np.ndarray) -> dict:
    """evaluate_block's columns for rows that cannot be formed (`structural`: their structural_mask bits): the
    memory composition (costs.stage.memory_columns, the same functions and numbers as evaluate_block), the reasons
    (structural and memory bits), the micro-batch count and the layer split; NaN for the figures of the time model
    and -1 for the pacing rank (none paces a layout that cannot run); the step overhead and the model FLOPs per
    step, constants of the job, as evaluate_block gives them.

    Source: feasibility (an infeasible layout is a result with reasons); costs.stage.memory_columns."""
    n = len(t)
    sz = sizes(job, t)
    kinds = rank_kinds(sz)
    mem = memory_columns(sz, kinds)
    nan = np.broadcast_to(np.float64(np.nan), (n,))
    job_const = {"model_flops_per_step": np.broadcast_to(np.float64(metrics.model_flops_per_step(
        sz.costs, float(sz.training.tokens_per_step))), (n,)),
        "time_overhead_s": np.broadcast_to(np.float64(step_overhead_s(job.hardware, sz.framework)), (n,))}
    layers = dict(zip(("layers_first", "layers_mid", "layers_last"), (k.layers for k in kinds)))
    # costs a row cannot have, whatever its split: 0 (as evaluate_block computes them), not NaN
    offloads = (t.offload_optimizer > 0) | (t.offload_params > 0) | (t.offload_activations > 0)
    absent = {"time_fp8_cast_s": np.bool_(job.training.dtype not in ("fp8", "int8")), "time_ep_comm_s": np.bool_(job.model.moe is None),
              "time_cp_comm_s": t.cp == 1, "time_offload_s": ~offloads,
              **{f"off_{k}_s": ~offloads for k in ("h2d_fwd", "d2h_fwd", "h2d_bwd", "d2h_bwd", "cpu_adam",
                                                    "param_copy", "nvme", "update")}}
    out = {}
    for key, what in UNFORMABLE_COLUMNS:
        if what == "memory":
            out.update(mem)
        elif what == "reasons":
            out[key] = structural | memory_reason(mem)
        elif what == "micro":
            out[key] = sz.num_micro
        elif what == "layers":
            out[key] = layers[key]
        elif what == "job":
            out[key] = job_const[key]
        elif what == "none":
            out[key] = np.broadcast_to(np.int64(-1), (n,))
        elif key in absent and absent[key].all():
            out[key] = np.broadcast_to(np.float64(0.0), (n,))
        elif key in absent and absent[key].any():
            out[key] = np.where(absent[key], 0.0, np.nan)
        else:
            out[key] = nan
    return compact(out)
