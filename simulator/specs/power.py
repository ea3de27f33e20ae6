"""Sustained clock of a power-limited (or clock-limited) accelerator: the fraction of its datasheet peak FLOP/s
that a compute-bound kernel can reach under a board power limit below the rated power.

Rule (documented, one line): performance of compute-bound kernels scales with the SM clock, f / f_rated; under a
power limit the firmware lowers the clock until the board power meets the limit, and in the DVFS range the dynamic
power goes as C V^2 f with the voltage roughly proportional to f, so P_dyn ~ f^3:

    f / f_rated = ((P_limit - P_static) / (P_rated - P_static)) ^ (1/3),   P_static = STATIC_SHARE x P_rated

Sources: CMOS dynamic power P = alpha C V^2 f (Weste & Harris, CMOS VLSI Design, sec. 5.1) with V ~ f across the
DVFS range; static + idle share of board power ~15% of TDP (an H100 SXM idles near 70-100 W of 700 W: a stated
convention). Check against a measurement: capping an H100 SXM at 600 W is reported to cost 10-15% of transformer
training step throughput (factryze.ai, "Power capping", 2026); the rule gives 6.1%, so it is the optimistic end:
where a cluster's sustained clock is known, give it directly (`clock_fraction`). Memory-bound kernels keep their
bandwidth (HBM clocks are not lowered by the SM power limit); only the FLOP/s peaks scale.
"""
from __future__ import annotations

from ..errors import SpecError

#: Static (leakage + idle) share of the rated board power (convention; module docstring).
STATIC_SHARE = 0.15
#: Exponent of the clock in dynamic power under DVFS (V ~ f): P_dyn ~ f^3.
DVFS_EXPONENT = 3.0


def clock_fraction_for_power(power_limit_w: float, rated_power_w: float) -> float:
    """Fraction of the rated sustained clock (and of the peak FLOP/s) under a board power limit (module rule);
    1 at or above the rated power.

    Source: P_dyn ~ C V^2 f with V ~ f (Weste & Harris, sec. 5.1); static share STATIC_SHARE (convention)."""
    if not power_limit_w > 0:
        raise SpecError(f"power_limit_w = {power_limit_w}: must be > 0 W")
    static = STATIC_SHARE * rated_power_w
    if power_limit_w >= rated_power_w:
        return 1.0
    if power_limit_w <= static:
        raise SpecError(f"power_limit_w = {power_limit_w:g} W: at or below the device's static power "
                        f"(~{static:.0f} W = {STATIC_SHARE:.0%} of its rated {rated_power_w:g} W); it cannot run")
    return ((power_limit_w - static) / (rated_power_w - static)) ** (1.0 / DVFS_EXPONENT)
