"""The two engines side by side: `simulate()` replays a step with the discrete-event engine (simulator.des) and
reports where and why it differs from the analytic estimate (simulator.analytic) of the same layout.

This module sits above both engines (they never import each other): it is what `simulator.simulate` and
`trainsim simulate` run. Its result is the discrete-event SimulationResult with three more keys in `extra`:
`analytic` (the estimate's step time and breakdown), `delta_vs_analytic_s` (replay minus estimate, by kind) and
`explanations` (sentences).
"""
from __future__ import annotations

from dataclasses import replace

from .analytic.estimate import estimate
from .des.simulate import simulate as replay
from .results import TIME_CATEGORIES, SimulationResult

#: Relative difference below which the replay and the estimate are said to agree.
AGREEMENT_REL = 1e-6


def simulate(scenario, **kw) -> SimulationResult:
    """des.simulate(scenario, **kw) with the comparison to the analytic estimate in `extra`."""
    r = replay(scenario, **kw)
    a = estimate(r.scenario)
    bd, a_bd = r.time_breakdown_s, a.time_breakdown_s
    extra = dict(r.extra)
    contention_delay = extra.pop("contention_delay_s")
    extra["analytic"] = {"step_time_s": a.step_time_s, "time_breakdown_s": dict(a_bd)}
    extra["delta_vs_analytic_s"] = {"step_time": r.step_time_s - a.step_time_s,
                                    **{k: bd[k] - a_bd[k] for k in TIME_CATEGORIES}}
    extra["contention_delay_s"] = contention_delay
    extra["explanations"] = explain(r, a)
    return replace(r, extra=extra)


def explain(r: SimulationResult, a) -> list[str]:
    """Sentences saying where and why the replay `r` differs from the analytic estimate `a`."""
    out = _differences(r, a)
    jitter, strag = r.extra["jitter"], r.extra["stragglers"]
    slow = strag is not None and strag["fraction"] > 0
    if jitter > 0 or slow:
        draws = ([f"jitter (sigma {jitter:g}) on every pass"] if jitter > 0 else []) \
            + ([f"{strag['fraction']:g} of devices {strag['slowdown']:g}x slower"] if slow else [])
        out.insert(1 if len(out) > 1 else 0,
                   "random draws the estimate does not have: " + ", ".join(draws) + " (median replay shown)")
    return out


def _differences(r: SimulationResult, a) -> list[str]:
    plan, res = r.replay.plan, r.replay.engine
    overlap = r.extra["overlap"]
    bd, a_bd, step, a_step = r.time_breakdown_s, a.time_breakdown_s, r.step_time_s, a.step_time_s
    tol = AGREEMENT_REL * max(step, a_step)
    d = step - a_step
    if abs(d) <= tol:
        return ["replay and analytic estimate agree"]
    out = [f"step time {'+' if d > 0 else ''}{d * 1e3:,.2f} ms vs the analytic estimate ({a_step:,.4f} s)"]
    db = bd["bubble"] - a_bd["bubble"]
    if abs(db) > tol:
        why = ("the replayed schedule with these per-stage times differs from the closed form "
               "(m-1)*tau_max + sum tau_i (pipeline.closed_form.pipeline_time_s)")
        if overlap:
            why += "; asynchronous sends and waits at the step's barriers also move idle time"
        out.append(f"pipeline bubble {db * 1e3:+,.2f} ms: {why}")
    dpp = bd["pp_comm"] - a_bd["pp_comm"]
    if abs(dpp) > tol:
        out.append(f"pipeline sends {dpp * 1e3:+,.2f} ms: " + (
            "sends run asynchronously on the pp stream, only the part a stage waits for is exposed (the analytic "
            "engine charges two blocking sends per micro-batch and chunk)" if overlap else
            "sends are charged per pass as in the analytic engine"))
    ddp = bd["dp_comm"] - a_bd["dp_comm"]
    if abs(ddp) > tol:
        out.append(_dp_sentence(r, plan, res, ddp))
    doff = bd["offload"] - a_bd["offload"]
    if abs(doff) > tol:
        out.append(f"offload {doff * 1e3:+,.2f} ms: " + (
            "host-link copies run per layer on their own streams (prefetched one segment ahead, queued after it) "
            "and share each node's link; the analytic engine hides each phase's copies under that phase's compute"
            if overlap else "host-link copies block every pass (the analytic engine adds them after the pipeline)"))
    for kind, v in sorted(res.contention_delay_s.items()):
        if v > tol:
            out.append(f"contention: {kind} transfers took {v * 1e3:,.2f} ms longer in total on shared ports")
        elif v < -tol:
            out.append(f"contention: {kind} transfers took {-v * 1e3:,.2f} ms less in total than at their nominal "
                       "share (a node's host link while its other stages were not copying)")
    dopt = bd["optimizer"] - a_bd["optimizer"]
    if abs(dopt) > tol:
        out.append(f"optimizer {dopt * 1e3:+,.2f} ms: the replay reports the pacing stage's own optimizer step")
    return out


def _dp_sentence(r: SimulationResult, plan, res, ddp: float) -> str:
    if r.extra["overlap"] and plan.spec.stages[res.pacing[1]].buckets:
        nb = len(plan.spec.stages[res.pacing[1]].buckets)
        return (f"DP/ZeRO exposed {ddp * 1e3:+,.2f} ms: gradients reduced in {nb} buckets as the last "
                "micro-batch's backward produces them (the analytic engine hides the whole reduction "
                "under one backward of the pacing rank); the stage that finishes last decides")
    if r.scenario.layout.zero >= 3:
        how = ("prefetched one layer ahead, sharing the port with the reduce-scatters (the analytic engine's "
               "closed form charges each layer's excess on the (m + p - 1) passes of the critical path)"
               if r.scenario.layout.overlap_grad_reduce else
               "blocking (the analytic engine charges them on the (m + p - 1) passes of the critical path)")
        return f"ZeRO-3 exposed {ddp * 1e3:+,.2f} ms: per-layer gathers and reduce-scatters inside every pass, {how}"
    return (f"DP/ZeRO exposed {ddp * 1e3:+,.2f} ms: each stage reduces its own gradients; the step "
            "waits for the slowest stage's reduction (the analytic engine uses the pacing rank's)")
