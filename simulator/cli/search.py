"""`trainsim search`: every layout of a job on a cluster, evaluated at once and ranked."""
from __future__ import annotations

import argparse
import json
import sys
import time

from . import common
from ..errors import SpecError

LIST_AXES = ("tp", "pp", "cp", "dp", "ep", "vpp", "micro_batch")
#: Scenario-file layout keys that become one-value constraints of the search.
SCENARIO_AXES = ("tp", "pp", "cp", "dp", "ep", "vpp", "micro_batch", "zero", "recompute", "schedule",
                 "offload_optimizer", "offload_params", "offload_activations", "moe_dispatch", "dp_compression",
                 "local_sgd_tau")
#: Scenario-file settings a search applies to every candidate (SearchSpace fields).
SCENARIO_SETTINGS = ("placement", "sequence_parallel", "tp_comm_overlap", "ep_comm_overlap", "zero3_unit",
                     "flash_attention", "overlap_grad_reduce", "offload_delayed_update", "framework",
                     "dp_param_gather_overlap", "moe_max_nodes", "onebit_warmup_fraction")
#: Scenario-file keys a search uses (the job, the axes and the settings); others (grad_dtype, stage_layers) are
#: estimate/simulate settings and draw a warning.
SCENARIO_USED = ("model", "hardware", "devices", "global_batch", "seq_len", "dtype", "hardware_overrides",
                 *SCENARIO_AXES, *SCENARIO_SETTINGS, "moe_routing", "background_occupancy", "background_elastic",
                 "all_to_all_latency")


def warn_unused_scenario_keys(args: argparse.Namespace) -> None:
    """A warning naming the keys of --scenario that a search cannot use (they are estimate/simulate settings)."""
    if not getattr(args, "scenario", None):
        return
    from ..specs.scenario import read_scenario_file
    unused = sorted(k for k in read_scenario_file(args.scenario) if k not in SCENARIO_USED)
    if unused:
        common.warn(f"{args.scenario}: search does not use the key(s) {', '.join(unused)} (settings of "
                    f"estimate/simulate); the search runs without them")


def int_list(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4] (each >= 0)."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            v = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{part}' in '{text}' is not an integer") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"{v} in '{text}' must be >= 0")
        out.append(v)
    if not out:
        raise argparse.ArgumentTypeError("empty list")
    return out


def choice_list(choices):
    def parse(text: str) -> list[str]:
        vals = [p.strip() for p in text.split(",") if p.strip()]
        bad = [v for v in vals if v not in choices]
        if bad or not vals:
            raise argparse.ArgumentTypeError(f"{', '.join(bad) or repr(text)}: choose from {', '.join(choices)}")
        return vals
    return parse


def add_constraint_flags(p: argparse.ArgumentParser) -> None:
    """Flags that restrict the enumerated layout space (shared by search and compare)."""
    g = p.add_argument_group("search space (default: everything the cluster and model allow)")
    for axis in LIST_AXES:
        flag = axis.replace("_", "-")
        g.add_argument(f"--{flag}", dest=f"space_{axis}", type=int_list, metavar="N[,N...]",
                       help=f"only these {axis} values")
        g.add_argument(f"--max-{flag}", dest=f"space_max_{axis}", type=common.positive_int, metavar="N",
                       help=f"largest {axis}")
    g.add_argument("--zero", dest="space_zero", type=int_list, metavar="Z[,Z...]", help="ZeRO stages (default 0,1,2,3)")
    g.add_argument("--recompute", dest="space_recompute", type=choice_list(("none", "selective", "full")),
                   metavar="KIND[,...]", help="none,selective,full (default all)")
    g.add_argument("--schedule", dest="space_schedule",
                   type=choice_list(("gpipe", "1f1b", "interleaved", "zb-h1", "dualpipe", "zb-v")), metavar="S[,...]",
                   help="pipeline schedules (default 1f1b,interleaved; also gpipe, zb-h1, dualpipe, zb-v)")
    g.add_argument("--moe-dispatch", dest="space_moe_dispatch",
                   type=choice_list(("flat", "hierarchical", "node-limited")), metavar="D[,...]",
                   help="MoE dispatch strategies where ep > 1 (default flat; also hierarchical, node-limited)")
    g.add_argument("--moe-max-nodes", dest="space_moe_max_nodes", type=common.positive_int, metavar="M",
                   help="node-limited dispatch: at most M nodes per token")
    g.add_argument("--dp-compression", dest="space_dp_compression", type=choice_list(("none", "onebit")),
                   metavar="C[,...]", help="gradient compression to try where dp > 1 and zero 0 (default none)")
    g.add_argument("--onebit-warmup", dest="space_onebit_warmup_fraction", type=common.number(float, 0.0, 1.0),
                   metavar="FRACTION", help="1-bit Adam's uncompressed warm-up share (default 0.15)")
    g.add_argument("--local-sgd-tau", dest="space_local_sgd_tau", type=int_list, metavar="TAU[,TAU...]",
                   help="local SGD taus to try where dp > 1 and zero 0 (default 1 = synchronous)")
    g.add_argument("--sequence-parallel", dest="space_sequence_parallel", type=common.on_off, metavar="on|off",
                   help="Megatron SP wherever tp > 1 (default on)")
    g.add_argument("--tp-comm-overlap", dest="space_tp_comm_overlap", type=common.on_off, metavar="on|off",
                   help="overlap TP collectives with GEMMs (default: the framework's)")
    g.add_argument("--ep-comm-overlap", dest="space_ep_comm_overlap", type=common.on_off, metavar="on|off",
                   help="hide MoE all-to-alls behind another micro-batch's compute (default: the framework's)")
    g.add_argument("--zero3-unit", dest="space_zero3_unit", choices=["layer", "tensor"],
                   help="ZeRO-3 gather unit for ZeRO-3 candidates (default: the framework's)")
    g.add_argument("--placement", dest="space_placement", help="rank order, innermost first (default tp-cp-ep-dp-pp)")
    tiers = ("none", "cpu", "nvme")
    g.add_argument("--offload-optimizer", dest="space_offload_optimizer", type=choice_list(tiers), metavar="T[,...]",
                   help="optimizer offload tiers to try: none,cpu,nvme (default none)")
    g.add_argument("--offload-params", dest="space_offload_params", type=choice_list(tiers), metavar="T[,...]",
                   help="parameter offload tiers to try (ZeRO-3 candidates): none,cpu,nvme (default none)")
    g.add_argument("--offload-activations", dest="space_offload_activations", type=choice_list(tiers[:2]),
                   metavar="T[,...]", help="activation offload tiers to try: none,cpu (default none)")
    g.add_argument("--offload-delayed-update", dest="space_offload_delayed_update", type=common.on_off,
                   metavar="on|off", help="ZeRO-Offload's delayed update wherever the optimizer is offloaded")


def add_train_rank_flags(p: argparse.ArgumentParser, tokens: bool = True) -> None:
    """--rank-by time-to-train|cost-to-train (with --tokens) and the run model (planning.to_train)."""
    g = p.add_argument_group("rank by time or cost to train (failures, checkpoints and restarts included)")
    if tokens:
        from .compare import token_count
        g.add_argument("--tokens", type=token_count, metavar="T", help="tokens to train, e.g. 300B, 15T")
    g.add_argument("--rank-by", choices=["time-to-train", "cost-to-train"],
                   help="rank by wall-clock time or cost to train --tokens with goodput (planning.goodput)")
    g.add_argument("--run-preset", metavar="NAME|YAML",
                   help="run model: failures, checkpoint storage, restarts (default llama3-405b-16k: Llama 3's "
                        "published failure rates, 2 TB/s storage, MegaScale restarts)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--async-checkpoint", dest="checkpoint_mode", action="store_const", const="async",
                      help="two-stage asynchronous checkpoints (default: the run model's)")
    mode.add_argument("--sync-checkpoint", dest="checkpoint_mode", action="store_const", const="sync",
                      help="synchronous checkpoints")


def constraints_of(args: argparse.Namespace, scenario_keys: dict | None = None) -> dict:
    """SearchSpace fields from the flags; one-value layout keys of a scenario file fill axes no flag sets."""
    out = {}
    for k, v in vars(args).items():
        if k.startswith("space_") and v is not None:
            out[k[len("space_"):]] = v
    for k in SCENARIO_AXES:
        if scenario_keys and k in scenario_keys and k not in out:
            out[k] = [scenario_keys[k]]
    if getattr(args, "framework", None):
        out["framework"] = args.framework
    for k in SCENARIO_SETTINGS:
        if scenario_keys and k in scenario_keys and k not in out:
            out[k] = scenario_keys[k]
    return out


def register(sub) -> None:
    p = sub.add_parser(
        "search", help="rank every parallel layout of a job on a cluster",
        description="Enumerate every layout the axes allow (tp, pp, dp, cp, ep, vpp, micro-batch, ZeRO, recompute, "
                    "schedule), evaluate them all with the analytic engine, rank the feasible ones and print the best. "
                    "--format csv/json returns every candidate with `feasible` and `reason`. Exit 2: bad input or "
                    "an empty search space; exit 3: nothing fits (the closest candidates are named).")
    common.add_job_flags(p, layout=False)
    add_constraint_flags(p)
    o = p.add_argument_group("ranking and output")
    o.add_argument("--objective", choices=["throughput", "memory", "cost", "devices"], default="throughput",
                   help="throughput: tokens/s (default); memory: least per-device memory; cost: USD per token; "
                        "devices: the fewest devices (up to --devices: 1, 2, 4, ... a node, then whole nodes) "
                        "with a feasible layout, its layouts ranked by throughput")
    o.add_argument("--price-per-hour", type=common.positive_float, metavar="USD",
                   help="price per device-hour (default: the profile's)")
    o.add_argument("--top", type=common.positive_int, default=10, help="rows of the table (default 10)")
    o.add_argument("--refine", type=common.nonneg_int, default=0, metavar="K",
                   help="re-run the best K with the discrete-event engine and re-rank them")
    o.add_argument("--format", choices=["table", "json", "csv"], default="table",
                   help="table: the best --top; json/csv: every candidate")
    add_train_rank_flags(p)
    o.add_argument("--plot-dir", metavar="DIR", help="write heatmap.png, pareto.png and breakdown.png here")
    o.add_argument("--heatmap", metavar="PNG", help="TP x PP heatmap of the best throughput")
    o.add_argument("--pareto", metavar="PNG", help="memory vs throughput scatter with the Pareto front")
    o.add_argument("--breakdown", metavar="PNG", help="step-time breakdown of the top layouts")
    common.add_progress_flag(p)
    p.set_defaults(handler=run)


def write_plots(result, args) -> list[str]:
    from pathlib import Path

    targets = {}
    if args.plot_dir:
        d = Path(args.plot_dir)
        targets = {"heatmap": d / "heatmap.png", "pareto": d / "pareto.png", "breakdown": d / "breakdown.png"}
    for k in ("heatmap", "pareto", "breakdown"):
        if getattr(args, k):
            targets[k] = Path(getattr(args, k))
    if not targets:
        return []
    from ..reports import plots
    meta = result.summary()
    made = []
    for k, path in targets.items():
        if k == "heatmap":
            fig = plots.tp_pp_heatmap(result.frame, meta)
        elif k == "pareto":
            fig = plots.memory_throughput_scatter(result.frame, meta)
        else:
            fig = plots.breakdown_bars(result.frame, n=min(args.top, 12), meta=meta)
        made.append(str(plots.save(fig, path)))
    return made


def footer(result, wall_s: float) -> list[str]:
    t = result.timings_s
    lines = [f"{result.num_candidates:,} candidates ({result.num_feasible:,} feasible) evaluated in "
             f"{t.get('total_s', wall_s):.2f} s (enumerate {t['enumerate_s']:.2f}, evaluate {t['evaluate_s']:.2f}, "
             f"rank {t['rank_s']:.2f}" + (f", DES refine {t['refine_s']:.2f}" if "refine_s" in t else "") + ")"]
    counts = result.reason_counts()
    if counts:
        lines.append("infeasible by reason: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    return lines


def console():
    """The CLI console; not wrapped to 80 columns when the output is a pipe or a file."""
    con = common.stdout()
    if not con.is_terminal:
        con.width = 200
    return con


def run_fewest(args: argparse.Namespace, keys: dict) -> int:
    """--objective devices: the fewest devices with a feasible layout (planning.fewest)."""
    from ..planning.fewest import fewest_devices
    res = fewest_devices(keys["model"], keys["hardware"], keys["devices"], keys["global_batch"], keys.get("seq_len"),
                         dtype=keys.get("dtype", "bf16"), constraints=constraints_of(args, keys),
                         price_per_hour=args.price_per_hour, hardware_overrides=keys.get("hardware_overrides"))
    if args.format == "csv":
        res.frame.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        common.print_json(res.to_dict())
    else:
        from ..reports.search_tables import search_renderable
        con = console()
        for s in res.scanned:
            con.print(f"{s['devices']:>6,} devices: {s['num_candidates']:,} candidates, {s['num_feasible']:,} "
                      f"feasible ({s['status']})")
        if res.best is not None:
            con.print(f"fewest devices that fit: {res.devices:,}")
            con.print(search_renderable(res.best.summary(), res.best.top_rows(args.top), footer(res.best, 0.0),
                                        show_ep=res.best.model.is_moe))
    if res.best is None:
        common.error(f"no layout fits on up to {keys['devices']:,} devices (counts tried: "
                     f"{', '.join(str(s['devices']) for s in res.scanned)})")
        return 3
    return 0


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    from ..planning.search import search
    keys = common.scenario_keys(args)
    if args.objective == "devices":
        return run_fewest(args, keys)
    warn_unused_scenario_keys(args)
    from ..specs.scenario import NETWORK_KEYS, network_conditions
    with common.progress_bar(args, f"refine: {args.refine} layouts with the DES", args.refine > 0) as bar:
        result = search(keys["model"], keys["hardware"], keys["devices"], keys["global_batch"],
                        keys.get("seq_len"), dtype=keys.get("dtype", "bf16"), constraints=constraints_of(args, keys),
                        objective=args.objective, refine=args.refine, price_per_hour=args.price_per_hour,
                        hardware_overrides=keys.get("hardware_overrides"), progress=bar,
                        reasons=args.format != "table",     # a table shows feasible rows: reason text on demand only
                        moe_routing=keys.get("moe_routing"),
                        network=network_conditions({k: keys[k] for k in NETWORK_KEYS if keys.get(k) is not None}))
    if args.rank_by or args.tokens is not None:
        from ..planning.to_train import rank_search
        if not args.rank_by:
            raise SpecError("--tokens in search goes with --rank-by time-to-train|cost-to-train")
        result = rank_search(result, args.tokens, args.rank_by, args.run_preset, args.checkpoint_mode)
    from ..uncertainty import uncertainty_for
    unc = uncertainty_for(result.hardware)
    if args.format == "csv":
        result.frame.assign(uncertainty_pct=unc.expected_error_pct, uncertainty_kind=unc.kind).to_csv(
            sys.stdout, index=False)
    elif args.format == "json":
        head = json.dumps({**result.summary(), "uncertainty": unc.to_dict()})
        sys.stdout.write(head[:-1] + ', "candidates": ' + result.frame.to_json(orient="records") + "}\n")
    else:
        from ..reports.search_tables import search_renderable
        lines = footer(result, time.perf_counter() - t0) + [f"uncertainty: +/-{unc.expected_error_pct:.0f}% on "
                                                            f"every figure: {unc.basis}"]
        con = console()
        con.print(search_renderable(result.summary(), result.top_rows(args.top), lines, show_ep=result.model.is_moe,
                                    show_cost=args.objective == "cost", show_des=args.refine > 0))
    plots = write_plots(result, args)
    if plots and args.format == "table":
        console().print("plots: " + ", ".join(plots), style="dim")
    if result.num_feasible == 0:
        common.error(result.no_fit_message())
        return 3
    return 0
