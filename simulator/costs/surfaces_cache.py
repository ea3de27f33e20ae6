"""A per-user cache of the kernel model's fitted surfaces (costs.kernels.measured_surfaces).

Fitting the measured tables takes ~0.3 s, a third of a whole `trainsim search`; the result depends only on the
shipped tables and the fitting code, so it is stored once under a name that hashes both: a changed table or a
changed kernels.py gives a new name (the old file is left to be replaced, never read). Location:
$TRAINSIM_CACHE_DIR, else $XDG_CACHE_HOME/trainsim, else ~/.cache/trainsim; TRAINSIM_CACHE_DIR=off disables it.
A cache that cannot be read or written is ignored (the fit is recomputed), so a read-only home still works.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

from .kernel_data import FOLDER, PACKAGE

#: Code whose change must invalidate the cache (besides the tables themselves).
_CODE_FILES = ("kernels.py", "kernel_data.py", "surfaces_cache.py")


def cache_dir() -> Optional[Path]:
    """Where the cache lives, or None when disabled (TRAINSIM_CACHE_DIR=off)."""
    env = os.environ.get("TRAINSIM_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "0", "off", "none") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trainsim"


def inputs_digest() -> str:
    """sha256 over the shipped kernel tables and the fitting code, in a fixed order."""
    h = hashlib.sha256()
    folder = resources.files(PACKAGE).joinpath(FOLDER)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_file():
            h.update(entry.name.encode())
            h.update(entry.read_bytes())
    here = Path(__file__).resolve().parent
    for name in _CODE_FILES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    return h.hexdigest()


def cached(fit: Callable[[], object], name: str = "kernel-surfaces"):
    """fit() through the cache file of the current inputs (`name`: what it holds, the start of the file name)."""
    root = cache_dir()
    if root is None:
        return fit()
    try:
        path = root / f"{name}-{inputs_digest()[:24]}.pkl"
    except OSError:
        return fit()
    try:
        with open(path, "rb") as f:
            return pickle.load(f)       # written by this code under a name that hashes its inputs (above)
    except Exception:                   # noqa: BLE001 - absent, unreadable or damaged: refit
        pass
    value = fit()
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{name}-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass
    return value
