"""Pipeline schedules as pure data, checked against the published schedule figures (no SimPy)."""
from __future__ import annotations

import numpy as np
import pytest

from simulator.pipeline.closed_form import inflight_microbatches
from simulator.pipeline.schedules import (Op, check_schedule, gpipe, interleaved_1f1b, max_in_flight, one_f_one_b,
                                     schedule_ops, zb_h1)
from simulator.errors import SpecError


def seq(text: str) -> tuple:
    """'F0 F1 B0.1' -> (Op('F', 0, 0), Op('F', 1, 0), Op('B', 0, 1))."""
    out = []
    for tok in text.split():
        kind, rest = tok[0], tok[1:]
        micro, _, chunk = rest.partition(".")
        out.append(Op(kind, int(micro), int(chunk or 0)))
    return tuple(out)


def test_gpipe_runs_all_forwards_then_all_backwards():
    # Huang et al. 2019 Fig. 2c / Narayanan et al. 2021 Fig. 3 (4 devices, 8 micro-batches), 0-based here
    s = gpipe(4, 8)
    assert all(ops == seq("F0 F1 F2 F3 F4 F5 F6 F7 B0 B1 B2 B3 B4 B5 B6 B7") for ops in s)


def test_1f1b_matches_narayanan_2021_figure_4_top():
    # Narayanan et al. 2021 Fig. 4 (top), 4 devices, 8 micro-batches (1-based in the figure):
    # device 1: 1 2 3 4 1 5 2 6 3 7 4 8 5 6 7 8 ; device 4: 1 1 2 2 3 3 ... 8 8
    s = one_f_one_b(4, 8)
    assert s[0] == seq("F0 F1 F2 F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 B5 B6 B7")
    assert s[1] == seq("F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 B6 B7")
    assert s[3] == seq("F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7")


def test_interleaved_1f1b_follows_megatrons_virtual_pipeline_order():
    # p = 4, v = 2, m = 8, rank 0: warm-up 2(p-1) + (v-1)p = 10 chunk passes: micro-batches 0-3 on chunk 0,
    # 0-3 on chunk 1, 4-5 on chunk 0; then one forward / one backward (backwards from the last chunk);
    # Narayanan et al. 2021 Fig. 4 (bottom) and Megatron-LM forward_backward_pipelining_with_interleaving.
    s = interleaved_1f1b(4, 8, 2)
    assert s[0] == seq("F0 F1 F2 F3 F0.1 F1.1 F2.1 F3.1 F4 F5 "
                       "F6 B0.1 F7 B1.1 F4.1 B2.1 F5.1 B3.1 F6.1 B0 F7.1 B1 "
                       "B2 B3 B4.1 B5.1 B6.1 B7.1 B4 B5 B6 B7")
    # the last rank warms up with (v-1)p = 4 passes, then alternates
    assert s[3][:8] == seq("F0 F1 F2 F3 F0.1 B0.1 F1.1 B1.1")


def test_zb_h1_defers_the_first_r_weight_gradients_of_rank_r():
    # Qi et al. 2023 Fig. 3 (ZB-H1), p = 4, m = 8: the 1F1B order with B split into B and W; rank 0 runs W
    # right after each B, the last rank defers three W passes into the drain.
    s = zb_h1(4, 8)
    assert s[0] == seq("F0 F1 F2 F3 B0 W0 F4 B1 W1 F5 B2 W2 F6 B3 W3 F7 B4 W4 B5 W5 B6 W6 B7 W7")
    assert s[3] == seq("F0 B0 F1 B1 F2 B2 F3 B3 W0 F4 B4 W1 F5 B5 W2 F6 B6 W3 F7 B7 W4 W5 W6 W7")
    # every rank holds at most p micro-batches (activations are released by W): the same peak as 1F1B's rank 0
    assert max(max_in_flight(ops, split_backward=True) for ops in s) == 4


@pytest.mark.parametrize("name,pp,m,vpp", [
    ("gpipe", 1, 1, 1), ("gpipe", 3, 5, 1), ("1f1b", 1, 4, 1), ("1f1b", 4, 2, 1), ("1f1b", 8, 16, 1),
    ("interleaved", 2, 2, 2), ("interleaved", 4, 4, 3), ("interleaved", 4, 12, 2), ("interleaved", 8, 16, 4),
    ("zb-h1", 1, 3, 1), ("zb-h1", 4, 3, 1), ("zb-h1", 8, 24, 1)])
def test_every_schedule_runs_each_pass_once_in_dependency_order(name, pp, m, vpp):
    check_schedule(schedule_ops(name, pp, m, vpp), pp, m, vpp, split_backward=(name == "zb-h1"))


@pytest.mark.parametrize("pp,m", [(4, 8), (8, 8), (8, 3), (2, 16)])
def test_1f1b_in_flight_micro_batches_match_the_memory_model(pp, m):
    s = one_f_one_b(pp, m)
    for r in range(pp):
        assert max_in_flight(s[r]) == inflight_microbatches(pp, 1, m, 1, r)


@pytest.mark.parametrize("pp,m,vpp", [(4, 8, 2), (4, 16, 3), (8, 16, 2), (2, 4, 4)])
def test_interleaved_in_flight_chunk_passes_match_the_memory_model(pp, m, vpp):
    # the analytic memory model counts 2(p-r-1) + (v-1)p + 1 chunk passes, in units of the rank's v chunks
    s = interleaved_1f1b(pp, m, vpp)
    for r in range(pp):
        assert max_in_flight(s[r]) / vpp == pytest.approx(float(inflight_microbatches(pp, vpp, m, 2, r)))


def test_gpipe_holds_every_micro_batch():
    assert [max_in_flight(ops) for ops in gpipe(4, 6)] == [6, 6, 6, 6]


def test_bad_schedule_inputs_name_the_value_and_rule():
    with pytest.raises(SpecError, match=r"micro-batches \(6\) must be a multiple of pp \(4\)"):
        interleaved_1f1b(4, 6, 2)
    with pytest.raises(SpecError, match="pp = 0"):
        one_f_one_b(0, 4)
    with pytest.raises(SpecError, match="schedule 'chimera'"):
        schedule_ops("chimera", 4, 8)


def test_check_schedule_rejects_a_backward_before_its_forward():
    bad = (seq("B0 F0"),)
    with pytest.raises(ValueError, match="before its forward"):
        check_schedule(bad, 1, 1)
    assert np.all([len(ops) == 16 for ops in one_f_one_b(4, 8)])
