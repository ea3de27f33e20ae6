"""Scalar front of the analytic engine: one scenario in, one StepEstimate out (the one-row case)."""
from __future__ import annotations

import numpy as np

from ..results import (BREAKDOWN_KEYS, MEMORY_KEYS, RANK_NAMES, StepEstimate,  # noqa: F401 (re-exported)
                       step_estimate_from_row)
from ..specs.job import Job
from ..specs.layout_table import LayoutTable
from ..specs.scenario import Scenario
from .compose import evaluate


def job_of(sc: Scenario) -> Job:
    """The Job (model, hardware, training, devices) of a scenario."""
    return Job(model=sc.model, hardware=sc.hardware, training=sc.training, num_devices=sc.num_devices,
               network=sc.network, framework=sc.framework)


def result_from_row(sc: Scenario, r: dict, engine: str = "analytic") -> StepEstimate:
    """Wrap row `r` (scalars from evaluate()) as a StepEstimate with reason sentences."""
    return step_estimate_from_row(sc, r, engine)


def estimate_row(scenario: Scenario) -> dict:
    """evaluate() of one scenario, as scalars (the row the StepEstimate wraps). Not pruned: a layout that cannot be
    formed still gets the figures of its split, beside its reasons (StepEstimate.to_dict blanks them)."""
    table = LayoutTable.from_layouts([scenario.layout])
    out = evaluate(job_of(scenario), table, prune=False)
    return {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in out.items()}


def estimate(scenario: Scenario) -> StepEstimate:
    """Estimate one scenario with the analytic engine. Infeasible layouts come back with `reasons` filled
    (and their memory still reported); they do not raise. With network conditions other than a dedicated
    network the result says them (`network`), and with background traffic the slowdown against the same job
    on a dedicated network (`background`)."""
    res = step_estimate_from_row(scenario, estimate_row(scenario))
    net = scenario.network
    if not net.is_default:
        res.extra["network"] = net.summary()
    if net.background_occupancy > 0:
        alone = estimate_row(scenario.model_copy(update={"network": net.dedicated()}))
        res.extra["background"] = net.slowdown(float(alone["step_time_s"]), res.step_time_s)
    return res
