"""The discrete-event engine's entry points (kept at this path for existing imports): `simulate` replays one step
(des.simulate; the comparison with the analytic estimate is simulator.crosscheck), `Stragglers`
(des.stragglers), `chunk_layers` (the checked layer split, pipeline.split), `build_plan` (des.plan)."""
from ..pipeline.split import checked_chunk_layers as chunk_layers  # noqa: F401
from ..results import SimulationResult  # noqa: F401
from .plan import BUCKET_MIN_PARAMS, BUCKET_PARAMS_PER_DP_RANK, Plan, build_plan  # noqa: F401
from .simulate import simulate  # noqa: F401
from .stragglers import MAX_GROUPS, Stragglers  # noqa: F401
