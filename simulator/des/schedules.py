"""Moved to simulator.pipeline.schedules (schedules are pure data shared by both engines); re-exported here."""
from ..pipeline.schedules import (SCHEDULE_NAMES, Op, Schedule, check_schedule, global_chunk, gpipe,  # noqa: F401
                                  interleaved_1f1b, max_in_flight, one_f_one_b, rank_of, schedule_ops, zb_h1)
