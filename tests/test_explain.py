"""`trainsim estimate --explain`: every number of the output with the quantity it sums, the function that computes it
and that function's Source line, for the README quick-start case and an MoE case."""
import inspect
import json

import pytest

from simulator.analytic.explain import REGISTRY, explain, source_of
from simulator.cli import main

QUICK = ["estimate", "--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--devices", "1024", "--tp", "8",
         "--pp", "8", "--micro-batch", "1", "--global-batch", "1536", "--seq-len", "2048"]
MOE = ["estimate", "--model", "mixtral-8x7b", "--hardware", "h100-sxm5-80gb", "--devices", "64", "--tp", "2",
       "--pp", "4", "--ep", "8", "--global-batch", "128", "--seq-len", "4096"]
SCALARS = ("step_time_s", "mfu", "hfu", "tokens_per_s", "tflops_per_device")


def _json(args, capsys) -> dict:
    assert main(args + ["--format", "json", "--explain"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("args", [QUICK, MOE], ids=["readme-quick-start", "mixtral-moe"])
def test_every_number_has_a_quantity_a_function_and_a_source(args, capsys):
    d = _json(args, capsys)
    rows = {r["field"]: r for r in d["explain"]}
    wanted = ([*SCALARS] + [f"time_breakdown_s.{k}" for k in d["time_breakdown_s"]]
              + [f"memory.{k}" for k in d["memory"]])
    assert set(wanted) <= set(rows)
    for f in wanted:
        r = rows[f]
        head, _, key = f.partition(".")
        assert r["value"] == (d[head][key] if key else d[head]), f
        assert r["quantity"] and r["functions"], f
        for fn in r["functions"]:
            assert fn["name"].startswith("simulator.") and fn["source"], (f, fn)


def test_the_moe_case_explains_its_all_to_alls(capsys):
    d = _json(MOE, capsys)
    ep = {r["field"]: r for r in d["explain"]}["time_breakdown_s.ep_comm"]
    assert ep["value"] > 0
    assert [f["name"] for f in ep["functions"]] == ["simulator.costs.communication.ep_exposed_s"]
    assert "Megatron-Core" in ep["functions"][0]["source"]


def test_the_table_lists_every_row(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(QUICK + ["--explain"]) == 0
    out = capsys.readouterr().out
    assert "where each number comes from" in out
    for e in REGISTRY:
        assert e.path in out, e.path
    assert "metrics.mfu: PaLM (arXiv 2204.02311) App. B." in out


def test_explain_without_explain_is_the_plain_output(capsys):
    assert main(QUICK + ["--format", "json"]) == 0
    assert "explain" not in json.loads(capsys.readouterr().out)


def test_csv_explain_is_refused_with_a_message(capsys):
    assert main(QUICK + ["--format", "csv", "--explain"]) == 2
    assert "--explain" in capsys.readouterr().err


def test_every_registered_function_cites_a_source():
    fns = {fn for e in REGISTRY for fn in e.functions}
    missing = [f"{fn.__module__}.{fn.__qualname__}" for fn in fns if not source_of(fn)]
    assert missing == []


def test_source_of_reads_the_whole_source_paragraph():
    def f():
        """Does a thing.

        Source: first line
        second line.

        Not part of it."""
    assert source_of(f) == "first line second line."
    assert inspect.getdoc(f)


def test_explain_of_a_result_follows_the_registry_order():
    import simulator as ts
    sc = ts.Scenario.build("llama2-7b", "a100-sxm4-80gb", devices=8, global_batch=64, seq_len=2048)
    rows = explain(ts.estimate(sc))
    assert [r["field"] for r in rows] == [e.path for e in REGISTRY]
