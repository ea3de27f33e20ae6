"""Moved to simulator.pipeline (split: stage layers; closed_form: bubble, in-flight, pipeline time); re-exported
here for existing imports."""
from ..pipeline.closed_form import (bubble_fraction, inflight_microbatches, num_micro_batches,  # noqa: F401
                                    pipeline_time_s)
from ..pipeline.split import (chunk_layers, default_stage_split, explicit_stage_split, rank_split,  # noqa: F401
                              stage_split)
