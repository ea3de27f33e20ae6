"""Why a layout cannot run: one table of rules, each with its bit, its name, a vectorised check and a message.

Every caller uses this table: the analytic engine (a bit mask per layout), the discrete-event engine (which
refuses a layout with a structural reason), `estimate` (sentences), `search` (a `reason` column) and
`validate` (rows whose layout cannot run). A rule's `check(s)` takes a `Subject` (the job and the layout
columns as arrays) and returns True where the rule is broken; `message(s, i)` says so for row i, naming the
values and the rule. The memory rule is checked once the memory is composed (costs.stage) and reads
`s.mem_total_bytes` and `s.capacity_bytes`.

The offload rules: parameter offload needs ZeRO-3 and optimizer offload ZeRO >= 2 wherever the state is sharded
(ZeRO-3 Offload, ZeRO-Offload built on ZeRO-2: Ren et al. 2021, arXiv 2101.06840, sec. 4.2; a single replica has
nothing to shard and runs either); an offload the profile cannot cost (no host link, no CPU-Adam rate, no NVMe
bandwidth) cannot be evaluated (structural); host memory and NVMe per node are checked against capacity once
composed, like device memory, and an unknown capacity (null in the profile) is a reason too: the planner cannot
promise a fit it cannot check (docs/plan.md).

Sources of the rules: Megatron-LM argument checks (megatron/training/arguments.py: world size = tp x pp x dp x
cp, heads and FFN divisible by tp, global batch divisible by micro-batch x dp, interleaving needs m % pp == 0,
expert parallelism inside data parallelism or tp x dp); Narayanan et al. 2021 (arXiv 2104.04473) sec. 2.2.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .units import GIGA

#: Reason bits (a layout's `reasons` is their OR; 0 = feasible).
(R_WORLD, R_HEADS, R_KV, R_FFN, R_CHUNKS, R_BATCH, R_EP, R_CP, R_INTERLEAVE, R_VPP,
 R_MEMORY) = (1 << i for i in range(11))
R_OFFLOAD, R_HOST_FACTS, R_HOST_MEMORY, R_NVME = (1 << i for i in range(11, 15))
_TIERS = ("none", "cpu", "nvme")
R_TWO_CHUNK = 1 << 15


@dataclass(frozen=True)
class Subject:
    """What the rules look at: the job (model, training, devices) and the layout columns (numpy arrays or
    scalars), plus the composed memory for the memory rule."""

    model: object
    training: object
    num_devices: int
    tp: object
    pp: object
    dp: object
    ep: object
    cp: object
    vpp: object
    micro_batch: object
    schedule: object
    num_micro: object
    mem_total_bytes: object = None
    capacity_bytes: object = None
    zero: object = 1
    offload_optimizer: object = 0        # specs.layout.OFFLOAD_CODES
    offload_params: object = 0
    offload_activations: object = 0
    hardware: object = None              # for the host-facts rule (None: not checked)
    host_bytes: object = None            # per node, composed (the host-memory and NVMe rules)
    nvme_bytes: object = None


@dataclass(frozen=True)
class Rule:
    """One reason a layout cannot run."""

    bit: int
    name: str
    check: Callable          # Subject -> bool array, True where broken
    message: Callable        # (Subject, row index) -> sentence
    structural: bool = True  # False: the layout can be formed (only its memory is too large)


def subject_of(model, training, num_devices: int, table, num_micro, hardware=None) -> Subject:
    """The Subject of every row of a LayoutTable (`hardware`: checks the offload choices' host facts)."""
    return Subject(model=model, training=training, num_devices=num_devices, tp=table.tp, pp=table.pp, dp=table.dp,
                   ep=table.ep, cp=table.cp, vpp=table.vpp, micro_batch=table.micro_batch, schedule=table.schedule,
                   num_micro=num_micro, zero=table.zero, offload_optimizer=table.offload_optimizer,
                   offload_params=table.offload_params, offload_activations=table.offload_activations,
                   hardware=hardware)


def _i(s: Subject, name: str, i: int) -> int:
    return int(np.asarray(getattr(s, name)).reshape(-1)[i] if np.ndim(getattr(s, name)) else getattr(s, name))


def _expert_ffn(m) -> int:
    return m.moe.expert_ffn_hidden_size if m.moe is not None else m.ffn_hidden_size


def _bad_ep(s: Subject):
    # EP is carved out of DP, or, when it exceeds DP, out of TP x DP with the experts unsplit by TP
    # (Megatron-Core expert tensor parallelism 1: EP 32 over TP 2 x DP 16, Qwen3-235B recipes)
    if s.model.moe is None:
        return s.ep != 1
    ep_in_dp = s.dp % s.ep == 0
    ep_in_tpdp = (s.ep % s.dp == 0) & ((s.tp * s.dp) % s.ep == 0)
    return (~(ep_in_dp | ep_in_tpdp)) | (s.model.moe.num_experts % s.ep != 0)


def _msg_world(s, i):
    tp, pp, dp, cp = (_i(s, k, i) for k in ("tp", "pp", "dp", "cp"))
    return f"tp({tp}) * pp({pp}) * dp({dp}) * cp({cp}) = {tp * pp * dp * cp} != devices ({s.num_devices})"


def _msg_ffn(s, i):
    m = s.model
    return (f"tp ({_i(s, 'tp', i)}) must divide the FFN width ({m.ffn_hidden_size}"
            + (f", expert {_expert_ffn(m)})" if m.moe else ")"))


def _msg_chunks(s, i):
    pp, vpp = _i(s, "pp", i), _i(s, "vpp", i)
    return f"pp({pp}) * vpp({vpp}) = {pp * vpp} pipeline chunks exceed the {s.model.num_layers} layers"


def _msg_batch(s, i):
    mb, dp = _i(s, "micro_batch", i), _i(s, "dp", i)
    return (f"global batch ({s.training.global_batch}) is not a multiple of micro_batch({mb}) * dp({dp}) "
            f"= {mb * dp}")


def _msg_ep(s, i):
    ep, dp = _i(s, "ep", i), _i(s, "dp", i)
    if s.model.moe is None:
        return f"ep ({ep}) > 1 needs an MoE model; '{s.model.name}' is dense"
    return f"ep ({ep}) must divide dp ({dp}) and the number of experts ({s.model.moe.num_experts})"


def _msg_interleave(s, i):
    m = s.training.global_batch // max(1, _i(s, "micro_batch", i) * _i(s, "dp", i))
    return f"interleaved schedule needs the micro-batch count ({m}) to be a multiple of pp ({_i(s, 'pp', i)})"


def _bad_two_chunk(s: Subject):
    # DualPipe (code 4): even pp, an even micro-batch count of at least 2 pp (both directions; DualPipe.step
    # asserts num_chunks >= pp * 2 and even), pp stages; ZB-V (code 5): 2p stages in a V and at least 2p - 1
    # micro-batches (the handcrafted order of Qi et al. 2024 sec. 6 / torch ScheduleZBVZeroBubble)
    code = np.asarray(s.schedule)
    m = np.asarray(s.num_micro)
    dual = (code == 4) & ((s.pp % 2 != 0) | (np.mod(m, 2) != 0) | (m < 2 * s.pp))
    zbv = (code == 5) & ((m < 2 * s.pp - 1) | (2 * s.pp > s.model.num_layers))
    return dual | zbv


def _msg_two_chunk(s, i):
    pp = _i(s, "pp", i)
    m = s.training.global_batch // max(1, _i(s, "micro_batch", i) * _i(s, "dp", i))
    if int(np.asarray(s.schedule).reshape(-1)[i] if np.ndim(s.schedule) else s.schedule) == 4:
        return (f"schedule dualpipe needs an even pp ({pp}) and an even micro-batch count ({m}, both directions) "
                f"of at least 2 x pp = {2 * pp}")
    return (f"schedule zb-v needs at least 2 x pp - 1 = {2 * pp - 1} micro-batches ({m}) and 2 x pp = {2 * pp} "
            f"stages within the {s.model.num_layers} layers")


def _msg_memory(s, i):
    if s.mem_total_bytes is None:
        return "does not fit in device memory"
    total = float(np.asarray(s.mem_total_bytes).reshape(-1)[i] if np.ndim(s.mem_total_bytes) else s.mem_total_bytes)
    cap = float(np.asarray(s.capacity_bytes).reshape(-1)[i] if np.ndim(s.capacity_bytes) else s.capacity_bytes)
    if not np.isfinite(total):
        return f"its memory per device cannot be bounded (more than the {cap / GIGA:,.1f} GB available)"
    return f"needs {total / GIGA:,.1f} GB per device, more than the {cap / GIGA:,.1f} GB available"


def _bad_offload(s: Subject):
    sharded = s.dp * s.cp > 1
    return sharded & (((s.offload_params > 0) & (s.zero < 3)) | ((s.offload_optimizer > 0) & (s.zero < 2)))


def _msg_offload(s, i):
    z, dpc = _i(s, "zero", i), _i(s, "dp", i) * _i(s, "cp", i)
    out = []
    par, opt = _i(s, "offload_params", i), _i(s, "offload_optimizer", i)
    if par and z < 3:
        out.append(f"offload_params={_TIERS[par]} needs zero 3 (ZeRO-3 Offload) when the parameters are sharded "
                   f"(dp x cp = {dpc}), got zero {z}")
    if opt and z < 2:
        out.append(f"offload_optimizer={_TIERS[opt]} needs zero >= 2 (ZeRO-Offload moves each gradient partition "
                   f"during the backward) when the optimizer is sharded (dp x cp = {dpc}), got zero {z}")
    return "; ".join(out)


def _host_facts(s: Subject):
    from .costs.offload import host_rates, missing_host_facts
    if s.hardware is None:
        return np.zeros(np.shape(s.offload_optimizer), bool)
    return missing_host_facts(host_rates(s.hardware, s.num_devices), s.offload_optimizer, s.offload_params,
                              s.offload_activations)


def _msg_host_facts(s, i):
    from .costs.offload import NVME, host_rates
    opt, par = _i(s, "offload_optimizer", i), _i(s, "offload_params", i)
    need = {"link"} | ({"adam"} if opt else set()) | ({"nvme"} if NVME in (opt, par) else set())
    fields = [f for what, f in host_rates(s.hardware, s.num_devices).missing if what in need]
    return f"offload needs {', '.join(fields)} of hardware '{s.hardware.name}', which its profile does not give"


def _value(x, i):
    return float(np.asarray(x).reshape(-1)[i] if np.ndim(x) else x)


def tier_capacity_bytes(hardware, num_devices: int, tier: str) -> float:
    """Host memory or NVMe per node of `hardware` (nan = unknown; costs.offload.HostRates)."""
    from .costs.offload import host_rates
    r = host_rates(hardware, num_devices)
    return r.host_capacity_bytes if tier == "host" else r.nvme_capacity_bytes


def _tier_message(tier: str, what: str, field_name: str):
    def msg(s, i):
        need = _value(getattr(s, f"{tier}_bytes"), i)
        cap = tier_capacity_bytes(s.hardware, s.num_devices, tier)
        if np.isnan(cap):
            return f"needs {need / GIGA:,.1f} GB of {what} per node; hardware '{s.hardware.name}' gives no {field_name}"
        return f"needs {need / GIGA:,.1f} GB of {what} per node, more than the {cap / GIGA:,.0f} GB available"
    return msg


def _tier_broken(s: Subject, tier: str):
    from .costs.offload import tier_fits
    return ~tier_fits(getattr(s, f"{tier}_bytes"), tier_capacity_bytes(s.hardware, s.num_devices, tier))


#: The rules, in the order their sentences are listed.
RULES = (
    Rule(R_WORLD, "world size", lambda s: s.tp * s.pp * s.dp * s.cp != s.num_devices, _msg_world),
    Rule(R_HEADS, "heads", lambda s: s.model.num_heads % s.tp != 0,
         lambda s, i: f"tp ({_i(s, 'tp', i)}) must divide the attention heads ({s.model.num_heads})"),
    Rule(R_KV, "kv heads", lambda s: (s.model.kv_heads % s.tp != 0) & (s.tp % s.model.kv_heads != 0),
         lambda s, i: f"tp ({_i(s, 'tp', i)}) and the key/value heads ({s.model.kv_heads}) must divide one another"),
    Rule(R_FFN, "ffn width", lambda s: (s.model.ffn_hidden_size % s.tp != 0) | (_expert_ffn(s.model) % s.tp != 0),
         _msg_ffn),
    Rule(R_CHUNKS, "layers", lambda s: s.pp * s.vpp > s.model.num_layers, _msg_chunks),
    Rule(R_BATCH, "batch", lambda s: s.training.global_batch % (s.micro_batch * s.dp) != 0, _msg_batch),
    Rule(R_EP, "experts", _bad_ep, _msg_ep),
    Rule(R_CP, "sequence", lambda s: s.training.seq_len % s.cp != 0,
         lambda s, i: f"cp ({_i(s, 'cp', i)}) must divide the sequence length ({s.training.seq_len})"),
    Rule(R_INTERLEAVE, "interleave", lambda s: (s.schedule == 2) & (np.mod(s.num_micro, s.pp) != 0),
         _msg_interleave),
    Rule(R_VPP, "vpp", lambda s: ((s.vpp > 1) & (s.pp == 1)) | ((s.vpp > 1) != (s.schedule == 2)),
         lambda s, i: f"vpp ({_i(s, 'vpp', i)}) > 1 needs pp > 1 and the interleaved schedule (and vice versa)"),
    Rule(R_TWO_CHUNK, "two-chunk schedule", _bad_two_chunk, _msg_two_chunk),
    Rule(R_MEMORY, "memory", lambda s: ~(s.mem_total_bytes <= s.capacity_bytes), _msg_memory, structural=False),
    Rule(R_OFFLOAD, "offload", _bad_offload, _msg_offload),
    Rule(R_HOST_FACTS, "host facts", _host_facts, _msg_host_facts),
    Rule(R_HOST_MEMORY, "host memory", lambda s: _tier_broken(s, "host"),
         _tier_message("host", "host memory", "host.memory_gb"), structural=False),
    Rule(R_NVME, "nvme", lambda s: _tier_broken(s, "nvme"), _tier_message("nvme", "NVMe", "host.nvme_gb"),
         structural=False),
)
RULE_BY_BIT = {r.bit: r for r in RULES}
#: Bits of the reasons that make a layout impossible to form (every bit but memory).
STRUCTURAL_MASK = sum(r.bit for r in RULES if r.structural)


def structural_reasons(s: Subject):
    """Bit mask (int64 array) of the structural rules each row breaks."""
    n = np.broadcast(*(np.asarray(getattr(s, k)) for k in ("tp", "pp", "dp", "ep", "cp", "vpp"))).shape
    reasons = np.zeros(n, dtype=np.int64)
    for r in RULES:
        if r.structural:
            np.bitwise_or(reasons, r.bit, out=reasons, where=r.check(s))    # in place: no temporary per rule
    return reasons


def memory_reason(mem: dict):
    """The memory bits where a layout does not fit (`mem`: the composed memory columns of costs.stage: device,
    host and NVMe)."""
    return (np.where(mem["fits_device"], 0, R_MEMORY) | np.where(mem["fits_host"], 0, R_HOST_MEMORY)
            | np.where(mem["fits_nvme"], 0, R_NVME))


def describe_subject(mask: int, s: Subject, i: int = 0) -> list[str]:
    """Every reason of row i, as sentences naming the values and the rule."""
    return [r.message(s, i) for r in RULES if mask & r.bit]


def describe(mask: int, model, training, num_devices: int, row: dict, result: dict | None = None,
             hardware=None) -> list[str]:
    """Every reason of one layout (`row`: its tp, pp, dp, ep, cp, vpp, micro_batch and optionally zero and the
    offload tiers (codes or names); `result`: its composed memory columns, for the memory sentences; `hardware`: for the offload
    sentences), as sentences."""
    code = lambda v: _TIERS.index(str(v)) if str(v) in _TIERS else int(v)  # noqa: E731 (tier names or codes)
    opt = {k: code(row.get(k, d)) for k, d in (("zero", 1), ("offload_optimizer", 0), ("offload_params", 0),
                                                ("offload_activations", 0))}
    s = Subject(model=model, training=training, num_devices=num_devices, schedule=row.get("schedule"),
                num_micro=row.get("num_micro"), hardware=hardware, **opt,
                **{k: int(row[k]) for k in ("tp", "pp", "dp", "ep", "cp", "vpp", "micro_batch")})
    if result is not None:
        s = replace(s, mem_total_bytes=result["mem_total_bytes"], capacity_bytes=result["mem_capacity_bytes"],
                    host_bytes=result.get("mem_host_bytes"), nvme_bytes=result.get("mem_nvme_bytes"))
    return describe_subject(int(mask), s, 0)
