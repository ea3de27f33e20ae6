"""benchmarks/sync_data.py keeps benchmarks/data a mirror of ../shared/data (README with a note in front)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sync_data", ROOT / "benchmarks" / "sync_data.py")
sync_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sync_data)


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "vtrain").mkdir(parents=True)
    (src / "README.md").write_text("# schema\n")
    (src / "published_runs.csv").write_text("id\nr1\n")
    (src / "vtrain" / "LICENSE").write_text("MIT\n")
    return src


def test_sync_copies_every_file_and_notes_the_mirror_in_the_readme(tmp_path):
    src, dst = _source(tmp_path), tmp_path / "dst"
    changes = sync_data.sync(src, dst)
    assert sorted(changes) == ["missing: README.md", "missing: published_runs.csv", "missing: vtrain/LICENSE"]
    assert (dst / "vtrain" / "LICENSE").read_text() == "MIT\n"
    readme = (dst / "README.md").read_bytes()
    assert readme == sync_data.NOTE + b"# schema\n" and b"python benchmarks/sync_data.py" in readme
    assert sync_data.differences(src, dst) == []


def test_check_lists_changed_extra_and_missing_files(tmp_path):
    src, dst = _source(tmp_path), tmp_path / "dst"
    sync_data.sync(src, dst)
    (src / "published_runs.csv").write_text("id\nr1\nr2\n")
    (src / "new.csv").write_text("x\n")
    (dst / "stale.csv").write_text("y\n")
    assert sync_data.differences(src, dst) == ["missing: new.csv", "differs: published_runs.csv", "extra: stale.csv"]
    sync_data.sync(src, dst)
    assert not (dst / "stale.csv").exists() and sync_data.differences(src, dst) == []


def test_shipped_data_holds_the_runs_the_schema_and_the_vtrain_license():
    data = ROOT / "benchmarks" / "data"
    for rel in ("published_runs.csv", "README.md", "vtrain/LICENSE", "vtrain/ground_truth_single.csv",
                "vtrain/ground_truth_multi.csv"):
        assert (data / rel).is_file(), rel
    assert "MIT" in (data / "vtrain" / "LICENSE").read_text() or "Permission is hereby granted" in \
        (data / "vtrain" / "LICENSE").read_text()


@pytest.mark.skipif(not (sync_data.DEFAULT_SOURCE / "published_runs.csv").is_file(),
                    reason="no ../shared/data beside this checkout to compare with")
def test_shipped_data_is_in_sync_with_the_shared_folder():
    diffs = sync_data.differences(sync_data.DEFAULT_SOURCE, sync_data.TARGET)
    assert diffs == [], f"benchmarks/data is out of date ({diffs[:5]}): run python benchmarks/sync_data.py"
