"""`trainsim frameworks`: the shipped framework presets, their key fields and their sources."""
from __future__ import annotations

import argparse

from . import common


def register(sub) -> None:
    p = sub.add_parser("frameworks", help="list the framework presets (software stacks) with their sources")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--sources", action="store_true", help="table: print every field group's source under the table")
    p.set_defaults(handler=run_frameworks)


def _years(f) -> str:
    first, last = f.years
    return f"{first}-{last}" if last is not None else f"{first}-"


def _attention(f) -> str:
    """Default kernel, then the differing families by kernel: 'flash-attn-2; hopper,blackwell: cudnn-fused'."""
    by_kernel: dict = {}
    for fam, k in f.attention.kernel_by_family.items():
        by_kernel.setdefault(k, []).append(fam.removeprefix("nvidia-"))
    extra = "; ".join(f"{','.join(fams)}: {k}" for k, fams in by_kernel.items())
    return f.attention.kernel + (f"; {extra}" if extra else "")


def _overlaps(f) -> str:
    o = f.overlap
    on = [name for name, flag in (("tp", o.tp_comm_overlap), ("dp-grad", o.dp_grad_reduce_overlap),
                                  ("dp-param", o.dp_param_gather_overlap), ("z3-prefetch", o.zero3_prefetch),
                                  ("ep", o.ep_a2a_overlap)) if flag]
    return " ".join(on) or "none"


def framework_rows() -> list[dict]:
    """One summary row per preset (key fields and the preset's main source)."""
    from ..specs.frameworks_loading import available_frameworks, load_framework
    rows = []
    for name in available_frameworks():
        f = load_framework(name)
        rows.append({
            "name": f.name, "framework": f.framework, "years": _years(f), "attention": _attention(f),
            "overlaps": _overlaps(f), "zero3_unit": f.overlap.zero3_gather_unit,
            "selective": f.recompute.selective, "cross_entropy": f.loss.cross_entropy,
            "fsdp": f"{f.fsdp.implementation} ({f.fsdp.reshard_after_forward})", "host": f.host.mode,
            "allocator": f"{f.allocator.utilisation:g} ({f.allocator.memory_report})",
            "micro_batch_rule": f.defaults.micro_batch_rule, "version": f.version, "source": f.source,
        })
    return rows


def run_frameworks(args: argparse.Namespace) -> int:
    from ..specs.frameworks_loading import available_frameworks, load_framework
    if args.format == "json":
        common.print_json([load_framework(n).model_dump(mode="json") for n in available_frameworks()])
        return 0
    from ..reports.tables import catalog_table
    rows = framework_rows()
    cols = [("name", "preset"), ("years", "years"), ("attention", "attention kernel"), ("overlaps", "overlapped"),
            ("selective", "selective ="), ("cross_entropy", "cross-entropy"), ("allocator", "alloc. util (log)")]
    out = common.stdout()
    if not out.is_terminal:
        out.width = max(out.width, 160)   # piped output: no 80-column truncation of the kernel names
    out.print(catalog_table(rows, cols, "framework presets (every field sourced: --sources or --format json)"))
    if args.sources:
        for n in available_frameworks():
            f = load_framework(n)
            out.print(f"\n[bold]{f.name}[/bold] ({f.version})\n  preset: {f.source}", markup=True)
            for group in ("attention", "overlap", "recompute", "fsdp", "loss", "host", "allocator", "defaults"):
                out.print(f"  {group}: {getattr(f, group).source}", markup=False)
    return 0
