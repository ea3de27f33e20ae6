"""Issue 15 phase 2: the MoE / network inputs wired into specs, both engines, the CLI and search. Numbers derived
by hand in the comments (toy specs of tests/conftest.py) or taken from the cited figures."""
from __future__ import annotations

import json

import numpy as np

import pytest

from simulator.analytic.estimate import estimate
from simulator.cli import main
from simulator.errors import SpecError
from simulator.specs.layout import Layout
from simulator.specs.routing import RoutingSpec
from simulator.specs.scenario import Scenario

MOE = ["estimate", "--model", "mixtral-8x7b", "--hardware", "h100-sxm5-80gb", "--devices", "64", "--tp", "2",
       "--ep", "8", "--global-batch", "256", "--seq-len", "4096", "--format", "json"]


def run(args, capsys):
    try:
        code = main(args)
    except SystemExit as e:                  # argparse's own errors (exit 2)
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- step 1: inputs ----------------------------------------------------------------------------------------------

def test_defaults_are_todays_behaviour_and_explicit_defaults_change_nothing(capsys):
    code, out, _ = run(MOE, capsys)
    base = json.loads(out)
    assert code == 0 and base["layout"]["moe_dispatch"] == "flat" and base["training"]["moe_routing"] is None
    code, out, _ = run(MOE + ["--moe-dispatch", "flat", "--dp-compression", "none", "--local-sgd-tau", "1",
                              "--background-occupancy", "0", "--all-to-all-latency", "per-tier"], capsys)
    assert code == 0 and json.loads(out)["step_time_s"] == base["step_time_s"]


def test_routing_flags_build_one_routing_spec(capsys):
    from simulator.cli.common import scenario_keys
    from simulator.cli import build_parser
    p = build_parser()
    args = p.parse_args(MOE[:-2] + ["--moe-routing", "zipf:1.2", "--moe-capacity-factor", "1.25"])
    assert scenario_keys(args)["moe_routing"] == RoutingSpec(model="zipf", skew=1.2, capacity_factor=1.25)
    args = p.parse_args(MOE[:-2] + ["--moe-imbalance", "1.8"])
    assert scenario_keys(args)["moe_routing"] == RoutingSpec(max_over_mean=1.8)


@pytest.mark.parametrize("flags,message", [
    (["--zero", "1", "--dp-compression", "onebit"], "dp_compression 'onebit' needs zero 0"),
    (["--zero", "0", "--local-sgd-tau", "4", "--dp-compression", "onebit"], "choose one"),
    (["--pp", "3", "--schedule", "dualpipe"], "needs an even pp"),
    (["--moe-routing", "pareto:2"], "balanced, zipf:SKEW or dirichlet"),
    (["--moe-imbalance", "0.5"], "must be >= 1"),
])
def test_bad_moe_and_network_inputs_name_the_rule(capsys, flags, message):
    code, _, err = run(MOE + flags, capsys)
    assert code == 2 and message in " ".join(err.split())


def test_scenario_file_keys_reach_the_specs(tmp_path):
    cluster = tmp_path / "two_sites.yaml"
    cluster.write_text("name: two-sites\nsource: test\ngroups: [{name: a, num_devices: 32}, {name: b, "
                       "num_devices: 32}]\nlinks: [{a: a, b: b, latency_ms: 10, bandwidth_gb_per_s: 1}]\n"
                       "default_link: {latency_ms: 0.01, bandwidth_gb_per_s: 50}\n")
    sc_file = tmp_path / "sc.yaml"
    sc_file.write_text("model: mixtral-8x7b\nhardware: h100-sxm5-80gb\ndevices: 64\nglobal_batch: 256\n"
                       "seq_len: 4096\nep: 8\npp: 2\nmoe_dispatch: node-limited\nmoe_max_nodes: 2\n"
                       "moe_routing: {model: dirichlet, skew: 0.5}\nbackground_occupancy: 0.25\n"
                       "cluster: two_sites.yaml\n")
    from simulator.specs.scenario import read_scenario_file
    sc = Scenario.build(**read_scenario_file(str(sc_file)))
    assert sc.layout.moe_dispatch == "node-limited" and sc.layout.moe_max_nodes == 2
    assert sc.training.moe_routing == RoutingSpec(model="dirichlet", skew=0.5)
    assert sc.network.background_occupancy == 0.25 and sc.network.cluster.name == "two-sites"
    # 2 stages of 32 devices fill the groups in order
    assert sc.network.pipeline_groups(2, 32) == ["a", "b"]


def test_layout_rejects_compression_with_zero():
    with pytest.raises(ValueError, match="needs zero 0"):
        Layout(zero=2, local_sgd_tau=8)
    assert Layout(zero=0, dp_compression="onebit").onebit_warmup_fraction == 0.15


# ---- step 2: analytic engine -------------------------------------------------------------------------------------

def toy_moe(layers=2, experts=4, top_k=2):
    from tests.conftest import gpt
    return gpt(name="toy-moe", layers=layers, hidden=512, heads=8, ffn=2048,
               moe=dict(num_experts=experts, top_k=top_k, expert_ffn_hidden_size=1024))


def toy_sizes(devices=2, ep=2, routing=None, **lay):
    """Sizes of a one-row table: toy MoE (h 512, 4 experts of ffn 1024, top-2, not gated), seq 256, b 1, on the toy
    device (100 TFLOP/s at efficiency 1: a GEMM takes 2mkn / 1e14 s; 4-device nodes at 100 GB/s, 10 GB/s
    network, no latency)."""
    from simulator.analytic.estimate import job_of
    from simulator.costs.sizes import sizes
    from simulator.specs.layout_table import LayoutTable
    from tests.conftest import toy_hardware
    sc = Scenario.build(toy_moe(), toy_hardware(), devices, global_batch=devices * 4, seq_len=256, ep=ep,
                        recompute="none", moe_routing=routing, **lay)
    return sz_of(sc), sc


def sz_of(sc):
    from simulator.analytic.estimate import job_of
    from simulator.costs.sizes import sizes
    from simulator.specs.layout_table import LayoutTable
    return sizes(job_of(sc), LayoutTable.from_layouts([sc.layout]))


def test_imbalance_scales_the_busiest_ranks_expert_gemms_by_hand():
    from simulator.costs.layer import expert_gemm_s, layer_costs
    # 256 tokens x ep 2 x top-2 over 4 experts: 256 rows per expert; 2 local experts x (fc1 + fc2) of
    # 2 x 256 x 512 x 1024 FLOPs = 1.073741824e9 FLOPs -> 10.73741824 us at 100 TFLOP/s
    sz, _ = toy_sizes()
    assert float(expert_gemm_s(sz)[0]) == pytest.approx(10.73741824e-6, rel=1e-12)
    base = float(layer_costs(sz).mlp_s[0])
    sz2, _ = toy_sizes(routing=RoutingSpec(max_over_mean=2.0))
    # plus the busiest rank's regrouping of its received copies (token_permute_passes_s): (2 - 1) x 4 k h =
    # 4096 more elements per token x 256 tokens x 2 B = 2097152 B at the toy device's 1 TB/s
    assert float(layer_costs(sz2).mlp_s[0]) - base == pytest.approx(10.73741824e-6 + 2.097152e-6, rel=1e-9)
    # a measured max-over-mean of exactly 1 is today's number, to the last bit
    sz1, _ = toy_sizes(routing=RoutingSpec(max_over_mean=1.0))
    assert float(layer_costs(sz1).mlp_s[0]) == base


def test_capacity_padding_scales_gemms_and_stored_activations_by_ec_over_tk():
    from simulator.costs.layer import layer_costs, mlp_elements
    # capacity factor 1.5: C = ceil(1.5 x 256 x 2 / 4) = 192 per source; E C = 768 rows = 1.5 x T k (512):
    # the expert GEMMs grow by half (5.36870912 us) and so do the routed activations: k ((1 + 1) fe + h) x 0.5 =
    # 2 x 2560 x 0.5 = 2560 more elements per token
    sz, _ = toy_sizes()
    sz2, _ = toy_sizes(routing=RoutingSpec(capacity_factor=1.5))
    assert float(sz2.moe_load.gemm_factor[0]) == 1.5 and float(sz2.moe_load.capacity[0]) == 192
    d = float(layer_costs(sz2).mlp_s[0]) - float(layer_costs(sz).mlp_s[0])
    # plus the regrouping of the padded buffer on the receiving rank: 0.5 x 4 k h = 2048 elements per token x 256
    # tokens x 2 B = 1048576 B at 1 TB/s (token_permute_passes_s)
    assert d == pytest.approx(5.36870912e-6 + 1.048576e-6, rel=1e-9)
    assert float(mlp_elements(sz2).stored_heavy[0]) - float(mlp_elements(sz).stored_heavy) == pytest.approx(2560.0)


def test_busiest_rank_all_to_all_and_strategies_by_hand():
    from simulator.costs.communication import moe_all_to_all_s
    # one rank sends T k h x 2 B = 256 x 2 x 512 x 2 = 524288 B; ep 2 inside a node: half of it over 100 GB/s
    sz, _ = toy_sizes()
    assert float(moe_all_to_all_s(sz)[0]) == pytest.approx(0.5 * 524288 / 100e9, rel=1e-12)
    sz2, _ = toy_sizes(routing=RoutingSpec(max_over_mean=1.5))      # it receives 1.5x: the larger side decides
    assert float(moe_all_to_all_s(sz2)[0]) == pytest.approx(1.5 * 0.5 * 524288 / 100e9, rel=1e-12)
    # ep 8 over two 4-device nodes (8 experts, dp 8), S = 524288 B:
    #   flat: max(3/8 S / 100e9, 4/8 S / 10e9) = 26.2144 us
    #   hierarchical: 3/4 S / 100e9 + 1/2 S / 10e9 + Tutel's 2 re-layouts of 2S at 1 TB/s = 3.93216 + 26.2144 +
    #   2.097152 = 32.243712 us
    #   node-limited, top-2 of 8 experts on 2 nodes: nodes per token 2 (1 - C(4,2)/C(8,2)) = 2 x 22/28, remote
    #   half of them: 11/14 copies of 1024 B per token over 10 GB/s: 256 x 1024 x 11/14 / 1e10 = 20.5970 us;
    #   NVLink 2 copies x 3/4 of 256 x 1024 B / 100e9 = 3.93216 us -> 20.5970 us
    from simulator.specs.model import ModelSpec
    S = 524288.0
    want = {"flat": 0.5 * S / 10e9, "hierarchical": 0.75 * S / 100e9 + 0.5 * S / 10e9 + 4 * S / 1e12,
            "node-limited": 256 * 1024 * 11 / 14 / 10e9}
    for strategy, t in want.items():
        m = toy_moe(experts=8)
        from tests.conftest import toy_hardware
        sc = Scenario.build(m, toy_hardware(), 8, global_batch=32, seq_len=256, ep=8, recompute="none",
                            moe_dispatch=strategy)
        assert float(moe_all_to_all_s(sz_of(sc))[0]) == pytest.approx(t, rel=1e-9), strategy


def test_background_occupancy_slows_the_scale_out_tiers_only():
    # elastic background active half of the time with one flow: 10 GB/s x (0.5 + 0.5/2) = 7.5 GB/s; the node's
    # own 100 GB/s tier is left alone
    sz, _ = toy_sizes(background_occupancy=0.5)
    assert list(sz.tiers.bandwidth_bytes_per_s) == pytest.approx([100e9, 7.5e9])
    sz, _ = toy_sizes(background_occupancy=0.5, background_elastic=False)
    assert list(sz.tiers.bandwidth_bytes_per_s) == pytest.approx([100e9, 5e9])


# ---- step 3: discrete-event engine, per (step, layer) routing draws -------------------------------------------

def test_layer_imbalance_prices_each_draw_against_the_expectation_by_hand():
    import numpy as np
    from simulator.costs.moe_layers import layer_imbalance
    # toy: the expert GEMMs are linear in their rows (efficiency 1): 10.73741824 us per unit of gemm factor; the
    # flat all-to-all (no latency) is linear in its bytes, the larger of send (1) and receive (max-over-mean)
    routing = RoutingSpec(model="dirichlet", skew=1.0)
    sz, _ = toy_sizes(routing=routing)
    m0 = float(sz.moe_load.max_over_mean[0])
    assert m0 > 1.0
    x = layer_imbalance(sz, routing, np.array([1.0, 2.0]))
    assert x.fwd_s == pytest.approx([10.73741824e-6 * (1 - m0), 10.73741824e-6 * (2 - m0)], rel=1e-9)
    assert x.bwd_s == pytest.approx(2 * x.fwd_s) and x.wgrad_s == pytest.approx(x.fwd_s)
    assert x.ep_scale == pytest.approx([1 / m0, 2 / m0], rel=1e-12)


def test_des_replays_one_draw_per_layer_and_step_on_top_of_the_analytic_expectation():
    import numpy as np
    from simulator.costs.communication import layer_comm
    from simulator.costs.layer import layer_costs
    from simulator.costs.moe_layers import sampled_layer_imbalance
    from simulator.des.simulate import simulate
    routing = RoutingSpec(model="zipf", skew=1.0)
    sz, sc = toy_sizes(devices=4, ep=4, routing=routing, overlap_grad_reduce=False, dp_param_gather_overlap=False)
    est = estimate(sc)
    r = simulate(sc, overlap=False, contention=False, samples=1, seed=5)
    # pp 1, nothing overlapped: the replay is the analytic step plus, per micro-batch, every layer's difference
    # from the expected load (compute forward + backward, all-to-all time scaled)
    x = sampled_layer_imbalance(sz, routing, np.random.default_rng([5, 15]), 1)[0]
    comm = layer_comm(sz, layer_costs(sz))
    ep_f, ep_b = float(comm.ep_fwd_s[0]), float(comm.ep_bwd_s[0])
    per_micro = float(np.sum(x.fwd_s + x.bwd_s + (x.ep_scale - 1.0) * (ep_f + ep_b)))
    assert r.step_time_s - est.step_time_s == pytest.approx(est.num_micro_batches * per_micro, rel=1e-9, abs=1e-15)
    assert r.extra["moe_imbalance"]["max_over_mean_mean"] == pytest.approx(float(x.max_over_mean.mean()))


def test_sampled_routing_gives_step_time_percentiles_deterministic_for_a_seed():
    from simulator.des.simulate import simulate
    _, sc = toy_sizes(devices=8, ep=4, routing=RoutingSpec(model="dirichlet", skew=0.3), pp=2)
    a = simulate(sc, samples=9, seed=2)
    b = simulate(sc, samples=9, seed=2)
    pct = a.extra["step_time_percentiles_s"]
    assert pct == b.extra["step_time_percentiles_s"] and pct["min"] < pct["p50"] <= pct["p99"] <= pct["max"]
    # a measured, fixed max-over-mean is not sampled: one replay, the analytic composition with overlap off
    _, fixed = toy_sizes(devices=8, ep=4, routing=RoutingSpec(max_over_mean=1.7), pp=2,
                         overlap_grad_reduce=False, dp_param_gather_overlap=False)
    r = simulate(fixed, overlap=False, contention=False, samples=3)
    assert "moe_imbalance" not in r.extra
    assert r.step_time_s == pytest.approx(estimate(fixed).step_time_s, rel=1e-9)


# ---- step 4: DualPipe and ZB-V in both engines ------------------------------------------------------------------

def _replay_span(name, pp, m, F, B, W, FB=None):
    from simulator.pipeline.two_chunk import (dualpipe, dualpipe_groups, dualpipe_position, makespan_s, timeline,
                                              zb_v, zb_v_position)
    if name == "zb-v":
        return makespan_s(timeline(zb_v(pp, m), zb_v_position, 2 * pp, {"F": F, "B": B, "W": W}))
    return makespan_s(timeline(dualpipe(pp, m), dualpipe_position, pp, {"F": F, "B": B, "W": W},
                               groups=dualpipe_groups(pp, m), group_duration=FB))


@pytest.mark.parametrize("pp,m", [(1, 4), (2, 4), (4, 7), (4, 12), (8, 16)])
def test_zb_v_closed_form_is_the_replayed_span_for_equal_passes(pp, m):
    from simulator.pipeline.closed_form import two_chunk_pipeline_time_s
    # per micro-batch a rank runs two chunk passes of each kind: F = B = W = 2 x 0.7 s; span 6 m t + (p-1) t
    t = 0.7
    got = float(two_chunk_pipeline_time_s(5, pp, m, 2 * t, 2 * t, 2 * t))
    assert got == pytest.approx((6 * m + pp - 1) * t, rel=1e-12)
    assert got == pytest.approx(_replay_span("zb-v", pp, m, t, t, t), rel=1e-12)


def test_zb_v_closed_form_stays_within_4_percent_of_the_replay():
    from simulator.pipeline.closed_form import two_chunk_pipeline_time_s
    worst = 0.0
    for pp, m in ((2, 4), (4, 7), (4, 16), (8, 15), (8, 32)):
        for b in (0.6, 1.0, 1.4, 2.2, 3.0):
            for w in (0.3, 0.8, 1.5):
                pred = float(two_chunk_pipeline_time_s(5, pp, m, 2.0, 2.0 * b, 2.0 * w))
                worst = max(worst, abs(pred / _replay_span("zb-v", pp, m, 1.0, b, w) - 1.0))
    assert worst < 0.04


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 8), (6, 12), (8, 20)])
def test_dualpipe_closed_form_is_work_plus_table_2_bubble(pp, m):
    from simulator.pipeline.closed_form import two_chunk_pipeline_time_s
    # no overlap, F = B = W = 1 (full backward 2, F&B 3): m x 3 of work + (p/2 - 1)(3 + 2 - 3), as replayed
    got = float(two_chunk_pipeline_time_s(4, pp, m, 1.0, 1.0, 1.0))
    assert got == pytest.approx(3 * m + 2 * (pp / 2 - 1)) and got == pytest.approx(_replay_span("dualpipe", pp, m,
                                                                                              1, 1, 1))
    # with overlap (F&B shorter than F + B + W) the closed form bounds the replay from above, within 6%
    for F, B, W, FB in ((1, 1, 1, 2.0), (1, 1.3, 0.8, 2.2), (1.3, 1.7, 1, 3.0)):
        pred = float(two_chunk_pipeline_time_s(4, pp, m, F, B, W, FB))
        span = _replay_span("dualpipe", pp, m, F, B, W, FB)
        assert span <= pred + 1e-9 and pred / span - 1 < 0.06


def test_two_chunk_placements_hold_what_the_papers_say():
    from simulator.costs.stage import rank_kinds
    from simulator.pipeline.closed_form import inflight_microbatches
    from simulator.pipeline.schedules import schedule_ops
    from simulator.pipeline.two_chunk import zb_v
    # 8 layers on pp 2. DualPipe: stages of 4 layers, rank 0 holds stage 0 of one pipeline and stage 1 of the
    # other (8 layers, embedding and output layer: 2x the parameters, DeepSeek-V3 Table 2), runs 4 per micro-batch
    # and the embedding / loss for half of them; ZB-V: 4 stages of 2 layers in a V, rank 0 holds stages 0 and 3
    # (4 layers, embedding and output layer), rank 1 stages 1 and 2 (4 layers, neither)
    for sched, first, last in (("dualpipe", ((4.0, 0.5, 0.5), (8.0, 1.0, 1.0)), ((4.0, 0.5, 0.5), (8.0, 1.0, 1.0))),
                               ("zb-v", ((4.0, 1.0, 1.0), (4.0, 1.0, 1.0)), ((4.0, 0.0, 0.0), (4.0, 0.0, 0.0)))):
        _, sc = toy_sizes(devices=4, ep=1, pp=2, schedule=sched)
        sc = sc.model_copy(update={"model": toy_moe(layers=8)})
        kinds = rank_kinds(sz_of(sc))
        for kind, (run, held) in zip((kinds[0], kinds[2]), (first, last)):
            assert (float(kind.layers[0]), float(np.asarray(kind.embedding).reshape(-1)[0]),
                    float(np.asarray(kind.logits).reshape(-1)[0])) == run
            assert tuple(float(np.asarray(x).reshape(-1)[0]) for x in kind.held()) == held
    # activations in flight: DualPipe p + 1 chunk passes (Table 2), ZB-V p (1F1B's first stage)
    assert float(inflight_microbatches(8, 1, 32, 4, 0)) == 9 and float(inflight_microbatches(8, 1, 32, 5, 0)) == 8
    assert schedule_ops("zb-v", 4, 8) == zb_v(4, 8)


def test_dualpipe_units_hide_the_all_to_alls_under_the_other_chunks_compute():
    from simulator.des.plan import dualpipe_units
    from simulator.des.spec import Seg
    from simulator.pipeline.schedules import Op
    # one unit F0.0 + B1.1 + W1.1: compute 1 + 2 + 1 = 4 s; all-to-alls 0.5 + 1 = 1.5 s hide entirely; with
    # 3 + 3 = 6 s of all-to-all, 2 s stay exposed after the unit's last op; the full backward B0.0 W0.0 hands its
    # input gradient on when its W ends
    ops = (Op("F", 0, 0), Op("B", 0, 1), Op("W", 0, 1), Op("B", 0, 0), Op("W", 0, 0))
    groups = ((0, 1, 2), (3, 4))
    for ep_f, ep_b, exposed in ((0.5, 1.0, 0.0), (3.0, 3.0, 2.0)):
        segs = {("F", 0): (Seg(compute_s=1.0, post=(("ep", ep_f),)),),
                ("B", 1): (Seg(compute_s=2.0, post=(("ep", ep_b),)),),
                ("W", 1): (Seg(compute_s=1.0),), ("B", 0): (Seg(compute_s=2.0, post=(("ep", ep_b),)),),
                ("W", 0): (Seg(compute_s=1.0),)}
        u = dualpipe_units(ops, segs, groups)
        assert u["op_segments"][:3] == (("F", 0, "fb"), ("B", 1, "fb"), ("W", 1, "fb"))
        assert u["op_segments"][3] == ("B", 0)                   # a plain full backward keeps its all-to-alls
        assert segs[("B", 1, "fb")][0].post == () and segs[("B", 1)][0].post == (("ep", ep_b),)
        assert u["op_extra_s"] == pytest.approx((0.0, 0.0, exposed, 0.0, 0.0))
        assert u["send_after"] == (2, 2, 2, 4, 4)


@pytest.mark.parametrize("sched", ["dualpipe", "zb-v"])
def test_two_chunk_schedules_replay_close_to_their_closed_forms(sched):
    from simulator.des.simulate import simulate
    sc = Scenario.build("deepseek-v3", "h100-sxm5-80gb", 512, global_batch=1024, seq_len=4096, tp=1, pp=8, ep=64,
                        schedule=sched, recompute="full", overlap_grad_reduce=False, dp_param_gather_overlap=False)
    est, des = estimate(sc), simulate(sc, overlap=False, contention=False)
    assert est.feasible or sched == "dualpipe"            # DualPipe's 2x parameters: 81 GB on an 80 GB H100
    assert abs(des.step_time_s / est.step_time_s - 1) < 0.04
    one = estimate(Scenario.build("deepseek-v3", "h100-sxm5-80gb", 512, global_batch=1024, seq_len=4096, tp=1, pp=8,
                                  ep=64, recompute="full", overlap_grad_reduce=False, dp_param_gather_overlap=False))
    assert est.step_time_s < one.step_time_s and des.step_time_s < one.step_time_s
    if sched == "dualpipe":
        # its overlapped units hide part of the all-to-all time the 1F1B step exposes
        assert est.time_breakdown_s["ep_comm"] < one.time_breakdown_s["ep_comm"]
        assert des.time_breakdown_s["ep_comm"] < one.time_breakdown_s["ep_comm"]


def test_two_chunk_rules_name_the_micro_batch_count(capsys):
    code, _, err = run(["estimate", "--model", "deepseek-v3", "--hardware", "h100-sxm5-80gb", "--devices", "512",
                        "--global-batch", "256", "--pp", "8", "--ep", "64", "--schedule", "dualpipe", "--format",
                        "json"], capsys)
    assert code == 3 and "even micro-batch count (4, both directions) of at least 2 x pp = 16" in err


# ---- step 5: 1-bit compression and local SGD ---------------------------------------------------------------------

def dense_sizes(**lay):
    """Toy dense GPT (4 layers, h 512) data parallel over 8 toy devices (two 4-device nodes), ZeRO 0."""
    from tests.conftest import gpt, toy_hardware
    sc = Scenario.build(gpt(), toy_hardware(), 8, global_batch=8, seq_len=256, zero=0, recompute="none",
                        overlap_grad_reduce=False, dp_param_gather_overlap=False, **lay)
    return sz_of(sc), sc


def test_one_bit_adam_averages_its_warm_up_and_its_compressed_steps_by_hand():
    from simulator.costs.communication import dp_comm_times
    from simulator.costs.params import rank_params
    from simulator.costs.stage import rank_kinds
    sz, sc = dense_sizes(dp_compression="onebit", onebit_warmup_fraction=0.25)
    P = float(rank_params(sz, *rank_kinds(sz)[0].held())[0][0])
    # fp32 gradients over dp 8 on two nodes (no latency): ring all-reduce 2 (3/4 G / 100e9 + 1/2 (G/4) / 10e9)
    G = 4.0 * P
    ar = 2 * (0.75 * G / 100e9 + 0.5 * G / 4 / 10e9)
    assert float(dp_comm_times(sz, np.array([P]), np.array([0.0]))[0][0]) == pytest.approx(ar, rel=1e-12)
    # compressed: all-to-all of the signs S = P/8 + 8 x 4 B of scales, max(3/8 S / 100e9, 4/8 S / 10e9), then
    # their all-gather 3/4 S / 100e9 + 1/2 (S/4) / 10e9; compression passes 32 B x P at 1 TB/s
    S = P / 8 + 32.0
    stage = 0.5 * S / 10e9 + 0.75 * S / 100e9 + 0.5 * S / 4 / 10e9 + 32 * P / 1e12
    est = estimate(sc)
    assert est.time_breakdown_s["dp_comm"] == pytest.approx(0.25 * ar + 0.75 * stage, rel=1e-9)
    # the error-feedback buffer: 4 more bytes per parameter of optimizer state
    base = estimate(dense_sizes()[1]).memory_bytes["optimizer_bytes"]
    assert est.memory_bytes["optimizer_bytes"] - base == pytest.approx(4.0 * P)


def test_local_sgd_exposes_what_tau_inner_steps_cannot_hide():
    from simulator.costs.communication import LOCAL_SGD_OUTER_BYTES_PER_PARAM, dp_comm_times
    from simulator.costs.params import rank_params
    from simulator.costs.stage import rank_kinds
    for tau in (2, 64):
        sz, sc = dense_sizes(local_sgd_tau=tau)
        P = float(rank_params(sz, *rank_kinds(sz)[0].held())[0][0])
        ar = float(dp_comm_times(sz, np.array([P]), np.array([0.0]))[0][0])
        est = estimate(sc)
        inner = est.step_time_s - est.time_breakdown_s["dp_comm"]
        outer = LOCAL_SGD_OUTER_BYTES_PER_PARAM * P / 1e12          # memory bound at 1 TB/s
        want = (max(0.0, ar - tau * inner) + outer) / tau
        assert est.time_breakdown_s["dp_comm"] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("lay", [dict(dp_compression="onebit"), dict(local_sgd_tau=4)])
def test_des_charges_compressed_and_local_sgd_like_the_analytic_engine(lay):
    from simulator.des.simulate import simulate
    _, sc = dense_sizes(**lay)
    r = simulate(sc, overlap=False, contention=False)
    assert r.step_time_s == pytest.approx(estimate(sc).step_time_s, rel=1e-9)
    assert r.time_breakdown_s["dp_comm"] == pytest.approx(estimate(sc).time_breakdown_s["dp_comm"], rel=1e-9)
    if "dp_compression" in lay:
        assert r.extra["onebit"]["compressed_step_s"] < r.extra["onebit"]["warmup_step_s"]


def test_search_enumerates_dispatch_and_dp_synchronisation_where_they_apply():
    from simulator.planning.enumerate import SearchSpace, enumerate_layouts
    from simulator.specs.training import TrainingSpec
    t = enumerate_layouts(toy_moe(), TrainingSpec(seq_len=256, global_batch=64), 8,
                          SearchSpace(moe_dispatch=["flat", "node-limited"], dp_compression=["none", "onebit"],
                                      local_sgd_tau=[1, 8], schedule=["1f1b", "dualpipe", "zb-v"]))
    assert set(np.unique(t.moe_dispatch[t.ep > 1])) == {0, 2} and set(np.unique(t.moe_dispatch[t.ep == 1])) == {0}
    sync = (t.dp_compression > 0) | (t.local_sgd_tau > 1)
    assert sync.any() and (t.zero[sync] == 0).all() and (t.dp[sync] > 1).all()
    assert not ((t.dp_compression > 0) & (t.local_sgd_tau > 1)).any()
    assert {4, 5} <= set(np.unique(t.schedule[t.pp > 1]))


def test_compare_over_a_slow_network_picks_local_sgd_or_compression_and_says_so():
    from simulator.planning.compare import compare
    from simulator.specs.loading import load_hardware
    cons = {"dp_compression": ["none", "onebit"], "tp": [1], "pp": [1]}
    slow = load_hardware("a100-sxm4-80gb", overrides={"scaleout_gb_per_s": 0.5})     # 4 Gb/s per GPU
    r = compare("megatron-1.7b", [slow], devices=32, global_batch=256, seq_len=2048, constraints=cons)
    assert "onebit compression" in r.frame["layout"][0]
    assert r.notes[0].startswith("a100-sxm4-80gb: picked 1-bit compression of the gradients (1-bit Adam)")
    r = compare("megatron-1.7b", [slow], devices=32, global_batch=256, seq_len=2048,
                constraints={**cons, "local_sgd_tau": [1, 8]})
    assert "local SGD tau 8" in r.frame["layout"][0] and "picked local SGD with tau 8 (CO2)" in r.notes[0]
    # on the profile's own 25 GB/s per GPU the plain all-reduce with ZeRO wins and nothing is said
    fast = compare("megatron-1.7b", ["a100-sxm4-80gb"], devices=32, global_batch=256, seq_len=2048,
                   constraints={**cons, "local_sgd_tau": [1, 8]})
    assert "compression" not in fast.frame["layout"][0] and not fast.notes[0].startswith("a100")


def test_search_chooses_dispatch_and_schedule_for_an_moe_model(capsys):
    code, out, _ = run(["search", "--model", "deepseek-v3", "--hardware", "h100-sxm5-80gb", "--devices", "512",
                        "--global-batch", "1024", "--seq-len", "4096", "--tp", "2", "--pp", "2", "--ep", "64,128",
                        "--schedule", "1f1b,dualpipe", "--moe-dispatch", "flat,hierarchical,node-limited",
                        "--moe-max-nodes", "4", "--format", "json"], capsys)
    best = json.loads(out)["candidates"][0]
    assert code == 0 and best["schedule"] == "dualpipe" and best["moe_dispatch"] == "node-limited"


# ---- step 6: heterogeneous and shared networks -------------------------------------------------------------------

def test_two_jobs_sharing_a_port_follow_the_hand_drawn_timeline():
    # Job A: forward 0.5 s, backward 0.5 s, then a 2 s gradient bucket; job B: 0.25 + 0.25 s, then a 2 s bucket;
    # both buckets on the same port (processor sharing). B's bucket runs alone 0.5-1.0 s (0.5 s done), both share
    # from 1.0 s at half speed: B's remaining 1.5 s take 3 s (ends 4.0), A has done 1.5 s by then and finishes its
    # last 0.5 s alone at 4.5 s. Alone they take 3.0 s and 2.5 s: the first job is slowed 1.5x.
    from dataclasses import replace
    from simulator.des.engine import Bucket, EngineSpec, Seg, StageSpec, replay_together, simulate_spec
    from simulator.pipeline.schedules import gpipe

    def job(t):
        st = StageSpec(ops=gpipe(1, 1)[0], segments={("F", 0): (Seg(compute_s=t),), ("B", 0): (Seg(compute_s=t),)},
                       buckets=(Bucket(reduce_s=2.0, trigger=("B", 0, 0)),))
        return EngineSpec(pp=1, vpp=1, num_micro=1, stages=(st,), overlap=True, contention=True,
                          tier_shares={"dp": ((1, 1.0),)})

    a, b = job(0.5), job(0.25)
    ra, rb = replay_together([a, b], {(0, 0, 0, 1): "nic", (1, 0, 0, 1): "nic"})
    spans = lambda r: [(s.stream, s.name, s.start_s, s.end_s) for s in r.timeline.spans]  # noqa: E731
    assert spans(ra) == [("compute", "F0", 0.0, 0.5), ("compute", "B0", 0.5, 1.0), ("dp", "reduce ", 1.0, 4.5)]
    assert spans(rb) == [("compute", "F0", 0.0, 0.25), ("compute", "B0", 0.25, 0.5), ("dp", "reduce ", 0.5, 4.0)]
    assert (ra.step_time_s, rb.step_time_s) == (4.5, 4.0)
    alone = simulate_spec(replace(a, contention=False)).step_time_s
    assert alone == 3.0 and ra.step_time_s / alone == 1.5


def test_pipeline_sends_cross_the_links_of_a_heterogeneous_cluster():
    from simulator.des.simulate import simulate
    from simulator.specs.network import HeterogeneousCluster, NetworkConditions
    from tests.conftest import floor_only_framework, gpt, toy_hardware
    c = HeterogeneousCluster(name="two-sites", source="test", groups=[{"name": "a", "num_devices": 4},
                                                                      {"name": "b", "num_devices": 4}],
                             links=[{"a": "a", "b": "b", "latency_ms": 10.0, "bandwidth_gb_per_s": 1.0}])
    sc = Scenario.build(gpt(), toy_hardware(), 8, global_batch=8, seq_len=256, pp=2, recompute="none",
                        framework=floor_only_framework())    # no launch time: the toy step stays microseconds
    sc = sc.model_copy(update={"network": NetworkConditions(cluster=c)})
    r = simulate(sc, overlap=True, contention=False)
    # one activation [1, 256, 512] in 2 B = 262,144 B over the a-b link: 10 ms + 262144 / 1e9 s
    hop = 10e-3 + 262144 / 1e9
    sends = [s.end_s - s.start_s for s in r.timeline.spans if s.stream == "pp"]
    assert len(sends) == 2 * r.num_micro_batches and sends == pytest.approx([hop] * len(sends))
    assert r.to_dict()["network"]["cluster"] == {"name": "two-sites", "groups": ["a", "b"]}
    assert r.step_time_s > 2 * hop > 20 * estimate(sc).step_time_s     # the analytic engine stays on the profile


@pytest.mark.parametrize("engine", ["analytic", "des"])
def test_background_occupancy_is_reported_as_the_jobs_slowdown(engine):
    from simulator.des.simulate import simulate
    run_ = estimate if engine == "analytic" else (lambda s: simulate(s, overlap=False, contention=False))
    _, shared = dense_sizes(background_occupancy=0.5, background_elastic=False)
    _, alone = dense_sizes()
    r, r0 = run_(shared), run_(alone)
    # the gradient all-reduce's network level runs at half the bandwidth: 2 x 1/2 (G/4) / 5e9 instead of / 10e9
    bg = r.to_dict()["background"]
    assert bg["dedicated_step_time_s"] == pytest.approx(r0.step_time_s, rel=1e-12)
    assert bg["slowdown"] == pytest.approx(r.step_time_s / r0.step_time_s) and bg["slowdown"] > 1.0
    d_dp = r.time_breakdown_s["dp_comm"] - r0.time_breakdown_s["dp_comm"]
    from simulator.costs.params import rank_params
    from simulator.costs.stage import rank_kinds
    sz, _ = dense_sizes()
    G = 4.0 * float(rank_params(sz, *rank_kinds(sz)[0].held())[0][0])
    assert d_dp == pytest.approx(2 * 0.5 * G / 4 / 5e9 - 2 * 0.5 * G / 4 / 10e9, rel=1e-9)


@pytest.mark.parametrize("ep, dispatch, elements", [
    (2, "flat", 2 * 512 + 6 * 2 * 512),      # permute h + k h, unpermute k h + h, regroup 2 k h each way
    (2, "node-limited", 4 * 2 * 512),        # flex: permute and unpermute of the received copies only
    (1, "flat", 2 * 512 + 2 * 2 * 512),      # one rank holds every expert: no regroup
])
def test_token_permutations_move_the_elements_counted_by_hand(ep, dispatch, elements):
    from simulator.costs.layer import token_permute_passes_s
    sz, _ = toy_sizes(devices=2, ep=ep, moe_dispatch=dispatch)
    f, b, w = token_permute_passes_s(sz)
    # 256 tokens x elements x 2 B at the toy device's 1 TB/s; the backward moves the same, no weight gradient
    assert float(np.ravel(f)[0]) == pytest.approx(256 * elements * 2 / 1e12, rel=1e-12)
    assert float(np.ravel(b)[0]) == pytest.approx(float(np.ravel(f)[0]), rel=1e-12)
    assert w == 0.0


@pytest.mark.parametrize("groups, rows, tm, factor", [
    (256, 768, 512, (384 + 255) * 512 / 196608),    # DeepSeek-V3 on v5p: 6 x 4096 tokens x top-8 over 256 experts
    (8, 12288, 512, (192 + 7) / 192),               # 8 large groups: 7 boundary tiles on 192
    (1, 1000, 512, 1024 / 1000),                    # one group: the last tile is partial
    (4, 256, None, 1.0),                            # no tile-visit kernel (cuBLAS/CUTLASS grouped GEMMs)
])
def test_grouped_tile_visits_count_one_tile_per_group_boundary(groups, rows, tm, factor):
    from types import SimpleNamespace
    from simulator.costs.layer import grouped_tile_visit_factor
    moe = SimpleNamespace(dispatch="permute", grouped_gemm_tile_rows=tm)
    sz = SimpleNamespace(framework=SimpleNamespace(moe=moe))
    assert float(grouped_tile_visit_factor(sz, groups, rows)) == pytest.approx(factor, rel=1e-12)


def test_maxtext_megablox_prices_its_tile_visits_and_megatron_does_not():
    from simulator.specs.frameworks_loading import framework_for_run
    assert framework_for_run("maxtext", 2025).moe.grouped_gemm_tile_rows == 512
    assert framework_for_run("megatron-core", 2025).moe.grouped_gemm_tile_rows is None


def test_maxtext_permute_sorts_the_whole_tp_groups_tokens_on_every_tp_rank():
    """MaxText sparse_matmul takes the tokens replicated over 'tensor' (moe.permute_gathered_over_tp): the permute
    reads and writes the TP group's M tokens (h + k h elements each) on every rank, the unpermute the scattered
    h/tp columns of the M k copies (k h + h over tp); Megatron-Core with SP does both on M/tp tokens."""
    from dataclasses import replace
    from simulator.costs.layer import token_permute_passes_s
    from simulator.specs.frameworks_loading import framework_for_run
    sz, _ = toy_sizes(devices=2, ep=1, tp=2, sequence_parallel=True)
    M, h, k = float(np.ravel(sz.tokens)[0]), 512, 2
    base = float(np.ravel(token_permute_passes_s(sz)[0])[0])
    assert base == pytest.approx(M / 2 * ((h + k * h) + (k * h + h)) * 2 / 1e12, rel=1e-12)
    fw = sz.framework
    on = replace(sz, framework=fw.model_copy(update={"moe": fw.moe.model_copy(update={"permute_gathered_over_tp": True})}))
    got = float(np.ravel(token_permute_passes_s(on)[0])[0])
    assert got == pytest.approx((M * (h + k * h) + M / 2 * (k * h + h)) * 2 / 1e12, rel=1e-12)
    assert framework_for_run("maxtext", 2025).moe.permute_gathered_over_tp
    assert not framework_for_run("megatron-core", 2025).moe.permute_gathered_over_tp


def test_splash_attention_backward_runs_seven_matmuls_unless_the_recipe_fuses_it():
    """MaxText's splash attention without its fused backward (sa_use_fused_bwd_kernel False, base.yml default) runs
    a dK/dV kernel (QK^T, P^T dO, dO V^T, dS^T Q) and a dQ kernel (QK^T, dO V^T, dS K): 7 matmuls over the forward's
    2 = 3.5; a recipe that sets it True runs FlashAttention-2's 5 (2.5), as Megatron's kernels do."""
    from types import SimpleNamespace
    from simulator.costs.layer import FLASH_BWD_OVER_FWD, attention_bwd_over_fwd
    from simulator.specs.frameworks_loading import framework_for_run
    from simulator.validation.rows import attention_bwd_override
    mt = framework_for_run("maxtext", 2025)
    assert attention_bwd_over_fwd(SimpleNamespace(framework=mt, attention_kernel="xla-splash")) == (4 + 3) / 2
    assert attention_bwd_over_fwd(SimpleNamespace(framework=mt, attention_kernel="triton")) == FLASH_BWD_OVER_FWD
    mc = framework_for_run("megatron-core", 2025)
    assert attention_bwd_over_fwd(SimpleNamespace(framework=mc, attention_kernel=mc.attention.kernel)) == 5 / 2
    fused, why = attention_bwd_override(mt, "The same config sets sa_use_fused_bwd_kernel True (fused backward).")
    assert attention_bwd_over_fwd(SimpleNamespace(framework=fused, attention_kernel="xla-splash")) == 2.5
    assert why and why[0][0] == "attention_bwd"
    assert attention_bwd_override(mt, "sa_use_fused_bwd_kernel False") == (mt, ())


def test_attention_backward_ratio_outside_its_range_is_refused():
    from simulator.specs.frameworks_loading import framework_for_run
    att = framework_for_run("maxtext", 2025).attention
    with pytest.raises(Exception, match="bwd_over_fwd_by_kernel"):
        type(att)(**{**att.model_dump(), "bwd_over_fwd_by_kernel": {"xla-splash": 9.0}})
