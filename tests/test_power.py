"""Power- and clock-limited parts: the FLOP/s peaks the kernels run at scale with the sustained clock; the MFU
denominator keeps the datasheet peak; memory bandwidth is unchanged."""
import pytest

from simulator.errors import SpecError
from simulator.specs.loading import load_hardware
from simulator.specs.power import clock_fraction_for_power
from simulator.validation.rows import power_of_notes


def test_the_dvfs_rule_by_hand():
    # static 15% of 700 W = 105 W; ((600 - 105) / (700 - 105))^(1/3) = (495/595)^(1/3) = 0.9405
    assert clock_fraction_for_power(600, 700) == pytest.approx(0.9405, abs=1e-4)
    # ((500 - 105) / 595)^(1/3) = 0.66387^(1/3) = 0.8724
    assert clock_fraction_for_power(500, 700) == pytest.approx(0.8724, abs=1e-4)
    assert clock_fraction_for_power(800, 700) == 1.0
    with pytest.raises(SpecError, match="static power"):
        clock_fraction_for_power(100, 700)


def test_a_power_limited_profile_runs_slower_but_keeps_its_mfu_denominator():
    full = load_hardware("h100-sxm5-80gb")
    capped = load_hardware("h100-sxm5-80gb", overrides={"power_limit_w": 500})
    f = clock_fraction_for_power(500, 700)
    assert capped.device.clock_fraction == pytest.approx(f)
    assert capped.peak_flops_per_s("bf16") == pytest.approx(989e12 * f)
    assert capped.mfu_peak_flops_per_s("bf16") == full.mfu_peak_flops_per_s("bf16") == 989e12
    assert capped.device.memory_bandwidth_bytes_per_s == full.device.memory_bandwidth_bytes_per_s
    assert capped.device.power_w == 500
    half = load_hardware("h100-sxm5-80gb", overrides={"clock_fraction": 0.5})
    assert half.peak_flops_per_s("fp8") == pytest.approx(0.5 * full.peak_flops_per_s("fp8"))
    with pytest.raises(SpecError, match="not both"):
        load_hardware("h100-sxm5-80gb", overrides={"clock_fraction": 0.5, "power_limit_w": 500})


def test_a_power_limited_estimate_is_slower_and_a_row_note_states_the_limit():
    import simulator as ts
    kw = dict(devices=8, global_batch=8, seq_len=4096, tp=8)
    a = ts.estimate(ts.Scenario.build("llama3-8b", "h100-sxm5-80gb", **kw))
    b = ts.estimate(ts.Scenario.build("llama3-8b", "h100-sxm5-80gb", hardware_overrides={"power_limit_w": 500}, **kw))
    f = clock_fraction_for_power(500, 700)
    # only the compute part slows: between no change and the full 1/f
    assert a.step_time_s < b.step_time_s < a.step_time_s / f
    assert power_of_notes("run with a 500 W power cap on every GPU") == {"power_limit_w": 500.0}
    assert power_of_notes("GPUs power limited at 450W") == {"power_limit_w": 450.0}
    assert power_of_notes("no limit stated") == {}
    assert power_of_notes("power limit 450 W") == {"power_limit_w": 450.0}
    assert power_of_notes("clock fraction 0.85") == {"clock_fraction": 0.85}
