"""Calibration: source weights, parameters <-> profile, and the fitted values written as profile text (values
replaced in place, comments kept, the provenance paragraph replaced rather than repeated)."""
import math
from types import SimpleNamespace

import pytest

from simulator.calibration import (CALIBRATION_MARK, apply_params, current_values, make_fitset,
                                   profile_text_with_fit, robust_cost)

from .conftest import toy_hardware

PROFILE = """name: toy  # a comment that stays
efficiency:
  step_overhead_ms: 0.8
  layer_overhead_us: 100
  source: >-
    MAMF benchmark.
tiers:
  - name: fast
    efficiency: 0.9
    latency_us: 2
  - name: slow
    efficiency: 0.8
    latency_us: 5
"""


def test_every_source_carries_the_same_total_weight():
    cases = [SimpleNamespace(source=s) for s in ("a", "a", "a", "a", "b")]
    fs = make_fitset("fam", cases)
    assert list(fs.weights) == pytest.approx([0.5, 0.5, 0.5, 0.5, 1.0])      # 1 / sqrt(rows of the source)
    assert fs.sources == ["a", "b"]
    assert sum(w for w, c in zip(fs.weights, cases) if c.source == "a") ** 2 / 4 == pytest.approx(1.0)


def test_parameters_go_to_the_efficiency_block_and_the_first_and_last_tier():
    hw = toy_hardware()
    new = apply_params(hw, {"kernel_level": 0.8, "fast_tier_efficiency": 0.7, "slow_tier_latency_us": 9.0})
    assert new.efficiency.kernel_level == 0.8
    assert (new.tiers[0].efficiency, new.tiers[-1].latency_us) == (0.7, 9.0)
    assert new.tiers[0].latency_us == hw.tiers[0].latency_us
    # an unset kernel_level starts from its default 1.0 (the tables as measured)
    assert current_values(hw, ["kernel_level", "fast_tier_efficiency"]) == [1.0, 1.0]
    assert current_values(new, ["kernel_level", "fast_tier_efficiency"]) == [0.8, 0.7]


def test_robust_cost_is_quadratic_for_small_and_linear_for_large_residuals():
    # soft_l1 with scale f: f^2 (sqrt(1 + (r/f)^2) - 1) -> r^2 / 2 for r << f, ~ f r for r >> f
    assert robust_cost([1e-4]) == pytest.approx(0.5e-8, rel=1e-4)
    assert robust_cost([10.0]) == pytest.approx(0.02 * 10.0 - 0.02 ** 2, rel=1e-5)


def test_fitted_values_replace_the_profile_text_in_place_and_keep_the_rest():
    out = profile_text_with_fit(PROFILE, {"layer_overhead_us": 812.34, "kernel_level": 0.61234,
                                          "slow_tier_efficiency": 0.6},
                                f"{CALIBRATION_MARK} fitted on 3 rows.")
    lines = out.splitlines()
    assert lines[0] == "name: toy  # a comment that stays"
    assert "  layer_overhead_us: 812" in lines and "  step_overhead_ms: 0.8" in lines
    assert lines.index("  kernel_level: 0.612") < lines.index("  source: >-")      # inserted before source
    assert "    MAMF benchmark. CALIBRATION (benchmarks/calibrate.py): fitted on 3 rows." in lines
    slow = lines.index("  - name: slow")
    assert lines[slow + 1:slow + 3] == ["    efficiency: 0.6", "    latency_us: 5"]
    assert lines[lines.index("  - name: fast") + 1] == "    efficiency: 0.9"
    # a second calibration replaces the first paragraph instead of appending to it
    again = profile_text_with_fit(out, {"layer_overhead_us": 700.0}, f"{CALIBRATION_MARK} refit.")
    assert "    MAMF benchmark. CALIBRATION (benchmarks/calibrate.py): refit." in again.splitlines()
    assert again.count(CALIBRATION_MARK) == 1


def test_a_profile_without_an_efficiency_block_is_refused():
    with pytest.raises(ValueError, match="no top-level 'efficiency:' block"):
        profile_text_with_fit("name: x\n", {"kernel_level": 0.5}, "p")
    assert math.isfinite(robust_cost([0.0]))


def test_the_rows_must_support_the_parameters():
    from simulator.calibration.fit import supported
    cases = [SimpleNamespace(source=s) for s in "aaaaabbbbb"]               # 10 rows, 2 sources
    fs = make_fitset("fam", cases)
    assert supported(fs, ["matmul_max", "memory_bound"]) is None           # 10 >= 5 x 2
    assert "at least 5 rows per parameter (15 rows)" in supported(fs, ["matmul_max", "memory_bound",
                                                                       "attention_max"])
    one = make_fitset("fam", [SimpleNamespace(source="a")] * 10)
    assert "at least 2 sources" in supported(one, ["matmul_max"])


def test_bounds_and_paths_of_the_parameters():
    from simulator.calibration.fit import at_bound, param_path
    assert at_bound("kernel_level", 0.3) and at_bound("kernel_level", 1.5) and not at_bound("kernel_level", 0.9)
    assert param_path("slow_tier_efficiency") == "tiers[-1].efficiency"
    assert param_path("fast_tier_latency_us") == "tiers[0].latency_us"
    assert param_path("kernel_level") == "efficiency.kernel_level"


def _small_runs(tmp_path, n):
    import csv
    from pathlib import Path
    src = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "published_runs.csv"
    rows = list(csv.reader(src.open(encoding="utf-8")))
    col = rows[0].index("hardware_profile")
    keep = [r for r in rows[1:] if r[col].startswith("h100")][:n]
    out = tmp_path / "runs.csv"
    with out.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([rows[0]] + keep)
    return out


def test_calibrate_refuses_fewer_rows_than_the_rule_and_writes_nothing(tmp_path, capsys):
    from simulator.cli import main
    runs = _small_runs(tmp_path, 3)
    out = tmp_path / "fit.yaml"
    assert main(["calibrate", str(runs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "3 time/rate rows for 1 parameters" in err and "5 rows per parameter" in err   # Hopper fits kernel_level
    assert not out.exists()


def test_calibrate_never_writes_a_shipped_or_existing_file(tmp_path, capsys):
    from simulator.cli import main
    from simulator.specs.loading import profiles_dir
    runs = _small_runs(tmp_path, 3)
    shipped = str(profiles_dir() / "calibration" / "nvidia-hopper.yaml")
    assert main(["calibrate", str(runs), "--out", shipped, "--force"]) == 2
    assert "shipped profiles folder" in capsys.readouterr().err
    existing = tmp_path / "old.yaml"
    existing.write_text("x: 1\n", encoding="utf-8")
    assert main(["calibrate", str(runs), "--out", str(existing)]) == 2
    assert "exists" in capsys.readouterr().err and existing.read_text(encoding="utf-8") == "x: 1\n"


def test_validate_cv_reports_in_sample_loso_and_lofo(tmp_path, capsys):
    """In-sample = validate with the overlays; LOFO = validate without them; LOSO refits per source."""
    import csv
    import json
    from pathlib import Path

    from simulator.cli import main
    from simulator.specs.overlay import calibration_disabled
    from simulator.validation import validate
    src = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "published_runs.csv"
    rows = list(csv.reader(src.open(encoding="utf-8")))
    h = rows[0]
    hw, source, metric = h.index("hardware_profile"), h.index("source"), h.index("metric")  # time/rate rows
    hop = [r for r in rows[1:] if r[hw] == "h100-sxm5-80gb" and r[metric] != "memory_gb"]
    by_source: dict = {}
    for r in hop:
        by_source.setdefault(r[source], []).append(r)
    keep = [r for s in sorted(by_source)[:2] for r in by_source[s][:3]]
    f = tmp_path / "runs.csv"
    with f.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([h] + keep)
    assert main(["validate", str(f), "--cv", "--cv-max-nfev", "2", "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    fam = res["families"]["nvidia-hopper"]
    assert fam["fitted"] and fam["sources"] == 2 and fam["in_sample"]["n"] == len(keep)
    assert fam["in_sample"]["mape_pct"] == pytest.approx(validate(str(f)).summary["mape_pct"])
    with calibration_disabled():
        assert fam["lofo"]["mape_pct"] == pytest.approx(validate(str(f)).summary["mape_pct"])
    assert fam["loso"]["n"] == len(keep)


def test_thinning_a_large_source_keeps_evenly_spaced_rows_and_the_weights():
    from simulator.calibration.fit import thin_sources
    cases = [SimpleNamespace(source="big", i=i) for i in range(10)] + [SimpleNamespace(source="small", i=99)]
    fs = thin_sources(make_fitset("fam", cases), 4)
    assert [c.i for c in fs.cases] == [0, 2, 5, 7, 99]                      # int(k * 10 / 4), k = 0..3
    assert list(fs.weights) == pytest.approx([0.5, 0.5, 0.5, 0.5, 1.0])     # each source still weighs 1


def test_only_reference_stacks_and_fitted_stacks_set_a_family_level():
    """A row of a non-reference stack whose efficiency the framework fit refused would lower the family's
    kernel_level with its stack's losses: it is left out of the family fit (frameworks.sets_family_level)."""
    from simulator.calibration.frameworks import sets_family_level

    def case(column, preset):
        return SimpleNamespace(framework=SimpleNamespace(framework=column, name=preset))
    fitted = {"megatron-deepspeed-2021": 0.925}
    assert sets_family_level(case("megatron-lm", "megatron-lm-2022"), fitted)             # reference stack
    assert sets_family_level(case("megatron-deepspeed", "megatron-deepspeed-2021"), fitted)   # fitted efficiency
    assert not sets_family_level(case("gpt-neox", "gpt-neox"), fitted)                     # refused: unknown
    assert not sets_family_level(case("deepspeed", "deepspeed-2020"), {})
