"""Framework presets: every preset loads with sources, covers the published-runs vocabulary, picks its era by
year; the framework cost functions match hand derivations and cited figures; `trainsim frameworks` lists them."""
import json

import pytest

from simulator.cli import main
from simulator.costs.framework_effects import (ATTENTION_KERNEL_TABLE, attention_compute_dtype,
                                               attention_kernel_efficiency, attention_peak_flops_per_s,
                                               fsdp_stage_memory, logits_peak_bytes, memory_as_reported_bytes,
                                               reserved_bytes)
from simulator.errors import SpecError
from simulator.specs.framework import FRAMEWORK_COLUMN_VALUES
from simulator.specs.frameworks_loading import available_frameworks, framework_for_run, load_framework
from simulator.specs.loading import load_hardware

GROUPS = ("attention", "overlap", "recompute", "fsdp", "loss", "host", "allocator", "defaults", "buffers")


@pytest.mark.parametrize("name", available_frameworks())
def test_preset_loads_and_every_field_group_is_sourced(name):
    f = load_framework(name)
    assert f.name == name
    assert f.source.strip() and f.version.strip() and f.description.strip()
    for group in GROUPS:
        assert getattr(f, group).source.strip(), f"{name}.{group} has no source"


def test_every_framework_column_value_has_a_preset():
    """The 19 values of the data README sec. 2.5 vocabulary, each standing for at least one preset."""
    assert len(FRAMEWORK_COLUMN_VALUES) == 19
    covered = {load_framework(n).framework for n in available_frameworks()}
    assert covered == set(FRAMEWORK_COLUMN_VALUES)


@pytest.mark.parametrize("column", FRAMEWORK_COLUMN_VALUES)
def test_eras_of_one_framework_do_not_overlap(column):
    eras = sorted((load_framework(n).years for n in available_frameworks()
                   if load_framework(n).framework == column), key=lambda y: y[0])
    for (_, last), (first, _) in zip(eras, eras[1:]):
        assert last is not None and last < first


@pytest.mark.parametrize("column,year,preset", [
    ("torchtitan", 2024, "torchtitan-2024"), ("torchtitan", 2025, "torchtitan"),
    ("torchtitan", 2023, "torchtitan-2024"), ("deepspeed", 2021, "deepspeed-2020"), ("deepspeed", 2023, "deepspeed"),
    ("megatron-deepspeed", 2022, "megatron-deepspeed-2021"),
    ("llm-foundry", 2023, "llm-foundry-2023"), ("unknown", 2022, "unknown-2022"), ("unknown", None, "unknown"),
    ("megatron-lm", 2019, "megatron-lm"), ("megatron-lm", 2021, "megatron-lm-2021"),
    ("megatron-lm", 2022, "megatron-lm-2022"), ("megatron-core", 2026, "megatron-core")])
def test_framework_for_run_picks_the_era_by_year(column, year, preset):
    assert framework_for_run(column, year).name == preset


def test_unknown_names_get_close_matches_and_the_list():
    with pytest.raises(SpecError, match=r"unknown framework 'torchtitn' \(did you mean torchtitan"):
        load_framework("torchtitn")
    with pytest.raises(SpecError, match="not one of megatron-lm"):
        framework_for_run("pytorch")


def test_a_yaml_typo_names_the_key(tmp_path):
    data = load_framework("megatron-core").model_dump(mode="json")
    data["overlap"]["tp_comm_overlapp"] = True
    p = tmp_path / "typo.yaml"
    import yaml
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"unknown key 'overlap.tp_comm_overlapp'"):
        load_framework(str(p))


def test_year_rule_of_the_old_validation_is_reproduced_by_the_generic_presets():
    """validation.py's rule for rows without framework facts: flash from 2023, DP reduce after backward up to 2022."""
    old, new = framework_for_run("unknown", 2022), framework_for_run("unknown", 2023)
    assert (old.attention.kernel, old.overlap.dp_grad_reduce_overlap) == ("unfused", False)
    assert (new.attention.kernel, new.overlap.dp_grad_reduce_overlap) == ("flash-attn-2", True)


# --- allocator -------------------------------------------------------------------------------------------------

def test_reserved_from_allocated_matches_a_simumax_b200_measurement():
    """SimuMax B200, Llama3-70B 12 layers tp1 pp2 dp4: allocated 71.4596 GB, reserved 76.1119 GB measured.
    By hand 71.4596 / 0.94 = 76.0209 GB, 0.12% below the measurement."""
    alloc = load_framework("megatron-core").allocator
    got = float(reserved_bytes(71.4596e9, alloc.utilisation, alloc.fragmentation_bytes))
    assert got == pytest.approx(76.0209e9, rel=1e-5)
    assert got == pytest.approx(76.1119e9, rel=2e-3)


def test_memory_as_reported_follows_the_metric_and_the_framework_log():
    tt = load_framework("torchtitan").allocator          # logs reserved_bytes.all.peak
    mx = load_framework("maxtext").allocator             # logs bytes_in_use
    a = 47.0e9
    assert float(memory_as_reported_bytes(a, "memory_allocated_gb", tt)) == a
    assert float(memory_as_reported_bytes(a, "memory_reserved_gb", tt)) == pytest.approx(50.0e9)
    assert float(memory_as_reported_bytes(a, "memory_gb", tt)) == pytest.approx(50.0e9)
    assert float(memory_as_reported_bytes(a, "memory_gb", mx)) == a
    with pytest.raises(ValueError, match="not a memory metric"):
        memory_as_reported_bytes(a, "step_time_s", tt)


# --- FSDP2 under PP --------------------------------------------------------------------------------------------

def test_torchtitan_fsdp2_under_pp_keeps_stage_params_and_fp32_grads_unsharded():
    """A stage of 2e9 parameters in blocks of 0.25e9, sharded over 8: fp32 param + fp32 grad + Adam m, v = 16 B
    per parameter over 8 = 4 GB; under PP 4 the bf16 parameters stay gathered (2 B x 2e9 = 4 GB) and the fp32
    gradients accumulate unsharded (4 B x 2e9 = 8 GB): 16 GB. Without PP two blocks are gathered (1 GB) and one
    block's fp32 gradient waits (1 GB): 6 GB."""
    f = load_framework("torchtitan").fsdp
    kw = dict(stage_params=2e9, unit_params=0.25e9, dp_shard=8, reshard_after_forward=f.reshard_after_forward,
              grad_accumulation_under_pp=f.unsharded_grad_accumulation_under_pp,
              accumulated_grad_bytes=f.accumulated_grad_bytes)
    pp4 = fsdp_stage_memory(pp=4, **kw)
    assert (pp4.sharded_state_bytes, pp4.unsharded_params_bytes, pp4.unsharded_grads_bytes) == (4e9, 4e9, 8e9)
    assert pp4.total_bytes == 16e9
    assert fsdp_stage_memory(pp=1, **kw).total_bytes == 6e9
    always = fsdp_stage_memory(2e9, 0.25e9, 8, 4, "always", False)
    assert always.total_bytes == 6e9


# --- attention kernels -----------------------------------------------------------------------------------------

def test_attention_lookup_reads_the_fa3_paper_row():
    """FlashAttention-3 on H100, head dim 128: 616 TFLOP/s forward (causal), 561 backward, of 989.
    fwd+bwd = 3.5 / (989/616 + 2.5 x 989/561) = 0.58209."""
    e = attention_kernel_efficiency("flash-attn-3", "nvidia-hopper", 128)
    assert (e.fwd, e.bwd) == (pytest.approx(616 / 989), pytest.approx(561 / 989))
    assert e.fwd_bwd == pytest.approx(0.58209, rel=1e-4)
    assert "2407.08608" in e.source


def test_attention_lookup_interpolates_head_dims_and_clamps():
    e = attention_kernel_efficiency("flash-attn-3", "nvidia-hopper", 192)   # halfway between 128 and 256
    assert e.fwd == pytest.approx((616 + 642) / 2 / 989)
    assert e.bwd == pytest.approx((561 + 642 * 561 / 616) / 2 / 989)
    assert "interpolated" in e.source
    big = attention_kernel_efficiency("flash-attn-2", "nvidia-ampere", 256)     # beyond the last row: clamped
    assert big.fwd == pytest.approx(0.73)


def test_attention_lookup_has_no_row_for_unfused_or_untabulated_pairs():
    assert attention_kernel_efficiency("unfused", "nvidia-hopper", 128) is None
    assert attention_kernel_efficiency("xla-splash", "tpu", 128) is None


def test_kernel_choice_differs_by_framework_on_hopper():
    """Transformer Engine prefers cuDNN fused attention on Hopper; torchtitan's SDPA takes the flash (FA2)
    backend there, so the same layout runs attention at 0.529 vs 0.329 of peak (fwd+bwd, head dim 128)."""
    mc = load_framework("megatron-core").attention.kernel_for("nvidia-hopper")
    tt = load_framework("torchtitan").attention.kernel_for("nvidia-hopper")
    assert (mc, tt) == ("cudnn-fused", "flash-attn-2")
    assert attention_kernel_efficiency(mc, "nvidia-hopper", 128).fwd_bwd == pytest.approx(0.5282, abs=1e-4)
    assert attention_kernel_efficiency(tt, "nvidia-hopper", 128).fwd_bwd == pytest.approx(0.3292, abs=1e-4)


def test_fp8_runs_attention_at_the_bf16_peak():
    h100 = load_hardware("h100-sxm5-80gb")
    assert attention_compute_dtype("fp8") == attention_compute_dtype("int8") == "bf16"
    assert attention_peak_flops_per_s(h100, "fp8") == pytest.approx(989e12)
    assert h100.peak_flops_per_s("fp8") == pytest.approx(1979e12)


def test_every_table_row_is_a_fraction_of_its_peak_with_a_source():
    for r in ATTENTION_KERNEL_TABLE:
        assert 0 < r.fwd_tflops < r.peak_tflops and 0 < r.bwd_tflops < r.peak_tflops and r.source


# --- cross-entropy ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,tp,expected", [
    ("fp32-materialized", 1, 8192 * 128256 * 6), ("fused-bf16", 4, 8192 * 128256 // 4 * 4),
    ("inplace-grad", 1, 8192 * 128256 * 2)])
def test_logits_peak_bytes_by_cross_entropy_kind(kind, tp, expected):
    """8192 tokens x 128256 vocab = 1,050,673,152 logits: 6 / 4 / 2 bytes each (over tp)."""
    assert float(logits_peak_bytes(8192, 128256, tp, kind)) == expected


# --- CLI -------------------------------------------------------------------------------------------------------

def test_cli_frameworks_table_and_json(capsys):
    assert main(["frameworks"]) == 0
    out = capsys.readouterr().out
    assert "torchtitan" in out and "cudnn-fused" in out
    assert main(["frameworks", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == available_frameworks()
    assert all(r[g]["source"] for r in rows for g in GROUPS)


def test_cli_frameworks_sources(capsys):
    assert main(["frameworks", "--sources"]) == 0
    assert "get_fsdp_reshard_after_forward_policy" in capsys.readouterr().out


def test_cli_frameworks_reports_the_shipped_calibration(capsys):
    """Each preset's row says how the shipped framework overlay treats it: the fitted value for a fitted preset,
    'reference' for the stacks that set kernel_level, 'refused' with the rule's reason, else 'not fitted'."""
    from simulator.specs.overlay import framework_overlay
    overlay = framework_overlay()
    assert main(["frameworks", "--format", "json"]) == 0
    rows = {r["name"]: r["calibration"] for r in json.loads(capsys.readouterr().out)}
    for name, value in overlay.values.items():
        assert rows[name] == {"status": "fitted", "efficiency": value, "detail": rows[name]["detail"]}
    for name in overlay.reference:
        if name in rows:
            assert rows[name]["status"] == "reference" and rows[name]["efficiency"] == 1.0
    for name, why in overlay.refused.items():
        assert rows[name] == {"status": "refused", "efficiency": 1.0, "detail": why}
    assert main(["frameworks"]) == 0
    out = capsys.readouterr().out
    assert "fitted efficiency" in out and "Refused fits" in out
