"""Regenerate benchmarks/README.md (error tables) and benchmarks/validation.png (predicted vs measured).

    python benchmarks/validate_published.py [--data-dir benchmarks/data] [--engine analytic]

Runs `trainsim validate` on the published runs and on both vTrain files, and writes the tables of the README
from the results (nothing in the README's tables is typed by hand).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
DEFAULT_DATA = ROOT / "benchmarks" / "data"  # mirror of ../shared/data (benchmarks/sync_data.py)


def _row(label, s):
    if not s["n"]:
        return f"| {label} | 0 | | | | |"
    return (f"| {label} | {s['n']} | {s['mape_pct']:.1f} | {s['median_ape_pct']:.1f} | {s['max_ape_pct']:.1f} | "
            f"{s['mean_signed_pct']:+.1f} |")


HEAD = "| {} | n | MAPE % | median % | max % | mean signed % |\n|---|---:|---:|---:|---:|---:|"


def tables(rep) -> str:
    s = rep.summary
    out = [HEAD.format("set"), _row("all predicted rows", s)]
    out += ["", HEAD.format("hardware family")] + [_row(k, v) for k, v in s["by_hardware"].items()]
    out += ["", HEAD.format("source")] + [_row(k, v) for k, v in s["by_source"].items()]
    out += ["", HEAD.format("kind")] + [_row(k, v) for k, v in s["by_kind"].items()]
    out += ["", HEAD.format("metric")] + [_row(k, v) for k, v in s["by_metric"].items()]
    out += ["", HEAD.format("framework preset")] + [_row(k, v) for k, v in s.get("by_framework", {}).items()]
    return "\n".join(out)


def framework_section() -> str:
    """The software stack of the rows: preset per row, the override table, the blank-field policy (from the code)."""
    from simulator.validation.rows import NOTE_OVERRIDES
    lines = [
        "Every row runs under the framework preset of its `framework` column and year",
        "(`framework_for_run(framework, year)`, simulator/presets/frameworks/*.yaml; a blank column is `unknown`).",
        "The preset decides the attention kernel, the overlaps (TP, DP gradient reduce, distributed-optimizer",
        "parameter gather, ZeRO-3 gather unit, EP all-to-all), what selective recompute keeps, FSDP under PP, the",
        "cross-entropy buffers, host time where published, the allocator model and the context-parallel exchange.",
        "No rule over the notes decides physics, except this override table (simulator/validation/rows.py",
        "NOTE_OVERRIDES), applied only where the notes state a setting that differs from the preset's:",
        "",
        "| notes match (regular expression, lower-cased notes) | sets | why |",
        "|---|---|---|",
    ]
    for pattern, flags, why in NOTE_OVERRIDES:
        sets = ", ".join(f"{k}={v}" for k, v in flags.items())
        lines.append(f"| `{pattern.pattern.replace('|', ' / ')}` | {sets} | {why} |")
    from simulator.validation.rows import _MAX_NODES, _RECOMPUTE_MODULES
    lines += [
        f"| `{_MAX_NODES.pattern}` | moe_max_nodes=M | notes state node-limited (group-limited) routing |",
        f"| `{_RECOMPUTE_MODULES.pattern.replace('|', ' / ')}` | blank recompute: selective with the selective "
        "kind 'mlp' where `mlp` is listed, selective where `core_attn` is, else none | the recipe's Megatron-Core "
        "recompute modules |",
        "",
        "Every row reports its preset (`framework`), the overrides applied (`overrides`, with the rule in",
        "`override_reasons`) and the blank-field policy it used (`policy`) in `trainsim validate --format json`.",
        "Stack facts a row's notes state that the model does not use (torch.compile, a SAC option) are not",
        "overrides: they change nothing the engine computes.",
        "",
        "Blank-field policy. A blank micro-batch follows the preset's `defaults.micro_batch_rule`:",
        "`fastest-that-fits` (the framework requires it stated, so a blank cell is searched as its authors tune",
        "it); `micro-batch-one` (micro-batch 1 under PP, the local batch without PP); `pp-stages` (as many",
        "micro-batches as stages). Where pp or dp is itself blank the micro-batch is searched. A blank ZeRO",
        "stage, recompute, vpp or SP cell takes the preset's `defaults` value where the preset fixes one; every",
        "other blank cell (and tp/pp/ep where blank) is searched, fastest that fits. Per preset (from the presets):",
        "",
        "| preset | framework column, years | blank micro-batch | blank cells the preset fills |",
        "|---|---|---|---|",
    ]
    from simulator.specs.frameworks_loading import available_frameworks, load_framework
    for name in available_frameworks():
        f = load_framework(name)
        d = f.defaults
        fills = [f"{k}={v}" for k, v in (("zero_stage", d.zero_stage), ("recompute", d.recompute), ("vpp", d.vpp))
                 if v is not None]
        if d.sequence_parallel_with_tp is not None:
            fills.append(f"sequence_parallel={int(d.sequence_parallel_with_tp)} (tp > 1)")
        last = f.years[1] if f.years[1] is not None else "on"
        lines.append(f"| {f.name} | {f.framework}, {f.years[0]}-{last} | {d.micro_batch_rule} | "
                     f"{', '.join(fills) or 'none (searched)'} |")
    lines += [
        "",
        "Every row states the policy it used: `policy` in `trainsim validate --format json` and CSV, the",
        "`blank-field policy` column of the table (and the per-row table below), with the cells a preset's",
        "defaults filled. The source kind (tuned vendor table vs third-party run) is not a column of the data,",
        "so it does not select a policy: a preset's rule stands for its framework's recipes and defaults.",
        "",
        "Memory rows: `memory_allocated_gb` compares with the predicted allocated peak (the tensors, plus the",
        "buffers the preset names: Transformer Engine's cached dummy weight gradients, the optimizer step's",
        "gradient copies), `memory_reserved_gb` with allocated / utilisation + fragmentation (the preset's",
        "allocator model; utilisation 0.94 for PyTorch stacks from SimuMax), `memory_gb` (the source does not",
        "say) with what the framework's usual report shows (allocator.memory_report: allocated, reserved, or",
        "reserved + context for device-level readings such as nvidia-smi) in its unit (allocator.report_unit:",
        "InternEvo's tables print GiB).",
    ]
    return "\n".join(lines)


def row_table(rep) -> str:
    from simulator.reports.validation_tables import policy_label
    lines = ["| id | metric | measured | predicted | error % | framework (overrides) | blank-field policy | "
             "searched (chosen) |",
             "|---|---|---:|---:|---:|---|---|---|"]
    for r in rep.rows:
        if r.status == "ok":
            srch = ", ".join(f"{k}={v}" for k, v in r.searched.items())
            over = ", ".join(f"{k}={v}" for k, v in getattr(r, "overrides", {}).items())
            fw = getattr(r, "framework", "") + (f" ({over})" if over else "")
            pol = policy_label(getattr(r, "policy", ""), getattr(r, "framework", ""))
            lines.append(f"| {r.id} | {r.metric} | {r.measured:.4g} | {r.predicted:.4g} | {r.error_pct:+.1f} | {fw} | "
                         f"{pol} | {srch} |")
    lines += ["", "Skipped (not in the figures):", "", "| id | line | reason |", "|---|---:|---|"]
    for r in rep.rows:
        if r.status != "ok":
            lines.append(f"| {r.id} | {r.line} | {r.reason.replace('|', '/')} |")
    return "\n".join(lines)


def korthikanti(rep) -> str:
    ids = [r for r in rep.rows if r.id.startswith("korthikanti22-") and r.status == "ok"]
    errs = [abs(r.error_pct) for r in ids]
    lines = ["| case | measured s | predicted s | error % |", "|---|---:|---:|---:|"]
    lines += [f"| {r.id} | {r.measured:.2f} | {r.predicted:.2f} | {r.error_pct:+.1f} |" for r in ids]
    lines.append(f"| **mean / max absolute** | | | **{sum(errs) / len(errs):.2f} / {max(errs):.2f}** |")
    return "\n".join(lines)


def cv_table() -> str:
    """The cross-validated table recorded by benchmarks/crossval.py --write-errors (minutes to recompute)."""
    import yaml
    path = ROOT / "hardware_profiles" / "calibration" / "validation-errors.yaml"
    if not path.is_file():
        return "(not recorded: run `python benchmarks/crossval.py --write-errors`)"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))

    def pct(v):
        return "-" if v is None else f"{v:.1f}"
    lines = [f"MAPE % over {doc['data']}, recorded by `{doc['command']}` on {doc['date']} "
             f"(model {doc['model_version']}). In-sample: the shipped profiles with their overlays. LOSO "
             "(leave-one-source-out): each calibrated family refitted without a source, error on that source. LOFO "
             "(leave-one-family-out): each family without its own overlay (what a family never fitted gets). "
             "Uncalibrated families: all three equal.", "",
             "| family | rows | sources | calibrated | in-sample | LOSO | LOFO |", "|---|---:|---:|:---:|---:|---:|---:|"]
    for fam, v in doc["families"].items():
        lines.append(f"| {fam} | {v['rows']} | {v['sources']} | {'yes' if v['calibrated'] else 'no'} | "
                     f"{pct(v['in_sample_mape_pct'])} | {pct(v['loso_mape_pct'])} | {pct(v['lofo_mape_pct'])} |")
    o = doc.get("overall")
    if o:
        lines.append(f"| **all** | {o['rows']} | | | **{pct(o['in_sample_mape_pct'])}** | "
                     f"**{pct(o['loso_mape_pct'])}** | **{pct(o['lofo_mape_pct'])}** |")
    return "\n".join(lines)


def speed_section() -> str:
    """The README's "## Speed" section (written by hand from benchmarks/bench_speed.py), kept verbatim."""
    lines = (HERE / "README.md").read_text(encoding="utf-8").splitlines() if (HERE / "README.md").exists() else []
    start = next((i for i, ln in enumerate(lines) if ln.startswith("## Speed")), None)
    if start is None:
        return "## Speed\n\n`python benchmarks/bench_speed.py` prints every speed figure next to its target."
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]).rstrip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    ap.add_argument("--engine", default="analytic", choices=["analytic", "des"])
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from simulator.reports.plots import validation_figure
    from simulator.validation import validate

    data = Path(a.data_dir)
    t0 = time.perf_counter()
    pub = validate(data / "published_runs.csv", engine=a.engine)
    t_pub = time.perf_counter() - t0
    single = validate(data / "vtrain" / "ground_truth_single.csv", engine=a.engine)
    multi = validate(data / "vtrain" / "ground_truth_multi.csv", engine=a.engine)
    validation_figure(pub).savefig(HERE / "validation.png", dpi=130, bbox_inches="tight")
    validation_figure(multi).savefig(HERE / "validation_vtrain_multi.png", dpi=110, bbox_inches="tight")

    text = TEMPLATE.format(
        seconds=t_pub, pub_tables=tables(pub), korth=korthikanti(pub), frameworks=framework_section(),
        single=_row("vTrain single node (1,440 runs; vTrain's own error 8.37%)", single.summary),
        multi=_row("vTrain multi-node (109 runs; vTrain's own error 14.73%)", multi.summary),
        head=HEAD.format("set"), rows=row_table(pub), engine=a.engine, speed=speed_section(), cv=cv_table())
    (HERE / "README.md").write_text(text, encoding="utf-8")
    print(f"wrote {HERE / 'README.md'}, {HERE / 'validation.png'}; published MAPE {pub.summary['mape_pct']:.1f}%, "
          f"vTrain single {single.summary['mape_pct']:.1f}%, multi {multi.summary['mape_pct']:.1f}%")
    return 0


TEMPLATE = """# Benchmarks: fidelity and speed

Generated by `python benchmarks/validate_published.py` (engine: {engine}); do not edit the tables by hand.
Re-run it after any change to the engine or the profiles. The profiles hold sourced values only; the values fitted
to measured runs live in the calibration overlays `hardware_profiles/calibration/<family>.yaml`, each with its data,
bounds, leave-one-source-out spread, errors, model version and date (`python benchmarks/calibrate.py --loso --out
fit-{{family}}.yaml`, same as `trainsim calibrate ... --out`, then reviewed and copied there).

## Cross-validated error (`trainsim validate benchmarks/data/published_runs.csv --cv`)

{cv}

## Published measured runs (`trainsim validate benchmarks/data/published_runs.csv`, {seconds:.1f} s)

![predicted vs measured](validation.png)

Each metric is normalised by its median measurement so that step times, rates and utilisations share the
axes; the ratio predicted/measured (the +/-10% band) is unchanged by it.

{pub_tables}

### Software stack per row, note overrides and blank-field policy

{frameworks}

### Korthikanti et al. 2022, Table 5 end-to-end iteration times (the Calculon comparison: 3.65% mean, 8.87% max)

{korth}

## vTrain ground truth (`trainsim validate benchmarks/data/vtrain/ground_truth_*.csv`)

{head}
{single}
{multi}

![vTrain multi-node](validation_vtrain_multi.png)

{speed}

## Every published row

{rows}
"""


if __name__ == "__main__":
    raise SystemExit(main())
