"""trainsim: distributed-training efficiency simulator.

Public API (everything else is internal):

    >>> import simulator as ts
    >>> sc = ts.Scenario.build("gpt3-175b", "a100-sxm4-80gb", devices=1024, global_batch=1536, seq_len=2048,
    ...                        tp=8, pp=8, micro_batch=1)
    >>> r = ts.estimate(sc)          # analytic engine -> StepEstimate
    >>> r.mfu, r.step_time_s, r.to_dict()["memory"]["total_bytes"]

`estimate` (analytic engine), `simulate` (discrete-event engine, compared with the analytic estimate), `search`,
`compare`, `sweep` and `validate` are functions; `uncertainty_of(scenario)` / `uncertainty_for(hardware)` say how a
prediction is grounded and the error to expect (simulator/uncertainty.py); their modules are imported on first use (pandas and SimPy load
only when needed, and importing one engine does not import the other).
"""
from __future__ import annotations

import gc as _gc
import importlib

# The imports below (numpy, pydantic, the spec models) create ~50k long-lived objects and no garbage; the cyclic
# collector, run every 700 allocations, would traverse them over and over (~0.05 s of a ~0.6 s `trainsim
# simulate`, issue #13). It is paused while they run and restored as it was.
_collecting = _gc.isenabled()
_gc.disable()
try:
    from .errors import InfeasibleLayoutError, SpecError
    from .results import SimulationResult, StepEstimate
    from .specs.hardware import HardwareProfile
    from .specs.layout import Layout
    from .specs.loading import available_models, available_profiles, load_hardware, load_model
    from .specs.model import ModelSpec
    from .specs.training import TrainingSpec
finally:
    # What the imports made is long-lived: it is moved to the oldest generation as survivors of a collection would
    # be, without the collection (freeze + unfreeze; skipped when the caller holds frozen objects of its own).
    # Otherwise the first collection after re-enabling traverses all of it (~20 ms of every command).
    if not _gc.get_freeze_count():
        _gc.freeze()
        _gc.unfreeze()
    if _collecting:
        _gc.enable()
    del _collecting

#: Lazily imported public names (functions, and Scenario: validate never builds one): name -> its module.
_LAZY = {
    "Scenario": "simulator.specs.scenario",
    "estimate": "simulator.analytic.estimate",
    "simulate": "simulator.crosscheck",
    "search": "simulator.planning.search",
    "compare": "simulator.planning.compare",
    "validate": "simulator.validation",
    "sweep": "simulator.planning.sweep",
    "uncertainty_for": "simulator.uncertainty",
    "uncertainty_of": "simulator.uncertainty",
}

load_cluster = load_hardware  # the name DESIGN.md uses


def __getattr__(name: str):
    if name in _LAZY:
        fn = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = fn
        return fn
    raise AttributeError(f"module 'simulator' has no attribute '{name}'")


__all__ = ["ModelSpec", "HardwareProfile", "TrainingSpec", "Layout", "StepEstimate", "SimulationResult",
           "load_model", "load_hardware", "load_cluster", "available_models", "available_profiles", "SpecError",
           "InfeasibleLayoutError", *_LAZY]
