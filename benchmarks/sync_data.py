"""Mirror the project's measured-runs folder (../shared/data beside the repository) into benchmarks/data.

    python benchmarks/sync_data.py                  # copy every file, drop files the source no longer has
    python benchmarks/sync_data.py --check          # exit 1 and list the differences; change nothing
    python benchmarks/sync_data.py --source DIR     # mirror another copy of the folder

benchmarks/data ships with the repository so that `trainsim validate benchmarks/data/published_runs.csv` and the
fidelity tests run from a clone. Its README.md is the source's, with one line in front saying where it comes from.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "data"
TARGET = ROOT / "benchmarks" / "data"
NOTE = (b"> This folder mirrors `../shared/data` (the project's measured-runs folder beside the repository); "
        b"re-sync it with `python benchmarks/sync_data.py` (`--check` lists differences).\n\n")


def expected_files(source: Path) -> dict[str, bytes]:
    """Relative path -> content that the mirror must hold (README.md gets the mirror note in front)."""
    out = {}
    for p in sorted(source.rglob("*")):
        if p.is_file():
            rel = p.relative_to(source).as_posix()
            data = p.read_bytes()
            out[rel] = NOTE + data if rel == "README.md" else data
    return out


def differences(source: Path, target: Path) -> list[str]:
    """What the mirror lacks, holds in another version, or holds extra; empty when in sync."""
    want = expected_files(source)
    have = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()} if target.is_dir() else set()
    diffs = [f"missing: {rel}" for rel in want if rel not in have]
    diffs += [f"differs: {rel}" for rel in want if rel in have and (target / rel).read_bytes() != want[rel]]
    diffs += [f"extra: {rel}" for rel in sorted(have - set(want))]
    return diffs


def sync(source: Path, target: Path) -> list[str]:
    """Make `target` a mirror of `source`; returns the changes made."""
    changes = differences(source, target)
    want = expected_files(source)
    for rel, data in want.items():
        dst = target / rel
        if not dst.is_file() or dst.read_bytes() != data:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
    for line in changes:
        if line.startswith("extra: "):
            (target / line[len("extra: "):]).unlink()
    return changes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder to mirror (default ../shared/data)")
    ap.add_argument("--check", action="store_true", help="list differences and exit 1 if any; change nothing")
    a = ap.parse_args(argv)
    if not (a.source / "published_runs.csv").is_file():
        print(f"error: {a.source} holds no published_runs.csv", file=sys.stderr)
        return 2
    lines = differences(a.source, TARGET) if a.check else sync(a.source, TARGET)
    for line in lines:
        print(line)
    if a.check:
        print("in sync" if not lines else f"{len(lines)} difference(s): run python benchmarks/sync_data.py")
        return 1 if lines else 0
    print(f"{len(lines)} change(s)" if lines else "already in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
