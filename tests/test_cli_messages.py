"""One message style for every CLI error (argparse's included), text printed as written, wide tables when piped,
and output paths checked before any work."""
from __future__ import annotations

import argparse
import json

import pytest

from simulator.cli import common, main

JOB = ["--model", "llama3-8b", "--hardware", "h100", "--devices", "8", "--global-batch", "8", "--seq-len", "2048"]


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def single_error(err: str) -> str:
    assert err.startswith("error: ") and err.count("error:") == 1 and "usage:" not in err, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, expected", [
    (["estimate", *JOB, "--tp", "x"], "error: argument --tp: 'x' is not an integer (see `trainsim estimate --help`)"),
    (["estimate", *JOB, "--dtype", "fp64"], "argument --dtype: invalid choice: 'fp64'"),
    (["estimat"], "invalid choice: 'estimat'"),
    ([], "the following arguments are required: VERB"),
    (["simulate", *JOB, "--jitter", "nan"], "argument --jitter: 'nan' is not a finite number"),
])
def test_argparse_errors_use_the_one_style_and_exit_2(capsys, argv, expected):
    code, _, err = run(argv, capsys)
    assert code == 2 and expected in single_error(err)


def test_no_prefix_matching_of_flags_and_a_suggestion_instead(capsys):
    code, _, err = run(["estimate", "--model", "llama3-8b", "--hardware", "h100", "--devices", "8", "--seq-len",
                        "2048", "--glob", "1536"], capsys)
    assert code == 2
    assert "unrecognized arguments: --glob 1536; did you mean --global-batch?" in single_error(err)
    code, _, err = run(["estimat", "--help"], capsys)
    assert code == 2 and "did you mean 'estimate'?" in err


def test_square_brackets_print_as_written(capsys):
    common.stdout().print("pip install 'trainsim[dask]' and the pattern '^[a-z]*$' [bold]stays[/]")
    common.error("install it with pip install 'trainsim[dask]'")
    out, err = capsys.readouterr()
    assert "pip install 'trainsim[dask]' and the pattern '^[a-z]*$' [bold]stays[/]" in out
    assert err == "error: install it with pip install 'trainsim[dask]'\n"
    code, _, err = run(["estimate", *JOB[:1], "trainsim[dask]", *JOB[2:]], capsys)
    assert code == 2 and "unknown model 'trainsim[dask]'" in err


@pytest.mark.parametrize("verb", ["profiles", "models"])
def test_catalog_tables_are_not_cut_when_piped(capsys, monkeypatch, verb):
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, _ = run([verb], capsys)
    assert code == 0
    code, js, _ = run([verb, "--format", "json"], capsys)
    rows = json.loads(js)
    lines = out.splitlines()
    for r in rows:
        whole = r.get("tiers") or r["name"]
        assert any(r["name"] in line and whole in line for line in lines), (r["name"], whole)
    assert max(len(line) for line in lines) > 80 or verb == "models"


def test_an_unexpected_exception_is_one_line_exit_1(capsys, monkeypatch):
    import simulator.analytic.estimate as est

    def boom(*a, **k):
        raise RuntimeError("x" * 5000)
    monkeypatch.setattr(est, "estimate", boom)
    code, _, err = run(["estimate", *JOB], capsys)
    assert code == 1 and "internal error, a bug in trainsim" in single_error(err) and len(err) < 700


# --- outputs -------------------------------------------------------------------------------------------------------

def _simulate(tmp_path, *extra):
    sc = tmp_path / "r.json"
    sc.write_text("model: llama3-8b\n")
    return ["simulate", "--scenario", str(sc), *JOB[2:], *extra], sc


def test_an_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path, capsys):
    argv, sc = _simulate(tmp_path)
    code, _, err = run(argv + ["--trace", str(sc)], capsys)
    assert code == 2 and "is one of this command's inputs" in single_error(err)
    assert sc.read_text() == "model: llama3-8b\n"


@pytest.mark.parametrize("flag, value, expected", [
    ("--trace", "", "--trace: the file name is empty"),
    ("--gantt", "  ", "--gantt: the file name is empty"),
    ("--gantt", "step.txt", "the name must end in .png, .svg, .pdf"),
    ("--trace", "no/such/folder/t.json", "the folder 'no/such/folder' does not exist"),
])
def test_bad_output_paths_are_refused_before_the_work(tmp_path, capsys, monkeypatch, flag, value, expected):
    monkeypatch.chdir(tmp_path)
    argv, _ = _simulate(tmp_path, flag, value)
    code, _, err = run(argv, capsys)
    assert code == 2 and expected in single_error(err)


def test_check_outputs_covers_folders_and_duplicate_names(tmp_path):
    (tmp_path / "f.png").write_text("")
    with pytest.raises(common.SpecError, match="is a file, not a folder"):
        common.check_outputs(argparse.Namespace(plot_dir=str(tmp_path / "f.png")))
    (tmp_path / "d.png").mkdir()
    with pytest.raises(common.SpecError, match="is a folder; give a file name"):
        common.check_outputs(argparse.Namespace(plot=str(tmp_path / "d.png"), chart=None))
    out = str(tmp_path / "same.png")
    with pytest.raises(common.SpecError, match="name the same file"):
        common.check_outputs(argparse.Namespace(heatmap=out, pareto=out))
    common.check_outputs(argparse.Namespace(gantt=str(tmp_path / "f.png"), trace=None))   # replacing a non-input


def test_an_existing_non_input_output_is_still_replaced(tmp_path, capsys):
    argv, _ = _simulate(tmp_path)
    trace = tmp_path / "t.json"
    trace.write_text("old")
    code, _, _ = run(argv + ["--trace", str(trace), "--format", "json"], capsys)
    assert code == 0 and "traceEvents" in trace.read_text()
