"""estimate echoes its inputs and trains T tokens; progress bars only on stderr and only when asked (or on a
terminal); compare --budget rents a device count that factors well (issue 12, items 3 and 8)."""
from __future__ import annotations

import json

import pytest

from simulator.cli import main
from simulator.planning.compare import budget_device_counts, compare
from simulator.planning.search import search
from simulator.specs.loading import load_hardware

EST = ["estimate", "--model", "llama2-7b", "--hardware", "h100-sxm5-80gb", "--devices", "64", "--global-batch",
       "512", "--seq-len", "4096"]


def run(args, capsys):
    code = main([str(a) for a in args])
    o = capsys.readouterr()
    return code, o.out, o.err


def test_estimate_echoes_inputs_in_json_and_table(capsys):
    code, out, _ = run(EST + ["--format", "json"], capsys)
    d = json.loads(out)
    assert d["inputs"] == {"seq_len": 4096, "global_batch": 512, "micro_batch": 1, "num_micro_batches": 8,
                           "dtype": "bf16", "schedule": "1f1b", "framework": "megatron-core"}
    code, out, _ = run(EST, capsys)
    assert "seq 4,096  global batch 512  micro-batch 1 (8 per replica)  bf16  1f1b" in out


def test_estimate_tokens_gives_time_cost_and_energy_by_hand(capsys):
    code, out, _ = run(EST + ["--tokens", "2T", "--format", "json"], capsys)
    d = json.loads(out)
    t = d["to_train"]
    time_s = 2e12 / d["tokens_per_s"]
    assert t["time_s"] == pytest.approx(time_s, rel=1e-12)
    assert t["cost_usd"] == pytest.approx(64 * 3.24 * time_s / 3600, rel=1e-12)          # H100 $3.24/device-h
    assert t["energy_kwh"] == pytest.approx(64 * 700 * time_s / 3600 / 1000, rel=1e-12)  # 700 W board power
    code, out, _ = run(EST + ["--tokens", "2T"], capsys)
    assert "2T tokens:" in out and "days" in out and "kWh" in out


@pytest.mark.parametrize("bad", ["inf", "1e400", "0", "-3B"])
def test_tokens_must_be_a_finite_positive_count(capsys, bad):
    code, _, err = run(EST + ["--tokens", bad], capsys)
    assert code == 2 and err.startswith("error: ")


def test_progress_bars_go_to_stderr_only_and_only_when_asked(capsys):
    sim = ["simulate", "--model", "llama2-7b", "--hardware", "a100-sxm4-80gb", "--devices", "16", "--pp", "2",
           "--global-batch", "32", "--seq-len", "2048", "--samples", "3", "--jitter", "0.05", "--format", "json"]
    code, out, err = run(sim, capsys)              # not a terminal, not asked: no bar
    assert code == 0 and err == ""
    code, out, err = run(sim + ["--progress"], capsys)
    assert code == 0 and "3/3" in err and "replays" in err
    json.loads(out)                                 # stdout is still one JSON document


def test_budget_device_counts_by_hand():
    # A100 at $1.99/device-h, 8 per node: $3,996/h rents 2,008 (the odd count, pp 77); the counts that
    # factor well within it: 8 x 2^7 = 1,024, 24 x 2^6 = 1,536, 40 x 2^5 = 1,280
    hw = load_hardware("a100-sxm4-80gb")
    assert budget_device_counts(hw, 3996.0, 1.99) == [1536, 1280, 1024]
    assert budget_device_counts(hw, 10.0, 1.99) == []                   # less than one node


def test_compare_budget_keeps_the_count_with_the_best_layout():
    res = compare("llama2-7b", ["a100-sxm4-80gb"], global_batch=96, seq_len=2048, budget_per_hour=200.0)
    row = res.frame.iloc[0]
    assert row["devices"] in (64, 80, 96) and row["feasible"]          # within 100 devices ($200 / $1.99)
    for n in (64, 80, 96):
        best = search("llama2-7b", "a100-sxm4-80gb", n, 96, 2048, reasons=False).best
        assert best is None or row["tokens_per_s"] >= float(best["tokens_per_s"]) - 1e-9
    assert res.meta()["budget_per_hour"] == 200.0
