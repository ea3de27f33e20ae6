"""The speed paths of the kernel lookups (issue #13) give the numbers of the plain paths, bit for bit."""
import numpy as np
import pytest

from simulator.costs import kernels
from simulator.costs.compute import kernel_rates
from simulator.costs.kernels import build_kernel_model, derive_op, load_kernel_catalog, measured_surfaces
from simulator.specs.loading import load_hardware

SHAPES = np.random.default_rng(7).integers(16, 65536, size=(3, 200)).astype(float)


@pytest.mark.parametrize("profile", ["a100-sxm4-80gb", "h100-sxm5-80gb", "mi300x"])
def test_memoised_lookups_equal_unmemoised_ones(profile, monkeypatch):
    m, n, k = SHAPES
    model = build_kernel_model(load_hardware(profile))
    first = model.gemm_efficiency(m, n, k)
    again = model.gemm_efficiency(m, n, k)                      # every element from the memo
    shuffled = model.gemm_efficiency(m[::-1], n[::-1], k[::-1])[::-1]
    att = model.attention_efficiency(m, np.full_like(m, 128.0), n / 64.0)
    monkeypatch.setattr(kernels, "MEMO_MAX_ELEMENTS", -1)     # the plain (chunked) path
    plain = build_kernel_model(load_hardware(profile))
    assert np.array_equal(first, plain.gemm_efficiency(m, n, k))
    assert np.array_equal(again, first) and np.array_equal(shuffled, first)
    assert np.array_equal(att, plain.attention_efficiency(m, np.full_like(m, 128.0), n / 64.0))


def test_ops_derived_on_first_use_equal_eager_derivation():
    hw = load_hardware("a100-sxm4-80gb")
    model = build_kernel_model(hw)
    surfaces = list(measured_surfaces()[0])
    cat = load_kernel_catalog()
    for (op, dt, kern) in model.ops:
        eager = derive_op(model.device, op, dt, surfaces, cat.transfer_validation, kernel=kern)
        lazy = model.ops[(op, dt, kern)]
        assert eager is not None and lazy.basis == eager.basis and lazy.level == eager.level
        assert np.array_equal(lazy.grid.values, eager.grid.values)


def test_three_passes_in_one_lookup_equal_three_lookups():
    m, n, k = SHAPES
    kr = kernel_rates(load_hardware("a100-sxm4-80gb"), "bf16")
    fwd, dgrad, wgrad = kr.gemm_passes_s(m, n, k)
    assert np.array_equal(fwd, kr.gemm_time_s(m, n, k))
    assert np.array_equal(dgrad, kr.gemm_time_s(m, k, n))
    assert np.array_equal(wgrad, kr.gemm_time_s(n, k, m))


def test_special_ufuncs_are_scipys():
    from simulator.special import special_ufunc
    import scipy.special
    x = np.linspace(0.5, 300.0, 1001)
    assert np.array_equal(special_ufunc("gammaln")(x), scipy.special.gammaln(x))
    assert np.array_equal(special_ufunc("ndtr")(x / 50 - 3), scipy.special.ndtr(x / 50 - 3))


@pytest.mark.parametrize("profile", ["h100-sxm5-80gb", "mi250x", "gaudi2"])
def test_transferred_grids_read_lazily_equal_the_averaged_grid(profile):
    """A transferred op's residual (the mean of its sources' shifted grids) is computed only where a lookup reads
    it (kernels.ShiftedMean): the same lookups, bit for bit, as on the whole averaged grid."""
    m, n, k = SHAPES
    model = build_kernel_model(load_hardware(profile))
    lazy_ops = [key for key in model.ops if isinstance(model.ops[key].grid.values, kernels.ShiftedMean)]
    assert lazy_ops
    for key in lazy_ops:
        grid = model.ops[key].grid
        v = grid.values
        whole = np.mean([g + sh for g, sh in zip(v.grids, v.shifts)], axis=0)
        assert np.array_equal(np.asarray(v), whole)
        eager = kernels.LogGrid(grid.lo, grid.step, whole)
        coords = (m, n, k) if len(grid.lo) == 3 else (m, n, k, np.full_like(m, 4.0))[:len(grid.lo)]
        assert np.array_equal(grid(*coords), eager(*coords))
