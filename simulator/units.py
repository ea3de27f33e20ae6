"""Units and dtype sizes: SI inside the simulator, human units only at the edges (YAML, CLI, tables).

Decimal prefixes throughout (1 TFLOP/s = 1e12 FLOP/s, 1 GB = 1e9 bytes), as accelerator datasheets use them;
GiB (2**30) only where a source states memory in GiB.
"""
from __future__ import annotations

KILO = 1e3
MEGA = 1e6
GIGA = 1e9
TERA = 1e12
PETA = 1e15
GIB = 2**30
MIB = 2**20

US = 1e-6  # one microsecond in seconds
MS = 1e-3

#: Bytes per element of each training dtype. fp8 runs keep bf16 activations/weights outside the GEMMs
#: (Transformer Engine), so memory uses `storage_bytes(dtype)`; only GEMM speed uses the fp8 peak.
BYTES_PER_ELEMENT = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}


def storage_bytes(dtype: str) -> int:
    """Bytes per weight/activation element as stored in memory for a training dtype.

    fp8 and int8 training (Transformer Engine, AQT) keep bf16 master activations and weights; the
    low-precision copy lives only inside the GEMM, so they store 2 bytes per element.
    """
    return 2 if dtype in ("fp8", "int8") else BYTES_PER_ELEMENT[dtype]


def gbps_to_bytes_per_s(gbit_per_s: float) -> float:
    """Gigabits per second -> bytes per second."""
    return gbit_per_s * GIGA / 8.0


def format_bytes(n: float) -> str:
    """Human string in GB (decimal), e.g. '71.3 GB'."""
    return f"{n / GIGA:,.1f} GB"


def format_seconds(t: float) -> str:
    if t >= 86400 * 2:
        return f"{t / 86400:,.1f} d"
    if t >= 3600:
        return f"{t / 3600:,.2f} h"
    if t >= 1:
        return f"{t:,.3f} s"
    return f"{t * 1e3:,.2f} ms"
