"""A command imports only what it uses (issue #13): no matplotlib unless a plot is asked for, no pandas for the
one-layout verbs. Each case runs the real CLI entry point in a fresh interpreter and lists the heavy modules
left in `sys.modules` when the command has finished; a positive control (`--gantt`) shows the probe sees an
import when one happens.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("matplotlib", "pandas")
ROOT = Path(__file__).resolve().parent.parent   # `python -c` puts the working folder first on sys.path

# Runs the CLI as `python -m simulator ARGS` would, with the command's own output discarded, then prints the
# heavy top-level packages present in sys.modules as one JSON line on stderr.
PROBE = """
import contextlib, io, json, sys
import simulator.cli as cli
with contextlib.redirect_stdout(io.StringIO()):
    rc = cli.main(sys.argv[1:])
print(json.dumps({"rc": rc, "loaded": sorted(m for m in %r if m in sys.modules)}), file=sys.stderr)
""" % (HEAVY,)

JOB = ["--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--seq-len", "2048"]
ESTIMATE = ["estimate", *JOB, "--devices", "64", "--global-batch", "64", "--tp", "8", "--pp", "8"]
SEARCH = ["search", *JOB, "--devices", "64", "--global-batch", "64"]
SIMULATE = ["simulate", *JOB, "--devices", "64", "--global-batch", "64", "--tp", "8", "--pp", "8"]


def loaded_after(argv: list[str]) -> list[str]:
    """The HEAVY packages a fresh interpreter holds after `trainsim ARGV` (the command must succeed)."""
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert last.startswith("{"), f"probe failed (exit {r.returncode}):\n{r.stderr[-2000:]}"
    out = json.loads(last)
    assert out["rc"] == 0, f"trainsim {' '.join(argv)} exited {out['rc']}:\n{r.stderr[-2000:]}"
    return out["loaded"]


@pytest.mark.parametrize("argv", [ESTIMATE, ESTIMATE + ["--format", "json"]], ids=["table", "json"])
def test_estimate_imports_neither_matplotlib_nor_pandas(argv):
    assert loaded_after(argv) == []


def test_search_without_plot_dir_does_not_import_matplotlib():
    # search builds a DataFrame of every candidate, so pandas is expected here
    assert "matplotlib" not in loaded_after(SEARCH)


def test_simulate_with_trace_imports_neither_matplotlib_nor_pandas(tmp_path):
    assert loaded_after(SIMULATE + ["--trace", str(tmp_path / "step.json")]) == []


def test_simulate_with_gantt_imports_matplotlib(tmp_path):
    """Positive control: the probe does see matplotlib when a chart is asked for."""
    assert "matplotlib" in loaded_after(SIMULATE + ["--gantt", str(tmp_path / "step.png")])
