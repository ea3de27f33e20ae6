"""Dense-einsum MoE dispatch over a whole micro-batch (DeepSpeed-MoE sharded_moe.py) against one sequence per group
(MaxText): hand-derived FLOPs on the ideal toy device (100 TFLOP/s, every kernel at peak)."""
import numpy as np
import pytest

import simulator as ts
from simulator.costs.layer import dense_dispatch_passes_s
from simulator.costs.sizes import sizes
from simulator.specs.frameworks_loading import load_framework
from simulator.specs.job import Job
from simulator.specs.layout_table import LayoutTable
from simulator.specs.model import MoESpec

from .conftest import gpt, toy_hardware


def _dispatch_s(group: str):
    m = gpt(layers=2, hidden=512, heads=8, moe=MoESpec(num_experts=8, top_k=1, expert_ffn_hidden_size=1024))
    fw = load_framework("deepspeed-2020")
    fw = fw.model_copy(update={"moe": fw.moe.model_copy(update={"dense_group": group})})
    sz = sizes(Job(m, toy_hardware(), ts.TrainingSpec(seq_len=128, global_batch=16), 8, framework=fw),
               LayoutTable.from_columns(tp=np.array([1]), dp=np.array([8]), ep=np.array([8]),
                                        micro_batch=np.array([2])))
    return [float(np.ravel(x)[0]) for x in dense_dispatch_passes_s(sz)]


def test_deepspeed_preset_dispatches_densely_over_the_micro_batch():
    fw = load_framework("deepspeed-2020")
    assert (fw.moe.dispatch, fw.moe.dense_group, fw.moe.gate_passes) == ("dense-einsum", "micro-batch",
                                                                       "eager-fp32")


def test_micro_batch_group_einsums_by_hand():
    """Micro-batch 2 x seq 128: S = 256 tokens, top-1, no capacity factor: C = S / E = 32, E C = 256 slots.
    Dispatch (256 x 256) @ (256 x 512) and combine (256 x 256) @ (256 x 512): 2 x 2 x 256 x 256 x 512 =
    134,217,728 FLOPs forward; backward the tokens' gradient of the dispatch (the mask has none) and the expert
    output's and combine weights' gradients of the combine, 3 x 67,108,864 = 201,326,592, all input-gradient work
    (no weights: no weight-gradient pass). At 1e14 FLOP/s. Plus the fp32 gate's memory-bound
    passes at the toy 1 TB/s (costs.dense_dispatch.gate_stream_bytes): forward 18 B per [S, E, C] element
    (65,536 x 18 = 1,179,648), 192 B per [S, E] element (2,048 x 192 = 393,216), the input cast S M (2 + 4) =
    786,432: 2,359,296 B; backward 10 B per slot (655,360) + 28 B per [S, E] (57,344) + 786,432 = 1,499,136 B.
    Per sequence instead: two groups of S = 128 (C 16, E C 128): GEMMs 2 x 2 x (2 x 128 x 128 x 512) =
    67,108,864 FLOPs forward (backward 3/2 of it), half (the einsums grow with the square of the group); bytes 2 x (16,384 x 18 + 1,024 x 192 +
    393,216) = 1,769,472 forward and 2 x (16,384 x 10 + 1,024 x 28 + 393,216) = 1,171,456 backward."""
    assert _dispatch_s("micro-batch") == pytest.approx([134217728 / 1e14 + 2359296 / 1e12,
                                                        201326592 / 1e14 + 1499136 / 1e12, 0.0])
    assert _dispatch_s("sequence") == pytest.approx([67108864 / 1e14 + 1769472 / 1e12,
                                                     100663296 / 1e14 + 1171456 / 1e12, 0.0])
