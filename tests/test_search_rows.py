"""The table of `trainsim search` reads the ranked numpy columns (SearchResult.top_rows) and never builds the
DataFrame (issue #13): it must show exactly the frame's rows, in the frame's order."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from simulator.planning.search import RankedColumns, search

CASES = {
    "gpt3-a100-256": ("gpt3-175b", "a100-sxm4-80gb", 256, 512, 2048, {}),
    "mixtral-h100-64-cost": ("mixtral-8x7b", "h100-sxm5-80gb", 64, 256, 4096, {"objective": "cost"}),
}


def _same(a, b) -> bool:
    if a is None or b is None:
        import pandas as pd
        return (a is None or a is pd.NA) and (b is None or b is pd.NA)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.fixture(scope="module", params=sorted(CASES))
def lazy_and_eager(request):
    model, hw, devices, batch, seq, kw = CASES[request.param]
    lazy = search(model, hw, devices, batch, seq, reasons=False, **kw)
    eager = search(model, hw, devices, batch, seq, **kw)
    return lazy, eager


def test_a_table_search_keeps_the_ranked_columns_and_builds_no_frame(lazy_and_eager):
    lazy, _ = lazy_and_eager
    assert isinstance(lazy.__dict__["_frame_value"], RankedColumns)
    lazy.top_rows(20), lazy.num_feasible, lazy.num_candidates, lazy.reason_counts()
    assert isinstance(lazy.__dict__["_frame_value"], RankedColumns)      # none of these built the frame


def test_top_rows_are_the_frames_first_rows_column_for_column(lazy_and_eager):
    lazy, eager = lazy_and_eager
    rows = lazy.top_rows(20)
    want = eager.frame.drop(columns="reason")
    want = want[want["feasible"]].head(20).to_dict("records")
    assert len(rows) == len(want) == min(20, eager.num_feasible) > 0
    for got, exp in zip(rows, want):
        assert list(got) == list(exp)
        bad = {k: (got[k], exp[k]) for k in got if not _same(got[k], exp[k])}
        assert not bad


def test_rows_anywhere_in_the_ranking_match_the_frame_incl_blanked_unformable_rows(lazy_and_eager):
    lazy, eager = lazy_and_eager
    cols = lazy.__dict__["_frame_value"]
    n = len(cols)
    pos = np.unique(np.r_[0:5, n // 2: n // 2 + 5, n - 5:n])
    rows = cols.rows(pos)
    want = eager.frame.drop(columns="reason").iloc[pos].to_dict("records")
    for got, exp in zip(rows, want):
        assert all(_same(got[k], exp[k]) for k in got), (got, exp)


def test_counts_agree_and_the_frame_is_built_on_first_read(lazy_and_eager):
    lazy, eager = lazy_and_eager
    assert (lazy.num_candidates, lazy.num_feasible, lazy.reason_counts()) == \
        (eager.num_candidates, eager.num_feasible, eager.reason_counts())
    copy = dataclasses.replace(lazy, objective=lazy.objective)          # replace() reads and passes the frame
    assert copy.frame.drop(columns=[]).equals(lazy.frame)
    assert lazy.frame.equals(eager.frame.drop(columns="reason"))
