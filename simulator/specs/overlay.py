"""Calibration overlays: fitted values kept beside the sourced hardware profiles, with their fit record.

A profile (`hardware_profiles/<name>.yaml`) holds datasheet and measured facts only. What a fit to measured runs
adds lives in `hardware_profiles/calibration/<family>.yaml` (shipped as package data with the profiles), one file
per hardware family:

    family: nvidia-hopper
    profiles: [h100-sxm5-80gb, h200-sxm-141gb, h800-sxm5-80gb]   # same silicon as the data: only these receive it
    model_version: "calibration-4"                               # simulator.specs.overlay.MODEL_VERSION at fit time
    date: "2026-12-02"
    values: {efficiency.layer_overhead_us: 950, tiers[-1].efficiency: 0.6, ...}   # profile field path -> value
    parameters: {tiers[-1].efficiency: {lower: 0.2, upper: 1.0, at_bound: false, sourced: 0.9,
                                         loso_min: 0.66, loso_max: 0.71}, ...}
    fit: {rows: 50, sources: {NAME: n_rows}, row_ids: [...], in_sample_mape_pct: 8.8,
          loso_mape_pct: 10.6, loso_by_source_pct: {NAME: pct}, lofo_mape_pct: null, note: "..."}

`values` is a generic mapping of field paths (dotted keys; `tiers[i]` indexes the network tiers, -1 = slowest), so
any parameter the cost model has can be overlaid. Loading a profile applies its family overlay
(`load_hardware(name)`); `load_hardware(name, calibration=False)`, `with calibration_disabled():` or
`trainsim --no-calibration VERB ...` give the sourced-only profile.
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import re
from functools import lru_cache
from typing import Any, Optional

from pydantic import Field

from ..errors import SpecError
from .base import MAX_NAME, MAX_TEXT, Spec

#: Version of the cost model a fit belongs to; a fit made under another version is still applied but reported as
#: such (`Overlay.stale`). Bump when the physics under the fitted parameters changes.
MODEL_VERSION = "calibration-4"
#: Folder of the overlays, inside the profiles folder.
OVERLAY_DIR = "calibration"

_PATH = re.compile(r"^(efficiency|device|host)\.[a-z0-9_]+$|^tiers\[(-?\d+)\]\.[a-z0-9_]+$")
_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("trainsim_calibration", default=True)


class ParameterRecord(Spec):
    """One fitted parameter: its physical bounds, whether the fit ended on one, the sourced value it replaces (if
    any) and its spread over the leave-one-source-out refits."""

    lower: float
    upper: float
    at_bound: bool = False
    sourced: Optional[float] = None
    loso_min: Optional[float] = None
    loso_max: Optional[float] = None


class FitRecord(Spec):
    """The data a fit used and its errors (percent, over the time/rate rows)."""

    rows: int = Field(ge=0)
    sources: dict[str, int] = Field(default_factory=dict)
    row_ids: list[str] = Field(default_factory=list)
    in_sample_mape_pct: Optional[float] = None
    loso_mape_pct: Optional[float] = None
    loso_by_source_pct: dict[str, float] = Field(default_factory=dict)
    lofo_mape_pct: Optional[float] = None
    command: str = Field("", max_length=MAX_TEXT)
    note: str = Field("", max_length=MAX_TEXT)


class _FitState:
    """What overlays share: fitted under another model version (stale), parameters that ended on a bound."""

    @property
    def stale(self) -> bool:
        return self.model_version != MODEL_VERSION

    @property
    def at_bound(self) -> list[str]:
        return [k for k, p in self.parameters.items() if p.at_bound]


class Overlay(_FitState, Spec):
    """A family's calibration overlay (see the module docstring)."""

    family: str = Field(min_length=1, max_length=MAX_NAME)
    profiles: list[str] = Field(min_length=1)
    model_version: str = Field(min_length=1, max_length=MAX_NAME)
    date: str = Field(min_length=1, max_length=MAX_NAME)
    values: dict[str, float] = Field(min_length=1)
    parameters: dict[str, ParameterRecord] = Field(default_factory=dict)
    fit: FitRecord


def check_path(path: str) -> None:
    """A field path must be `efficiency.X`, `device.X`, `host.X` or `tiers[i].X`."""
    if not _PATH.match(path):
        raise SpecError(f"overlay value {path!r}: not a profile field path (efficiency.NAME, device.NAME, "
                        "host.NAME or tiers[INDEX].NAME)")


def known_path(path: str) -> bool:
    """Whether the profile schema has the field a path names (an overlay fitted under an older model may not)."""
    from .hardware import DeviceSpec, EfficiencySpec, NetworkTier
    from .host import HostSpec
    head, attr = path.rsplit(".", 1)
    model = {"efficiency": EfficiencySpec, "device": DeviceSpec, "host": HostSpec}.get(head, NetworkTier)
    return attr in model.model_fields


def apply_values(data: dict, values: dict, where: str = "overlay") -> dict:
    """A copy of the profile's fields (`data`, as read from YAML) with every `path -> value` of `values` set."""
    out = copy.deepcopy(data)
    for path, value in values.items():
        check_path(path)
        if not known_path(path):
            raise SpecError(f"{where}: sets {path}, a field the hardware profiles no longer have (the overlay was "
                            "fitted under an older cost model); refit it: trainsim calibrate RUNS.csv --family F "
                            "--out NEW.yaml, review, copy it over the old one")
        head, attr = path.rsplit(".", 1)
        if head.startswith("tiers["):
            tiers = out.get("tiers") or []
            idx = int(head[6:-1])
            if not -len(tiers) <= idx < len(tiers):
                raise SpecError(f"overlay value {path!r}: the profile has {len(tiers)} tiers")
            target = tiers[idx]
        else:
            target = out.setdefault(head, {})
        if not isinstance(target, dict):
            raise SpecError(f"overlay value {path!r}: {head} is not a mapping in the profile")
        target[attr] = value
    return out


def calibration_enabled() -> bool:
    return _ENABLED.get()


@contextlib.contextmanager
def calibration_disabled():
    """Within the block, profiles load without their calibration overlays (sourced values only)."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def set_calibration(enabled: bool) -> None:
    """Switch overlays on or off for the rest of this context (the CLI's --no-calibration)."""
    _ENABLED.set(bool(enabled))


def overlay_for(profiles_folder, family: str, name: str) -> Optional[Overlay]:
    """The overlay of `family` in `<profiles_folder>/calibration/` when it lists the profile `name`, else None."""
    ov = _read_overlay(str(profiles_folder), family)
    if ov is None or name not in ov.profiles:
        return None
    return ov


def family_overlay(profiles_folder, family: str) -> Optional[Overlay]:
    """The overlay file of a family, whichever profiles it lists (None when there is none)."""
    return _read_overlay(str(profiles_folder), family)


def overlay_from_file(path) -> Overlay:
    from . import safe_yaml
    from .loading import validate_spec

    ov = validate_spec(Overlay, safe_yaml.read_yaml(path, "calibration overlay"), str(path))
    for p in ov.values:
        check_path(p)
    return ov


@lru_cache(maxsize=64)
def _read_overlay(folder: str, family: str) -> Optional[Overlay]:
    from .loading import profiles_dir

    base = profiles_dir() if str(profiles_dir()) == folder else None
    node = (base if base is not None else _as_path(folder)) / OVERLAY_DIR / f"{family}.yaml"
    if not node.is_file():
        return None
    return overlay_from_file(node)


def _as_path(folder: str) -> Any:
    from pathlib import Path

    return Path(folder)


# ---------------------------------------------------------------------------------------------------------------
# framework efficiencies: hardware_profiles/calibration/frameworks.yaml
# ---------------------------------------------------------------------------------------------------------------

#: File of the framework calibration overlay, inside the overlay folder.
FRAMEWORK_OVERLAY = "frameworks"


class FrameworkOverlay(_FitState, Spec):
    """Fitted framework efficiencies (simulator.calibration.frameworks): for a framework preset whose rows support a
    fit, the sustained throughput of its compute kernels (GEMM, grouped GEMM, attention) relative to the reference
    stacks that set each family's kernel_level. A preset not listed runs at 1.0. The presets themselves never
    carry a fitted value."""

    kind: str = Field("framework-efficiency", pattern=r"^framework-efficiency$")
    model_version: str = Field(min_length=1, max_length=MAX_NAME)
    date: str = Field(min_length=1, max_length=MAX_NAME)
    applies_to: str = Field("", max_length=MAX_TEXT)
    rule: str = Field("", max_length=MAX_TEXT)
    reference: list[str] = Field(default_factory=list)
    values: dict[str, float] = Field(default_factory=dict)
    parameters: dict[str, ParameterRecord] = Field(default_factory=dict)
    fits: dict[str, FitRecord] = Field(default_factory=dict)
    refused: dict[str, str] = Field(default_factory=dict)


_FW_OVERRIDE: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar("trainsim_framework_eff", default=None)


@contextlib.contextmanager
def framework_efficiencies(values: Optional[dict]):
    """Within the block, framework efficiencies are exactly `values` (preset name -> efficiency; others 1.0),
    whatever the shipped overlay and the calibration switch say: what a fit and its cross-validation use."""
    token = _FW_OVERRIDE.set(dict(values or {}))
    try:
        yield
    finally:
        _FW_OVERRIDE.reset(token)


def framework_overlay(profiles_folder=None) -> Optional[FrameworkOverlay]:
    """The shipped framework overlay (None when there is none)."""
    from .loading import profiles_dir
    return _read_framework_overlay(str(profiles_folder if profiles_folder is not None else profiles_dir()))


@lru_cache(maxsize=8)
def _read_framework_overlay(folder: str) -> Optional[FrameworkOverlay]:
    from . import safe_yaml
    from .loading import profiles_dir, validate_spec

    base = profiles_dir() if str(profiles_dir()) == folder else _as_path(folder)
    node = base / OVERLAY_DIR / f"{FRAMEWORK_OVERLAY}.yaml"
    if not node.is_file():
        return None
    return validate_spec(FrameworkOverlay, safe_yaml.read_yaml(node, "framework calibration overlay"), str(node))


def framework_efficiency(framework) -> float:
    """Kernel-throughput multiplier of a framework preset (FrameworkSpec or name): the fitted value of the
    framework overlay, 1.0 where none is fitted or calibration is off (`calibration_disabled`,
    `trainsim --no-calibration`); inside `framework_efficiencies(values)` exactly those values."""
    if framework is None:
        return 1.0
    name = framework if isinstance(framework, str) else getattr(framework, "name", None)
    over = _FW_OVERRIDE.get()
    if over is not None:
        return float(over.get(name, 1.0))
    if not calibration_enabled():
        return 1.0
    ov = framework_overlay()
    return 1.0 if ov is None else float(ov.values.get(name, 1.0))
