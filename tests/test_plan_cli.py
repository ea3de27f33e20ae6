"""`trainsim plan`: JSON keys, table output, exit codes 2 (bad input) and 3 (infeasible)."""
import argparse
import json

import pytest

from simulator.cli import main
from simulator.cli.plan import token_count

JOB = ["plan", "--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--devices", "1024", "--tp", "8", "--pp", "8",
       "--global-batch", "1536", "--seq-len", "2048"]


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_json_has_goodput_interruptions_days_cost_energy(capsys):
    code, out, _ = run(JOB + ["--run-preset", "megascale-12k", "--tokens", "300B", "--samples", "20", "--seed", "3",
                              "--format", "json"], capsys)
    assert code == 0
    d = json.loads(out)
    for key in ("goodput", "unexpected_interruptions", "planned_interruptions", "wall_clock_days", "cost_usd",
                "energy_mwh", "checkpoint", "restart", "time_breakdown_s", "samples"):
        assert key in d
    assert d["tokens"] == 300e9 and d["checkpoint"]["mode"] == "async"
    assert d["samples"]["samples"] == 20 and d["samples"]["seed"] == 3
    assert 0 < d["goodput"] < 1


def test_plan_table_and_flag_overrides(capsys):
    code, out, _ = run(JOB + ["--run-preset", "megascale-12k", "--days", "7", "--sync-checkpoint",
                              "--storage-write-gb-per-s", "100", "--checkpoint-interval", "3600"], capsys)
    assert code == 0 and "goodput" in out and "sync" in out and "wall-clock breakdown" in out


def test_plan_from_flags_without_a_preset(capsys):
    code, out, _ = run(JOB + ["--failure-rate", "2e-5", "--storage-write-gb-per-s", "50", "--tokens", "1T",
                              "--format", "json"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["run"] == "custom" and d["mtbf_s"] == pytest.approx(3600 / (2e-5 * 1024))


@pytest.mark.parametrize("extra, message", [
    (["--run-preset", "megascale-12k"], "--tokens"),
    (["--tokens", "1T"], "--run-preset, or both --failure-rate and --storage-write-gb-per-s"),
    (["--run-preset", "nope", "--tokens", "1T"], "unknown run preset 'nope'"),
])
def test_bad_input_exits_2_with_a_message(capsys, extra, message):
    code, _, err = run(JOB + extra, capsys)
    assert code == 2 and message in err


def test_infeasible_layout_exits_3(capsys):
    args = ["plan", "--model", "llama3-405b", "--hardware", "h100-sxm5-80gb", "--devices", "64", "--tp", "8",
            "--global-batch", "64", "--seq-len", "8192", "--run-preset", "llama3-405b-16k", "--tokens", "1B",
            "--format", "json"]
    code, out, err = run(args, capsys)
    assert code == 3 and "GB per device" in err


def test_token_counts_take_suffixes():
    assert token_count("15.6T") == 15.6e12 and token_count("300B") == 300e9 and token_count("2e6") == 2e6
    with pytest.raises(argparse.ArgumentTypeError):
        token_count("lots")
