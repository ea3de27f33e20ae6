"""`trainsim plan`: a whole run (tokens or days) with checkpoints, failures and restarts: goodput, interruptions,
wall-clock days (p50/p90 with --samples), cost and energy."""
from __future__ import annotations

import argparse

from ..errors import SpecError
from . import common

nonneg_float = common.number(float, lo=0)
SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}


def token_count(text: str) -> float:
    """A positive token count: 15.6e12, 15.6T, 300B, 2.5M."""
    t = text.strip().lower()
    scale = SUFFIXES.get(t[-1:], None)
    try:
        v = float(t[:-1]) * scale if scale else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a token count (e.g. 15.6e12 or 15.6T)") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return v


def register(sub) -> None:
    p = sub.add_parser("plan", help="time, cost and energy of a whole run with checkpoints and failures",
                       description="Plan a training run: goodput (effective training time), expected interruptions, "
                                   "checkpoint size/time/interval (Young/Daly optimum by default), wall-clock days, "
                                   "cost and energy. Exit 3 if the layout cannot run.")
    common.add_job_flags(p)
    g = p.add_argument_group("run")
    what = g.add_mutually_exclusive_group()
    what.add_argument("--tokens", type=token_count, help="tokens to train (15.6e12, 15.6T, 300B)")
    what.add_argument("--days", type=common.positive_float, help="plan a fixed wall-clock window of this many days")
    g.add_argument("--run-preset", help="run preset name or YAML (failures, storage, restarts); see presets/runs")
    g.add_argument("--failure-rate", type=common.positive_float, metavar="PER_DEVICE_HOUR",
                   help="unexpected interruptions per device-hour (replaces the preset's failures)")
    g.add_argument("--planned-per-day", type=nonneg_float, help="planned stops per day (with --failure-rate)")
    g.add_argument("--storage-write-gb-per-s", type=common.positive_float, help="aggregate checkpoint write, GB/s")
    g.add_argument("--storage-read-gb-per-s", type=common.positive_float, help="aggregate checkpoint read, GB/s")
    g.add_argument("--detection-s", type=nonneg_float, help="failure detection and diagnosis, seconds")
    g.add_argument("--comm-init-s", type=nonneg_float,
                   help="communicator initialisation at the preset's reference scale, seconds")
    g.add_argument("--checkpoint-interval", type=common.positive_float, metavar="SECONDS",
                   help="training seconds between checkpoints (default: the Young/Daly optimum)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--async-checkpoint", dest="checkpoint_mode", action="store_const", const="async",
                      help="two-stage asynchronous checkpoints (device -> pinned host, then storage in background)")
    mode.add_argument("--sync-checkpoint", dest="checkpoint_mode", action="store_const", const="sync",
                      help="synchronous checkpoints (training waits for storage)")
    g.add_argument("--samples", type=common.nonneg_int, default=0, help="Monte-Carlo replays for p50/p90 days")
    g.add_argument("--seed", type=int, default=0, help="seed of the Monte-Carlo replays (default 0)")
    g.add_argument("--price-per-hour", type=common.positive_float, help="USD per device-hour (default: profile)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format")
    p.set_defaults(handler=run)


def run_spec(args: argparse.Namespace):
    """The run preset (or a custom run from flags; restart figures then default to MegaScale's) with overrides."""
    from ..specs.loading import validate_spec
    from ..specs.run import RunSpec, load_run, run_with

    if args.run_preset is None and (args.failure_rate is None or args.storage_write_gb_per_s is None):
        raise SpecError("plan needs --run-preset, or both --failure-rate and --storage-write-gb-per-s")
    base = load_run(args.run_preset or "megascale-12k")
    data = base.model_dump()
    if args.run_preset is None:
        data.update(name="custom", description="from command-line flags; restart figures from MegaScale (preset "
                                               "megascale-12k)", checkpoint={"mode": "sync", "source": "default"})
    if args.failure_rate is not None:
        data["failures"] = {"rate_per_device_hour": args.failure_rate, "planned_per_day": args.planned_per_day,
                            "source": "command line"}
    elif args.planned_per_day is not None:
        raise SpecError("--planned-per-day goes with --failure-rate")
    spec = validate_spec(RunSpec, data, "run")
    return run_with(spec, **{"storage.write_gb_per_s": args.storage_write_gb_per_s,
                             "storage.read_gb_per_s": args.storage_read_gb_per_s,
                             "restart.detection_s": args.detection_s, "restart.comm_init_s": args.comm_init_s})


def run(args: argparse.Namespace) -> int:
    from ..planning.goodput import plan

    if args.tokens is None and args.days is None:
        raise SpecError("plan needs --tokens (what to train) or --days (a wall-clock window)")
    result = plan(common.build_scenario(args), args.tokens, run_spec(args), days=args.days,
                  checkpoint_interval_s=args.checkpoint_interval, checkpoint_mode=args.checkpoint_mode,
                  samples=args.samples, seed=args.seed, price_per_hour_usd=args.price_per_hour)
    d = result.to_dict()
    if args.format == "json":
        common.print_json(d)
    else:
        from ..reports.plan_tables import plan_renderable
        common.stdout().print(plan_renderable(d))
    if result.feasible:
        return 0
    if args.format != "table":
        common.error("infeasible:\n" + "\n".join(f"  - {r}" for r in result.reasons))
    return 3
