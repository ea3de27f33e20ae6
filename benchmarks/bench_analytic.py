"""Speed of the vectorized analytic engine: layouts evaluated per second on one core.

Builds 1,000,000 distinct layouts of GPT-3 175B on an A100-80GB cluster (tp, pp, dp, vpp, micro-batch, ZeRO,
recompute, SP, schedule; device counts vary so that every row is a distinct, mostly valid layout), evaluates
them with `simulator.analytic.compose.evaluate` several times, and prints the median. Last line:
`layouts_per_s: <number>`.

    python benchmarks/bench_analytic.py [--n 1000000] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from simulator.analytic.compose import evaluate  # noqa: E402
from simulator.specs.job import Job  # noqa: E402
from simulator.specs.layout_table import LayoutTable  # noqa: E402
from simulator.specs.loading import load_hardware, load_model  # noqa: E402
from simulator.specs.training import TrainingSpec  # noqa: E402


def distinct_layouts(n: int, seed: int = 0) -> tuple[LayoutTable, int]:
    """n distinct layouts: the full grid of layout axes, with dp stepping through many values."""
    tps = np.array([1, 2, 4, 8])
    pps = np.array([1, 2, 4, 8, 16])
    vpps = np.array([1, 2, 3])
    mbs = np.array([1, 2, 4])
    zeros = np.array([0, 1, 2, 3])
    rcs = np.array([0, 1, 2])
    sps = np.array([False, True])
    grid = np.stack(np.meshgrid(tps, pps, vpps, mbs, zeros, rcs, sps, indexing="ij"), -1).reshape(-1, 7)
    reps = -(-n // len(grid))
    dps = np.repeat(np.arange(1, reps + 1), len(grid))[:n]
    g = np.tile(grid, (reps, 1))[:n]
    table = LayoutTable.from_columns(
        tp=g[:, 0], pp=g[:, 1], vpp=g[:, 2], micro_batch=g[:, 3], zero=g[:, 4], recompute=g[:, 5],
        sequence_parallel=g[:, 6].astype(bool), dp=dps,
        schedule=np.where(g[:, 2] > 1, 2, 1))
    return table, len(grid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model = load_model("gpt3-175b")
    hw = load_hardware("a100-sxm4-80gb")
    job = Job(model=model, hardware=hw, training=TrainingSpec(seq_len=2048, global_batch=1536), num_devices=1024)
    table, grid = distinct_layouts(args.n)
    keys = np.stack([table.tp, table.pp, table.vpp, table.micro_batch, table.zero, table.recompute,
                     table.sequence_parallel, table.dp], 1)
    distinct = len(np.unique(keys, axis=0))
    evaluate(job, LayoutTable.from_columns(tp=[8], pp=[8], dp=[16]))  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = evaluate(job, table)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    feasible = int((out["reasons"] == 0).sum())
    print(f"layouts: {args.n:,} ({distinct:,} distinct), feasible for 1,024 devices: {feasible:,}")
    print(f"evaluate() wall times (s): {', '.join(f'{t:.3f}' for t in times)}")
    print(f"median: {med:.3f} s; threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} (numpy elementwise ops are single-threaded)")
    print(f"layouts_per_s: {args.n / med:,.0f}")


if __name__ == "__main__":
    main()
