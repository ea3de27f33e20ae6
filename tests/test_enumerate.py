"""The one layout enumeration (planning.enumerate), shared by the search and by validation's search of blank
cells: hand-counted micro-batch rules, sequence-parallel settings, stated values and the empty-space error."""
import numpy as np
import pytest

from simulator.planning.enumerate import EmptySearchSpace, SearchSpace, enumerate_layouts
from simulator.specs.training import TrainingSpec
from simulator.validation import Case, candidate_table, load_cases

from .conftest import gpt
from .test_validate import RUNS


def layouts(space: dict, devices=4, global_batch=12, model=None) -> dict:
    """(tp, pp, dp, vpp, sequence_parallel) -> sorted micro-batch sizes."""
    t = enumerate_layouts(model or gpt(), TrainingSpec(seq_len=128, global_batch=global_batch), devices,
                          SearchSpace(**space))
    out: dict = {}
    for i in range(len(t)):
        key = (int(t.tp[i]), int(t.pp[i]), int(t.dp[i]), int(t.vpp[i]), bool(t.sequence_parallel[i]))
        out.setdefault(key, []).append(int(t.micro_batch[i]))
    return {k: sorted(v) for k, v in out.items()}


ONE = {"pp": [1], "cp": [1], "zero": [1], "recompute": ["none"]}


def test_batch_divisors_are_the_divisors_of_each_replicas_share():
    # 4 devices, batch 12: dp 4 -> 3 per replica, dp 2 -> 6, dp 1 -> 12
    got = layouts({**ONE, "micro_batch_sizes": "batch-divisors"})
    assert got == {(1, 1, 4, 1, False): [1, 3], (2, 1, 2, 1, True): [1, 2, 3, 6],
                   (4, 1, 1, 1, True): [1, 2, 3, 4, 6, 12]}


def test_powers_of_two_keep_micro_batch_times_dp_within_the_batch():
    got = layouts(ONE)
    assert got == {(1, 1, 4, 1, False): [1, 2], (2, 1, 2, 1, True): [1, 2, 4], (4, 1, 1, 1, True): [1, 2, 4, 8]}


def test_batch_divisors_fall_back_to_one_where_dp_does_not_divide_the_batch():
    # batch 10 on dp 4: no micro-batch divides 2.5 sequences; 1 is kept for the engine to flag (batch reason)
    got = layouts({**ONE, "tp": [1], "micro_batch_sizes": "batch-divisors"}, global_batch=10)
    assert got == {(1, 1, 4, 1, False): [1]}


def test_a_sequence_parallel_list_tries_both_settings_where_tp_is_above_one():
    got = layouts({**ONE, "micro_batch": [1], "sequence_parallel": [False, True]})
    assert sorted(got) == [(1, 1, 4, 1, False), (2, 1, 2, 1, False), (2, 1, 2, 1, True), (4, 1, 1, 1, False),
                           (4, 1, 1, 1, True)]


def test_stated_values_are_kept_for_the_engine_to_judge():
    # 10 layers on pp 2 x vpp 3 = 6 chunks (uneven) and micro-batch 8 with dp 2 > batch 4: the search drops
    # both; stated (a published layout) they are kept
    m = gpt(layers=10)
    space = {"tp": [2], "pp": [2], "cp": [1], "vpp": [3], "micro_batch": [8], "zero": [1], "recompute": ["none"]}
    with pytest.raises(EmptySearchSpace):
        layouts(space, global_batch=4, model=m)
    assert layouts({**space, "as_stated": True}, global_batch=4, model=m) == {(2, 2, 1, 3, True): [8]}


def test_empty_space_error_names_the_axis_in_a_field():
    with pytest.raises(EmptySearchSpace) as e:
        layouts({"tp": [3]})
    assert e.value.reason == "no tp divides the 4 devices within the constraints (<= 8 heads)"
    assert str(e.value).startswith("empty search space: " + e.value.reason + " (devices 4, model 'gpt-test'")


def test_validation_searches_a_rows_blank_cells_with_the_shared_enumeration():
    # Megatron-LM README 1.7B row: tp 1, pp 1, dp 48, batch 192 stated; micro-batch and recompute blank.
    # Blank micro-batch: the divisors of 192 / 48 = 4; blank recompute: all three kinds -> 9 candidates.
    _, items = load_cases(RUNS)
    case = next(c for c in items if isinstance(c, Case) and c.id == "megatronlm24-h100-1p7b-48")
    table, cols, searched = candidate_table(case)
    assert searched == ["micro_batch", "recompute"]
    assert len(table) == 9
    assert sorted(set(cols["micro_batch"].tolist())) == [1, 2, 4]
    assert np.all(cols["tp"] == 1) and np.all(cols["dp"] == 48) and np.all(cols["zero"] == 1)
