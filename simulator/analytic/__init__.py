"""Closed-form (analytic) engine, vectorized over layouts. Never imports simulator.des.

compose.py    evaluate(job, table): composition only, every duration from simulator.costs
estimate.py   estimate(scenario) -> StepEstimate (the one-row case)
step.py, layouts.py, pipeline.py, reasons.py: re-exports at their historical paths
"""
