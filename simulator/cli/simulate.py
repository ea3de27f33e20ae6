"""`trainsim simulate`: one layout, discrete-event engine (overlap, contention, stragglers, timeline)."""
from __future__ import annotations

import argparse
import json

from ..errors import SpecError
from . import common


_fraction = common.number(float, 0.0, 1.0)
_slowdown = common.number(float, 1.0, 100.0, note=" (a slowdown factor)")


def register(sub) -> None:
    p = sub.add_parser(
        "simulate", help="replay one training step with the discrete-event engine (overlap, contention, stragglers)",
        description="Replay one training step of one layout with the discrete-event engine: one representative "
                    "rank per pipeline stage, the pipeline schedule op by op, communication overlapped and "
                    "sharing network ports, optional jitter and stragglers. Prints the same results as "
                    "`estimate` plus per-stage busy/idle time and the difference from the analytic estimate; "
                    "writes a Chrome trace and a Gantt chart on request. Exit 3 if the layout cannot run.")
    common.add_job_flags(p)
    g = p.add_argument_group("simulation")
    g.add_argument("--overlap", type=common.on_off, default=True, metavar="on|off",
                   help="overlap communication with compute where the layout allows (default on); off "
                        "serializes everything like the analytic engine")
    g.add_argument("--contention", type=common.on_off, default=True, metavar="on|off",
                   help="concurrent transfers of a device on one network tier share its port (default on)")
    g.add_argument("--jitter", type=_fraction, default=0.0, metavar="SIGMA",
                   help="relative standard deviation of a random factor on every op (default 0)")
    g.add_argument("--stragglers", type=_fraction, default=0.0, metavar="FRACTION",
                   help="fraction of devices whose compute is slower (default 0)")
    g.add_argument("--straggler-slowdown", type=_slowdown, default=1.5, metavar="FACTOR",
                   help="how much slower a straggler computes (default 1.5)")
    g.add_argument("--samples", type=common.positive_int, default=1, metavar="N",
                   help="independent replays; reports the median and p50/p90/p99 (default 1)")
    g.add_argument("--seed", type=common.nonneg_int, default=0, help="random seed of jitter and stragglers (default 0)")
    g.add_argument("--trace", metavar="FILE.json", help="write a Chrome trace (Perfetto / chrome://tracing)")
    g.add_argument("--gantt", metavar="FILE.png", help="write a Gantt chart of the step")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format")
    common.add_progress_flag(p)
    p.set_defaults(handler=run)


def des_renderable(d: dict):
    """Per-stage busy/idle, step-time distribution, and the comparison with the analytic engine."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from ..units import format_seconds

    parts = []
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("replay", f"schedule {d['schedule']}, overlap {'on' if d['overlap'] else 'off'}, contention "
                           f"{'on' if d['contention'] else 'off'}, {d['num_events']:,} events")
    if d.get("replica_groups"):
        head.add_row("stragglers", "; ".join(d["replica_groups"]))
    pct = d.get("step_time_percentiles_s")
    if pct:
        head.add_row(f"{d['samples']} samples", f"p50 {format_seconds(pct['p50'])}  p90 {format_seconds(pct['p90'])}  "
                                                f"p99 {format_seconds(pct['p99'])}  (min {format_seconds(pct['min'])}, "
                                                f"max {format_seconds(pct['max'])})")
    a = d["analytic"]
    delta = d["delta_vs_analytic_s"]["step_time"]
    head.add_row("vs estimate", f"{format_seconds(a['step_time_s'])} analytic, "
                                f"{'+' if delta >= 0 else '-'}{format_seconds(abs(delta))} "
                                f"({delta / a['step_time_s'] * 100:+.2f}%)")
    parts.append(head)

    st = Table(title="pipeline stages", title_justify="left")
    for c in ("stage", "layers", "busy", "idle", "idle share", "finished at"):
        st.add_column(c, justify="right")
    step = d["step_time_s"]
    for k, s in d["stages"].items():
        st.add_row(k, str(s["layers"]), format_seconds(s["busy_s"]), format_seconds(max(0.0, s["idle_s"])),
                   f"{max(0.0, s['idle_s']) / step * 100:.1f}%", format_seconds(s["finished_s"]))
    parts += [Text(""), st]
    if d.get("explanations"):
        parts += [Text(""), Text("why the replay differs from the estimate:", style="bold")]
        parts += [Text(f"  - {e}") for e in d["explanations"]]
    return Group(*parts)


def write_outputs(result, args: argparse.Namespace) -> None:
    """Write the Chrome trace and the Gantt chart the flags ask for."""
    from ..des.trace import chrome_trace
    from ..reports.labels import layout_label          # a leaf module: no matplotlib or pandas
    tl = result.timeline
    sc = result.scenario
    lay = sc.layout
    title = (f"{sc.model.name} on {sc.num_devices} x {sc.hardware.name}: {layout_label(lay)}, "
             f"{result.num_micro_batches} micro-batches; step {result.step_time_s:,.3f} s")
    if args.trace:
        meta = {"model": sc.model.name, "hardware": sc.hardware.name, "devices": sc.num_devices,
                "layout": lay.model_dump(), "engine": "des"}
        # one C-encoded string (json.dump to a file runs the pure-Python encoder chunk by chunk), no spaces
        text = json.dumps(chrome_trace(tl, meta), separators=(",", ":"))
        try:
            with open(args.trace, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as err:
            raise SpecError(f"--trace {args.trace}: cannot write the file ({err.strerror})") from None
    if args.gantt:
        from ..reports.plots import gantt_figure  # matplotlib + pandas: only when a chart is asked for
        try:
            gantt_figure(tl, title=title).savefig(args.gantt)
        except OSError as err:
            raise SpecError(f"--gantt {args.gantt}: cannot write the file ({err.strerror})") from None
        except ValueError as err:
            raise SpecError(f"--gantt {args.gantt}: {err} (use a .png, .svg or .pdf name)") from None


def run(args: argparse.Namespace) -> int:
    from ..crosscheck import simulate
    from ..des.stragglers import Stragglers
    from .estimate import emit, exit_code
    sc = common.build_scenario(args)
    strag = Stragglers(args.stragglers, args.straggler_slowdown) if args.stragglers > 0 else None
    with common.progress_bar(args, f"simulate: {args.samples} replays", args.samples > 1) as progress:
        result = simulate(sc, overlap=args.overlap, contention=args.contention, jitter=args.jitter,
                          stragglers=strag, samples=args.samples, seed=args.seed,
                          **({"progress": progress} if args.samples > 1 else {}))
    write_outputs(result, args)
    from ..uncertainty import with_uncertainty
    d = with_uncertainty(result.to_dict(), result.scenario)
    if args.format == "table":
        from rich.text import Text
        emit(d, "table")
        out = common.stdout()
        out.print(Text(""))
        out.print(des_renderable(d))
    else:
        emit(d, args.format)
    return exit_code(result, args.format)
