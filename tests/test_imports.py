"""A command imports only what it uses (issue #13): no matplotlib unless a plot is asked for, no pandas for the
one-layout verbs, nor for a search printed as a table. Each case runs the real CLI entry point in a fresh interpreter and lists the heavy modules
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


def loaded_after(argv: list[str], heavy: tuple = HEAVY) -> list[str]:
    """The `heavy` packages a fresh interpreter holds after `trainsim ARGV` (the command must succeed)."""
    probe = PROBE.replace(repr(HEAVY), repr(tuple(heavy)))
    r = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert last.startswith("{"), f"probe failed (exit {r.returncode}):\n{r.stderr[-2000:]}"
    out = json.loads(last)
    assert out["rc"] == 0, f"trainsim {' '.join(argv)} exited {out['rc']}:\n{r.stderr[-2000:]}"
    return out["loaded"]


@pytest.mark.parametrize("argv", [ESTIMATE, ESTIMATE + ["--format", "json"]], ids=["table", "json"])
def test_estimate_imports_neither_matplotlib_nor_pandas(argv):
    assert loaded_after(argv) == []


@pytest.mark.parametrize("extra", [[], ["--top", "3"]], ids=["table", "top-3"])
def test_search_table_imports_neither_matplotlib_nor_pandas(extra):
    """The table reads the ranked numpy columns; the DataFrame (pandas) is built only for csv/json/plots."""
    assert loaded_after(SEARCH + extra) == []


def test_search_json_builds_the_frame_and_imports_pandas_but_not_matplotlib():
    """Positive control for pandas: --format json writes every candidate from the DataFrame."""
    assert loaded_after(SEARCH + ["--format", "json"]) == ["pandas"]


def test_simulate_with_trace_imports_neither_matplotlib_nor_pandas(tmp_path):
    assert loaded_after(SIMULATE + ["--trace", str(tmp_path / "step.json")]) == []


def test_simulate_with_gantt_imports_matplotlib(tmp_path):
    """Positive control: the probe does see matplotlib when a chart is asked for."""
    assert "matplotlib" in loaded_after(SIMULATE + ["--gantt", str(tmp_path / "step.png")])


@pytest.mark.parametrize("extra", [[], ["--format", "json"], ["--contention", "off", "--format", "csv"]],
                         ids=["table", "json", "csv"])
def test_simulate_without_plot_flags_imports_neither_matplotlib_pandas_nor_networkx(extra):
    """The replay takes its ports from topology.graph.ClusterPorts (arithmetic); the networkx graph is built only
    where a caller asks for it (issue #13: networkx was about a third of the simulation's time)."""
    assert loaded_after(SIMULATE + extra, heavy=HEAVY + ("networkx",)) == []


def test_the_networkx_probe_sees_networkx_when_a_graph_is_built():
    """Positive control for the probe above: building the cluster graph does import networkx."""
    code = ("import sys; from simulator.specs.loading import load_hardware; "
            "from simulator.topology.graph import cluster_graph; cluster_graph(load_hardware('a100-sxm4-80gb'), 16); "
            "print('networkx' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.stdout.strip() == "True", r.stderr[-2000:]


GC_PROBE = """
import gc, json, sys
gc.disable()
import simulator
after_import = gc.isenabled()
gc.enable()
import simulator.cli as cli
before = gc.get_threshold()
rc = cli.main(sys.argv[1:])
print(json.dumps({"after_import": after_import, "same_threshold": gc.get_threshold() == before, "rc": rc}),
      file=sys.stderr)
"""


def test_importing_simulator_restores_the_collector_as_it_found_it_and_main_with_argv_leaves_it_alone():
    """The package pauses the cyclic collector during its own imports only (issue #13); `main(argv)` (tests,
    notebooks) leaves the interpreter's thresholds alone; only the program (`main()` with no argv) tunes them."""
    r = subprocess.run([sys.executable, "-c", GC_PROBE, *SIMULATE, "--format", "json"], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    out = json.loads(r.stderr.strip().splitlines()[-1])
    assert out == {"after_import": False, "same_threshold": True, "rc": 0}
