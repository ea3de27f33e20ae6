"""Loading framework presets by name, by path, or by a published run's `framework` column and year.

Presets are package data (`simulator/presets/frameworks/*.yaml`) read through importlib.resources, so they load
from a wheel as from a checkout. YAML is read by specs.safe_yaml (libyaml's C parser where PyYAML has it, with the
bounded size, nesting, alias-expansion and duplicate-key checks); validation errors name the field, the value
and the rule; an unknown name lists the close matches and every preset.

A shipped preset is parsed and validated once per process (FrameworkSpec is frozen, so the one object is shared):
`validate` asks for every preset of a framework for each of its ~270 rows. A preset file given by path is parsed
once per process while its size and modification time stay the same (safe_yaml.read_yaml).
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from ..errors import SpecError
from .framework import FRAMEWORK_COLUMN_VALUES, FrameworkSpec
from .loading import validate_spec
from .safe_yaml import parse_yaml, read_yaml

PRESET_PACKAGE = "simulator"
PRESET_FOLDER = ("presets", "frameworks")


def _preset_dir():
    folder = resources.files(PRESET_PACKAGE)
    for part in PRESET_FOLDER:
        folder = folder / part
    return folder


def available_frameworks() -> list[str]:
    """Names of the shipped framework presets, sorted."""
    return list(_preset_names())


@functools.lru_cache(maxsize=1)
def _preset_names() -> tuple[str, ...]:
    return tuple(sorted(p.name[: -len(".yaml")] for p in _preset_dir().iterdir() if p.name.endswith(".yaml")))


def _unknown(name: str) -> SpecError:
    import difflib   # error path only

    names = available_frameworks()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return SpecError(f"unknown framework '{name}'{hint}; available: {', '.join(names)}")


def _parse(text: str, where: str) -> FrameworkSpec:
    return validate_spec(FrameworkSpec, parse_yaml(text, where), where)


@functools.lru_cache(maxsize=None)
def _preset(name: str) -> FrameworkSpec:
    """A shipped preset, parsed and validated once per process (errors are not cached)."""
    entry = _preset_dir() / f"{name}.yaml"
    if not entry.is_file():
        raise _unknown(name)
    return _parse(entry.read_text(encoding="utf-8"), f"framework preset '{name}'")


def load_framework(name_or_path: str | Path | FrameworkSpec) -> FrameworkSpec:
    """A framework preset by name (see `trainsim frameworks`) or a YAML file path."""
    if isinstance(name_or_path, FrameworkSpec):
        return name_or_path
    text_name = str(name_or_path)
    p = Path(text_name)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise SpecError(f"framework file not found: {text_name}")
        return validate_spec(FrameworkSpec, read_yaml(p, "framework file", shared=True), text_name)
    return _preset(text_name)


def framework_for_run(framework: str, year: int | None = None) -> FrameworkSpec:
    """The preset that describes a run of `framework` (a published-runs column value) in `year`.

    Among the presets of that framework, the one whose years cover `year` (the later era where two overlap); a
    year before every era takes the first, no year or a later one the newest. Unlisted column values are
    SpecErrors naming the vocabulary."""
    if framework not in FRAMEWORK_COLUMN_VALUES:
        raise SpecError(f"framework '{framework}' is not one of {', '.join(FRAMEWORK_COLUMN_VALUES)} "
                        "(the published-runs `framework` column vocabulary)")
    presets = [load_framework(n) for n in available_frameworks()]
    mine = sorted((f for f in presets if f.framework == framework), key=lambda f: f.years[0])
    if not mine:
        raise SpecError(f"no framework preset stands for '{framework}'")
    if year is not None:
        covering = [f for f in mine if f.covers_year(year)]
        if covering:
            return covering[-1]
        if year < mine[0].years[0]:
            return mine[0]
    return mine[-1]
