"""ZeRO-3 with prefetch, derived by hand: the discrete-event engine's timeline and the analytic engine's closed form
(costs.communication.zero3_step_exposed_s) on tiny cases, and the two whole engines on GPT-3 175B with few
micro-batches (issue 14: the analytic engine was 31-34% below the replay there)."""
from __future__ import annotations

import pytest

from simulator.analytic.estimate import estimate
from simulator.costs.communication import zero3_step_exposed_s
from simulator.des.api import simulate
from simulator.des.engine import EngineSpec, Seg, StageSpec, simulate_spec
from simulator.pipeline.schedules import one_f_one_b
from simulator.specs.scenario import Scenario

G, R, F, B = 2.0, 2.0, 1.0, 2.0      # gather, reduce-scatter, forward and backward compute per layer (seconds)


def two_stage_spec() -> EngineSpec:
    """pp 2, one micro-batch, two layers per stage, every layer gathered before each pass (prefetched) and its
    gradients reduce-scattered after its backward; no port sharing (contention off), no other cost."""
    stages = []
    for r, sched in enumerate(one_f_one_b(2, 1)):
        layers = (2 * r, 2 * r + 1)
        fwd = tuple(Seg(compute_s=F, gather_s=G, label=f"layer {l}") for l in layers)
        bwd = tuple(Seg(compute_s=B, gather_s=G, reduce_s=R, label=f"layer {l}") for l in reversed(layers))
        stages.append(StageSpec(ops=sched, segments={("F", 0): fwd, ("B", 0): bwd}))
    return EngineSpec(pp=2, vpp=1, num_micro=1, stages=tuple(stages), overlap=True, contention=False)


def test_two_stage_timeline_by_hand_takes_19s():
    """Stage 0 gathers layer 0 in [0, 2] (nothing to hide it), computes it in [2, 3] while layer 1's gather runs
    [2, 4], computes layer 1 in [4, 5]; its backward gather of layer 1 runs [4, 6] in the idle time. Stage 1
    gathered layer 2 at [0, 2], gets the activation at 5: layer 2 [5, 6], layer 3's gather [5, 7], layer 3
    [7, 8]; its backward's first gather [7, 9] (beside layer 3's forward, 1 s exposed), B3 [9, 11] beside the
    gather of layer 2 [9, 11], B2 [11, 13] beside the reduce-scatter of 3 [11, 13], that of 2 [13, 15]. Stage 0:
    B1 [13, 15] beside the gather of layer 0 [13, 15], B0 [15, 17] beside the reduce-scatter of 1, that of 0
    [17, 19]. Step 19 = 12 of compute on the critical path + 7 exposed (2 first gather, 1 + 1 forward, 1 backward,
    2 last reduce-scatter)."""
    res = simulate_spec(two_stage_spec())
    assert res.step_time_s == pytest.approx(19.0)
    ends = {(s.stage, s.name): (s.start_s, s.end_s) for s in res.timeline.spans if s.stream == "compute"}
    assert ends[(1, "B0")] == pytest.approx((8.0, 13.0))     # the op's span includes its 1 s wait for the gather
    assert ends[(0, "B0")] == pytest.approx((13.0, 17.0))


def test_closed_form_matches_the_two_stage_timeline():
    # per-layer windows F and B, 2 layers, m = 1, one fill pair (p - 1 = 1), one backward gather per layer
    exposed = zero3_step_exposed_s(G, R, F, B, 2, 1, 1.0, 1.0, True)
    assert float(exposed) == pytest.approx(7.0)
    # the form before issue 14 (exposures counted m times, every pass's first gather exposed, reduce-scatters
    # on the backward's critical path): 2 x 1 + 2 + 2 x (2 + 2 - 2) + 2 = 10, i.e. 22 s instead of 19
    old = 2 * max(0.0, G - F) + G + 2 * max(0.0, G + R - B) + G
    assert 12.0 + old == 22.0


def test_closed_form_one_stage_four_layers_with_a_shared_port():
    """One stage, one micro-batch, four layers; the gather and reduce-scatter streams share one port (each at
    half speed while both run). Forward: gather 1 [0, 2], F1 [2, 3], F2 [4, 5], F3 [6, 7], F4 [8, 9] (each
    gather 2 beside a 1 s layer): 5 exposed. Backward: G(B4) [8, 10] beside F4 (1 exposed), G(B3) [10, 12] beside
    B4 [10, 12]; G(B2) and RS4 start at 12 together and both end at 16 (B3 [12, 14], 2 exposed); G(B1) and RS3 share
    [16, 20] (B2 [16, 18], 2 exposed); B1 [20, 22]; RS2 [20, 22], RS1 [22, 24]. Step 24 = 12 compute + 12."""
    assert float(zero3_step_exposed_s(G, R, F, B, 4, 1, 0.0, 1.0, True)) == pytest.approx(12.0)


def test_without_prefetch_every_collective_blocks_every_pass_on_the_critical_path():
    # (m + p - 1) x nl x (gather + backward gather + reduce-scatter) = 2 x 2 x 6
    assert float(zero3_step_exposed_s(G, R, F, B, 2, 1, 1.0, 1.0, False)) == pytest.approx(24.0)


#: the issue's case: GPT-3 175B, 128 H100, tp 8, pp 8, dp 2, ZeRO-3 with overlap, m = 2 (then 8 and 32)
GPT3_ZERO3 = dict(model="gpt3-175b", hardware="h100-sxm5-80gb", devices=128, tp=8, pp=8, zero=3, micro_batch=1,
                  seq_len=2048)


@pytest.mark.parametrize("global_batch", [4, 16])
def test_engines_agree_within_3_percent_on_gpt3_zero3_with_few_micro_batches(global_batch):
    """Was -33.6% (m = 2) and -13.5% (m = 8): the analytic engine counted the exposed gathers m times instead of
    on every pass of the critical path, and the reduce-scatters on the backward's critical path."""
    sc = Scenario.build(**GPT3_ZERO3, global_batch=global_batch)
    a, d = estimate(sc), simulate(sc)
    assert a.step_time_s == pytest.approx(d.step_time_s, rel=0.03)
    assert a.time_breakdown_s["dp_comm"] == pytest.approx(d.time_breakdown_s["dp_comm"], rel=0.05)


def one_stage_spec(reduce_blocks: bool) -> EngineSpec:
    """pp 1, one micro-batch, four layers, every layer gathered ahead of each pass (prefetched); the reduce-scatter
    of each layer's gradients either queued beside the next layer's backward or blocking after its own (XLA:TPU
    without SparseCore/continuation-fusion all-reduce); no port sharing (contention off)."""
    fwd = tuple(Seg(compute_s=F, gather_s=G, label=f"layer {l}") for l in range(4))
    if reduce_blocks:
        bwd = tuple(Seg(compute_s=B, gather_s=G, post=(("dp", R),), label=f"layer {l}") for l in reversed(range(4)))
    else:
        bwd = tuple(Seg(compute_s=B, gather_s=G, reduce_s=R, label=f"layer {l}") for l in reversed(range(4)))
    stage = StageSpec(ops=one_f_one_b(1, 1)[0], segments={("F", 0): fwd, ("B", 0): bwd})
    return EngineSpec(pp=1, vpp=1, num_micro=1, stages=(stage,), overlap=True, contention=False)


def test_blocking_reduce_scatters_by_hand_take_26s():
    """Forward as above: gather 1 [0, 2], F1 [2, 3], F2 [4, 5], F3 [6, 7], F4 [8, 9] (5 exposed). Backward: G(B4)
    [8, 10] (1 exposed), B4 [10, 12], RS4 [12, 14] on the critical path; G(B3) [10, 12] beside B4, B3 [14, 16],
    RS3 [16, 18]; G(B2) [14, 16], B2 [18, 20], RS2 [20, 22]; G(B1) [18, 20], B1 [22, 24], RS1 [24, 26]. Step 26 =
    12 compute + 2 first gather + 3 forward + 1 backward + 4 x 2 reduce-scatters; the closed form gives the same."""
    assert simulate_spec(one_stage_spec(True)).step_time_s == pytest.approx(26.0)
    assert float(zero3_step_exposed_s(G, R, F, B, 4, 1, 0.0, 1.0, True, reduce_blocks=True)) == pytest.approx(14.0)
    # with queued reduce-scatters and no port sharing the backward's gathers and reduce-scatters run side by
    # side: B4 [10, 12], B3 [12, 14], B2 [14, 16], B1 [16, 18], RS1 [18, 20]: 20
    assert simulate_spec(one_stage_spec(False)).step_time_s == pytest.approx(20.0)


def test_maxtext_blocks_the_reduce_scatter_on_tpu_only_and_sparsecore_offload_lifts_it():
    """MaxText's preset: the FSDP gradient reduction blocks on TPU (no SparseCore / continuation-fusion all-reduce
    by default), not on GPUs; a row whose recipe notes state the SparseCore all-reduce offload runs it beside
    compute (validation.rows.grad_reduce_override)."""
    from simulator.specs.frameworks_loading import framework_for_run
    from simulator.validation.rows import grad_reduce_override
    fw = framework_for_run("maxtext", 2025)
    assert fw.overlap.zero3_reduce_blocking_families == ("tpu",)
    off, applied = grad_reduce_override(fw, "... with SparseCore offload of the all-reduce (ENABLE_...)", "tpu")
    assert off.overlap.zero3_reduce_blocking_families == () and applied[0][:2] == ("zero3_reduce_overlap", True)
    same, none = grad_reduce_override(fw, "no SparseCore offload of any collective; no sparsecore offload of "
                                          "all-reduce", "tpu")
    assert same is fw and none == ()
    assert grad_reduce_override(fw, "SparseCore offload of all-reduce", "nvidia-hopper") == (fw, ())


def test_blocking_reduce_scatter_engines_agree_on_a_tpu_fsdp_layout():
    """One v6e-256 slice, Llama 2 7B under MaxText-like FSDP: both engines add the same per-layer blocking
    reduce-scatters (within 3%), and the blocking form is slower than the queued one."""
    from simulator.specs.frameworks_loading import framework_for_run
    fw = framework_for_run("maxtext", 2025)
    sc = Scenario.build(model="llama2-7b", hardware="tpu-v6e", devices=256, tp=1, pp=1, zero=3, micro_batch=1,
                        global_batch=256, seq_len=4096, framework=fw)
    a, d = estimate(sc), simulate(sc)
    assert d.step_time_s == pytest.approx(a.step_time_s, rel=0.03)
    fw_q = fw.model_copy(update={"overlap": fw.overlap.model_copy(update={"zero3_reduce_blocking_families": ()})})
    q = estimate(Scenario.build(model="llama2-7b", hardware="tpu-v6e", devices=256, tp=1, pp=1, zero=3,
                                micro_batch=1, global_batch=256, seq_len=4096, framework=fw_q))
    assert a.step_time_s > q.step_time_s


def test_gradient_all_reduce_without_the_reduce_scatter_fusion_flags():
    """A MaxText recipe without the reduce-scatter fusion flag groups all-reduces its FSDP gradients (then slices):
    the row override sets it from the notes only, both engines charge the blocking reduction twice (an all-reduce
    is two phases of a reduce-scatter's bytes) and agree within 3%."""
    from simulator.specs.frameworks_loading import framework_for_run
    from simulator.validation.rows import grad_all_reduce_override
    fw = framework_for_run("maxtext", 2025)
    assert fw.overlap.zero3_reduce_all_reduce is False
    ar_fw, applied = grad_all_reduce_override(fw, "... FSDP gradients reduced by all-reduce + dynamic-slice.")
    assert ar_fw.overlap.zero3_reduce_all_reduce and applied[0][:2] == ("zero3_reduce", "all-reduce")
    assert grad_all_reduce_override(fw, "LAYOUT_FOR_ALL_REDUCE_SCATTER, CF_FOR_ALL_GATHER") == (fw, ())

    def build(f):
        return Scenario.build(model="llama2-7b", hardware="tpu-v6e", devices=256, tp=1, pp=1, zero=3,
                              micro_batch=1, global_batch=256, seq_len=4096, framework=f)
    rs, ar = estimate(build(fw)), estimate(build(ar_fw))
    assert ar.time_breakdown_s["dp_comm"] == pytest.approx(2.0 * rs.time_breakdown_s["dp_comm"], rel=0.02)
    assert simulate(build(ar_fw)).step_time_s == pytest.approx(ar.step_time_s, rel=0.03)
    assert simulate(build(ar_fw)).step_time_s > simulate(build(fw)).step_time_s
