"""The discrete-event engine: replays one training step with SimPy. Never imports simulator.analytic.

spec.py        the plan format and the replay's outputs (pure data)
plan.py        costs (simulator.costs) -> per-stage op lists, segments, buckets, tier shares
engine.py      SimPy processes (one compute stream per representative rank, communication streams) and shared
               link resources (processor sharing) on the ports of the topology (topology.graph)
accounting.py  named per-category accounts per rank and the critical-path attribution of the step
stragglers.py  straggler draws -> replica groups to replay
simulate.py    `simulate(scenario, ...)`: plan -> replay(s) -> SimulationResult
trace.py       Chrome-trace JSON from a timeline (build, never write)
api.py         the entry points at their historical path
Pipeline schedules (pure op lists) live in simulator.pipeline.schedules, shared with the analytic engine.
"""
