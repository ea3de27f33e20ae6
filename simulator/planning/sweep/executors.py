"""Executors of a sweep's chunks: in this process, on local worker processes, or on a dask.distributed cluster.
Each takes the chunk function `fn` (a pure function of a chunk's payload), retries a failing chunk, and returns
the chunks that failed on every attempt."""
from __future__ import annotations

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


def run_processes(fn, todo, payload, on_result, retries, workers, start_method):
    """Chunks on a pool of local processes. A chunk that raises is retried; a worker that dies breaks the pool,
    which is rebuilt and the chunks it held are retried."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context(start_method)
    attempts = {i: 0 for i in todo}
    failures = {}
    pending = list(todo)
    while pending:
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


def run_dask(fn, todo, payload, on_result, retries, scheduler, key_prefix):
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

