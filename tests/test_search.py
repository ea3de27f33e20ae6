"""Layout search: hand-counted enumeration, ranking invariants, reasons that match describe(), constraints,
nothing-fits diagnostics, refinement, and the GPT-3 175B / 1,024 A100 acceptance case."""
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

import simulator as ts
from simulator.analytic import step as S
from simulator.analytic.estimate import estimate
from simulator.analytic.reasons import describe
from simulator.errors import SpecError
from simulator.planning.search import (LAYOUT_COLUMNS, SearchSpace, enumerate_layouts, pareto_front, refine_with_des,
                              search)
from simulator.specs.model import MoESpec
from simulator.specs.training import TrainingSpec

from .conftest import gpt, toy_hardware


def toy_search(**kw):
    kw.setdefault("devices", 4)
    kw.setdefault("global_batch", 4)
    kw.setdefault("seq_len", 128)
    model = kw.pop("model", gpt())
    hw = kw.pop("hardware", toy_hardware())
    return search(model, hw, **kw)


# ---- enumeration -------------------------------------------------------------------------------------------

def test_tiny_space_has_the_hand_counted_180_candidates():
    # 4 devices, 4 layers, 8 heads, batch 4, seq 128. (tp, pp, cp) with tp*pp*cp | 4: 10 triples.
    # product 1 (dp 4): mb {1} x 12 (zero x recompute)                                   = 12
    # product 2 (dp 2): mb {1,2}; x12; pp=2 adds vpp 2 (interleaved): 24 + 48 + 24      = 96
    # product 4 (dp 1): mb {1,2,4} x 3 recompute (one ZeRO stage at dp 1);
    #   (4,1,1) (1,4,1) (1,1,4) (2,1,2): 9 each; (2,2,1) (1,2,2) with vpp 2: 18 each    = 72
    r = toy_search()
    assert r.num_candidates == 180
    assert r.frame["dp"].eq(1).sum() == 72


def test_narrow_space_count_with_one_zero_stage_and_one_recompute():
    # one (zero, recompute) pair: 1 + (2 + 4 + 2) + (3 + 3 + 3 + 6 + 3 + 6) = 33
    r = toy_search(constraints={"zero": [1], "recompute": ["none"]})
    assert r.num_candidates == 33
    assert set(r.frame["zero"]) == {1} and set(r.frame["recompute"].astype(str)) == {"none"}


def test_candidates_are_distinct_and_fill_the_cluster():
    r = toy_search()
    f = r.frame
    assert not f.duplicated(list(LAYOUT_COLUMNS)).any()
    assert (f["tp"] * f["pp"] * f["dp"] * f["cp"] == 4).all()
    assert (f["sequence_parallel"] == (f["tp"] > 1)).all()
    inter = f["schedule"].astype(str) == "interleaved"
    assert ((f["vpp"] > 1) == inter).all()
    assert (4 % (f["pp"] * f["vpp"]) == 0).all()


def test_gpipe_and_zb_h1_only_on_request_and_one_schedule_without_a_pipeline():
    r = toy_search(constraints={"schedule": ["gpipe", "1f1b", "zb-h1"], "zero": [1], "recompute": ["none"]})
    f = r.frame
    assert set(f.loc[f["pp"] == 1, "schedule"].astype(str)) == {"1f1b"}
    assert set(f.loc[f["pp"] > 1, "schedule"].astype(str)) == {"gpipe", "1f1b", "zb-h1"}
    assert set(toy_search().frame["schedule"].astype(str)) == {"1f1b", "interleaved"}


def test_moe_expert_parallel_degrees_divide_dp_and_experts():
    moe = gpt(name="moe-test", moe=MoESpec(num_experts=4, top_k=2, expert_ffn_hidden_size=512))
    r = toy_search(model=moe, devices=8, global_batch=8, constraints={"zero": [1], "recompute": ["none"]})
    f = r.frame
    assert set(f["ep"]) == {1, 2, 4}
    assert (f["dp"] % f["ep"] == 0).all() and (4 % f["ep"] == 0).all()


def test_divisors_bound_the_axes_of_a_large_cluster():
    m = ts.load_model("gpt3-175b")
    t = enumerate_layouts(m, TrainingSpec(seq_len=2048, global_batch=1536), 1024)
    assert t.tp.max() <= 96 and t.pp.max() <= 96 and (1024 % t.tp == 0).all()
    assert (t.micro_batch * t.dp <= 1536).all()


# ---- ranking and reasons --------------------------------------------------------------------------------------

@pytest.mark.parametrize("objective", ["throughput", "memory"])
def test_feasible_rows_come_first_in_objective_order(objective):
    r = toy_search(objective=objective, devices=8, global_batch=16)
    f = r.frame
    n = r.num_feasible
    assert 0 < n < len(f)
    assert f["feasible"].iloc[:n].all() and not f["feasible"].iloc[n:].any()
    assert (f["feasible"] == (f["reasons"] == 0)).all()
    assert list(f["rank"].iloc[:n]) == list(range(1, n + 1)) and f["rank"].iloc[n:].isna().all()
    key = f["tokens_per_s"] if objective == "throughput" else -f["mem_total_bytes"]
    assert (np.diff(key.iloc[:n].to_numpy()) <= 1e-9 * key.abs().max()).all()


def test_infeasible_rows_closest_to_fitting_come_first():
    r = toy_search(hardware=toy_hardware(), devices=8, global_batch=16)
    inf = r.frame[~r.frame["feasible"]]
    mem_only = (inf["reasons"] == S.R_MEMORY).to_numpy()
    # memory-only failures first, by memory needed
    assert not (np.diff(mem_only.astype(int)) > 0).any()
    m = inf.loc[mem_only, "mem_total_bytes"].to_numpy()
    assert (np.diff(m) >= 0).all()


def test_vectorized_reason_text_equals_describe_for_every_kind():
    # 6 heads and 5 devices' worth of odd numbers produce heads, batch, interleave, cp and memory reasons
    m = gpt(layers=6, heads=6, hidden=384)
    hw = toy_hardware()
    r = search(m, hw, 12, 18, 100, constraints={"recompute": ["none"]})
    f = r.frame
    inf = f[~f["feasible"]]
    kinds = inf.drop_duplicates("reasons")
    assert len(kinds) >= 4
    for _, row in kinds.iterrows():
        want = describe(int(row["reasons"]), m, r.training, 12, row, row)
        assert row["reason"] == "; ".join(want)
    assert (f.loc[f["feasible"], "reason"] == "").all()


def test_search_row_equals_the_scalar_estimate_of_its_scenario():
    r = toy_search(devices=8, global_batch=16)
    for i in (0, 3):
        row = r.frame.iloc[i]
        est = estimate(r.scenario(row))
        assert est.step_time_s == pytest.approx(row["step_time_s"], rel=1e-12)
        assert est.to_dict()["memory"]["total_bytes"] == pytest.approx(row["mem_total_bytes"], rel=1e-12)


def test_cost_objective_ranks_by_usd_per_token():
    r = toy_search(objective="cost", price_per_hour=2.0, devices=8, global_batch=16)
    top = r.top(5)
    want = 8 * 2.0 / 3600 / top["tokens_per_s"] * 1e6
    assert np.allclose(top["usd_per_million_tokens"], want)
    assert top["usd_per_million_tokens"].is_monotonic_increasing


def test_pareto_front_points_are_not_dominated():
    r = toy_search(devices=8, global_batch=16)
    front = pareto_front(r.frame)
    feas = r.feasible
    for _, p in front.iterrows():
        better = (feas["mem_total_bytes"] <= p["mem_total_bytes"]) & (feas["tokens_per_s"] > p["tokens_per_s"])
        assert not better.any()
    # every feasible point is matched or beaten by a front point
    for _, q in feas.sample(20, random_state=0).iterrows():
        assert ((front["mem_total_bytes"] <= q["mem_total_bytes"]) & (front["tokens_per_s"] >= q["tokens_per_s"])).any()


# ---- constraints and bad input ----------------------------------------------------------------------------

def test_max_and_list_constraints_restrict_the_space():
    r = toy_search(devices=8, global_batch=16, constraints={"max_tp": 2, "pp": [1, 2], "zero": [0, 3]})
    f = r.frame
    assert f["tp"].max() <= 2 and set(f["pp"]) <= {1, 2} and set(f["zero"]) <= {0, 3}


@pytest.mark.parametrize("constraints, needle", [
    ({"tp": [8], "max_tp": 4}, "contradicts max_tp 4"),
    ({"schedule": ["interleaved"], "vpp": [1]}, "needs vpp > 1"),
    ({"schedule": ["1f1b"], "vpp": [2]}, "needs the 'interleaved' schedule"),
    ({"zero": [5]}, "zero stages [5]"),
    ({"tpp": [2]}, "unknown key 'tpp'"),
])
def test_contradictory_constraints_are_spec_errors(constraints, needle):
    with pytest.raises(SpecError, match=None) as e:
        toy_search(constraints=constraints)
    assert needle in str(e.value)


@pytest.mark.parametrize("constraints, needle", [
    ({"tp": [3]}, "no tp divides the 4 devices"),
    ({"ep": [2]}, "needs an MoE model"),
    ({"dp": [3]}, "no tp x pp x cp x dp product equals the 4 devices"),
    ({"micro_batch": [8]}, "no micro-batch size"),
])
def test_empty_space_names_the_axis_that_ran_out(constraints, needle):
    with pytest.raises(SpecError) as e:
        toy_search(constraints=constraints)
    assert needle in str(e.value)


def test_cost_objective_without_a_price_is_a_spec_error():
    with pytest.raises(SpecError, match="needs a price"):
        toy_search(objective="cost")


def test_nothing_fits_says_what_the_closest_candidate_needs():
    big = gpt(layers=8, hidden=8192, heads=64, vocab=50000)
    r = search(big, toy_hardware(), 4, 4, 2048)
    assert r.num_feasible == 0 and r.best is None
    msg = r.no_fit_message()
    cl = r.closest(1).iloc[0]
    assert f"needs {cl['mem_total_bytes'] / 1e9:,.1f} GB per device vs 10.0 GB available" in msg
    assert cl["mem_total_bytes"] == r.frame.loc[r.frame["reasons"] == S.R_MEMORY, "mem_total_bytes"].min()
    assert r.short_status().startswith("nothing fits: needs >=")


# ---- refinement -------------------------------------------------------------------------------------------------

def test_refine_reranks_the_best_k_by_the_second_engine():
    r = toy_search(devices=8, global_batch=16)
    k = 4
    top_ids = list(r.top(k).index)
    slow = {i: 1.0 + 0.5 * j for j, i in enumerate(reversed(top_ids))}   # reverse the analytic order

    def fake(scenario):
        row = r.frame[(r.frame[list(LAYOUT_COLUMNS[:8])] == [getattr(scenario.layout, c) for c in LAYOUT_COLUMNS[:8]]).all(axis=1)
                      & (r.frame["recompute"].astype(str) == scenario.layout.recompute)
                      & (r.frame["schedule"].astype(str) == scenario.layout.resolved_schedule)]
        return {"step_time_s": float(row["step_time_s"].iloc[0]) * slow[row.index[0]]}

    rr = refine_with_des(r, k, fake)
    head = rr.frame.head(k)
    assert rr.engine == "analytic+des"
    assert head["des_step_time_s"].is_monotonic_increasing
    assert list(head["rank"]) == [1, 2, 3, 4]
    assert head["des_mfu"].to_numpy() == pytest.approx((head["mfu"] * head["step_time_s"] / head["des_step_time_s"]).to_numpy())
    assert rr.frame["des_step_time_s"].iloc[k:].isna().all()
    assert len(rr.frame) == len(r.frame)


@pytest.mark.skipif(importlib.util.find_spec("simulator.des.api") is not None, reason="DES engine present")
def test_refine_without_the_des_engine_is_a_clear_error():
    with pytest.raises(SpecError, match="discrete-event engine"):
        toy_search(refine=2)


@pytest.mark.skipif(importlib.util.find_spec("simulator.des.api") is None, reason="DES engine not built yet")
def test_refine_with_the_des_engine_fills_des_columns():
    r = toy_search(devices=8, global_batch=16, refine=2)
    assert r.frame["des_step_time_s"].iloc[:2].notna().all()


# ---- public API, CLI and the acceptance case ----------------------------------------------------------------------

def test_public_api_search_is_callable_after_the_module_is_imported():
    import simulator.planning.search  # noqa: F401
    r = ts.search(gpt(), toy_hardware(), 4, 4, 128)
    assert r.num_candidates == 180


def test_gpt3_175b_on_1024_a100_beats_megatron_tp8_pp8():
    r = search("gpt3-175b", "a100-sxm4-80gb", 1024, 1536, 2048)
    megatron = estimate(ts.Scenario.build("gpt3-175b", "a100-sxm4-80gb", devices=1024, global_batch=1536,
                                          seq_len=2048, tp=8, pp=8, micro_batch=1))
    best = r.best
    assert best["tokens_per_s"] >= megatron.tokens_per_s
    f = r.frame
    tp8pp8 = f[(f["tp"] == 8) & (f["pp"] == 8) & f["feasible"]]
    assert len(tp8pp8) and best["tokens_per_s"] >= tp8pp8["tokens_per_s"].max()
    assert r.num_candidates > 50_000 and r.timings_s["total_s"] < 5.0


def run_cli(args, capsys):
    from simulator.cli import main
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


TOY_ARGS = ["search", "--model", "llama2-7b", "--hardware", "a100-sxm4-80gb", "--devices", "16", "--global-batch",
            "32", "--seq-len", "2048"]


def test_cli_table_footer_has_count_and_time(capsys):
    code, out, _ = run_cli(TOY_ARGS + ["--top", "3"], capsys)
    assert code == 0
    assert "candidates (" in out and "feasible) evaluated in" in out and "tokens/s" in out


def test_cli_csv_and_json_return_every_candidate(capsys):
    r = search("llama2-7b", "a100-sxm4-80gb", 16, 32, 2048)
    code, out, _ = run_cli(TOY_ARGS + ["--format", "csv"], capsys)
    assert code == 0
    df = pd.read_csv(__import__("io").StringIO(out))
    assert len(df) == r.num_candidates
    assert {"feasible", "reason", "tp", "pp", "mfu", "step_time_s"} <= set(df.columns)
    assert df.loc[~df["feasible"], "reason"].str.len().gt(0).all()
    code, out, _ = run_cli(TOY_ARGS + ["--format", "json"], capsys)
    d = json.loads(out)
    assert d["num_candidates"] == r.num_candidates == len(d["candidates"])
    assert d["num_feasible"] == sum(c["feasible"] for c in d["candidates"])


def test_cli_contradiction_exits_2_and_nothing_fits_exits_3(capsys):
    code, _, err = run_cli(TOY_ARGS + ["--tp", "8", "--max-tp", "4"], capsys)
    assert code == 2 and "contradicts max_tp 4" in err
    code, _, err = run_cli(["search", "--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--devices", "8",
                            "--global-batch", "8", "--seq-len", "2048"], capsys)
    assert code == 3 and "closest:" in err and "GB per device vs 80.0 GB available" in err


def test_cli_writes_the_three_plots(tmp_path, capsys):
    code, out, _ = run_cli(TOY_ARGS + ["--plot-dir", str(tmp_path)], capsys)
    assert code == 0
    for name in ("heatmap.png", "pareto.png", "breakdown.png"):
        p = tmp_path / name
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
