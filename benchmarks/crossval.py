"""Cross-validated error table of the shipped calibration (the figures of benchmarks/README.md "Cross-validated
error"), and the per-family error record that `simulator.uncertainty` reads for families without calibration.

    python benchmarks/crossval.py                      # print the markdown table (minutes: one refit per source)
    python benchmarks/crossval.py --write-errors       # also write hardware_profiles/calibration/validation-errors.yaml

Same figures as `trainsim validate benchmarks/data/published_runs.csv --cv`.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "benchmarks" / "data" / "published_runs.csv"
ERRORS = ROOT / "hardware_profiles" / "calibration" / "validation-errors.yaml"
COMMAND = "python benchmarks/crossval.py --write-errors"


def markdown(res: dict) -> str:
    def pct(s):
        return "-" if s["mape_pct"] is None else f"{s['mape_pct']:.1f}"
    lines = ["| family | rows | sources | calibrated | in-sample MAPE % | LOSO MAPE % | LOFO MAPE % |",
             "|---|---:|---:|:---:|---:|---:|---:|"]
    for fam, v in res["families"].items():
        lines.append(f"| {fam} | {v['in_sample']['n']} | {v['sources']} | {'yes' if v['fitted'] else 'no'} | "
                     f"{pct(v['in_sample'])} | {pct(v['loso'])} | {pct(v['lofo'])} |")
    o = res["overall"]
    lines.append(f"| **all** | {o['in_sample']['n']} | | | **{pct(o['in_sample'])}** | **{pct(o['loso'])}** | "
                 f"**{pct(o['lofo'])}** |")
    if res.get("frameworks"):
        lines += ["", "| framework preset | rows | sources | efficiency fitted | in-sample MAPE % | LOSO MAPE % | "
                      "LOFO MAPE % |", "|---|---:|---:|:---:|---:|---:|---:|"]
        fw = res.get("framework_values", {}).get("shipped", {})
        for name, v in res["frameworks"].items():
            eff = f"{fw[name]:.3f}" if name in fw else "no"
            lines.append(f"| {name} | {v['in_sample']['n']} | {v['sources']} | {eff} | {pct(v['in_sample'])} | "
                         f"{pct(v['loso'])} | {pct(v['lofo'])} |")
    return "\n".join(lines)


def best_implied_mfu(runs: str) -> dict:
    """Family -> (best MFU a shipped time/rate row's measurement implies, its row id): in-sample validation's
    `implied_mfu` (simulator.validation.predict.implied_mfu), so step-time and tokens/s rows count, not only `mfu`
    rows. Read by `trainsim compare` to warn when a prediction exceeds what was ever measured on the family."""
    from simulator.validation import validate
    best: dict = {}
    for r in validate(runs).ok_rows:
        v = r.implied_mfu
        if v is not None and 0 < v <= 1 and v > best.get(r.family, (0.0, ""))[0]:
            best[r.family] = (v, r.id)
    return best


def errors_document(res: dict, best_mfu: dict) -> dict:
    from simulator.specs.overlay import MODEL_VERSION

    def r(s):
        return None if s["mape_pct"] is None else round(s["mape_pct"], 1)
    return {"model_version": MODEL_VERSION, "date": datetime.date.today().isoformat(), "command": COMMAND,
            "data": "benchmarks/data/published_runs.csv (time/rate rows)",
            "families": {fam: {"rows": v["in_sample"]["n"], "sources": v["sources"], "calibrated": v["fitted"],
                               "in_sample_mape_pct": r(v["in_sample"]), "loso_mape_pct": r(v["loso"]),
                               "lofo_mape_pct": r(v["lofo"]),
                               **({"best_measured_mfu": round(best_mfu[fam][0], 4),
                                   "best_measured_mfu_row": best_mfu[fam][1]} if fam in best_mfu else {})}
                         for fam, v in res["families"].items()},
            "overall": {"rows": res["overall"]["in_sample"]["n"], "in_sample_mape_pct": r(res["overall"]["in_sample"]),
                        "loso_mape_pct": r(res["overall"]["loso"]), "lofo_mape_pct": r(res["overall"]["lofo"])}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=str(RUNS))
    ap.add_argument("--max-nfev", type=int, default=15)
    ap.add_argument("--write-errors", action="store_true")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import yaml

    from simulator.calibration.crossval import cross_validate
    res = cross_validate([a.runs], max_nfev=a.max_nfev)
    print(markdown(res))
    if a.write_errors:
        head = ("# Cross-validated error per hardware family on the shipped runs (written by benchmarks/crossval.py;\n"
                "# read by simulator/uncertainty.py for the error band of families without calibration).\n")
        doc = errors_document(res, best_implied_mfu(a.runs))
        ERRORS.write_text(head + yaml.safe_dump(doc, sort_keys=False, width=116), encoding="utf-8")
        print(f"\nwrote {ERRORS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
