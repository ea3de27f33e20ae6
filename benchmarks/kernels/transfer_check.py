"""Check the kernel transfer rule on held-out devices (simulator/costs/kernels.py, module docstring).

    python benchmarks/kernels/transfer_check.py

B200: SimuMax's B200 tables are left out and B200's rows are predicted from the remaining tables (A100-PCIe
SimuMax, FlashAttention-3 on H100, DeepGEMM on H800) with B200's own SM count, tile, bandwidth and MAMF; then the
reverse check, A100-SXM4-80GB from everything but the A100 tables. Prints per op the median |pred/meas - 1|, the
median ratio (level) and the error left once the level is divided out (shape), then the YAML block recorded as
`transfer_validation` in simulator/presets/kernels/catalog.yaml (the B200 figures: the rule's validated error).
"""
from __future__ import annotations

from simulator.costs.kernels import held_out_errors

CHECKS = (("b200", "simumax-b200"), ("a100-sxm4-80gb", "simumax-a100-pcie"))


def main() -> None:
    results = {}
    for profile, table in CHECKS:
        res = held_out_errors(profile, table)
        results[profile] = res
        print(f"{profile} predicted without {table}:")
        for op, r in res.items():
            print(f"  {op:15s} rows {r['rows']:4d}  median error {r['median_error_pct']:5.1f}%  "
                  f"median pred/meas {r['median_ratio']:.3f}  shape-only error {r['shape_error_pct']:5.1f}%")
    print("\ntransfer_validation:   # python benchmarks/kernels/transfer_check.py (B200 held out)")
    for op, r in results["b200"].items():
        print(f"  {op}: {{median_error_pct: {r['median_error_pct']:.1f}, median_ratio: {r['median_ratio']:.3f}, "
              f"shape_error_pct: {r['shape_error_pct']:.1f}, rows: {r['rows']}}}")


if __name__ == "__main__":
    main()
