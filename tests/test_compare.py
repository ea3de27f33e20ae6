"""Compare: best layout per profile equals the search's, time/cost/energy follow from tokens/s, budgets buy whole
nodes, and the CLI writes the chart for NVIDIA, AMD, TPU and Ascend profiles."""
import json

import pytest

import simulator as ts
from simulator.planning.compare import compare, devices_for_budget
from simulator.errors import SpecError
from simulator.planning.search import search

FOUR_VENDORS = ["a100-sxm4-80gb", "mi300x", "tpu-v5p", "ascend-910b"]
JOB = dict(global_batch=32, seq_len=2048)


@pytest.fixture(scope="module")
def result():
    return compare("llama2-7b", FOUR_VENDORS, devices=16, tokens=1e12, price_per_hour={"mi300x": 2.5},
                   power_w={"tpu-v5p": 500.0}, **JOB)


def test_one_row_per_profile_with_the_search_best(result):
    f = result.frame
    assert list(f["hardware"]) == FOUR_VENDORS
    assert set(f["vendor"]) == {"nvidia", "amd", "google", "huawei"}
    for _, row in f.iterrows():
        best = search("llama2-7b", row["hardware"], 16, **JOB).best
        assert row["tokens_per_s"] == pytest.approx(best["tokens_per_s"], rel=1e-12)
        assert (row["tp"], row["pp"], row["dp"]) == (best["tp"], best["pp"], best["dp"])


def test_time_cost_and_energy_follow_from_throughput(result):
    for _, r in result.frame.iterrows():
        t = 1e12 / r["tokens_per_s"]
        assert r["time_to_train_s"] == pytest.approx(t)
        if r["price_per_hour_usd"] == r["price_per_hour_usd"]:       # not NaN
            assert r["cost_usd"] == pytest.approx(16 * r["price_per_hour_usd"] * t / 3600)
        if r["power_w"] == r["power_w"]:
            assert r["energy_kwh"] == pytest.approx(16 * r["power_w"] * t / 3600 / 1000)


def test_overrides_win_and_missing_figures_stay_missing(result):
    f = result.frame.set_index("hardware")
    assert f.loc["mi300x", "price_per_hour_usd"] == 2.5                 # override (profile has none)
    assert f.loc["tpu-v5p", "power_w"] == 500.0                         # override (profile has none)
    assert f.loc["a100-sxm4-80gb", "price_per_hour_usd"] == ts.load_hardware("a100-sxm4-80gb").device.price_per_hour_usd
    assert f.loc["ascend-910b", "cost_usd"] != f.loc["ascend-910b", "cost_usd"]   # NaN: no price anywhere


def test_budget_buys_whole_nodes():
    a100 = ts.load_hardware("a100-sxm4-80gb")              # 8 per node
    assert devices_for_budget(a100, 100.0, 1.99) == 48      # floor(50.25) = 50 -> 48
    assert devices_for_budget(a100, 15.0, 1.99) == 0        # 7 devices: less than a node
    with pytest.raises(SpecError, match="--price-per-hour"):
        devices_for_budget(a100, 100.0, None)


def test_budget_mode_gives_each_profile_what_it_rents():
    r = compare("llama2-7b", ["a100-sxm4-80gb", "h100-sxm5-80gb"], budget_per_hour=64.0, tokens=1e11, **JOB)
    f = r.frame.set_index("hardware")
    for name in f.index:
        hw = ts.load_hardware(name)
        assert f.loc[name, "devices"] == devices_for_budget(hw, 64.0, hw.device.price_per_hour_usd)
        assert f.loc[name, "devices"] % hw.devices_per_node == 0


@pytest.mark.parametrize("kw, needle", [
    (dict(devices=16, budget_per_hour=10.0), "exactly one of"),
    (dict(devices=16, price_per_hour={"h100-sxm5-80gb": 3.0}), "not compared"),
    (dict(budget_per_hour=100.0), "needs a price for 'mi300x'"),
    (dict(devices=16, constraints={"tp": [8], "max_tp": 2}), "contradicts"),
])
def test_bad_input_is_a_spec_error(kw, needle):
    with pytest.raises(SpecError) as e:
        compare("llama2-7b", ["a100-sxm4-80gb", "mi300x"], tokens=1e12, **JOB, **kw)
    assert needle in str(e.value)


def test_cli_compare_four_vendors_writes_chart(tmp_path, capsys):
    from simulator.cli import main
    chart = tmp_path / "compare.png"
    code = main(["compare", "--model", "llama2-7b", "--hardware", *FOUR_VENDORS, "--devices", "16",
                 "--global-batch", "32", "--seq-len", "2048", "--tokens", "1T", "--chart", str(chart),
                 "--price-per-hour", "mi300x=2.5", "ascend-910b=1.5"])
    out = capsys.readouterr().out
    assert code == 0
    assert chart.exists() and chart.read_bytes()[:4] == b"\x89PNG"
    for name in FOUR_VENDORS:
        assert name in out
    assert "1T tokens" in out and "MFU" in out
    code = main(["compare", "--model", "llama2-7b", "--hardware", "a100-sxm4-80gb", "--devices", "16",
                 "--global-batch", "32", "--seq-len", "2048", "--format", "json"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and d["profiles"][0]["hardware"] == "a100-sxm4-80gb" and d["profiles"][0]["feasible"]


def test_public_api_compare_is_callable_after_the_module_is_imported():
    import simulator.planning.compare  # noqa: F401
    r = ts.compare("llama2-7b", "a100-sxm4-80gb", devices=16, tokens=1e12, **JOB)
    assert len(r.frame) == 1 and r.frame["feasible"].all()


def test_cli_token_counts_parse():
    from simulator.cli.compare import token_count
    assert token_count("300B") == 300e9 and token_count("1.4T") == 1.4e12 and token_count("2e12") == 2e12


def test_an_empty_search_space_status_comes_from_the_errors_reason_field():
    """Issue 9 bug c: the status is the EmptySearchSpace's `reason` field, not a split of its message."""
    from simulator.planning.enumerate import EmptySearchSpace
    # a budget of $50/h rents up to 20 devices at $2.5: the counts that factor well are [16] (no tp in [3] divides
    # them); up to 25 at $2.0: [24, 16], and tp 3 divides 24 (issue 12: budget counts node x 2^a, x3, x5)
    res = compare("llama2-7b", ["a100-sxm4-80gb", "h100-sxm5-80gb"], budget_per_hour=50.0, global_batch=192,
                  price_per_hour={"a100-sxm4-80gb": 2.5, "h100-sxm5-80gb": 2.0}, constraints={"tp": [3]})
    with pytest.raises(EmptySearchSpace) as e:
        search("llama2-7b", "a100-sxm4-80gb", 16, 192, constraints={"tp": [3]})
    assert e.value.reason == "no tp divides the 16 devices within the constraints (<= 32 heads)"
    f = res.frame.set_index("hardware")
    assert f.loc["a100-sxm4-80gb", "status"] == "empty search space: " + e.value.reason
    assert f.loc["h100-sxm5-80gb", "devices"] == 24 and f.loc["h100-sxm5-80gb", "status"].startswith("no valid layout")
