"""A sweep spec: the grid (models x hardware profiles x device counts x global batches x sequence lengths), the
search constraints and objective, how many layouts to keep per point, and where and how to write the chunks."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Union

from pydantic import Field, field_validator

from ...specs.base import Spec
from ...specs.loading import read_yaml, validate_spec
from ...specs.training import TrainDtype
from ..enumerate import SearchSpace
from ..search import Objective


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
    format: Literal["parquet", "csv"] = Field("csv", description="csv (default, base install) or parquet (needs "
                                                                  "pyarrow: pip install 'trainsim[parquet]')")
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

