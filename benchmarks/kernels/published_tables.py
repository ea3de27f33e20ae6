"""Write the kernel tables transcribed from published figures into simulator/presets/kernels/.

    python benchmarks/kernels/published_tables.py [--out simulator/presets/kernels]

Each row below is a figure printed in its source (TFLOP/s), divided by the dense peak of the dtype:
- fa3-h100.attention.csv: FlashAttention-3 forward on H100, head dim 128, B*S = 16k tokens, H*D = 2048, the test
  plan of pytorch/benchmark commit ff65cb675209d2308f7d27c6920af8a32de9aa90 (PR #2391), non-causal (the
  operator's default), bf16 peak 989 TFLOP/s. FLOPs: 4 * b * h * s^2 * d (executed, non-causal).
- deepgemm-h800.gemm.csv / .grouped_gemm.csv: DeepGEMM README tables (github.com/deepseek-ai/DeepGEMM at commit
  55ab91f72f76, MIT licence), FP8 GEMMs with fine-grained scaling on H800 SXM5, fp8 peak 1979 TFLOP/s. The
  grouped rows are the "contiguous" (training forward / prefill) and "masked" (decode) layouts, equal tokens per
  group; FLOPs 2 * groups * m * n * k.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FA3_H100 = [  # batch, heads, seq_len, head_dim, TFLOP/s
    (32, 16, 512, 128, 430.32), (16, 16, 1024, 128, 517.099), (8, 16, 2048, 128, 565.544),
    (4, 16, 4096, 128, 590.233), (2, 16, 8192, 128, 614.234), (1, 16, 16384, 128, 620.73)]

DEEPGEMM_DENSE = [  # m, n, k, TFLOP/s
    (64, 2112, 7168, 206), (64, 24576, 1536, 289), (64, 32768, 512, 219), (64, 7168, 16384, 336),
    (64, 4096, 7168, 287), (64, 7168, 2048, 295), (128, 2112, 7168, 352), (128, 24576, 1536, 535),
    (128, 32768, 512, 358), (128, 7168, 16384, 645), (128, 4096, 7168, 533), (128, 7168, 2048, 510),
    (4096, 2112, 7168, 1009), (4096, 24576, 1536, 1125), (4096, 32768, 512, 751), (4096, 7168, 16384, 1426),
    (4096, 4096, 7168, 1265), (4096, 7168, 2048, 1168)]

DEEPGEMM_GROUPED = [  # groups, m per group, n, k, layout, TFLOP/s
    (4, 8192, 4096, 7168, "contiguous", 1346), (4, 8192, 7168, 2048, "contiguous", 1214),
    (8, 4096, 4096, 7168, "contiguous", 1346), (8, 4096, 7168, 2048, "contiguous", 1214),
    (1, 1024, 4096, 7168, "masked", 1233), (1, 1024, 7168, 2048, "masked", 925),
    (2, 512, 4096, 7168, "masked", 1040), (2, 512, 7168, 2048, "masked", 916),
    (4, 256, 4096, 7168, "masked", 932), (4, 256, 7168, 2048, "masked", 815)]


def _write(path: Path, header: str, columns: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write(header)
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([f"{x:.6g}" if isinstance(x, float) else x for x in r])


def write_all(out: Path) -> list[Path]:
    p1 = out / "fa3-h100.attention.csv"
    _write(p1, "# fa3-h100: FlashAttention-3 forward, H100 SXM5, pytorch/benchmark commit ff65cb67 (PR #2391);\n"
               "# efficiency = TFLOP/s / 989 (bf16 dense), executed FLOPs 4*b*h*s^2*d (non-causal)\n",
           ["batch", "seq_len", "heads", "kv_heads", "head_dim_qk", "head_dim_v", "causal", "pass",
            "qkv_contiguous", "efficiency"],
           [[b, s, h, h, d, d, "false", "fwd", "true", tf / 989.0] for b, h, s, d, tf in FA3_H100])
    p2 = out / "deepgemm-h800.gemm.csv"
    _write(p2, "# deepgemm-h800: DeepGEMM FP8 GEMMs on H800 SXM5 (README at commit 55ab91f72f76, MIT);\n"
               "# efficiency = TFLOP/s / 1979 (fp8 dense)\n",
           ["m", "n", "k", "layout", "out_dtype", "efficiency"],
           [[m, n, k, "TN", "bf16", tf / 1979.0] for m, n, k, tf in DEEPGEMM_DENSE])
    p3 = out / "deepgemm-h800.grouped_gemm.csv"
    _write(p3, "# deepgemm-h800: DeepGEMM FP8 grouped GEMMs on H800 SXM5 (README at commit 55ab91f72f76, MIT);\n"
               "# efficiency = TFLOP/s / 1979 (fp8 dense); stage = the README's layout\n",
           ["groups", "m", "n", "k", "stage", "main_grad_dtype", "efficiency"],
           [[g, m, n, k, lay, "none", tf / 1979.0] for g, m, n, k, lay, tf in DEEPGEMM_GROUPED])
    return [p1, p2, p3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "simulator" / "presets" / "kernels")
    for p in write_all(ap.parse_args().out):
        print(p)


if __name__ == "__main__":
    main()
