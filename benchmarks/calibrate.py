"""Re-run the calibration of the hardware families against the visible measured runs.

    python benchmarks/calibrate.py                 # fit and print (no files changed)
    python benchmarks/calibrate.py --loso          # plus leave-one-source-out errors
    python benchmarks/calibrate.py --loso --out fit-{family}.yaml   # write new overlay files (review, then copy
                                                   # them to hardware_profiles/calibration/ to ship them)
    python benchmarks/calibrate.py --frameworks --loso --out frameworks.yaml   # the framework efficiencies
                                                   # (simulator/calibration/frameworks.py), on the shipped families

Order of a full refit: frameworks on the shipped families, then the families on top of the new frameworks
overlay (fit_families reads it), then the frameworks again on the new families.

Data: benchmarks/data/published_runs.csv and the vTrain ground-truth files (a mirror of the sibling
`../shared/data` folder, kept by benchmarks/sync_data.py; --data-dir to point elsewhere). Same as `trainsim calibrate FILES... [--loso] [--out FILE]`; what each family
fits is simulator.calibration.FAMILY_FITS.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "benchmarks" / "data"  # mirror of ../shared/data (benchmarks/sync_data.py)
FILES = ("published_runs.csv", "vtrain/ground_truth_single.csv", "vtrain/ground_truth_multi.csv")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    ap.add_argument("--family", action="append")
    ap.add_argument("--loso", action="store_true")
    ap.add_argument("--out", help="new overlay file(s); {family} is replaced by the family")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--frameworks", action="store_true", help="fit the framework efficiencies instead")
    ap.add_argument("--format", choices=["table", "json"], default="table")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from simulator.cli import main as cli_main

    files = [str(Path(a.data_dir) / f) for f in FILES]
    args = ["calibrate", *files, "--format", a.format]
    for f in a.family or []:
        args += ["--family", f]
    if a.loso:
        args.append("--loso")
    if a.out:
        args += ["--out", a.out]
    if a.force:
        args.append("--force")
    if a.frameworks:
        args.append("--frameworks")
    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
