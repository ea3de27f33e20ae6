"""Every bad input found by fuzzing ends as exit 2 with one readable message (issue 12, "Found by fuzzing"), and
the conveniences around names: aliases, "did you mean", `extends:` profiles."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.errors import SpecError
from simulator.specs import safe_yaml
from simulator.specs.base import MAX_DEVICES, MAX_LAYERS, MAX_QUOTED
from simulator.specs.loading import (HARDWARE_ALIASES, available_profiles, load_hardware, load_model,
                                     read_yaml)
from simulator.specs.scenario import Scenario

PRESETS = Path(__file__).resolve().parents[1] / "simulator" / "presets" / "models"
JOB = ["--devices", "8", "--global-batch", "8", "--seq-len", "2048"]


def run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:                 # argparse's own exit for a flag it cannot convert
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def estimate(capsys, *extra, model="llama3-8b", hardware="h100-sxm5-80gb"):
    return run(["estimate", "--model", model, "--hardware", hardware, *JOB, *extra, "--format", "json"], capsys)


def one_message(err: str) -> str:
    """The error text, asserting one `error:` message and no traceback."""
    assert "Traceback" not in err and err.count("error:") == 1, err
    return err


# --- YAML: bounded work -----------------------------------------------------------------------------------------

def test_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path, capsys):
    """413-byte billion-laughs file: 9^7 = 4.8M values if expanded; refused in well under a second."""
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for prev, cur in zip("abcdef", "bcdefg"):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    code, _, err = estimate(capsys, model=str(f))
    assert code == 2 and time.perf_counter() - t0 < 2.0
    assert "expands to more than 100,000 values" in one_message(err) and len(err) < 300


def test_anchors_and_merge_keys_within_the_limits_still_load(tmp_path):
    f = tmp_path / "anchors.yaml"
    f.write_text("base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\nlist: [*b, *b]\n")
    assert read_yaml(f) == {"base": {"x": 1, "y": 2}, "derived": {"x": 1, "y": 3},
                            "list": [{"x": 1, "y": 2}, {"x": 1, "y": 2}]}


def test_nesting_beyond_the_cap_is_refused_before_the_recursive_composer(tmp_path, capsys):
    f = tmp_path / "deep.yaml"
    f.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    code, _, err = estimate(capsys, model=str(f))
    assert code == 2 and f"nested deeper than {safe_yaml.MAX_YAML_DEPTH} levels" in one_message(err)


def test_nesting_built_from_aliases_counts_after_expansion(tmp_path):
    lines = ["l0: &l0 [1]"] + [f"l{i}: &l{i} [[[[*l{i - 1}]]]]" for i in range(1, 12)]
    f = tmp_path / "alias_depth.yaml"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError, match="once aliases are expanded"):
        read_yaml(f)


def test_recursive_anchor_and_duplicate_keys_are_refused(tmp_path):
    (tmp_path / "rec.yaml").write_text("a: &a [1, *a]\n")
    with pytest.raises(SpecError, match="recursive anchor"):
        read_yaml(tmp_path / "rec.yaml")
    (tmp_path / "dup.yaml").write_text("tp: 1\npp: 2\ntp: 4\n")
    with pytest.raises(SpecError, match=r"key 'tp' appears twice \(lines 1 and 3\)"):
        read_yaml(tmp_path / "dup.yaml")


def test_file_over_the_size_cap_is_refused_before_reading(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_bytes(b"# " + b"x" * safe_yaml.MAX_YAML_BYTES + b"\n")
    with pytest.raises(SpecError, match=r"is 1,048,579 bytes; the limit is 1,048,576"):
        read_yaml(f)


# --- paths and encodings -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, expected", [
    (lambda d: "", "the name is empty"),
    (lambda d: str(d), "is a folder, not a YAML file"),
    (lambda d: str(d / "missing.yaml"), "not found"),
    (lambda d: str(d / ("x" * 300 + ".yaml")), "file name too long"),
    (lambda d: "x" * 5000, "not a usable name or path"),
    (lambda d: (d / "empty.yaml").write_text("") and "" or str(d / "empty.yaml"), "is empty"),
    (lambda d: (d / "latin1.yaml").write_bytes(b"name: caf\xe9\n") and str(d / "latin1.yaml"),
     "not UTF-8 text (byte 0xe9 on line 1)"),
    (lambda d: (d / "list.yaml").write_text("- 1\n") and str(d / "list.yaml"), "expected a mapping of fields"),
    (lambda d: (d / "broken.yaml").write_text("a: [1\n") and str(d / "broken.yaml"), "not valid YAML"),
    (lambda d: "/dev/null", "is not a regular file"),
])
def test_unusable_model_paths_are_exit_2_with_one_message(tmp_path, capsys, make, expected):
    code, _, err = estimate(capsys, model=make(tmp_path))
    assert code == 2 and expected in one_message(err)


def test_unreadable_file_is_exit_2(tmp_path, capsys, monkeypatch):
    f = tmp_path / "secret.yaml"
    f.write_text("tp: 1\n")
    real_open = Path.open

    def deny(self, *a, **k):
        if self == f:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *a, **k)
    monkeypatch.setattr(Path, "open", deny)        # as root, chmod 000 would not stop the read
    code, _, err = run(["estimate", "--scenario", str(f), "--model", "llama3-8b", "--hardware", "h100", *JOB],
                       capsys)
    assert code == 2 and "cannot read it (Permission denied)" in one_message(err)


@pytest.mark.parametrize("name", ["../hardware_profiles/h100-sxm5-80gb", "../../etc/passwd", ".h100-sxm5-80gb",
                                  "..", "sub/../h100-sxm5-80gb"])
def test_preset_names_cannot_escape_the_preset_folder(name, capsys):
    code, _, err = estimate(capsys, hardware=name)
    assert code == 2
    one_message(err)


# --- bounded sizes and numbers ------------------------------------------------------------------------------------

def _model_file(tmp_path, **changes) -> Path:
    text = (PRESETS / "llama3-8b.yaml").read_text()
    lines = []
    for line in text.splitlines():
        key = line.split(":")[0].strip()
        lines.append(f"{key}: {changes.pop(key)}" if key in changes and not line.startswith(" ") else line)
    lines += [f"{k}: {v}" for k, v in changes.items()]
    f = tmp_path / "m.yaml"
    f.write_text("\n".join(lines) + "\n")
    return f


@pytest.mark.parametrize("key, value, expected", [
    ("num_layers", "10000000", f"num_layers = 10000000: Input should be less than or equal to {MAX_LAYERS}"),
    ("hidden_size", "99999999999999999999999", "hidden_size = 99999999999999999999999: Input should be less"),
    ("vocab_size", ".inf", "vocab_size = inf"),
    ("num_kv_head", "8", "unknown key 'num_kv_head'; did you mean 'num_kv_heads'?"),
])
def test_model_file_values_out_of_range_are_named(tmp_path, capsys, key, value, expected):
    code, _, err = estimate(capsys, model=str(_model_file(tmp_path, **{key: value})))
    assert code == 2 and expected in one_message(err)


@pytest.mark.parametrize("flag, value, expected", [
    ("--tp", "99999999999999999999", "must be <= 1,048,576"),
    ("--devices", str(MAX_DEVICES + 1), "must be <= 1,048,576"),
    ("--memory-gb", "inf", "'inf' is not a finite number"),
    ("--memory-gb", "nan", "'nan' is not a finite number"),
    ("--memory-gb", "1e400", "'1e400' is not a finite number"),
    ("--seq-len", "1" * 5000, "is not an integer"),
], ids=["tp-int64", "devices-max", "inf", "nan", "1e400", "5000-digits"])
def test_cli_numbers_beyond_their_limits_or_not_finite_are_exit_2(capsys, flag, value, expected):
    argv = ["estimate", "--model", "llama3-8b", "--hardware", "h100", *JOB]
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    code, _, err = run(argv, capsys)
    assert code == 2 and expected in err and "Traceback" not in err
    assert len(err) < 400 and err.startswith("error: ") and "usage:" not in err


def test_yaml_infinities_and_nan_are_refused_in_every_float(tmp_path):
    for value in (".inf", "-.inf", ".nan", ".NaN"):
        f = tmp_path / "hw.yaml"
        f.write_text(f"extends: h100-sxm5-80gb\ndevice: {{memory_bandwidth_tb_per_s: {value}}}\n")
        with pytest.raises(SpecError, match="should be a finite number"):
            load_hardware(str(f))


def test_devices_beyond_the_limit_in_the_python_api_are_a_spec_error():
    with pytest.raises(SpecError, match=r"devices \(2,000,000\) must be between 1 and 1,048,576"):
        Scenario.build("llama3-8b", "h100-sxm5-80gb", devices=2_000_000, global_batch=8, seq_len=2048)


def test_long_bad_values_are_cut_in_messages(tmp_path, capsys):
    f = tmp_path / "m.yaml"
    f.write_text(f"name: {'a' * 100_000}\n")
    code, _, err = estimate(capsys, model=str(f))
    assert code == 2 and "(100,002 characters)" in one_message(err) and len(err) < 2000
    assert "a" * (MAX_QUOTED + 1) not in err


# --- root causes and dtypes --------------------------------------------------------------------------------------

def test_devices_not_divisible_by_the_model_parallel_size_is_one_root_cause(capsys):
    code, _, err = run(["estimate", "--model", "gpt3-175b", "--hardware", "a100", "--devices", "1000", "--tp", "8",
                        "--pp", "8", "--global-batch", "1536", "--seq-len", "2048"], capsys)
    assert code == 2
    msg = one_message(err)
    assert "devices (1,000) is not divisible by tp x pp x cp = 8 x 8 x 1 = 64" in msg and "960 or 1,024" in msg
    assert "global batch" not in msg and "!= devices" not in msg


def test_dtype_without_a_peak_on_the_profile_is_exit_2(capsys):
    code, _, err = estimate(capsys, "--dtype", "fp32", hardware="tpu-v4")
    assert code == 2
    assert "dtype fp32: hardware 'tpu-v4'" in one_message(err) and "has no fp32 peak (it has bf16, int8)" in err


# --- names: aliases, suggestions --------------------------------------------------------------------------------

def test_every_alias_names_a_shipped_profile_and_no_alias_shadows_one():
    names = set(available_profiles())
    assert set(HARDWARE_ALIASES.values()) <= names
    assert not set(HARDWARE_ALIASES) & names


@pytest.mark.parametrize("alias, name", [("a100", "a100-sxm4-80gb"), ("H100", "h100-sxm5-80gb"),
                                         ("h200", "h200-sxm-141gb"), ("b200", "b200"), ("MI300X", "mi300x"),
                                         ("v100", "v100-sxm2-32gb"), ("tpu-v5p", "tpu-v5p"), ("gb200", "gb200-nvl72")])
def test_aliases_and_case_map_to_the_stable_profile_name(alias, name):
    assert load_hardware(alias).name == name


def test_unknown_names_get_the_closest_presets(capsys):
    code, _, err = estimate(capsys, hardware="h100-sxm")     # an alias now; a near miss next
    assert code == 0
    code, _, err = estimate(capsys, hardware="h100-sxm5-80")
    assert code == 2 and "did you mean 'h100-sxm5-80gb'" in one_message(err)
    code, _, err = estimate(capsys, model="llama3-8")
    assert code == 2 and "did you mean 'llama3-8b'" in one_message(err) and "trainsim models" in err


def test_unknown_nested_key_suggests_the_field_of_that_block(tmp_path):
    f = tmp_path / "hw.yaml"
    f.write_text("extends: h100-sxm5-80gb\ndevice: {memry_gb: 96}\n")
    with pytest.raises(SpecError, match=r"unknown key 'device.memry_gb'; did you mean 'memory_gb'\?"):
        load_hardware(str(f))


# --- extends ------------------------------------------------------------------------------------------------------

def test_extends_overrides_only_the_given_fields(tmp_path):
    f = tmp_path / "my-h100.yaml"
    f.write_text("extends: h100\ndevice: {memory_gb: 96}\ntiers: {infiniband-ndr: {bandwidth_gb_per_s: 100}}\n")
    base, hw = load_hardware("h100-sxm5-80gb"), load_hardware(str(f))
    assert hw.name == "my-h100" and hw.device.memory_gb == 96 and hw.tiers[-1].bandwidth_gb_per_s == 100
    assert hw.device.peak_tflops == base.device.peak_tflops and hw.tiers[0] == base.tiers[0]
    assert hw.efficiency == base.efficiency and "extends h100-sxm5-80gb" in hw.notes


def test_extends_chain_relative_path_and_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: h100\nname: a\ndevices_per_node: 4\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\ndevice: {memory_gb: 40}\n")
    hw = load_hardware(str(tmp_path / "b.yaml"))
    assert (hw.name, hw.devices_per_node, hw.device.memory_gb) == ("b", 4, 40)
    (tmp_path / "c.yaml").write_text("extends: d.yaml\n")
    (tmp_path / "d.yaml").write_text("extends: c.yaml\n")
    with pytest.raises(SpecError, match="leads back to itself"):
        load_hardware(str(tmp_path / "c.yaml"))


def test_extends_unknown_tier_suggests_one(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("extends: h100\ntiers: {infiniband: {bandwidth_gb_per_s: 100}}\n")
    with pytest.raises(SpecError, match="did you mean 'infiniband-ndr'"):
        load_hardware(str(f))


def test_presets_still_load_unchanged():
    for name in available_profiles():
        assert load_hardware(name).name == name
    assert load_model("llama3-8b").num_layers == 32


def test_a_preset_whose_name_differs_from_its_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "h1.yaml").write_text((Path(__file__).resolve().parents[1] / "hardware_profiles" /
                                       "h100-sxm5-80gb.yaml").read_text())
    monkeypatch.setenv("TRAINSIM_PROFILES", str(tmp_path))
    with pytest.raises(SpecError, match="differs from the file name"):
        load_hardware("h1")


def test_profile_headers_and_readme_hold_no_machine_path():
    folder = Path(__file__).resolve().parents[1] / "hardware_profiles"
    for f in [*folder.glob("*.yaml"), folder / "README.md"]:
        text = f.read_text(encoding="utf-8")
        assert "/work/" not in text and "/home/" not in text and "/Users/" not in text, f.name
