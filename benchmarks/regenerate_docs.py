"""Regenerate every figure quoted in README.md and docs/*.md from the commands that produce them.

    python benchmarks/regenerate_docs.py            # rewrite the marked blocks (and benchmarks/README.md)
    python benchmarks/regenerate_docs.py --check    # exit 1 when a block is stale (nothing written)
    python benchmarks/regenerate_docs.py --skip-benchmarks   # leave benchmarks/README.md alone

A generated block sits between two markers in a Markdown file:

    <!-- gen:NAME -->
    ... (replaced on every run) ...
    <!-- /gen:NAME -->

NAME is a key of BLOCKS: a `console` entry runs a trainsim command (`python -m simulator`, in a scratch folder so
that output files do not land in the repository) and shows the command and its output; a function entry returns
the Markdown itself (the fidelity figures of README.md, from `validate`). benchmarks/README.md's tables and
plots are written by benchmarks/validate_published.py, which this script runs first. No figure in a marked block
is typed by hand; text outside the markers is prose and is not touched.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DOCS = ("README.md", "docs/search.md", "docs/simulate.md", "docs/plan.md", "docs/frameworks.md")
MARKER = re.compile(r"(<!-- gen:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /gen:(?P=name) -->)", re.S)


@dataclass(frozen=True)
class Console:
    """A command whose output a block shows: `shown` is the command line printed in the block (with line
    breaks), `args` what runs; `keep(lines)` trims the output (e.g. the first rows of a long table)."""

    shown: str
    args: tuple
    keep: Optional[Callable[[list], list]] = None


def head(n: int, tail: int = 0) -> Callable[[list], list]:
    def cut(lines: list) -> list:
        if len(lines) <= n + tail:
            return lines
        return lines[:n] + ["..."] + (lines[-tail:] if tail else [])
    return cut


def from_line(prefix: str, n: int) -> Callable[[list], list]:
    """The lines from the first that starts with `prefix` (the replay section of simulate), at most n."""
    def cut(lines: list) -> list:
        i = next((k for k, ln in enumerate(lines) if ln.startswith(prefix)), 0)
        rest = lines[i:]
        return (["...                                 (the estimate tables, engine \"des\")"] if i else []) + \
            rest[:n] + (["..."] if len(rest) > n else [])
    return cut


def run_cli(args: tuple) -> list:
    """stdout lines of `python -m simulator ARGS` run in a scratch folder, the repository on the path."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200", TERM="dumb")
    env.pop("TRAINSIM_DEBUG", None)
    with tempfile.TemporaryDirectory() as scratch:
        proc = subprocess.run([sys.executable, "-m", "simulator", *args], cwd=scratch, env=env,
                              capture_output=True, text=True, timeout=600)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"trainsim {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return [ln.rstrip() for ln in proc.stdout.splitlines()]


def console_block(c: Console) -> str:
    lines = run_cli(c.args)
    if c.keep:
        lines = c.keep(lines)
    return "```console\n$ " + c.shown + "\n" + "\n".join(lines) + "\n```\n"


def _pct(s: dict) -> str:
    return f"{s['mape_pct']:.1f}%"


def readme_fidelity() -> str:
    """The fidelity sentence of README.md: published runs and both vTrain files, from `validate`."""
    from simulator.validation import validate
    data = ROOT / "benchmarks" / "data"
    rep = validate(data / "published_runs.csv")
    pub = rep.summary
    ok = [r for r in rep.rows if r.status == "ok"]
    miss = sum(1 for r in ok if abs(r.error_pct) > 25)
    kor = [abs(r.error_pct) for r in ok if r.id.startswith("korthikanti22-")]
    multi = validate(data / "vtrain" / "ground_truth_multi.csv").summary
    single = validate(data / "vtrain" / "ground_truth_single.csv").summary
    fam = pub.get("by_hardware", {})
    names = {"nvidia-hopper": "NVIDIA Hopper", "nvidia-ampere": "Ampere", "nvidia-blackwell": "Blackwell",
             "tpu": "TPU"}
    per = ", ".join(f"{label} {fam[k]['mape_pct']:.1f}%" for k, label in names.items() if fam.get(k, {}).get("n"))
    return (f"published runs {pub['n']} predicted rows ({pub['n_skipped']} skipped), MAPE {_pct(pub)}, median "
            f"{pub['median_ape_pct']:.1f}% ({per}); vTrain multi-node {_pct(multi)} (vTrain's own: 14.73%), "
            f"vTrain single-node {_pct(single)} (vTrain's own: 8.37%)"
            + (f"; Korthikanti et al. 2022 {len(kor)} end-to-end cases {sum(kor) / len(kor):.2f}% mean, "
               f"{max(kor):.2f}% max (Calculon: 3.65% / 8.87%)" if kor else "")
            + f". {miss} published rows miss by more than 25%.\n")


SEARCH = ("search", "--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--devices", "1024", "--global-batch",
          "1536", "--seq-len", "2048", "--top", "5")
QUICK = ("estimate", "--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--devices", "1024", "--tp", "8",
         "--pp", "8", "--micro-batch", "1", "--global-batch", "1536", "--seq-len", "2048")
COMPARE = ("compare", "--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "h100-sxm5-80gb", "mi300x", "tpu-v5p",
           "ascend-910b", "--devices", "1024", "--global-batch", "1536", "--seq-len", "2048", "--tokens", "300B",
           "--chart", "compare.png")
SIMULATE = ("simulate", "--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--devices", "1024", "--tp", "8",
            "--pp", "8", "--micro-batch", "1", "--global-batch", "1536", "--seq-len", "2048", "--trace", "step.json",
            "--gantt", "step.png")

#: Every generated block: name -> Console (a command and its output) or a function returning Markdown.
BLOCKS = {
    "readme-quickstart": Console("trainsim " + " ".join(QUICK), QUICK, head(9)),
    "readme-fidelity": readme_fidelity,
    "search-example": Console("trainsim " + " ".join(SEARCH), SEARCH),
    "compare-example": Console("trainsim compare --model gpt3-175b --hardware a100-sxm4-80gb h100-sxm5-80gb mi300x "
                               "tpu-v5p ascend-910b \\\n    --devices 1024 --global-batch 1536 --seq-len 2048 "
                               "--tokens 300B --chart compare.png", COMPARE),
    "simulate-example": Console("trainsim simulate --model gpt3-175b --hardware a100-sxm4-80gb --devices 1024 --tp 8 "
                                "--pp 8 \\\n      --micro-batch 1 --global-batch 1536 --seq-len 2048 --trace step.json "
                                "--gantt step.png", SIMULATE, from_line("replay", 16)),
}


def render(name: str) -> str:
    entry = BLOCKS[name]
    return console_block(entry) if isinstance(entry, Console) else entry()


def regenerate(text: str, cache: dict) -> str:
    """`text` with every marked block replaced by its generated Markdown (an unknown NAME is an error)."""
    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in BLOCKS:
            raise SystemExit(f"unknown generated block '{name}' (known: {', '.join(BLOCKS)})")
        if name not in cache:
            cache[name] = render(name)
        return m.group(1) + cache[name] + m.group(4)
    return MARKER.sub(sub, text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="report stale blocks, write nothing (exit 1 if any)")
    ap.add_argument("--skip-benchmarks", action="store_true", help="do not run benchmarks/validate_published.py")
    args = ap.parse_args(argv)
    if not args.check and not args.skip_benchmarks:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "validate_published.py")], cwd=ROOT, check=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    cache, stale = {}, []
    for rel in DOCS:
        path = ROOT / rel
        if not path.exists():
            continue
        old = path.read_text()
        new = regenerate(old, cache)
        if new != old:
            stale.append(rel)
            if not args.check:
                path.write_text(new)
    print(("stale: " if args.check else "rewrote: ") + (", ".join(stale) or "nothing"))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
