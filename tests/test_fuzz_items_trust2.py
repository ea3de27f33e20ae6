"""The remaining fuzzing items of issue 12: each is exit 2 with one message (line and column where a file is at
fault), or a correct result without warnings on stderr."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest

from simulator.cli import main

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "benchmarks" / "data" / "published_runs.csv"
VTRAIN = ROOT / "benchmarks" / "data" / "vtrain" / "ground_truth_single.csv"


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_search_space_too_large_is_refused_before_any_work(capsys):
    code, _, err = run(["search", "--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--devices", "720720",
                        "--global-batch", "720720", "--seq-len", "2048"], capsys)
    assert code == 2
    msg = one_error(err)
    assert "1,000,000" in msg and "--max-tp" in msg


def _published(tmp_path, column, value):
    rows = list(csv.reader(RUNS.open()))
    row = list(rows[1])
    row[rows[0].index(column)] = value
    p = tmp_path / "runs.csv"
    with p.open("w", newline="") as f:
        csv.writer(f).writerows([rows[0], row])
    return p


@pytest.mark.parametrize("column,value,expect", [
    ("value", "0", "line 2, column 'value': 0.0 must be > 0"),
    ("dp", "0", "line 2, column 'dp': 0 must be >= 1"),
    ("notes", "x" * 200_000, "line 2: not readable as CSV (field larger than field limit"),
])
def test_bad_runs_file_cells_are_exit_2_naming_line_and_column(tmp_path, capsys, column, value, expect):
    code, _, err = run(["validate", _published(tmp_path, column, value)], capsys)
    assert code == 2 and expect in one_error(err)


@pytest.mark.parametrize("cells,expect", [
    ("64,512,8,3071,32,30,2048,1,64,1,3566.5", "hidden_size (3071) must be a multiple of num_heads (32)"),
    ("64,512,8,3072,32,300000000,2048,1,64,1,3566.5", "num_layers: Input should be less than or equal to"),
    ("-5,512,8,3072,32,30,2048,1,64,1,3566.5", "column '# GPUs': -5 must be > 0"),
    ("99999999999999999999,512,8,3072,32,30,2048,1,64,1,3566.5", "column '# GPUs': 99999999999999999999 is out"),
])
def test_invalid_vtrain_cells_are_one_message(tmp_path, capsys, cells, expect):
    p = tmp_path / "gt.csv"
    p.write_text(VTRAIN.read_text().splitlines()[0] + "\n" + cells + "\n")
    code, _, err = run(["validate", p], capsys)
    assert code == 2 and expect in one_error(err) and "pydantic" not in err


def test_search_scenario_uses_settings_and_warns_about_keys_it_cannot_use(tmp_path, capsys):
    sc = tmp_path / "s.yaml"
    sc.write_text("model: llama2-7b\nhardware: a100-sxm4-80gb\ndevices: 8\nglobal_batch: 16\nseq_len: 2048\n"
                  "flash_attention: false\nstage_layers: [16, 16]\npp: 2\n")
    code, out, err = run(["search", "--scenario", sc, "--format", "json"], capsys)
    assert code == 0
    assert err.startswith("warning: ") and "stage_layers" in err and "flash_attention" not in err
    import json
    d = json.loads(out)
    assert {r["pp"] for r in d["candidates"]} == {2}


def test_nothing_feasible_search_with_plots_prints_no_warning(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, _, err = run(["search", "--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--devices", "8",
                            "--global-batch", "8", "--seq-len", "2048", "--plot-dir", tmp_path], capsys)
    assert code == 3 and "Warning" not in err and "nan" not in err
    assert (tmp_path / "pareto.png").stat().st_size > 0


def test_numpy_runtime_warnings_never_reach_the_user(capsys, monkeypatch):
    import numpy as np

    import simulator.cli.estimate as est
    real = est.run

    def noisy(args):
        np.float64(1.0) / np.float64(0.0)          # what an engine's division by zero would emit
        np.sqrt(np.float64(-1.0))
        return real(args)
    monkeypatch.setattr(est, "run", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, _, err = run(["estimate", "--model", "llama2-7b", "--hardware", "a100-sxm4-80gb", "--devices", "8",
                            "--global-batch", "16", "--seq-len", "2048"], capsys)
    assert code == 0 and err == ""
