"""Speed work (issue #13): caches and shortcuts that must not change what a user sees."""
from __future__ import annotations

import os
from types import SimpleNamespace

from simulator.reports.validation_tables import shown_rows
from simulator.specs import safe_yaml


def test_yaml_cache_returns_independent_copies_and_rereads_a_changed_file(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("a: 1\nb: [1, 2]\n")
    first = safe_yaml.read_yaml(p)
    first["b"].append(3)                        # a caller changing its copy leaves the cache as it was
    assert safe_yaml.read_yaml(str(p)) == {"a": 1, "b": [1, 2]}
    p.write_text("a: 2\nb: []\n")
    os.utime(p, ns=(1, 1))                      # a new modification time: parsed again
    assert safe_yaml.read_yaml(p) == {"a": 2, "b": []}


def test_validate_table_shows_the_worst_rows_by_default_and_every_row_on_request():
    rows = [SimpleNamespace(id=str(i), error_pct=e) for i, e in enumerate([5.0, -40.0, 12.0, 0.5, 30.0])]
    report = SimpleNamespace(ok_rows=rows, rows=rows + [SimpleNamespace(id="skipped")])
    worst, title = shown_rows(report, 3)
    assert [r.id for r in worst] == ["1", "4", "2"]        # |-40| > |30| > |12|
    assert title.startswith("the 3 rows of 5")
    every, title = shown_rows(report, None)
    assert [r.id for r in every] == ["0", "1", "2", "3", "4"] and title == "6 rows"
    assert shown_rows(report, 5)[0] == rows


def test_blocked_evaluation_gives_the_numbers_of_one_pass_bit_for_bit():
    """Invariant: every formula is row-wise, so cutting a table into blocks changes no number, key or dtype."""
    import numpy as np

    from simulator.analytic.compose import evaluate, evaluate_block
    from simulator.specs.job import Job
    from simulator.specs.layout_table import LayoutTable
    from simulator.specs.loading import load_hardware, load_model
    from simulator.specs.training import TrainingSpec

    job = Job(model=load_model("gpt3-175b"), hardware=load_hardware("a100-sxm4-80gb"),
              training=TrainingSpec(seq_len=2048, global_batch=1536), num_devices=1024)
    g = np.stack(np.meshgrid([1, 2, 4, 8], [1, 2, 4, 8, 16], [1, 2], [0, 1, 3], [0, 2], indexing="ij"),
                 -1).reshape(-1, 5)
    t = LayoutTable.from_columns(tp=g[:, 0], pp=g[:, 1], micro_batch=g[:, 2], zero=g[:, 3], recompute=g[:, 4],
                                 dp=1024 // (g[:, 0] * g[:, 1]))
    whole, blocked = evaluate_block(job, t), evaluate(job, t, block_rows=7)     # 240 rows: 35 blocks, last of 2
    assert list(blocked) == list(whole)
    for k, v in whole.items():
        b = np.asarray(blocked[k])
        assert b.shape == (len(t),) and b.dtype == np.asarray(v).dtype, k
        assert np.array_equal(np.broadcast_to(v, b.shape), b, equal_nan=True), k
    assert int((whole["reasons"] == 0).sum()) > 0 and int((whole["reasons"] != 0).sum()) > 0


def test_search_writes_reason_text_on_demand_as_it_would_have_for_every_row():
    from simulator.planning.search import search

    eager = search("llama2-7b", "a100-sxm4-80gb", 8, 12, 4096)       # batch 12: many layouts do not divide it
    lazy = search("llama2-7b", "a100-sxm4-80gb", 8, 12, 4096, reasons=False)
    assert "reason" not in lazy.frame and (lazy.frame["reasons"] != 0).sum() > 100
    assert lazy.reason_of(lazy.frame).tolist() == eager.frame["reason"].tolist()
    assert "global batch (12) is not a multiple of micro_batch(1) * dp(8) = 8" in set(eager.frame["reason"])
    assert lazy.no_fit_message() == eager.no_fit_message()


def test_framework_presets_are_parsed_once_per_process_and_shared():
    """validate asks for every preset of a framework for each row: one parse and validation per preset."""
    from simulator.specs import frameworks_loading as fl

    fl._preset.cache_clear()
    first = fl.framework_for_run("megatron-lm", 2021)
    calls = fl._preset.cache_info().misses
    again = fl.framework_for_run("megatron-lm", 2021)
    assert again is first and fl._preset.cache_info().misses == calls


def test_a_framework_file_with_a_duplicate_key_is_refused_by_the_bounded_loader(tmp_path):
    """Framework YAML goes through safe_yaml (C parser where available) and keeps its checks."""
    import pytest

    from simulator.errors import SpecError
    from simulator.specs.frameworks_loading import load_framework

    p = tmp_path / "fw.yaml"
    p.write_text("name: a\nname: b\n")
    with pytest.raises(SpecError, match="key .name. appears twice"):
        load_framework(p)
