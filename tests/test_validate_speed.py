"""`trainsim validate` speed work (issue #13) must not move a prediction: the shortcuts taken on its path give the
results of the plain path on every row of the published runs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulator.validation import rows as R

RUNS = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "published_runs.csv"


def note_patterns() -> dict:
    """Every NotePattern of validation.rows: module-level ones and the override table's."""
    found = {k: v for k, v in vars(R).items() if isinstance(v, R.NotePattern)}
    found.update({f"NOTE_OVERRIDES[{i}]": p for i, (p, _, _) in enumerate(R.NOTE_OVERRIDES)
                  if isinstance(p, R.NotePattern)})
    return found


def published_notes() -> list[str]:
    """The notes of every published row, with its recipe facts appended (as load_cases reads them)."""
    header, recs = R.records(RUNS.read_text(encoding="utf-8-sig"))
    out = []
    for line, cells in recs:
        try:
            row = R.with_recipe_notes(R.parse_published_row(header, cells, line))
        except R.RowError:
            continue
        out.append(row.get("notes") or "")
    return out


#: Texts each pattern family matches (and near misses), in several cases, and non-ASCII texts that IGNORECASE folds
#: onto ASCII letters (U+212A KELVIN SIGN is a 'k', U+017F LONG S an 's'), where the literal pre-test must not apply.
CRAFTED = [
    "power limit 500 W", "400 W power cap", "POWER CAPPED AT 300 W", "clock fraction 0.85", "head_dim 128",
    "1,000 tokens per eval block ... eval (64 sequences forward)", "tp-comm-overlap", "TP_COMM_OVERLAP",
    "mc2 compute-communication fusion", "ep_a2a_overlap", "overlap-moe-expert-parallel-comm", "deepep",
    "at most 4 nodes per token", "two MTP layers", "1 multi-token prediction module", "4096-token sliding window",
    "sliding-window of (1,024)", "chunked attention of 8192", "every 4th layer is global",
    "alternating sliding window and full attention", "activation_func_clamp_value 7.0", "add_bias_linear",
    "add_bias_linear false", "qk_layernorm True", "position_embedding_type yarn (yarn_rotary_scaling_factor 32)",
    "no --overlap-grad-reduce", "overlap_grad_reduce_off", "flash attention", "no --use-flash-attn",
    "flash attention off", "--ddp-impl torch", "dense (non-sparse) matmul dispatch", "sparse_matmul=false",
    "sparsecore offload of the all-reduce", "no sparsecore offload of all-reduce",
    "fsdp gradients reduced by all-reduce + dynamic-slice",
    "collective matmul on the tensor-parallel all-gather side only", "xla_tpu_decompose_all_gather_einsum=true",
    "\u017fliding window 4096", "4096-token \u017fliding window", "clock fraction 0.9 \u212a", "po\u017fer limit 5 W",
    "", "nothing to see here",
]


@pytest.mark.parametrize("name", sorted(note_patterns()))
def test_a_note_pattern_finds_what_its_regex_finds_on_every_published_row(name):
    """NotePattern.search (a literal pre-test, then the regex) == the compiled regex's search, on every row's
    notes as written, lower-cased and upper-cased, and on crafted matches, misses and non-ASCII folds."""
    p = note_patterns()[name]
    texts = published_notes() + CRAFTED
    for text in texts + [t.lower() for t in texts] + [t.upper() for t in texts]:
        got, want = p.search(text), p.regex.search(text)
        assert (got is None) == (want is None), (name, text[:200])
        if want is not None:
            assert (got.span(), got.groups()) == (want.span(), want.groups()), (name, text[:200])


def test_the_crafted_texts_exercise_the_patterns():
    """Control: every pattern matches some crafted text, so the test above compares matches, not only misses."""
    hits = {n for n, p in note_patterns().items() if any(p.regex.search(t) for t in CRAFTED)}
    assert hits == set(note_patterns()), sorted(set(note_patterns()) - hits)


def test_a_note_pattern_needs_lower_case_ascii_literals_under_ignorecase():
    with pytest.raises(ValueError):
        R.NotePattern(r"Power \d+", re.I, ("Power",))
    with pytest.raises(ValueError):
        R.NotePattern(r"power \d+", re.I, ())


# ---------------------------------------------------------------------------------------------------------------
# kernel-surface lookups: LogGrid interpolates every axis at once
# ---------------------------------------------------------------------------------------------------------------

def loggrid_axis_by_axis(grid, *coords):
    """The multilinear interpolation as LogGrid computed it before issue #13's change, axis by axis (reference)."""
    import numpy as np
    arrays = np.broadcast_arrays(*(np.asarray(c, dtype=float) for c in coords))
    out_shape = arrays[0].shape
    arrays = [a.ravel() for a in arrays]
    shape = grid.values.shape
    strides = [int(s) for s in np.cumprod((1,) + shape[:0:-1])[::-1]]
    bounds = [n - 1.000001 for n in shape]
    flat = grid.values.ravel()
    base, frac = 0, []
    for d in range(len(grid.lo)):
        u = np.log2(np.maximum(arrays[d], 1e-300))
        u -= grid.lo[d]
        u /= grid.step
        np.clip(u, 0.0, bounds[d], out=u)
        i = u.astype(np.intp)
        base = base + i * strides[d]
        frac.append(u - i)
    corners = [(0, None)]
    for d in range(len(grid.lo)):
        lo_w, hi_w, step = 1.0 - frac[d], frac[d], int(strides[d])
        corners = [(o, lo_w if w is None else w * lo_w) for o, w in corners] + \
                  [(o + step, hi_w if w is None else w * hi_w) for o, w in corners]
    out = np.zeros_like(frac[0])
    values = flat.take(np.add.outer([o for o, _ in corners], base))
    for j, (_, weight) in enumerate(corners):
        out += weight * values[j]
    return out.reshape(out_shape)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_loggrid_gives_the_axis_by_axis_numbers_bit_for_bit(dims):
    """Random grids and points inside, outside (clamped) and on the nodes, scalars and broadcast shapes."""
    import numpy as np
    from simulator.costs.kernels import LogGrid
    rng = np.random.default_rng(dims)
    shape = tuple(int(x) for x in rng.integers(2, 9, size=dims))
    g = LogGrid(lo=tuple(float(x) for x in rng.uniform(0, 5, size=dims)), step=0.25,
                values=rng.normal(size=shape))
    pts = [2.0 ** rng.uniform(-2, 10, size=500) for _ in range(dims)]
    pts[0][:20] = 2.0 ** (g.lo[0] + 0.25 * np.arange(20))          # nodes, and beyond the last one
    for args in (pts, [p[:1] for p in pts], [p[0] for p in pts], [p.reshape(20, 25) for p in pts],
                 [pts[0].reshape(-1, 1)] + [p[:7] for p in pts[1:]]):
        assert np.array_equal(g(*args), loggrid_axis_by_axis(g, *args))


def test_loggrid_on_the_shipped_kernel_surfaces_bit_for_bit():
    """Every measured GEMM / attention surface of two devices (table and transferred), on the shapes a validation
    run looks up."""
    import numpy as np
    from simulator.costs.compute import cached_kernel_model
    from simulator.specs.loading import load_hardware
    rng = np.random.default_rng(0)
    x = [2.0 ** rng.uniform(0, 21, size=300) for _ in range(3)]
    checked = 0
    for name in ("a100-sxm4-80gb", "h100-sxm5-80gb"):
        km = cached_kernel_model(load_hardware(name))
        for key in list(km.ops):
            grid = km.ops[key].grid
            assert np.array_equal(grid(*x), loggrid_axis_by_axis(grid, *x)), (name, key)
            checked += 1
    assert checked >= 6


def gemm_fill_choice_by_choice(m, n, groups, units, tile_m, tile_n):
    """gemm_fill as computed before issue #13's change, one tile choice at a time (reference)."""
    import numpy as np
    from simulator.costs.kernels import TILE_CHOICES
    m, n, g = (np.asarray(x, dtype=float) for x in (m, n, groups))
    rows = {f: np.ceil(m / (f * tile_m)) for f in {c[0] for c in TILE_CHOICES}}
    cols = {f: np.ceil(n / (f * tile_n)) for f in {c[1] for c in TILE_CHOICES}}
    slots = None
    for fm, fn in TILE_CHOICES:
        area = np.ceil(g * rows[fm] * cols[fn] / units) * (fm * fn)
        slots = area if slots is None else np.minimum(slots, area)
    return g * m * n / (slots * (units * tile_m * tile_n))


def test_gemm_fill_gives_the_choice_by_choice_numbers_bit_for_bit():
    import numpy as np
    from simulator.costs.kernels import gemm_fill
    rng = np.random.default_rng(3)
    m, n = np.floor(2.0 ** rng.uniform(0, 18, size=(2, 2000)))
    g = np.floor(2.0 ** rng.uniform(0, 7, size=2000))
    for args in ((m, n, g), (m, n, 1.0), (m[0], n[0], 1.0), (m[:5].reshape(5, 1), n[:3], g[:3]), (64.0, 128.0, 2.0)):
        for units, tm, tn in ((108, 128, 128), (132, 128, 256), (304, 256, 128)):
            got, want = gemm_fill(*args, units, tm, tn), gemm_fill_choice_by_choice(*args, units, tm, tn)
            assert np.shape(got) == np.shape(want) and np.array_equal(got, want)
