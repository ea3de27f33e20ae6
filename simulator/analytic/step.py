"""Moved: the composition is simulator.analytic.compose (evaluate), the cost functions simulator.costs, the
reason bits simulator.feasibility. Re-exported here for existing imports."""
from ..costs.communication import dp_comm_times, dp_phase_cost  # noqa: F401
from ..costs.layer import CAUSAL_EXECUTED_FRACTION, FLASH_BWD_OVER_FWD, FP8_CAST_BYTES_PER_ELEMENT  # noqa: F401
from ..costs.optimizer import OPTIMIZER_BYTES_PER_PARAM  # noqa: F401
from ..costs.stage import (HOST_LAYERS_EMBEDDING, HOST_LAYERS_EVERY_RANK, HOST_LAYERS_LOSS,  # noqa: F401
                           MICRO_BATCH_HOST_LAYERS)
from ..feasibility import (R_BATCH, R_CHUNKS, R_CP, R_EP, R_FFN, R_HEADS, R_INTERLEAVE, R_KV, R_MEMORY,  # noqa: F401
                           R_VPP, R_WORLD)
from ..specs.job import Job  # noqa: F401
from ..specs.layout_table import LayoutTable  # noqa: F401
from .compose import evaluate  # noqa: F401
