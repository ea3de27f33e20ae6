"""Run presets and the host block: validated, sourced, field-named errors."""
import pytest

from simulator.errors import SpecError
from simulator.specs.host import HostSpec
from simulator.specs.loading import load_hardware, validate_spec
from simulator.specs.run import RunSpec, available_runs, load_run, run_with


def test_presets_load_and_carry_sources():
    assert {"llama3-405b-16k", "megascale-12k", "megatron-1t-3072"} <= set(available_runs())
    for name in available_runs():
        r = load_run(name)
        assert r.failures.source and r.storage.source and r.restart.source


def test_llama3_table_sums_to_419_unexpected_over_54_days_on_16k_devices():
    f = load_run("llama3-405b-16k").failures
    assert f.table.unexpected_interruptions == 419 and f.table.planned_interruptions == 47
    assert f.per_device_hour == pytest.approx(419 / (54 * 24 * 16384))
    assert sum(f.component_rates().values()) == pytest.approx(f.per_device_hour)
    assert f.planned_per_s * 86400 == pytest.approx(47 / 54)


def test_failures_need_exactly_one_form():
    base = load_run("megascale-12k").model_dump()
    base["failures"]["table"] = load_run("llama3-405b-16k").failures.table.model_dump()
    with pytest.raises(SpecError, match="exactly one of failures.rate_per_device_hour and failures.table"):
        validate_spec(RunSpec, base, "run")


def test_unknown_keys_and_bad_values_name_the_field():
    data = load_run("megascale-12k").model_dump()
    data["storage"]["write_gbps"] = 3
    with pytest.raises(SpecError, match="unknown key 'storage.write_gbps'"):
        validate_spec(RunSpec, data, "run")
    with pytest.raises(SpecError, match="storage.write_gb_per_s = -1"):
        run_with(load_run("megascale-12k"), **{"storage.write_gb_per_s": -1})


def test_unknown_run_preset_lists_the_available_ones():
    with pytest.raises(SpecError, match="available: .*llama3-405b-16k"):
        load_run("no-such-run")


def test_host_blocks_where_sourced_and_absent_elsewhere():
    dgx2 = load_hardware("v100-sxm3-32gb")
    assert dgx2.devices_per_node == 16 and dgx2.host.memory_gb == 1500
    assert dgx2.host.link_bytes_per_s == pytest.approx(15.75e9 * 0.76)
    assert load_hardware("h100-sxm5-80gb").host.link_gb_per_s == 63
    assert load_hardware("tpu-v4").host is None                 # unknown, not guessed


def test_host_node_cap_needs_a_per_device_link():
    with pytest.raises(SpecError, match="link_node_gb_per_s needs link_gb_per_s"):
        validate_spec(HostSpec, {"link_node_gb_per_s": 90, "source": "x"}, "host")
