"""The figures of merit of a training step, one definition each: FLOPs per step, MFU, HFU, TFLOP/s per device,
tokens/s, cost and energy. Pure functions over scalars or numpy arrays; both engines and every report use them.

Conventions: model FLOPs exclude recomputation, hardware FLOPs include it (Chowdhery et al. 2022, PaLM, arXiv
2204.02311, App. B); attention is counted over the full s x s matrix (costs.flops); the peak is the profile's
`mfu_peak_flops_per_s` (bf16 for fp8 runs). Decimal prefixes: 1 TFLOP/s = 1e12 FLOP/s (units.TERA).
"""
from __future__ import annotations

import numpy as np

from .units import TERA

#: Recompute codes of a LayoutTable (specs.layout.RECOMPUTE_CODES) -> ModelCosts.recompute_flops_per_token names.
_RECOMPUTE_NAMES = ((2, "full"), (1, "selective"))


def model_flops_per_step(costs, tokens_per_step: float) -> float:
    """Training FLOPs of one step without recomputation: tokens x 3 x forward FLOPs per token.

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 5.1 (backward = 2 x forward); PaLM (arXiv 2204.02311)
    App. B (model FLOPs exclude rematerialisation)."""
    return tokens_per_step * costs.model_flops_per_token()


def recompute_flops_per_step(costs, tokens_per_step: float, recompute_code):
    """FLOPs spent recomputing activations in one step (0 without recompute), per recompute code (array).

    Source: Korthikanti et al. 2022 (arXiv 2205.05198) sec. 5: full recompute replays every layer's forward,
    selective only the attention core."""
    rc = np.asarray(recompute_code)
    per_token = np.select([rc == code for code, _ in _RECOMPUTE_NAMES],
                          [costs.recompute_flops_per_token(name) for _, name in _RECOMPUTE_NAMES], 0.0)
    return per_token * tokens_per_step


def hardware_flops_per_step(model_flops, recompute_flops):
    """FLOPs the hardware executes in one step: model FLOPs plus recomputation.

    Source: PaLM (arXiv 2204.02311) App. B (hardware FLOPs utilisation)."""
    return model_flops + recompute_flops


def flops_utilization(flops_per_step, step_time_s, num_devices, peak_flops_per_s):
    """Fraction of the devices' peak spent on `flops_per_step`: flops / (step x devices x peak).

    Source: PaLM (arXiv 2204.02311) App. B."""
    return flops_per_step / (step_time_s * num_devices * peak_flops_per_s)


def mfu(model_flops_per_step, step_time_s, num_devices, peak_flops_per_s):
    """Model FLOPs utilisation: model FLOPs (no recomputation) per second over the peak of all devices.

    Source: PaLM (arXiv 2204.02311) App. B."""
    return flops_utilization(model_flops_per_step, step_time_s, num_devices, peak_flops_per_s)


def hfu(hardware_flops_per_step, step_time_s, num_devices, peak_flops_per_s):
    """Hardware FLOPs utilisation: executed FLOPs (recomputation included) per second over the peak.

    Source: PaLM (arXiv 2204.02311) App. B; Korthikanti et al. 2022 (arXiv 2205.05198) sec. 6."""
    return flops_utilization(hardware_flops_per_step, step_time_s, num_devices, peak_flops_per_s)


def tflops_per_device(model_flops_per_step, step_time_s, num_devices):
    """Achieved model TFLOP/s per device (decimal tera: 1e12).

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 5.1 (teraFLOP/s per GPU, model FLOPs)."""
    return model_flops_per_step / step_time_s / num_devices / TERA


def tokens_per_s(tokens_per_step, step_time_s):
    """Training throughput: tokens of one step over its time.

    Source: definition (tokens per step = global batch x sequence length)."""
    return tokens_per_step / step_time_s


def usd_per_million_tokens(num_devices, price_per_hour_usd, tokens_per_second):
    """Rental cost of one million training tokens: devices x price per device-hour / tokens per hour x 1e6.

    Source: definition (the profile's device.price_per_hour_usd)."""
    return num_devices * price_per_hour_usd / 3600.0 / tokens_per_second * 1e6


def cost_usd(num_devices, price_per_hour_usd, seconds):
    """Rental cost of `seconds` on `num_devices` devices at a price per device-hour.

    Source: definition."""
    return num_devices * price_per_hour_usd * seconds / 3600.0


def energy_kwh(num_devices, power_w, seconds):
    """Accelerator energy of `seconds` on `num_devices` devices at `power_w` each (board power only: host, network
    and cooling are not included).

    Source: definition (the profile's device.power_w: TDP or measured board power)."""
    return num_devices * power_w * seconds / 3600.0 / 1000.0
