"""What each family fits, and the fitted values as they are written into the hardware profiles: the value, the
data it came from, the fit and leave-one-source-out errors, and how to re-run it, in the profile's efficiency
`source` paragraph (the profile's comments and every other line are kept).

Pure text functions: the CLI (`trainsim calibrate --write`) reads and writes the files.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .fit import EFFICIENCY_FIELDS, FitResult, FitSet, fit, leave_one_source_out, load_fitsets, source_stats


@dataclass(frozen=True)
class FamilyFit:
    """One family's calibration: the parameters it fits and the profiles that receive the result.

    Only profiles of the same silicon as the data receive fitted values (A100 data -> A100 40/80 GB and A800;
    H100 data -> H100, H200 and H800, which share the SM and its clocks)."""

    family: str
    params: tuple
    profiles: tuple
    note: str = ""


FAMILY_FITS = (
    FamilyFit("nvidia-ampere", ("kernel_level", "layer_overhead_us", "slow_tier_efficiency"),
              ("a100-sxm4-40gb", "a100-sxm4-80gb", "a800-sxm4-80gb"),
              note="kernel efficiencies (GEMM, grouped GEMM, attention, memory-bound kernels) come from the measured "
                   "kernel model (simulator/costs/kernels.py; A100 from SimuMax's A100-PCIe tables with the SXM "
                   "part's MAMF), not from this fit; kernel_level is the sustained training share of those tables' "
                   "throughput. slow_tier_efficiency is the scale-out network's bus-bandwidth efficiency in training "
                   "(nccl-tests reach 0.85-0.96 of line rate on 2-3 idle nodes); the NVLink tier keeps its nccl-tests "
                   "values"),
    FamilyFit("nvidia-hopper", ("kernel_level",),
              ("h100-sxm5-80gb", "h200-sxm-141gb", "h800-sxm5-80gb"),
              note="kernel efficiencies come from the kernel model (simulator/costs/kernels.py: H100 GEMMs "
                   "transferred from the A100-PCIe and B200 tables with H100's MAMF, FlashAttention-3 forward "
                   "measured on H100, other attention kernels scaled by their measured speed relative to it), not "
                   "from this fit; kernel_level is the sustained training share of their throughput. "
                   "layer_overhead_us is not fitted: it is a floor, max(GPU time, host time) per layer pass, and the "
                   "shortest GPU layer pass of any Hopper row is 1.09 ms (Megatron-LM 1.7B forward), so every value "
                   "below that leaves every prediction unchanged: the rows cannot identify it (two-parameter fits "
                   "ended on its lower bound 0 with zero gradient); the profile's sourced 0 stays. The network tiers "
                   "keep their nccl-tests values"),
    FamilyFit("tpu", ("kernel_level",), ("tpu-v3", "tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e"),
              note="TPU kernels follow the systolic rule (simulator/costs/kernels.py: the MXU matmul fraction 0.996 "
                   "measured in one profiled TPU v2 matmul, times the MXU padding fill), which no TPU kernel table "
                   "checks; kernel_level is the sustained share of that fraction in training steps (one value for "
                   "every TPU generation). The ICI and DCN tiers keep their sourced values: fitting the ICI "
                   "efficiency as well drove it to its bound 1.0"),
    FamilyFit("nvidia-volta", ("kernel_level",), ("v100-sxm2-32gb", "v100-sxm3-32gb"),
              note="only kernel_level: the Volta rows are few, so the host floors and network tiers keep their "
                   "sourced values"),
)

#: Families whose profiles keep their sourced defaults, and why.
UNFITTED = {
    "nvidia-blackwell": "not fitted: SimuMax's B200 rows check the B200 kernel tables (measured on that node), so "
                        "they must not be fitted on",
    "ascend": "9 rows from 2 sources (MindSpeed-LLM's table: 8 rows, layouts from its example scripts; Pangu Ultra: "
              "1): not fitted, the kernel transfer (MAMF 311 TF: S85's 328 TF fastest-iteration figure on the mean "
              "definition of the other MAMFs), the HCCS full mesh and the runs' recipe facts give 8.2%",
    "amd-cdna2": "1 usable row (the Frontier authors' 175B verification log, low confidence): it needs 151 TFLOP/s per "
                 "GCD sustained, above the catalogued MAMF of 137 (one community report); its DeepSpeed config "
                 "(micro-batch 4 against Megatron's 1) makes the step process 320 of the 1280 sequences the log "
                 "counts (recipe_notes.yaml), so no fit is made on it",
    "amd-cdna3": "no rows",
    "gaudi": "5 rows from one source (Intel's Gaudi 2 table, layouts from Intel's example configs, low confidence): "
             "not fitted; the MAMF-levelled kernels and the RoCE full mesh give 8.8%",
}

CALIBRATION_MARK = "CALIBRATION (benchmarks/calibrate.py):"


def describe_fit(ff: FamilyFit, res: FitResult, fs: FitSet, loso: Optional[dict] = None) -> str:
    """One paragraph for a profile's efficiency `source`: fitted values, the data, the script, the errors."""
    vals = ", ".join(f"{k} {_round(v)}" for k, v in res.params.items() if k in ff.params)
    counts: dict = {}
    for c in fs.cases:
        counts[c.source] = counts.get(c.source, 0) + 1
    srcs = "; ".join(f"{s} ({n} row{'s' if n > 1 else ''})" for s, n in sorted(counts.items()))
    st = source_stats(fs, res.params)["(all)"]
    txt = (f"{CALIBRATION_MARK} {vals} fitted on {len(fs.cases)} {ff.family} rows whose metric is a time or rate "
           f"(weighted robust least squares of log(predicted/measured), each source weighted equally): {srcs}. "
           f"Fit MAPE {st['mape_pct']:.1f}%.")
    if loso:
        txt += (" Leave-one-source-out MAPE (refit without the source, error on it): "
                + "; ".join(f"{_short(s)} {v['mape_pct']:.1f}%" for s, v in loso.items()) + ".")
    if ff.note:
        txt += f" Note: {ff.note}."
    txt += " Re-run: python benchmarks/calibrate.py --write (or trainsim calibrate --write)."
    return txt


def _short(source: str) -> str:
    """'Reducing Activation Recomputation ... (Korthikanti et al. 2022)' -> 'Korthikanti et al. 2022'."""
    if source.startswith("vTrain"):
        return "vTrain " + source.split(")")[-1].strip()
    m = re.search(r"\(([^()]*\d[^()]*)\)\s*$", source)
    return (m.group(1) if m else source[:40]).split(";")[0].strip()


def _round(v: float):
    if abs(v) >= 100:
        return int(round(v))
    if abs(v) >= 10:
        return round(v, 1)
    return round(v, 3)


def _fold(text: str, indent: int, width: int = 116) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) + indent > width:
            lines.append(" " * indent + cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(" " * indent + cur)
    return lines


def _efficiency_block(lines: list[str]) -> tuple[int, int]:
    """(first, end) line indices of the body of the top-level `efficiency:` block."""
    try:
        start = next(i for i, l in enumerate(lines) if l.rstrip() == "efficiency:")
    except StopIteration:
        raise ValueError("profile has no top-level 'efficiency:' block") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")), len(lines))
    return start + 1, end


def _set_values(block: list[str], params: dict) -> None:
    """Replace (or insert before `source:`) every fitted efficiency field of the block, in place."""
    for key in EFFICIENCY_FIELDS:
        if key not in params:
            continue
        val = _round(params[key])
        for j, l in enumerate(block):
            if l.strip().startswith(f"{key}:") and l.startswith("  ") and not l.startswith("   "):
                block[j] = f"  {key}: {val}"
                break
        else:
            src = next((j for j, l in enumerate(block) if l.startswith("  source:")), len(block))
            block.insert(src, f"  {key}: {val}")


def _set_source(block: list[str], paragraph: str) -> None:
    """Append `paragraph` to the block's folded `source:` scalar (dropping an earlier calibration paragraph)."""
    src = next((j for j, l in enumerate(block) if l.startswith("  source:")), None)
    if src is None:
        block += ["  source: >-"] + _fold(paragraph, 4)
        return
    first = block[src][len("  source:"):].strip()
    j = src + 1
    body = []
    while j < len(block) and block[j].startswith("    "):
        body.append(block[j].strip())
        j += 1
    old = " ".join(x for x in ([first] if first not in (">-", ">", "|", "|-") else []) + body if x)
    if CALIBRATION_MARK in old:
        old = old[:old.index(CALIBRATION_MARK)].rstrip()
    block[src:j] = ["  source: >-"] + _fold((old + " " + paragraph).strip(), 4)


def profile_text_with_fit(text: str, params: dict, paragraph: str) -> str:
    """The YAML text of a profile with the fitted efficiency values (and fast/slow tier efficiency and
    latency_us, when fitted) replaced in place, and `paragraph` appended to the efficiency block's `source`
    (replacing an earlier calibration paragraph). Everything else, comments included, is kept."""
    lines = text.split("\n")
    first, end = _efficiency_block(lines)
    block = lines[first:end]
    _set_values(block, params)
    _set_source(block, paragraph)
    lines[first:end] = block
    out = "\n".join(lines)
    for which, idx in (("fast", 0), ("slow", -1)):
        up = {k.split("_tier_")[1]: v for k, v in params.items() if k.startswith(f"{which}_tier_")}
        if up:
            out = _tier_text_with(out, idx, up)
    return out


def _tier_text_with(text: str, idx: int, up: dict) -> str:
    lines = text.split("\n")
    starts = [i for i, l in enumerate(lines) if l.startswith("  - name:")]
    if not starts:
        return text
    i0 = starts[idx]
    i1 = next((i for i in range(i0 + 1, len(lines)) if lines[i].startswith("  - name:") or
               (lines[i] and not lines[i].startswith(" "))), len(lines))
    for j in range(i0, i1):
        for key in up:
            if lines[j].strip().startswith(f"{key}:"):
                lines[j] = f"    {key}: {_round(up[key])}"
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# overlay files (simulator/specs/overlay.py): the fitted values with their fit record
# ---------------------------------------------------------------------------------------------------------------

def overlay_document(ff: FamilyFit, res: FitResult, fs: FitSet, loso: Optional[dict], date: str,
                     command: str = "") -> dict:
    """The overlay of a fit as a plain mapping (validated by specs.overlay.Overlay): values by field path, each
    parameter's bounds, whether it sits on one, its sourced value and leave-one-source-out spread, the data (sources,
    row ids), the in-sample and cross-validated MAPE, the model version and the date."""
    from ..specs.overlay import MODEL_VERSION
    from .fit import PARAMETERS, at_bound, current_values, param_path

    with _sourced():
        sourced_hw = _sourced_profile(ff, fs)
    params = {}
    for name in ff.params:
        lo, hi, _ = PARAMETERS[name]
        rec = {"lower": lo, "upper": hi, "at_bound": at_bound(name, res.params[name])}
        if sourced_hw is not None:
            rec["sourced"] = _round(current_values(sourced_hw, [name])[0])
        if loso:
            vals = [v["params"][name] for v in loso.values() if "params" in v]
            if vals:
                rec["loso_min"], rec["loso_max"] = _round(min(vals)), _round(max(vals))
        params[param_path(name)] = rec
    counts: dict = {}
    for c in fs.cases:
        counts[c.source] = counts.get(c.source, 0) + 1
    fit_rec = {"rows": len(fs.cases), "sources": dict(sorted(counts.items())),
               "row_ids": [str(c.id) for c in fs.cases],
               "in_sample_mape_pct": round(source_stats(fs, res.params)["(all)"]["mape_pct"], 2),
               "command": command}
    if loso:
        by = {s: round(v["mape_pct"], 2) for s, v in loso.items() if v.get("mape_pct") is not None}
        fit_rec["loso_by_source_pct"] = by
        n = sum(v["n"] for v in loso.values() if v.get("mape_pct") is not None)
        if n:
            fit_rec["loso_mape_pct"] = round(sum(v["mape_pct"] * v["n"] for v in loso.values()
                                                 if v.get("mape_pct") is not None) / n, 2)
    return {"family": ff.family, "profiles": list(ff.profiles), "model_version": MODEL_VERSION, "date": date,
            "values": {param_path(k): _round(res.params[k]) for k in ff.params}, "parameters": params,
            "fit": fit_rec}


def overlay_text(doc: dict) -> str:
    """YAML text of an overlay document, with a header saying what it is."""
    import yaml

    head = (f"# Calibration overlay of the {doc['family']} family (simulator/specs/overlay.py), written by "
            "`trainsim calibrate`.\n# Review it, then copy it to hardware_profiles/calibration/ to ship it.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, width=116, allow_unicode=True)


def _sourced():
    from ..specs.overlay import calibration_disabled
    return calibration_disabled()


def _sourced_profile(ff: FamilyFit, fs: FitSet):
    from ..errors import SpecError
    from ..specs.loading import load_hardware

    try:
        return load_hardware(ff.profiles[0], calibration=False)
    except SpecError:
        return None


def fit_family(ff: FamilyFit, fs: FitSet, loso: bool = False, max_nfev: int = 60,
               overlay_date: Optional[str] = None, command: str = "") -> dict:
    """One family's calibration as a JSON-able dict: fitted and starting values, cost, errors per source before
    and after, a warning for every value on its bound, optionally the leave-one-source-out errors (each refit
    starts from the all-rows fit) and, with `overlay_date`, the overlay document (overlay_document)."""
    from .fit import at_bound, param_path

    res = fit(fs, ff.params, max_nfev=max_nfev)
    entry = {"params": {k: res.params[k] for k in ff.params}, "start": res.start, "rows": len(fs.cases),
             "sources": fs.sources, "cost_start": res.cost_start, "cost": res.cost, "before": source_stats(fs, {}),
             "after": source_stats(fs, res.params), "profiles": list(ff.profiles), "warnings": []}
    for k in ff.params:
        if at_bound(k, res.params[k]):
            entry["warnings"].append(f"{param_path(k)} = {res.params[k]:.4g} sits on its bound: the rows ask for "
                                     "physics the model lacks; the value is not a measurement")
    lo = None
    if loso:
        lo = leave_one_source_out(fs, ff.params, x0=[res.params[k] for k in ff.params],
                                  max_nfev=max(5, max_nfev // 4))
        entry["leave_one_source_out"] = lo
    if overlay_date:
        entry["overlay"] = overlay_document(ff, res, fs, lo, overlay_date, command=command)
    return entry


def fit_families(files, families=None, loso: bool = False, max_nfev: int = 60, max_rows_per_source: int = 150,
                 overlay_date: Optional[str] = None, command: str = "", framework_values: Optional[dict] = None) -> dict:
    """Fit every family of the given runs files that FAMILY_FITS configures and whose rows support it (fit.supported:
    >= MIN_ROWS_PER_PARAMETER rows per parameter, >= MIN_SOURCES sources), from the sourced profiles (overlays off):
    {"families": {family: fit_family(...)}, "notes": [...]}; the notes speak only of the given files. Every prediction
    runs with the framework efficiencies `framework_values` (default: the shipped framework overlay's,
    calibration.frameworks), so the family levels are those of the reference stacks; rows of non-reference stacks
    with no fitted efficiency are left out (frameworks.sets_family_level), said in the notes. Pure."""
    from ..specs.overlay import calibration_disabled
    from .fit import supported, thin_sources
    from .frameworks import preset_name, sets_family_level

    from ..specs.overlay import framework_efficiencies, framework_overlay

    if framework_values is None:                 # the family fit sits on top of the shipped framework fit
        fov = framework_overlay()
        framework_values = dict(fov.values) if fov is not None else {}
    with calibration_disabled():                  # fit from the sourced profiles, never on top of a fit
        fitsets = load_fitsets(files)
    configured = {ff.family: ff for ff in FAMILY_FITS}
    out = {"families": {}, "notes": []}
    for fam in (families or sorted(fitsets)):
        fs = fitsets.get(fam)
        ff = configured.get(fam)
        if fs is None or not fs.cases:
            out["notes"].append(f"{fam}: no predictable time/rate rows in the given files")
            continue
        if ff is None:
            out["notes"].append(f"{fam}: {len(fs.cases)} rows from {len(fs.sources)} source(s) in the given files; "
                                "no fit is defined for this family (simulator.calibration.FAMILY_FITS)")
            continue
        fs = thin_sources(fs, max_rows_per_source)
        left = sorted({preset_name(c) for c in fs.cases if not sets_family_level(c, framework_values)})
        if left:
            fs = fs.subset(lambda c: sets_family_level(c, framework_values))
            out["notes"].append(f"{fam}: rows of {', '.join(left)} left out of the fit (non-reference stacks with no "
                                "fitted framework efficiency: their losses are not the hardware's)")
        why = supported(fs, ff.params)
        if why:
            out["notes"].append(f"{fam}: not fitted: {why}")
            continue
        with framework_efficiencies(framework_values):
            out["families"][fam] = fit_family(ff, fs, loso=loso, max_nfev=max_nfev, overlay_date=overlay_date,
                                              command=f"{command} --family {fam}" if command else "")
        if framework_values:
            out["families"][fam]["framework_efficiencies"] = dict(framework_values)
            if "overlay" in out["families"][fam]:
                out["families"][fam]["overlay"]["fit"]["note"] = (
                    "fitted on top of the framework efficiencies of hardware_profiles/calibration/frameworks.yaml ("
                    + ", ".join(f"{k} {_round(v)}" for k, v in sorted(framework_values.items())) + ")"
                    + (f"; rows of {', '.join(left)} left out (no fitted framework efficiency: "
                       "frameworks.sets_family_level)" if left else ""))
    return out
