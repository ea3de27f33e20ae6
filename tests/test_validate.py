"""`trainsim validate` on small fixtures: row outcomes, malformed rows, unknown profiles, FLOP conventions,
the layout search of blank cells, the vTrain adapter and the CLI formats.

Fixtures: tests/fixtures/runs_small.csv holds five rows copied from ../shared/data/published_runs.csv (Korthikanti
et al. 2022 22B full/selective, Megatron-LM README H100 1.7B with blank micro-batch and recompute, a PaLM Table 3
row marked UNUSABLE, an InternEvo memory row) plus two edited copies: one with tp = 'abc' (line 5) and one with the
unknown profile 'xpu-9000' (line 6). tests/fixtures/vtrain_single_small.csv holds the header and first three rows
of vTrain's MIT-licensed ground_truth_single.csv (Bang et al. 2023; ../shared/data/vtrain/LICENSE).
"""
from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.costs.flops import megatron_eq3_flops, model_costs
from simulator.errors import SpecError
from simulator.validation import Case, conv_flops_per_token, load_cases, validate

FIX = Path(__file__).parent / "fixtures"
RUNS = FIX / "runs_small.csv"
VTRAIN = FIX / "vtrain_single_small.csv"


@pytest.fixture(scope="module")
def report():
    return validate(RUNS)


def by_id(report):
    return {r.id: r for r in report.rows}


def test_every_row_is_reported_in_file_order(report):
    assert [r.id for r in report.rows] == [
        "korthikanti22-22b-full", "korthikanti22-22b-selective", "megatronlm24-h100-1p7b-48", "bad-tp-row",
        "unknown-profile-row", "palm22-t3-gpt3-175b", "internevo23-mem-7b-tp4"]


def test_malformed_row_names_line_and_column_and_others_still_run(report):
    r = by_id(report)["bad-tp-row"]
    assert r.status == "skipped"
    assert "line 5" in r.reason and "'tp'" in r.reason and "'abc'" in r.reason
    assert by_id(report)["korthikanti22-22b-full"].status == "ok"


def test_unknown_profile_is_skipped_with_its_name(report):
    r = by_id(report)["unknown-profile-row"]
    assert r.status == "skipped" and "unknown hardware profile 'xpu-9000'" in r.reason


def test_unusable_row_is_skipped_with_the_notes_reason(report):
    r = by_id(report)["palm22-t3-gpt3-175b"]
    assert r.status == "skipped" and r.reason.startswith("UNUSABLE")


def test_summary_counts_only_predicted_rows(report):
    s = report.summary
    assert s["n"] == 4 and s["n_skipped"] == 3
    errs = sorted(abs(r.error_pct) for r in report.ok_rows)
    assert s["max_ape_pct"] == pytest.approx(errs[-1])
    assert s["mape_pct"] == pytest.approx(sum(errs) / 4)
    assert set(s["by_hardware"]) == {"nvidia-ampere", "nvidia-hopper"}
    assert s["by_kind"]["dense"]["n"] == 4


def test_signed_error_is_predicted_over_measured(report):
    r = by_id(report)["korthikanti22-22b-full"]
    assert r.error_pct == pytest.approx((r.predicted - r.measured) / r.measured * 100.0)
    assert r.metric == "step_time_s" and r.measured == 1.42


def test_blank_layout_cells_are_searched_and_reported(report):
    r = by_id(report)["megatronlm24-h100-1p7b-48"]
    assert set(r.searched) == {"micro_batch", "recompute"}
    # per-replica batch 192/48 = 4: the chosen micro-batch divides it; the known fields are kept
    assert 4 % r.layout["micro_batch"] == 0
    assert (r.layout["tp"], r.layout["pp"], r.layout["dp"], r.layout["zero_stage"]) == (1, 1, 48, 1)


def test_known_layout_is_not_searched(report):
    r = by_id(report)["korthikanti22-22b-selective"]
    assert r.searched == {}
    assert r.layout["recompute"] == "selective" and r.layout["sequence_parallel"] == 1


def test_a_row_whose_layout_does_not_fill_its_devices_is_skipped_with_the_product(tmp_path):
    rows = list(csv.reader(io.StringIO(RUNS.read_text())))
    header, row = rows[0], next(r for r in rows if r[0] == "korthikanti22-22b-full")
    row[header.index("n_devices")] = "16"                      # tp 8, pp 1, dp 1, cp 1 stated: 8 devices
    p = tmp_path / "runs.csv"
    with open(p, "w", newline="") as fh:
        csv.writer(fh).writerows([header, row])
    r = validate(p).rows[0]
    assert r.status == "skipped" and r.reason == "tp(8) * pp(1) * dp(1) * cp(1) = 8 != n_devices (16)"


def test_memory_row_compares_the_frameworks_usual_report(report):
    """A `memory_gb` row (allocated or reserved not stated) of a framework whose report is not known (the fixture
    has no framework column: preset `unknown`) compares with the caching allocator's reserved peak: the allocated
    peak (the device total less the profile's 2 GB context) over the allocator utilisation 0.94."""
    r = by_id(report)["internevo23-mem-7b-tp4"]
    assert r.framework == "unknown"
    assert r.metric == "memory_gb" and r.predicted == pytest.approx((r.memory_gb - 2.0) / 0.94)


def _gpt_case():
    _, items = load_cases(RUNS)
    return next(c for c in items if isinstance(c, Case) and c.id == "korthikanti22-22b-full")


def test_megatron_eq3_convention_equals_the_closed_form():
    """Narayanan et al. 2021 eq. 3 for a GPT model: two derivations (detailed count + recompute pass, closed form)."""
    c = _gpt_case()
    m, s, B = c.model, c.training.seq_len, c.training.global_batch
    per_token = conv_flops_per_token(c, "megatron_eq3", 2)
    assert per_token * s * B == pytest.approx(
        megatron_eq3_flops(B, s, m.num_layers, m.hidden_size, m.vocab_size), rel=1e-9)


def test_convention_attention_terms():
    """6N+attn adds 12 l s (a d) per token to 6N; the causal variant half of it (PaLM App. B; MaxText)."""
    c = _gpt_case()
    m, s = c.model, c.training.seq_len
    attn = 12.0 * m.num_layers * s * m.num_heads * m.dim_per_head
    six_n = conv_flops_per_token(c, "6N", 0)
    assert conv_flops_per_token(c, "6N+attn", 0) - six_n == pytest.approx(attn)
    assert conv_flops_per_token(c, "6N+attn_causal", 0) - six_n == pytest.approx(attn / 2)
    assert conv_flops_per_token(c, "megatron_eq3_norecompute", 0) == pytest.approx(
        model_costs(m, s).model_flops_per_token())


def test_vtrain_file_is_detected_by_header_and_ids_count_data_rows():
    rep = validate(VTRAIN)
    assert rep.file_kind == "vtrain-single"
    assert [r.id for r in rep.rows] == ["vtrain-single-1", "vtrain-single-2", "vtrain-single-3"]
    r = rep.rows[0]
    assert r.metric == "step_time_s" and r.measured == pytest.approx(0.372160408)
    assert r.layout["recompute"] == "full" and (r.layout["tp"], r.layout["pp"], r.layout["dp"]) == (1, 2, 1)


def test_unknown_header_is_bad_input(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(SpecError, match="missing column"):
        validate(p)
    assert main(["validate", str(p)]) == 2


def _cli_json(*args):
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["validate", str(RUNS), *args]) == 0
    return buf.getvalue()


def test_cli_json_has_the_documented_keys():
    d = json.loads(_cli_json("--format", "json"))
    assert {"rows", "summary"} <= set(d)
    assert {"id", "metric", "measured", "predicted", "error_pct", "status", "reason"} <= set(d["rows"][0])
    assert {"n", "mape_pct", "median_ape_pct", "max_ape_pct", "by_hardware", "by_source"} <= set(d["summary"])
    assert {r["status"] for r in d["rows"]} == {"ok", "skipped"}


def test_cli_csv_and_plot(tmp_path):
    out = tmp_path / "v.png"
    text = _cli_json("--format", "csv", "--plot", str(out))
    lines = text.strip().splitlines()
    assert lines[0].startswith("id,metric,measured,predicted,error_pct,status,reason")
    assert len(lines) == 1 + 7
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"


def test_cli_table_lists_skipped_rows():
    text = _cli_json()
    assert "rows skipped" in text and "xpu-9000" in text and "MAPE" in text


def test_des_engine_predicts_the_same_rows_when_installed():
    pytest.importorskip("simulator.des.api")
    des = validate(RUNS, engine="des")
    ana = validate(RUNS)
    assert [r.status for r in des.rows] == [r.status for r in ana.rows]
    # same chosen layouts (the search of blank cells always uses the analytic engine)
    assert [r.layout for r in des.ok_rows] == [r.layout for r in ana.ok_rows]


def test_rows_sharing_a_job_give_the_numbers_each_row_gives_alone():
    """predict_cases evaluates the rows of one job (models equal up to name, source and notes) as one table: every
    row's figures are those it gets predicted on its own, bit for bit."""
    from simulator.validation import job_key, predict_cases
    runs = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "published_runs.csv"
    cases = [c for c in load_cases(runs)[1] if isinstance(c, Case)]
    groups: dict = {}
    for c in cases:
        groups.setdefault(job_key(c), []).append(c)
    shared = [g for g in groups.values() if len({c.model.name for c in g}) > 1][:3]
    assert shared, "the published runs have rows of one architecture under several names"
    for group in shared:
        together = predict_cases(group)
        for c, r in zip(group, together):
            alone = predict_cases([c])[0]
            assert (r.id, r.predicted, r.step_time_s, r.memory_gb, r.layout) == \
                (alone.id, alone.predicted, alone.step_time_s, alone.memory_gb, alone.layout)
