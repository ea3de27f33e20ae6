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
    add_moe_network_flags(p)
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
    l.add_argument("--schedule", choices=["gpipe", "1f1b", "interleaved", "zb-h1", "dualpipe", "zb-v"],
                   help="pipeline schedule (dualpipe: DeepSeek-V3 bidirectional, even pp; zb-v: zero-bubble V)")
    l.add_argument("--placement", help="rank order, innermost first (default tp-cp-ep-dp-pp)")
    l.add_argument("--tp-comm-overlap", type=on_off, metavar="on|off", help="overlap TP collectives with GEMMs")
    l.add_argument("--ep-comm-overlap", type=on_off, metavar="on|off",
                   help="hide MoE all-to-alls behind another micro-batch's compute (Megatron-Core; ideal overlap)")
    l.add_argument("--moe-dispatch", choices=["flat", "hierarchical", "node-limited"],
                   help="MoE token dispatch: flat all-to-all (default), hierarchical (DeepSpeed-MoE/Tutel 2DH) or "
                        "node-limited (DeepEP: one copy per node, NVLink forward)")
    l.add_argument("--moe-max-nodes", type=positive_int, metavar="M",
                   help="node-limited routing: at most M nodes per token (DeepSeek-V3: 4)")
    l.add_argument("--dp-compression", choices=["none", "onebit"],
                   help="gradient compression: onebit = 1-bit Adam/LAMB after a warm-up (needs --zero 0)")
    l.add_argument("--onebit-warmup", type=number(float, 0.0, 1.0), metavar="FRACTION", dest="onebit_warmup_fraction",
                   help="share of the steps 1-bit Adam runs uncompressed (default 0.15)")
    l.add_argument("--local-sgd-tau", type=positive_int, metavar="TAU",
                   help="local SGD (CO2): inner steps per overlapped outer all-reduce (default 1 = synchronous)")


def parse_routing(text: str) -> dict:
    """--moe-routing MODEL[:SKEW]: balanced, zipf:1.0 (popularity exponent), dirichlet:0.3 (concentration)."""
    model, _, skew = text.partition(":")
    if model not in ("balanced", "zipf", "dirichlet"):
        raise argparse.ArgumentTypeError(f"'{text}': the model must be balanced, zipf:SKEW or dirichlet:CONCENTRATION")
    out = {"model": model}
    if skew:
        try:
            out["skew"] = float(skew)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}': '{skew}' is not a number") from None
    return out


def add_moe_network_flags(p: argparse.ArgumentParser) -> None:
    """Flags of the MoE routing and the network conditions (job-level: the same for every layout)."""
    g = p.add_argument_group("MoE routing and network")
    g.add_argument("--moe-routing", type=parse_routing, metavar="MODEL[:SKEW]",
                   help="expert popularity: balanced (top-k noise only), zipf:SKEW, dirichlet:CONCENTRATION "
                        "(default: every expert rank gets exactly the mean)")
    g.add_argument("--moe-imbalance", type=number(float, 1.0), metavar="MAX_OVER_MEAN",
                   help="measured busiest-rank tokens over the mean (overrides --moe-routing's model)")
    g.add_argument("--moe-capacity-factor", type=positive_float, metavar="CF",
                   help="expert capacity factor: overflow dropped, buffers padded to capacity (DeepSpeed, GShard)")
    g.add_argument("--background-occupancy", type=number(float, 0.0, 0.999), metavar="FRACTION",
                   help="share of the scale-out tiers another job's traffic occupies (default 0)")
    g.add_argument("--all-to-all-latency", choices=["per-tier", "per-peer"],
                   help="all-to-all latency: one alpha per tier (default) or per peer message")


def routing_keys(args: argparse.Namespace, keys: dict) -> None:
    """Merge --moe-routing/--moe-imbalance/--moe-capacity-factor into keys['moe_routing'] (a RoutingSpec)."""
    from ..specs.loading import validate_spec
    from ..specs.routing import RoutingSpec
    over = dict(getattr(args, "moe_routing", None) or {})
    if getattr(args, "moe_imbalance", None) is not None:
        over["max_over_mean"] = args.moe_imbalance
    if getattr(args, "moe_capacity_factor", None) is not None:
        over["capacity_factor"] = args.moe_capacity_factor
    if not over:
        return
    base = keys.get("moe_routing")
    data = base.model_dump() if base is not None else {}
    data.update(over)
    keys["moe_routing"] = validate_spec(RoutingSpec, data, "--moe-routing")


FLAG_KEYS = ("model", "hardware", "devices", "global_batch", "seq_len", "dtype", "tp", "pp", "dp", "ep", "cp", "vpp",
             "zero", "zero3_unit", "sequence_parallel", "recompute", "micro_batch", "schedule", "placement",
             "tp_comm_overlap", "ep_comm_overlap", "moe_dispatch", "moe_max_nodes", "dp_compression",
             "onebit_warmup_fraction", "local_sgd_tau", "background_occupancy", "all_to_all_latency")


def scenario_keys(args: argparse.Namespace) -> dict:
    """Merge the scenario file (if any) with the flags; flags win. Returns flat keys."""
    from ..specs.scenario import read_scenario_file

    keys = read_scenario_file(args.scenario) if getattr(args, "scenario", None) else {}
    for k in FLAG_KEYS:
        v = getattr(args, k, None)
        if v is not None:
            keys[k] = v
    routing_keys(args, keys)
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
