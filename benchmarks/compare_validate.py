"""Check that a change leaves every `trainsim validate` figure where it was (speed work must not move a number).

    python benchmarks/compare_validate.py BEFORE.json AFTER.json
    python benchmarks/compare_validate.py --tree OTHER_CHECKOUT [--runs FILE.csv] [--rtol 1e-9]

Compares two `validate --format json` outputs row by row: every field of every row (predicted, error_pct,
step_time_s, memory_gb, implied_mfu, the chosen layout, status, reason, notes...) and the summary, floats to a
relative tolerance (default 1e-9), everything else exactly. With --tree, both outputs are made here: this
checkout's and OTHER_CHECKOUT's (e.g. a `git archive` of the base commit), each with its own root first on
PYTHONPATH. Prints each difference and exits 1 if any.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def close(x, y, rtol: float) -> bool:
    if isinstance(x, bool) or isinstance(y, bool):
        return x is y
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            return True
        return x == y or abs(x - y) <= rtol * max(abs(x), abs(y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(close(x[k], y[k], rtol) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(close(p, q, rtol) for p, q in zip(x, y))
    return x == y


def differences(before: dict, after: dict, rtol: float) -> list[str]:
    """One line per differing row field (and the summary)."""
    rb, ra = before["rows"], after["rows"]
    if len(rb) != len(ra):
        return [f"row count {len(rb)} -> {len(ra)}"]
    out = []
    for x, y in zip(rb, ra):
        for k in sorted(set(x) | set(y)):
            if not close(x.get(k), y.get(k), rtol):
                out.append(f"{x.get('id')} (line {x.get('line')}) {k}: {x.get(k)!r} -> {y.get(k)!r}")
    if not close(before.get("summary"), after.get("summary"), rtol):
        out.append("summary differs")
    return out


def validate_json(tree: Path, runs: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    r = subprocess.run([sys.executable, "-m", "simulator", "validate", str(runs), "--format", "json"], cwd=tree,
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"validate in {tree} exited {r.returncode}: {r.stderr.strip()[-600:]}")
    return json.loads(r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", metavar="JSON", help="BEFORE.json AFTER.json (validate --format json)")
    ap.add_argument("--tree", type=Path, help="the other checkout: its output is BEFORE, this checkout's AFTER")
    ap.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "data" / "published_runs.csv",
                    help="runs file for --tree (default benchmarks/data/published_runs.csv)")
    ap.add_argument("--rtol", type=float, default=1e-9, help="relative tolerance on floats (default 1e-9)")
    args = ap.parse_args()
    if args.tree is not None:
        if args.files:
            ap.error("give two JSON files or --tree, not both")
        runs = args.runs.resolve()
        before, after = validate_json(args.tree.resolve(), runs), validate_json(ROOT, runs)
    elif len(args.files) == 2:
        before, after = (json.loads(Path(f).read_text(encoding="utf-8")) for f in args.files)
    else:
        ap.error("give BEFORE.json AFTER.json, or --tree OTHER_CHECKOUT")
    diff = differences(before, after, args.rtol)
    for line in diff:
        print(line)
    print(f"{len(after['rows'])} rows compared at rtol {args.rtol:g}: {len(diff)} differences")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
