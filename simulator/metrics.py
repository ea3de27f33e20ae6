"""The figures of merit of a training step, one definition each: FLOPs per step, MFU, HFU, TFLOP/s per device,
tokens/s, cost and energy. Pure functions over scalars or numpy arrays; both engines and every report use them.

Conventions, chosen so that MFU <= HFU <= 1 whatever the layout, dtype or sequence length:
- Model FLOPs exclude recomputation, hardware FLOPs include it (Chowdhery et al. 2022, PaLM, arXiv 2204.02311,
  App. B).
- Attention: the model FLOPs (MFU) count the causal half of the s x s score and value matmuls, the work a causal
  decoder needs (the convention of the FlashAttention benchmarks: flops / 2 when causal; Dao 2023, arXiv
  2307.08691, sec. 4.1). The hardware FLOPs (HFU) count what the kernels execute: the causal half with a fused
  (flash) kernel, the full s x s matrix without one (costs.layer.CAUSAL_EXECUTED_FRACTION). The PaLM/Megatron
  full-matrix count (costs.flops.ModelCosts.model_flops_per_token) stays the convention of published figures that
  state it, which `validate` compares under each row's own convention. Sliding-window and chunked layers count the
  pairs their mask keeps (costs.flops.causal_attention_pairs; ModelCosts.attn_causal_fraction scales the causal
  half), in both the model and the fused kernels' hardware FLOPs: Megatron-Bridge's count (training/utils/
  flop_utils.py: W (W + 1) / 2 + (S - W) W pairs per windowed layer, S^2 / 2 per full one) to within S / (S + 1);
  MaxText counts s min(W, s) / 2 per windowed layer (validation applies it to rows under its conventions).
- Peak: the dense peak of the datatype the GEMMs run in (HardwareProfile.utilization_peak_flops_per_s): the FP8
  peak for fp8 runs where the device has one (int8 likewise), the bf16/fp16 peak otherwise. Dividing fp8 work by
  the bf16 peak (the convention of some reports) can exceed 1; the executed-dtype peak cannot, since no kernel
  runs faster than the peak of its datatype. MFU of an fp8 run is therefore about half its bf16-peak figure.
Decimal prefixes: 1 TFLOP/s = 1e12 FLOP/s (units.TERA).
"""
from __future__ import annotations

import numpy as np

from .costs.layer import CAUSAL_EXECUTED_FRACTION
from .units import TERA

#: Share of the s x s attention matmuls a causal decoder needs (the lower triangle): the model-FLOPs convention.
CAUSAL_MODEL_FRACTION = 0.5

#: Recompute codes of a LayoutTable (specs.layout.RECOMPUTE_CODES) -> ModelCosts.recompute_flops_per_token names.
_RECOMPUTE_NAMES = ((2, "full"), (1, "selective"))


def _attention_flops_per_token(costs) -> float:
    """Full s x s attention-core forward FLOPs of all layers, per token."""
    return costs.num_layers * costs.attn_core_flops_per_token


def model_flops_per_step(costs, tokens_per_step: float) -> float:
    """Training FLOPs of one step without recomputation: tokens x 3 x forward FLOPs per token, the attention core
    counted at its causal half (CAUSAL_MODEL_FRACTION).

    Source: Narayanan et al. 2021 (arXiv 2104.04473) sec. 5.1 (backward = 2 x forward); PaLM (arXiv 2204.02311)
    App. B (model FLOPs exclude rematerialisation); Dao 2023 (arXiv 2307.08691) sec. 4.1 (causal: half)."""
    full = costs.model_flops_per_token()
    kept = CAUSAL_MODEL_FRACTION * costs.attn_causal_fraction
    return tokens_per_step * (full - 3.0 * (1.0 - kept) * _attention_flops_per_token(costs))


def executed_attention_fraction(flash_attention, window_fraction: float = 1.0):
    """Share of the full s x s attention work the kernels execute: the causal half with a fused (flash) kernel,
    times the share of the causal pairs that sliding-window/chunked layers keep (`window_fraction`,
    ModelCosts.attn_causal_fraction), all of it without (the masked part is computed, then discarded).

    Source: Dao 2023 (FlashAttention-2, arXiv 2307.08691) sec. 3.1 (masked blocks skipped)."""
    return np.where(np.asarray(flash_attention, dtype=bool), CAUSAL_EXECUTED_FRACTION * window_fraction, 1.0)


def recompute_flops_per_step(costs, tokens_per_step: float, recompute_code, flash_attention=True):
    """FLOPs spent recomputing activations in one step (0 without recompute), per recompute code (array), the
    attention core counted as executed (`executed_attention_fraction`).

    Source: Korthikanti et al. 2022 (arXiv 2205.05198) sec. 5: full recompute replays every layer's forward,
    selective only the attention core."""
    rc = np.asarray(recompute_code)
    saved = (1.0 - executed_attention_fraction(flash_attention, costs.attn_causal_fraction)) \
        * _attention_flops_per_token(costs)
    per_token = np.select([rc == code for code, _ in _RECOMPUTE_NAMES],
                          [costs.recompute_flops_per_token(name) for _, name in _RECOMPUTE_NAMES], 0.0)
    return np.where(rc > 0, per_token - saved, 0.0) * tokens_per_step


def hardware_flops_per_step(costs, tokens_per_step: float, recompute_code, flash_attention=True):
    """FLOPs the hardware executes in one step: forward and backward with the attention core as executed, plus
    recomputation.

    Source: PaLM (arXiv 2204.02311) App. B (hardware FLOPs utilisation); Dao 2023 (arXiv 2307.08691) sec. 3.1."""
    full = costs.model_flops_per_token()
    saved = 3.0 * (1.0 - executed_attention_fraction(flash_attention, costs.attn_causal_fraction)) \
        * _attention_flops_per_token(costs)
    return tokens_per_step * (full - saved) + recompute_flops_per_step(costs, tokens_per_step, recompute_code,
                                                                       flash_attention)


def flops_utilization(flops_per_step, step_time_s, num_devices, peak_flops_per_s):
    """Fraction of the devices' peak spent on `flops_per_step`: flops / (step x devices x peak).

    Source: PaLM (arXiv 2204.02311) App. B."""
    return flops_per_step / (step_time_s * num_devices * peak_flops_per_s)


def mfu(model_flops_per_step, step_time_s, num_devices, peak_flops_per_s):
    """Model FLOPs utilisation: model FLOPs (no recomputation, causal attention) per second over the peak of all
    devices in the GEMMs' datatype (module docstring: bounded by HFU, itself bounded by 1).

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


def time_to_train_s(tokens, tokens_per_second):
    """Wall time to train `tokens` at a constant throughput (no restarts or failures: planning.goodput adds them).

    Source: definition."""
    return tokens / tokens_per_second


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
