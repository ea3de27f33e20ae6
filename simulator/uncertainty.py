"""How a prediction is grounded, and the error to expect from it: one `Uncertainty` per hardware profile (and
framework), shown beside every estimate, simulation, search and comparison.

Two kinds:
- "calibrated": the profile receives its family's calibration overlay (specs/overlay.py), fitted on measured runs;
  the expected error is the overlay's cross-validated (leave-one-source-out) MAPE, or its in-sample MAPE where the
  fit recorded no cross-validation (then said so).
- "transferred": no overlay applies (another family, a user profile, `--no-calibration`); the compute model's
  basis (costs.kernels.kernel_model_for: kernel tables measured on this silicon, or transferred from the nearest
  measured relative) and its expected error (the tables' leave-one-out error, or the held-out check of the
  transfer rule; twice that across vendors) are what the answer rests on; where the shipped runs hold rows of the
  family (at least MIN_FAMILY_ROWS), the band is their end-to-end error without calibration (leave-one-family-out,
  hardware_profiles/calibration/validation-errors.yaml, written by benchmarks/crossval.py); a family without
  such evidence gets the worst leave-one-family-out error of the measured families. The kernel tables' own check
  (a GEMM-level error) is the band only where no error record exists.

A GEMM-level error is not an end-to-end error: where it is all there is, the band says so ("kernel model only").
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from .specs.hardware import HardwareProfile
from .specs.loading import profiles_dir
from .specs.overlay import OVERLAY_DIR, calibration_enabled, family_overlay

#: Error band used when nothing grounds the profile (no overlay, no kernel model): a stated convention.
UNGROUNDED_ERROR_PCT = 50.0


@dataclass(frozen=True)
class Uncertainty:
    """How an answer is grounded: kind ("calibrated" | "transferred"), a one-line basis, the expected error
    (percent, one standard band of the absolute error) and the sources it rests on."""

    kind: str
    basis: str
    expected_error_pct: float
    sources: tuple = ()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "basis": self.basis, "expected_error_pct": round(self.expected_error_pct, 1),
                "sources": list(self.sources)}

    @property
    def line(self) -> str:
        return f"uncertainty: {self.basis}"

    @property
    def short(self) -> str:
        """A table cell: '+/-9%' with the kind."""
        return f"+/-{self.expected_error_pct:.0f}% ({self.kind})"


def uncertainty_for(hardware: HardwareProfile, framework: Optional[str] = None) -> Uncertainty:
    """The grounding of predictions on `hardware` (and `framework`, named in the basis when given, with its fitted
    kernel-throughput efficiency where the framework overlay has one: framework_basis)."""
    fw = f"; framework {framework}{framework_basis(framework)}" if framework else ""
    ov = family_overlay(profiles_dir(), hardware.family) if calibration_enabled() else None
    if ov is not None and hardware.name in ov.profiles:
        f = ov.fit
        cv = f.loso_mape_pct
        if cv is None:                                # the shipped runs' cross-validation (benchmarks/crossval.py)
            cv = (family_errors().get(hardware.family) or {}).get("loso_mape_pct")
        err = cv if cv is not None else f.in_sample_mape_pct
        what = "cross-validated (leave-one-source-out) error" if cv is not None else "in-sample error (no CV recorded)"
        stale = f"; fitted under model {ov.model_version}" if ov.stale else ""
        basis = (f"calibrated on {f.rows} runs from {len(f.sources)} sources ({ov.family}), {what} "
                 f"{err:.1f}%{stale}{fw}")
        return Uncertainty("calibrated", basis, float(err if err is not None else UNGROUNDED_ERROR_PCT),
                           tuple(f.sources))
    return _transferred(hardware, fw)


def framework_basis(framework: str) -> str:
    """', efficiency E fitted on N runs from K sources (leave-one-source-out A-B)' for a framework preset the
    framework overlay fits (hardware_profiles/calibration/frameworks.yaml, calibration.frameworks); '' otherwise."""
    from .specs.overlay import framework_overlay
    ov = framework_overlay() if calibration_enabled() else None
    if ov is None or framework not in ov.values:
        return ""
    f, p = ov.fits.get(framework), ov.parameters.get(framework)
    txt = f", kernel efficiency {ov.values[framework]:.2f} fitted"
    if f is not None:
        txt += f" on {f.rows} runs from {len(f.sources)} sources"
    if p is not None and p.loso_min is not None:
        txt += f" (leave-one-source-out {p.loso_min:.2f}-{p.loso_max:.2f})"
    return txt + (" on its bound" if p is not None and p.at_bound else "")


#: Fewest shipped time/rate rows of a family for its own end-to-end error to stand as its band (a convention).
MIN_FAMILY_ROWS = 3


def unseen_family_error_pct(errors: dict) -> Optional[float]:
    """The band of a family with no end-to-end evidence: the worst leave-one-family-out MAPE among the families
    with at least MIN_FAMILY_ROWS shipped rows (what a family never fitted has been seen to get)."""
    vals = [float(r["lofo_mape_pct"]) for r in errors.values()
            if isinstance(r, dict) and r.get("lofo_mape_pct") is not None and (r.get("rows") or 0) >= MIN_FAMILY_ROWS]
    return max(vals) if vals else None


def _transferred(hardware: HardwareProfile, fw: str) -> Uncertainty:
    try:
        from .costs.kernels import kernel_model_for
        km = kernel_model_for(hardware)
        basis, kernel_err = km.basis, float(km.expected_error_pct)
        sources = tuple(km.op("gemm").sources)
    except Exception:  # noqa: BLE001 - a profile the kernel model cannot describe still gets a band
        return Uncertainty("transferred", f"not calibrated, no kernel model: expect +/-{UNGROUNDED_ERROR_PCT:.0f}% "
                           f"(convention){fw}", UNGROUNDED_ERROR_PCT, ())
    errors = family_errors()
    rec = errors.get(hardware.family) or {}
    e2e, rows = rec.get("lofo_mape_pct"), rec.get("rows") or 0
    unseen = unseen_family_error_pct(errors)
    if e2e is not None and rows >= MIN_FAMILY_ROWS:
        # End-to-end evidence on the family beats a GEMM-level error: the band is the family's error on its
        # shipped runs without any calibration of its own.
        err = round(float(e2e), 1)
        seen = f"; without calibration the {rows} shipped runs of {hardware.family} show {float(e2e):.0f}% MAPE"
    elif unseen is not None:
        err = round(max(unseen, float(e2e or 0.0)), 1)
        have = f"{rows} shipped run{'s' if rows != 1 else ''}" if rows else "no shipped runs"
        seen = (f"; {have} of {hardware.family}: the band is the worst leave-one-family-out error of the measured "
                f"families ({unseen:.0f}%)")
    else:                                             # no error record (a trimmed install): the GEMM-level check
        err, seen = round(kernel_err, 1), "; GEMM-level check only"
    if basis.startswith("measured"):
        text = f"not calibrated end to end; GEMM tables {basis}{seen}: expect +/-{err:.0f}%{fw}"
    else:
        text = f"not calibrated; GEMM efficiency {basis}{seen}: expect +/-{err:.0f}%{fw}"
    return Uncertainty("transferred", text, err, sources)


#: File of per-family errors on the shipped runs (benchmarks/crossval.py --write-errors), beside the overlays.
ERRORS_FILE = "validation-errors.yaml"


@lru_cache(maxsize=4)
def _family_errors(folder: str) -> dict:
    from .specs import safe_yaml
    node = profiles_dir() / OVERLAY_DIR / ERRORS_FILE
    if not node.is_file():
        return {}
    data = safe_yaml.read_yaml(node, "validation errors")
    fams = data.get("families") if isinstance(data, dict) else None
    return fams if isinstance(fams, dict) else {}


def family_errors() -> dict:
    """Family -> {rows, sources, calibrated, in_sample/loso/lofo_mape_pct} on the shipped runs ({} if absent)."""
    return _family_errors(str(profiles_dir()))


def uncertainty_of(scenario) -> Uncertainty:
    """The Uncertainty of a scenario: its hardware, and its framework where the scenario names one."""
    fw = getattr(scenario, "framework", None) or getattr(getattr(scenario, "training", None), "framework", None)
    name = fw if isinstance(fw, str) else getattr(fw, "name", None)
    return uncertainty_for(scenario.hardware, name)


def with_uncertainty(d: dict, scenario) -> dict:
    """`d` (a result's to_dict()) with its `uncertainty` mapping added (the golden to_dict() stays as it is)."""
    d["uncertainty"] = uncertainty_of(scenario).to_dict()
    return d
