"""Run facts: what a whole training run meets besides the step: failures, checkpoint storage, restarts.

A run preset (presets/runs/*.yaml) or a user file fills a `RunSpec`; `trainsim plan` combines it with the one-step
estimate. YAML uses human units (GB/s, seconds, days); properties give SI values. Every block carries a source.

Failures come either as a rate per device-hour or as a published per-component table (interruptions observed over
a window of days on a number of devices, e.g. Llama 3's Table 5); both give one failure rate per device-hour, and
the job's failure rate is that times its devices (each device brings its share of GPUs, hosts, switches, software).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from ..errors import SpecError
from ..units import GIGA
from .base import Spec
from .loading import PACKAGE_DIR, read_yaml, validate_spec

RUNS_DIR = PACKAGE_DIR / "presets" / "runs"
HOURS_PER_DAY = 24.0


class FailureComponent(Spec):
    """One row of a failure table: a cause and the interruptions it caused in the observed window."""

    name: str = Field(min_length=1)
    interruptions: int = Field(ge=0)


class FailureTable(Spec):
    """Interruptions by cause, observed over `observed_days` on `observed_devices` devices."""

    observed_days: float = Field(gt=0)
    observed_devices: int = Field(ge=1)
    components: list[FailureComponent] = Field(min_length=1)
    planned_interruptions: int = Field(0, ge=0, description="planned stops in the window (maintenance, updates)")
    source: str = Field(min_length=1)

    @property
    def device_hours(self) -> float:
        return self.observed_days * HOURS_PER_DAY * self.observed_devices

    @property
    def unexpected_interruptions(self) -> int:
        return sum(c.interruptions for c in self.components)


class FailureModel(Spec):
    """Unexpected failures (rate per device-hour, or a table) and planned stops per day."""

    rate_per_device_hour: Optional[float] = Field(None, gt=0, description="unexpected interruptions per device-hour")
    table: Optional[FailureTable] = None
    planned_per_day: Optional[float] = Field(None, ge=0, description="planned stops per day (with a rate only)")
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_form(self):
        if (self.rate_per_device_hour is None) == (self.table is None):
            raise ValueError("give exactly one of failures.rate_per_device_hour and failures.table")
        if self.table is not None and self.planned_per_day is not None:
            raise ValueError("with failures.table, give planned stops as table.planned_interruptions, "
                             "not failures.planned_per_day")
        return self

    @property
    def per_device_hour(self) -> float:
        """Unexpected interruptions per device-hour: the rate, or the table's total / its device-hours."""
        if self.table is not None:
            return self.table.unexpected_interruptions / self.table.device_hours
        return float(self.rate_per_device_hour)

    @property
    def planned_per_s(self) -> float:
        """Planned stops per second of wall-clock (independent of scale)."""
        per_day = (self.table.planned_interruptions / self.table.observed_days if self.table is not None
                   else (self.planned_per_day or 0.0))
        return per_day / (HOURS_PER_DAY * 3600.0)

    def component_rates(self) -> dict:
        """{cause: interruptions per device-hour}; one entry 'all causes' without a table."""
        if self.table is None:
            return {"all causes": self.per_device_hour}
        return {c.name: c.interruptions / self.table.device_hours for c in self.table.components}


class StorageSpec(Spec):
    """Checkpoint storage as the job sees it: aggregate write/read bandwidth, optionally a per-node cap."""

    write_gb_per_s: float = Field(gt=0, description="aggregate sustained write bandwidth for checkpoints, GB/s")
    read_gb_per_s: Optional[float] = Field(None, gt=0, description="aggregate read bandwidth; default = write")
    per_node_write_gb_per_s: Optional[float] = Field(
        None, gt=0, description="cap per writing node (its storage NICs), GB/s; null = no per-node cap")
    source: str = Field(min_length=1)

    @property
    def write_bytes_per_s(self) -> float:
        return self.write_gb_per_s * GIGA

    @property
    def read_bytes_per_s(self) -> float:
        return (self.read_gb_per_s if self.read_gb_per_s is not None else self.write_gb_per_s) * GIGA

    @property
    def per_node_write_bytes_per_s(self) -> Optional[float]:
        return None if self.per_node_write_gb_per_s is None else self.per_node_write_gb_per_s * GIGA


class RestartSpec(Spec):
    """What one restart costs besides reading the checkpoint.

    comm_init_s(n) = comm_init_s x (n / comm_init_devices) ** comm_init_exponent: communicator initialisation grows
    with the job (MegaScale: O(n) after their fix, so exponent 1).
    """

    detection_s: float = Field(ge=0, description="failure detection, diagnosis and eviction, seconds")
    comm_init_s: float = Field(ge=0, description="communicator initialisation at comm_init_devices, seconds")
    comm_init_devices: int = Field(ge=1)
    comm_init_exponent: float = Field(1.0, ge=0, description="growth of communicator init with devices")
    other_s: float = Field(0.0, ge=0, description="scheduling, process launch, data-loader warm-up, seconds")
    source: str = Field(min_length=1)


class CheckpointSpec(Spec):
    """How the run checkpoints: synchronous (training waits for storage) or two-stage asynchronous (training
    waits for the device-to-pinned-host copy; the storage write runs in the background)."""

    mode: Literal["sync", "async"] = "sync"
    interval_s: Optional[float] = Field(None, gt=0, description="seconds of training between checkpoints; "
                                                                "null = the Young/Daly optimum")
    source: str = "default"


class RunSpec(Spec):
    """Failures, storage, restarts and checkpointing of one run (a preset or a user file)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    description: str = ""
    failures: FailureModel
    storage: StorageSpec
    restart: RestartSpec
    checkpoint: CheckpointSpec = CheckpointSpec()
    notes: str = ""


def available_runs() -> list[str]:
    return sorted(p.stem for p in RUNS_DIR.glob("*.yaml"))


def load_run(name_or_path) -> RunSpec:
    """A run preset by name (presets/runs/) or a YAML path, validated (unknown keys are errors)."""
    if isinstance(name_or_path, RunSpec):
        return name_or_path
    p = Path(str(name_or_path))
    if p.suffix not in (".yaml", ".yml") and not p.exists():
        p = RUNS_DIR / f"{name_or_path}.yaml"
        if not p.exists():
            raise SpecError(f"unknown run preset '{name_or_path}'; available: {', '.join(available_runs())}")
    return validate_spec(RunSpec, read_yaml(p), str(p))


def run_with(run: RunSpec, **changes) -> RunSpec:
    """A copy of `run` with dotted-path changes, e.g. {'storage.write_gb_per_s': 100}; validated again.
    Changes whose value is None are ignored."""
    data = run.model_dump()
    for path, value in changes.items():
        if value is None:
            continue
        node = data
        *parents, leaf = path.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return validate_spec(RunSpec, data, f"run '{run.name}' with overrides")
