"""`trainsim estimate`: one layout, analytic engine."""
from __future__ import annotations

import argparse
import csv
import sys

from . import common


def register(sub) -> None:
    p = sub.add_parser("estimate", help="MFU, step time and memory of one layout (analytic engine)",
                       description="Estimate MFU, HFU, step time with breakdown, tokens/s and per-device memory "
                                   "of one training layout. Exit 3 if the layout cannot run (every reason listed).")
    common.add_job_flags(p)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format")
    p.set_defaults(handler=run)


def emit(d: dict, fmt: str) -> None:
    if fmt == "json":
        common.print_json(d)
    elif fmt == "csv":
        flat = common.flatten(d)
        w = csv.DictWriter(sys.stdout, fieldnames=list(flat))
        w.writeheader()
        w.writerow(flat)
    else:
        from ..reports.tables import estimate_renderable
        common.stdout().print(estimate_renderable(d))


def exit_code(result, fmt: str) -> int:
    """0, or 3 for an infeasible layout (its reasons go to stderr unless the table already shows them)."""
    if result.feasible:
        return 0
    if fmt != "table":
        common.error("infeasible layout:\n" + "\n".join(f"  - {r}" for r in result.reasons))
    return 3


def run(args: argparse.Namespace) -> int:
    from ..analytic.estimate import estimate
    result = estimate(common.build_scenario(args))
    d = result.to_dict()
    emit(d, args.format)
    return exit_code(result, args.format)
