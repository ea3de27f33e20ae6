"""Speed of the discrete-event engine: wall time of one simulated step of GPT-3 175B, and events per second.

Cases (A100 80GB profile, tp 8, micro-batch 1, sequence 2048):
- 1,024 devices, pp 8, dp 16, global batch 1536 (the README case; 96 micro-batches)
- 12,288 devices, pp 8, dp 192, global batch 6144 (MegaScale's scale and batch, Jiang et al. 2024, Table 2;
  32 micro-batches)
- 12,288 devices, pp 16, dp 96, global batch 6144 (64 micro-batches)

Each is timed as a whole `simulate()` call (cost evaluation, plan, topology subgraph, SimPy replay, result) with
overlap and contention on, once with ops coalesced where nothing can happen inside them (the default) and once
with every layer pass replayed as its own events (`per_layer=True`, same step time). Median of --repeats runs.
Last line: `events_per_s: <number>` (per-layer replay of the largest case).

    python benchmarks/bench_des.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

from simulator.des.api import simulate
from simulator.specs.scenario import Scenario

CASES = [
    ("1,024 devices, pp 8, dp 16, gb 1536", dict(devices=1024, global_batch=1536, pp=8)),
    ("12,288 devices, pp 8, dp 192, gb 6144", dict(devices=12288, global_batch=6144, pp=8)),
    ("12,288 devices, pp 16, dp 96, gb 6144", dict(devices=12288, global_batch=6144, pp=16)),
]


def time_case(sc: Scenario, repeats: int, per_layer: bool) -> tuple[float, int, float]:
    """(median wall seconds, events, step time) of simulate(sc)."""
    simulate(sc, per_layer=per_layer)                      # warm-up (imports, caches)
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = simulate(sc, per_layer=per_layer)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), int(r.extra["num_events"]), r.step_time_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    last_rate = 0.0
    print(f"{'case':40s} {'mode':10s} {'wall (s)':>9s} {'events':>8s} {'events/s':>10s} {'step (s)':>9s}")
    for label, kw in CASES:
        sc = Scenario.build("gpt3-175b", "a100-sxm4-80gb", seq_len=2048, tp=8, micro_batch=1, **kw)
        for per_layer in (False, True):
            wall, events, step = time_case(sc, args.repeats, per_layer)
            last_rate = events / wall
            print(f"{label:40s} {'per layer' if per_layer else 'per op':10s} {wall:9.3f} {events:8,d} "
                  f"{last_rate:10,.0f} {step:9.3f}")
    print(f"events_per_s: {last_rate:,.0f}")


if __name__ == "__main__":
    main()
