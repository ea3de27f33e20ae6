"""The discrete-event engine: replays one training step with SimPy.

schedules.py  pipeline schedules as pure data (per-stage op lists), no SimPy
engine.py     SimPy processes (one compute stream per representative rank, communication streams) and shared
              link resources (processor sharing) built from the topology graph
trace.py      Chrome-trace JSON and a matplotlib Gantt figure from a timeline (build, never write)
api.py        `simulate(scenario, ...)`: costs -> engine plan -> StepEstimate-compatible result
"""
