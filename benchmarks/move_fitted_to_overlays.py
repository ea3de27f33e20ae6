"""One-off migration: move the fitted values that the old `calibrate --write` put into a profile's efficiency
block (its CALIBRATION paragraph names them) into the family's calibration overlay, and set the profile back to
its sourced values (kernel_level 1, layer_overhead_us 0, the A100 scale-out tier's nccl-tests 0.9).

    python benchmarks/move_fitted_to_overlays.py [DATE]     # from the repository root

For a branch that still wrote fitted values into the Ampere/Hopper profiles: numbers are unchanged (the overlay
holds exactly the written values); the overlay's fit record keeps the old paragraph as its note. Refit afterwards
with `python benchmarks/calibrate.py --loso --out fit-{family}.yaml` to record row ids and fold spreads.
"""
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from simulator.calibration.fit import PARAMETERS
from simulator.calibration.overlays import _efficiency_block, _fold, _tier_text_with, CALIBRATION_MARK


def _name(path):
    """Field path -> the calibration parameter name."""
    if path.startswith("tiers[0]."):
        return "fast_tier_" + path.split(".", 1)[1]
    if path.startswith("tiers[-1]."):
        return "slow_tier_" + path.split(".", 1)[1]
    return path.split(".", 1)[1]

FAMS = {"nvidia-ampere": ["a100-sxm4-40gb", "a100-sxm4-80gb", "a800-sxm4-80gb"],
        "nvidia-hopper": ["h100-sxm5-80gb", "h200-sxm-141gb", "h800-sxm5-80gb"]}
SOURCED = {"kernel_level": "1.0", "layer_overhead_us": "0.0",
           # the GEMM-curve model (before the kernel tables): the profiles' sourced values, by family
           "matmul_max": {"nvidia-hopper": "0.8", "nvidia-ampere": "0.85"},
           "fp8_matmul_max": {"nvidia-hopper": "0.71", "nvidia-ampere": "null"},
           "matmul_half_dim": {"nvidia-hopper": "1470", "nvidia-ampere": "1330"},
           "matmul_k_half": "null", "attention_max": "null",
           "memory_bound": {"nvidia-hopper": "0.88"}}
import os
os.chdir(ROOT)
date = sys.argv[1] if len(sys.argv) > 1 else "2026-12-02"
for fam, names in FAMS.items():
    if not any(CALIBRATION_MARK in open(f"hardware_profiles/{n}.yaml").read() for n in names):
        print(fam, "no CALIBRATION paragraph: nothing to move")
        continue
    values, para_all = None, None
    for name in names:
        p = f"hardware_profiles/{name}.yaml"; t = open(p).read()
        data = yaml.safe_load(t)
        lines = t.split("\n"); a, b = _efficiency_block(lines); block = lines[a:b]
        src = next(j for j, l in enumerate(block) if l.startswith("  source:"))
        j = src + 1; body = []
        while j < len(block) and block[j].startswith("    "):
            body.append(block[j].strip()); j += 1
        txt = " ".join(body)
        para = txt[txt.index(CALIBRATION_MARK):] if CALIBRATION_MARK in txt else ""
        m = re.match(re.escape(CALIBRATION_MARK) + r" (.*?) fitted on (\d+)", para)
        fitted = {}
        if m:
            for item in m.group(1).split(", "):
                k, v = item.rsplit(" ", 1); fitted[k] = float(v)
        vals = {}
        for k, v in fitted.items():
            if k == "slow_tier_efficiency":
                vals["tiers[-1].efficiency"] = v
            else:
                vals[f"efficiency.{k}"] = v
        if values is None:
            values, para_all = vals, para
            rows = int(m.group(2)) if m else 0
            mape = re.search(r"Fit MAPE ([\d.]+)%", para)
        for k in fitted:
            v = SOURCED.get(k)
            v = v.get(fam) if isinstance(v, dict) else v
            if v is not None:
                for jj, l in enumerate(block):
                    if l.startswith(f"  {k}:"):
                        block[jj] = f"  {k}: {v}"
        keep = txt[:txt.index(CALIBRATION_MARK)].rstrip() if para else txt
        keep = re.sub(r"\(CALIBRATION below; [^)]*\)", "(calibration overlay)", keep)
        keep = keep.replace("(CALIBRATION below)", "(calibration overlay)").replace("(CALIBRATION note)", "(calibration overlay note)")
        keep += (f" Sourced values only (unfitted parameters at their sourced or default values). The values fitted to measured runs live in the calibration overlay "
                 f"hardware_profiles/calibration/{fam}.yaml with their fit record, applied when the profile is loaded "
                 f"(trainsim --no-calibration leaves them out).")
        block[src:j] = ["  source: >-"] + _fold(keep, 4)
        lines[a:b] = block; t = "\n".join(lines)
        if "slow_tier_efficiency" in fitted:
            t = _tier_text_with(t, -1, {"efficiency": 0.9})
        open(p, "w").write(t)
    srcs = dict((s.strip(), int(n)) for s, n in re.findall(r"([^;:]+?) \((\d+) rows?\)", para_all.split("each source weighted equally):")[1].split(". Fit MAPE")[0]))
    doc = {"family": fam, "profiles": names, "model_version": "calibration-2", "date": date,
           "values": values,
           "parameters": {k: {"lower": PARAMETERS[_name(k)][0], "upper": PARAMETERS[_name(k)][1],
                              "at_bound": False} for k in values},
           "fit": {"rows": rows, "sources": srcs, "in_sample_mape_pct": float(mape.group(1)) if mape else None,
                   "command": "python benchmarks/calibrate.py --loso (old --write, before overlays)",
                   "note": "Moved unchanged out of the profiles' CALIBRATION paragraph: " + para_all}}
    for k, v in values.items():
        lo, hi = doc["parameters"][k]["lower"], doc["parameters"][k]["upper"]
        doc["parameters"][k]["at_bound"] = abs(v - lo) <= 1e-3 * (hi - lo) or abs(v - hi) <= 1e-3 * (hi - lo)
    head = (f"# Calibration overlay of the {fam} family (simulator/specs/overlay.py): fitted values the profiles below\n"
            "# receive on load (trainsim --no-calibration leaves them out), with their fit record.\n")
    open(f"hardware_profiles/calibration/{fam}.yaml", "w", encoding="utf-8").write(head + yaml.safe_dump(doc, sort_keys=False, width=116))
    print(fam, values, rows, srcs and len(srcs))

# the A100/A800 scale-out tier's source: the sourced value stays, the fit is in the overlay
for name in FAMS["nvidia-ampere"]:
    p = f"hardware_profiles/{name}.yaml"; t = open(p).read()
    if "FITTED:" not in t:
        continue
    i = t.index("FITTED:"); j = t.index("nccl-tests figure above.", i) + len("nccl-tests figure above.")
    new = ("The efficiency 0.9 is the sourced value; the training-run fit is in the calibration overlay "
           "hardware_profiles/calibration/nvidia-ampere.yaml.")
    ls = t.rfind("\n", 0, i) + 1
    before = t[ls:i].strip(); ae = t.find("\n", j); tail = t[j:ae].strip()
    t = t[:ls] + "\n".join(_fold((before + " " + new + " " + tail).strip(), 6)) + t[ae:]
    open(p, "w").write(t)
