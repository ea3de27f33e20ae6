"""`trainsim calibrate`: fit the few efficiency parameters of each hardware family to measured runs."""
from __future__ import annotations

import argparse

from . import common


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="fit each family's efficiency parameters to measured runs (and optionally write them)",
        description="Weighted robust least squares of log(predicted/measured) over the time/rate rows of the "
                    "given runs files, per hardware family, for the parameters listed in "
                    "simulator.calibration.FAMILY_FITS. Prints the fitted values and the error per source; "
                    "--loso refits without each source in turn (leave-one-source-out); --write stores the values "
                    "and how they were obtained in the profiles' efficiency blocks.")
    p.add_argument("files", nargs="+", metavar="FILE.csv", help="runs files (published schema and/or vTrain CSVs)")
    p.add_argument("--family", action="append", help="only this family (repeatable); default: every fitted family")
    p.add_argument("--loso", action="store_true", help="also report leave-one-source-out errors")
    p.add_argument("--write", action="store_true", help="write the fitted values into the hardware profiles")
    p.add_argument("--max-nfev", type=common.positive_int, default=60, help="optimiser evaluations per fit")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    results = calibrate(args.files, families=args.family, loso=args.loso, write=args.write, max_nfev=args.max_nfev)
    if args.format == "json":
        common.print_json(results)
    else:
        from ..reports.calibration_tables import calibration_renderable
        common.stdout().print(calibration_renderable(results))
    return 0


def calibrate(files, families=None, loso=False, write=False, max_nfev=60) -> dict:
    """Fit every configured family present in the files; returns a JSON-able dict (and, with `write`, stores the
    fitted values and their provenance paragraph in the profiles: the only file writes of calibration)."""
    from ..calibration import fit_families, profile_text_with_fit
    from ..errors import SpecError
    from ..specs.loading import profiles_dir

    out = fit_families(files, families=families, loso=loso, max_nfev=max_nfev, paragraphs=write)
    if write:
        for entry in out["families"].values():
            written = []
            for name in entry["profiles"]:
                path = profiles_dir() / f"{name}.yaml"
                if not path.exists():
                    raise SpecError(f"profile {name} not found in {profiles_dir()}")
                text = path.read_text(encoding="utf-8")
                path.write_text(profile_text_with_fit(text, entry["params"], entry["source_paragraph"]),
                                encoding="utf-8")
                written.append(str(path))
            entry["written"] = written
            entry["source_paragraph"] = entry.pop("source_paragraph")       # after `written`, as before
    return out
