"""Reading the kernel tables and catalogue shipped in simulator/presets/kernels/ (package data, wheel-safe).

The files and their conventions are described in simulator/presets/kernels/README.md; the tables are regenerated
by benchmarks/kernels/convert_simumax.py and benchmarks/kernels/published_tables.py. This module only reads them:
the model built on them is simulator/costs/kernels.py.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Mapping, Optional

import numpy as np

PACKAGE, FOLDER = "simulator", "presets/kernels"


@dataclass(frozen=True)
class MeasuredTable:
    """One op's table measured on one machine: columns by name (numbers as float arrays, flags as str arrays)."""

    table_id: str
    machine: str
    silicon: str = field(compare=False)     # the hardware profile whose silicon the machine carries
    op: str = ""                            # gemm | grouped_gemm | attention | memory
    dtype: Optional[str] = None
    kernel: Optional[str] = None
    default: bool = True                    # False: a kernel the default training stack does not run
    peak_tflops: float = 0.0
    source: str = ""
    columns: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class KernelCatalog:
    """Everything in simulator/presets/kernels: the tables, the measured machines, per-profile device facts."""

    tables: tuple[MeasuredTable, ...]
    machines: Mapping[str, dict] = field(hash=False)
    devices: Mapping[str, dict] = field(hash=False)
    transfer_validation: Mapping[str, dict] = field(hash=False)
    systolic: Mapping[str, object] = field(default_factory=dict, hash=False)   # catalog.yaml `systolic` block


def _read_text(name: str) -> str:
    return resources.files(PACKAGE).joinpath(FOLDER).joinpath(name).read_text(encoding="utf-8")


def read_table_csv(text: str) -> dict[str, np.ndarray]:
    """Columns of a table CSV ('#' lines are comments); numeric columns as float arrays, others as str arrays."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    header, body = rows[0], rows[1:]
    cols: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        vals = [r[j] for r in body]
        try:
            cols[name] = np.array([float(v) for v in vals], dtype=float)
        except ValueError:
            cols[name] = np.array(vals, dtype=str)
    return cols


@lru_cache(maxsize=1)
def load_kernel_catalog() -> KernelCatalog:
    """The shipped catalogue and every table it lists (read once; the result is immutable). Kept in the per-user
    cache beside the fitted surfaces (surfaces_cache: named by a hash of the shipped files and this code), so a
    fresh process reads it instead of parsing the YAML and the tables again (~20 ms of every command that
    evaluates a layout, issue #13)."""
    from .surfaces_cache import cached
    return cached(parse_kernel_catalog, "kernel-catalog")


def parse_kernel_catalog() -> KernelCatalog:
    """The shipped catalogue and every table it lists, parsed from the files (load_kernel_catalog caches it)."""
    from ..specs.safe_yaml import parse_yaml          # libyaml's C parser where available, bounded checks
    cat = parse_yaml(_read_text("catalog.yaml"), "kernel catalogue presets/kernels/catalog.yaml")
    machines = cat.get("machines", {})
    tables = []
    for table_id, t in cat["tables"].items():
        machine = t["machine"]
        silicon = machines.get(machine, {}).get("variant_of", machine)
        for op, spec in t["ops"].items():
            tables.append(MeasuredTable(
                table_id=table_id, machine=machine, silicon=silicon, op=op, dtype=spec.get("dtype"),
                kernel=spec.get("kernel"), default=bool(spec.get("default", True)),
                peak_tflops=float(t["peak_tflops"]), source=" ".join(t["source"].split()),
                columns=read_table_csv(_read_text(spec["file"]))))
    return KernelCatalog(tables=tuple(tables), machines=machines, devices=cat["devices"],
                         transfer_validation=cat.get("transfer_validation", {}), systolic=cat.get("systolic", {}))
