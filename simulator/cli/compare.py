"""`trainsim compare`: one job on several hardware profiles (best layout, MFU, time, cost, energy to train)."""
from __future__ import annotations

import argparse
import re
import sys

from . import common
from .search import add_constraint_flags, add_train_rank_flags, console, constraints_of

_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}


def token_count(text: str) -> float:
    """'300B', '1.4T', '2e12', '15t' -> tokens."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtTpP]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"'{text}' is not a token count (examples: 300B, 1.4T, 2e12)")
    v = float(m.group(1)) * _SUFFIX.get(m.group(2).lower(), 1.0)
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return v


def per_profile_values(items: list[str] | None, flag: str):
    """['2.5'] -> 2.5 (all profiles); ['h100-sxm5-80gb=3.2', 'mi300x=2.1'] -> {name: value}; a bare number
    with named ones applies to the unnamed profiles is not allowed (ambiguous)."""
    if not items:
        return None
    named, bare = {}, []
    for it in items:
        name, sep, val = it.rpartition("=")
        try:
            v = float(val)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} {it}: '{val}' is not a number") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"{flag} {it}: must be > 0")
        if sep:
            named[name] = v
        else:
            bare.append(v)
    if bare and (named or len(bare) > 1):
        raise argparse.ArgumentTypeError(f"{flag}: give one number for all profiles or NAME=VALUE pairs, not both")
    return bare[0] if bare else named


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="one job on several hardware profiles: best layout, MFU, time, cost and energy to train",
        description="Search the best layout of one training job on each hardware profile and compare MFU, step "
                    "time, tokens/s, time to train --tokens, cost (price per device-hour) and energy (device "
                    "power). Give --devices (same count everywhere) or --budget-per-hour (each profile rents what "
                    "the budget buys, in whole nodes).")
    g = p.add_argument_group("job")
    g.add_argument("--model", required=True, help="model preset name or YAML path")
    g.add_argument("--hardware", nargs="+", required=True, metavar="PROFILE",
                   help="hardware profiles (names or YAML paths), or 'all'")
    n = g.add_mutually_exclusive_group(required=True)
    n.add_argument("--devices", type=common.positive_int, help="accelerators per profile")
    n.add_argument("--budget-per-hour", type=common.positive_float, metavar="USD",
                   help="rent as many devices as this buys per hour (whole nodes) on each profile")
    common.add_framework_flag(g)
    g.add_argument("--global-batch", type=common.positive_int, required=True, help="sequences per optimizer step")
    g.add_argument("--seq-len", type=common.positive_int, help="tokens per sequence (default: the model's)")
    g.add_argument("--dtype", choices=["bf16", "fp16", "fp8", "int8", "fp32"], default="bf16")
    g.add_argument("--tokens", type=token_count, default=1e12, metavar="T",
                   help="training tokens for time/cost/energy, e.g. 300B, 1.4T (default 1T)")
    g.add_argument("--price-per-hour", nargs="+", metavar="USD|NAME=USD",
                   help="price per device-hour: one number for all profiles or NAME=USD per profile")
    g.add_argument("--power-w", nargs="+", metavar="W|NAME=W", help="device power, overriding the profiles'")
    common.add_moe_network_flags(p)
    add_constraint_flags(p)
    o = p.add_argument_group("output")
    o.add_argument("--objective", choices=["throughput", "memory", "cost"], default="throughput",
                   help="how each profile's best layout is chosen (default throughput)")
    o.add_argument("--format", choices=["table", "json", "csv"], default="table")
    o.add_argument("--chart", metavar="PNG", help="write a grouped bar chart of the comparison")
    common.add_progress_flag(p)
    add_train_rank_flags(p, tokens=False)
    p.set_defaults(handler=run)


def moe_network_of(args: argparse.Namespace) -> dict:
    """moe_routing and network keyword arguments of compare() from the MoE routing and network flags."""
    from ..specs.scenario import NETWORK_KEYS, network_conditions
    keys = {}
    common.routing_keys(args, keys)
    net = {k: getattr(args, k) for k in NETWORK_KEYS if getattr(args, k, None) is not None}
    return {"moe_routing": keys.get("moe_routing"), "network": network_conditions(net)}


def run(args: argparse.Namespace) -> int:
    from ..planning.compare import compare
    try:
        price = per_profile_values(args.price_per_hour, "--price-per-hour")
        power = per_profile_values(args.power_w, "--power-w")
    except argparse.ArgumentTypeError as err:
        from ..errors import SpecError
        raise SpecError(str(err)) from None
    with common.progress_bar(args, "compare: profiles searched") as bar:
        res = compare(args.model, args.hardware, devices=args.devices, global_batch=args.global_batch,
                      seq_len=args.seq_len, tokens=args.tokens, budget_per_hour=args.budget_per_hour,
                      price_per_hour=price, power_w=power, dtype=args.dtype, constraints=constraints_of(args),
                      objective=args.objective, progress=bar, **moe_network_of(args))
    if args.rank_by:
        from ..planning.to_train import rank_compare
        res = rank_compare(res, args.rank_by, args.run_preset, args.checkpoint_mode)
    if args.format == "json":
        common.print_json(res.to_dict())
    elif args.format == "csv":
        res.frame.to_csv(sys.stdout, index=False)
    else:
        from ..reports.search_tables import compare_renderable
        console().print(compare_renderable(res.frame, res.meta()))
    if args.chart:
        from ..reports.plots import compare_bars, save
        path = save(compare_bars(res.frame, res.meta()), args.chart)
        if args.format == "table":
            console().print(f"chart: {path}", style="dim")
    if not res.frame["feasible"].any():
        common.error("no profile has a layout that fits: " + "; ".join(
            f"{r.hardware}: {r.status}" for r in res.frame.itertuples()))
        return 3
    return 0
