"""`trainsim profiles` and `trainsim models`: what is shipped."""
from __future__ import annotations

import argparse

from . import common


def register(sub) -> None:
    p = sub.add_parser("profiles", help="list the hardware profiles")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=run_profiles)
    m = sub.add_parser("models", help="list the model presets")
    m.add_argument("--format", choices=["table", "json"], default="table")
    m.set_defaults(handler=run_models)


def profile_rows() -> list[dict]:
    """One row per shipped profile; a SpecError (exit 2) when none is found: an install without its package
    data cannot run any job, and an empty table would hide that."""
    from ..errors import SpecError
    from ..specs.loading import HARDWARE_ALIASES, available_profiles, load_hardware, profiles_dir
    names = available_profiles()
    if not names:
        raise SpecError(f"no hardware profiles found in {profiles_dir()} (a broken install, or $TRAINSIM_PROFILES "
                        "names an empty folder); reinstall trainsim")
    rows = []
    for name in names:
        hw = load_hardware(name)
        rows.append({
            "name": hw.name, "family": hw.family,
            "bf16_tflops": hw.peak_flops_per_s("bf16") / 1e12,
            "memory_gb": hw.device.memory_gb, "hbm_tb_per_s": hw.device.memory_bandwidth_tb_per_s,
            "devices_per_node": hw.devices_per_node,
            "tiers": " > ".join(f"{t.name} {t.bandwidth_gb_per_s:g} GB/s" for t in hw.tiers),
            "description": hw.description,
            "aliases": sorted(a for a, n in HARDWARE_ALIASES.items() if n == hw.name),
        })
    return rows


def model_rows() -> list[dict]:
    from ..costs.flops import model_costs
    from ..specs.loading import available_models, load_model
    from ..errors import SpecError
    from ..specs.loading import models_dir
    names = available_models()
    if not names:
        raise SpecError(f"no model presets found in {models_dir()} (a broken install); reinstall trainsim")
    rows = []
    for name in names:
        m = load_model(name)
        c = model_costs(m, m.max_seq_len or 2048)
        rows.append({
            "name": m.name, "params_b": round(c.total_params(m.tied_embeddings) / 1e9, 2),
            "layers": m.num_layers, "hidden": m.hidden_size, "heads": m.num_heads, "kv_heads": m.kv_heads,
            "moe": f"{m.moe.num_experts}e top-{m.moe.top_k}" if m.moe else "", "seq_len": m.max_seq_len or "",
            "source": m.source,
        })
    return rows


def run_profiles(args: argparse.Namespace) -> int:
    rows = profile_rows()
    if args.format == "json":
        common.print_json(rows)
        return 0
    from ..reports.tables import catalog_table
    cols = [("name", "profile"), ("family", "family"), ("bf16_tflops", "BF16 TF"), ("memory_gb", "HBM GB"),
            ("hbm_tb_per_s", "TB/s"), ("devices_per_node", "per node"), ("tiers", "network tiers")]
    common.stdout().print(catalog_table(rows, cols, "hardware profiles"))
    return 0


def run_models(args: argparse.Namespace) -> int:
    rows = model_rows()
    if args.format == "json":
        common.print_json(rows)
        return 0
    from ..reports.tables import catalog_table
    cols = [("name", "model"), ("params_b", "params (B)"), ("layers", "layers"), ("hidden", "hidden"),
            ("heads", "heads"), ("kv_heads", "kv"), ("moe", "MoE"), ("seq_len", "seq")]
    common.stdout().print(catalog_table(rows, cols, "model presets"))
    return 0
