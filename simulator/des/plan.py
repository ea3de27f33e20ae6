"""The engine plan of one layout: per-stage op lists (pipeline.schedules), each pass cut into segments (one per
layer) with their compute and blocking communication, ZeRO-3 gathers/reduces, gradient buckets, the step's
tail (gradient reduction, optimizer, parameter gather) and the network tiers each kind of transfer crosses.

Every duration comes from the shared cost functions (simulator.costs) of the layout's one-row table, so that with
overlap and contention off the replay charges what the analytic engine composes.
"""
from __future__ import annotations

import dataclasses

from dataclasses import dataclass, replace

import numpy as np

from ..costs import offload as off
from ..costs.communication import (layer_comm, dp_comm_times, dp_overlap_sm_share, dp_phase_cost, onebit_stage_s,
                                    zero3_reduce_blocks)
from ..costs.layer import layer_costs, mlp_elements
from ..costs.layer_mix import layer_kind_delta, mixed_layers, moe_layer_prefix
from ..costs.flops import param_tensors_per_layer
from ..costs.optimizer import grad_buffer_passes, optimizer_step_time_s
from ..costs.params import edge_params_per_rank, layer_params_per_rank
from ..costs.stage import (RankKind, activation_bytes_of_layer, exposed_tail_host_s, head_host_s, layer_lead_s,
                           step_overhead_s, tail_host_s, tail_lead_s)
from ..pipeline.schedules import chunk_position, chunks_per_rank, micro_per_chunk, num_stages, schedule_ops
from ..pipeline.two_chunk import dualpipe_groups, overlapped_forward_backward_s
from ..pipeline.split import checked_chunk_layers
from ..topology.placement import members_per_domain
from .spec import Bucket, EngineSpec, Seg, StageSpec

#: Megatron-LM's default DDP bucket: max(40M, 1M x dp) parameters (megatron/core/distributed/
#: distributed_data_parallel.py, `bucket_size`).
BUCKET_MIN_PARAMS = 40_000_000
BUCKET_PARAMS_PER_DP_RANK = 1_000_000


def scalar(x) -> float:
    """The one value of a one-row cost array (or a scalar)."""
    return float(np.asarray(x, dtype=float).reshape(-1)[0])


@dataclass(frozen=True)
class PassCosts:
    """The scalar durations of one layout the plan is built from (costs.layer, costs.communication, costs.stage)."""

    t_f: float              # forward pass of one layer
    t_b: float              # backward pass of one layer
    t_rc: float             # its recompute
    t_w: float              # its weight-gradient part
    tp_f: float             # exposed TP / EP / CP communication of one layer, forward and backward
    tp_b: float
    ep_f: float
    ep_b: float
    cp_f: float
    cp_b: float
    logits_f: float
    logits_b: float
    emb_comm: float
    p2p: float              # pipeline send of one activation
    host_pass: float        # host time of one layer pass as the per-micro-batch host work counts it
    lead_f: float           # GPU work one layer's forward / backward leaves queued ahead of the host
    lead_b: float
    parts_f: tuple          # (category, seconds) parts of a layer's forward pass (elementwise, fp8_cast, host)
    parts_b: tuple          # and of its backward pass


def pass_costs(lc, comm, edge) -> PassCosts:
    """PassCosts of a one-row evaluation."""
    return PassCosts(t_f=scalar(lc.forward_s), t_b=scalar(lc.backward_s), t_rc=scalar(lc.recompute_s),
                     t_w=scalar(lc.wgrad_s), tp_f=scalar(comm.tp_fwd_s), tp_b=scalar(comm.tp_bwd_s),
                     ep_f=scalar(comm.ep_fwd_s), ep_b=scalar(comm.ep_bwd_s), cp_f=scalar(comm.cp_fwd_s),
                     cp_b=scalar(comm.cp_bwd_s), logits_f=scalar(edge.logits_fwd_s), logits_b=scalar(edge.logits_bwd_s),
                     emb_comm=scalar(edge.embedding_comm_s), p2p=scalar(comm.p2p_s),
                     host_pass=scalar(edge.host_pass_s), lead_f=scalar(layer_lead_s(lc)[0]),
                     lead_b=scalar(layer_lead_s(lc)[1]),
                     parts_f=_parts(("elementwise", lc.elementwise_s + lc.model_ops_fwd_s),
                                    ("fp8_cast", lc.fp8_cast_fwd_s), ("host", lc.host_fwd_s)),
                     parts_b=_parts(("elementwise", 2.0 * lc.elementwise_s + lc.model_ops_bwd_s),
                                    ("fp8_cast", lc.fp8_cast_bwd_s),
                                    ("host", lc.host_bwd_s)))


def _parts(*pairs) -> tuple:
    return tuple((k, scalar(v)) for k, v in pairs if scalar(v) > 0)


@dataclass(frozen=True)
class Plan:
    spec: EngineSpec
    chunks: list                # layers per stage in pipeline order
    stage_totals: list          # per stage (dense, expert) params
    schedule: str
    num_micro: int
    rank_layers: list = None    # layers each rank holds
    rank_chunks: list = None    # layers of each of its chunks


def _comm(*pairs) -> tuple:
    return tuple((k, float(v)) for k, v in pairs if v > 0)


@dataclass(frozen=True)
class _Params:
    """Parameters per rank of one layer (dense, expert), of the input embedding and of the output layer."""

    layer_d: float
    layer_e: float
    emb: float
    out: float


def _params(sz) -> _Params:
    layer_d, layer_e = layer_params_per_rank(sz)
    emb, out = edge_params_per_rank(sz)
    out_p = scalar(out)
    if sz.model.tied_embeddings and sz.table.pp[0] == 1:
        out_p = 0.0                                  # one copy of the tied embedding on a single rank
    return _Params(scalar(layer_d), scalar(layer_e), scalar(emb), out_p)


class _DPCosts:
    """Data-parallel collective times of arbitrary parameter counts of the layout (one vectorised call each)."""

    def __init__(self, sz):
        self.sz = sz

    def times(self, dense, expert):
        """(all-reduce, reduce-scatter, all-gather) arrays of parameter counts `dense`, `expert`."""
        ar, rs, ag = dp_comm_times(self.sz, np.asarray(dense, dtype=float), np.asarray(expert, dtype=float))
        shape = np.shape(dense)
        return np.broadcast_to(ar, shape), np.broadcast_to(rs, shape), np.broadcast_to(ag, shape)

    def one(self, dense, expert):
        """(all-reduce, reduce-scatter, all-gather) of one parameter count, as floats."""
        return tuple(float(x[0]) for x in self.times([dense], [expert]))


@dataclass(frozen=True)
class _Zero3:
    """ZeRO-3 gather / reduce-scatter times of one layer, of the embedding and of the output layer."""

    rs_l: float
    ag_l: float
    rs_emb: float
    ag_emb: float
    rs_out: float
    ag_out: float


def _zero3(sz, lay, p: _Params, dp: _DPCosts) -> _Zero3:
    _, rs_l, ag_l = dp.one(p.layer_d, p.layer_e)
    if lay.zero3_unit == "tensor":                   # one latency per parameter tensor (costs.communication)
        lat_l = float(np.asarray(dp_phase_cost(sz, np.asarray([p.layer_d], dtype=float),
                                               np.asarray([p.layer_e], dtype=float))[1]).reshape(-1)[0])
        ag_l += (param_tensors_per_layer(sz.model) - 1) * lat_l
    _, rs_emb, ag_emb = dp.one(p.emb, 0.0)
    _, rs_out, ag_out = dp.one(p.out, 0.0) if p.out > 0 else (0.0, 0.0, 0.0)
    return _Zero3(rs_l, ag_l, rs_emb, ag_emb, rs_out, ag_out)


@dataclass(frozen=True)
class _Offload:
    """Host-link copies of one layout (costs.offload): per pass, the fetch of one layer's, the embedding's and the
    output layer's offloaded parameters; per micro-batch, one layer's activation checkpoint (each way) and the
    gradient partitions of a layer, the embedding and the output layer; the fetch passes of the backward."""

    fetch_layer: float = 0.0
    fetch_emb: float = 0.0
    fetch_out: float = 0.0
    act: float = 0.0
    grad_layer: float = 0.0
    grad_emb: float = 0.0
    grad_out: float = 0.0
    n_b: float = 1.0


def _offload(sz, lay, rates) -> _Offload:
    t = sz.table
    part = off.rank_partition(sz, RankKind(1.0, 1.0, 1.0, True))
    opt, par, act = t.offload_optimizer, t.offload_params, t.offload_activations
    fetch = lambda n: scalar(off.param_fetch_s(n, rates, par, sz.weight_bytes))   # noqa: E731
    grad = lambda n: scalar(off.grad_offload_s(n, rates, opt, sz.grad_bytes))     # noqa: E731
    act_s = scalar(off.activation_copy_s(activation_bytes_of_layer(sz, mlp_elements(sz)), rates, act))
    return _Offload(fetch(part.layer), fetch(part.embedding), fetch(part.output), act_s, grad(part.layer),
                    grad(part.embedding), grad(part.output), 2.0 if lay.recompute == "full" else 1.0)


class _StageBuilder:
    """Builds the segments of every pass of one stage, and the gradient items in the order they become final."""

    def __init__(self, sz, lay, cs: PassCosts, p: _Params, z: _Zero3, chunks, overlap: bool, o: _Offload,
                 imbalance=None, hops=None, mix=None):
        self.lay, self.cs, self.p, self.z, self.chunks, self.o = lay, cs, p, z, chunks, o
        self.mix = mix                       # (LayerKindDelta, MoE-layer prefix counts, MoE share) or None
        self.sched = lay.resolved_schedule
        self.pp, self.vpp = lay.pp, chunks_per_rank(self.sched, lay.vpp)
        self.starts = np.concatenate([[0], np.cumsum(chunks)]).astype(int)
        self.mtp = sz.model.mtp_layers > 0      # the last stage holds the embedding too (costs.stage.with_mtp)
        self.split_w = self.sched in ("zb-h1", "zb-v", "dualpipe")
        self.bucket_overlap = overlap and lay.overlap_grad_reduce
        self.z3_prefetch = self.bucket_overlap and bool(np.all(off.zero3_prefetch_possible(sz)))
        self.z3_reduce_blocks = zero3_reduce_blocks(sz)   # the reduce-scatter after each backward (XLA:TPU)
        self.z3 = lay.zero >= 3
        self.z2_streamed = lay.zero == 2 and self.bucket_overlap
        self.n_gather_b = 2.0 if lay.recompute == "full" else 1.0   # recompute + backward gathers
        self.f_comm = _comm(("tp", cs.tp_f), ("ep", cs.ep_f), ("cp", cs.cp_f))
        self.b_comm = _comm(("tp", cs.tp_b), ("ep", cs.ep_b), ("cp", cs.cp_b))
        self.p2p_seg = () if (overlap or lay.pp == 1) else (Seg(post=_comm(("pp", cs.p2p)), label="p2p"),)
        self.b_compute = (cs.t_b - cs.t_w if self.split_w else cs.t_b) + cs.t_rc
        self.imb = imbalance                 # costs.moe_layers.LayerImbalance of this step, or None
        self.hops = hops or {}               # (from rank, to rank) -> pipeline send seconds (heterogeneous cluster)
        self.rank_of_stage = {chunk_position(self.sched, r, c, self.pp): r
                              for r in range(self.pp) for c in range(self.vpp)}

    def p2p_for(self, j: int, kind: str, pipe: int = 0) -> tuple:
        """The blocking pipeline send of a pass of stage j (no overlap): to the next stage (forward) or the
        previous one (backward), the pipeline's end stages charging their one neighbour's link."""
        if not self.p2p_seg or not self.hops:
            return self.p2p_seg
        last = len(self.chunks) - 1
        to = (j + 1 if j < last else j - 1) if kind == "F" else (j - 1 if j > 0 else j + 1)
        rank = lambda k: self.rank_of_stage.get((pipe, k), k % self.pp)  # noqa: E731
        sec = self.hops.get((rank(j), rank(to)), self.cs.p2p)
        return (Seg(post=_comm(("pp", sec)), label="p2p"),)

    def mix_offset(self, l: int) -> float:
        """Layer l's MoE share minus the model's average (1 - f for an MoE layer, -f for a dense one; 0 without a
        dense/MoE mix and for the multi-token prediction layers after the model's last): the multiple of
        costs.layer_mix.LayerKindDelta its passes take over the average layer's."""
        if self.mix is None:
            return 0.0
        _, prefix, frac = self.mix
        if l + 1 >= len(prefix):
            return 0.0
        return float(prefix[l + 1] - prefix[l]) - frac

    def _mixed(self, l: int, name: str) -> float:
        x = self.mix_offset(l)
        return x * scalar(getattr(self.mix[0], name)) if x else 0.0

    def layer_f(self, l: int) -> dict:
        """Forward segment fields of layer l (with this step's routing draw for the layer, if any, and its kind,
        dense or MoE, where the model mixes them)."""
        cs, imb = self.cs, self.imb
        mx = self._mixed
        if imb is None and self.mix is None:
            return {"compute_s": cs.t_f, "post": self.f_comm}
        scale = float(imb.ep_scale[l]) if imb is not None else 1.0
        return {"compute_s": cs.t_f + (float(imb.fwd_s[l]) if imb is not None else 0.0) + mx(l, "forward_s"),
                "post": _comm(("tp", cs.tp_f + mx(l, "tp_fwd_s")), ("ep", (cs.ep_f + mx(l, "ep_fwd_s")) * scale),
                              ("cp", cs.cp_f + mx(l, "cp_fwd_s")))}

    def layer_b(self, l: int) -> dict:
        """Backward segment fields of layer l (input gradient only when the schedule splits off W)."""
        cs, imb = self.cs, self.imb
        mx = self._mixed
        if imb is None and self.mix is None:
            return {"compute_s": self.b_compute, "recompute_s": cs.t_rc, "post": self.b_comm}
        d_b, d_w, d_f = ((float(imb.bwd_s[l]), float(imb.wgrad_s[l]), float(imb.fwd_s[l])) if imb is not None
                         else (0.0, 0.0, 0.0))
        scale = float(imb.ep_scale[l]) if imb is not None else 1.0
        k_b = mx(l, "backward_s") - (mx(l, "wgrad_s") if self.split_w else 0.0) + mx(l, "recompute_s")
        return {"compute_s": self.b_compute + d_b - (d_w if self.split_w else 0.0) + k_b,
                "recompute_s": cs.t_rc + d_b - 2.0 * d_f + mx(l, "recompute_s"),
                "post": _comm(("tp", cs.tp_b + mx(l, "tp_bwd_s")), ("ep", (cs.ep_b + mx(l, "ep_bwd_s")) * scale),
                              ("cp", cs.cp_b + mx(l, "cp_bwd_s")))}

    def layer_w(self, l: int) -> float:
        """Weight-gradient time of layer l (split-backward schedules)."""
        return (self.cs.t_w + (float(self.imb.wgrad_s[l]) if self.imb is not None else 0.0)
                + self._mixed(l, "wgrad_s"))

    def parts(self, l: int, pass_: str) -> tuple:
        """(category, seconds) parts of layer l's forward ('f') or backward ('b') pass, with its dense/MoE kind."""
        base = self.cs.parts_f if pass_ == "f" else self.cs.parts_b
        if not self.mix_offset(l):
            return base
        names = {"elementwise": f"elementwise_{pass_}wd_s", "fp8_cast": f"fp8_cast_{pass_}wd_s",
                 "host": f"host_{pass_}wd_s"}
        have = dict(base)
        return tuple((k, v) for k, v in ((k, have.get(k, 0.0) + self._mixed(l, names[k]))
                                         for k in ("elementwise", "fp8_cast", "host")) if v > 0)

    def zero3(self, seg_kwargs: dict, gather: float, reduce: float) -> dict:
        """Attach a ZeRO-3 gather/reduce to a segment: prefetched/queued with overlap, inline without. ZeRO-2
        reduce-scatters every micro-batch's gradients as they are produced (no gathers); without overlap
        that traffic is charged after the last backward, as the analytic engine does."""
        if self.z2_streamed:
            seg_kwargs["reduce_s"] = reduce
            return seg_kwargs
        if not self.z3:
            return seg_kwargs
        if self.z3_prefetch and self.z3_reduce_blocks:
            seg_kwargs["gather_s"] = gather
            seg_kwargs["post"] = seg_kwargs.get("post", ()) + _comm(("dp", reduce))
        elif self.z3_prefetch:
            seg_kwargs["gather_s"] = gather
            seg_kwargs["reduce_s"] = reduce
        else:
            seg_kwargs["pre"] = _comm(("dp", gather)) + seg_kwargs.get("pre", ())
            seg_kwargs["post"] = seg_kwargs.get("post", ()) + _comm(("dp", reduce))
        return seg_kwargs

    def host(self, seg_kwargs: dict, fetch: float, d2h: float) -> dict:
        """Attach host-link copies to a segment: `fetch` to the device before it (prefetched with overlap, else
        blocking before its ZeRO-3 gather), `d2h` to the host after it (queued with overlap, else blocking)."""
        if self.bucket_overlap:
            seg_kwargs["fetch_s"], seg_kwargs["offload_s"] = fetch, d2h
        else:
            seg_kwargs["pre"] = _comm(("offload", fetch)) + seg_kwargs.get("pre", ())
            seg_kwargs["post"] = seg_kwargs.get("post", ()) + _comm(("offload", d2h))
        return seg_kwargs

    def stage_of(self, r: int, c: int) -> int:
        """Stage (index into the per-stage layer list) of chunk c of rank r."""
        return chunk_position(self.sched, r, c, self.pp)[1]

    def host_segs(self, r: int, c: int = 0) -> tuple:
        """((forward head, forward tail), (backward head, backward tail)) segments of the per-micro-batch host work
        outside the layers on chunk c of rank r: the head part exposed, of the tail what outlasts the lead of a
        chunk (costs.stage head_host_s, tail_host_s, tail_lead_s), half at the head of each pass (costs.stage.
        stage_times; the tails stay empty). As the analytic engine composes it (per rank,
        the lead of its layers spread evenly over its chunks), spread over the rank's chunks; DualPipe and ZB-V
        chunks carry the embedding's or the loss's share where their stage has it (a DualPipe micro-batch passes
        one of the rank's chunks, a ZB-V micro-batch both), with the lead of the chunk."""
        cs = self.cs
        if self.sched in ("dualpipe", "zb-v"):
            j, last = self.stage_of(r, c), len(self.chunks) - 1
            emb, out, share, layers = float(j == 0), float(j == last), 1.0, float(self.chunks[j])
            every = 0.5 if self.sched == "zb-v" else 1.0
        else:
            emb, out, share, every = float(r == 0), float(r == self.pp - 1), 1.0 / self.vpp, 1.0
            layers = sum(self.chunks[self.stage_of(r, k)] for k in range(self.vpp)) / self.vpp
        heads = head_host_s(cs.host_pass, emb, out, every)
        tails = tail_host_s(cs.host_pass, emb, out)
        leads = tail_lead_s(cs.lead_f, cs.lead_b, layers, cs.logits_f, out)
        t = 0.5 * share * sum(float(h + exposed_tail_host_s(tl, ld)) for h, tl, ld in zip(heads, tails, leads))
        seg = (Seg(compute_s=t, parts=(("host", t),), label="host"),) if t > 0 else ()
        return (seg, ()), (seg, ())

    def forward(self, j: int, host: tuple):
        """Segments of the forward pass of model chunk j, and where each layer's segment sits in it. `host`: its
        (head, tail) host segments."""
        host_seg, tail = host
        cs, z, o, h = self.cs, self.z, self.o, self.host
        seg = lambda kw, gather, reduce, fetch, d2h: h(self.zero3(kw, gather, reduce), fetch, d2h)  # noqa: E731
        lo, n = int(self.starts[j]), self.chunks[j]
        first, last = j == 0, j == len(self.chunks) - 1
        fs = []
        if first:
            fs.append(Seg(**seg({"post": _comm(("tp", cs.emb_comm)), "label": "embedding"}, z.ag_emb, 0.0,
                                o.fetch_emb, 0.0)))
        for l in range(lo, lo + n):
            fs.append(Seg(**seg({**self.layer_f(l), "parts": self.parts(l, "f"), "label": f"layer {l}"},
                                z.ag_l, 0.0, o.fetch_layer, o.act)))
        if last:
            fs.append(Seg(**seg({"compute_s": cs.logits_f, "label": "logits"}, z.ag_out, 0.0, o.fetch_out, 0.0)))
        off = len(host_seg)
        fwd_index = {("emb",): off} if first else {}
        for i, l in enumerate(range(lo, lo + n)):
            fwd_index[l] = off + i + (1 if first else 0)
        if last:
            fwd_index[("out",)] = off + len(fs) - 1
        return host_seg + tuple(fs) + tail + self.p2p_for(j, "F"), fwd_index

    def backward(self, c: int, j: int, host: tuple, fwd_off: int, fwd_index: dict):
        """Segments of the backward pass of chunk j (input + weight gradient, or input gradient only for ZB-H1)
        and its gradient items (dense, expert, trigger, forward use, label). `host`: its (head, tail) host
        segments; `fwd_off`: where the forward's first segment after its host head sits."""
        host_seg, tail = host
        cs, z, p, o, h = self.cs, self.z, self.p, self.o, self.host
        seg = lambda kw, gather, reduce, fetch, d2h: h(self.zero3(kw, gather, reduce), fetch, d2h)  # noqa: E731
        lo, n = int(self.starts[j]), self.chunks[j]
        first, last = j == 0, j == len(self.chunks) - 1
        bs = list(host_seg)
        items = []
        if last:
            bs.append(Seg(**seg({"compute_s": cs.logits_b, "label": "logits"}, z.ag_out, z.rs_out, o.fetch_out,
                                o.grad_out)))
            items.append((p.out, 0.0, ("B", c, len(bs) - 1), fwd_index[("out",)], "output layer"))
        for l in range(lo + n - 1, lo - 1, -1):
            kw = {**self.layer_b(l), "parts": self.parts(l, "b"),
                  "label": f"layer {l}"}
            bs.append(Seg(**seg(kw, self.n_gather_b * z.ag_l, 0.0 if self.split_w else z.rs_l,
                                o.n_b * o.fetch_layer + o.act, 0.0 if self.split_w else o.grad_layer)))
            if not self.split_w:
                items.append((p.layer_d, p.layer_e, ("B", c, len(bs) - 1), fwd_index[l], f"layer {l}"))
        if first:
            bs.append(Seg(**seg({"label": "embedding"}, 0.0, z.rs_emb, 0.0, o.grad_emb)))
            items.append((p.emb, 0.0, ("B", c, len(bs) - 1), fwd_off, "embedding"))
        return tuple(bs) + tail + self.p2p_for(j, "B"), items

    def wgrad(self, c: int, j: int, fwd_index: dict):
        """Segments of the weight-gradient pass of chunk j (ZB-H1) and its gradient items."""
        lo, n = int(self.starts[j]), self.chunks[j]
        ws, items = [], []
        for l in range(lo + n - 1, lo - 1, -1):
            ws.append(Seg(**self.host(self.zero3({"compute_s": self.layer_w(l), "label": f"layer {l}"}, 0.0,
                                                 self.z.rs_l), 0.0, self.o.grad_layer)))
            items.append((self.p.layer_d, self.p.layer_e, ("W", c, len(ws) - 1), fwd_index[l], f"layer {l}"))
        return tuple(ws), items

    def stage(self, r: int):
        """(segments by (kind, chunk), gradient items per chunk, dense params, expert params) of stage r."""
        segments, items = {}, []
        dense_tot = expert_tot = 0.0
        for c in range(self.vpp):
            host_f, host_b = self.host_segs(r, c)
            j = self.stage_of(r, c)
            segments[("F", c)], fwd_index = self.forward(j, host_f)
            segments[("B", c)], b_items = self.backward(c, j, host_b, len(host_f[0]), fwd_index)
            w_items = []
            if self.split_w:
                segments[("W", c)], w_items = self.wgrad(c, j, fwd_index)
            items.append((b_items, w_items))
            last = j == len(self.chunks) - 1
            dense_tot += self.chunks[j] * self.p.layer_d + (self.p.emb if j == 0 or (self.mtp and last) else 0.0) \
                + (self.p.out if last else 0.0)
            expert_tot += self.chunks[j] * self.p.layer_e
        return segments, items, dense_tot, expert_tot


def _buckets(items, vpp: int, dpc: float, zero: int, z2_streamed: bool, dp: _DPCosts) -> tuple:
    """Gradient buckets of one stage: Megatron keeps one gradient buffer per model chunk (buckets never span
    chunks) and fills buckets of max(40M, 1M x dp) parameters in the order gradients become final; chunks finish
    their last backward from the last to the first.

    Source: Megatron-LM megatron/core/distributed/distributed_data_parallel.py (bucket_size, per-chunk buffers)."""
    cap = max(BUCKET_MIN_PARAMS, BUCKET_PARAMS_PER_DP_RANK * dpc)
    groups = []
    for c in reversed(range(vpp)):
        b_items, w_items = items[c]
        cur = []
        for it in b_items + w_items:
            cur.append(it)
            if sum(x[0] + x[1] for x in cur) >= cap:
                groups.append(cur)
                cur = []
        if cur:
            groups.append(cur)
    b_ar, b_rs, b_ag = dp.times([sum(x[0] for x in gr) for gr in groups], [sum(x[1] for x in gr) for gr in groups])
    out = []
    for i, gr in enumerate(groups):
        trig = gr[-1][2]
        label = gr[0][4] if len(gr) == 1 else f"{gr[0][4]} .. {gr[-1][4]}"
        reduce_s = 0.0 if z2_streamed else float(b_ar[i] if zero == 0 else b_rs[i])
        out.append(Bucket(reduce_s=reduce_s, trigger=trig, gather_s=0.0 if zero == 0 else float(b_ag[i]),
                          first_use=(trig[1], min(x[3] for x in gr)), label=label))
    return tuple(out)


def _stage_tail(sz, lay, b: _StageBuilder, items, dense_tot, expert_tot, num_micro, dp: _DPCosts):
    """(blocking gradient reduction, blocking parameter gather, buckets, optimizer time) of one stage: one
    collective after the last backward, or buckets overlapping it; the optimizer over the owned parameters."""
    ar, rs, ag = dp.one(dense_tot, expert_tot)
    zero = lay.zero
    dpc, edpc = scalar(sz.dp_groups.dense_size), scalar(sz.dp_groups.expert_size)
    dp_reduce = dp_gather = 0.0
    buckets = ()
    if lay.local_sgd_tau > 1:
        pass                       # no gradient all-reduce: the outer step is charged after the replay (simulate)
    elif not b.z3 and (dpc > 1 or edpc > 1):
        if not b.bucket_overlap:
            dp_reduce = ar if zero == 0 else (num_micro * rs if zero == 2 else rs)
            dp_gather = 0.0 if zero == 0 else ag
        else:
            buckets = _buckets(items, b.vpp, dpc, zero, b.z2_streamed, dp)
            # the overlapped collectives' NCCL blocks hold their SMs while they run (dp_overlap_sm_share): the
            # compute beside them loses that share of its rate for their duration
            share = dp_overlap_sm_share(sz)
            dp_reduce = share * (ar if zero == 0 else (num_micro * rs if zero == 2 else rs))
            dp_gather = 0.0 if zero == 0 else share * ag
            if zero in (1, 2) and lay.dp_param_gather_overlap is False:   # the framework gathers after the step
                buckets = tuple(dataclasses.replace(bk, gather_s=0.0) for bk in buckets)
                dp_gather = ag
        if lay.dp_compression == "onebit" and zero == 0:
            # a step of the compression stage: no gradient all-reduce, the compressed momentum all-reduce in the
            # optimizer step (costs.communication.onebit_stage_s); simulate() replays a warm-up step beside it
            buckets = ()
            dp_reduce = scalar(onebit_stage_s(sz, np.asarray([dense_tot]), np.asarray([expert_tot])))
    kr = sz.kernel
    opt = float(optimizer_step_time_s(dense_tot, expert_tot, zero, dpc, edpc, kr.hbm_bytes_per_s, kr.memory_efficiency(),
                                      sz.grad_bytes, sz.weight_bytes, grad_buffer_passes(sz.framework)))
    if lay.offload_optimizer != "none":
        opt = 0.0                                   # the CPU steps instead (StageSpec.offload_update_s)
    return dp_reduce, dp_gather, buckets, opt


def _offload_update_s(sz, rates, dense_tot: float, expert_tot: float) -> float:
    """The offloaded optimizer phase of a stage over its ZeRO partition (costs.offload.offload_update_s)."""
    g, t = sz.dp_groups, sz.table
    part = dense_tot / scalar(g.dense_size) + expert_tot / scalar(g.expert_size)
    return scalar(off.offload_update_s(part, rates, t.offload_optimizer, t.offload_params, sz.weight_bytes).update_s)


def cluster_hops(sc, sz) -> dict:
    """(from rank, to rank) -> seconds of one pipeline send (activation / tp, as costs.communication.p2p_send_s
    sends it) between neighbouring pipeline ranks placed on the groups of the scenario's heterogeneous cluster
    (network.pipeline_groups), over their link, slowed by the background occupancy; {} without a cluster.

    Source: topology.shared_network.link_time_s (SkipPipe's delay + size / bandwidth)."""
    net = sc.network
    if net.cluster is None or sc.layout.pp == 1:
        return {}
    from ..costs.communication import activation_bytes
    from ..topology.shared_network import link_time_s
    pp = sc.layout.pp
    groups = net.pipeline_groups(pp, sc.num_devices // pp)
    size = scalar(activation_bytes(sz) / sz.tp)
    out = {}
    for r in range(pp):
        for q in (r - 1, r + 1, pp - 1 - r):          # pipeline neighbours (and the V / DualPipe turn)
            if 0 <= q < pp and q != r:
                out[(r, q)] = float(link_time_s(net.cluster, groups[r], groups[q], size, net.background_occupancy))
    return out


def tier_shares(sz, lay) -> dict:
    """Which network tiers each kind of transfer crosses and the share of its time on each (contention)."""
    from ..topology.graph import group_tier_shares
    tiers, st, g = sz.tiers, sz.strides, sz.dp_groups
    shares = {
        "tp": group_tier_shares(lay.tp, st["tp"], tiers),
        "ep": group_tier_shares(lay.ep, st["ep"], tiers),
        "cp": group_tier_shares(lay.cp, st["cp"], tiers),
        "dp": group_tier_shares(scalar(g.dense_size), scalar(g.dense_stride), tiers),
    }
    pp_tier = tiers.num_tiers - 1
    for k in range(tiers.num_tiers):
        if scalar(members_per_domain(2, scalar(st["pp"]), tiers.domain_size[k])) >= 2:
            pp_tier = k
            break
    shares["pp"] = ((pp_tier, 1.0),)
    return shares


def build_plan(sc, sz, lc, comm, edge, *, overlap: bool, contention: bool, num_micro: int,
               imbalance=None, hops=None) -> Plan:
    """Engine plan of scenario `sc` (its layout already reflects `overlap`) from the costs of its one-row table;
    `imbalance` (costs.moe_layers.LayerImbalance) prices one step's per-layer routing draws; `hops` ((from rank,
    to rank) -> seconds) the pipeline sends between the device groups of a heterogeneous cluster."""
    lay, m = sc.layout, sc.model
    name = lay.resolved_schedule
    pp, vpp = lay.pp, chunks_per_rank(name, lay.vpp)
    cs = pass_costs(lc, comm, edge)
    two = name in ("dualpipe", "zb-v")
    chunks = (checked_chunk_layers(m.num_layers, num_stages(name, pp), 1, lay.stage_layers) if two
              else checked_chunk_layers(m.num_layers, pp, vpp, lay.stage_layers))
    if m.mtp_layers:        # multi-token prediction modules: one more layer each after the last (costs.stage.with_mtp)
        chunks = list(chunks[:-1]) + [chunks[-1] + m.mtp_layers]
    sched = schedule_ops(name, pp, num_micro, lay.vpp)
    p = _params(sz)
    dp = _DPCosts(sz)
    rates = off.host_rates(sc.hardware, sc.num_devices)
    mix = None
    if mixed_layers(m) and pp > 1 and not two:      # the stages' dense/MoE layer mix (costs.layer_mix)
        prefix = moe_layer_prefix(m)
        mix = (layer_kind_delta(sz, layer_costs, layer_comm), prefix, float(prefix[-1]) / m.num_layers)
    b = _StageBuilder(sz, lay, cs, p, _zero3(sz, lay, p, dp), chunks, overlap, _offload(sz, lay, rates), imbalance,
                      hops, mix)
    stages, stage_totals = [], []
    for r in range(pp):
        segments, items, dense_tot, expert_tot = b.stage(r)
        stage_totals.append((dense_tot, expert_tot))
        dp_reduce, dp_gather, buckets, opt = _stage_tail(sz, lay, b, items, dense_tot, expert_tot, num_micro, dp)
        js = [b.stage_of(r, c) for c in range(vpp)]
        rng_ = [f"{int(b.starts[j])}-{int(b.starts[j] + chunks[j]) - 1}" if chunks[j] else "none" for j in js]
        units = dualpipe_units(sched[r], segments, dualpipe_groups(pp, num_micro)[r]) if name == "dualpipe" else {}
        stages.append(StageSpec(ops=sched[r], segments=segments, optimizer_s=opt, dp_reduce_s=dp_reduce,
                                dp_gather_s=dp_gather, buckets=buckets, label=f"stage {r} (layers {', '.join(rng_)})",
                                offload_update_s=_offload_update_s(sz, rates, dense_tot, expert_tot), **units))
    positions = tuple(tuple(chunk_position(name, r, c, pp) for c in range(vpp)) for r in range(pp)) if two else ()
    spec = EngineSpec(pp=pp, vpp=vpp, num_micro=micro_per_chunk(name, num_micro), stages=tuple(stages),
                      p2p_s=cs.p2p, overlap=overlap, contention=contention,
                      tier_shares=tier_shares(sz, lay) if contention else {},
                      overhead_s=step_overhead_s(sc.hardware, sc.framework),
                      offload_delayed_update=b.bucket_overlap and lay.offload_delayed_update,
                      devices_per_node=sc.hardware.devices_per_node,
                      host_link_ratio=rates.device_link_bytes_per_s / rates.link_bytes_per_s,
                      host_node_ratio=rates.node_link_bytes_per_s / (rates.on_node * rates.link_bytes_per_s),
                      positions=positions, num_stages=len(chunks) if two else 0, p2p_pair_s=dict(hops or {}))
    held = [sum(chunks[b.stage_of(r, c)] for c in range(vpp)) for r in range(pp)]
    return Plan(spec=spec, chunks=chunks, stage_totals=stage_totals, schedule=name, num_micro=num_micro,
                rank_layers=held, rank_chunks=[[chunks[b.stage_of(r, c)] for c in range(vpp)] for r in range(pp)])


def dualpipe_units(ops: tuple, segments: dict, groups: tuple) -> dict:
    """StageSpec fields that run DualPipe's units (pipeline.two_chunk.dualpipe_groups): in a unit of one forward
    and one full backward the all-to-alls of each run beside the other's compute, so its ops run without them
    (segments keyed (kind, chunk, "fb")) and the last op adds what the compute could not hide,
    max(0, all-to-all - compute) (pipeline.two_chunk.overlapped_forward_backward_s); every op of a unit (and the
    input-gradient half of a full backward) hands its output on when the unit ends.

    Source: DeepSeek-V3 report (arXiv 2412.19437) sec. 3.2.1, Fig. 4; github.com/deepseek-ai/DualPipe."""
    op_segments = [(op.kind, op.chunk) for op in ops]
    extra = [0.0] * len(ops)
    send_after = list(range(len(ops)))

    def totals(key):
        segs = segments[key]
        ep = sum(sec for x in segs for k, sec in x.post + x.pre if k == "ep")
        rest = sum(x.compute_s + sum(sec for k, sec in x.post + x.pre if k != "ep") for x in segs)
        return ep, rest

    for g in groups:
        for i in g:
            send_after[i] = g[-1]
        if len(g) < 3:
            continue
        comm = comp = 0.0
        for i in g:
            key = (ops[i].kind, ops[i].chunk)
            ep, rest = totals(key)
            comm, comp = comm + ep, comp + rest
            fb_key = key + ("fb",)
            if fb_key not in segments:
                segments[fb_key] = tuple(replace(x, post=tuple(c for c in x.post if c[0] != "ep"),
                                                 pre=tuple(c for c in x.pre if c[0] != "ep")) for x in segments[key])
            op_segments[i] = fb_key
        extra[g[-1]] = float(overlapped_forward_backward_s(comp, 0.0, comm, 0.0)) - comp
    return {"op_segments": tuple(op_segments), "op_extra_s": tuple(extra), "send_after": tuple(send_after)}
