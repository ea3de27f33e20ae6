"""Packaging: the profiles and presets travel as package data and are found without the repository.

The wheel's own check (build, fresh venv outside the checkout, `trainsim profiles` and the README quick start)
runs in .ci/run; here the build step that copies the profiles is run into a temporary folder and the CLI is run
from that folder alone, where the repository's hardware_profiles/ cannot be reached.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.specs import loading

ROOT = Path(__file__).resolve().parents[1]
NUM_PROFILES = len(list((ROOT / "hardware_profiles").glob("*.yaml")))
NUM_MODELS = len(list((ROOT / "simulator" / "presets" / "models").glob("*.yaml")))


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRAINSIM_PROFILES")}
    env.update(extra)
    return env


def test_build_step_ships_every_profile_and_preset_as_package_data(tmp_path):
    pytest.importorskip("setuptools")
    lib = tmp_path / "lib"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)], cwd=ROOT, check=True,
                   capture_output=True, env=_clean_env())
    shipped = sorted(p.name for p in (lib / "simulator" / "_data" / "hardware_profiles").glob("*.yaml"))
    assert len(shipped) == NUM_PROFILES
    assert len(list((lib / "simulator" / "presets" / "models").glob("*.yaml"))) == NUM_MODELS
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = _clean_env(PYTHONPATH=str(lib))
    out = subprocess.run([sys.executable, "-m", "simulator", "profiles", "--format", "json"], cwd=run_dir, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert sorted(r["name"] + ".yaml" for r in json.loads(out.stdout)) == shipped
    out = subprocess.run([sys.executable, "-m", "simulator", "estimate", "--model", "llama3-8b", "--hardware",
                          "h100-sxm5-80gb", "--devices", "8", "--global-batch", "8", "--seq-len", "2048",
                          "--format", "json"],
                         cwd=run_dir, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 0 < json.loads(out.stdout)["mfu"] < 1


def test_checkout_reads_profiles_in_place():
    assert Path(str(loading.profiles_dir())) == ROOT / "hardware_profiles"
    assert len(loading.available_profiles()) == NUM_PROFILES
    assert len(loading.available_models()) == NUM_MODELS


def test_profiles_without_any_profile_is_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRAINSIM_PROFILES", str(tmp_path))
    assert main(["profiles"]) == 2
    err = capsys.readouterr().err
    assert "no hardware profiles found" in err and str(tmp_path) in err
