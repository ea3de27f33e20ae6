"""The package's structure rules (DESIGN.md sec. 2, issue 9): the two engines never import each other, no
function is longer than 100 lines, and the concepts that used to be defined several times are defined once."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "simulator"


def _modules(sub: str) -> list[str]:
    return sorted(f"simulator.{sub}." + p.stem for p in (PKG / sub).glob("*.py") if p.stem != "__init__")


def _loaded_after_importing(modules: list[str]) -> list[str]:
    """sys.modules of a fresh interpreter after importing `modules`."""
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PKG.parent)
    return json.loads(out.stdout)


def test_the_discrete_event_engine_never_imports_the_analytic_engine():
    mods = _modules("des")
    assert "simulator.des.simulate" in mods and "simulator.des.api" in mods
    loaded = _loaded_after_importing(mods)
    assert "simulator.des.simulate" in loaded
    assert [m for m in loaded if m.startswith("simulator.analytic")] == []


def test_the_analytic_engine_never_imports_the_discrete_event_engine():
    loaded = _loaded_after_importing(_modules("analytic"))
    assert "simulator.analytic.compose" in loaded
    assert [m for m in loaded if m.startswith("simulator.des")] == []
    assert "simpy" not in loaded


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_100_lines():
    long = [f"{p.relative_to(PKG.parent)}:{name} ({n} lines)" for p in sorted(PKG.rglob("*.py"))
            for name, n in _functions(p) if n > 100]
    assert long == []


def _assignments(name: str) -> list[str]:
    """Modules of simulator/ that assign `name` at module level or define it as a function or class."""
    out = []
    for p in sorted(PKG.rglob("*.py")):
        for node in ast.parse(p.read_text(encoding="utf-8")).body:
            targets = []
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    targets += [e.id for e in (t.elts if isinstance(t, ast.Tuple) else [t]) if isinstance(e, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets.append(node.target.id)
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                targets.append(node.name)
            if name in targets:
                out.append(str(p.relative_to(PKG.parent)))
    return out


@pytest.mark.parametrize("name, where", [
    ("mfu", "simulator/metrics.py"),
    ("hfu", "simulator/metrics.py"),
    ("TimeBreakdown", "simulator/results.py"),
    ("TIME_CATEGORIES", "simulator/results.py"),
    ("StepEstimate", "simulator/results.py"),
    ("RULES", "simulator/feasibility.py"),
    ("R_MEMORY", "simulator/feasibility.py"),
    ("describe", "simulator/feasibility.py"),
    ("data_parallel_groups", "simulator/costs/communication.py"),
    ("rank_params", "simulator/costs/params.py"),
    ("OPTIMIZER_BYTES_PER_PARAM", "simulator/costs/optimizer.py"),
    ("optimizer_step_time_s", "simulator/costs/optimizer.py"),
    ("MICRO_BATCH_HOST_LAYERS", "simulator/costs/stage.py"),
    ("num_micro_batches", "simulator/pipeline/closed_form.py"),
    ("chunk_layers", "simulator/pipeline/split.py"),
    ("schedule_ops", "simulator/pipeline/schedules.py"),
    ("LayoutTable", "simulator/specs/layout_table.py"),
    ("resolve_seq_len", "simulator/specs/training.py"),
])
def test_each_concept_is_defined_once(name, where):
    assert _assignments(name) == [where]
