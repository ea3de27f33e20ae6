"""The kernel model's surface cache: a hit returns exactly the fit, a damaged file is refitted, off disables it."""
from __future__ import annotations

import pickle

from simulator.costs import surfaces_cache
from simulator.costs.kernel_data import parse_kernel_catalog
from simulator.costs.kernels import _fit_measured_surfaces


def test_cache_hit_equals_the_fit_and_a_damaged_file_is_refitted(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINSIM_CACHE_DIR", str(tmp_path))
    calls = []

    def fit():
        calls.append(1)
        return {"surfaces": [1.0, 2.0]}

    assert surfaces_cache.cached(fit) == {"surfaces": [1.0, 2.0]}
    assert surfaces_cache.cached(fit) == {"surfaces": [1.0, 2.0]}
    assert len(calls) == 1                                   # the second call read the file
    (path,) = tmp_path.glob("kernel-surfaces-*.pkl")
    assert surfaces_cache.inputs_digest()[:24] in path.name  # named by the tables and code it came from
    path.write_bytes(b"not a pickle")
    assert surfaces_cache.cached(fit) == {"surfaces": [1.0, 2.0]}
    assert len(calls) == 2


def test_cache_off_always_fits(monkeypatch):
    monkeypatch.setenv("TRAINSIM_CACHE_DIR", "off")
    assert surfaces_cache.cache_dir() is None
    calls = []
    surfaces_cache.cached(lambda: calls.append(1))
    surfaces_cache.cached(lambda: calls.append(1))
    assert len(calls) == 2


def test_cached_surfaces_are_the_fitted_surfaces(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINSIM_CACHE_DIR", str(tmp_path))
    first = surfaces_cache.cached(_fit_measured_surfaces)
    again = surfaces_cache.cached(_fit_measured_surfaces)
    assert pickle.dumps(again) == pickle.dumps(_fit_measured_surfaces()) == pickle.dumps(first)


def test_cached_kernel_catalog_is_the_parsed_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINSIM_CACHE_DIR", str(tmp_path))
    first = surfaces_cache.cached(parse_kernel_catalog, "kernel-catalog")
    again = surfaces_cache.cached(parse_kernel_catalog, "kernel-catalog")
    assert len(list(tmp_path.glob("kernel-catalog-*.pkl"))) == 1
    assert again == first == parse_kernel_catalog()
    assert pickle.dumps(again) == pickle.dumps(parse_kernel_catalog())
