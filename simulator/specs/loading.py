"""Loading specs from preset names, aliases or YAML files (bounded safe loading), with field-named errors and
"did you mean" suggestions for names and keys."""
from __future__ import annotations

import copy
import os
import re
import typing
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from ..errors import SpecError
from . import overlay, safe_yaml
from .base import MAX_NAME, shorten
from .hardware import HardwareProfile
from .model import ModelSpec

#: The package folder (on the file system for a checkout, an editable install or an unpacked wheel); package data
#: is better reached through models_dir()/profiles_dir() (importlib.resources).
PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: Where a checkout (or an editable install) keeps the profiles: the repository root, beside the package.
REPO_PROFILES = Path(__file__).resolve().parents[2] / "hardware_profiles"
#: A file of the package (wheel or checkout) or a user's file.
Source = Union[Path, Traversable]


@lru_cache(maxsize=1)
def _package_root() -> Traversable:
    """resources.files("simulator"), resolved once per process (the package does not move while it runs)."""
    return resources.files("simulator")


def _package_dir(*parts: str) -> Traversable:
    node = _package_root()
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
    return _shipped_profiles_dir()


@lru_cache(maxsize=1)
def _shipped_profiles_dir() -> Source:
    """profiles_dir without $TRAINSIM_PROFILES, looked up once per process (the cost functions ask for it on
    every evaluation: validation evaluates hundreds of jobs)."""
    packaged = _package_dir("_data", "hardware_profiles")
    if packaged.is_dir():
        return packaged
    return REPO_PROFILES


#: Short names people type, mapped to the stable profile names (lower case; a name is matched case-insensitively).
HARDWARE_ALIASES = {
    "a100": "a100-sxm4-80gb", "a100-80gb": "a100-sxm4-80gb", "a100-sxm4": "a100-sxm4-80gb",
    "a100-40gb": "a100-sxm4-40gb", "a800": "a800-sxm4-80gb",
    "h100": "h100-sxm5-80gb", "h100-sxm": "h100-sxm5-80gb", "h100-sxm5": "h100-sxm5-80gb", "h800": "h800-sxm5-80gb",
    "h200": "h200-sxm-141gb", "h200-sxm": "h200-sxm-141gb",
    "gb200": "gb200-nvl72", "gb300": "gb300-nvl72", "v100": "v100-sxm2-32gb", "v100-32gb": "v100-sxm2-32gb",
    "mi300": "mi300x", "mi250": "mi250x", "910b": "ascend-910b", "910": "ascend-910",
    "tpu-v5": "tpu-v5p", "tpuv5p": "tpu-v5p", "v5p": "tpu-v5p", "tpuv5e": "tpu-v5e", "v5e": "tpu-v5e",
    "tpuv4": "tpu-v4", "v4": "tpu-v4", "tpuv3": "tpu-v3", "v3": "tpu-v3", "tpuv6e": "tpu-v6e", "v6e": "tpu-v6e",
    "trillium": "tpu-v6e",
}
#: A preset name: no path separator, no leading dot (so `../x` can never name a file outside the preset folder).
PRESET_NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")
#: How many profiles an `extends:` chain may stack.
MAX_EXTENDS = 8


def _fields_at(cls: type[BaseModel], parents: tuple) -> list[str]:
    """Field names of the (nested) model that the location `parents` points into; [] if not a model."""
    model = cls
    for part in parents:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = _submodel(field.annotation) if field is not None else None
        if model is None:
            return []
    return list(model.model_fields)


def _submodel(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _unknown_key(cls: type[BaseModel], loc: tuple, where: str) -> str:
    key = str(loc[-1]) if loc else "?"
    path = ".".join(str(p) for p in loc)
    allowed = _fields_at(cls, loc[:-1])
    import difflib   # error paths only (issue #13: a command imports what it uses)

    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean '{close[0]}'?"
    elif allowed:
        hint = "allowed: " + ", ".join(allowed)
    else:
        hint = "allowed keys are the documented fields"
    return f"{where}: unknown key {shorten(repr(path))}; {hint}"


def format_validation_error(err: ValidationError, where: str, cls: type[BaseModel] | None = None) -> str:
    """One line per problem: `where: field.path = value: rule`; values cut to a readable length; an unknown key
    gets the closest field name ("did you mean")."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(_unknown_key(cls, e["loc"], where) if cls is not None
                         else f"{where}: unknown key {shorten(repr(loc))}")
            continue
        val = e.get("input")
        sval = "{...}" if isinstance(val, dict) else shorten(repr(val))
        msg = shorten(e["msg"].removeprefix("Value error, "), 400)
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
        raise SpecError(format_validation_error(err, where, cls)) from None


def read_yaml(path: Union[str, Source]) -> Any:
    """A YAML file read safely (bounded size, nesting and alias expansion, UTF-8; see specs.safe_yaml)."""
    return safe_yaml.read_yaml(path)


def _available(folder: Source) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml") and p.is_file())


def _is_path(text: str) -> bool:
    """Whether a --model/--hardware value names a file rather than a preset: a separator or a YAML suffix."""
    return "/" in text or "\\" in text or text.lower().endswith((".yaml", ".yml")) or text.startswith(".")


def _unknown_name(text: str, names: list[str], aliases: dict, kind: str, listing: str) -> SpecError:
    import difflib

    shown = shorten(repr(text))
    pool = {n: n for n in names}
    pool.update({a: t for a, t in aliases.items() if t in pool})
    close = [pool[c] for c in difflib.get_close_matches(text.lower(), list(pool), n=4, cutoff=0.6)]
    close = list(dict.fromkeys(close))[:3]
    if close:
        return SpecError(f"unknown {kind} {shown}; did you mean {' or '.join(repr(c) for c in close)}? "
                         f"(`{listing}` lists all {len(names)}; a YAML path works too)")
    return SpecError(f"unknown {kind} {shown}; available: {', '.join(names) or 'none'} (or give a YAML path)")


def _resolve(name_or_path: str, folder: Source, kind: str, aliases: dict | None = None,
             listing: str = "trainsim profiles") -> Source:
    """A preset of `folder` by name or alias (case-insensitive), or a user's file by path."""
    text = name_or_path
    if not text.strip():
        raise SpecError(f"{kind}: the name is empty (give a preset name, see `{listing}`, or a YAML path)")
    if len(text) > safe_yaml.MAX_PATH_CHARS or "\x00" in text:
        raise SpecError(f"{kind} {shorten(repr(text))}: not a usable name or path")
    if _is_path(text):
        return Path(text)
    key = text.lower()
    key = (aliases or {}).get(key, key)
    if PRESET_NAME.match(key) and len(key) <= MAX_NAME:
        candidate = folder / f"{key}.yaml"
        if candidate.is_file():
            return candidate
    try:
        if Path(text).is_file():             # a user's file without a .yaml suffix, in the working folder
            return Path(text)
    except OSError:
        pass
    raise _unknown_name(text, _available(folder), aliases or {}, kind, listing)


def available_models() -> list[str]:
    return _available(models_dir())


def available_profiles() -> list[str]:
    return _available(profiles_dir())


def load_model(name_or_path: str | ModelSpec) -> ModelSpec:
    """A model preset by name (see `trainsim models`), a YAML file path, or a Hugging Face config.json path."""
    if isinstance(name_or_path, ModelSpec):
        return name_or_path
    if str(name_or_path).lower().endswith(".json"):
        from .hf_config import load_hf_config          # imported here: hf_config imports this module
        return load_hf_config(name_or_path)
    path = _resolve(str(name_or_path), models_dir(), "model", listing="trainsim models")
    model = validate_spec(ModelSpec, safe_yaml.read_yaml(path, "model file", shared=True), str(path))
    _check_preset_name(path, model.name, models_dir())
    return model


def _check_preset_name(path: Source, name: str, folder: Source) -> None:
    """A preset's `name:` is its file name, so that the name shown is the name to type (user files may differ)."""
    in_folder = not isinstance(path, Path) or path.parent == Path(str(folder))
    if in_folder and path.name != f"{name}.yaml":
        raise SpecError(f"{path}: name = {shorten(repr(name))} differs from the file name; rename one of them")


def load_hardware(name_or_path: str | HardwareProfile, overrides: dict | None = None,
                  calibration: bool | None = None) -> HardwareProfile:
    """A hardware profile by name or alias (see `trainsim profiles`) or a YAML path, with optional per-run
    overrides. A YAML file may start from another profile with `extends:` (see hardware_data). A shipped profile
    comes with its family's calibration overlay (specs/overlay.py) unless `calibration` is False (default: on,
    unless switched off by `overlay.calibration_disabled()` / `trainsim --no-calibration`)."""
    if isinstance(name_or_path, HardwareProfile):
        hw = name_or_path
    else:
        path = _resolve(str(name_or_path), profiles_dir(), "hardware profile", HARDWARE_ALIASES)
        cal = overlay.calibration_enabled() if calibration is None else calibration
        hw = validate_spec(HardwareProfile, hardware_data(path, calibration=cal), str(path))
        _check_preset_name(path, hw.name, profiles_dir())
    if overrides:
        hw = override_hardware(hw, **overrides)
    return hw


def hardware_data(src: Source, chain: tuple[str, ...] = (), calibration: bool = True) -> Any:
    """The fields of a hardware YAML, with `extends: NAME-OR-PATH` resolved: the named profile's fields, then this
    file's on top (mappings merge key by key; `tiers` as a list replaces the tiers, as a mapping `{tier name:
    {fields}}` changes the named tiers). Without `name` the file's stem names the result. A relative path is
    relative to the extending file. A shipped profile gets its calibration overlay when `calibration` is on
    (applied to a copy: the shared cached fields are never changed)."""
    data = safe_yaml.read_yaml(src, "hardware profile", shared=True)    # read only: _extend copies what it changes
    if not isinstance(data, dict) or "extends" not in data:
        return _with_overlay(src, data) if calibration else data
    ref = data["extends"]
    if not isinstance(ref, str) or not ref.strip():
        raise SpecError(f"{src}: extends = {shorten(repr(ref))}: must name a hardware profile (e.g. h100-sxm5-80gb) "
                        "or a YAML path")
    if isinstance(src, Path) and _is_path(ref) and not Path(ref).is_absolute():
        base_src: Source = src.parent / ref
    else:
        base_src = _resolve(ref, profiles_dir(), "hardware profile", HARDWARE_ALIASES)
    key = str(base_src)
    if key in chain or str(src) == key:
        raise SpecError(f"{src}: extends {ref!r} leads back to itself ({' -> '.join(chain + (key,))})")
    if len(chain) >= MAX_EXTENDS:
        raise SpecError(f"{src}: more than {MAX_EXTENDS} profiles stacked with extends")
    base = hardware_data(base_src, chain + (str(src),), calibration)
    if not isinstance(base, dict):
        raise SpecError(f"{base_src}: expected a mapping of fields, got {type(base).__name__}")
    return _extend(base, data, src)


def _with_overlay(src: Source, data: Any) -> Any:
    """The shipped profile's fields with its family's calibration overlay applied (user files: unchanged)."""
    folder = profiles_dir()
    in_folder = not isinstance(src, Path) or src.parent == Path(str(folder))
    if not in_folder or not isinstance(data, dict) or not isinstance(data.get("family"), str):
        return data
    ov = overlay.overlay_for(folder, data["family"], str(data.get("name", "")))
    if ov is None:
        return data
    return overlay.apply_values(data, ov.values, f"calibration overlay of {data['family']} "
                                                 f"({overlay.OVERLAY_DIR}/{data['family']}.yaml, model {ov.model_version})")


def _extend(base: dict, over: dict, src: Source) -> dict:
    out = copy.deepcopy(base)
    changed = [k for k in over if k != "extends"]
    for k in changed:
        v = over[k]
        if k == "tiers" and isinstance(v, dict) and isinstance(out.get("tiers"), list):
            out["tiers"] = _merge_tiers(out["tiers"], v, src)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    base_name = base.get("name", "?")
    if "name" not in over:
        stem = Path(str(src)).stem.lower()
        out["name"] = stem if PRESET_NAME.match(stem) and len(stem) <= 64 else f"{base_name}-custom"
    if "description" not in over:
        out["description"] = f"{base.get('description', base_name)} (modified: {', '.join(changed) or 'nothing'})"
    note = f"[extends {base_name}; changed {', '.join(changed) or 'nothing'}]"
    out["notes"] = f"{out.get('notes') or ''} {note}".strip()
    return out


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _merge_tiers(tiers: list, changes: dict, src: Source) -> list:
    names = [t.get("name") for t in tiers if isinstance(t, dict)]
    out = [dict(t) for t in tiers]
    for name, fields in changes.items():
        if name not in names:
            import difflib

            close = difflib.get_close_matches(str(name), [str(n) for n in names], n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"the tiers are {', '.join(map(str, names))}"
            raise SpecError(f"{src}: tiers.{shorten(str(name))}: no such tier in the extended profile; {hint}")
        if not isinstance(fields, dict):
            raise SpecError(f"{src}: tiers.{name} = {shorten(repr(fields))}: expected a mapping of tier fields")
        i = names.index(name)
        out[i] = _deep_merge(out[i], fields)
    return out


def _set_clock(data: dict, hw: HardwareProfile, power_limit_w, clock_fraction, note: list) -> None:
    from .power import clock_fraction_for_power
    if power_limit_w is not None and clock_fraction is not None:
        raise SpecError("give one of power_limit_w (--power-limit-w) and clock_fraction (--clock-fraction), not both")
    if power_limit_w is not None:
        if hw.device.power_w is None:
            raise SpecError(f"power_limit_w: hardware '{hw.name}' has no rated device.power_w to scale from; "
                            "give clock_fraction instead")
        clock_fraction = clock_fraction_for_power(power_limit_w, hw.device.power_w)
        data["device"]["power_w"] = min(power_limit_w, hw.device.power_w)
        note.append(f"power limit {power_limit_w:g} W -> clock x{clock_fraction:.3f}")
    elif not 0 < clock_fraction <= 1:
        raise SpecError(f"clock_fraction = {clock_fraction}: must be in (0, 1] (sustained / rated clock)")
    else:
        note.append(f"clock x{clock_fraction:.3f}")
    data["device"]["clock_fraction"] = data["device"].get("clock_fraction", 1.0) * clock_fraction


def override_hardware(hw: HardwareProfile, devices_per_node: int | None = None, memory_gb: float | None = None,
                      scaleup_gb_per_s: float | None = None, scaleout_gb_per_s: float | None = None,
                      power_limit_w: float | None = None, clock_fraction: float | None = None) -> HardwareProfile:
    """A copy of `hw` with per-run changes: devices per node, device memory, the fastest tier's and the
    slowest tier's per-device bandwidth (GB/s, one direction), a board power limit (W) or a sustained clock
    fraction (specs/power.py: scales the FLOP/s peaks the kernels run at). Validated like the profile."""
    data = hw.model_dump()
    note = []
    if power_limit_w is not None or clock_fraction is not None:
        _set_clock(data, hw, power_limit_w, clock_fraction, note)
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
