"""The CLI: JSON keys other tools rely on, exit codes 0/2/3, scenario files, no tracebacks."""
import json
import subprocess
import sys

import pytest

from simulator.cli import main

QUICK = ["estimate", "--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--devices", "1024", "--tp", "8",
         "--pp", "8", "--micro-batch", "1", "--global-batch", "1536", "--seq-len", "2048"]


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_quick_start_json_has_stable_keys(capsys):
    code, out, _ = run(QUICK + ["--format", "json"], capsys)
    assert code == 0
    d = json.loads(out)
    for key in ("mfu", "hfu", "step_time_s", "tokens_per_s", "tflops_per_device", "memory", "fits",
                "time_breakdown_s"):
        assert key in d
    assert "total_bytes" in d["memory"] and d["fits"] is True
    assert 0 < d["mfu"] <= d["hfu"] < 1
    assert d["layout"]["dp"] == 16 and d["num_micro_batches"] == 96
    assert d["tokens_per_s"] == pytest.approx(1536 * 2048 / d["step_time_s"])
    assert sum(d["time_breakdown_s"].values()) == pytest.approx(d["step_time_s"], rel=1e-9)


def test_table_output(capsys):
    code, out, _ = run(QUICK, capsys)
    assert code == 0 and "MFU" in out and "step time breakdown" in out


def test_csv_output_has_header_and_one_row(capsys):
    code, out, _ = run(QUICK + ["--format", "csv"], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2 and "mfu" in lines[0].split(",")


def test_unknown_model_lists_available(capsys):
    code, _, err = run(["estimate", "--model", "gpt-9", "--hardware", "a100-sxm4-80gb", "--devices", "8",
                        "--global-batch", "8"], capsys)
    assert code == 2 and "unknown model 'gpt-9'" in err and "gpt3-175b" in err


def test_bad_flag_value_exits_2(capsys):
    assert main(QUICK[:-2] + ["--seq-len", "-5"]) == 2
    assert "--seq-len" in capsys.readouterr().err


def test_missing_inputs_named(capsys):
    code, _, err = run(["estimate", "--model", "gpt3-175b"], capsys)
    assert code == 2 and "--hardware" in err and "--devices" in err and "--global-batch" in err


@pytest.mark.parametrize("job, expected", [
    (["--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--devices", "1000", "--tp", "7", "--pp", "8", "--dp",
      "16", "--global-batch", "1536", "--seq-len", "2048"],
     ["!= devices (1000)", "tp (7) must divide the attention heads (96)"]),
    (["--model", "llama3-405b", "--hardware", "h100-sxm5-80gb", "--devices", "16384", "--tp", "8", "--pp", "16",
      "--vpp", "8", "--global-batch", "2048", "--seq-len", "8192"],
     ["exceed the 126 layers"]),
])
def test_infeasible_layout_lists_every_reason_exit_3(capsys, job, expected):
    """Exit 3 with every reason; memory still reported; a layout that cannot be formed has no step time or MFU
    (null, not figures from an impossible split such as an MFU above 100%)."""
    code, out, err = run(["estimate", *job, "--format", "json"], capsys)
    assert code == 3
    d = json.loads(out)
    assert d["memory"]["total_bytes"] > 0       # memory still reported
    assert d["runnable"] is False and d["mfu"] is None and d["step_time_s"] is None
    assert all(v is None for v in d["time_breakdown_s"].values())
    reasons = " | ".join(d["reasons"])
    assert all(e in reasons and e in err for e in expected)


def test_scenario_file_and_flag_override(tmp_path, capsys):
    f = tmp_path / "run.yaml"
    f.write_text("model: gpt3-175b\nhardware: a100-sxm4-80gb\ndevices: 1024\nglobal_batch: 1536\nseq_len: 2048\n"
                 "tp: 8\npp: 16\nmicro_batch: 1\n")
    code, out, _ = run(["estimate", "--scenario", str(f), "--pp", "8", "--format", "json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["layout"]["pp"] == 8 and d["layout"]["tp"] == 8
    assert f.read_text().startswith("model: gpt3-175b")     # never overwritten


def test_scenario_typo_names_the_key(tmp_path, capsys):
    f = tmp_path / "run.yaml"
    f.write_text("model: gpt3-175b\nhardwre: a100-sxm4-80gb\n")
    code, _, err = run(["estimate", "--scenario", str(f)], capsys)
    assert code == 2 and "hardwre" in err


def test_bad_profile_yaml_value_names_field(tmp_path, capsys):
    from simulator.specs.loading import load_hardware
    import yaml
    d = load_hardware("a100-sxm4-80gb").model_dump()
    d["device"]["memory_gb"] = -80
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(d))
    code, _, err = run(["estimate", "--model", "gpt3-175b", "--hardware", str(f), "--devices", "8",
                        "--global-batch", "8", "--seq-len", "2048"], capsys)
    assert code == 2 and "device.memory_gb" in err and "-80" in err


def test_python_m_simulator_runs():
    r = subprocess.run([sys.executable, "-m", "simulator", "models"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "gpt3-175b" in r.stdout


@pytest.mark.parametrize("model,hw,extra", [
    ("mixtral-8x7b", "h100-sxm5-80gb", ["--devices", "64", "--tp", "2", "--pp", "2", "--ep", "8",
                                        "--global-batch", "256", "--seq-len", "4096"]),
    ("llama2-70b", "tpu-v5p", ["--devices", "512", "--tp", "8", "--pp", "1", "--zero", "3", "--global-batch",
                               "512", "--seq-len", "4096"]),
    ("llama2-70b", "ascend-910b", ["--devices", "256", "--tp", "8", "--pp", "4", "--global-batch", "256",
                                   "--seq-len", "4096", "--recompute", "full"]),
])
def test_moe_tpu_ascend_answer_with_result_or_reasons(model, hw, extra, capsys):
    code, out, _ = run(["estimate", "--model", model, "--hardware", hw, "--format", "json", *extra], capsys)
    assert code in (0, 3)
    d = json.loads(out)
    assert d["step_time_s"] > 0 and 0 < d["mfu"] < 1


def test_explicit_stage_layers_must_hold_every_layer(tmp_path, capsys):
    f = tmp_path / "run.yaml"
    f.write_text("model: gpt3-175b\nhardware: a100-sxm4-80gb\ndevices: 1024\nglobal_batch: 1536\nseq_len: 2048\n"
                 "tp: 8\npp: 4\nstage_layers: [24, 24, 24, 23]\n")
    code, _, err = run(["estimate", "--scenario", str(f)], capsys)
    assert code == 2 and "sums to 95" in err and "96 layers" in err
    f.write_text("model: gpt3-175b\nhardware: a100-sxm4-80gb\ndevices: 1024\nglobal_batch: 1536\nseq_len: 2048\n"
                 "tp: 8\npp: 4\nstage_layers: [23, 25, 25, 23]\n")
    code, out, _ = run(["estimate", "--scenario", str(f), "--format", "json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["stage_layers"] == {"first": 23, "middle": 25, "last": 23}
