"""Design-space sweeps: a grid of models x hardware profiles x device counts x global batches (x sequence
lengths), each grid point searched for its best layouts, evaluated in chunks on local processes or a Dask cluster.

    spec.yaml -> grid points -> chunks -> executor (local processes | dask.distributed) -> one file per chunk

The output folder holds `_sweep.json` (the spec and its fingerprint) and `chunk-00000.parquet` (or `.csv`), one
file per chunk, each written to a temporary name and renamed into place, so a file that exists is complete.
Started again with the same spec, a sweep skips the chunks already written; a folder that is not a sweep of the
same spec (same models and profiles too) is never written into. `pandas.read_parquet(folder)` reads the whole
result (files starting with '_' or '.' are ignored).

Going from local processes to a cluster is one argument: `sweep(spec)` -> `sweep(spec, dask_scheduler=
"tcp://host:8786")` (CLI: `--dask-scheduler tcp://host:8786`). Workers need trainsim installed; model and
hardware specs travel with each chunk, so workers do not need the profile files.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, Union

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from ..errors import SpecError
from .search import BREAKDOWN_COLUMNS, Objective, SearchSpace, search
from ..specs.base import Spec
from ..specs.hardware import HardwareProfile
from ..specs.loading import load_hardware, load_model, read_yaml, validate_spec
from ..specs.model import ModelSpec
from ..specs.training import TrainDtype

MANIFEST = "_sweep.json"
MANIFEST_KIND = "trainsim-sweep"

INT_COLUMNS = ("point", "devices", "global_batch", "seq_len", "rank", "tp", "pp", "dp", "cp", "ep", "vpp",
               "micro_batch", "zero", "num_candidates", "num_feasible")
STR_COLUMNS = ("model", "hardware", "status", "recompute", "schedule")
FLOAT_COLUMNS = ("mfu", "hfu", "step_time_s", "tokens_per_s", "tflops_per_device", "mem_total_bytes",
                 "mem_capacity_bytes") + BREAKDOWN_COLUMNS
COLUMNS = INT_COLUMNS[:4] + ("model", "hardware", "rank", "status") + INT_COLUMNS[5:13] + (
    "recompute", "schedule") + FLOAT_COLUMNS + INT_COLUMNS[13:]


class SweepSpec(Spec):
    """A sweep file. Every combination of models x hardware x devices x global_batch x seq_len is one grid point;
    each is searched (analytic engine) and its best `top_k` layouts are kept."""

    models: list[str] = Field(min_length=1, description="model preset names or YAML paths")
    hardware: list[str] = Field(min_length=1, description="hardware profile names or YAML paths")
    devices: list[int] = Field(min_length=1, description="device counts")
    global_batch: list[int] = Field(min_length=1, description="global batch sizes (sequences per step)")
    seq_len: Union[int, list[int], None] = Field(None, description="sequence length(s); default each model's")
    dtype: TrainDtype = "bf16"
    constraints: SearchSpace = Field(default_factory=SearchSpace, description="search-space limits (as search)")
    objective: Objective = "throughput"
    top_k: int = Field(1, ge=1, description="layouts kept per grid point")
    output: str = Field(min_length=1, description="output folder (one file per chunk)")
    format: Literal["parquet", "csv"] = "parquet"
    chunk_size: int = Field(4, ge=1, description="grid points per chunk")

    @field_validator("devices", "global_batch")
    @classmethod
    def _positive(cls, v):
        if any(x < 1 for x in v):
            raise ValueError(f"{v}: every value must be >= 1")
        return v

    @field_validator("seq_len")
    @classmethod
    def _seq(cls, v):
        vals = v if isinstance(v, list) else [v] if v is not None else []
        if isinstance(v, list) and not v:
            raise ValueError("an empty list allows no sequence length")
        if any(x < 1 for x in vals):
            raise ValueError(f"{v}: sequence lengths must be >= 1")
        return v


def load_spec(spec: Union[str, Path, dict, SweepSpec]) -> SweepSpec:
    """A SweepSpec from a YAML path, a dict or itself; unknown keys and bad values are SpecErrors."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, (str, Path)):
        data = read_yaml(Path(spec))
        return validate_spec(SweepSpec, data if data is not None else {}, str(spec))
    return validate_spec(SweepSpec, spec, "sweep spec")


# ---------------------------------------------------------------------------------------------------------------
# the grid and its chunks
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """Resolved sweep: specs by name, grid points in order, chunk boundaries and the fingerprint."""

    spec: SweepSpec
    models: dict
    hardware: dict
    points: list
    fingerprint: str

    @property
    def num_chunks(self) -> int:
        return math.ceil(len(self.points) / self.spec.chunk_size)

    def chunk_points(self, i: int) -> list:
        cs = self.spec.chunk_size
        return self.points[i * cs:(i + 1) * cs]

    def payload(self, i: int) -> dict:
        """Everything a worker needs for chunk i (plain data: specs travel with the task)."""
        pts = self.chunk_points(i)
        return {
            "chunk": i,
            "points": pts,
            "models": {p["model"]: self.models[p["model"]].model_dump() for p in pts},
            "hardware": {p["hardware"]: self.hardware[p["hardware"]].model_dump() for p in pts},
            "dtype": self.spec.dtype,
            "constraints": self.spec.constraints.model_dump(),
            "objective": self.spec.objective,
            "top_k": self.spec.top_k,
        }


def plan(spec: SweepSpec) -> Plan:
    """Resolve names, build the grid (model-major order) and fingerprint the spec with the resolved specs."""
    models: dict[str, ModelSpec] = {}
    for name in spec.models:
        m = load_model(name)
        models[m.name] = m
    hardware: dict[str, HardwareProfile] = {}
    for name in spec.hardware:
        hw = load_hardware(name)
        hardware[hw.name] = hw
    if len(models) != len(spec.models) or len(hardware) != len(spec.hardware):
        raise SpecError("sweep spec: a model or hardware profile is listed twice")
    seqs = spec.seq_len if isinstance(spec.seq_len, list) else [spec.seq_len]
    points = []
    for mname, hname, n, b, s in itertools.product(models, hardware, spec.devices, spec.global_batch, seqs):
        if s is None:
            s = models[mname].max_seq_len
            if s is None:
                raise SpecError(f"sweep spec: seq_len is required: model '{mname}' has no max_seq_len")
        points.append({"point": len(points), "model": mname, "hardware": hname, "devices": int(n),
                       "global_batch": int(b), "seq_len": int(s)})
    ident = {
        "spec": spec.model_dump(exclude={"output"}),
        "models": {k: v.model_dump() for k, v in models.items()},
        "hardware": {k: v.model_dump() for k, v in hardware.items()},
    }
    fp = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()
    return Plan(spec=spec, models=models, hardware=hardware, points=points, fingerprint=fp)


def _empty_row(p: dict, status: str) -> dict:
    row = {c: -1 for c in INT_COLUMNS}
    row.update({c: float("nan") for c in FLOAT_COLUMNS})
    row.update({c: "" for c in STR_COLUMNS})
    row.update({k: p[k] for k in ("point", "model", "hardware", "devices", "global_batch", "seq_len")})
    row["status"] = status
    return row


def _row_of(p: dict, r: pd.Series, rank: int, status: str, n_cand: int, n_feas: int) -> dict:
    row = _empty_row(p, status)
    for c in ("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "zero"):
        row[c] = int(r[c])
    row["recompute"], row["schedule"] = str(r["recompute"]), str(r["schedule"])
    for c in FLOAT_COLUMNS:
        row[c] = float(r[c])
    row.update(rank=rank, num_candidates=n_cand, num_feasible=n_feas)
    return row


def chunk_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> a DataFrame with the fixed columns and dtypes every chunk file shares."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for c in INT_COLUMNS:
        df[c] = df[c].astype(np.int64)
    for c in FLOAT_COLUMNS:
        df[c] = df[c].astype(np.float64)
    for c in STR_COLUMNS:
        df[c] = df[c].astype(object)
    return df


def evaluate_chunk(payload: dict) -> pd.DataFrame:
    """Search every grid point of one chunk; the best `top_k` feasible layouts per point (status 'ok'), or one
    row saying why none is feasible (the least-memory layout's figures) or why the space is empty.

    A pure function of its payload: the same chunk gives the same rows on any worker.
    """
    models = {k: ModelSpec.model_validate(v) for k, v in payload["models"].items()}
    hardware = {k: HardwareProfile.model_validate(v) for k, v in payload["hardware"].items()}
    space = SearchSpace.model_validate(payload["constraints"])
    rows = []
    for p in payload["points"]:
        try:
            res = search(models[p["model"]], hardware[p["hardware"]], p["devices"], p["global_batch"], p["seq_len"],
                         dtype=payload["dtype"], constraints=space, objective=payload["objective"], reasons=False)
        except SpecError as err:
            rows.append(_empty_row(p, "empty: " + str(err).split(" (devices")[0].replace("empty search space: ", "")))
            continue
        if res.num_feasible:
            for k, (_, r) in enumerate(res.top(payload["top_k"]).iterrows(), start=1):
                rows.append(_row_of(p, r, k, "ok", res.num_candidates, res.num_feasible))
        else:
            cl = res.closest(1)
            row = _row_of(p, cl.iloc[0], 0, res.short_status(), res.num_candidates, 0)
            rows.append(row)
    return chunk_frame(rows)


# ---------------------------------------------------------------------------------------------------------------
# the output folder
# ---------------------------------------------------------------------------------------------------------------

def chunk_path(out: Path, i: int, fmt: str) -> Path:
    return out / f"chunk-{i:05d}.{fmt}"


def _prepare_output(out: Path, pl: Plan) -> None:
    """Create the output folder with its manifest, or check that an existing one is this sweep's."""
    manifest = {"kind": MANIFEST_KIND, "version": 1, "fingerprint": pl.fingerprint,
                "num_points": len(pl.points), "num_chunks": pl.num_chunks, "format": pl.spec.format,
                "spec": pl.spec.model_dump()}
    if out.exists():
        if not out.is_dir():
            raise SpecError(f"output '{out}' exists and is not a folder; refusing to overwrite it")
        mpath = out / MANIFEST
        if mpath.exists():
            try:
                old = json.loads(mpath.read_text())
            except (OSError, ValueError):
                old = {}
            if old.get("kind") != MANIFEST_KIND:
                raise SpecError(f"output '{out}' holds a {MANIFEST} that is not a trainsim sweep manifest; "
                                "refusing to write there")
            if old.get("fingerprint") != pl.fingerprint:
                raise SpecError(f"output '{out}' holds a sweep of a different spec (or of models/profiles that have "
                                "changed since); refusing to mix results: choose another output folder")
            return
        if any(out.iterdir()):
            raise SpecError(f"output '{out}' exists, is not empty and is not a sweep folder; refusing to write "
                            "into it: choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / MANIFEST, lambda p: Path(p).write_text(json.dumps(manifest, indent=2, default=str)))


def _atomic_write(path: Path, write: Callable) -> None:
    """Write via a hidden temporary file in the same folder, fsync, then rename into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_chunk(out: Path, i: int, df: pd.DataFrame, fmt: str) -> Path:
    path = chunk_path(out, i, fmt)
    if fmt == "parquet":
        _atomic_write(path, lambda p: df.to_parquet(p, index=False))
    else:
        _atomic_write(path, lambda p: df.to_csv(p, index=False))
    return path


def read_chunk(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "parquet":
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path, dtype={c: str for c in STR_COLUMNS}, keep_default_na=False,
                         na_values={c: ["", "nan", "NaN"] for c in FLOAT_COLUMNS})
    for c in STR_COLUMNS:
        df[c] = df[c].astype(object)
    return df


def read_results(output: Union[str, Path]) -> pd.DataFrame:
    """All chunk files of a sweep folder, in grid order."""
    out = Path(output)
    mpath = out / MANIFEST
    if not mpath.exists():
        raise SpecError(f"'{out}' is not a sweep folder (no {MANIFEST})")
    man = json.loads(mpath.read_text())
    fmt = man["format"]
    frames = [read_chunk(chunk_path(out, i, fmt), fmt) for i in range(man["num_chunks"])
              if chunk_path(out, i, fmt).exists()]
    if not frames:
        return chunk_frame([])
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------------------------
# executors
# ---------------------------------------------------------------------------------------------------------------

class ChunkFailed(RuntimeError):
    """A chunk failed on every attempt; the chunks written so far stay, and a restart retries the rest."""


def _run_serial(todo, payload, on_result, retries):
    failures = {}
    for i in todo:
        for attempt in range(retries + 1):
            try:
                df = evaluate_chunk(payload(i))
            except Exception as err:  # noqa: BLE001 - a failed chunk is retried, then reported
                failures[i] = err
                continue
            failures.pop(i, None)
            on_result(i, df)
            break
    return failures


def default_start_method() -> str:
    """'fork' where the platform has it (not macOS, where it is unsafe) and this process runs one thread: a forked
    worker starts with numpy, pandas and the specs already imported (a spawned one re-imports them, ~0.5 s of CPU
    per worker, which made 2 workers slower than 1 on a 128-point sweep); 'spawn' otherwise."""
    import multiprocessing
    import sys
    import threading
    if (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1):
        return "fork"
    return "spawn"


#: glibc reads this at a process's start; setting it at all (Dask's LocalCluster writes 65536 into os.environ of
#: the process that starts it) turns off glibc's dynamic mmap threshold, so every numpy temporary over 128 KB
#: becomes a fresh mapping (~10x the page faults per chunk). Local workers start without it.
MALLOC_TRIM_ENV = "MALLOC_TRIM_THRESHOLD_"


def _run_processes(todo, payload, on_result, retries, workers, start_method):
    """Chunks on a pool of local processes. A chunk that raises is retried; a worker that dies breaks the pool,
    which is rebuilt and the chunks it held are retried. Workers start without MALLOC_TRIM_THRESHOLD_ (above)."""
    saved = os.environ.pop(MALLOC_TRIM_ENV, None)
    try:
        return _run_pool(todo, payload, on_result, retries, workers, start_method or default_start_method())
    finally:
        if saved is not None:
            os.environ[MALLOC_TRIM_ENV] = saved


def _run_pool(todo, payload, on_result, retries, workers, start_method):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context(start_method)
    attempts = {i: 0 for i in todo}
    failures = {}
    pending = list(todo)
    while pending:
        fn = evaluate_chunk  # looked up now: tests may replace it
        retry = []
        pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx)
        try:
            futures = {pool.submit(fn, payload(i)): i for i in pending}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    df = fut.result()
                except (Exception, BrokenProcessPool) as err:  # noqa: BLE001
                    attempts[i] += 1
                    if attempts[i] > retries:
                        failures[i] = err
                    else:
                        retry.append(i)
                    continue
                on_result(i, df)
        except BaseException:
            # Ctrl-C or a failed write: drop the queued chunks instead of computing them all before exiting
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        pending = sorted(retry)
    return failures


def _run_dask(todo, payload, on_result, retries, scheduler, key_prefix):
    """Chunks on a dask.distributed cluster. Dask reschedules the tasks of a worker that dies; a chunk that still
    fails (an exception, or KilledWorker after repeated deaths) is resubmitted up to `retries` times."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SpecError("--dask-scheduler needs dask.distributed: pip install 'trainsim[dask]'") from None
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, timeout="20s") if own else scheduler
    except (OSError, TimeoutError, ValueError) as err:
        raise SpecError(f"cannot reach the Dask scheduler at {scheduler!r}: {err}") from None
    failures = {}
    try:
        fn = evaluate_chunk
        attempts = {i: 0 for i in todo}
        index = {}
        futs = []
        for i in todo:
            f = client.submit(fn, payload(i), key=f"{key_prefix}-chunk-{i}-try-0", pure=False)
            index[f.key] = i
            futs.append(f)
        ac = as_completed(futs)
        for fut in ac:
            i = index[fut.key]
            try:
                df = fut.result()
            except Exception as err:  # noqa: BLE001 - includes distributed.KilledWorker
                attempts[i] += 1
                if attempts[i] > retries:
                    failures[i] = err
                else:
                    nf = client.submit(fn, payload(i), key=f"{key_prefix}-chunk-{i}-try-{attempts[i]}", pure=False)
                    index[nf.key] = i
                    ac.add(nf)
                continue
            on_result(i, df)
            fut.release()
    finally:
        if own:
            client.close()
    return failures


# ---------------------------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------------------------

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


def sweep(spec: Union[str, Path, dict, SweepSpec], *, output: Union[str, Path, None] = None,
          dask_scheduler=None, workers: Optional[int] = None, retries: int = 2,
          on_progress: Optional[Callable[[int, int], None]] = None,
          start_method: Optional[str] = None) -> SweepResult:
    """Run (or resume) a sweep and return all its rows.

    `spec`: a YAML path, dict or SweepSpec; `output` overrides its output folder. Executors: local processes
    (`workers`, default the CPU count; 1 = in this process), or a Dask cluster when `dask_scheduler` is an
    address ('tcp://host:8786') or a distributed.Client. A failing chunk is retried `retries` times; a chunk
    that still fails raises ChunkFailed after the others are written. `on_progress(done, total)` is called
    after each chunk is written (and once at the start, counting chunks already there). `start_method` of the
    local processes: None picks default_start_method() ('fork' on Linux from a single-threaded process).
    """
    t0 = time.perf_counter()
    sp = load_spec(spec)
    if output is not None:
        sp = sp.model_copy(update={"output": str(output)})
    if retries < 0:
        raise SpecError(f"retries = {retries}: must be >= 0")
    if workers is not None and workers < 1:
        raise SpecError(f"workers = {workers}: must be >= 1")
    pl = plan(sp)
    out = Path(sp.output)
    _prepare_output(out, pl)
    for stale in out.glob(".chunk-*.tmp-*"):          # left by a sweep that was killed while writing
        stale.unlink()
    total = pl.num_chunks
    todo = [i for i in range(total) if not chunk_path(out, i, sp.format).exists()]
    done = total - len(todo)
    if on_progress:
        on_progress(done, total)
    state = {"done": done}

    def on_result(i: int, df: pd.DataFrame) -> None:
        write_chunk(out, i, df, sp.format)
        state["done"] += 1
        if on_progress:
            on_progress(state["done"], total)

    if not todo:
        executor = "none (all chunks already written)"
        failures = {}
    elif dask_scheduler is not None:
        executor = f"dask ({dask_scheduler if isinstance(dask_scheduler, str) else 'client'})"
        failures = _run_dask(todo, pl.payload, on_result, retries, dask_scheduler, f"trainsim-{pl.fingerprint[:12]}")
    else:
        n = workers or os.cpu_count() or 1
        if n == 1 or len(todo) == 1:
            executor = "local (in process)"
            failures = _run_serial(todo, pl.payload, on_result, retries)
        else:
            executor = f"local ({min(n, len(todo))} processes)"
            failures = _run_processes(todo, pl.payload, on_result, retries, n, start_method)
    if failures:
        lines = [f"chunk {i}: {type(e).__name__}: {e}" for i, e in sorted(failures.items())]
        raise ChunkFailed(f"{len(failures)} of {total} chunks failed after {retries + 1} attempts (the other "
                          f"chunks are written; run the sweep again to retry):\n" + "\n".join(lines))
    frame = read_results(out)
    return SweepResult(spec=sp, output=out, frame=frame, num_points=len(pl.points), num_chunks=total,
                       chunks_computed=len(todo), chunks_skipped=total - len(todo),
                       elapsed_s=time.perf_counter() - t0, executor=executor, fingerprint=pl.fingerprint)
