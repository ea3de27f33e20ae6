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
    "add_bias_linear false", "position_embedding_type yarn (yarn_rotary_scaling_factor 32)",
    "no --overlap-grad-reduce", "overlap_grad_reduce_off", "flash attention", "no --use-flash-attn",
    "flash attention off", "--ddp-impl torch", "dense (non-sparse) matmul dispatch", "sparse_matmul=false",
    "sparsecore offload of the all-reduce", "no sparsecore offload of all-reduce",
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
