"""Executors of a sweep's chunks: in this process, on local worker processes, or on a dask.distributed cluster.
Each takes the chunk function `fn` (a pure function of a chunk's payload), retries a failing chunk, and returns
the chunks that failed on every attempt."""
from __future__ import annotations

import os
import time

from ...errors import SpecError


class ChunkFailed(RuntimeError):
    """A chunk failed on every attempt; the chunks written so far stay, and a restart retries the rest."""


def run_serial(fn, todo, payload, on_result, retries):
    """Chunks one after the other in this process; a chunk that raises is retried."""
    failures = {}
    for i in todo:
        for attempt in range(retries + 1):
            try:
                df = fn(payload(i))
            except Exception as err:  # noqa: BLE001 - a failed chunk is retried, then reported
                failures[i] = err
                continue
            failures.pop(i, None)
            on_result(i, df)
            break
    return failures


def exit_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: a daemon thread ends the worker once the sweep's process is gone (killed, even by
    SIGKILL, which leaves no chance to stop the pool), instead of computing the rest of its chunk as an orphan."""
    import threading

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)
    threading.Thread(target=watch, daemon=True, name="trainsim-parent-watch").start()


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
#: becomes a fresh mapping (~10x the page faults per chunk). Spawned local workers start without it.
MALLOC_TRIM_ENV = "MALLOC_TRIM_THRESHOLD_"


def compute_and_write(fn, payload, i, write):
    """A pool worker's task: chunk i's rows (`fn(payload)`), written by the worker itself (`write(i, df)`) when
    `write` is given, so that the sweep's process, which the workers wait on, only counts what is done."""
    df = fn(payload)
    if write is not None:
        write(i, df)
    return df


def run_processes(fn, todo, payload, on_result, retries, workers, start_method=None, write=None):
    """Chunks on a pool of local processes (`start_method` None: default_start_method()). A chunk that raises is
    retried; a worker that dies breaks the pool, which is rebuilt and the chunks it held are retried. Workers
    start without MALLOC_TRIM_THRESHOLD_ (above). `write(i, df)` (picklable; None: none): each worker writes the
    chunks it computes, and `on_result(i, df, True)` tells the caller it is written (a parent that writes every
    chunk itself was a serial part of the sweep: 6% of a 128-point sweep's work on one worker, issue #13)."""
    import os
    saved = os.environ.pop(MALLOC_TRIM_ENV, None)
    try:
        return _run_pool(fn, todo, payload, on_result, retries, workers, start_method or default_start_method(),
                         write)
    finally:
        if saved is not None:
            os.environ[MALLOC_TRIM_ENV] = saved


def _run_pool(fn, todo, payload, on_result, retries, workers, start_method, write=None):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context(start_method)
    attempts = {i: 0 for i in todo}
    failures = {}
    pending = list(todo)
    while pending:
        retry = []
        pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx,
                                   initializer=exit_with_parent, initargs=(os.getpid(),))
        try:
            futures = {pool.submit(compute_and_write, fn, payload(i), i, write): i for i in pending}
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
                if write is None:
                    on_result(i, df)
                else:
                    on_result(i, df, True)
        except BaseException:
            # Ctrl-C, SIGTERM or a failed write: drop the queued chunks and stop the workers, not after the chunk
            # they compute now
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            raise
        pool.shutdown(wait=True)
        pending = sorted(retry)
    return failures


def local_dask_cluster(n_workers: int = 2, **kwargs):
    """A dask.distributed LocalCluster for sweeps: `n_workers` processes of one thread each, started without
    MALLOC_TRIM_THRESHOLD_ (so a Dask worker allocates as a local sweep worker does).

    Dask's default `distributed.nanny.pre-spawn-environ` sets MALLOC_TRIM_THRESHOLD_=65536 in every worker (and in
    the process that starts the nanny); glibc then stops raising its mmap threshold, so each numpy temporary over
    128 KB is a fresh mapping and page faults per chunk grew ~10x (issue #13: a Dask worker took 3x a local one per
    chunk before the engine evaluated in blocks). The documented way to leave a variable unset is a None value in
    that config (distributed.nanny._get_env_variables). Other keyword arguments go to LocalCluster."""
    try:
        import dask
        from distributed import LocalCluster
    except ImportError:
        raise SpecError("a local Dask cluster needs dask.distributed: pip install 'trainsim[dask]'") from None
    kwargs = {"threads_per_worker": 1, "processes": True, "dashboard_address": None, **kwargs}
    saved = os.environ.pop(MALLOC_TRIM_ENV, None)       # a cluster started earlier may have left it here
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{MALLOC_TRIM_ENV}": None}):
            return LocalCluster(n_workers=int(n_workers), **kwargs)
    finally:
        if saved is not None:
            os.environ[MALLOC_TRIM_ENV] = saved


def parse_local_scheduler(scheduler) -> int | None:
    """`local` or `local:N` (a LocalCluster of N workers, default 2) -> N; None for anything else."""
    if not isinstance(scheduler, str) or not (scheduler == "local" or scheduler.startswith("local:")):
        return None
    text = scheduler.partition(":")[2] or "2"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise SpecError(f"dask scheduler '{scheduler}': the worker count after 'local:' must be a positive integer")
    return n


def run_dask(fn, todo, payload, on_result, retries, scheduler, key_prefix, worker_timeout_s: float = 120.0):
    """Chunks on a dask.distributed cluster. Dask reschedules the tasks of a worker that dies; a chunk that still
    fails (an exception, or KilledWorker after repeated deaths) is resubmitted up to `retries` times. A cluster
    with no worker for `worker_timeout_s` seconds ends the sweep (SpecError; the chunks written stay)."""
    try:
        from distributed import Client, wait
    except ImportError:
        raise SpecError("--dask-scheduler needs dask.distributed: pip install 'trainsim[dask]'") from None
    own = not isinstance(scheduler, Client)
    cluster = None
    n_local = parse_local_scheduler(scheduler)
    if n_local is not None:                  # 'local[:N]': a LocalCluster of this process, closed at the end
        cluster = local_dask_cluster(n_local, silence_logs=40)
        scheduler = cluster.scheduler_address
    try:
        client = Client(scheduler, timeout="20s") if own else scheduler
    except (OSError, TimeoutError, ValueError) as err:
        if cluster is not None:
            cluster.close()
        raise SpecError(f"cannot reach the Dask scheduler at {scheduler!r}: {err}") from None
    failures = {}
    try:
        attempts = {i: 0 for i in todo}
        pending = {}
        for i in todo:
            f = client.submit(fn, payload(i), key=f"{key_prefix}-chunk-{i}-try-0", pure=False)
            pending[f.key] = (f, i)
        seen_worker = time.monotonic()
        while pending:
            try:
                done = wait([f for f, _ in pending.values()], timeout=min(5.0, worker_timeout_s),
                            return_when="FIRST_COMPLETED").done
            except TimeoutError:
                done = set()
            if client.scheduler_info().get("workers"):
                seen_worker = time.monotonic()
            elif not done and time.monotonic() - seen_worker > worker_timeout_s:
                raise SpecError(f"the Dask cluster has had no worker for {worker_timeout_s:g} s; {len(pending)} "
                                "chunk(s) not computed (the others are written): start workers and run the sweep "
                                "again to resume")
            for fut in done:
                _, i = pending.pop(fut.key)
                try:
                    df = fut.result()
                except Exception as err:  # noqa: BLE001 - includes distributed.KilledWorker
                    attempts[i] += 1
                    if attempts[i] > retries:
                        failures[i] = err
                    else:
                        nf = client.submit(fn, payload(i), key=f"{key_prefix}-chunk-{i}-try-{attempts[i]}",
                                           pure=False)
                        pending[nf.key] = (nf, i)
                    continue
                on_result(i, df)
                fut.release()
    finally:
        if own:
            client.close()
        if cluster is not None:
            cluster.close()
    return failures
