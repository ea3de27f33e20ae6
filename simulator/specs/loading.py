"""Loading specs from preset names or YAML files (safe loading), with field-named errors."""
from __future__ import annotations

import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import SpecError
from .hardware import HardwareProfile
from .model import ModelSpec

#: Where a checkout (or an editable install) keeps the profiles: the repository root, beside the package.
REPO_PROFILES = Path(__file__).resolve().parents[2] / "hardware_profiles"
#: A file of the package (wheel or checkout) or a user's file.
Source = Union[Path, Traversable]


def _package_dir(*parts: str) -> Traversable:
    node = resources.files("simulator")
    for part in parts:
        node = node / part
    return node


def models_dir() -> Traversable:
    """Folder of the model presets (package data: simulator/presets/models)."""
    return _package_dir("presets", "models")


def profiles_dir() -> Source:
    """Folder of the hardware profiles: $TRAINSIM_PROFILES; else the copy an installed wheel carries
    (simulator/_data/hardware_profiles, made by setup.py's build step); else the repository's hardware_profiles/
    (a checkout or an editable install, which read the profiles in place)."""
    env = os.environ.get("TRAINSIM_PROFILES")
    if env:
        return Path(env)
    packaged = _package_dir("_data", "hardware_profiles")
    if packaged.is_dir():
        return packaged
    return REPO_PROFILES


def format_validation_error(err: ValidationError, where: str) -> str:
    """One line per problem: `where: field.path = value: rule`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key '{loc}' (allowed keys are the documented fields; typo?)")
            continue
        val = e.get("input")
        sval = repr(val) if not isinstance(val, dict) else "{...}"
        msg = e["msg"].removeprefix("Value error, ")
        if not e["loc"]:                      # a rule across fields: its message names them and their values
            lines.append(f"{where}: {msg}")
        elif e["type"] == "missing":
            lines.append(f"{where}: missing required field '{loc}'")
        else:
            lines.append(f"{where}: {loc} = {sval}: {msg}")
    return "\n".join(lines)


def validate_spec(cls: type[BaseModel], data: Any, where: str):
    """Construct `cls` from `data`, turning validation errors into a SpecError naming field, value and rule."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise SpecError(format_validation_error(err, where)) from None


def read_yaml(path: Union[str, Source]) -> Any:
    """Read a YAML file with safe loading; errors name the file and line."""
    if isinstance(path, str):
        path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise SpecError(f"file not found: {path}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None


def _available(folder: Source) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml") and p.is_file())


def _resolve(name_or_path: str, folder: Source, kind: str) -> Source:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise SpecError(f"{kind} file not found: {name_or_path}")
        return p
    candidate = folder / f"{name_or_path}.yaml"
    if not candidate.is_file():
        names = ", ".join(_available(folder))
        raise SpecError(f"unknown {kind} '{name_or_path}'; available: {names}")
    return candidate


def available_models() -> list[str]:
    return _available(models_dir())


def available_profiles() -> list[str]:
    return _available(profiles_dir())


def load_model(name_or_path: str | ModelSpec) -> ModelSpec:
    """A model preset by name (see `trainsim models`) or a YAML file path."""
    if isinstance(name_or_path, ModelSpec):
        return name_or_path
    path = _resolve(str(name_or_path), models_dir(), "model")
    return validate_spec(ModelSpec, read_yaml(path), str(path))


def load_hardware(name_or_path: str | HardwareProfile, overrides: dict | None = None) -> HardwareProfile:
    """A hardware profile by name (see `trainsim profiles`) or a YAML path, with optional per-run overrides."""
    if isinstance(name_or_path, HardwareProfile):
        hw = name_or_path
    else:
        path = _resolve(str(name_or_path), profiles_dir(), "hardware profile")
        hw = validate_spec(HardwareProfile, read_yaml(path), str(path))
    if overrides:
        hw = override_hardware(hw, **overrides)
    return hw


def override_hardware(hw: HardwareProfile, devices_per_node: int | None = None, memory_gb: float | None = None,
                      scaleup_gb_per_s: float | None = None, scaleout_gb_per_s: float | None = None) -> HardwareProfile:
    """A copy of `hw` with per-run changes: devices per node, device memory, the fastest tier's and the
    slowest tier's per-device bandwidth (GB/s, one direction). Validated like the profile."""
    data = hw.model_dump()
    note = []
    if devices_per_node is not None:
        data["devices_per_node"] = devices_per_node
        note.append(f"devices_per_node={devices_per_node}")
    if memory_gb is not None:
        data["device"]["memory_gb"] = memory_gb
        note.append(f"memory_gb={memory_gb}")
    if scaleup_gb_per_s is not None and len(data["tiers"]) > 1:
        data["tiers"][0]["bandwidth_gb_per_s"] = scaleup_gb_per_s
        data["tiers"][0]["source"] = "per-run override"
        note.append(f"scale-up={scaleup_gb_per_s} GB/s")
    if scaleout_gb_per_s is not None:
        data["tiers"][-1]["bandwidth_gb_per_s"] = scaleout_gb_per_s
        data["tiers"][-1]["source"] = "per-run override"
        note.append(f"scale-out={scaleout_gb_per_s} GB/s")
    if devices_per_node is not None and len(data["tiers"]) > 1:
        # the node tier's domain follows the node size when the node tier is the host (not a larger domain)
        for tier in data["tiers"][:-1]:
            if tier["domain_size"] == hw.devices_per_node:
                tier["domain_size"] = devices_per_node
        sizes = [t["domain_size"] for t in data["tiers"][:-1]]
        dedup = []
        for t in data["tiers"][:-1]:
            if dedup and t["domain_size"] <= dedup[-1]["domain_size"]:
                continue
            dedup.append(t)
        data["tiers"] = dedup + [data["tiers"][-1]]
        del sizes
    if note:
        data["notes"] = (data.get("notes") or "") + " [overrides: " + ", ".join(note) + "]"
    return validate_spec(HardwareProfile, data, f"hardware '{hw.name}' with overrides")
