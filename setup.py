"""Build step that ships the hardware profiles inside the package.

The profiles live at the repository root (`hardware_profiles/`, where people read and edit them); the wheel
carries a copy as `simulator/_data/hardware_profiles/`, which `simulator.specs.loading` finds with
importlib.resources. An editable install (and a plain checkout on PYTHONPATH) reads the repository folder
directly, so nothing is copied then. Everything else about the build is declared in pyproject.toml.
"""
from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PROFILES_SRC = "hardware_profiles"                       # relative to the project root (setuptools' working dir)
PROFILES_DST = os.path.join("simulator", "_data", "hardware_profiles")
OVERLAYS = "calibration"                                 # sub-folder of the profiles: fitted values per family


class BuildPyWithProfiles(build_py):
    """build_py, plus the repository's hardware_profiles/*.yaml (and README.md) copied into the package."""

    def _profile_files(self) -> list[str]:
        names = sorted(n for n in os.listdir(PROFILES_SRC) if n.endswith((".yaml", ".md")))
        if not any(n.endswith(".yaml") for n in names):
            raise RuntimeError(f"no hardware profiles in {PROFILES_SRC}/: the wheel would be unusable")
        overlays = os.path.join(PROFILES_SRC, OVERLAYS)          # calibration overlays (simulator/specs/overlay.py)
        if os.path.isdir(overlays):
            names += sorted(f"{OVERLAYS}/{n}" for n in os.listdir(overlays) if n.endswith(".yaml"))
        return names

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):       # editable: the loader reads hardware_profiles/ in place
            return
        target = os.path.join(self.build_lib, PROFILES_DST)
        self.mkpath(target)
        self.mkpath(os.path.join(target, OVERLAYS))
        for name in self._profile_files():
            self.copy_file(os.path.join(PROFILES_SRC, name), os.path.join(target, name))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [os.path.join(self.build_lib, PROFILES_DST, n) for n in self._profile_files()]


setup(cmdclass={"build_py": BuildPyWithProfiles})
