"""Offload composed with the analytic engine: the one-step estimate of the on-device part plus the host link,
CPU optimizer and NVMe costs of costs/offload.py, with device, host and NVMe memory each checked against capacity.

The engines' own integration of offload (layout fields, search dimensions) comes after their restructure; this
module composes from the outside: it removes what leaves the device from the estimate's memory, replaces the GPU
optimizer step by the CPU one and adds whatever transfer time compute cannot hide.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from ..costs import offload as off
from ..costs.flops import attention_params, model_costs, mlp_params
from ..errors import InfeasibleLayoutError, SpecError
from ..specs.offload import Offload
from ..specs.scenario import Scenario
from ..units import GIGA, storage_bytes

#: Share of a step's compute that is backward (2 of the 3 forward-equivalents), the window gradients stream out in.
BACKWARD_SHARE = 2.0 / 3.0


@dataclass(frozen=True)
class OffloadEstimate:
    """One layout with offload: step time, throughput, memory by tier, transfer times, reasons."""

    step: object                       # the analytic StepEstimate of the on-device part
    offload: Offload
    step_time_s: float
    tflops_per_device: float
    mfu: float
    hfu: float
    tokens_per_s: float
    device_memory: dict
    host_bytes_per_node: float
    nvme_bytes_per_node: float
    transfers_s: dict
    reasons: tuple = ()
    notes: tuple = field(default_factory=tuple)

    @property
    def feasible(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        return {"offload": self.offload.model_dump(), "step_time_s": self.step_time_s,
                "tflops_per_device": self.tflops_per_device, "mfu": self.mfu, "hfu": self.hfu,
                "tokens_per_s": self.tokens_per_s, "memory": dict(self.device_memory),
                "host_bytes_per_node": self.host_bytes_per_node, "nvme_bytes_per_node": self.nvme_bytes_per_node,
                "transfers_s": dict(self.transfers_s), "feasible": self.feasible, "reasons": list(self.reasons),
                "notes": list(self.notes), "on_device_step_time_s": self.step.step_time_s}


def _host_rates(sc: Scenario, choice: Offload) -> dict:
    """Host link (per device, shared per node), CPU-Adam rate and NVMe bandwidth (per device share)."""
    hw, host = sc.hardware, sc.hardware.host
    if host is None or host.link_bytes_per_s is None:
        raise SpecError(f"offload needs the host link: hardware '{hw.name}' has no host.link_gb_per_s")
    on_node = float(off.devices_on_node(sc.num_devices, hw.devices_per_node))
    rates = {"on_node": on_node,
             "link": float(off.host_link_bytes_per_s(host.link_bytes_per_s, host.link_node_bytes_per_s, on_node))}
    if choice.optimizer != "none":
        if host.cpu_adam_params_per_s is not None:
            rates["adam"] = host.cpu_adam_params_per_s
        elif host.memory_bandwidth_bytes_per_s is not None:
            rates["adam"] = float(off.cpu_adam_params_per_s(host.memory_bandwidth_bytes_per_s))
        else:
            raise SpecError(f"optimizer offload needs host.cpu_adam_params_per_s or host.memory_bandwidth_gb_per_s "
                            f"of hardware '{hw.name}'")
    if "nvme" in (choice.optimizer, choice.params):
        if host.nvme_read_bytes_per_s is None or host.nvme_write_bytes_per_s is None:
            raise SpecError(f"NVMe offload needs host.nvme_read_gb_per_s and host.nvme_write_gb_per_s of hardware "
                            f"'{hw.name}'")
        rates["nvme_read"] = host.nvme_read_bytes_per_s / on_node
        rates["nvme_write"] = host.nvme_write_bytes_per_s / on_node
    return rates


def _rank_params(sc: Scenario) -> tuple[float, float]:
    """(parameters on one model-parallel rank, parameters of one ZeRO-3 gather unit on that rank); dense models,
    pipeline stages taken as equal."""
    m, lay = sc.model, sc.layout
    total = model_costs(m, sc.training.seq_len).total_params(m.tied_embeddings)
    h, kv = m.hidden_size, m.kv_heads * m.dim_per_head
    layer = attention_params(m) + mlp_params(h, m.ffn_hidden_size, m.gated_mlp)
    largest = max(h * m.ffn_hidden_size, h * (m.num_heads * m.dim_per_head + 2 * kv))
    unit = layer if lay.zero3_unit == "layer" else largest
    return total / (lay.tp * lay.pp), unit / lay.tp


def _check(sc: Scenario, choice: Offload) -> None:
    lay = sc.layout
    if choice.params != "none" and lay.zero < 3:
        raise SpecError(f"offload params={choice.params} needs zero 3 (ZeRO-3 Offload), got zero {lay.zero}")
    if choice.optimizer != "none" and lay.zero < 1:
        raise SpecError(f"offload optimizer={choice.optimizer} needs zero >= 1 (the optimizer partition is what "
                        f"moves), got zero {lay.zero}")
    if sc.model.is_moe:
        raise SpecError(f"offload is modelled for dense models only; '{sc.model.name}' is a mixture of experts")


def _memory(sc: Scenario, choice: Offload, st) -> tuple[dict, float, float, float]:
    """(device memory by kind, host bytes per device, nvme bytes per device, activation bytes moved per step)."""
    lay = sc.layout
    mem = dict(st.memory_bytes)
    params_rank, unit = _rank_params(sc)
    w_b = storage_bytes(sc.training.dtype)
    dev_w, dev_g, dev_o, host, nvme = off.offloaded_state_bytes(
        params_rank, lay.dp * lay.cp, w_b, w_b, lay.zero, choice.optimizer, choice.params, unit)
    if choice.optimizer != "none" or choice.params != "none":
        mem["weights_bytes"] = float(dev_w)
    if dev_g is not None:
        mem["grads_bytes"], mem["optimizer_bytes"] = float(dev_g), float(dev_o)
    moved = 0.0
    if choice.activations == "cpu":
        moved = mem["activations_bytes"]
        layers_rank = sc.model.num_layers / lay.pp
        mem["activations_bytes"] = moved * min(1.0, off.ACTIVATION_LAYERS_ON_DEVICE / layers_rank)
        host += moved
    mem["total_bytes"] = sum(v for k, v in mem.items() if k not in ("total_bytes", "capacity_bytes"))
    return mem, float(host), float(nvme), moved


def _transfers(sc: Scenario, choice: Offload, st, rates: dict, moved_act: float) -> dict:
    """Seconds per step of each offload transfer and the CPU update, and the time they add to the step."""
    lay = sc.layout
    params_rank, _ = _rank_params(sc)
    shard = params_rank / (lay.dp * lay.cp)
    w_b = storage_bytes(sc.training.dtype)
    bd = st.time_breakdown_s
    compute = bd["compute"] + bd["recompute"]
    bwd_window = BACKWARD_SHARE * bd["compute"] + bd["recompute"]
    link = rates["link"]
    t = {"grad_d2h_s": 0.0, "param_fetch_s": 0.0, "param_h2d_update_s": 0.0, "activation_s": 0.0,
         "cpu_adam_s": 0.0, "nvme_optimizer_s": 0.0, "update_s": 0.0, "gpu_optimizer_removed_s": 0.0}
    if choice.optimizer != "none":
        t["grad_d2h_s"] = float(off.transfer_time_s(shard * w_b, link))
        t["cpu_adam_s"] = float(off.cpu_adam_time_s(shard, rates["adam"], rates["on_node"]))
        if choice.optimizer == "nvme":
            rd, wr = off.nvme_optimizer_io_bytes(shard)
            t["nvme_optimizer_s"] = rd / rates["nvme_read"] + wr / rates["nvme_write"]
        if lay.zero < 3:
            t["param_h2d_update_s"] = float(off.transfer_time_s(shard * w_b, link))
        t["update_s"] = float(max(off.zero_offload_update_s(t["cpu_adam_s"], t["param_h2d_update_s"]),
                                  t["nvme_optimizer_s"]))
        t["gpu_optimizer_removed_s"] = bd["optimizer"]
    if choice.params != "none":
        passes = 3.0 if lay.recompute == "full" else 2.0
        per_pass = float(off.transfer_time_s(shard * w_b, link))
        if choice.params == "nvme":
            per_pass = max(per_pass, shard * w_b / rates["nvme_read"])
        t["param_fetch_s"] = passes * per_pass
    if moved_act:
        t["activation_s"] = float(off.transfer_time_s(moved_act, link))       # out in forward, back in backward
    h2d = t["param_fetch_s"] + t["activation_s"]
    d2h = t["grad_d2h_s"] + t["activation_s"]
    exposed_link = max(float(off.exposed_s(h2d, compute)), float(off.exposed_s(d2h, bwd_window)))
    update = float(off.exposed_s(t["update_s"], compute)) if choice.delayed_update else t["update_s"]
    t["added_s"] = exposed_link + update - t["gpu_optimizer_removed_s"]
    return t


def estimate_offload(scenario: Scenario, offload: Offload, step=None) -> OffloadEstimate:
    """One layout with the given offload: the analytic estimate of the on-device part (`step` reuses one) plus
    the offload costs; infeasible device, host or NVMe memory come back as reasons (every one)."""
    from ..analytic.estimate import estimate

    _check(scenario, offload)
    st = step if step is not None else estimate(scenario)
    if not st.runnable:
        raise InfeasibleLayoutError(st.reasons, st)
    rates = _host_rates(scenario, offload)
    mem, host, nvme, moved = _memory(scenario, offload, st)
    t = _transfers(scenario, offload, st, rates, moved)
    step_s = st.step_time_s + t["added_s"]
    scale = st.step_time_s / step_s
    hw, on_node = scenario.hardware, rates["on_node"]
    host_node, nvme_node = host * on_node, nvme * on_node
    reasons = []
    if mem["total_bytes"] > mem["capacity_bytes"]:
        reasons.append(f"needs {mem['total_bytes'] / GIGA:,.1f} GB per device, more than the "
                       f"{mem['capacity_bytes'] / GIGA:,.1f} GB available")
    for what, need, cap, fld in (("host memory", host_node, hw.host.memory_bytes, "host.memory_gb"),
                                 ("NVMe", nvme_node, hw.host.nvme_bytes, "host.nvme_gb")):
        if need > 0 and cap is None:
            reasons.append(f"needs {need / GIGA:,.1f} GB of {what} per node; hardware '{hw.name}' gives no {fld}")
        elif need > 0 and need > cap:
            reasons.append(f"needs {need / GIGA:,.1f} GB of {what} per node, more than the {cap / GIGA:,.0f} GB "
                           "available")
    return OffloadEstimate(step=st, offload=offload, step_time_s=step_s, tflops_per_device=st.tflops_per_device * scale,
                           mfu=st.mfu * scale, hfu=st.hfu * scale, tokens_per_s=st.tokens_per_s * scale,
                           device_memory=mem, host_bytes_per_node=host_node, nvme_bytes_per_node=nvme_node,
                           transfers_s=t, reasons=tuple(reasons),
                           notes=("dense model; pipeline stages taken as equal for the offloaded state",
                                  f"CPU-Adam {rates.get('adam', math.nan):.3g} params/s per node"))
