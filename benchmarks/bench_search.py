"""Speed of `trainsim search` on the acceptance case, and its answer next to Megatron's published layout.

GPT-3 175B on 1,024 A100-80GB, global batch 1536, sequence 2048 (Narayanan et al. 2021, arXiv 2104.04473,
Table 1: TP 8, PP 8). Measures the wall time of the `search()` function (median of --repeats, after one warm-up)
and of the whole CLI in a fresh process (Python start-up and imports included), prints the candidate count, the
top 5 and how the best compares with TP 8 / PP 8 by trainsim's own estimate. Last line: `cli_wall_s: <number>`.

    python benchmarks/bench_search.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASE = dict(model="gpt3-175b", hardware="a100-sxm4-80gb", devices=1024, global_batch=1536, seq_len=2048)
CLI = ["-m", "simulator", "search", "--model", CASE["model"], "--hardware", CASE["hardware"], "--devices",
       str(CASE["devices"]), "--global-batch", str(CASE["global_batch"]), "--seq-len", str(CASE["seq_len"]),
       "--top", "5"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import simulator as ts
    from simulator.planning.search import search
    from simulator.reports.labels import layout_label

    search(**CASE)  # warm-up (imports, first-call costs)
    times, res = [], None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = search(**CASE)
        times.append(time.perf_counter() - t0)
    cli = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *CLI], check=True, capture_output=True)
        cli.append(time.perf_counter() - t0)

    meg = ts.estimate(ts.Scenario.build(CASE["model"], CASE["hardware"], devices=CASE["devices"],
                                        global_batch=CASE["global_batch"], seq_len=CASE["seq_len"], tp=8, pp=8,
                                        micro_batch=1))
    f = res.frame
    best_88 = f[(f["tp"] == 8) & (f["pp"] == 8) & f["feasible"]].iloc[0]
    print(f"candidates: {res.num_candidates:,} ({res.num_feasible:,} feasible)")
    print(f"search() wall times (s): {', '.join(f'{t:.3f}' for t in times)}; median {statistics.median(times):.3f}")
    print("  last run: " + ", ".join(f"{k} {v:.3f}" for k, v in res.timings_s.items()))
    print(f"CLI wall times incl. start-up (s): {', '.join(f'{t:.2f}' for t in cli)}")
    print("top 5:")
    for _, r in res.top(5).iterrows():
        print(f"  #{r['rank']}: {layout_label(r):55s} MFU {r['mfu'] * 100:5.1f}%  step {r['step_time_s']:7.3f} s  "
              f"{r['tokens_per_s']:>10,.0f} tokens/s  {r['mem_total_bytes'] / 1e9:5.1f} GB")
    best = res.best
    print(f"Megatron TP 8 / PP 8 (mb 1, defaults): MFU {meg.mfu * 100:.1f}%  {meg.tokens_per_s:,.0f} tokens/s")
    print(f"best TP 8 / PP 8 in the space (rank {best_88['rank']}): {layout_label(best_88)}  "
          f"{best_88['tokens_per_s']:,.0f} tokens/s")
    print(f"search best / Megatron TP8-PP8: {best['tokens_per_s'] / meg.tokens_per_s:.3f}x")
    print(f"cli_wall_s: {statistics.median(cli):.2f}")


if __name__ == "__main__":
    main()
