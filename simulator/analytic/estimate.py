"""Scalar front of the analytic engine: one scenario in, one StepEstimate out (the one-row case)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..specs.scenario import Scenario
from .layouts import LayoutTable
from .reasons import describe
from .step import R_MEMORY, Job, evaluate

BREAKDOWN_KEYS = ("compute", "recompute", "tp_comm", "cp_comm", "ep_comm", "pp_comm", "bubble", "dp_comm",
                  "optimizer", "overhead")
MEMORY_KEYS = ("weights", "grads", "optimizer", "activations", "reserved")
RANK_NAMES = ("first", "middle", "last")


@dataclass(frozen=True)
class StepEstimate:
    """Result of one layout: time, utilisation, memory, feasibility. `to_dict()` gives the stable JSON keys."""

    scenario: Scenario
    step_time_s: float
    mfu: float
    hfu: float
    tokens_per_s: float
    tflops_per_device: float
    time_breakdown_s: dict
    memory_bytes: dict
    fits: bool
    reasons: list = field(default_factory=list)
    num_micro_batches: int = 1
    bubble_fraction: float = 0.0
    pacing_rank: str = "first"
    memory_rank: str = "first"
    stage_layers: dict = field(default_factory=dict)
    engine: str = "analytic"
    extra: dict = field(default_factory=dict)
    runnable: bool = True       # False: the layout cannot be formed (not only too big); its figures mean nothing

    @property
    def feasible(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        sc = self.scenario
        d = {
            "engine": self.engine,
            "model": sc.model.name,
            "hardware": sc.hardware.name,
            "devices": sc.num_devices,
            "layout": sc.layout.model_dump(),
            "training": sc.training.model_dump(),
            "mfu": self.mfu,
            "hfu": self.hfu,
            "step_time_s": self.step_time_s,
            "tokens_per_s": self.tokens_per_s,
            "tflops_per_device": self.tflops_per_device,
            "time_breakdown_s": dict(self.time_breakdown_s),
            "memory": dict(self.memory_bytes),
            "fits": self.fits,
            "feasible": self.feasible,
            "reasons": list(self.reasons),
            "num_micro_batches": self.num_micro_batches,
            "bubble_fraction": self.bubble_fraction,
            "pacing_rank": self.pacing_rank,
            "memory_rank": self.memory_rank,
            "stage_layers": dict(self.stage_layers),
        }
        d.update(self.extra)
        d["runnable"] = self.runnable
        if not self.runnable:
            # A layout that cannot be formed (world size, divisibility, more chunks than layers) has no step time or
            # utilisation: null rather than figures computed from an impossible split (memory stays, as documented).
            for k in ("mfu", "hfu", "step_time_s", "tokens_per_s", "tflops_per_device", "bubble_fraction"):
                d[k] = None
            d["time_breakdown_s"] = {k: None for k in d["time_breakdown_s"]}
        return d


def job_of(sc: Scenario) -> Job:
    return Job(model=sc.model, hardware=sc.hardware, training=sc.training, num_devices=sc.num_devices)


def result_from_row(sc: Scenario, r: dict, engine: str = "analytic") -> StepEstimate:
    """Wrap row `r` (scalars from evaluate()) as a StepEstimate with reason sentences."""
    lay = sc.layout
    row = {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep, "cp": lay.cp, "vpp": lay.vpp,
           "micro_batch": lay.micro_batch}
    reasons = describe(int(r["reasons"]), sc.model, sc.training, sc.num_devices, row, r)
    breakdown = {k: float(r[f"time_{k}_s"]) for k in BREAKDOWN_KEYS}
    memory = {f"{k}_bytes": float(r[f"mem_{k}_bytes"]) for k in MEMORY_KEYS}
    memory["total_bytes"] = float(r["mem_total_bytes"])
    memory["capacity_bytes"] = float(r["mem_capacity_bytes"])
    return StepEstimate(
        scenario=sc, step_time_s=float(r["step_time_s"]), mfu=float(r["mfu"]), hfu=float(r["hfu"]),
        tokens_per_s=float(r["tokens_per_s"]), tflops_per_device=float(r["tflops_per_device"]),
        time_breakdown_s=breakdown, memory_bytes=memory, fits=bool(r["fits"]), reasons=reasons,
        num_micro_batches=int(r["num_micro_batches"]), bubble_fraction=float(r["bubble_fraction"]),
        pacing_rank=RANK_NAMES[int(r["pacing_rank"])], memory_rank=RANK_NAMES[int(r["memory_rank"])],
        stage_layers={"first": int(r["layers_first"]), "middle": int(r["layers_mid"]), "last": int(r["layers_last"])},
        engine=engine, runnable=not (int(r["reasons"]) & ~R_MEMORY),
    )


def estimate(scenario: Scenario) -> StepEstimate:
    """Estimate one scenario with the analytic engine. Infeasible layouts come back with `reasons` filled
    (and their memory still reported); they do not raise."""
    table = LayoutTable.from_layouts([scenario.layout], num_layers=scenario.model.num_layers)
    out = evaluate(job_of(scenario), table)
    row = {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in out.items()}
    return result_from_row(scenario, row)
