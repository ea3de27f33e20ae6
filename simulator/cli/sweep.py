"""`trainsim sweep SPEC.yaml`: a design-space grid, chunk by chunk, on local processes or a Dask cluster."""
from __future__ import annotations

import argparse
import sys

from . import common
from .search import console


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="design-space grid (models x hardware x devices x batch), local or on Dask",
        description="Search the best layouts of every grid point of a sweep spec (YAML) and write the results chunk "
                    "by chunk (Parquet or CSV). Started again with the same spec it skips the chunks already "
                    "written. --dask-scheduler runs the same chunks on a dask.distributed cluster.")
    p.add_argument("spec", help="sweep spec YAML (keys: models, hardware, devices, global_batch, seq_len, dtype, "
                                "constraints, objective, top_k, output, format, chunk_size)")
    p.add_argument("--output", metavar="DIR", help="output folder (overrides the spec's)")
    common.add_framework_flag(p)
    p.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="run on a Dask cluster, e.g. tcp://host:8786; 'local:N' starts a LocalCluster of N one-thread "
                        "workers for this sweep (without Dask's MALLOC_TRIM_THRESHOLD_, which slows numpy workers)")
    p.add_argument("--workers", type=common.positive_int, help="local worker processes (default: CPU count)")
    p.add_argument("--retries", type=common.nonneg_int, default=2, help="retries of a failed chunk (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table",
                   help="what to print when done: best layout per grid point (table) or every row")
    p.set_defaults(handler=run)


def _terminate_as_interrupt(signum, frame):
    """SIGTERM ends a sweep like Ctrl-C: the pool's workers are stopped and the written chunks stay."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    import signal

    from ..planning.sweep import ChunkFailed, sweep
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)

    progress = None
    task = None
    if not args.quiet:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn
        progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                            transient=False)

    def on_progress(done: int, total: int) -> None:
        nonlocal task
        if progress is None:
            return
        if task is None:
            task = progress.add_task("sweep", total=total, completed=done)
        progress.update(task, completed=done)

    try:
        if progress is not None:
            progress.start()
        res = sweep(args.spec, output=args.output, dask_scheduler=args.dask_scheduler, workers=args.workers,
                    retries=args.retries, on_progress=on_progress, framework=args.framework)
    except ChunkFailed as err:
        common.error(str(err))
        return 1
    finally:
        if progress is not None:
            progress.stop()
    if args.format == "json":
        common.print_json(res.to_dict())
    elif args.format == "csv":
        res.frame.to_csv(sys.stdout, index=False)
    else:
        from ..reports.search_tables import sweep_renderable
        meta = {"num_points": res.num_points, "num_chunks": res.num_chunks, "output": str(res.output),
                "footer": [f"{res.chunks_computed} chunks computed, {res.chunks_skipped} already written; "
                           f"{res.elapsed_s:.1f} s on {res.executor}"]}
        console().print(sweep_renderable(res.frame, meta))
    return 0
