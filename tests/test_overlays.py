"""Calibration overlays: the profiles hold sourced values, the family overlay adds the fitted ones on load, and
--no-calibration / calibration=False leaves them out."""
from pathlib import Path

import pytest

from simulator.errors import SpecError
from simulator.specs import overlay
from simulator.specs.loading import available_profiles, load_hardware, profiles_dir


def _field(hw, path):
    head, attr = path.rsplit(".", 1)
    obj = hw.tiers[int(head[6:-1])] if head.startswith("tiers[") else getattr(hw, head)
    return getattr(obj, attr)


def _raw(name, path):
    """The value the profile file itself holds for a field path (its sourced value)."""
    import yaml
    data = yaml.safe_load((Path(str(profiles_dir())) / f"{name}.yaml").read_text(encoding="utf-8"))
    head, attr = path.rsplit(".", 1)
    node = data["tiers"][int(head[6:-1])] if head.startswith("tiers[") else data[head]
    return node.get(attr)


def test_overlay_values_are_applied_on_load_and_left_out_on_request():
    for fam in ("nvidia-ampere", "nvidia-hopper"):
        ov = overlay.family_overlay(profiles_dir(), fam)
        for name in ov.profiles:
            cal = load_hardware(name)
            src = load_hardware(name, calibration=False)
            for path, value in ov.values.items():
                assert _field(cal, path) == value                      # the fitted value, from the overlay
                raw = _raw(name, path)
                if raw is not None:
                    assert _field(src, path) == raw                    # the sourced value, from the profile
            with overlay.calibration_disabled():
                assert load_hardware(name) == src
            assert load_hardware(name) == cal


def test_the_sourced_scale_out_efficiency_is_the_idle_nccl_tests_figure():
    b = load_hardware("a100-sxm4-80gb", calibration=False)
    assert b.tiers[-1].efficiency == 0.9                      # idle nccl-tests, 2-3 nodes (profile source)
    a = load_hardware("a100-sxm4-80gb")
    assert a.tiers[-1].efficiency == overlay.family_overlay(profiles_dir(), "nvidia-ampere").values[
        "tiers[-1].efficiency"]
    assert a.tiers[0].efficiency == b.tiers[0].efficiency


def test_apply_values_is_generic_and_checks_paths():
    data = {"efficiency": {"matmul_max": 0.5}, "tiers": [{"efficiency": 0.7}, {"efficiency": 0.8}]}
    out = overlay.apply_values(data, {"efficiency.layer_overhead_us": 12.0, "tiers[0].latency_us": 3.0})
    assert out["efficiency"] == {"matmul_max": 0.5, "layer_overhead_us": 12.0}
    assert out["tiers"][0] == {"efficiency": 0.7, "latency_us": 3.0}
    assert data["efficiency"] == {"matmul_max": 0.5}                        # the input is not changed
    with pytest.raises(SpecError, match="not a profile field path"):
        overlay.apply_values(data, {"matmul_max": 0.5})
    with pytest.raises(SpecError, match="has 2 tiers"):
        overlay.apply_values(data, {"tiers[2].efficiency": 0.5})


def test_profiles_keep_no_fitted_paragraph_and_every_overlay_loads():
    for name in available_profiles():
        hw = load_hardware(name, calibration=False)
        assert "CALIBRATION (benchmarks/calibrate.py)" not in hw.efficiency.source
    for fam in ("nvidia-ampere", "nvidia-hopper"):
        ov = overlay.family_overlay(profiles_dir(), fam)
        assert ov.family == fam and ov.fit.rows > 0 and ov.fit.sources
        for path in ov.values:
            assert path in ov.parameters                       # every fitted value has its bounds
            rec = ov.parameters[path]
            assert rec.lower <= ov.values[path] <= rec.upper
        for name in ov.profiles:
            assert load_hardware(name).family == fam


def test_a_user_file_extending_a_profile_inherits_its_overlay(tmp_path):
    f = tmp_path / "myh100.yaml"
    f.write_text("extends: h100-sxm5-80gb\nname: myh100\n", encoding="utf-8")
    assert load_hardware(str(f)).efficiency == load_hardware("h100-sxm5-80gb").efficiency
    assert load_hardware(str(f), calibration=False).efficiency == load_hardware("h100-sxm5-80gb",
                                                                                calibration=False).efficiency
    assert load_hardware("h100-sxm5-80gb").efficiency != load_hardware("h100-sxm5-80gb", calibration=False).efficiency


def test_an_overlay_setting_a_field_the_schema_lost_fails_with_the_remedy():
    with pytest.raises(SpecError, match="no longer have.*refit"):
        overlay.apply_values({"efficiency": {}}, {"efficiency.no_such_parameter": 1.0})
