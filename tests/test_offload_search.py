"""Offload as searched dimensions: the enumeration's offload axis, the search frame's columns and reasons, and the
fewest devices that fit a job (planning.fewest, `trainsim search --objective devices`)."""
import json

import numpy as np
import pytest

from simulator.cli import main
from simulator.planning.enumerate import SearchSpace, enumerate_layouts
from simulator.planning.fewest import device_counts, fewest_devices
from simulator.planning.search import search
from simulator.specs.loading import load_model
from simulator.specs.training import TrainingSpec

ALL = {"offload_optimizer": ["none", "cpu", "nvme"], "offload_params": ["none", "cpu", "nvme"],
       "offload_activations": ["none", "cpu"]}


def test_the_offload_axis_keeps_the_combinations_the_zero_stage_allows():
    m, tr = load_model("llama2-7b"), TrainingSpec(seq_len=4096, global_batch=8)
    t = enumerate_layouts(m, tr, 8, SearchSpace(tp=[8], pp=[1], cp=[1], micro_batch=[1], recompute=["full"], **ALL))
    # tp 8 -> dp 1: nothing is sharded, one ZeRO row, every one of the 3 x 3 x 2 tier combinations
    assert len(t) == 18 and set(t.zero.tolist()) == {0}
    t = enumerate_layouts(m, tr, 8, SearchSpace(tp=[1], pp=[1], cp=[1], micro_batch=[1], recompute=["full"], **ALL))
    rows = {(z, o, p) for z, o, p in zip(t.zero.tolist(), t.offload_optimizer.tolist(), t.offload_params.tolist())}
    # dp 8: zero 0/1 keep no offload of optimizer or parameters, zero 2 the optimizer only, zero 3 both
    assert rows == {(0, 0, 0), (1, 0, 0), (2, 0, 0), (2, 1, 0), (2, 2, 0)} | {(3, o, p) for o in range(3)
                                                                          for p in range(3)}
    assert len(t) == 2 * (1 + 1 + 3 + 9)                                       # x activations none/cpu
    plain = enumerate_layouts(m, tr, 8, SearchSpace())
    assert not plain.offload_optimizer.any() and not plain.offload_delayed_update.any()


def test_search_frame_shows_the_offload_choice_and_host_reasons():
    res = search("llama2-7b", "tpu-v4", 4, 8, 4096, constraints={"tp": [1], "pp": [1], "zero": [3],
                                                                 "offload_optimizer": ["none", "cpu"]})
    f = res.frame
    assert set(f["offload_optimizer"].astype(str)) == {"none", "cpu"}
    off = f[f["offload_optimizer"].astype(str) == "cpu"]
    assert not off["feasible"].any()
    assert off["reason"].str.contains("offload needs host.link_gb_per_s").all()
    assert res.reason_counts()["host facts"] == len(off)


def test_device_counts_are_powers_of_two_then_whole_nodes():
    assert device_counts(40, 8) == [1, 2, 4, 8, 16, 24, 32, 40]
    assert device_counts(20, 8) == [1, 2, 4, 8, 16, 20]
    assert device_counts(3, 8) == [1, 2, 3]


def test_fewest_gpus_that_fit_llama3_70b_with_offload():
    """70.6B parameters: 16 B/param of model state does not fit 16 H100; with optimizer and parameters on the host
    (18 B/param = 1.27 TB of the DGX H100's 2 TB) one H100 holds its gather buffer (the 128,256 x 8192 embedding,
    the largest unit, and the layer after it: costs.memory.zero3_gathered_params), one fp32 gradient bucket and the
    activations."""
    plain = fewest_devices("llama3-70b", "h100-sxm5-80gb", 64, 64, 8192)
    off = fewest_devices("llama3-70b", "h100-sxm5-80gb", 64, 64, 8192, constraints=ALL)
    assert plain.devices > 16 and all(s["num_feasible"] == 0 for s in plain.scanned[:-1])
    assert off.devices == 1
    best = off.frame.iloc[0]
    assert best["devices"] == 1 and best["feasible"]
    assert (best["offload_optimizer"], best["offload_params"]) == ("cpu", "cpu")     # the profile has no NVMe rates
    layer = 2 * 8192**2 + 2 * 1024 * 8192 + 3 * 8192 * 28672 + 2 * 8192       # q, o; k, v (8 KV heads); MLP; norms
    assert best["mem_weights_bytes"] == pytest.approx((128256 * 8192 + layer) * 2)
    assert best["mem_grads_bytes"] == 5e8 * 4 and best["mem_optimizer_bytes"] == 0
    assert 1.27e12 < best["mem_host_bytes"] <= 2e12
    assert not off.frame[off.frame["offload_params"].astype(str) == "nvme"]["feasible"].any()


def test_cli_objective_devices_ranks_the_fewest_count(capsys):
    code = main(["search", "--model", "llama3-70b", "--hardware", "h100-sxm5-80gb", "--devices", "64",
                 "--global-batch", "64", "--seq-len", "8192", "--objective", "devices", "--offload-optimizer",
                 "none,cpu", "--offload-params", "none,cpu", "--offload-activations", "none,cpu", "--format", "json"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and d["devices"] == 1 and d["objective"] == "devices"
    top = d["candidates"][0]
    assert top["devices"] == 1 and top["offload_optimizer"] == "cpu" and top["rank"] == 1
    assert np.isfinite(top["tokens_per_s"])
    code = main(["search", "--model", "llama3-70b", "--hardware", "h100-sxm5-80gb", "--devices", "8",
                 "--global-batch", "64", "--seq-len", "8192", "--objective", "devices"])
    assert code == 3 and "no layout fits on up to 8 devices" in capsys.readouterr().err
