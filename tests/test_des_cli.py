"""`trainsim simulate`: results, trace and Gantt files, exit codes."""
from __future__ import annotations

import json

import pytest

from simulator.cli import main

README_175B = ["simulate", "--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--devices", "1024", "--tp", "8",
               "--pp", "8", "--micro-batch", "1", "--global-batch", "1536", "--seq-len", "2048"]


def test_readme_case_prints_results_and_writes_a_trace_with_one_process_per_stage(tmp_path, capsys):
    trace, gantt = tmp_path / "step.json", tmp_path / "step.png"
    assert main(README_175B + ["--trace", str(trace), "--gantt", str(gantt)]) == 0
    out = capsys.readouterr().out
    assert "des" in out and "MFU / HFU" in out and "pipeline stages" in out
    data = json.loads(trace.read_text())
    events = data["traceEvents"]
    pids = {e["pid"] for e in events}
    assert len(pids) == 8
    names = {(e["pid"], e["args"]["name"]) for e in events if e["name"] == "thread_name"}
    assert {n for _, n in names} >= {"compute", "pp", "dp"}
    assert all(sum(1 for p, _ in names if p == pid) >= 3 for pid in pids)
    spans = [e for e in events if e["ph"] == "X"]
    assert sum(1 for e in spans if e["cat"] in ("F", "B")) == 8 * 96 * 2        # every pass of every stage
    assert max(e["ts"] + e["dur"] for e in spans) <= data["otherData"]["step_time_s"] * 1e6 * (1 + 1e-9)
    assert gantt.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_trace_file_is_compact_json_holding_exactly_the_chrome_trace_of_the_replay(tmp_path, capsys):
    """The CLI writes chrome_trace() of the replay's timeline as one compact JSON text (no spaces after separators:
    issue #13), nothing added or lost."""
    from simulator import Scenario
    from simulator.crosscheck import simulate
    from simulator.des.trace import chrome_trace

    trace = tmp_path / "step.json"
    argv = ["simulate", "--model", "llama2-7b", "--hardware", "h100-sxm5-80gb", "--devices", "32", "--tp", "2",
            "--pp", "4", "--micro-batch", "1", "--global-batch", "32", "--seq-len", "2048"]
    assert main(argv + ["--trace", str(trace), "--format", "json"]) == 0
    text = trace.read_text()
    assert ", " not in text and '": ' not in text
    sc = Scenario.build("llama2-7b", "h100-sxm5-80gb", devices=32, tp=2, pp=4, micro_batch=1, global_batch=32,
                        seq_len=2048)
    events = chrome_trace(simulate(sc).timeline)["traceEvents"]
    assert json.loads(text)["traceEvents"] == events and len(events) > 100


def test_json_output_has_the_estimate_keys_and_the_replay_extras(capsys):
    assert main(README_175B + ["--format", "json", "--overlap", "off", "--contention", "off"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("mfu", "hfu", "step_time_s", "tokens_per_s", "tflops_per_device", "memory", "fits",
                "time_breakdown_s", "stages", "num_events", "analytic", "delta_vs_analytic_s"):
        assert key in d
    assert d["engine"] == "des" and d["overlap"] is False
    assert d["step_time_s"] == pytest.approx(d["analytic"]["step_time_s"], rel=1e-12)   # flags off on both sides


def test_samples_report_percentiles(capsys):
    assert main(README_175B + ["--format", "json", "--samples", "5", "--jitter", "0.05", "--seed", "2",
                               "--stragglers", "0.001", "--straggler-slowdown", "1.3"]) == 0
    d = json.loads(capsys.readouterr().out)
    p = d["step_time_percentiles_s"]
    assert d["samples"] == 5 and p["p50"] <= p["p99"] and d["stragglers"] == {"fraction": 0.001, "slowdown": 1.3}


def test_bad_input_exits_2_naming_the_flag(capsys):
    assert main(README_175B + ["--jitter", "2"]) == 2
    assert "--jitter" in capsys.readouterr().err


def test_bad_stage_layers_exit_2(tmp_path, capsys):
    sc = tmp_path / "sc.yaml"
    sc.write_text("stage_layers: [10, 10, 10]\n")
    assert main(["simulate", "--scenario", str(sc), "--model", "llama2-7b", "--hardware", "a100-sxm4-80gb",
                 "--devices", "8", "--global-batch", "8", "--tp", "2", "--pp", "4"]) == 2
    assert "stage_layers" in capsys.readouterr().err


def test_infeasible_layout_exits_3_with_every_reason(capsys):
    args = README_175B.copy()
    args[args.index("--devices") + 1] = "1000"
    assert main(args + ["--dp", "16", "--vpp", "2"]) == 3
    err = capsys.readouterr().err
    assert "!= devices (1000)" in err
