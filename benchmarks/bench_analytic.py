"""Speed of the vectorized analytic engine: layouts evaluated per CPU second on one core, the first call of a fresh
process against the warm ones, and the memory an evaluation adds.

Two tables of GPT-3 175B on 1,024 A100-80GB (global batch 1536, sequence 2048):

- `distinct`: 1,000,000 distinct layouts (tp, pp, dp, vpp, micro-batch, ZeRO, recompute, SP, schedule; dp steps
  through many values). Against 1,024 devices almost every row breaks the world size: this measures mostly the
  integer pruning and the memory composition of unformable rows (simulator.analytic.compose.evaluate).
- `search`: the formable rows of the layout search of the same job (planning.enumerate: 62,520 of its 101,592
  candidates), repeated to about 1,000,000 rows: every row runs the full time model.

Each table is evaluated in `--procs` fresh processes (`OMP_NUM_THREADS=1`): one first call, then `--repeats` warm
calls, each timed in CPU seconds of the process (`time.process_time`: the machine may be shared); the peak RSS
the first call adds (`resource.getrusage` maxrss after it, minus before it). Printed: medians (min - max) over all
warm calls, the first call / median warm ratio of each process (what the first call pays beyond the kernel
model's ~0.05 s start is the operating system mapping and zeroing fresh pages for the result columns: tens of
thousands of minor page faults; later calls reuse the memory freed by the previous result). Last line: `layouts_per_s: <number>` (the
`distinct` table's warm median, per CPU second).

    python benchmarks/bench_analytic.py [--n 1000000] [--repeats 3] [--procs 3] [--table distinct,search]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def distinct_layouts(n: int, seed: int = 0):
    """n distinct layouts: the full grid of layout axes, with dp stepping through many values."""
    from simulator.specs.layout_table import LayoutTable
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


def gpt3_job():
    from simulator.specs.job import Job
    from simulator.specs.loading import load_hardware, load_model
    from simulator.specs.training import TrainingSpec
    return Job(model=load_model("gpt3-175b"), hardware=load_hardware("a100-sxm4-80gb"),
               training=TrainingSpec(seq_len=2048, global_batch=1536), num_devices=1024)


def search_layouts(n: int):
    """The formable candidates of the GPT-3 175B search on 1,024 A100, repeated to about n rows."""
    from simulator.analytic.compose import _rows, structural_mask
    from simulator.planning.enumerate import SearchSpace, enumerate_layouts, resolve_space
    from simulator.specs.stack import as_framework
    job = gpt3_job()
    space = resolve_space(SearchSpace(), as_framework(None), job.hardware.family)
    table = enumerate_layouts(job.model, job.training, job.num_devices, space)
    ok = np.flatnonzero(structural_mask(job, table) == 0)
    return _rows(table, np.tile(ok, max(1, round(n / len(ok))))), len(ok)


def child(kind: str, n: int, repeats: int) -> dict:
    import resource
    import time
    from simulator.analytic.compose import evaluate
    job = gpt3_job()
    table = distinct_layouts(n)[0] if kind == "distinct" else search_layouts(n)[0]
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731 (MB, Linux: KB)

    def timed():
        c0 = time.process_time()
        out = evaluate(job, table)
        return time.process_time() - c0, out
    base = rss()
    first, out = timed()
    peak = rss()
    warm = [timed()[0] for _ in range(repeats)]
    return {"n": len(table), "first": first, "warm": warm, "added_mb": peak - base, "base_mb": base,
            "formable": int(((out["reasons"] & ~1024) == 0).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--procs", type=int, default=3)
    ap.add_argument("--table", default="distinct,search")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.repeats)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p)
    kinds = args.table.split(",")
    runs = {k: [] for k in kinds}
    for _ in range(args.procs):
        for k in kinds:                          # alternate the tables: the same load for both
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", k, "--n", str(args.n),
                                  "--repeats", str(args.repeats)], env=env, capture_output=True, text=True,
                                 check=True).stdout
            runs[k].append(json.loads(out.strip().splitlines()[-1]))
    rate = None
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; CPU seconds (time.process_time)")
    for k, rs in runs.items():
        n = rs[0]["n"]
        rates = [n / w for r in rs for w in r["warm"]]
        ratios = [r["first"] / statistics.median(r["warm"]) for r in rs]
        added = [r["added_mb"] for r in rs]
        print(f"[{k}] {n:,} rows ({rs[0]['formable']:,} formable): warm {statistics.median(rates) / 1e6:.2f}M "
              f"layouts/CPU-s ({min(rates) / 1e6:.2f} - {max(rates) / 1e6:.2f}, {len(rates)} calls); first call / "
              f"warm {statistics.median(ratios):.2f}x ({min(ratios):.2f} - {max(ratios):.2f}); peak RSS added by "
              f"the first call {statistics.median(added):.0f} MB (process {statistics.median(r['base_mb'] for r in rs) + statistics.median(added):.0f} MB)")
        if k == "distinct":
            rate = statistics.median(rates)
    if rate is not None:
        print(f"layouts_per_s: {rate:,.0f}")


if __name__ == "__main__":
    main()
