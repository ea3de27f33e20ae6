"""`trainsim validate`: predictions versus published measured runs (or the vTrain ground-truth files)."""
from __future__ import annotations

import argparse
import sys

from . import common

DEFAULT_ROWS = 20       # rows a table shows by default: the worst ones; the figures always cover every row


def register(sub) -> None:
    p = sub.add_parser(
        "validate", help="predictions vs published measured runs (CSV in the data README schema, or vTrain files)",
        description="Predict every row of a runs file with the project's profiles (per-row overrides win), under "
                    "the row's own metric and FLOP convention, and print per-row prediction, measurement and "
                    "signed %% error, then MAPE, median and max error overall, per hardware family, per source, "
                    "dense vs MoE and per metric. Blank layout cells are searched (fastest setting that fits). "
                    "Rows that cannot be predicted are listed with the reason and left out of the figures.")
    p.add_argument("file", metavar="FILE.csv", help="runs file: published-runs schema or a vTrain ground-truth CSV")
    p.add_argument("--engine", choices=["analytic", "des"], default="analytic",
                   help="engine for the step time (des: discrete-event, where installed)")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--rows", type=int, default=DEFAULT_ROWS, metavar="N",
                       help=f"table: the N rows with the largest |error| (default {DEFAULT_ROWS}); json and csv "
                            "always hold every row")
    shown.add_argument("--all", action="store_true", help="table: every row, in file order")
    p.add_argument("--plot", metavar="OUT.png", help="also draw predicted vs measured (log axes, y=x, +/-10%% bands)")
    p.add_argument("--cv", action="store_true",
                   help="cross-validated figures instead: in-sample, leave-one-source-out (refit of each calibrated "
                        "family without the source) and leave-one-family-out (the family without its calibration "
                        "overlay) MAPE over the time/rate rows, per family (minutes: one refit per source)")
    p.add_argument("--cv-max-nfev", type=common.positive_int, default=15,
                   help="optimiser evaluations per leave-one-source-out refit (default 15)")
    common.add_progress_flag(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.cv:
        return run_cv(args)
    from ..validation import validate
    with common.progress_bar(args, "validate: jobs predicted") as bar:
        report = validate(args.file, engine=args.engine, progress=bar)
    if not report.summary["n"] and report.skipped_rows:
        from ..errors import SpecError
        first = report.skipped_rows[0]
        raise SpecError(f"{args.file}: no row can be predicted ({len(report.skipped_rows)} skipped); "
                        f"first: {first.reason}" + ("" if f"line {first.line}" in first.reason
                                                    else f" (line {first.line})"))
    if args.format == "json":
        common.print_json(report_json(report))
    elif args.format == "csv":
        from ..reports.validation_tables import write_csv
        write_csv(report, sys.stdout)
    else:
        from ..reports.validation_tables import report_renderable
        if args.rows < 0:
            raise common.UsageError(f"--rows {args.rows}: must be 0 or more (the number of rows to show)")
        common.stdout().print(report_renderable(report, None if args.all else args.rows))
    if args.plot:
        from ..reports.plots import validation_figure
        fig = validation_figure(report)
        fig.savefig(args.plot, dpi=150, bbox_inches="tight")
        if args.format == "table":
            common.stdout().print(f"plot written to {args.plot}")
    return 0


def report_json(report) -> dict:
    """The documented JSON object: rows (id, metric, measured, predicted, error_pct, status, reason, ...) and
    summary (n, mape_pct, median_ape_pct, max_ape_pct, by_hardware, by_source, ...)."""
    return report.to_dict()


def run_cv(args: argparse.Namespace) -> int:
    from ..calibration.crossval import cross_validate
    from ..errors import SpecError
    if args.engine != "analytic" or args.plot or args.format == "csv":
        raise SpecError("--cv: analytic engine, table or JSON output, no --plot")
    res = cross_validate([args.file], max_nfev=args.cv_max_nfev)
    if args.format == "json":
        common.print_json(res)
    else:
        from ..reports.validation_tables import cv_renderable
        common.stdout().print(cv_renderable(res))
    return 0
