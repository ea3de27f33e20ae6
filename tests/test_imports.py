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
    return run_probe(PROBE.replace(repr(HEAVY), repr(tuple(heavy))), argv)["loaded"]


def run_probe(probe: str, argv: list[str]) -> dict:
    """Run `probe` in a fresh interpreter with ARGV; its last stderr line is a JSON report whose rc must be 0."""
    r = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert last.startswith("{"), f"probe failed (exit {r.returncode}):\n{r.stderr[-2000:]}"
    out = json.loads(last)
    assert out["rc"] == 0, f"trainsim {' '.join(argv)} exited {out['rc']}:\n{r.stderr[-2000:]}"
    return out


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


# Everything a command imports beyond what its dependencies import on their own. The baseline imports numpy, yaml,
# rich's console and table, and builds one small pydantic model (pydantic imports more on its first model:
# importlib.metadata for its plugins, with email and csv; uuid, zoneinfo, annotated_types for its validators).
# asyncio, ssl, socket and subprocess are in the baseline: pydantic_core's core_schema applies
# typing_extensions' @deprecated to functions at import, which imports asyncio.coroutines (and asyncio imports
# ssl); trainsim cannot avoid them while it uses pydantic, and must not add more of its own.
EXTRA_PROBE = """
import contextlib, io, json, sys
from typing import Literal, Optional
import numpy, yaml, rich.console, rich.table
from pydantic import BaseModel, ConfigDict, Field, field_validator
class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    a: Optional[int] = Field(None, ge=1)
    b: Literal["x", "y"] = "x"
    @field_validator("a")
    @classmethod
    def _v(cls, v):
        return v
_M(a=1)
base = set(sys.modules)
import simulator.cli as cli
with contextlib.redirect_stdout(io.StringIO()):
    rc = cli.main(sys.argv[1:])
extra = sorted({m.split('.')[0] for m in set(sys.modules) - base} - {"simulator"})
print(json.dumps({"rc": rc, "extra": extra, "base": sorted({m.split('.')[0] for m in base})}), file=sys.stderr)
"""

#: What trainsim's own code adds for a one-layout or search command: argparse (and its gettext), gc (the
#: collector tuning), hashlib (the kernel-surface cache key), encodings (utf-8-sig, data files with a BOM), importlib
#: (importlib.resources finds the shipped profiles; an interpreter whose site setup ran no .pth file has not imported
#: the package yet, as in a fresh virtual environment).
OWN_IMPORTS = {"argparse", "gettext", "gc", "hashlib", "_hashlib", "_blake2", "encodings", "importlib"}
#: simulate also runs SimPy (with what SimPy and numpy.random bring: secrets, hmac, email for its version, heapq for
#: SimPy's event queue where the site setup has not imported it already).
SIMPY_IMPORTS = {"simpy", "numpy", "secrets", "hmac", "email", "heapq", "_heapq"}


def extra_imports(argv: list[str]) -> tuple[set, set]:
    out = run_probe(EXTRA_PROBE, argv)
    return {m for m in out["extra"] if not m.startswith("_cython")}, set(out["base"])


@pytest.mark.parametrize("argv", [ESTIMATE, SEARCH, SEARCH + ["--top", "3"]], ids=["estimate", "search", "top-3"])
def test_estimate_and_search_import_nothing_beyond_their_dependencies_but_a_short_list(argv):
    """difflib (name suggestions), scipy, simpy, pandas, networkx, dask, matplotlib... are imported only on the
    paths that use them; asyncio and ssl, when present, are pydantic_core's (in the baseline), not trainsim's."""
    extra, base = extra_imports(argv)
    assert extra <= OWN_IMPORTS, f"new imports on the {argv[0]} path: {sorted(extra - OWN_IMPORTS)}"
    assert not extra & {"asyncio", "ssl", "difflib", "scipy", "simpy", "pandas", "networkx", "dask"}


def test_simulate_imports_simpy_and_nothing_else_beyond_its_dependencies():
    extra, _ = extra_imports(SIMULATE + ["--format", "json"])
    assert "simpy" in extra                        # positive control: the probe sees what a command imports
    assert extra <= OWN_IMPORTS | SIMPY_IMPORTS, sorted(extra - OWN_IMPORTS - SIMPY_IMPORTS)


FREEZE_PROBE = """
import gc, json, sys
held = [[] for _ in range(100)]
for h in held:
    h.append(h)                                    # a cycle of the caller's
frozen = sys.argv[1] == "frozen"
if frozen:
    gc.freeze()
count = gc.get_freeze_count()
import simulator
young = len(gc.get_objects(0)) + len(gc.get_objects(1))
print(json.dumps({"before": count, "after": gc.get_freeze_count(), "enabled": gc.isenabled(), "young": young}))
"""


@pytest.mark.parametrize("state", ["frozen", "plain"])
def test_importing_simulator_leaves_the_permanent_generation_as_it_found_it(state):
    """The package moves its import-time objects to the oldest generation (freeze + unfreeze, no collection);
    a caller's own frozen objects (a pre-fork server) stay frozen."""
    r = subprocess.run([sys.executable, "-c", FREEZE_PROBE, state], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["enabled"]
    if state == "frozen":      # still frozen (the count drifts by a few as frozen objects are freed or untracked)
        assert out["before"] > 1000 and out["after"] > out["before"] // 2
    else:                      # nothing left in the permanent generation, and the imports' ~60k objects are old:
        assert out["before"] == 0 and out["after"] == 0    # the next collections do not traverse them
        assert out["young"] < 5000, out


RUNS = str(ROOT / "benchmarks" / "data" / "published_runs.csv")


@pytest.mark.parametrize("extra", [[], ["--format", "json"]], ids=["table", "json"])
def test_validate_imports_no_plotting_frames_graphs_des_nor_scenario(extra):
    """`trainsim validate` (issue #13: < 0.6 s whole process) predicts from the cases' own specs with the analytic
    engine: no matplotlib (no --plot), pandas, networkx, SimPy, nor the Scenario model (pydantic builds its schema at
    import; validate never makes one)."""
    heavy = HEAVY + ("networkx", "simpy", "simulator.specs.scenario", "simulator.des")
    assert loaded_after(["validate", RUNS, *extra], heavy=heavy) == []


def test_the_scenario_probe_sees_scenario_when_estimate_builds_one():
    """Positive control for the probe above: estimate builds a Scenario."""
    assert loaded_after(ESTIMATE, heavy=("simulator.specs.scenario",)) == ["simulator.specs.scenario"]
