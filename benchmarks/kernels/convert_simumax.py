"""Regenerate the kernel-efficiency tables in simulator/presets/kernels/ from SimuMax's measured system files.

    python benchmarks/kernels/convert_simumax.py [--data-dir ../shared/data/kernels] [--out simulator/presets/kernels]

Input: `<data-dir>/simumax/{a100_pcie,b200_bf16_ceperm}.json`, copied unchanged from SimuMax (Moore Threads,
github.com/MooreThreads/SimuMax, commit 4dcaae51, v1.2, Apache-2.0; its LICENSE is copied next to the tables).
Each file gives efficiencies as a fraction of the `tflops` peak stated in the same file (A100: 312, B200: 2250
TFLOP/s bf16). The conversion keeps every measured row and changes only conventions:

- GEMM (`matmul`): keys `b, m, k, n, layout, accumulate, out_dtype` -> columns m, n, k (output m x n, reduction k;
  SimuMax's test times `general_gemm` on (m x k) @ (k x n) for every layout), layout, out_dtype, efficiency.
- Grouped GEMM (`group_matmul`): SimuMax keys (ng, M, N, K, stage) describe the forward GEMM of each expert
  (M tokens x K) @ (K x N); the backward stages are stored as the GEMM each one runs: `bwd_grad_act` is
  (M x N) @ (N x K), so m, n, k = M, K, N; `bwd_grad_w` is (N x M) @ (M x K), so m, n, k = N, K, M
  (reduction over the tokens). FLOPs 2 * ng * M * N * K in every stage (SimuMax's own count).
- Fused attention (`sdp_fwd` / `sdp_bwd`, causal kernels): SimuMax counts forward FLOPs as
  2 * b * s^2 * h * (d_qk + d_v) (the full s x s matrix) and backward as 2.5x that, although the kernel skips the
  masked half (simu_tools/efficency_test/test_fa_efficiency.py, lines 633-638). The tables here count executed
  FLOPs (half of the full count for causal; the convention of the FlashAttention-2 and -3 papers), so the
  efficiency is SimuMax's divided by 2.
- Memory-bound ops (`accelerator.bandwidth`): SimuMax's time is bytes / (gbps * 2**30 * efficiency) + latency;
  the tables store the efficiency relative to the datasheet HBM bandwidth of the device (B200 8.0 TB/s; A100 80GB
  PCIe 1.935 TB/s, NVIDIA A100 datasheet), i.e. gbps * 2**30 * efficiency / datasheet, and the latency.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMIT = "4dcaae51"

#: SimuMax file -> (table id, datasheet HBM bandwidth in bytes/s used to re-express memory efficiencies)
FILES = {
    "a100_pcie.json": ("simumax-a100-pcie", 1.935e12),
    "b200_bf16_ceperm.json": ("simumax-b200", 8.0e12),
}


def _keyvals(key: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in key.split(", "))


def _header(table_id: str, src: str, peak: float, what: str) -> list[str]:
    return [f"# {table_id} {what}: converted by benchmarks/kernels/convert_simumax.py from SimuMax {src}",
            f"# (github.com/MooreThreads/SimuMax commit {COMMIT}, Apache-2.0, see LICENSE-simumax); "
            f"efficiency = achieved / {peak:g} TFLOP/s (the peak that file used)"]


def _write(path: Path, header: list[str], columns: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        for line in header:
            fh.write(line + "\n")
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([f"{x:.6g}" if isinstance(x, float) else x for x in r])


def gemm_rows(op: dict) -> list[list]:
    rows = []
    for key, eff in op["accurate_efficient_factor"].items():
        kv = _keyvals(key)
        if int(kv["b"]) != 1:
            raise ValueError(f"batched GEMM key not handled: {key}")
        rows.append([int(kv["m"]), int(kv["n"]), int(kv["k"]), kv["layout"], kv["out_dtype"], float(eff)])
    return rows


def grouped_rows(op: dict) -> list[list]:
    rows = []
    for key, eff in op["accurate_efficient_factor"].items():
        kv = _keyvals(key)
        ng, M, N, K, stage = int(kv["ng"]), int(kv["M"]), int(kv["N"]), int(kv["K"]), kv["stage"]
        m, n, k = {"fwd": (M, N, K), "bwd_grad_act": (M, K, N), "bwd_grad_w": (N, K, M)}[stage]
        rows.append([ng, m, n, k, stage, kv["main_grad_dtype"], float(eff)])
    return rows


def attention_rows(fwd: dict, bwd: dict) -> list[list]:
    rows = []
    for pass_, op in (("fwd", fwd), ("bwd", bwd)):
        for key, eff in op["accurate_efficient_factor"].items():
            kv = _keyvals(key)
            rows.append([int(kv["batch"]), int(kv["seq_len"]), int(kv["head_num"]), int(kv["kv_head_num"]),
                         int(kv["qk_head_dim"]), int(kv["v_head_dim"]), "true", pass_,
                         kv["qkv_contiguous"].lower(), float(eff) / 2.0])
    return rows


def memory_rows(bandwidth: dict, datasheet_bytes_per_s: float) -> list[list]:
    names = {"default": "elementwise", "permute_fwd": "permute_fwd", "permute_bwd": "permute_bwd",
             "ce": "cross_entropy", "ce_fusion": "cross_entropy_fused"}
    rows = []
    for key, v in bandwidth.items():
        achieved = v["gbps"] * 2**30 * v["efficient_factor"]
        rows.append([names.get(key, key), achieved / datasheet_bytes_per_s, float(v["latency_us"])])
    return rows


def convert(data_dir: Path, out: Path) -> list[Path]:
    written = []
    for fname, (table_id, hbm) in FILES.items():
        acc = json.loads((data_dir / "simumax" / fname).read_text())["accelerator"]
        ops = acc["op"]
        peak = float(ops["matmul"]["tflops"])
        specs = [
            ("gemm", "bf16 GEMM", ["m", "n", "k", "layout", "out_dtype", "efficiency"], gemm_rows(ops["matmul"])),
            ("grouped_gemm", "bf16 grouped GEMM (per-group m, n, k)",
             ["groups", "m", "n", "k", "stage", "main_grad_dtype", "efficiency"], grouped_rows(ops["group_matmul"])),
            ("attention", "bf16 fused attention (executed-FLOP efficiency = SimuMax's / 2)",
             ["batch", "seq_len", "heads", "kv_heads", "head_dim_qk", "head_dim_v", "causal", "pass",
              "qkv_contiguous", "efficiency"], attention_rows(ops["sdp_fwd"], ops["sdp_bwd"])),
        ]
        for op, what, cols, rows in specs:
            path = out / f"{table_id}.{op}.csv"
            _write(path, _header(table_id, fname, peak, what), cols, rows)
            written.append(path)
        path = out / f"{table_id}.memory.csv"
        head = [f"# {table_id} memory-bound ops: converted by benchmarks/kernels/convert_simumax.py from SimuMax "
                f"{fname} (commit {COMMIT}, Apache-2.0);",
                f"# efficiency = achieved bytes/s / datasheet HBM {hbm / 1e12:g} TB/s; latency_us added per kernel "
                "by SimuMax"]
        _write(path, head, ["kind", "efficiency", "latency_us"], memory_rows(acc["bandwidth"], hbm))
        written.append(path)
    shutil.copyfile(data_dir / "simumax" / "LICENSE", out / "LICENSE-simumax")
    written.append(out / "LICENSE-simumax")
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "kernels")
    ap.add_argument("--out", type=Path, default=REPO / "simulator" / "presets" / "kernels")
    args = ap.parse_args()
    for p in convert(args.data_dir, args.out):
        print(p.relative_to(args.out.parent.parent.parent) if p.is_relative_to(REPO) else p)


if __name__ == "__main__":
    main()
