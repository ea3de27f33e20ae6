"""Golden snapshot of trainsim's outputs: estimate, simulate, search and validate on a fixed set of scenarios.

Written once from a known-good version of the code and compared by tests/golden/test_golden.py at relative
1e-12 (NaN == NaN). A refactoring that moves code must leave every stored number unchanged; a change that is
meant to change numbers regenerates the files in the same commit and says so:

    PYTHONPATH=. python tests/golden/generate.py          # rewrites tests/golden/*.json

The scenarios cover dense (GPT-3, Llama 2), GQA (Llama 2/3 70B), MoE (Mixtral), MLA + MoE (DeepSeek-V3), context
parallelism, ZeRO 0-3 (and the ZeRO-3 per-tensor gather unit), every pipeline schedule, a TPU torus, uneven
(default and explicit) stage splits, FP8, a non-default placement, recompute none/full, no flash attention and
TP overlap. Their model and hardware specs are stored inside the JSON (as `model_dump()`), so that a later edit of
a preset or a recalibrated profile does not move the snapshot of the engines; validate reads the published-runs
files of ../shared/data (found by walking up from this file) and is skipped when they are absent or changed
(their SHA-256 is stored).
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: One entry per scenario: the flat keys of Scenario.build (names resolved to specs at generation time).
SCENARIOS = {
    # README quick start: GPT-3 175B, 1024 A100, tp 8 pp 8
    "gpt3-175b-readme": dict(model="gpt3-175b", hardware="a100-sxm4-80gb", devices=1024, global_batch=1536,
                             seq_len=2048, tp=8, pp=8, micro_batch=1),
    "gpt3-175b-interleaved": dict(model="gpt3-175b", hardware="a100-sxm4-80gb", devices=256, global_batch=256,
                                  seq_len=2048, tp=8, pp=8, vpp=3, micro_batch=1, zero=0),
    "gpt3-175b-gpipe-full": dict(model="gpt3-175b", hardware="a100-sxm4-80gb", devices=64, global_batch=32,
                                 seq_len=2048, tp=8, pp=8, schedule="gpipe", recompute="full", zero=2),
    "gpt3-175b-zbh1-norc": dict(model="gpt3-175b", hardware="a100-sxm4-80gb", devices=128, global_batch=64,
                                seq_len=2048, tp=8, pp=8, schedule="zb-h1", recompute="none", micro_batch=1),
    # GQA
    "llama2-70b-gqa-h100": dict(model="llama2-70b", hardware="h100-sxm5-80gb", devices=64, global_batch=128,
                                seq_len=4096, tp=8, pp=4, zero=1, tp_comm_overlap=True),
    "llama3-70b-fp8": dict(model="llama3-70b", hardware="h100-sxm5-80gb", devices=128, global_batch=256,
                           seq_len=8192, tp=8, pp=4, vpp=5, dtype="fp8"),
    # ZeRO 0-3 (and the per-tensor ZeRO-3 gather unit), data parallel only
    "llama2-7b-zero0": dict(model="llama2-7b", hardware="a100-sxm4-80gb", devices=32, global_batch=128,
                            seq_len=4096, zero=0, micro_batch=1, recompute="full"),
    "llama2-7b-zero1-noflash": dict(model="llama2-7b", hardware="a100-sxm4-80gb", devices=32, global_batch=128,
                                    seq_len=2048, zero=1, tp=2, flash_attention=False, sequence_parallel=False),
    "llama2-7b-zero2": dict(model="llama2-7b", hardware="a100-sxm4-80gb", devices=32, global_batch=128,
                            seq_len=4096, zero=2, micro_batch=2, recompute="full"),
    "llama2-7b-zero3": dict(model="llama2-7b", hardware="a100-sxm4-80gb", devices=32, global_batch=128,
                            seq_len=4096, zero=3, micro_batch=1, recompute="full"),
    "llama2-7b-zero3-tensor": dict(model="llama2-7b", hardware="a100-sxm4-80gb", devices=32, global_batch=128,
                                   seq_len=4096, zero=3, zero3_unit="tensor", micro_batch=1, recompute="full"),
    # explicit uneven split; default uneven split (126 layers on 16 stages)
    "llama2-7b-stage-layers": dict(model="llama2-7b", hardware="a100-sxm4-80gb", devices=16, global_batch=32,
                                   seq_len=4096, tp=2, pp=4, zero=1, stage_layers=[7, 8, 8, 9]),
    "llama3-405b-uneven": dict(model="llama3-405b", hardware="h100-sxm5-80gb", devices=2048, global_batch=512,
                               seq_len=8192, tp=8, pp=16, micro_batch=1),
    # context parallelism
    "llama3-8b-cp": dict(model="llama3-8b", hardware="h100-sxm5-80gb", devices=32, global_batch=32,
                         seq_len=32768, tp=2, cp=4, zero=2),
    "llama3-8b-cp-placement": dict(model="llama3-8b", hardware="h100-sxm5-80gb", devices=32, global_batch=32,
                                   seq_len=32768, tp=2, cp=4, zero=1, placement="cp-tp-dp-pp"),
    # MoE
    "mixtral-8x7b-ep": dict(model="mixtral-8x7b", hardware="h100-sxm5-80gb", devices=64, global_batch=128,
                            seq_len=4096, tp=2, pp=4, ep=8, zero=1),
    "mixtral-8x7b-ep-overlap": dict(model="mixtral-8x7b", hardware="h100-sxm5-80gb", devices=32, global_batch=64,
                                    seq_len=4096, tp=2, pp=1, ep=8, zero=1, ep_comm_overlap=True, micro_batch=1),
    "mixtral-8x7b-cp-ep": dict(model="mixtral-8x7b", hardware="h100-sxm5-80gb", devices=64, global_batch=64,
                               seq_len=8192, tp=2, pp=2, ep=4, cp=2, zero=3),
    # MLA + MoE, FP8, wide EP (ep > dp)
    "deepseek-v3-fp8": dict(model="deepseek-v3", hardware="h800-sxm5-80gb", devices=2048, global_batch=15360,
                            seq_len=4096, tp=1, pp=16, ep=64, dtype="fp8", zero=1),
    "deepseek-v3-wide-ep": dict(model="deepseek-v3", hardware="h800-sxm5-80gb", devices=256, global_batch=512,
                                seq_len=4096, tp=2, pp=8, ep=32, vpp=2, zero=1),
    # TPU torus
    "llama2-70b-tpu-v4": dict(model="llama2-70b", hardware="tpu-v4", devices=512, global_batch=512, seq_len=4096,
                              tp=8, zero=3, recompute="full"),
    "gpt3-175b-tpu-v5p": dict(model="gpt3-175b", hardware="tpu-v5p", devices=1024, global_batch=1024,
                              seq_len=2048, tp=8, pp=8, zero=1),
    # infeasible: does not fit; cannot be formed
    "gpt3-175b-oom": dict(model="gpt3-175b", hardware="a100-sxm4-40gb", devices=64, global_batch=64, seq_len=2048,
                          tp=8, pp=1, recompute="none"),
    "llama2-7b-bad-tp": dict(model="llama2-7b", hardware="a100-sxm4-80gb", devices=24, global_batch=30,
                             seq_len=4096, tp=3, pp=1),
}

#: Scenarios the discrete-event engine replays (small enough to stay fast), each in every mode of SIM_MODES.
SIM_SCENARIOS = ("gpt3-175b-interleaved", "gpt3-175b-gpipe-full", "gpt3-175b-zbh1-norc", "llama2-70b-gqa-h100",
                 "llama2-7b-zero0", "llama2-7b-zero1-noflash", "llama2-7b-zero2", "llama2-7b-zero3",
                 "llama2-7b-zero3-tensor", "llama2-7b-stage-layers", "llama3-8b-cp", "mixtral-8x7b-ep",
                 "mixtral-8x7b-ep-overlap", "mixtral-8x7b-cp-ep", "deepseek-v3-wide-ep", "llama2-70b-tpu-v4",
                 "gpt3-175b-oom", "llama2-7b-bad-tp")
#: Heavy replays left out of the jitter mode (their other modes are kept) so that the test stays fast.
NO_JITTER = ("gpt3-175b-interleaved", "deepseek-v3-wide-ep")
SIM_MODES = {
    "serial": dict(overlap=False, contention=False),
    "overlap": dict(overlap=True, contention=False),
    "overlap-contention": dict(overlap=True, contention=True),
    "jitter-stragglers": dict(overlap=True, contention=True, jitter=0.05, stragglers=(0.05, 1.5), samples=3,
                              seed=7),
}

#: Searches: one dense and one MoE job; the top rows and a few infeasible rows of each are kept.
SEARCHES = {
    "llama2-7b-h100-64": dict(model="llama2-7b", hardware="h100-sxm5-80gb", devices=64, global_batch=256,
                              seq_len=4096),
    "mixtral-8x7b-h100-64": dict(model="mixtral-8x7b", hardware="h100-sxm5-80gb", devices=64, global_batch=256,
                                 seq_len=4096),
}
SEARCH_TOP = 25
SEARCH_TAIL = 10

#: Published-runs files validated (relative to the data directory).
VALIDATE_FILES = ("published_runs.csv", "vtrain/ground_truth_multi.csv")


def data_dir() -> Path | None:
    """The measured runs shipped with the repository (benchmarks/data, a mirror of ../shared/data), else
    ../shared/data of the first ancestor of this file that has one."""
    shipped = HERE.parents[1] / "benchmarks" / "data"
    if (shipped / "published_runs.csv").exists():
        return shipped
    for p in HERE.parents:
        d = p / "shared" / "data"
        if (d / "published_runs.csv").exists():
            return d
    return None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
def frozen_inputs(keys: dict) -> dict:
    """The flat keys with the model and hardware names replaced by their specs (model_dump)."""
    import simulator as ts
    out = dict(keys)
    out["model"] = ts.load_model(keys["model"]).model_dump(mode="json")
    out["hardware"] = ts.load_hardware(keys["hardware"]).model_dump(mode="json")
    return out


def specs_of(inputs: dict) -> dict:
    """Flat keys with the stored model/hardware dumps turned back into specs."""
    from simulator.specs.hardware import HardwareProfile
    from simulator.specs.model import ModelSpec
    out = dict(inputs)
    out["model"] = ModelSpec.model_validate(inputs["model"])
    out["hardware"] = HardwareProfile.model_validate(inputs["hardware"])
    return out


def scenario_of(inputs: dict):
    import simulator as ts
    return ts.Scenario.build(**specs_of(inputs))


def estimate_output(inputs: dict) -> dict:
    import simulator as ts
    return ts.estimate(scenario_of(inputs)).to_dict()


def simulate_output(inputs: dict, mode: dict) -> dict:
    """The public `simulator.simulate`: the discrete-event replay with its comparison to the analytic estimate."""
    import simulator as ts
    from simulator.errors import InfeasibleLayoutError
    try:
        return ts.simulate(scenario_of(inputs), **mode).to_dict()
    except InfeasibleLayoutError as err:
        return {"infeasible": list(err.reasons)}


def search_output(inputs: dict) -> dict:
    import simulator as ts
    kw = specs_of(inputs)
    res = ts.search(kw.pop("model"), kw.pop("hardware"), kw.pop("devices"), kw.pop("global_batch"), **kw)
    f = res.frame
    rows = list(range(min(SEARCH_TOP, len(f)))) + list(range(max(SEARCH_TOP, len(f) - SEARCH_TAIL), len(f)))
    records = []
    for i in rows:
        rec = {}
        for c in f.columns:
            v = f.iloc[i][c]
            rec[c] = v.item() if hasattr(v, "item") else (str(v) if not isinstance(v, (int, float, bool, str))
                                                          else v)
        records.append(rec)
    return {"num_rows": int(len(f)), "num_feasible": int(f["feasible"].sum()), "rows": records}


def validate_output(path: Path) -> dict:
    from simulator.validation import validate
    rep = validate(path)
    keep = ("id", "metric", "measured", "predicted", "error_pct", "status", "reason", "layout", "step_time_s",
            "memory_gb")
    return {"summary_n": rep.summary.get("n"), "mape_pct": rep.summary.get("mape_pct"),
            "rows": [{k: r.to_dict()[k] for k in keep} for r in rep.rows]}


# ---------------------------------------------------------------------------------------------------------------
def clean(obj):
    """JSON-ready copy: numpy scalars to Python, non-finite floats to strings ('nan', 'inf', '-inf')."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    return obj


def generate() -> dict:
    """{file name: content} of every golden file."""
    est = {}
    for name, keys in SCENARIOS.items():
        inputs = frozen_inputs(keys)
        est[name] = {"inputs": inputs, "output": clean(estimate_output(inputs))}
    sim = {}
    for name in SIM_SCENARIOS:
        inputs = est[name]["inputs"]
        for mode_name, mode in SIM_MODES.items():
            if mode_name == "jitter-stragglers" and name in NO_JITTER:
                continue
            sim[f"{name}/{mode_name}"] = {"scenario": name, "mode": mode_name,
                                          "output": clean(simulate_output(inputs, mode))}
    srch = {}
    for name, keys in SEARCHES.items():
        inputs = frozen_inputs(keys)
        srch[name] = {"inputs": inputs, "output": clean(search_output(inputs))}
    files = {"estimate.json": est, "simulate.json": sim, "search.json": srch}
    d = data_dir()
    if d is not None:
        val = {}
        for rel in VALIDATE_FILES:
            val[rel] = {"sha256": sha256(d / rel), "output": clean(validate_output(d / rel))}
        files["validate.json"] = val
    return files


def main() -> int:
    files = generate()
    for name, content in files.items():
        (HERE / name).write_text(json.dumps(content, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote tests/golden/{name}")
    if "validate.json" not in files:
        print("../shared/data not found: validate.json not written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
