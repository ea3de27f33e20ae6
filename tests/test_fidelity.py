"""End-to-end fidelity against published measurements (benchmarks/data, shipped with the repository: a mirror of
../shared/data kept by benchmarks/sync_data.py; nothing here skips).

Tolerances are the figures this version reaches with the calibrated profiles (benchmarks/README.md), rounded
up, so that a change that makes the predictions worse fails here; the issue's targets are stated next to them.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from simulator.validation import validate

DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "data"
PUBLISHED = DATA / "published_runs.csv"
VT_SINGLE = DATA / "vtrain" / "ground_truth_single.csv"
VT_MULTI = DATA / "vtrain" / "ground_truth_multi.csv"

#: Korthikanti et al. 2022 (arXiv 2205.05198) Table 5: end-to-end iteration time, seconds, of the 22B, 175B, 530B
#: and 1T models with full recompute (baseline) and with sequence parallelism + selective recompute.
KORTHIKANTI_TABLE5 = {
    "korthikanti22-22b-full": 1.42, "korthikanti22-22b-selective": 1.10,
    "korthikanti22-175b-full": 18.13, "korthikanti22-175b-selective": 13.75,
    "korthikanti22-530b-full": 49.05, "korthikanti22-530b-selective": 37.83,
    "korthikanti22-1t-full": 94.42, "korthikanti22-1t-selective": 71.49,
}
#: Calculon's figures on the same cases are 3.65% mean, 8.87% max. LOOSENED with the measured kernel model (issue 11):
#: the fitted GEMM curve reached 2.87% / 5.42%; the kernel tables give 9.44% mean, 14.9% max (every row too slow:
#: Megatron's unfused attention runs its k = 128 batched GEMMs at the A100 tables' 0.22 of peak where the old fit
#: had 0.39, and kernel_level 0.942 is set by the other Ampere sources). LOOSENED again by the refit on the merged
#: code (framework presets): kernel_level 0.938 and layer_overhead_us 947 give 9.79% mean, 15.20% max. Tightened
#: (ampere branch): GEMM K half-point by residual spread (k = 128: 0.28 of peak), unfused-attention score traffic
#: 9 / 11 bytes per element, Megatron-LM 2022's async column-parallel backward collectives and fp16 gradients, and
#: the refit (kernel_level 0.890): 6.85% mean, 11.5% max (530B and 1T still +7 to +11.5% too slow: the shared level
#: is pulled down by the DeepSpeed, GPT-NeoX and InternEvo sources, which are predicted too fast). LOOSENED by the
#: optimizer-step physics (bw2: Megatron's gradient-buffer passes, rows already too slow): 7.09% mean, 11.55% max;
#: 6.76% / 11.19% with the framework calibration (megatron-deepspeed-2021 efficiency, Ampere refit on top).
#: Tightened (amp5 branch): the Ampere level is fitted on the reference-stack rows only (calibration.frameworks.
#: sets_family_level: DeepSpeed-2020, GPT-NeoX, InternEvo and llm-foundry rows, whose stack efficiency is unknown, no
#: longer pull it down), Narayanan Table 1 runs its sc21 layouts and Megatron-LM 2021/2022 fuse bias-dropout-add
#: (kernel_level 0.893 -> 0.928): 3.18% mean, 7.04% max (the 1T rows +6.4/+7.0% too slow, where the same
#: per-pipeline layout in Narayanan's 2021 Table 1 is predicted within 0.3%: the 2022 code runs it 8% faster for a
#: reason not modelled; the max LOOSENED from 6.01% at the step without the fusion; the issue's 2.9% is not met).
#: 2.98% mean, 6.65% max after session 5's merges and the final refit (interleaved DP sync window and NCCL SM share
#: from hop5; Ampere kernel_level 0.931): still 0.08 above the issue's 2.9%. 2.68% mean, 5.95% max (kor5 branch) with
#: the per-micro-batch host work at the passes' tails (loss forward, embedding backward) hidden under the GPU work
#: the pass has queued ahead of the host (Megatron-LM 2022 drains the GPU at every pass boundary, so only the head
#: work is exposed; costs.stage head_host_s / tail_host_s): the 530B and 1T rows 0.5-0.7 points closer; the shipped
#: Ampere overlay kept (a refit on this code gives 2.78% / 6.19%). The session's final refit on the merged main
#: (documented order frameworks -> families -> frameworks; Ampere LOSO 11.6 -> 9.3%) ships that: 2.78% / 6.19%
#: (LOOSENED from the kor5 branch's 2.68 / 5.95, within the issue's 2.9% mean).
KORTHIKANTI_MEAN_PCT = 2.79
KORTHIKANTI_MAX_PCT = 6.2
#: Sources the shipped calibration was fitted on (the profiles' CALIBRATION records): in-sample error over their 102
#: predicted rows, 7.1% with the fitted GEMM curve (6 free kernel parameters per family), 14.6% with the measured
#: kernel model and one kernel_level per family, 15.1% after merging the framework presets (LOOSENED, issue 11),
#: 15.1% after the refit on the merged code, 11.9% with the TPU systolic rule, MaxText remat policies and the tpu
#: kernel_level fit (the MLPerf v4.0 and MaxText reference TPU rows); 7.33% after session 5 (family levels fitted on
#: reference-stack rows only, interleaved DP window, TPU blocking FSDP reduce-scatter, final refit). Not a claim
#: about new sources. LOOSENED to 7.45 (7.44% measured) by MaxText's unfused splash-attention backward (3.5x the
#: forward, mtmoe5): the MaxText reference and MLPerf v4.0 TPU rows run 0.4-1.7 points slower at the shipped tpu
#: kernel_level 0.899; a tpu refit on this code gives 0.906 (benchmarks/calibrate.py --family tpu), left to the
#: lead's final refit. 7.40% after the final refit (tpu kernel_level 0.906). LOOSENED to 7.42 (7.417% measured) by
#: MLA's RoPE/QKV assembly passes and the stages' dense/MoE layer mix (smx6): the Megatron-Bridge DeepSeek-V3 rows,
#: already predicted too slow at the Hopper/Blackwell levels fitted without them, move 1.1-2.9 points further.
CALIBRATED_SOURCES = ("Narayanan et al. 2021", "Korthikanti", "MLPerf Training v3.1", "MLPerf Training v4.0",
                      "MaxText reference", "Megatron-LM README", "MosaicML",
                      "Megatron-Bridge performance summary archive", "NeMo performance summary (NeMo 24.07)")
#: 7.218% measured on main b030d03 -> 7.118% (mbr6: Qwen3's per-head q/k RMSNorms; Megatron-Core's 'mlp' recompute
#: module replays dense MLPs only, mbridge2509-dsv3-671b-1024 -13.2 -> +8.8%; the 'mla_up_proj' module's replay).
#: 7.130% after session 6's final refit (Hopper kernel_level 0.893 -> 0.890).
CALIBRATED_MAPE_PCT = 7.14
#: Every predicted row of the 272-row file (new sources, families and frameworks included): 26.3% over 226 rows
#: when the file grew, 22.4% over 266 rows with framework presets and the memory metrics, 15.0% with the measured
#: kernel model (issue 11), 14.4% after the refit on the merged code and the first Volta fit (Volta 23.1% -> 5.9%),
#: 12.6% with the non-NVIDIA physics (TPU systolic rule and remat policies, full-mesh scale-up, tpu kernel_level),
#: 9.88% after this session's merges (memory, Hopper/Blackwell, Ampere, MoE, optimizer step, framework fits);
#: session 5: sliding-window/chunked attention (Gemma 3 and GPT-OSS rows no longer costed as full causal attention;
#: +0.18 points: the over-counted attention had hidden other missing costs), the GB300 power-rule MAMF and softmax
#: rule, the Ascend MAMF on the mean definition and the MindSpeed / Pangu recipe facts (-0.31 points), AQT int8
#: quantisation costs and the MLPerf v5p all-gather-only TP overlap with the tpu refit (-0.14 points), the Ampere
#: level set by the Megatron stacks alone (+0.05: the DeepSpeed-2020, GPT-NeoX, InternEvo and llm-foundry A100 rows
#: move further too fast while Korthikanti and vTrain improve);
#: GPT-OSS's eager model-feature ops (clamped GLU, per-expert output bias, unfused YaRN RoPE, replayed recompute
#: modules: the five GPT-OSS rows +21..+60% -> +2..+27%; 9.60 -> 9.22 on the merged main of this session);
#: 8.81% with the interleaved-1F1B DP sync window, NCCL SM share and interleaved P2P overlap (hop5), MaxText's blocking
#: FSDP reduce-scatter on TPU (v6e5), unpaired EP-overlap passes (epov5) and the final refit of every overlay;
#: 8.73% with MaxText's sparse-matmul permute over the TP group and its unfused splash-attention backward (mtmoe5);
#: + per-micro-batch host work at the passes' tails hidden (kor5: the Narayanan 2021 Megatron rows, already predicted
#: too fast, move 0.05-0.55 points further, the Korthikanti rows 0.1-0.7 closer);
#: a ceiling against regressions, not a target (the open fidelity issues aim at 10-12%).
#: 8.76% after the final refit;
#: 8.68% with HybridEP's published H100 network fraction and its per-forward routing-map all-gather (a2a6: the
#: HybridEP rows only; mbridge2604-qwen3-30b-a3b-16 +41.0 -> +20.6%);
#: 8.67% with MLA's RoPE/QKV assembly passes and the stages' dense/MoE layer mix (smx6: SimuMax's B200 DeepSeek rows
#: -13.5..-20.1% -> -6.6..-17.0%);
#: 8.229% measured on main b030d03 -> 8.195% (mbr6: Qwen3's q/k RMSNorms, the dense-only 'mlp' recompute module and
#: the 'mla_up_proj' replay; Megatron-Bridge MoE rows 14.26 -> 13.82%); the DeepSpeed-MoE rows take the blog-day
#: script's ZeRO 0 (and the dense baseline's MP 8) over the runs file's inferred cells: +155/+47 -> +64/+40%;
#: 8.202% after session 6's final refit;
#: 7.992% (v6e6: MaxText recipes without the reduce-scatter fusion flags all-reduce their FSDP gradients, and 2D TPU
#: sub-slices without wraparound get half a ring's ICI bandwidth per short axis: the v6e tpu-recipes rows only);
PUBLISHED_MAPE_CEILING_PCT = 8.00
#: Memory rows (issue 10 target 8%): 45 rows reach 5.7% (allocated 1.26%, reserved 2.45%, InternEvo's five
#: `memory_gb` rows 36.4%; 9.2% before MLA from the notes, TE dummy weight gradients, no dropout masks for
#: gated-MLP models and InternEvo's device-level GiB report); SimuMax's 19 B200 allocated-memory rows 1.26%
#: (target 3%), its 15 dense ones 1.12% (3.0% before).
MEMORY_MAPE_CEILING_PCT = 5.8
SIMUMAX_DENSE_ALLOCATED_CEILING_PCT = 1.2
SIMUMAX_ALLOCATED_CEILING_PCT = 1.3


@pytest.fixture(scope="module")
def published():
    t0 = time.perf_counter()
    rep = validate(PUBLISHED)
    return rep, time.perf_counter() - t0


def test_korthikanti_table5_step_times(published):
    rep, _ = published
    rows = {r.id: r for r in rep.rows}
    errs = []
    for rid, seconds in KORTHIKANTI_TABLE5.items():
        r = rows[rid]
        assert r.status == "ok" and r.metric == "step_time_s" and r.measured == pytest.approx(seconds)
        errs.append(abs(r.error_pct))
    assert sum(errs) / len(errs) <= KORTHIKANTI_MEAN_PCT
    assert max(errs) <= KORTHIKANTI_MAX_PCT


def test_published_runs_validate_fast_and_report_every_row(published):
    rep, seconds = published
    assert seconds < 30.0                                  # issue: under 30 s
    assert len(rep.rows) == 272
    skipped = {r.id for r in rep.skipped_rows}
    assert {"palm22-t3-gpt3-175b", "opt22-175b-992", "frontier24-1t-3072"} <= skipped
    assert all(r.reason for r in rep.skipped_rows)


def test_calibrated_sources_in_sample_error(published):
    rep, _ = published
    errs = [abs(r.error_pct) for r in rep.ok_rows if any(k in r.source for k in CALIBRATED_SOURCES)]
    assert len(errs) >= 100
    assert sum(errs) / len(errs) <= CALIBRATED_MAPE_PCT


def test_published_runs_error_does_not_regress(published):
    rep, _ = published
    assert len(rep.ok_rows) >= 226
    assert rep.summary["mape_pct"] <= PUBLISHED_MAPE_CEILING_PCT


def test_memory_rows_error(published):
    rep, _ = published
    mem = [r for r in rep.ok_rows if r.metric.startswith("memory")]
    assert len(mem) == 45
    assert sum(abs(r.error_pct) for r in mem) / len(mem) <= MEMORY_MAPE_CEILING_PCT
    dense = [abs(r.error_pct) for r in mem if r.id.startswith("simumax-b200") and "deepseek" not in r.id
             and r.metric == "memory_allocated_gb"]
    assert len(dense) == 15 and sum(dense) / len(dense) <= SIMUMAX_DENSE_ALLOCATED_CEILING_PCT
    alloc = [abs(r.error_pct) for r in mem if r.id.startswith("simumax-b200") and r.metric == "memory_allocated_gb"]
    assert len(alloc) == 19 and sum(alloc) / len(alloc) <= SIMUMAX_ALLOCATED_CEILING_PCT


def test_vtrain_multi_node_beats_vtrain():
    """vTrain's own error on its 109 multi-node runs is 14.73% (Bang et al. 2023); this version reaches 11.8%
    (14.5% before the ampere branch's unfused-attention and Megatron fp16-gradient physics; 8.3% with the fitted
    GEMM curve before the measured kernel model: LOOSENED, issue 11); 11.86% with the optimizer-step physics; 8.30%
    with the Ampere level fitted on the reference stacks and fused bias-dropout-add (amp5; target 8.3%); 8.00% after
    session 5's merges and the final refit; 7.89% with the per-micro-batch host work at the passes' tails hidden
    (kor5); 7.93% after the final refit (LOOSENED by 0.03)."""
    s = validate(VT_MULTI).summary
    assert s["n"] == 109 and s["mape_pct"] < 7.93


def test_vtrain_single_node_error():
    """vTrain's own error on its 1,440 single-node runs is 8.37%; this version reaches 7.26% (10.08% before the
    ampere branch's unfused-attention physics and refit; 7.5% with the fitted GEMM curve before the measured kernel
    model); 7.68% with the optimizer-step physics (Megatron's gradient-buffer passes; LOOSENED); 6.95% with the
    Ampere level fitted on the reference stacks and fused bias-dropout-add (amp5); 6.92% after session 5's merges
    and the final refit; 7.00% with the per-micro-batch host work at the passes' tails hidden (kor5; LOOSENED from
    6.93, within the issue's 7.5%: the hidden tails make the single-node predictions faster, and the shipped
    overlay's layer_overhead_us was fitted with that work serial); 7.02% after the final refit (LOOSENED by 0.01)."""
    s = validate(VT_SINGLE).summary
    assert s["n"] == 1440 and s["mape_pct"] < 7.02
