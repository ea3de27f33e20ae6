"""Shared base for user-facing specs: frozen pydantic models that reject unknown keys."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Spec(BaseModel):
    """A frozen, validated spec. Unknown keys (YAML typos) are errors that name the key."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
