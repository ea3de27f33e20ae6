"""MoE routing imbalance: how unevenly tokens reach the expert ranks (an input of the MoE cost model).

`RoutingSpec` is either an explicit `max_over_mean` (the busiest EP rank's routed token copies over the mean, as a
profiler or a paper reports it) or a named routing model whose expected imbalance `costs.moe_routing` computes:

- `balanced`: every expert equally popular; only the per-token randomness of top-k routing is left (the ideal an
  auxiliary balance loss aims at, GShard arXiv 2006.16668 sec. 2.2).
- `zipf`: expert popularity p_i proportional to (i+1)^-skew (skew 0 = balanced); the experts land on ranks in a
  random order, so the imbalance is an expectation over placements.
- `dirichlet`: popularity drawn from a symmetric Dirichlet with concentration `skew` (large = balanced, below 1 =
  a few dominant experts), one draw per layer.

`capacity_factor` (GShard / Switch Transformer / DeepSpeed-MoE token capacity) caps each expert at
max(min_capacity, ceil(capacity_factor x tokens x top_k / experts)) tokens: the overflow is dropped, and with
`pad_to_capacity` every expert buffer is padded to the capacity (DeepSpeed's and GShard's fixed [E, C, h]
dispatch tensors), so every rank computes and sends the same padded amount.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from .base import Spec

RoutingModel = Literal["balanced", "zipf", "dirichlet"]


class RoutingSpec(Spec):
    """How tokens spread over the experts of one MoE layer (imbalance, capacity, dropping)."""

    model: RoutingModel = Field("balanced", description="named routing model (ignored when max_over_mean is set)")
    skew: float = Field(0.0, ge=0.0, description="zipf: popularity exponent (0 = balanced); dirichlet: "
                                                  "concentration (must be > 0; large = balanced)")
    max_over_mean: Optional[float] = Field(
        None, ge=1.0, description="measured busiest-rank token copies / mean; overrides the routing model")
    capacity_factor: Optional[float] = Field(None, gt=0.0, description="token capacity factor; null = dropless")
    min_capacity: int = Field(0, ge=0, description="minimum tokens per expert (DeepSpeed min_capacity, e.g. 4)")
    pad_to_capacity: bool = Field(True, description="with a capacity factor: pad every expert buffer to capacity")
    seed: int = Field(0, ge=0, description="seed of the sampled expectations (zipf, dirichlet)")
    num_samples: int = Field(256, ge=1, description="samples for the expected imbalance of zipf/dirichlet")

    @model_validator(mode="after")
    def _skew(self):
        if self.model == "dirichlet" and self.max_over_mean is None and self.skew <= 0.0:
            raise ValueError(f"routing.skew = {self.skew}: a dirichlet routing model needs a concentration > 0")
        return self
