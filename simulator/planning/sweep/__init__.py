"""Design-space sweeps: a grid of models x hardware profiles x device counts x global batches (x sequence
lengths), each grid point searched for its best layouts, evaluated in chunks on local processes or a Dask cluster.

    spec.yaml -> grid points -> chunks -> executor (local processes | dask.distributed) -> one file per chunk

The output folder holds `_sweep.json` (the spec and its fingerprint) and `chunk-00000.csv` (or `.parquet`, which
needs pyarrow, checked before any work), one file per chunk, each written to a temporary name and renamed into
place, so a file that exists is complete. Started again with the same spec, a sweep skips the chunks already
written and recomputes any that cannot be read back (a damaged file); a folder that is not a sweep of the same
spec (same models and profiles too) is never written into, unless it holds no chunk yet (a sweep that stopped
before writing one, e.g. started with another format). `read_results(folder)` (or, for Parquet,
`pandas.read_parquet(folder)`) reads the whole result (files starting with '_' or '.' are ignored). Pool workers
exit when the sweep's process dies (even by SIGKILL); a Dask cluster without any worker for `worker_timeout_s`
ends the sweep with a message instead of waiting forever.

Going from local processes to a cluster is one argument: `sweep(spec)` -> `sweep(spec, dask_scheduler=
"tcp://host:8786")` (CLI: `--dask-scheduler tcp://host:8786`). Workers need trainsim installed; model and
hardware specs travel with each chunk, so workers do not need the profile files. `dask_scheduler="local:N"`
starts a LocalCluster of N one-thread workers for the sweep (executors.local_dask_cluster, also usable on its
own): it leaves out Dask's default MALLOC_TRIM_THRESHOLD_=65536, which costs a Dask worker ~10x the page faults of
a local one on numpy temporaries over 128 KB. A cluster started with Dask's defaults can get the same by
`dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})` before it starts.

    spec       SweepSpec (the YAML keys), load_spec
    grid       Plan (grid points, chunks, fingerprint), evaluate_chunk (the pure unit of work)
    output     the output folder: manifest, atomic chunk files, read_results
    executors  in process, local processes, dask.distributed; ChunkFailed
"""
from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import pandas as pd

from ...errors import SpecError
from .executors import ChunkFailed, local_dask_cluster, run_dask, run_processes, run_serial
from .grid import COLUMNS, FLOAT_COLUMNS, INT_COLUMNS, STR_COLUMNS, Plan, chunk_frame, evaluate_chunk, plan
from .output import (MANIFEST, MANIFEST_KIND, check_format, chunk_path, prepare_output, read_chunk, read_results,
                     readable, write_chunk)
from .spec import SweepSpec, load_spec

__all__ = ["COLUMNS", "FLOAT_COLUMNS", "INT_COLUMNS", "MANIFEST", "MANIFEST_KIND", "STR_COLUMNS", "ChunkFailed",
           "Plan", "SweepResult", "SweepSpec", "chunk_frame", "chunk_path", "evaluate_chunk", "load_spec",
           "local_dask_cluster", "plan",
           "read_chunk", "read_results", "sweep", "write_chunk"]


@dataclass(frozen=True)
class SweepResult:
    """The sweep's rows (all chunks, grid order) and what this run did."""

    spec: SweepSpec
    output: Path
    frame: pd.DataFrame
    num_points: int
    num_chunks: int
    chunks_computed: int
    chunks_skipped: int
    elapsed_s: float
    executor: str
    fingerprint: str = ""
    extra: dict = field(default_factory=dict)

    def best(self) -> pd.DataFrame:
        """One row per grid point: the best layout, or the row saying why there is none."""
        return self.frame[self.frame["rank"] <= 1]

    def to_dict(self) -> dict:
        return {"output": str(self.output), "num_points": self.num_points, "num_chunks": self.num_chunks,
                "chunks_computed": self.chunks_computed, "chunks_skipped": self.chunks_skipped,
                "elapsed_s": self.elapsed_s, "executor": self.executor, "fingerprint": self.fingerprint,
                "rows": json.loads(self.frame.to_json(orient="records"))}


def _execute(todo: list, pl: Plan, on_result, retries: int, dask_scheduler, workers, start_method,
             worker_timeout_s: float = 120.0, write=None) -> tuple:
    """(executor description, {chunk: error} of the chunks that failed every attempt). The chunk function is
    looked up here, at call time (tests replace `evaluate_chunk`). `write(i, df)`: local worker processes write
    their chunks themselves with it."""
    fn = evaluate_chunk
    if not todo:
        return "none (all chunks already written)", {}
    if dask_scheduler is not None:
        executor = f"dask ({dask_scheduler if isinstance(dask_scheduler, str) else 'client'})"
        return executor, run_dask(fn, todo, pl.payload, on_result, retries, dask_scheduler,
                                  f"trainsim-{pl.fingerprint[:12]}", worker_timeout_s)
    n = workers or os.cpu_count() or 1
    if n == 1 or len(todo) == 1:
        return "local (in process)", run_serial(fn, todo, pl.payload, on_result, retries)
    return (f"local ({min(n, len(todo))} processes)",
            run_processes(fn, largest_first(todo, pl), pl.payload, on_result, retries, n, start_method, write))


def largest_first(todo: list, pl: Plan) -> list:
    """The chunks in the order a pool should start them: the largest first (by the devices summed over their grid
    points: a search's candidates grow with the device count), so that the last chunks, which a worker may finish
    alone while the other waits, are the small ones. Stable: grid order among equals."""
    size = {i: sum(int(p["devices"]) for p in pl.chunk_points(i)) for i in todo}
    return sorted(todo, key=lambda i: -size[i])


def _all_rows(out: Path, fmt: str, total: int, frames: dict) -> pd.DataFrame:
    """read_results(out): the rows of every chunk in grid order, those computed in this run from memory (the frames
    their files were written from; the same rows and types, tests/test_sweep.py) and the others from their files,
    so that the sweep's process does not read back what it has just had written (a serial part of the sweep)."""
    if not frames:
        return read_results(out)
    parts = [frames[i] if i in frames else read_chunk(chunk_path(out, i, fmt), fmt) for i in range(total)
             if i in frames or chunk_path(out, i, fmt).exists()]
    return pd.concat(parts, ignore_index=True)


def _write_chunk_to(out: Path, fmt: str, i: int, df: pd.DataFrame) -> None:
    """write_chunk with the folder and format first (a picklable partial for the pool workers)."""
    write_chunk(out, i, df, fmt)


def sweep(spec: Union[str, Path, dict, SweepSpec], *, output: Union[str, Path, None] = None,
          dask_scheduler=None, workers: Optional[int] = None, retries: int = 2,
          on_progress: Optional[Callable[[int, int], None]] = None, start_method: Optional[str] = None,
          framework: Optional[str] = None, worker_timeout_s: float = 120.0) -> SweepResult:
    """Run (or resume) a sweep and return all its rows.

    `spec`: a YAML path, dict or SweepSpec; `output` overrides its output folder. Executors: local processes
    (`workers`, default the CPU count; 1 = in this process), or a Dask cluster when `dask_scheduler` is an
    address ('tcp://host:8786') or a distributed.Client. A failing chunk is retried `retries` times; a chunk
    that still fails raises ChunkFailed after the others are written. `on_progress(done, total)` is called
    after each chunk is written (and once at the start, counting chunks already there). `framework`: the
    software stack of every grid point (preset name or YAML path; also `constraints.framework` in the spec).
    `worker_timeout_s`: how
    long a Dask cluster may have no worker before the sweep stops with a message.
    `start_method` of the
    local processes: None picks executors.default_start_method() ('fork' on Linux from a single-threaded process).
    """
    t0 = time.perf_counter()
    sp = load_spec(spec)
    if framework is not None:
        sp = sp.model_copy(update={"constraints": sp.constraints.model_copy(update={"framework": str(framework)})})
    if output is not None:
        sp = sp.model_copy(update={"output": str(output)})
    if retries < 0:
        raise SpecError(f"retries = {retries}: must be >= 0")
    if workers is not None and workers < 1:
        raise SpecError(f"workers = {workers}: must be >= 1")
    check_format(sp.format)
    pl = plan(sp)
    out = Path(sp.output)
    prepare_output(out, pl)
    for stale in out.glob(".chunk-*.tmp-*"):          # left by a sweep that was killed while writing
        stale.unlink()
    total = pl.num_chunks
    for i in range(total):                            # a damaged chunk (disk error, edited by hand) is recomputed
        path = chunk_path(out, i, sp.format)
        if path.exists() and not readable(path, sp.format):
            path.unlink()
    todo = [i for i in range(total) if not chunk_path(out, i, sp.format).exists()]
    state = {"done": total - len(todo)}
    if on_progress:
        on_progress(state["done"], total)

    frames = {}

    def on_result(i: int, df: pd.DataFrame, written: bool = False) -> None:
        if not written:
            write_chunk(out, i, df, sp.format)
        frames[i] = df
        state["done"] += 1
        if on_progress:
            on_progress(state["done"], total)

    executor, failures = _execute(todo, pl, on_result, retries, dask_scheduler, workers, start_method,
                                  worker_timeout_s, functools.partial(_write_chunk_to, out, sp.format))
    if failures:
        lines = [f"chunk {i}: {type(e).__name__}: {e}" for i, e in sorted(failures.items())]
        raise ChunkFailed(f"{len(failures)} of {total} chunks failed after {retries + 1} attempts (the other "
                          f"chunks are written; run the sweep again to retry):\n" + "\n".join(lines))
    return SweepResult(spec=sp, output=out, frame=_all_rows(out, sp.format, total, frames), num_points=len(pl.points),
                       num_chunks=total,
                       chunks_computed=len(todo), chunks_skipped=total - len(todo),
                       elapsed_s=time.perf_counter() - t0, executor=executor, fingerprint=pl.fingerprint)
