"""Shared base for user-facing specs: frozen pydantic models that reject unknown keys, NaN and infinities,
and the size limits every spec and CLI flag uses (one definition each)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Spec(BaseModel):
    """A frozen, validated spec. Unknown keys (YAML typos) are errors that name the key; `nan`, `inf` and `.inf`
    are rejected in every float field."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


# Sane maxima of user inputs (sizes and counts; floats are only required to be finite, so idealised tests may
# use 1e12 GB/s). They keep every computation bounded (a `num_layers: 10000000` model file used to
# take 24 GB) while leaving room far beyond today's largest jobs: 128 layers, hidden 25,600, 256 experts, ~100k
# devices, 1M-token contexts.
MAX_LAYERS = 4096
MAX_WIDTH = 1 << 20            # hidden size, FFN width, head dimension, MLA ranks
MAX_HEADS = 1 << 16
MAX_VOCAB = 1 << 24
MAX_SEQ_LEN = 1 << 24          # tokens per sequence
MAX_EXPERTS = 1 << 16
MAX_DEVICES = 1 << 20          # devices of a job, and any parallel degree (tp, dp, ep, cp) or network domain
MAX_BATCH = 1 << 24            # sequences per optimizer step, or per micro-batch
MAX_TIERS = 16
MAX_TEXT = 10_000              # characters of a description, source or note
MAX_NAME = 64                  # characters of a profile or model name

#: Longest bad value quoted in a message; longer ones are cut with '...' (a 522 MB message once printed whole).
MAX_QUOTED = 80


def shorten(text: str, limit: int = MAX_QUOTED) -> str:
    """`text` cut to `limit` characters with an ellipsis and the original length when cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"
