"""A run, not a step: checkpoint size and time, Young/Daly, failures, goodput, and the published run figures."""
import math

import pytest

from simulator.errors import SpecError
from simulator.planning import goodput as gp
from simulator.specs.loading import load_hardware
from simulator.specs.run import load_run
from simulator.specs.scenario import Scenario

LLAMA3 = dict(model="llama3-405b", hardware="h100-sxm5-80gb", devices=16384, global_batch=2048, seq_len=8192,
              tp=8, pp=16, recompute="full")      # Llama 3 Table 4 layout; recompute not published (full fits)
MEGASCALE = dict(model="gpt3-175b", hardware="a100-sxm4-80gb", devices=12288, global_batch=6144, seq_len=2048,
                 tp=8, pp=8)                        # assumed MegaScale-like job (see presets/runs/megascale-12k.yaml)


@pytest.fixture(scope="module")
def llama3_plan():
    return gp.plan(Scenario.build(**LLAMA3), None, "llama3-405b-16k", days=54, samples=200, seed=0)


@pytest.fixture(scope="module")
def megascale_plan():
    return gp.plan(Scenario.build(**MEGASCALE), None, "megascale-12k", days=21)


# ---- pure functions, hand-derived -----------------------------------------------------------------------

def test_1t_checkpoint_of_13_8_tb_at_273_gb_per_s_saves_in_51_s():
    # Narayanan et al. 2021 sec. 5.10: 13.8 TB / 273 GB/s = 50.5 s
    assert gp.storage_write_time_s(13.8e12, 273e9) == pytest.approx(50.55, abs=0.01)


def test_1t_model_checkpoint_size_is_within_3_percent_of_the_published_13_8_tb():
    from simulator.costs.flops import model_costs
    from simulator.specs.loading import load_model
    m = load_model("megatron-1t")
    params = model_costs(m, 2048).total_params(m.tied_embeddings)       # 1.008e12
    assert gp.checkpoint_bytes(params, 2) == pytest.approx(13.8e12, rel=0.03)


def test_checkpoint_bytes_per_param_is_14_in_bf16_and_12_in_fp32():
    assert gp.checkpoint_bytes_per_param(2) == 14      # 2 B weight + fp32 master, m, v
    assert gp.checkpoint_bytes_per_param(4) == 12      # fp32 weight is the master: + m, v


def test_checkpoint_size_from_param_count_agrees_with_the_memory_breakdown():
    """Two derivations: params x 14 B, and every device's weights/optimizer divided by its replicas (tp 2, dp 4,
    ZeRO-1: weights replicated 4x, optimizer sharded)."""
    from simulator.analytic.estimate import estimate
    from simulator.costs.flops import model_costs
    sc = Scenario.build("llama2-7b", "h100-sxm5-80gb", 8, 64, seq_len=4096, tp=2, zero=1)
    mem = estimate(sc).memory_bytes
    from_memory = gp.checkpoint_bytes_from_memory(mem["weights_bytes"], mem["optimizer_bytes"], 8, 4, 1)
    params = model_costs(sc.model, 4096).total_params(sc.model.tied_embeddings)
    assert from_memory == pytest.approx(gp.checkpoint_bytes(params, 2), rel=1e-9)


def test_storage_write_is_limited_by_per_node_links_when_they_are_narrower():
    # 1 TB over 10 nodes at 5 GB/s each = 50 GB/s < 2 TB/s fabric: 20 s
    assert gp.storage_write_time_s(1e12, 2e12, num_nodes=10, per_node_bytes_per_s=5e9) == pytest.approx(20.0)


def test_young_and_daly_intervals_by_hand():
    # C = 60 s, M = 1 h: sqrt(2 x 60 x 3600) = 657.27 s; Daly: 657.27 x (1 + 0.03043 + 0.00093) - 60 = 617.88 s
    assert gp.young_interval_s(60, 3600) == pytest.approx(657.267, abs=1e-3)
    assert gp.daly_interval_s(60, 3600) == pytest.approx(617.876, abs=1e-3)
    assert gp.daly_interval_s(8000, 3600) == pytest.approx(3600)        # C >= 2M: checkpoint every MTBF


def test_job_mtbf_from_the_llama3_snapshot_is_one_failure_every_3_1_hours():
    rate = 419 / (54 * 24 * 16384)
    assert gp.job_mtbf_s(rate, 16384) == pytest.approx(11135.08, abs=0.01)     # 54 d x 86400 / 419


def test_wall_time_per_compute_second_by_hand():
    # Daly's exact model: tau 1 h, C 60 s, R 600 s, M 10 h: 10 e^(1/60) (e^(3660/36000) - 1) = 1.088129
    assert gp.wall_time_per_compute_s(3600, 60, 0, 600, 36000) == pytest.approx(1.088129, abs=1e-6)
    # no failures: only the checkpoints cost time, 1 + C / tau
    assert gp.wall_time_per_compute_s(1000, 10, 0, 0, 1e15) == pytest.approx(1.01, rel=1e-9)


def test_exact_wall_time_agrees_with_the_first_order_loss_per_failure():
    """Two derivations: (1 + C/tau) / (1 - lost per failure / M) with lost = (tau + C)/2 + R is 1.09026."""
    first = (1 + 60 / 3600) / (1 - gp.lost_time_per_failure_s(3600, 60, 0, 600) / 36000)
    assert first == pytest.approx(1.090259, abs=1e-6)
    assert gp.wall_time_per_compute_s(3600, 60, 0, 600, 36000) == pytest.approx(first, rel=0.003)


def test_wall_time_is_infinite_when_restarts_outlast_the_mtbf():
    assert gp.wall_time_per_compute_s(600, 10, 4000, 100, 3600) == math.inf


def test_cost_and_energy_by_hand():
    wall = 54 * 86400.0
    assert gp.cost_usd(16384, 3.24, wall) == pytest.approx(16384 * 3.24 * 1296)     # $68.8M
    assert gp.energy_mwh(16384, 700, wall) == pytest.approx(16384 * 700 * 1296 / 1e6)
    assert gp.cost_usd(8, None, wall) is None


def test_comm_init_grows_linearly_with_devices():
    r = load_run("megascale-12k").restart          # 30 s at 12,288 GPUs, O(n): 5 s at 2,048 (MegaScale sec. 3.5)
    assert gp.comm_init_time_s(r, 2048) == pytest.approx(5.0)
    assert gp.comm_init_time_s(r, 16384) == pytest.approx(40.0)


# ---- the published runs ---------------------------------------------------------------------------------

def test_llama3_405b_on_16k_h100_over_54_days_interruptions_and_effective_time(llama3_plan):
    p = llama3_plan
    assert p.unexpected_interruptions == pytest.approx(419, rel=0.15)
    assert p.planned_interruptions == pytest.approx(47, rel=1e-9)
    assert p.goodput > 0.90                                          # Llama 3 sec. 3.3.4: ">90%"
    assert p.failure_causes["faulty GPU"]["expected"] == pytest.approx(148, rel=1e-9)    # Table 5
    assert p.failure_causes["GPU HBM3 memory"]["expected"] == pytest.approx(72, rel=1e-9)
    assert p.samples["unexpected_interruptions_p50"] == pytest.approx(419, rel=0.15)
    assert p.samples["wall_clock_days_p50"] == pytest.approx(54, rel=0.02)


def test_llama3_checkpoint_is_5_7_tb_and_written_in_under_3_s_at_2_tb_per_s(llama3_plan):
    ck = llama3_plan.checkpoint
    assert ck["bytes"] == pytest.approx(405.85e9 * 14, rel=1e-3)
    assert ck["write_s"] == pytest.approx(ck["bytes"] / 2e12)
    assert 1e6 <= ck["bytes_per_device"] <= 4e9        # Llama 3 sec. 3.3.1: 1 MB-4 GB per GPU
    # Young: sqrt(2 x 2.84 s x 11,135 s) = 251.5 s, rounded to whole 15 s steps
    assert ck["optimal_interval_s"] == pytest.approx(math.sqrt(2 * ck["block_s"] * 11135.08), rel=1e-4)
    assert abs(ck["interval_s"] - ck["optimal_interval_s"]) <= llama3_plan.step.step_time_s / 2


def test_megascale_like_run_restarts_in_the_published_order_of_magnitude(megascale_plan):
    p = megascale_plan
    assert 100 < p.unexpected_interruptions < 1000            # MegaScale sec. 6.3: ">100 restarts", several weeks
    assert p.goodput > 0.90                                   # ETTR >90%
    # catch-up from the latest checkpoint within 15 minutes (sec. 6.3): restart without detection + half a segment
    assert p.restart["planned_s"] + p.checkpoint["interval_s"] / 2 < 900


def test_async_checkpoint_blocks_for_the_device_to_host_copy_only(megascale_plan):
    ck = megascale_plan.checkpoint
    # 2.444 TB / 12,288 devices = 198.9 MB over PCIe Gen4 x16 at 31.5 GB/s x 0.8 = 7.89 ms
    assert ck["block_s"] == pytest.approx(198887150 / (31.5e9 * 0.8), rel=1e-6)
    assert ck["background_s"] == pytest.approx(ck["bytes"] / 12.25e9)
    # the interval is no shorter than the background write (else writes queue)
    assert ck["optimal_interval_s"] == pytest.approx(ck["background_s"])


def test_async_checkpoint_without_a_host_link_names_the_missing_field():
    sc = Scenario.build("llama2-7b", "tpu-v4", 8, 64, seq_len=4096)
    with pytest.raises(SpecError, match="host.link_gb_per_s"):
        gp.plan(sc, 1e9, "megascale-12k")


def test_async_checkpoint_that_overflows_pinned_host_memory_is_a_reason():
    hw = load_hardware("a100-sxm4-80gb")
    small = hw.model_copy(update={"host": hw.host.model_copy(update={"memory_gb": 1.0})})
    sc = Scenario.build("llama2-70b", small, 8, 64, seq_len=4096, tp=8)
    p = gp.plan(sc, 1e9, "megascale-12k")
    assert not p.feasible and any("pinned host memory" in r for r in p.reasons)


def test_tokens_and_days_modes_agree(llama3_plan):
    p = gp.plan(Scenario.build(**LLAMA3), llama3_plan.tokens, "llama3-405b-16k", step=llama3_plan.step)
    assert p.wall_clock_s == pytest.approx(54 * 86400, rel=1e-9)
    assert p.unexpected_interruptions == pytest.approx(llama3_plan.unexpected_interruptions, rel=1e-9)


def test_breakdown_adds_up_to_the_wall_clock(llama3_plan):
    b = llama3_plan.time_breakdown_s
    parts = sum(v for k, v in b.items() if k != "lost_per_failure_first_order")
    assert parts == pytest.approx(llama3_plan.wall_clock_s, rel=1e-9)
    d = llama3_plan.to_dict()
    for key in ("goodput", "unexpected_interruptions", "wall_clock_days", "cost_usd", "energy_mwh", "checkpoint"):
        assert key in d
