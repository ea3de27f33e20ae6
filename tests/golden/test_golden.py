"""Every stored golden output (tests/golden/*.json, written by generate.py) is reproduced at relative 1e-12.

Numbers compare at relative 1e-12 with NaN == NaN (and an absolute floor of 1e-15 for values that are zero up to
rounding, e.g. a bubble computed as a difference); strings, booleans, None and the structure compare exactly.
A change that is meant to move numbers regenerates the files (generate.py) in the same commit and says so.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate as G  # noqa: E402

REL = 1e-12
ABS = 1e-15


def _load(name: str) -> dict:
    path = HERE / name
    if not path.exists():
        pytest.skip(f"tests/golden/{name} not generated")
    return json.loads(path.read_text(encoding="utf-8"))


def _num(v):
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        return float(v)
    return v


def diff(expected, actual, path: str = "") -> list[str]:
    """Differences between a stored and a recomputed output (both JSON-ready), as 'path: expected != actual'."""
    expected, actual = _num(expected), _num(actual)
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for k in sorted(set(expected) | set(actual)):
            if k not in actual:
                out.append(f"{path}/{k}: missing")
            elif k not in expected:
                out.append(f"{path}/{k}: unexpected key")
            else:
                out += diff(expected[k], actual[k], f"{path}/{k}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: length {len(expected)} != {len(actual)}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in diff(e, a, f"{path}[{i}]")]
    num = (int, float)
    if isinstance(expected, num) and isinstance(actual, num) and not isinstance(expected, bool) \
            and not isinstance(actual, bool):
        e, a = float(expected), float(actual)
        if math.isnan(e) and math.isnan(a):
            return []
        if e == a or abs(e - a) <= max(REL * max(abs(e), abs(a)), ABS):
            return []
        return [f"{path}: {expected!r} != {actual!r} (rel {abs(e - a) / max(abs(e), abs(a)):.3g})"]
    if expected != actual or type(expected) is not type(actual):
        return [f"{path}: {expected!r} != {actual!r}"]
    return []


def _check(expected, actual, what: str) -> None:
    d = diff(expected, G.clean(actual))
    assert not d, f"{what}: {len(d)} difference(s):\n" + "\n".join(d[:40])


def test_the_comparison_tolerates_rounding_only():
    assert diff({"a": 1.0, "b": "nan"}, {"a": 1.0 + 1e-13, "b": float("nan")}) == []
    assert diff({"a": 1.0}, {"a": 1.0 + 1e-11})
    assert diff([1, 2], [1, 2, 3]) and diff({"a": "x"}, {"a": "y"}) and diff({"a": True}, {"a": 1})


def test_estimates_match_the_golden_snapshot():
    for name, case in _load("estimate.json").items():
        _check(case["output"], G.estimate_output(case["inputs"]), f"estimate {name}")


def test_simulations_match_the_golden_snapshot():
    est = _load("estimate.json")
    for key, case in _load("simulate.json").items():
        out = G.simulate_output(est[case["scenario"]]["inputs"], G.SIM_MODES[case["mode"]])
        _check(case["output"], out, f"simulate {key}")


def test_search_rows_match_the_golden_snapshot():
    for name, case in _load("search.json").items():
        _check(case["output"], G.search_output(case["inputs"]), f"search {name}")


def test_validation_rows_match_the_golden_snapshot():
    stored = _load("validate.json")
    d = G.data_dir()
    if d is None:
        pytest.skip("../shared/data not present")
    for rel, case in stored.items():
        if G.sha256(d / rel) != case["sha256"]:
            pytest.skip(f"{rel} changed since the snapshot: regenerate tests/golden (generate.py)")
        _check(case["output"], G.validate_output(d / rel), f"validate {rel}")
