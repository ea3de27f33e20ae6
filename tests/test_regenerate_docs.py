"""Every figure block in the docs is generated (benchmarks/regenerate_docs.py): the markers pair up, name known
generators, and wrap the commands' output; no file names a machine's absolute path."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("regenerate_docs", ROOT / "benchmarks" / "regenerate_docs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["regenerate_docs"] = mod            # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_every_marker_pairs_up_and_names_a_generator():
    mod = _module()
    found = set()
    for rel in mod.DOCS:
        text = (ROOT / rel).read_text()
        opened = re.findall(r"<!-- gen:([\w.-]+) -->", text)
        closed = re.findall(r"<!-- /gen:([\w.-]+) -->", text)
        assert opened == closed, rel
        assert {m.group("name") for m in mod.MARKER.finditer(text)} == set(opened), rel
        found |= set(opened)
    assert found == set(mod.BLOCKS)                 # every generator is used, every block has one


def test_regenerate_replaces_only_the_marked_text():
    mod = _module()
    mod.BLOCKS["t"] = lambda: "new 1.0%\n"
    text = "prose 9.9%\n<!-- gen:t -->\nold 2.0%\n<!-- /gen:t -->\nmore prose\n"
    assert mod.regenerate(text, {}) == "prose 9.9%\n<!-- gen:t -->\nnew 1.0%\n<!-- /gen:t -->\nmore prose\n"


def test_no_tracked_file_names_an_absolute_machine_path():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    bad = []
    for f in files:
        p = ROOT / f
        if p.suffix in (".png", ".parquet") or not p.is_file():
            continue
        text = p.read_text(errors="ignore")
        if re.search(r"(?<![\w.])/(work|home|Users)/[A-Za-z]", text) and f != "tests/test_regenerate_docs.py" \
                and f != "tests/test_input_validation.py":
            bad.append(f)
    assert not bad
