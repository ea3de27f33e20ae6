"""Sweep recovery (issue 12): the default format works on the base install, a folder left by a sweep that stopped
before its first chunk does not block a rerun, a damaged chunk is recomputed, a killed sweep leaves no pool
worker, a Dask cluster without workers does not hang the sweep."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from simulator.errors import SpecError
from simulator.planning import sweep as sweep_mod
from simulator.planning.sweep import ChunkFailed, sweep

from .test_sweep import REPO, chunk_files, spec  # noqa: F401  (the fixture)


def csv_spec(spec):  # noqa: F811
    d = dict(spec)
    d.pop("format")
    return d


def test_default_format_is_csv_and_needs_no_pyarrow(spec, monkeypatch):  # noqa: F811
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    r = sweep(csv_spec(spec), workers=1)
    assert chunk_files(spec["output"]) == [f"chunk-{i:05d}.csv" for i in range(6)] and len(r.frame)


def test_parquet_without_pyarrow_is_refused_before_any_work(spec, monkeypatch):  # noqa: F811
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with pytest.raises(SpecError, match="format: parquet needs pyarrow"):
        sweep(spec, workers=1)
    assert not Path(spec["output"]).exists()


def test_a_folder_without_any_chunk_does_not_block_a_rerun_with_another_spec(spec, monkeypatch):  # noqa: F811
    def broken(payload):
        raise OSError("disk full")
    monkeypatch.setattr(sweep_mod, "evaluate_chunk", broken)
    with pytest.raises(ChunkFailed):
        sweep(spec, workers=1, retries=0)                 # stops with its manifest and no chunk
    monkeypatch.undo()
    r = sweep(csv_spec(spec), workers=1)                   # another format: a different fingerprint
    assert r.chunks_computed == 6


def test_a_damaged_chunk_is_recomputed(spec, tmp_path):  # noqa: F811
    clean = sweep(csv_spec(spec), workers=1)
    out = Path(spec["output"])
    (out / "chunk-00002.csv").write_bytes(b"\x00\xffnot a chunk\n\"")
    r = sweep(csv_spec(spec), workers=1)
    assert (r.chunks_computed, r.chunks_skipped) == (1, 5)
    pd.testing.assert_frame_equal(r.frame, clean.frame)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc")
def test_a_killed_sweep_leaves_no_pool_worker(spec, tmp_path):  # noqa: F811
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(csv_spec(spec)))
    pids = tmp_path / "pids.txt"
    script = textwrap.dedent(f"""
        import multiprocessing, os, signal
        from simulator.planning.sweep import sweep
        def on_progress(done, total):
            if done >= 1:
                open({str(pids)!r}, "w").write(" ".join(str(p.pid) for p in multiprocessing.active_children()))
                os.kill(os.getpid(), signal.SIGKILL)
        sweep({str(spec_path)!r}, workers=2, on_progress=on_progress)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    workers = [int(p) for p in pids.read_text().split()]
    assert workers
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)


def test_a_dask_cluster_without_workers_ends_the_sweep(spec):  # noqa: F811
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        t0 = time.monotonic()
        with pytest.raises(SpecError, match="no worker for 1 s"):
            sweep(csv_spec(spec), dask_scheduler=client, worker_timeout_s=1.0)
        assert time.monotonic() - t0 < 30
