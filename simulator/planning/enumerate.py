"""The one layout enumeration: every candidate layout of a job as numpy columns (a LayoutTable).

Used by the layout search (`planning.search`: every layout a cluster allows) and by validation's search of a
runs-file row's blank layout cells (`validation.predict`: the row's stated cells fixed, the blank ones open).
The candidates are the product of the layout axes, bounded by what can exist at all and by a `SearchSpace`:

- tp, pp, cp: divisors of the device count with tp <= heads, pp <= layers, cp <= seq_len; dp = devices/(tp*pp*cp).
- ep (MoE only): divisors of dp up to the number of experts (EP is carved out of DP).
- vpp > 1 (interleaved schedule only): pp > 1 and pp*vpp dividing the layers (Megatron's interleaving rule).
- micro-batch: powers of two with micro_batch * dp <= global batch (`micro_batch_sizes="powers-of-two"`), or
  the sizes that divide each replica's share of the batch (`"batch-divisors"`; 1 where dp does not divide it).
- ZeRO stages x recompute kinds; sequence parallelism wherever tp > 1 (or both settings, when a list is given).
- offload tiers (optimizer x parameters x activations; default none only): the combinations the ZeRO stage allows
  (parameter offload with ZeRO-3, optimizer offload with ZeRO >= 2, wherever dp x cp > 1; feasibility.R_OFFLOAD).
- schedules: 1f1b and interleaved by default; gpipe, zb-h1, dualpipe and zb-v on request. With pp = 1 the
  schedule and, with dp = 1, the ZeRO stage make no difference: only the first allowed value is kept (no
  duplicate rows).
- MoE dispatch strategies (flat by default) where ep > 1; data-parallel synchronisation (plain all-reduce by
  default; 1-bit compression and local SGD taus on request) where dp > 1 and ZeRO is 0 (both need it).

`as_stated=True` keeps every listed value as stated (validation: a published layout is what ran), subject only
to tp*pp*cp*dp = devices; the engine's reason bits then judge it (heads, layers, uneven interleaving, batch).
Everything else (heads, KV heads and FFN width divisible by tp, batch divisible by micro_batch*dp, cp dividing
the sequence, experts divisible by ep, micro-batch count for interleaving, memory) is decided by the engine.
Candidates come in a fixed order: tp, pp, cp, ep, (vpp, schedule), micro-batch, ZeRO, recompute, sequence
parallelism, each ascending. No Python loop runs per layout.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

import numpy as np
from pydantic import Field, model_validator

from ..errors import SpecError
from ..specs.base import Spec
from ..specs.layout import DEFAULT_ORDER, OFFLOAD_CODES, RECOMPUTE_CODES, SCHEDULE_CODES, ZERO3_UNIT_CODES, \
    ActivationOffloadTier, Layout, OffloadTier, Recompute, Schedule, Zero3Unit
from ..specs.layout import DP_COMPRESSION_CODES, MOE_DISPATCH_CODES, DpCompression, MoeDispatch
from ..specs.layout_table import LayoutTable
from ..specs.loading import validate_spec
from ..specs.model import ModelSpec
from ..specs.training import TrainingSpec

MicroBatchSizes = Literal["powers-of-two", "batch-divisors"]


class SearchSpace(Spec):
    """Which layouts the enumeration yields. A list fixes an axis to those values; `max_*` caps it.

    Unset axes take every value the cluster and model allow (see the module docstring).
    """

    tp: Optional[list[int]] = Field(None, description="tensor-parallel degrees to try")
    pp: Optional[list[int]] = Field(None, description="pipeline-parallel degrees to try")
    cp: Optional[list[int]] = Field(None, description="context-parallel degrees to try")
    dp: Optional[list[int]] = Field(None, description="data-parallel degrees to try")
    ep: Optional[list[int]] = Field(None, description="expert-parallel degrees to try (MoE models)")
    vpp: Optional[list[int]] = Field(None, description="virtual pipeline stages to try (1 = not interleaved)")
    micro_batch: Optional[list[int]] = Field(None, description="micro-batch sizes to try")
    max_tp: Optional[int] = Field(None, ge=1)
    max_pp: Optional[int] = Field(None, ge=1)
    max_cp: Optional[int] = Field(None, ge=1)
    max_ep: Optional[int] = Field(None, ge=1)
    max_vpp: Optional[int] = Field(None, ge=1)
    max_micro_batch: Optional[int] = Field(None, ge=1)
    micro_batch_sizes: MicroBatchSizes = Field(
        "powers-of-two", description="unlisted micro-batch sizes: powers of two with micro_batch * dp <= the "
                                     "global batch, or the divisors of each replica's share of the batch")
    zero: list[int] = Field([0, 1, 2, 3], min_length=1, description="ZeRO stages to try")
    recompute: list[Recompute] = Field(["none", "selective", "full"], min_length=1)
    schedule: list[Schedule] = Field(["1f1b", "interleaved"], min_length=1,
                                     description="pipeline schedules to try; interleaved is used with vpp > 1")
    sequence_parallel: Union[bool, list[bool]] = Field(
        True, description="Megatron SP wherever tp > 1; a list tries each setting")
    framework: Optional[str] = Field(None, description="framework preset name or YAML path (trainsim frameworks); "
                                                       "None: specs.stack.DEFAULT_FRAMEWORK")
    # software-stack flags: None = the framework's (specs.stack; resolve_space), a value overrides it
    tp_comm_overlap: Optional[bool] = Field(None, description="overlap TP collectives with GEMMs")
    ep_comm_overlap: Optional[bool] = Field(None, description="hide MoE all-to-alls behind another micro-batch's "
                                                              "compute")
    zero3_unit: Optional[Zero3Unit] = Field(None, description="ZeRO-3 gather unit: layer (FSDP) or tensor "
                                                              "(DeepSpeed 2021)")
    flash_attention: Optional[bool] = None
    overlap_grad_reduce: Optional[bool] = None
    zero3_prefetch: Optional[bool] = Field(None, description="overlap_grad_reduce of the ZeRO-3 candidates (their "
                                           "gathers prefetched); None: overlap_grad_reduce where stated, else the "
                                           "framework's overlap.zero3_prefetch")
    dp_param_gather_overlap: Optional[bool] = None
    placement: str = Field(DEFAULT_ORDER, description="rank order, innermost first")
    offload_optimizer: list[OffloadTier] = Field(["none"], min_length=1, description="optimizer offload tiers to try")
    offload_params: list[OffloadTier] = Field(["none"], min_length=1, description="parameter offload tiers to try")
    offload_activations: list[ActivationOffloadTier] = Field(["none"], min_length=1,
                                                             description="activation offload tiers to try")
    offload_delayed_update: bool = Field(False, description="ZeRO-Offload's delayed update wherever the optimizer "
                                                            "is offloaded")
    moe_dispatch: list[MoeDispatch] = Field(["flat"], min_length=1, description="MoE dispatch strategies to try "
                                            "(where ep > 1)")
    moe_max_nodes: Optional[int] = Field(None, ge=1, description="node-limited routing: nodes per token")
    dp_compression: list[DpCompression] = Field(["none"], min_length=1, description="gradient compression to try "
                                                "(onebit where dp > 1 and zero 0)")
    onebit_warmup_fraction: float = Field(0.15, ge=0.0, le=1.0, description="1-bit Adam's uncompressed warm-up share")
    local_sgd_tau: list[int] = Field([1], min_length=1, description="local SGD taus to try (1 = synchronous; > 1 "
                                     "where dp > 1 and zero 0)")
    as_stated: bool = Field(False, description="keep listed values as stated (only tp*pp*cp*dp = devices is "
                                               "enforced) for the engine's reasons to judge")

    @model_validator(mode="after")
    def _consistent(self):
        for axis in ("tp", "pp", "cp", "dp", "ep", "vpp", "micro_batch"):
            vals = getattr(self, axis)
            if vals is None:
                continue
            if len(vals) == 0:
                raise ValueError(f"{axis}: an empty list allows no layout")
            if any(v < 1 for v in vals):
                raise ValueError(f"{axis} values {vals} must be >= 1")
            cap = getattr(self, f"max_{axis}", None)
            if cap is not None and min(vals) > cap:
                raise ValueError(f"{axis} {sorted(vals)} contradicts max_{axis} {cap}: no value is <= {cap}")
        bad = [z for z in self.zero if z not in (0, 1, 2, 3)]
        if bad:
            raise ValueError(f"zero stages {bad} are not among 0, 1, 2, 3")
        if isinstance(self.sequence_parallel, list) and not self.sequence_parallel:
            raise ValueError("sequence_parallel: an empty list allows no layout")
        vpps = set(self.vpp or [])
        only_interleaved = set(self.schedule) == {"interleaved"}
        if only_interleaved and ((self.vpp is not None and vpps == {1}) or self.max_vpp == 1):
            raise ValueError("schedule 'interleaved' needs vpp > 1, but vpp/max_vpp allow only 1")
        if "interleaved" not in self.schedule and self.vpp is not None and 1 not in vpps:
            raise ValueError(f"vpp {sorted(vpps)} > 1 needs the 'interleaved' schedule, which schedule "
                             f"{self.schedule} excludes")
        Layout(placement=self.placement)  # validates the order
        return self


def parse_space(constraints: Union[SearchSpace, dict, None], where: str = "search constraints") -> SearchSpace:
    """A SearchSpace from itself, a dict of its fields (None values dropped) or None (everything)."""
    if constraints is None:
        return SearchSpace()
    if isinstance(constraints, SearchSpace):
        return constraints
    return validate_spec(SearchSpace, {k: v for k, v in constraints.items() if v is not None}, where)


class EmptySearchSpace(SpecError):
    """The constraints leave no candidate layout. `reason` names the axis that ran out in one line (for status
    columns); the message adds the job and the constraints."""

    def __init__(self, reason: str, message: Optional[str] = None):
        self.reason = reason
        super().__init__(message or reason)


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------

def divisors(n: int) -> np.ndarray:
    """Divisors of n, ascending."""
    d = np.arange(1, int(np.sqrt(n)) + 1)
    d = d[n % d == 0]
    both = np.sort(np.concatenate([d, n // d]))     # np.unique's result; np.unique imports numpy.ma (14 ms)
    return both[np.concatenate([[True], both[1:] != both[:-1]])]


def _allowed(values: np.ndarray, listed, cap) -> np.ndarray:
    ok = np.ones(len(values), bool)
    if listed is not None:
        listed = np.asarray(listed)
        if listed.size * len(values) <= 4096:       # np.isin's result; its setup costs ~40 us on a few divisors
            ok &= (values[:, None] == listed.reshape(1, -1)).any(axis=1)
        else:
            ok &= np.isin(values, listed)
    if cap is not None:
        ok &= values <= cap
    return ok


def _expand(cols: dict, mask: np.ndarray, options: dict) -> dict:
    """Ragged product: row i of `cols` times every option j with mask[i, j] (vectorized). One option that every
    row takes (the default of most axes) leaves the rows as they are and adds the option as a read-only broadcast
    column: the same table without a gather of every column (the largest part of enumerating a search)."""
    if mask.shape[1] == 1 and mask.all():
        out = dict(cols)
        out.update({k: np.broadcast_to(np.asarray(v)[0], mask.shape[:1]) for k, v in options.items()})
        return out
    rows, opt = np.nonzero(mask)
    out = {k: v[rows] for k, v in cols.items()}
    out.update({k: np.asarray(v)[opt] for k, v in options.items()})
    return out


def _empty(what: str, model: ModelSpec, training: TrainingSpec, devices: int, space: SearchSpace) -> EmptySearchSpace:
    set_ = {k: v for k, v in space.model_dump(exclude_defaults=True).items()}
    cons = ", ".join(f"{k}={v}" for k, v in set_.items()) or "none"
    return EmptySearchSpace(what, f"empty search space: {what} (devices {devices}, model '{model.name}' with "
                                  f"{model.num_layers} layers and {model.num_heads} heads, global batch "
                                  f"{training.global_batch}, seq_len {training.seq_len}; constraints: {cons})")


class _Job:
    """What every axis step needs: the model, the batch, the device count and the space (internal)."""

    def __init__(self, model: ModelSpec, training: TrainingSpec, num_devices: int, space: SearchSpace):
        self.model, self.training, self.n, self.space = model, training, int(num_devices), space

    def empty(self, what: str) -> EmptySearchSpace:
        return _empty(what, self.model, self.training, self.n, self.space)

    def stated(self, axis: str) -> bool:
        """True when the axis's listed values are kept as stated (no per-model bound applies)."""
        return self.space.as_stated and getattr(self.space, axis) is not None


# ---------------------------------------------------------------------------------------------------------------
# the axes, in enumeration order
# ---------------------------------------------------------------------------------------------------------------

def _grid_axes(job: _Job) -> dict:
    """(tp, pp, cp) with tp*pp*cp dividing the devices and dp = the rest, within the listed dp."""
    m, s, N = job.model, job.space, job.n
    D = divisors(N)
    ok = {}
    for axis, bound, what in (("tp", m.num_heads, f"<= {m.num_heads} heads"),
                              ("pp", m.num_layers, f"<= {m.num_layers} layers"),
                              ("cp", job.training.seq_len, f"<= seq_len {job.training.seq_len}")):
        keep = _allowed(D, getattr(s, axis), getattr(s, f"max_{axis}"))
        if not job.stated(axis):
            keep &= D <= bound
        ok[axis] = D[keep]
        if len(ok[axis]) == 0:
            raise job.empty(f"no {axis} divides the {N} devices within the constraints ({what})")
    g = np.stack(np.meshgrid(ok["tp"], ok["pp"], ok["cp"], indexing="ij"), -1).reshape(-1, 3)
    g = g[N % (g[:, 0] * g[:, 1] * g[:, 2]) == 0]
    dp = N // (g[:, 0] * g[:, 1] * g[:, 2]) if len(g) else np.zeros(0, np.int64)
    keep = _allowed(dp, s.dp, None)
    g, dp = g[keep], dp[keep]
    if len(g) == 0:
        raise job.empty(f"no tp x pp x cp x dp product equals the {N} devices with tp in {ok['tp'].tolist()}, pp in "
                        f"{ok['pp'].tolist()}, cp in {ok['cp'].tolist()}" + (f", dp in {s.dp}" if s.dp else ""))
    return {"tp": g[:, 0], "pp": g[:, 1], "cp": g[:, 2], "dp": dp}


def _ep_axis(job: _Job, cols: dict) -> dict:
    """Expert parallelism (MoE): divisors of dp, at most the number of experts; 1 for dense models."""
    moe, s = job.model.moe, job.space
    if moe is None:
        cols["ep"] = np.ones(len(cols["tp"]), np.int64)
        return cols
    if job.stated("ep"):
        ep_opt = np.array(sorted(set(s.ep)), np.int64)
        return _expand(cols, np.ones((len(cols["tp"]), len(ep_opt)), bool), {"ep": ep_opt})
    D = divisors(job.n)
    ep_opt = D[_allowed(D, s.ep, s.max_ep) & (D <= moe.num_experts)]
    cols = _expand(cols, (cols["dp"][:, None] % ep_opt[None, :]) == 0, {"ep": ep_opt})
    if len(cols["tp"]) == 0:
        raise job.empty(f"no ep in {ep_opt.tolist()} divides dp")
    return cols


def _pipeline_axis(job: _Job, cols: dict) -> dict:
    """(vpp, schedule) options: flat schedules at vpp 1 (only the first where pp = 1), interleaving with vpp > 1
    where pp > 1 and pp*vpp divides the layers (listed vpp as stated: wherever pp > 1)."""
    s, L = job.space, job.model.num_layers
    flat = [x for x in ("1f1b", "gpipe", "zb-h1", "dualpipe", "zb-v") if x in s.schedule]
    v_max = min(L, s.max_vpp or L)
    vs = np.arange(2, v_max + 1) if "interleaved" in s.schedule else np.zeros(0, np.int64)
    if s.vpp is not None:
        vs = np.array(sorted(v for v in set(s.vpp) if v > 1), np.int64) if job.stated("vpp") else vs[np.isin(vs, s.vpp)]
        if 1 not in s.vpp:
            flat = []
    opt_v = np.concatenate([np.ones(len(flat), np.int64), vs]).astype(np.int64)
    opt_s = np.array([SCHEDULE_CODES[x] for x in flat] + [SCHEDULE_CODES["interleaved"]] * len(vs), np.int64)
    opt_first = np.zeros(len(opt_v), bool)
    if flat:
        opt_first[0] = True
    pp = cols["pp"][:, None]
    pipelined = pp > 1
    chunks = pp * opt_v[None, :]
    interleavable = pipelined if job.stated("vpp") else pipelined & (chunks <= L) & (L % chunks == 0)
    mask = np.where(opt_v[None, :] == 1, pipelined | opt_first[None, :], interleavable)
    cols = _expand(cols, mask, {"vpp": opt_v, "schedule": opt_s})   # pp = 1 keeps the first allowed schedule
    if len(cols["tp"]) == 0:
        raise job.empty(f"no pipeline schedule in {s.schedule} (vpp {s.vpp or 'any'}) applies: interleaving "
                        f"needs pp > 1 with pp*vpp dividing the {L} layers")
    return cols


def _micro_batch_axis(job: _Job, cols: dict) -> dict:
    """Micro-batch sizes: the listed ones or the rule's (module docstring), micro_batch * dp <= the batch."""
    s, B = job.space, job.training.global_batch
    dp = cols["dp"][:, None]
    if s.micro_batch is not None:
        mb_opt = np.array(sorted(set(s.micro_batch)), np.int64)
    elif s.micro_batch_sizes == "batch-divisors":
        mb_opt = divisors(B).astype(np.int64)                  # a divisor of B/dp divides B
    else:
        mb_opt = 2 ** np.arange(0, int(np.log2(B)) + 1, dtype=np.int64)
    if s.max_micro_batch is not None:
        mb_opt = mb_opt[mb_opt <= s.max_micro_batch]
    if job.stated("micro_batch"):
        mask = np.ones((len(dp), len(mb_opt)), bool)
    elif s.micro_batch is None and s.micro_batch_sizes == "batch-divisors":
        mb = mb_opt[None, :]
        mask = np.where(B % dp == 0, (B // dp) % mb == 0, mb == 1)
    else:
        mask = mb_opt[None, :] * dp <= B
    cols = _expand(cols, mask, {"micro_batch": mb_opt})
    if len(cols["tp"]) == 0:
        raise job.empty(f"no micro-batch size in {mb_opt.tolist()} has micro_batch * dp <= the global batch {B} "
                        "(dp too large for the batch)")
    return cols


def _zero_recompute_sp_axes(job: _Job, cols: dict) -> dict:
    """ZeRO x recompute (ZeRO does nothing without data parallelism: one row, the lowest allowed stage, at
    dp = 1), then the sequence-parallel settings (SP only where tp > 1)."""
    s = job.space
    zs = np.array(sorted(set(s.zero)), np.int64)
    rcs = np.array(sorted(RECOMPUTE_CODES[r] for r in set(s.recompute)), np.int64)
    zz, rr = (x.ravel() for x in np.meshgrid(zs, rcs, indexing="ij"))
    cols = _expand(cols, (cols["dp"][:, None] > 1) | (zz[None, :] == zs[0]), {"zero": zz, "recompute": rr})
    sps = np.array(sorted(set(s.sequence_parallel)) if isinstance(s.sequence_parallel, list)
                   else [s.sequence_parallel], bool)
    mask = (cols["tp"][:, None] > 1) | (sps[None, :] == sps[0])           # tp = 1: one row (SP is off there)
    cols = _expand(cols, mask, {"sequence_parallel": sps})
    cols["sequence_parallel"] = cols["sequence_parallel"] & (cols["tp"] > 1)
    return cols


def _moe_dp_sync_axes(job: _Job, cols: dict) -> dict:
    """MoE dispatch strategies where ep > 1 (the first otherwise), then the data-parallel synchronisations:
    plain, 1-bit compression and each local SGD tau, the last two only where dp > 1 and ZeRO is 0."""
    s = job.space
    disp = np.array([MOE_DISPATCH_CODES[x] for x in dict.fromkeys(s.moe_dispatch)], np.int64)
    cols = _expand(cols, (cols["ep"][:, None] > 1) | (np.arange(len(disp))[None, :] == 0), {"moe_dispatch": disp})
    opts = [(0, 1)] if "none" in s.dp_compression and 1 in s.local_sgd_tau else []
    opts += [(DP_COMPRESSION_CODES["onebit"], 1)] if "onebit" in s.dp_compression else []
    opts += [(0, tau) for tau in sorted(set(s.local_sgd_tau)) if tau > 1]
    if not opts:
        raise job.empty(f"dp_compression {s.dp_compression} with local_sgd_tau {s.local_sgd_tau} leaves no "
                        "data-parallel synchronisation (onebit and local SGD cannot be combined)")
    comp, tau = (np.array(x, np.int64) for x in zip(*opts))
    plain = (comp == 0) & (tau == 1)
    ok = (cols["dp"][:, None] > 1) & (cols["zero"][:, None] == 0)
    cols = _expand(cols, np.where(plain[None, :], True, ok), {"dp_compression": comp, "local_sgd_tau": tau})
    if len(cols["tp"]) == 0:
        raise job.empty("1-bit compression and local SGD need dp > 1 and zero 0 (--zero 0)")
    return cols


#: Most candidates one search evaluates at once: evaluation holds about 2 KB per candidate (the engine's columns),
#: so the cap keeps a search near 2 GB; larger spaces need constraints (a fuzzed 720,720-device job asked 30 M).
MAX_CANDIDATES = 1_000_000


def _check_size(job: _Job, n_layouts: int) -> None:
    """SpecError when the ZeRO x recompute x SP expansion of `n_layouts` would exceed MAX_CANDIDATES."""
    s = job.space
    n_sp = len(set(s.sequence_parallel)) if isinstance(s.sequence_parallel, list) else 1
    n_off = 1
    for k in ("optimizer", "params", "activations"):
        n_off *= len(set(getattr(s, f"offload_{k}", None) or [None]))
    n_comm = len(set(s.moe_dispatch)) * (len(set(s.dp_compression)) + len(set(s.local_sgd_tau)) - 1)
    bound = n_layouts * len(set(s.zero)) * len(set(s.recompute)) * n_sp * n_off * n_comm
    if bound > MAX_CANDIDATES:
        raise SpecError(f"the search space has up to {bound:,} candidates, more than the {MAX_CANDIDATES:,} one "
                        f"search evaluates (about 2 KB each in memory); narrow it, e.g. with --max-tp, --pp, "
                        f"--max-pp, --micro-batch, --zero or --recompute")


def _offload_axis(job: _Job, cols: dict) -> dict:
    """Offload tiers (optimizer x parameters x activations): the combinations the row's ZeRO stage allows where
    the state is sharded (dp x cp > 1): parameter offload with ZeRO-3, optimizer offload with ZeRO >= 2."""
    s = job.space
    grids = np.meshgrid(*(np.array(sorted({OFFLOAD_CODES[v] for v in getattr(s, f"offload_{k}")}), np.int64)
                          for k in ("optimizer", "params", "activations")), indexing="ij")
    opt, par, act = (g.ravel() for g in grids)
    if len(opt) == 1 and opt[0] == par[0] == act[0] == 0:
        return cols
    sharded = (cols["dp"] * cols["cp"] > 1)[:, None]
    zero = cols["zero"][:, None]
    bad = sharded & (((par[None, :] > 0) & (zero < 3)) | ((opt[None, :] > 0) & (zero < 2)))
    cols = _expand(cols, ~bad, {"offload_optimizer": opt, "offload_params": par, "offload_activations": act})
    if len(cols["tp"]) == 0:
        raise job.empty("no offload choice applies: parameter offload needs ZeRO-3 and optimizer offload ZeRO >= 2 "
                        "with data parallelism")
    return cols


def resolve_space(space: SearchSpace, framework=None, family: str = "") -> SearchSpace:
    """The space with its unset software-stack flags taken from `framework` (None: the default preset) on a
    hardware family (specs.stack.framework_layout_values)."""
    from ..specs.stack import FRAMEWORK_LAYOUT_FIELDS, as_framework, framework_layout_values
    spec = as_framework(framework if framework is not None else space.framework)
    fw = framework_layout_values(spec, family)
    update = {k: fw[k] for k in FRAMEWORK_LAYOUT_FIELDS if getattr(space, k) is None}
    if space.zero3_prefetch is None:
        stated = space.overlap_grad_reduce
        update["zero3_prefetch"] = stated if stated is not None else framework_layout_values(spec, family, 3)[
            "overlap_grad_reduce"]
    return space.model_copy(update=update) if update else space


def overlap_of_zero(space: SearchSpace, zero):
    """overlap_grad_reduce of candidates with ZeRO stage(s) `zero` in a resolved space: the ZeRO-3 prefetch for
    ZeRO-3, the gradient-reduce overlap otherwise (specs.stack.framework_layout_values)."""
    return np.where(np.asarray(zero) >= 3, space.zero3_prefetch, space.overlap_grad_reduce)


def enumerate_layouts(model: ModelSpec, training: TrainingSpec, num_devices: int,
                      space: SearchSpace | None = None) -> LayoutTable:
    """Every candidate layout as numpy columns (see the module docstring for the rules and the order).

    Raises EmptySearchSpace (a SpecError) when the constraints leave no candidate, naming the axis that ran out.
    """
    space = resolve_space(space or SearchSpace())
    if model.moe is None and space.ep is not None and set(space.ep) != {1}:
        msg = f"ep {space.ep} > 1 needs an MoE model; '{model.name}' is dense"
        raise EmptySearchSpace(msg)
    job = _Job(model, training, num_devices, space)
    cols = _grid_axes(job)
    cols = _ep_axis(job, cols)
    cols = _pipeline_axis(job, cols)
    cols = _micro_batch_axis(job, cols)
    _check_size(job, len(cols["tp"]))
    cols = _zero_recompute_sp_axes(job, cols)
    cols = _offload_axis(job, cols)
    cols = _moe_dp_sync_axes(job, cols)
    if "offload_optimizer" in cols:
        cols["offload_delayed_update"] = space.offload_delayed_update & (cols["offload_optimizer"] > 0)
    return LayoutTable.from_columns(
        placement=space.placement, **cols, moe_max_nodes=space.moe_max_nodes or 0,    # scalars: one value a column
        onebit_warmup_fraction=space.onebit_warmup_fraction,
        flash_attention=space.flash_attention, overlap_grad_reduce=overlap_of_zero(space, cols["zero"]),
        tp_comm_overlap=space.tp_comm_overlap, ep_comm_overlap=space.ep_comm_overlap,
        zero3_unit=ZERO3_UNIT_CODES[space.zero3_unit],
        dp_param_gather_overlap=space.dp_param_gather_overlap)
