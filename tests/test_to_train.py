"""Ranking by the time or cost to train T tokens with goodput (planning.to_train): the vectorised wall clock equals
plan()'s for each layout, the search and compare orders, and the CLI flags."""
import json

import numpy as np
import pytest

from simulator.cli import main
from simulator.errors import SpecError
from simulator.planning import goodput as gp
from simulator.planning.compare import compare
from simulator.planning.search import search
from simulator.planning.to_train import rank_compare, rank_search

# a MegaScale-like job where failures matter: 12,288 A100, Llama 3's failure rate -> MTBF ~4 h
JOB = dict(model="gpt3-175b", hardware="a100-sxm4-80gb", devices=12288, global_batch=6144, seq_len=2048)
SPACE = {"tp": [8], "pp": [8, 16], "micro_batch": [1, 2], "zero": [1], "recompute": ["selective", "full"]}


@pytest.fixture(scope="module")
def ranked():
    res = search(JOB["model"], JOB["hardware"], JOB["devices"], JOB["global_batch"], JOB["seq_len"],
                 constraints=SPACE, price_per_hour=2.0)
    return res, rank_search(res, 300e9, "time-to-train", "megascale-12k")


def test_the_wall_clock_of_each_layout_equals_plan(ranked):
    """Two derivations: the vectorised wall clock of the ranked search and plan() of the row's scenario."""
    _, r = ranked
    for i in (0, r.num_feasible - 1):
        row = r.frame.iloc[i]
        p = gp.plan(r.scenario(row), 300e9, "megascale-12k", price_per_hour_usd=2.0)
        assert row["train_wall_clock_s"] == pytest.approx(p.wall_clock_s, rel=1e-12)
        assert row["train_goodput"] == pytest.approx(p.goodput, rel=1e-12)
        assert row["train_cost_usd"] == pytest.approx(p.cost_usd, rel=1e-12)
        assert row["train_compute_s"] == pytest.approx(300e9 / row["tokens_per_s"], rel=1e-12)
    assert 0.8 < r.frame["train_goodput"].iloc[0] < 1.0                    # failures every few hours cost time


def test_feasible_rows_are_reranked_by_wall_clock(ranked):
    plain, r = ranked
    f = r.feasible
    assert len(f) == plain.num_feasible and r.objective == "time-to-train"
    assert np.all(np.diff(f["train_wall_clock_s"].to_numpy()) >= 0)
    assert f["rank"].tolist() == list(range(1, len(f) + 1))
    assert r.frame[~r.frame["feasible"]]["train_wall_clock_s"].isna().all()


def test_cost_to_train_needs_a_price_and_tokens():
    res = search("llama2-7b", "mi300x", 8, 16, 4096, constraints={"tp": [1], "pp": [1]})
    with pytest.raises(SpecError, match="needs a price"):
        rank_search(res, 1e12, "cost-to-train")
    with pytest.raises(SpecError, match="tokens"):
        rank_search(res, None, "time-to-train")


def test_compare_orders_profiles_by_time_to_train_with_goodput():
    res = compare("llama2-7b", ["a100-sxm4-80gb", "h100-sxm5-80gb"], devices=64, global_batch=128, seq_len=4096,
                  tokens=1e12, constraints={"tp": [1, 2], "pp": [1]})
    r = rank_compare(res, "time-to-train")
    f = r.frame
    assert list(f["hardware"]) == ["h100-sxm5-80gb", "a100-sxm4-80gb"]
    assert np.all(f["train_wall_clock_s"] >= f["time_to_train_s"])
    row = f.iloc[0]
    assert row["train_cost_usd"] == pytest.approx(64 * row["price_per_hour_usd"] * row["train_wall_clock_s"] / 3600)
    assert "llama3-405b-16k" in r.notes[-1]


def test_cli_rank_by_flags(capsys):
    args = ["search", "--model", "llama2-7b", "--hardware", "h100-sxm5-80gb", "--devices", "8", "--global-batch",
            "16", "--seq-len", "4096", "--tp", "1,2", "--pp", "1"]
    assert main(args + ["--tokens", "1T", "--rank-by", "cost-to-train", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["objective"] == "cost-to-train" and d["candidates"][0]["train_cost_usd"] > 0
    assert main(args + ["--tokens", "1T"]) == 2
    assert "goes with --rank-by" in capsys.readouterr().err
