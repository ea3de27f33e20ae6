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
    assert (fw.moe.dispatch, fw.moe.dense_group) == ("dense-einsum", "micro-batch")


def test_micro_batch_group_einsums_by_hand():
    """Micro-batch 2 x seq 128: S = 256 tokens, top-1, capacity factor 1: E C = 256 slots. Dispatch (256 x 256) @
    (256 x 512) and combine (256 x 256) @ (256 x 512): 2 x 2 x 256 x 256 x 512 = 134,217,728 FLOPs a pass, at
    1e14 FLOP/s 1.342e-6 s. Per sequence instead: two groups of S = 128, 2 x 2 x (2 x 128 x 128 x 512) =
    67,108,864 FLOPs, half: the einsums grow with the square of the group."""
    assert _dispatch_s("micro-batch") == pytest.approx([134217728 / 1e14] * 3)
    assert _dispatch_s("sequence") == pytest.approx([67108864 / 1e14] * 3)
