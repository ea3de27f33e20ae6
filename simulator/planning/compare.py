"""Compare one training job across hardware profiles: the best layout on each (by the layout search), its MFU,
step time and throughput, and the time, cost and energy to train a number of tokens.

    time to train  = tokens / tokens_per_s
    cost to train  = devices x price per device-hour x time (hours)
    energy         = devices x device power (W) x time: the accelerators' board power (TDP) only; host, network
                     and cooling (PUE) are not included.

With `budget_per_hour` instead of `devices`, each profile may rent up to floor(budget / price) devices; the
compare searches the counts within that which factor well (whole nodes times a power of two, or times 3 or 5
and a power of two: `budget_device_counts`) and keeps the one whose best layout is best for the objective, so a
budget never ends in an odd count such as 2,008 devices and pp 77.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional, Union

import pandas as pd

from .. import metrics
from ..errors import SpecError
from ..reports.labels import layout_label
from ..specs.stack import as_framework
from ..specs.hardware import HardwareProfile
from ..specs.loading import available_profiles, load_hardware, load_model
from ..specs.model import ModelSpec
from ..specs.training import resolve_seq_len
from .enumerate import EmptySearchSpace
from .search import SearchResult, parse_space, records, search

COLUMNS = ("hardware", "vendor", "family", "devices", "feasible", "status", "layout", "tp", "pp", "dp", "cp", "ep",
           "vpp", "micro_batch", "zero", "recompute", "schedule", "mfu", "step_time_s", "tokens_per_s",
           "tflops_per_device", "mem_total_bytes", "mem_capacity_bytes", "time_to_train_s", "price_per_hour_usd",
           "cost_usd", "power_w", "energy_kwh", "num_candidates", "num_feasible", "search_s",
           "uncertainty_pct", "uncertainty_kind", "uncertainty", "best_measured_mfu")


@dataclass(frozen=True)
class CompareResult:
    """One row per hardware profile (`frame`, columns COLUMNS) plus the job; `searches` holds each
    profile's full SearchResult (absent where the profile's search space was empty)."""

    model: ModelSpec
    global_batch: int
    seq_len: int
    tokens: float
    frame: pd.DataFrame
    budget_per_hour: Optional[float] = None
    searches: dict = field(default_factory=dict)
    notes: tuple = ()
    framework: str = "megatron-core"     # the software stack of every profile's search (specs.stack)

    def meta(self) -> dict:
        return {"model": self.model.name, "framework": self.framework, "global_batch": self.global_batch,
                "seq_len": self.seq_len,
                "tokens": self.tokens, "budget_per_hour": self.budget_per_hour, "notes": list(self.notes)}

    def to_dict(self) -> dict:
        d = self.meta()
        d["profiles"] = records(self.frame)
        return d


def _per_profile(value, name: str, what: str):
    """A number for all profiles, or a {profile: number} mapping (None where unset)."""
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, dict):
        return value.get(name)
    raise SpecError(f"{what} must be a number or a mapping of profile name to number, got {value!r}")


def sync_note(name: str, res: SearchResult) -> str:
    """A sentence when a profile's best layout synchronises data parallelism with 1-bit compression or local SGD:
    what it picked and how much faster it is than the best layout with a plain gradient all-reduce ('' else)."""
    b = res.best
    if b is None or "dp_compression" not in b:
        return ""
    onebit, tau = str(b["dp_compression"]) == "onebit", int(b["local_sgd_tau"])
    if not onebit and tau <= 1:
        return ""
    f = res.feasible
    plain = f[(f["dp_compression"].astype(str) == "none") & (f["local_sgd_tau"] == 1)]
    what = "1-bit compression of the gradients (1-bit Adam)" if onebit else f"local SGD with tau {tau} (CO2)"
    if len(plain) == 0:
        return f"{name}: picked {what}; no layout with a plain gradient all-reduce fits"
    gain = float(b["tokens_per_s"]) / float(plain["tokens_per_s"].max()) - 1.0
    return f"{name}: picked {what}, {gain:.0%} more tokens/s than the best plain all-reduce layout"


def error_status(err: SpecError) -> str:
    """The status of a profile whose search raised: the axis that ran out for an empty search space (its
    structured `reason`, without the job and constraints the message repeats), else the message."""
    if isinstance(err, EmptySearchSpace):
        return f"empty search space: {err.reason}"
    return str(err)


def devices_for_budget(hw: HardwareProfile, budget_per_hour: float, price: Optional[float]) -> int:
    """Devices a budget (USD per hour) rents: floor(budget / price), rounded down to whole nodes."""
    if price is None:
        raise SpecError(f"--budget-per-hour needs a price for '{hw.name}': the profile has no "
                        f"device.price_per_hour_usd; pass --price-per-hour {hw.name}=USD")
    n = int(math.floor(budget_per_hour / price + 1e-9))
    return (n // hw.devices_per_node) * hw.devices_per_node


def budget_device_counts(hw: HardwareProfile, budget_per_hour: float, price: Optional[float]) -> list[int]:
    """Device counts a budget rents that factor well, largest first: the largest node x 2^a, node x 3 x 2^a and
    node x 5 x 2^a within floor(budget / price) (a parallel layout splits them into tp x pp x dp without odd
    factors); [] when the budget rents less than one node.

    Source: Megatron-LM and torchtitan recipes size clusters as whole nodes times powers of two (tp within a
    node, pp and dp dividing the rest); definition of the budget."""
    node = hw.devices_per_node
    limit = devices_for_budget(hw, budget_per_hour, price)
    out = set()
    for base in (node, 3 * node, 5 * node):
        d = base
        while d * 2 <= limit:
            d *= 2
        if d <= limit:
            out.add(d)
    return sorted(out, reverse=True)


def _better(objective: str, a: Optional[SearchResult], b: Optional[SearchResult], price) -> bool:
    """Whether search `a` gives a better best layout than `b` (throughput, cost per token, or memory)."""
    if a is None or a.best is None:
        return False
    if b is None or b.best is None:
        return True
    ta, tb = float(a.best["tokens_per_s"]), float(b.best["tokens_per_s"])
    if objective == "cost" and price is not None:
        return a.num_devices / ta < b.num_devices / tb
    if objective == "memory":
        return float(a.best["mem_total_bytes"]) < float(b.best["mem_total_bytes"])
    return ta > tb


def _row(hw: HardwareProfile, devices: int, status: str, price, power, res: Optional[SearchResult], tokens: float,
         elapsed: float) -> dict:
    from ..uncertainty import uncertainty_for
    row = {c: None for c in COLUMNS}
    u = uncertainty_for(hw)
    best = best_measured_mfu().get(hw.family)
    row.update(hardware=hw.name, vendor=hw.vendor, family=hw.family, devices=int(devices), feasible=False,
               status=status, price_per_hour_usd=price, power_w=power, search_s=elapsed,
               mem_capacity_bytes=hw.device.memory_bytes, uncertainty_pct=u.expected_error_pct,
               uncertainty_kind=u.kind, uncertainty=u.basis, best_measured_mfu=None if best is None else best[0])
    if res is not None:
        row.update(num_candidates=res.num_candidates, num_feasible=res.num_feasible)
        b = res.best
        if b is None:
            cl = res.closest(1)
            if len(cl):
                row.update(mem_total_bytes=float(cl.iloc[0]["mem_total_bytes"]), layout=layout_label(cl.iloc[0]))
            return row
        t = tokens / float(b["tokens_per_s"])
        row.update(feasible=True, status="ok", layout=layout_label(b),
                   **{k: b[k] for k in ("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "zero")},
                   recompute=str(b["recompute"]), schedule=str(b["schedule"]),
                   **{k: float(b[k]) for k in ("mfu", "step_time_s", "tokens_per_s", "tflops_per_device",
                                               "mem_total_bytes")},
                   time_to_train_s=t,
                   cost_usd=None if price is None else metrics.cost_usd(devices, price, t),
                   energy_kwh=None if power is None else metrics.energy_kwh(devices, power, t))
    return row


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for c in ("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "zero", "num_candidates", "num_feasible"):
        df[c] = pd.array(df[c], dtype="Int64")
    for c in ("mfu", "step_time_s", "tokens_per_s", "tflops_per_device", "mem_total_bytes", "mem_capacity_bytes",
              "time_to_train_s", "price_per_hour_usd", "cost_usd", "power_w", "energy_kwh", "search_s",
              "uncertainty_pct", "best_measured_mfu"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["feasible"] = df["feasible"].astype(bool)
    return df


def _profiles(hardware, price_per_hour, power_w) -> list[HardwareProfile]:
    """The compared profiles ("all" expands to every shipped profile), each once; the per-profile price and
    power mappings may only name compared profiles."""
    if isinstance(hardware, (str, HardwareProfile)):
        hardware = [hardware]
    names = []
    for h in hardware:
        names.extend(available_profiles() if h == "all" else [h])
    if not names:
        raise SpecError("compare needs at least one hardware profile")
    profiles = [load_hardware(h) for h in names]
    seen = set()
    for hw in profiles:
        if hw.name in seen:
            raise SpecError(f"hardware profile '{hw.name}' is listed twice")
        seen.add(hw.name)
    for mapping, what in ((price_per_hour, "price_per_hour"), (power_w, "power_w")):
        if isinstance(mapping, dict):
            unknown = set(mapping) - seen
            if unknown:
                raise SpecError(f"{what} names profile(s) not compared: {', '.join(sorted(unknown))} "
                                f"(compared: {', '.join(sorted(seen))})")
    return profiles


def compare(model: Union[str, ModelSpec], hardware, devices: Optional[int] = None, global_batch: int = 0,
            seq_len: Optional[int] = None, *, tokens: float = 1e12, budget_per_hour: Optional[float] = None,
            price_per_hour=None, power_w=None, dtype: str = "bf16", constraints=None,
            objective: str = "throughput", progress=None, moe_routing=None, network=None) -> CompareResult:
    """Best layout of one job on each hardware profile, with the time, cost and energy to train `tokens`.

    `hardware`: profile names/paths/specs, or "all". Give `devices` (the same count everywhere) or
    `budget_per_hour` (USD; each profile gets what the budget rents). `price_per_hour` and `power_w` override
    the profiles' figures: one number for all, or a {profile name: number} mapping. `progress(done, total)`
    is called after each profile.
    """
    m = load_model(model)
    if isinstance(hardware, (str, HardwareProfile)):
        hardware = [hardware]
    if not hardware:
        raise SpecError("compare needs at least one hardware profile")
    if (devices is None) == (budget_per_hour is None):
        raise SpecError("give exactly one of devices (--devices) and budget_per_hour (--budget-per-hour)")
    if budget_per_hour is not None and not budget_per_hour > 0:
        raise SpecError(f"budget_per_hour = {budget_per_hour}: must be > 0")
    if not tokens > 0:
        raise SpecError(f"tokens = {tokens}: must be > 0")
    seq_len = resolve_seq_len(m, seq_len)
    space = parse_space(constraints)
    profiles = _profiles(hardware, price_per_hour, power_w)
    rows, searches, errors = [], {}, []
    for hw in profiles:
        price = _per_profile(price_per_hour, hw.name, "price_per_hour")
        price = price if price is not None else hw.device.price_per_hour_usd
        power = _per_profile(power_w, hw.name, "power_w")
        power = power if power is not None else hw.device.power_w
        counts = [devices] if devices is not None else budget_device_counts(hw, budget_per_hour, price)
        t0 = time.perf_counter()
        if not counts:
            rows.append(_row(hw, 0, f"${budget_per_hour:,.0f}/h rents less than one node "
                                    f"({hw.devices_per_node} x ${price:,.2f}/h)", price, power, None, tokens, 0.0))
            continue
        res, n, first_err = None, counts[0], None
        for c in counts:
            try:
                r = search(m, hw, int(c), global_batch, seq_len, dtype=dtype, constraints=space,
                           objective=objective, price_per_hour=price if objective == "cost" else None,
                           reasons=False, moe_routing=moe_routing, network=network)
            except SpecError as err:
                first_err = first_err or err
                continue
            if res is None or _better(objective, r, res, price):
                res, n = r, c
        if progress is not None:
            progress(len(rows) + 1, len(profiles))
        if res is None:
            errors.append(f"{hw.name}: {first_err}")
            rows.append(_row(hw, n, error_status(first_err), price, power, None, tokens, time.perf_counter() - t0))
            continue
        searches[hw.name] = res
        rows.append(_row(hw, n, res.short_status(), price, power, res, tokens, time.perf_counter() - t0))
    if len(errors) == len(profiles):
        raise SpecError("no profile has a candidate layout:\n" + "\n".join(errors))
    notes = [n for hw in profiles if hw.name in searches for n in [sync_note(hw.name, searches[hw.name])] if n]
    notes += ["energy: accelerator board power (TDP) x time; host, network and cooling (PUE) excluded",
              "cost: devices x price per device-hour x time; n/a where the profile has no price (--price-per-hour)"]
    notes += mfu_warnings(rows)
    return CompareResult(model=m, global_batch=global_batch, seq_len=seq_len, tokens=float(tokens), frame=_frame(rows),
                         budget_per_hour=budget_per_hour, searches=searches, notes=tuple(notes),
                         framework=as_framework(space.framework).name)


def best_measured_mfu() -> dict:
    """Family -> (best MFU measured on it, row id): the best MFU any shipped time/rate row's measurement implies in
    trainsim's convention, recorded with the per-family errors (hardware_profiles/calibration/validation-errors.yaml,
    written by benchmarks/crossval.py --write-errors; ships with the package)."""
    from ..uncertainty import family_errors
    return {fam: (float(rec["best_measured_mfu"]), str(rec.get("best_measured_mfu_row", "")))
            for fam, rec in family_errors().items() if isinstance(rec, dict) and rec.get("best_measured_mfu")}


def mfu_warnings(rows: list) -> list:
    """A warning for every profile whose predicted MFU exceeds the best MFU measured on its family (and one for
    families with no measured MFU at all)."""
    out = []
    for r in rows:
        if not r.get("feasible") or r.get("mfu") is None:
            continue
        best = best_measured_mfu().get(r["family"])
        if best is None:
            out.append(f"warning: {r['hardware']}: no measured MFU for family {r['family']} in the shipped runs; "
                       f"the predicted {r['mfu']:.1%} is unchecked")
        elif r["mfu"] > best[0]:
            out.append(f"warning: {r['hardware']}: predicted MFU {r['mfu']:.1%} exceeds the best measured on "
                       f"{r['family']} ({best[0]:.1%}, run {best[1]})")
    return out
