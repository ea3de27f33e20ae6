"""The output folder of a sweep: a manifest (`_sweep.json`: the spec and its fingerprint) and one file per chunk,
each written to a hidden temporary name and renamed into place, so that a file that exists is complete."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Union

import pandas as pd

from ...errors import SpecError
from .grid import FLOAT_COLUMNS, STR_COLUMNS, Plan, chunk_frame

MANIFEST = "_sweep.json"
MANIFEST_KIND = "trainsim-sweep"


def chunk_path(out: Path, i: int, fmt: str) -> Path:
    """The file of chunk i."""
    return out / f"chunk-{i:05d}.{fmt}"


def prepare_output(out: Path, pl: Plan) -> None:
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
                if not any(out.glob("chunk-*")):      # a sweep that stopped before its first chunk: nothing to mix
                    _atomic_write(mpath, lambda p: Path(p).write_text(json.dumps(manifest, indent=2, default=str)))
                    return
                raise SpecError(f"output '{out}' holds a sweep of a different spec (or of models/profiles that have "
                                "changed since); refusing to mix results: choose another output folder, or delete "
                                "this one to start over")
            return
        if any(out.iterdir()):
            raise SpecError(f"output '{out}' exists, is not empty and is not a sweep folder; refusing to write "
                            "into it: choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / MANIFEST, lambda p: Path(p).write_text(json.dumps(manifest, indent=2, default=str)))


def check_format(fmt: str) -> None:
    """SpecError before any work when the output format needs a package this install lacks."""
    import importlib.util
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise SpecError("format: parquet needs pyarrow, which is not installed: pip install 'trainsim[parquet]' "
                        "(or pyarrow), or use format: csv (the default)")


def readable(path: Path, fmt: str) -> bool:
    """Whether a chunk file reads back with the sweep's columns (a damaged file is recomputed)."""
    try:
        df = read_chunk(path, fmt)
    except Exception:  # noqa: BLE001 - any failure to parse means the file is damaged
        return False
    return "point" in df.columns and "status" in df.columns


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
    """Write chunk i atomically (temporary file, fsync, rename); returns its path."""
    path = chunk_path(out, i, fmt)
    if fmt == "parquet":
        _atomic_write(path, lambda p: df.to_parquet(p, index=False))
    else:
        _atomic_write(path, lambda p: df.to_csv(p, index=False))
    return path


def read_chunk(path: Path, fmt: str) -> pd.DataFrame:
    """One chunk file, with the column types every chunk shares."""
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

