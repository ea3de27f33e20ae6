"""Seed checks of issue 15 (MoE and networks): published figures vs this project's predictions, with the
assumptions stated. Figures and conditions: ../shared/reference/seed_claims.md sections 3, 5 and 6.

    python benchmarks/seed_checks_moe.py

Prints one block per check: the published figure, the prediction, the tolerance, PASS/FAIL, and the assumptions
the prediction rests on. The engines compute the steps (routing imbalance through training.moe_routing, the DES
with one draw per layer and step); the 1-bit Adam and CO2 blocks use the cost functions the engines use
(costs.compression, topology.collectives) on the papers' own two-tier networks and measured compute times, which
no hardware profile describes; each block says which.
"""
from __future__ import annotations

import numpy as np

from simulator.analytic.estimate import estimate
from simulator.costs import compression as cmp
from simulator.costs.moe_routing import max_over_mean
from simulator.des.simulate import simulate
from simulator.specs.model import ModelSpec
from simulator.specs.routing import RoutingSpec
from simulator.specs.scenario import Scenario
from simulator.topology.collectives import all_reduce_time_s
from simulator.topology.placement import TierArrays


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ---- Hecate (arXiv 2502.02581): imbalanced vs balanced expert parallelism on Cluster A ----------------------

GPT_MOE_S = ModelSpec(
    name="gpt-moe-s", source="Hecate arXiv 2502.02581 Table 1 (d 768, seq 2048, 12 layers, 64 experts, 1.84B; "
    "expert FFN = 2 x d_model; GShard top-2)", num_layers=12, hidden_size=768, num_heads=12, ffn_hidden_size=1536,
    vocab_size=51200, max_seq_len=2048, moe=dict(num_experts=64, top_k=2, expert_ffn_hidden_size=1536))


def hecate_scenario(micro_batch: int) -> Scenario:
    # Cluster A: 4 x p3dn.24xlarge (8 V100-32GB, NVLink), 100 Gb/s between nodes = 1.5625 GB/s per GPU
    return Scenario.build(GPT_MOE_S, "v100-sxm2-32gb", 32, global_batch=32 * micro_batch, seq_len=2048,
                          hardware_overrides={"scaleout_gb_per_s": 100 / 8 / 8}, tp=1, pp=1, ep=32,
                          micro_batch=micro_batch, dtype="fp16", recompute="none", zero=0)


def with_routing(sc: Scenario, routing: RoutingSpec) -> Scenario:
    """The scenario with a routing model (training.moe_routing): the engines price the busiest expert rank."""
    return sc.model_copy(update={"training": sc.training.model_copy(update={"moe_routing": routing})})


def check_hecate() -> None:
    print("== Hecate: imbalanced vs balanced EP slowdown, Cluster A (4 x 8 V100, 100 Gb/s), GPT-MoE-S ==")
    print("published: training slows down up to 5.18x under imbalanced expert loads vs balanced (Hecate sec. 1);"
          " per-layer EP vs balanced speed-ups 2.8-18.8x, geo-mean 11.87x (Cluster B, Fig. 11)")
    for mb in (1, 2, 4):
        sc = hecate_scenario(mb)
        base = estimate(sc).step_time_s
        r0 = estimate(sc)
        rows = []
        for label, spec in (("zipf 0.5", RoutingSpec(model="zipf", skew=0.5)),
                            ("zipf 1.0", RoutingSpec(model="zipf", skew=1.0)),
                            ("dirichlet 0.3", RoutingSpec(model="dirichlet", skew=0.3)),
                            ("dirichlet 0.1", RoutingSpec(model="dirichlet", skew=0.1))):
            mom = max_over_mean(spec, 64, 32, mb * 2048, 2)
            rows.append(f"{label}: max/mean {mom:.2f} -> {estimate(with_routing(sc, spec)).step_time_s / base:.2f}x")
        grid = np.linspace(1.0, 32.0, 125)
        slows = np.array([estimate(with_routing(sc, RoutingSpec(max_over_mean=g))).step_time_s / base for g in grid])
        need = grid[np.argmax(slows >= 5.18)] if slows[-1] >= 5.18 else float("nan")
        print(f"  micro-batch {mb}: balanced step {base * 1e3:.1f} ms (EP all-to-all "
              f"{r0.time_breakdown_s['ep_comm'] / base:.0%}); " + "; ".join(rows))
        print(f"    5.18x needs max/mean {need:.2f} (of at most 32: all copies on one GPU); max possible "
              f"slowdown {slows[-1]:.1f}x")
        if mb == 2:
            ok = 1.0 < 5.18 <= slows[-1] and need <= 18.8
            print(f"  check (micro-batch 2): 5.18x lies inside the predicted range [1, {slows[-1]:.1f}]x and needs a "
                  f"max/mean ({need:.2f}) no larger than Hecate's own worst per-layer imbalance (>= 18.8): "
                  f"{verdict(ok)}")
            sim = simulate(with_routing(sc, RoutingSpec(model="dirichlet", skew=0.3)), samples=16, seed=0)
            pct = sim.extra["step_time_percentiles_s"]
            print(f"  DES, dirichlet 0.3, one draw per (step, layer), 16 steps: p50 {pct['p50'] / base:.2f}x, p99 "
                  f"{pct['p99'] / base:.2f}x of the balanced step (mean max/mean "
                  f"{sim.extra['moe_imbalance']['max_over_mean_mean']:.2f})")
    print("  assumptions: EP 32 over 32 GPUs (2 experts each), fp16, no recompute, ZeRO-0; the analytic engine prices"
          " the busiest rank's expert GEMMs and all-to-all bytes from the routing model (training.moe_routing), the"
          " DES one draw per layer and step; batch per GPU not published (1-4 sequences shown). A consistency"
          " check, not a prediction of 5.18.")


# ---- LSH-MoE (arXiv 2411.08446): all-to-all share of the step ------------------------------------------------

GPT_MOE_15B = ModelSpec(
    name="gpt-moe-15b", source="LSH-MoE arXiv 2411.08446 Table 1 (12 layers, d 768, d_ffn 3072, 512 experts, "
    "14.5B MoE params = 6 MoE layers: every other layer) ; fairseq moe_lm, top-2", num_layers=12, hidden_size=768,
    num_heads=12, ffn_hidden_size=3072, vocab_size=51200, max_seq_len=2048,
    moe=dict(num_experts=512, top_k=2, expert_ffn_hidden_size=3072, layer_freq=2))


def lsh_breakdown(servers: int, gpus_per_server: int, micro_batch: int) -> dict:
    """Analytic-engine step of GPT-MoE 15B with EP over all servers x gpus_per_server GPUs (dp = ep), each server's
    200 Gb/s shared by the GPUs it runs: time by kind (s) and the step."""
    n = servers * gpus_per_server
    sc = Scenario.build(GPT_MOE_15B, "a100-sxm4-40gb", n, global_batch=n * micro_batch, seq_len=2048,
                        hardware_overrides={"scaleout_gb_per_s": 200 / 8 / gpus_per_server,
                                            "devices_per_node": gpus_per_server},
                        tp=1, pp=1, ep=n, micro_batch=micro_batch, dtype="fp16", recompute="none", zero=0)
    r = estimate(sc)
    return dict(r.time_breakdown_s, step=r.step_time_s)


def lsh_share(servers: int, gpus_per_server: int, micro_batch: int) -> float:
    b = lsh_breakdown(servers, gpus_per_server, micro_batch)
    return b["ep_comm"] / b["step"]


def eq6_share(share: float, w_from: int, w_to: int) -> float:
    """LSH-MoE eq. 6 (appendix A.2, eq. 9): T_a2a / T_compute = FLOPs/(6 B_inter) x k/(1+2k) x (w-1)/(w h), w the
    number of servers, h the hidden size: the share `share` at w_from servers carried to w_to servers."""
    ratio = share / (1.0 - share) * ((w_to - 1) / w_to) / ((w_from - 1) / w_from)
    return ratio / (1.0 + ratio)


def check_lsh_moe() -> None:
    print("== LSH-MoE: all-to-all share of the step, GPT-MoE 15B, A100 servers at 200 Gb/s each ==")
    print("published: ~30% for GPT-MoE (15B) 'on a cluster comprised of four A100 machines' (Fig. 3a, labelled 16"
          " GPUs); 'we then double the number of machines' (Fig. 3b, labelled 32 GPUs): the share 'remains nearly"
          " constant' (sec. 2.2); the paper's own model, eq. 6 (w = number of servers), grows the a2a/compute ratio"
          " by (w-1)/w")
    print("  scenario of the check: 4 servers x 4 GPUs -> 8 servers x 4 GPUs (the text of sec. 2.2 with the figure's"
          " GPU counts)")
    grid = (1, 2, 3, 4, 6, 8)
    for mb in grid:
        a, b = lsh_breakdown(4, 4, mb), lsh_breakdown(8, 4, mb)
        print(f"  micro-batch {mb} (2048 tokens each): 4 x 4 GPUs {a['ep_comm'] / a['step']:.1%}, 8 x 4 GPUs "
              f"{b['ep_comm'] / b['step']:.1%} (all-to-all x{b['ep_comm'] / a['ep_comm']:.2f}, the rest "
              f"x{(b['step'] - b['ep_comm']) / (a['step'] - a['ep_comm']):.2f})")
    # Fig. 3's batch is not published: take the micro-batch whose 16-GPU share is nearest the published 30%
    mb = min(grid, key=lambda m: abs(lsh_share(4, 4, m) - 0.30))
    base, dbl = lsh_share(4, 4, mb), lsh_share(8, 4, mb)
    print(f"  check (micro-batch {mb}, the one whose 16-GPU share is nearest 30%; 4 x 4 -> 8 x 4): share {base:.1%}"
          f" within 10 points of 30%: {verdict(abs(base - 0.30) <= 0.10)}; change when servers double "
          f"{100 * (dbl - base):+.1f} points (<= 5 points): {verdict(abs(dbl - base) <= 0.05)}; eq. 6 from the same"
          f" start: {eq6_share(base, 4, 8):.1%} ({100 * (eq6_share(base, 4, 8) - base):+.1f} points)")
    a2, b2 = lsh_share(2, 8, 1), lsh_share(4, 8, 1)
    print(f"  other reading (the 4 x 8 A100 cluster of sec. 4.3: 2 x 8 -> 4 x 8 GPUs), micro-batch 1: {a2:.1%} -> "
          f"{b2:.1%} ({100 * (b2 - a2):+.1f} points); eq. 6 itself gives {100 * (eq6_share(a2, 2, 4) - a2):+.1f}"
          f" points there ((w-1)/w 1/2 -> 3/4), so in that reading the paper's 'nearly constant' contradicts its"
          f" own model")
    print("  assumptions: sec. 2.2 profiles Fig. 3a on four A100 machines and Fig. 3b on twice as many; with the"
          " figure's 16 and 32 GPUs that is 4 GPUs per machine, sharing the machine's 200 Gb/s (two RDMA NICs), and w"
          " from 4 to 8 servers, the only reading in which eq. 6 (w = servers) is 'nearly unchanged' (x1.17); the"
          " A100 cluster of sec. 4.3 has 4 servers x 8 GPUs, so Fig. 3b's 8 servers lie outside it (the paper does"
          " not say how). Analytic engine, balanced routing, flat NCCL all-to-all (fairseq moe_lm / fairscale"
          " MOELayer: all_to_all_single over all GPUs, EP = DP = all GPUs, the 512 experts spread over them), fp16,"
          " 2048-token sequences; Fig. 3's batch is not published, so the check takes the micro-batch whose 16-GPU"
          " share is nearest the published 30%. Physics of the flat all-to-all: each GPU sends (w-1)/w of its top-2"
          " copies off the node, through its 1/g share of the node's NICs, so it grows x1.17 from 4 to 8 servers as"
          " eq. 6 does; the rest of the step shrinks because each GPU holds half the experts (optimizer, expert"
          " weights), which eq. 6 leaves out.")


# ---- 1-bit Adam (arXiv 2102.02888): Table 1 all-reduce times and end-to-end speed-up --------------------------

BERT_LARGE_PARAMS = 340e6          # BERT-Large, as the 1-bit Adam paper states (fp16 gradients: 0.68 GB)
TABLE1 = {  # network -> (GPUs per node, {nodes: backward all-reduce ms}), batch 16 per GPU rows of Table 1
    "ethernet": (4, {1: 239.76, 2: 1897.21, 4: 2133.24, 8: 2173.35, 16: 2275.43}),
    "infiniband": (8, {1: 28.18, 2: 183.74, 4: 297.28, 8: 336.40}),
}
NETWORK_GBIT = {"ethernet": 4.1, "infiniband": 32.0}   # effective per node: blog (iperf 4.1 Gb/s; perftest ~32)


def onebit_tiers(net: str) -> TierArrays:
    """Intra-node tier from the single-node row (2 (G-1)/G S / t), network = effective per-node rate / G."""
    g, rows = TABLE1[net]
    s = BERT_LARGE_PARAMS * 2
    intra = 2 * (g - 1) / g * s / (rows[1] * 1e-3)
    inter = NETWORK_GBIT[net] * 1e9 / 8 / g
    return TierArrays(np.array([float(g), np.inf]), np.array([intra, inter]), np.array([5e-6, 20e-6]),
                      np.array([0, 0]), np.array([1.0, 1.0]))


def check_onebit() -> None:
    print("== 1-bit Adam: Table 1 uncompressed all-reduce times (BERT-Large, fp16, batch 16/GPU) ==")
    s = BERT_LARGE_PARAMS * 2
    for net, (g, rows) in TABLE1.items():
        tiers = onebit_tiers(net)
        parts = []
        for nodes, ms in rows.items():
            if nodes == 1:
                continue
            pred = all_reduce_time_s(s, nodes * g, 1, tiers) * 1e3
            ring = (2 * (nodes * g - 1) / (nodes * g) * s / (NETWORK_GBIT[net] * 1e9 / 8)) * 1e3
            err = pred / ms - 1
            parts.append(f"{nodes} nodes: {ms:.0f} vs {pred:.0f} ms ({err:+.1%}) {verdict(abs(err) <= 0.20)}"
                         f" [flat ring {ring:.0f}]")
        print(f"  {net} ({NETWORK_GBIT[net]} Gb/s per node, {g} GPUs/node): " + "; ".join(parts))
    # end-to-end on Ethernet, 16 nodes x 4 GPUs, batch 16/GPU (Table 1 row: forward 35.71, backward rest 60.81,
    # optimizer step 75.59 ms measured)
    compute = (35.71 + 60.81 + 75.59) * 1e-3
    tiers = onebit_tiers("ethernet")
    unc = compute + all_reduce_time_s(s, 64, 1, tiers)
    comp = compute + cmp.onebit_allreduce_time_s(BERT_LARGE_PARAMS, 64, 1, tiers) + \
        cmp.onebit_compress_time_s(BERT_LARGE_PARAMS, 0.9e12, 0.88)
    w = 0.15
    e2e = unc / (w * unc + (1 - w) * comp)
    measured = compute + 2275.43e-3
    e2e_m = measured / (w * measured + (1 - w) * comp)
    print(f"  compression stage: {unc * 1e3:.0f} -> {comp * 1e3:.0f} ms per step, {unc / comp:.1f}x (blog: 6.6x);"
          f" from the measured uncompressed step {measured * 1e3:.0f} ms: {measured / comp:.1f}x")
    for label, pub in (("paper abstract, up to 3.3x", 3.3), ("blog, 3.5x on 40 GbE", 3.5)):
        print(f"  check end-to-end speed-up with {w:.0%} warm-up: {e2e:.2f}x vs {label}: "
              f"{e2e / pub - 1:+.0%} (<= 25%): {verdict(abs(e2e / pub - 1) <= 0.25)}"
              f"  [measured uncompressed step: {e2e_m:.2f}x, {e2e_m / pub - 1:+.0%}]")
    print("  assumptions: 340M parameters; collectives.all_reduce_time_s (hierarchical bandwidth, NCCL ring/tree"
          " latency) over two tiers; intra-node bandwidth from each table's 1-node row, network = the blog's"
          " effective per-node rate shared by the node's GPUs; compute times of the end-to-end from Table 1;"
          " compression per costs.compression (all-to-all + all-gather of 1-bit signs, 32 B/element of passes).")


# ---- CO2 (arXiv 2401.16265): scalability at 128 GPUs over 80 Gb/s TCP ----------------------------------------

def check_co2() -> None:
    print("== CO2: scalability ratio (per-GPU throughput 128 vs 16 GPUs), 80 Gb/s TCP/IP, 8 GPUs/node ==")
    print("published (review quoting Table 3): AdamW 0.82, CO2 tau=48 1.06, CO2 tau=12 0.86; 8 -> 16 GPUs"
          " 18,444 -> 3,488 words/s (AdamW)")
    t16 = (18444 / 8) / (3488 / 16)                     # step time at 16 GPUs over the 1-node step
    a2 = t16 - 1.0                                     # exposed all-reduce at 2 nodes, in units of compute
    growth = {"hierarchical (collectives.py)": (15 / 16) / (1 / 2),
              "flat NCCL ring": (127 / 128) / (15 / 16)}
    for label, g in growth.items():
        a16 = a2 * g
        sync = t16 / (1.0 + a16)
        co2 = {tau: (1.0 + cmp.local_sgd_exposed_per_step_s(a2, tau, 1.0)) /
               (1.0 + cmp.local_sgd_exposed_per_step_s(a16, tau, 1.0)) for tau in (48, 12)}
        print(f"  {label}: AdamW {sync:.2f} (0.82), CO2 tau=48 {co2[48]:.2f} (1.06), tau=12 {co2[12]:.2f} (0.86)")
        ok = sync < 1.0 and co2[48] > sync and abs(co2[48] - 1.06) <= 0.1 and co2[12] <= co2[48]
        print(f"    check direction (AdamW < 1 <= CO2 tau=48, tau=12 <= tau=48) and CO2 tau=48 within 0.1: "
              f"{verdict(ok)}")
    print("  assumptions: the all-reduce share is taken from the measured 8 -> 16 GPU drop (the model size of the"
          " scaling study was not found); CO2's outer all-reduce moves the same volume as AdamW's gradient"
          " all-reduce and overlaps tau inner steps (costs.compression.local_sgd_exposed_per_step_s); the two"
          " bandwidth laws bracket how the all-reduce grows from 2 to 16 nodes.")


def main() -> None:
    check_hecate()
    print()
    check_lsh_moe()
    print()
    check_onebit()
    print()
    check_co2()


if __name__ == "__main__":
    main()
