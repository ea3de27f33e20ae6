"""Framework efficiencies fitted across families (simulator/calibration/frameworks.py): the refusal rule, the
multiplier as the cost model applies it, the overlay round trip, and the switch off."""
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from simulator.calibration import frameworks as fwcal
from simulator.costs.compute import kernel_rates
from simulator.specs import overlay
from simulator.specs.frameworks_loading import available_frameworks, load_framework
from simulator.specs.loading import load_hardware


def _case(source, family="nvidia-ampere", preset="deepspeed-2020"):
    fw = load_framework(preset)
    return SimpleNamespace(source=source, framework=fw, hardware=SimpleNamespace(family=family))


def test_the_rule_refuses_one_source_and_fits_two():
    one = [_case("A"), _case("A"), _case("A"), _case("A"), _case("A")]
    why = fwcal.framework_supported(one)
    assert why is not None and "1 source(s)" in why and "at least 2 sources" in why
    assert "at least 2 rows" in fwcal.framework_supported([_case("A")])
    assert fwcal.framework_supported([_case("A"), _case("B")]) is None


def test_the_stability_rule_refuses_a_value_that_follows_one_source():
    assert fwcal.fold_unstable(0.80, {}) is None                               # two sources: nothing to check
    assert fwcal.fold_unstable(0.80, {"A": 0.75, "B": 0.88}) is None           # within 0.1 of the fit
    why = fwcal.fold_unstable(0.787, {"A": 0.56, "B": 0.822, "C": 0.80})
    assert why is not None and "unstable" in why and "0.560-0.822" in why


def test_only_non_reference_presets_in_calibrated_families_are_candidates():
    cases = [_case("A"), _case("B", family="nvidia-blackwell"), _case("C", preset="megatron-lm"),
             _case("D", preset="maxtext", family="tpu"), _case("E", preset="gpt-neox")]
    cand = fwcal.candidate_cases(cases, ["nvidia-ampere", "tpu"])
    assert set(cand) == {"deepspeed-2020", "gpt-neox"}           # reference stacks and uncalibrated families out
    assert [c.source for c in cand["deepspeed-2020"]] == ["A"]


def test_the_multiplier_scales_compute_kernels_by_hand():
    """kernel_rates(level = kernel_level x e): a GEMM takes exactly 1/e as long, attention runs at e x the
    efficiency, memory-bound kernels are unchanged."""
    hw = load_hardware("a100-sxm4-80gb")
    one, half = kernel_rates(hw, "bf16"), kernel_rates(hw, "bf16", framework_efficiency=0.8)
    assert half.level == pytest.approx(hw.efficiency.kernel_level * 0.8)
    m, n, k = np.array([4096.0]), 8192.0, 8192.0
    assert half.gemm_time_s(m, n, k)[0] == pytest.approx(one.gemm_time_s(m, n, k)[0] / 0.8, rel=1e-12)
    assert half.grouped_time_s(8, m, n, k)[0] == pytest.approx(one.grouped_time_s(8, m, n, k)[0] / 0.8, rel=1e-12)
    a1 = one.attention_efficiency(np.array([4096.0]), 128.0, 64.0, "fwd")
    a2 = half.attention_efficiency(np.array([4096.0]), 128.0, 64.0, "fwd")
    assert a2[0] == pytest.approx(0.8 * a1[0], rel=1e-12)
    assert half.stream_s(1e9) == one.stream_s(1e9)


def test_a_job_under_a_fitted_preset_runs_its_gemms_1_over_e_slower():
    """A job's kernel rates take its framework's efficiency: with e = 0.5 for deepspeed-2020, the layer's
    forward GEMM time doubles, the memory-bound time is the same, and other presets are untouched."""
    from simulator.costs.layer import layer_costs
    from simulator.costs.sizes import sizes
    from simulator.specs.job import Job
    from simulator.specs.layout_table import LayoutTable
    from simulator.specs.training import TrainingSpec

    from .conftest import gpt

    hw = load_hardware("a100-sxm4-80gb")

    def run(preset, values):
        job = Job(model=gpt(), hardware=hw, training=TrainingSpec(seq_len=1024, global_batch=8, dtype="bf16"),
                  num_devices=1, framework=preset)
        with overlay.framework_efficiencies(values):
            sz = sizes(job, LayoutTable.from_columns(tp=1, pp=1, dp=1, micro_batch=1))
            return sz, layer_costs(sz)

    sz1, c1 = run("deepspeed-2020", {})
    sz2, c2 = run("deepspeed-2020", {"deepspeed-2020": 0.5})
    sz3, _ = run("megatron-lm", {"deepspeed-2020": 0.5})
    assert sz2.kernel.level == pytest.approx(0.5 * sz1.kernel.level) and sz3.kernel.level == sz1.kernel.level
    m = np.array([1024.0])
    assert sz2.kernel.gemm_time_s(m, 4096.0, 1024.0)[0] == pytest.approx(
        2.0 * sz1.kernel.gemm_time_s(m, 4096.0, 1024.0)[0], rel=1e-12)


def test_efficiency_lookup_follows_the_overlay_the_switch_and_the_override():
    ov = overlay.framework_overlay()
    assert ov is not None and ov.values
    name, value = next(iter(ov.values.items()))
    assert overlay.framework_efficiency(name) == value
    assert overlay.framework_efficiency(load_framework(name)) == value
    assert overlay.framework_efficiency("megatron-lm") == 1.0              # a reference stack
    with overlay.calibration_disabled():
        assert overlay.framework_efficiency(name) == 1.0                   # --no-calibration: sourced only
    with overlay.framework_efficiencies({name: 0.6}):
        assert overlay.framework_efficiency(name) == 0.6
        assert overlay.framework_efficiency("megatron-lm") == 1.0
    assert overlay.framework_efficiency(None) == 1.0


def test_shipped_overlay_is_bounded_recorded_and_never_in_the_presets():
    ov = overlay.framework_overlay()
    lo, hi = fwcal.FRAMEWORK_BOUNDS
    for name, v in ov.values.items():
        assert name in available_frameworks()
        assert load_framework(name).framework not in fwcal.REFERENCE_FRAMEWORKS
        rec = ov.parameters[name]
        assert (rec.lower, rec.upper) == (lo, hi) and lo <= v <= hi
        assert rec.loso_min is not None and rec.loso_max is not None
        fit = ov.fits[name]
        assert len(fit.sources) >= fwcal.MIN_FRAMEWORK_SOURCES and fit.rows == len(fit.row_ids)
    assert not ov.stale
    for name in available_frameworks():                                   # presets hold sourced facts only
        assert "efficiency" not in load_framework(name).model_dump()


def test_overlay_document_round_trip(tmp_path):
    res = {"values": {"deepspeed-2020": 0.81234},
           "fits": {"deepspeed-2020": {"value": 0.81234, "at_bound": False, "rows": 3, "sources": ["A", "B"],
                                       "source_rows": {"B": 1, "A": 2}, "row_ids": ["r1", "r2", "r3"],
                                       "before": {"mape_pct": 30.0}, "after": {"mape_pct": 12.5},
                                       "loso": {"A": 0.7, "B": 1.0}}},
           "refused": {"gpt-neox": "1 source(s)"}}
    doc = fwcal.framework_overlay_document(res, "2026-12-02", command="trainsim calibrate x.csv --frameworks")
    text = fwcal.framework_overlay_text(doc)
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "frameworks.yaml").write_text(text, encoding="utf-8")
    back = overlay.framework_overlay(tmp_path)
    assert back.values == {"deepspeed-2020": 0.812}
    p = back.parameters["deepspeed-2020"]
    assert (p.lower, p.upper, p.at_bound, p.loso_min, p.loso_max) == (0.5, 1.0, False, 0.7, 1.0)
    assert back.fits["deepspeed-2020"].sources == {"A": 2, "B": 1}
    assert back.fits["deepspeed-2020"].in_sample_mape_pct == 12.5
    assert back.refused == {"gpt-neox": "1 source(s)"}
    assert yaml.safe_load(text)["kind"] == "framework-efficiency"
    bad = dict(yaml.safe_load(text), kind="family")
    with pytest.raises(Exception):
        overlay.FrameworkOverlay(**bad)


def test_calibrate_frameworks_refuses_when_no_preset_is_supported(tmp_path, capsys):
    """H100 rows of reference stacks only: nothing to fit, exit 2, nothing written."""
    import csv
    from pathlib import Path

    from simulator.cli import main
    src = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "published_runs.csv"
    rows = list(csv.reader(src.open(encoding="utf-8")))
    h = rows[0]
    keep = [r for r in rows[1:] if r[h.index("hardware_profile")] == "h100-sxm5-80gb"
            and r[h.index("framework")] == "nemo"][:3]
    f = tmp_path / "runs.csv"
    with f.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([h] + keep)
    out = tmp_path / "fw.yaml"
    assert main(["calibrate", str(f), "--frameworks", "--out", str(out)]) == 2
    assert "no framework efficiency fitted" in capsys.readouterr().err
    assert not out.exists()
