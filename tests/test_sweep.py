"""Sweeps: the grid and its chunk files, Dask equals local, a killed sweep restarts to the same result, failed
chunks and dead workers are retried, foreign output folders are never written into, bad specs exit 2."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from simulator.planning import sweep as sweep_mod
from simulator.errors import SpecError
from simulator.planning.sweep import MANIFEST, ChunkFailed, load_spec, plan, read_results, sweep

from .conftest import gpt, toy_hardware

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def spec(tmp_path) -> dict:
    """12 grid points (2 models x 1 profile x 3 device counts x 2 batches) in 6 chunks of 2. toy-big never fits
    in the toy device's 10 GB; 1 device leaves no layout with pp = 2 (an 'empty' point)."""
    small = gpt(name="toy-small")
    big = gpt(name="toy-big", hidden=16384, heads=64, vocab=32000)
    for m in (small, big):
        (tmp_path / f"{m.name}.yaml").write_text(yaml.safe_dump(m.model_dump()))
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(toy_hardware().model_dump()))
    return {
        "models": [str(tmp_path / "toy-small.yaml"), str(tmp_path / "toy-big.yaml")],
        "hardware": [str(tmp_path / "toy.yaml")],
        "devices": [1, 4, 8],
        "global_batch": [8, 16],
        "seq_len": 128,
        "constraints": {"pp": [2], "zero": [0, 1], "recompute": ["none", "full"]},
        "top_k": 2,
        "output": str(tmp_path / "out"),
        "chunk_size": 2,
        "format": "parquet",
    }


def chunk_files(out) -> list:
    return sorted(p.name for p in Path(out).glob("chunk-*"))


def test_grid_points_chunks_and_rows(spec):
    r = sweep(spec, workers=1)
    assert (r.num_points, r.num_chunks, r.chunks_computed) == (12, 6, 6)
    assert chunk_files(spec["output"]) == [f"chunk-{i:05d}.parquet" for i in range(6)]
    assert (Path(spec["output"]) / MANIFEST).exists()
    f = r.frame
    best = r.best()
    assert list(best["point"]) == list(range(12))
    ok = f[f["status"] == "ok"]
    assert set(ok["model"]) == {"toy-small"} and set(ok["rank"]) == {1, 2}
    assert (ok.groupby("point")["tokens_per_s"].apply(lambda s: s.is_monotonic_decreasing)).all()
    assert best.loc[best["devices"] == 1, "status"].str.startswith("empty").all()
    nofit = best[(best["model"] == "toy-big") & (best["devices"] > 1)]
    assert len(nofit) == 4 and nofit["status"].str.startswith("nothing fits").all()
    assert (nofit["mem_total_bytes"] > 10e9).all()
    # the whole folder reads as one Parquet dataset
    assert len(pd.read_parquet(spec["output"])) == len(f)


def test_restart_of_a_finished_sweep_skips_every_chunk(spec):
    a = sweep(spec, workers=1)
    b = sweep(spec, workers=1)
    assert (b.chunks_computed, b.chunks_skipped) == (0, 6)
    pd.testing.assert_frame_equal(a.frame, b.frame)


def test_dask_local_cluster_equals_local_result(spec, tmp_path):
    distributed = pytest.importorskip("distributed")
    local = sweep(spec, workers=1)
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        remote = sweep(spec, output=tmp_path / "dask-out", dask_scheduler=cluster.scheduler_address)
    assert remote.executor.startswith("dask")
    assert chunk_files(tmp_path / "dask-out") == chunk_files(spec["output"])
    pd.testing.assert_frame_equal(local.frame, remote.frame)


def test_local_processes_equal_in_process_result(spec, tmp_path):
    one = sweep(spec, workers=1)
    two = sweep(spec, output=tmp_path / "procs", workers=2)
    assert two.executor == "local (2 processes)"
    pd.testing.assert_frame_equal(one.frame, two.frame)


def test_killed_sweep_restarts_and_loses_nothing(spec, tmp_path):
    """A subprocess is SIGKILLed right after its first chunk is written; the restart computes the other five and
    the result equals an uninterrupted sweep's."""
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    script = textwrap.dedent(f"""
        import os, signal
        from simulator.planning.sweep import sweep
        def on_progress(done, total):
            if done >= 1:
                os.kill(os.getpid(), signal.SIGKILL)
        sweep({str(spec_path)!r}, workers=1, on_progress=on_progress)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    assert chunk_files(spec["output"]) == ["chunk-00000.parquet"]
    resumed = sweep(spec_path, workers=1)
    assert (resumed.chunks_skipped, resumed.chunks_computed) == (1, 5)
    clean = sweep(spec_path, output=tmp_path / "clean", workers=1)
    pd.testing.assert_frame_equal(resumed.frame, clean.frame)


def test_stale_temporary_files_of_a_killed_writer_are_removed(spec):
    sweep(spec, workers=1)
    out = Path(spec["output"])
    (out / "chunk-00003.parquet").unlink()
    stale = out / ".chunk-00003.parquet.tmp-12345"
    stale.write_bytes(b"partial")
    r = sweep(spec, workers=1)
    assert r.chunks_computed == 1 and not stale.exists()


def test_a_failing_chunk_is_retried(spec, monkeypatch):
    real = sweep_mod.evaluate_chunk
    calls = []

    def flaky(payload):
        calls.append(payload["chunk"])
        if payload["chunk"] == 2 and calls.count(2) == 1:
            raise RuntimeError("transient failure")
        return real(payload)

    monkeypatch.setattr(sweep_mod, "evaluate_chunk", flaky)
    r = sweep(spec, workers=1)
    assert calls.count(2) == 2 and r.chunks_computed == 6
    monkeypatch.setattr(sweep_mod, "evaluate_chunk", real)
    clean = sweep(spec, output=Path(spec["output"]).with_name("clean"), workers=1)
    pd.testing.assert_frame_equal(r.frame, clean.frame)


_REAL_EVALUATE_CHUNK = sweep_mod.evaluate_chunk


def _die_once(payload):
    """Kills its worker process on the first attempt at chunk 1 (a marker file remembers across processes)."""
    marker = Path(os.environ["TRAINSIM_TEST_MARKER"])
    if payload["chunk"] == 1 and not marker.exists():
        marker.write_text("died")
        os._exit(13)
    return _REAL_EVALUATE_CHUNK(payload)


def test_a_chunk_whose_worker_dies_is_retried(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINSIM_TEST_MARKER", str(tmp_path / "marker"))
    monkeypatch.setattr(sweep_mod, "evaluate_chunk", _die_once)     # submitted by reference to spawned workers
    r = sweep(spec, workers=2)
    assert (tmp_path / "marker").exists() and r.chunks_computed == 6
    monkeypatch.undo()
    clean = sweep(spec, output=tmp_path / "clean", workers=1)
    pd.testing.assert_frame_equal(r.frame, clean.frame)


def test_a_chunk_failing_every_attempt_is_reported_and_the_rest_are_written(spec, monkeypatch, capsys):
    real = sweep_mod.evaluate_chunk

    def broken(payload):
        if payload["chunk"] == 4:
            raise ValueError("always fails")
        return real(payload)

    monkeypatch.setattr(sweep_mod, "evaluate_chunk", broken)
    with pytest.raises(ChunkFailed, match="chunk 4: ValueError: always fails"):
        sweep(spec, workers=1, retries=1)
    assert len(chunk_files(spec["output"])) == 5


def test_output_that_is_not_this_sweep_is_never_written(spec, tmp_path):
    target = tmp_path / "user-file.csv"
    target.write_text("precious")
    with pytest.raises(SpecError, match="not a folder"):
        sweep(spec, output=target, workers=1)
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(SpecError, match="not a sweep folder"):
        sweep(spec, output=folder, workers=1)
    sweep(spec, workers=1)
    with pytest.raises(SpecError, match="different spec"):
        sweep({**spec, "global_batch": [8]}, workers=1)
    assert target.read_text() == "precious" and sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_csv_output_holds_the_same_rows(spec, tmp_path):
    pq = sweep(spec, workers=1).frame
    csv = sweep({**spec, "format": "csv", "output": str(tmp_path / "csv")}, workers=1)
    assert chunk_files(tmp_path / "csv")[0] == "chunk-00000.csv"
    pd.testing.assert_frame_equal(pq, csv.frame, check_dtype=False)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_returned_rows_are_those_of_the_written_files(spec, tmp_path, fmt):
    """sweep() keeps the frames its chunks were written from (no read-back); they must be what the files hold,
    for the chunks written by this process (1 worker) and by pool workers (2), and after a partial restart."""
    for workers in (1, 2):
        out = tmp_path / f"{fmt}-{workers}"
        res = sweep({**spec, "format": fmt, "output": str(out)}, workers=workers)
        assert res.chunks_computed == res.num_chunks
        pd.testing.assert_frame_equal(res.frame, read_results(out), check_exact=True)
    for p in sorted(out.glob("chunk-*"))[1::2]:        # half the chunks gone: the rest are read from their files
        p.unlink()
    again = sweep({**spec, "format": fmt, "output": str(out)}, workers=2)
    assert 0 < again.chunks_skipped < again.num_chunks
    pd.testing.assert_frame_equal(again.frame, read_results(out), check_exact=True)
    pd.testing.assert_frame_equal(again.frame, res.frame, check_exact=True)


def test_spec_with_unknown_key_exits_2(tmp_path, capsys):
    from simulator.cli import main
    p = tmp_path / "bad.yaml"
    p.write_text("models: [gpt3-175b]\nhardware: [a100-sxm4-80gb]\ndevices: [8]\nglobal_batch: [8]\n"
                 "output: out\nchunksize: 3\n")
    assert main(["sweep", str(p)]) == 2
    assert "unknown key 'chunksize'" in capsys.readouterr().err
    with pytest.raises(SpecError, match="constraints.max_tp"):
        load_spec({"models": ["a"], "hardware": ["b"], "devices": [1], "global_batch": [1], "output": "o",
                   "constraints": {"max_tp": 0}})


def test_cli_sweep_prints_best_per_point(spec, tmp_path, capsys):
    from simulator.cli import main
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(p), "--quiet", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "12 grid points in 6 chunks" in out and "toy-small" in out and "6 chunks computed" in out
    assert len(read_results(spec["output"])) == len(sweep(spec, workers=1).frame)
    assert plan(load_spec(spec)).num_chunks == 6


def test_a_search_error_other_than_an_empty_space_is_not_labelled_empty(spec):
    """Issue 9 bug c: the status follows the error's type (EmptySearchSpace and its `reason` field), not its text:
    the cost objective without a price is an error, not an empty space."""
    pl = plan(load_spec({**spec, "objective": "cost", "devices": [4]}))
    rows = sweep_mod.evaluate_chunk(pl.payload(0))
    assert list(rows["devices"]) == [4, 4]
    assert list(rows["status"]) == ["error: objective 'cost' needs a price: profile 'toy' has no "
                                    "device.price_per_hour_usd; pass price_per_hour (--price-per-hour)"] * 2
    empty = sweep_mod.evaluate_chunk(plan(load_spec({**spec, "devices": [1]})).payload(0))
    assert list(empty["status"]) == ["empty: no pp divides the 1 devices within the constraints (<= 4 layers)"] * 2


def _worker_env(_):
    return os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset")


def test_local_dask_cluster_workers_start_without_dask_malloc_trim_threshold():
    """executors.local_dask_cluster leaves out Dask's default MALLOC_TRIM_THRESHOLD_=65536 (page faults, issue 13),
    in the workers and in this process."""
    distributed = pytest.importorskip("distributed")
    from simulator.planning.sweep.executors import local_dask_cluster
    before = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    with local_dask_cluster(1, silence_logs=50) as cluster, distributed.Client(cluster) as client:
        assert client.submit(_worker_env, 0).result() == "unset"
    assert os.environ.get("MALLOC_TRIM_THRESHOLD_") == before


def test_dask_scheduler_local_n_runs_the_sweep_on_its_own_cluster(spec, tmp_path):
    pytest.importorskip("distributed")
    local = sweep(spec, workers=1)
    remote = sweep(spec, output=tmp_path / "dask-local", dask_scheduler="local:1")
    assert remote.executor == "dask (local:1)"
    pd.testing.assert_frame_equal(local.frame, remote.frame)
    with pytest.raises(SpecError, match="positive integer"):
        sweep(spec, output=tmp_path / "bad", dask_scheduler="local:x")
