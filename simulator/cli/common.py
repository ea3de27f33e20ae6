"""Shared CLI helpers: argument types, scenario flags, output."""
from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from ..errors import SpecError


def version() -> str:
    try:
        from importlib.metadata import version as v
        return v("trainsim")
    except Exception:  # not installed (running from a checkout)
        return "0.1.0"


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def error(msg: str) -> None:
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {msg}", markup=True, soft_wrap=True)


def number(kind=int, lo=None, hi=None, lo_open=False, note=""):
    """An argparse type: a number of `kind` in [lo, hi] ((lo, hi] with lo_open), with a message naming the
    value and the rule."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"{v} must be {'>' if lo_open else '>='} {lo}{note}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"{v} must be <= {hi}{note}")
        return v
    return parse


positive_int = number(int, lo=1)
nonneg_int = number(int, lo=0)
positive_float = number(float, lo=0, lo_open=True)


def on_off(text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "on", "yes"):
        return True
    if t in ("0", "false", "off", "no"):
        return False
    raise argparse.ArgumentTypeError(f"'{text}' must be on or off")


def add_job_flags(p: argparse.ArgumentParser, layout: bool = True) -> None:
    """Flags naming the job (model, hardware, devices, batch) and, optionally, one layout."""
    g = p.add_argument_group("job")
    g.add_argument("--scenario", metavar="FILE", help="scenario YAML with the same keys as these flags (flags win)")
    g.add_argument("--model", help="model preset name (see `trainsim models`), YAML path, or Hugging Face config.json path")
    g.add_argument("--hardware", help="hardware profile name (see `trainsim profiles`) or YAML path")
    g.add_argument("--devices", type=positive_int, help="number of accelerators")
    g.add_argument("--global-batch", type=positive_int, help="sequences per optimizer step")
    g.add_argument("--seq-len", type=positive_int, help="tokens per sequence (default: the model's max_seq_len)")
    g.add_argument("--dtype", choices=["bf16", "fp16", "fp8", "int8", "fp32"], help="GEMM precision (default bf16)")
    g.add_argument("--devices-per-node", type=positive_int, help="override the profile's devices per node")
    g.add_argument("--memory-gb", type=positive_float, help="override the device memory (GB)")
    if not layout:
        return
    l = p.add_argument_group("layout")
    l.add_argument("--tp", type=positive_int, help="tensor-parallel degree (default 1)")
    l.add_argument("--pp", type=positive_int, help="pipeline stages (default 1)")
    l.add_argument("--dp", type=positive_int, help="data-parallel degree (default: devices / (tp*pp*cp))")
    l.add_argument("--ep", type=positive_int, help="expert-parallel degree, carved out of dp (default 1)")
    l.add_argument("--cp", type=positive_int, help="context-parallel degree (default 1)")
    l.add_argument("--vpp", type=positive_int, help="virtual pipeline stages per rank (default 1)")
    l.add_argument("--zero", type=int, choices=[0, 1, 2, 3], help="ZeRO stage; 3 = FSDP (default 1)")
    l.add_argument("--zero3-unit", choices=["layer", "tensor"],
                   help="ZeRO-3 gather unit: layer (FSDP, default) or tensor (DeepSpeed ZeRO-3 of 2021)")
    l.add_argument("--sequence-parallel", type=on_off, metavar="on|off", help="Megatron SP (default on)")
    l.add_argument("--recompute", choices=["none", "selective", "full"], help="activation recompute (default selective)")
    l.add_argument("--micro-batch", type=positive_int, help="sequences per micro-batch (default 1)")
    l.add_argument("--schedule", choices=["gpipe", "1f1b", "interleaved", "zb-h1"], help="pipeline schedule")
    l.add_argument("--placement", help="rank order, innermost first (default tp-cp-ep-dp-pp)")
    l.add_argument("--tp-comm-overlap", type=on_off, metavar="on|off", help="overlap TP collectives with GEMMs")
    l.add_argument("--ep-comm-overlap", type=on_off, metavar="on|off",
                   help="hide MoE all-to-alls behind another micro-batch's compute (Megatron-Core; ideal overlap)")
    add_offload_flags(p)


def add_offload_flags(p: argparse.ArgumentParser) -> None:
    """The offload choices of one layout (ZeRO-Offload / ZeRO-Infinity; docs/plan.md)."""
    o = p.add_argument_group("offload (memory beyond the device)")
    o.add_argument("--offload-optimizer", choices=["none", "cpu", "nvme"],
                   help="optimizer state + fp32 gradients on the host with Adam on the CPU, or the state on NVMe "
                        "(default none; needs zero >= 2 with data parallelism)")
    o.add_argument("--offload-params", choices=["none", "cpu", "nvme"],
                   help="fp16 parameter partitions on the host or NVMe, fetched layer by layer (default none; "
                        "needs zero 3 with data parallelism)")
    o.add_argument("--offload-activations", choices=["none", "cpu"],
                   help="activation checkpoints in host memory (default none)")
    o.add_argument("--offload-delayed-update", type=on_off, metavar="on|off",
                   help="ZeRO-Offload's delayed parameter update: the CPU step overlaps the next step (default off)")


FLAG_KEYS = ("model", "hardware", "devices", "global_batch", "seq_len", "dtype", "tp", "pp", "dp", "ep", "cp", "vpp",
             "zero", "zero3_unit", "sequence_parallel", "recompute", "micro_batch", "schedule", "placement",
             "tp_comm_overlap", "ep_comm_overlap", "offload_optimizer", "offload_params", "offload_activations",
             "offload_delayed_update")


def scenario_keys(args: argparse.Namespace) -> dict:
    """Merge the scenario file (if any) with the flags; flags win. Returns flat keys."""
    from ..specs.scenario import read_scenario_file

    keys = read_scenario_file(args.scenario) if getattr(args, "scenario", None) else {}
    for k in FLAG_KEYS:
        v = getattr(args, k, None)
        if v is not None:
            keys[k] = v
    over = dict(keys.pop("hardware_overrides", {}) or {})
    if getattr(args, "devices_per_node", None):
        over["devices_per_node"] = args.devices_per_node
    if getattr(args, "memory_gb", None):
        over["memory_gb"] = args.memory_gb
    if over:
        keys["hardware_overrides"] = over
    missing = [f"--{k.replace('_', '-')}" for k in ("model", "hardware", "devices", "global_batch") if k not in keys]
    if missing:
        raise SpecError(f"missing required input(s): {', '.join(missing)} (give them as flags or in --scenario)")
    return keys


def build_scenario(args: argparse.Namespace):
    from ..specs.scenario import Scenario
    return Scenario.build(**scenario_keys(args))


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dict -> flat dict with dotted keys (for CSV)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = ";".join(str(x) for x in v)
        else:
            out[key] = v
    return out
