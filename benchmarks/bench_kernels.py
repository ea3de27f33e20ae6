"""Speed of the kernel compute model (simulator/costs/kernels.py): lookups per second on one core.

Draws N random shapes (log-uniform m, n, k in [64, 65536]; attention sequences in [512, 131072], batch x heads in
[1, 512]), evaluates each op's vectorised efficiency on them several times, and prints the median rate per op and
the one-off model build time. Last line: `gemm_lookups_per_s: <number>`.

    python benchmarks/bench_kernels.py [--n 1000000] [--repeats 5] [--hardware b200]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from simulator.costs.kernels import kernel_model_for, measured_surfaces  # noqa: E402


def _rate(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hardware", default="b200")
    args = ap.parse_args()
    t0 = time.perf_counter()
    measured_surfaces()
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    km = kernel_model_for(args.hardware)
    t_model = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    m, n, k = (np.round(2.0 ** rng.uniform(6, 16, args.n)) for _ in range(3))
    g = np.round(2.0 ** rng.uniform(0, 8, args.n))
    s, bh = np.round(2.0 ** rng.uniform(9, 17, args.n)), np.round(2.0 ** rng.uniform(0, 9, args.n))
    nbytes = 2.0 ** rng.uniform(10, 32, args.n)
    rates = {
        "gemm": _rate(lambda: km.gemm_efficiency(m, n, k), args.n, args.repeats),
        "grouped_gemm": _rate(lambda: km.grouped_gemm_efficiency(g, m, n, k), args.n, args.repeats),
        "attention_fwd": _rate(lambda: km.attention_efficiency(s, 128.0, bh, True, "fwd"), args.n, args.repeats),
        "memory_bound": _rate(lambda: km.memory_bound_time_s(nbytes), args.n, args.repeats),
    }
    print(f"kernel model of {args.hardware}: fit all tables {t_fit:.2f} s (once per process), "
          f"derive the device {t_model:.2f} s; basis: {km.basis}")
    for op, r in rates.items():
        print(f"{op:14s} {r / 1e6:6.2f} M lookups/s  ({args.n:,} shapes, median of {args.repeats})")
    print(f"gemm_lookups_per_s: {rates['gemm']:.0f}")


if __name__ == "__main__":
    main()
