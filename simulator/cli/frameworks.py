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


def _calibration(name: str, overlay) -> dict:
    """How the shipped framework overlay treats a preset: its fitted kernel-throughput efficiency, 'reference'
    (it sets the families' kernel_level, so 1.0 by definition), refused (with the rule's reason) or not fitted."""
    if overlay is None:
        return {"status": "no overlay", "efficiency": 1.0, "detail": ""}
    if name in overlay.values:
        fit = overlay.fits.get(name)
        detail = f"{fit.rows} rows, {len(fit.sources)} sources" if fit is not None else ""
        return {"status": "fitted", "efficiency": overlay.values[name], "detail": detail}
    if name in overlay.reference:
        return {"status": "reference", "efficiency": 1.0, "detail": ""}
    if name in overlay.refused:
        return {"status": "refused", "efficiency": 1.0, "detail": overlay.refused[name]}
    return {"status": "not fitted", "efficiency": 1.0, "detail": "no time/rate rows in calibrated families"}


def _calibration_cell(c: dict) -> str:
    if c["status"] == "fitted":
        return f"{c['efficiency']:.3f} ({c['detail']})" if c["detail"] else f"{c['efficiency']:.3f}"
    return c["status"]


def framework_rows() -> list[dict]:
    """One summary row per preset (key fields, its fitted efficiency and the preset's main source)."""
    from ..specs.frameworks_loading import available_frameworks, load_framework
    from ..specs.overlay import framework_overlay
    overlay = framework_overlay()
    rows = []
    for name in available_frameworks():
        f = load_framework(name)
        cal = _calibration(f.name, overlay)
        rows.append({
            "name": f.name, "framework": f.framework, "years": _years(f), "attention": _attention(f),
            "overlaps": _overlaps(f), "zero3_unit": f.overlap.zero3_gather_unit,
            "selective": f.recompute.selective, "cross_entropy": f.loss.cross_entropy,
            "fsdp": f"{f.fsdp.implementation} ({f.fsdp.reshard_after_forward})", "host": f.host.mode,
            "allocator": f"{f.allocator.utilisation:g} ({f.allocator.memory_report})",
            "micro_batch_rule": f.defaults.micro_batch_rule, "version": f.version, "source": f.source,
            "calibration": cal, "efficiency": _calibration_cell(cal),
        })
    return rows


def run_frameworks(args: argparse.Namespace) -> int:
    from ..specs.frameworks_loading import available_frameworks, load_framework
    if args.format == "json":
        from ..specs.overlay import framework_overlay
        overlay = framework_overlay()
        common.print_json([{**load_framework(n).model_dump(mode="json"),
                            "calibration": _calibration(load_framework(n).name, overlay)}
                           for n in available_frameworks()])
        return 0
    from ..reports.tables import catalog_table
    rows = framework_rows()
    cols = [("name", "preset"), ("years", "years"), ("attention", "attention kernel"), ("overlaps", "overlapped"),
            ("selective", "selective ="), ("cross_entropy", "cross-entropy"), ("allocator", "alloc. util (log)"),
            ("efficiency", "fitted efficiency")]
    out = common.stdout()
    if not out.is_terminal:
        out.width = max(out.width, 160)   # piped output: no 80-column truncation of the kernel names
    out.print(catalog_table(rows, cols, "framework presets (every field sourced: --sources or --format json)"))
    refused = [r for r in rows if r["calibration"]["status"] == "refused"]
    if refused:
        out.print("fitted efficiency: kernel-throughput multiplier from hardware_profiles/calibration/frameworks.yaml "
                  "(reference stacks set kernel_level; 1.0 where not fitted). Refused fits:", markup=False)
        for r in refused:
            out.print(f"  {r['name']}: {r['calibration']['detail']}", markup=False)
    if args.sources:
        for n in available_frameworks():
            f = load_framework(n)
            out.print(f"\n[bold]{f.name}[/bold] ({f.version})\n  preset: {f.source}", markup=True)
            for group in ("attention", "overlap", "recompute", "fsdp", "loss", "host", "allocator", "defaults"):
                out.print(f"  {group}: {getattr(f, group).source}", markup=False)
    return 0
