"""Timelines of the discrete-event engine as a Chrome trace (Perfetto, chrome://tracing) and a Gantt chart.

Both are built, never written: `chrome_trace()` returns the JSON-ready dict, `gantt_figure()` a matplotlib
Figure (the object-oriented API, no pyplot state); the CLI writes them. One trace process per pipeline stage
(per stage and replica group when stragglers split the replicas), one thread per stream (compute, pp, dp,
gather); spans that overlap within one stream go to extra threads named "<stream> (2)", ... so that every
thread holds properly nested slices. Trace Event Format: https://docs.google.com/document/d/
1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU (complete events "X", metadata "M", microseconds).
"""
from __future__ import annotations

from .engine import Span, Timeline

#: Colours of span categories (op kinds and communication) in the Gantt chart.
CATEGORY_COLORS = {"F": "#4C72B0", "B": "#DD8452", "W": "#55A868", "optimizer": "#8172B3", "pp": "#937860",
                   "dp": "#C44E52"}
CATEGORY_LABELS = {"F": "forward", "B": "backward", "W": "weight gradient (ZB)", "optimizer": "optimizer step",
                   "pp": "pipeline send", "dp": "DP / ZeRO collective"}


def _lanes(spans: list[Span]) -> list[int]:
    """Greedy lane per span (input sorted by start) so that spans in one lane do not overlap."""
    ends: list[float] = []
    out = []
    for sp in spans:
        for i, e in enumerate(ends):
            if sp.start_s >= e - 1e-15:
                ends[i] = sp.end_s
                out.append(i)
                break
        else:
            ends.append(sp.end_s)
            out.append(len(ends) - 1)
    return out


def _process_ids(tl: Timeline) -> dict:
    groups = sorted({sp.group for sp in tl.spans}) or [0]
    return {(g, r): gi * tl.num_stages + r for gi, g in enumerate(groups) for r in range(tl.num_stages)}


def chrome_trace(tl: Timeline, metadata: dict | None = None) -> dict:
    """Chrome trace dict of a timeline: {"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}."""
    pids = _process_ids(tl)
    streams = list(tl.streams)
    events = []
    by_thread: dict = {}
    for sp in sorted(tl.spans, key=lambda s: (s.group, s.stage, s.stream, s.start_s, s.end_s)):
        by_thread.setdefault((sp.group, sp.stage, sp.stream), []).append(sp)
    multi_group = len({g for g, _ in pids}) > 1
    for (g, r), pid in sorted(pids.items(), key=lambda kv: kv[1]):
        name = tl.stage_labels[r] if r < len(tl.stage_labels) and tl.stage_labels[r] else f"stage {r}"
        if multi_group and g < len(tl.group_labels) and tl.group_labels[g]:
            name = f"{name} [{tl.group_labels[g]}]"
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
        extra_tid = len(streams)
        for si, stream in enumerate(streams):
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": si, "args": {"name": stream}})
            events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": si,
                           "args": {"sort_index": si * 100}})
            spans = by_thread.get((g, r, stream), [])
            lanes = _lanes(spans)
            lane_tid = {0: si}
            for sp, lane in zip(spans, lanes):
                if lane not in lane_tid:
                    lane_tid[lane] = extra_tid
                    events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": extra_tid,
                                   "args": {"name": f"{stream} ({lane + 1})"}})
                    events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": extra_tid,
                                   "args": {"sort_index": si * 100 + lane}})
                    extra_tid += 1
                events.append({"name": sp.name, "cat": sp.category, "ph": "X", "pid": pid, "tid": lane_tid[lane],
                               "ts": sp.start_s * 1e6, "dur": max(0.0, sp.end_s - sp.start_s) * 1e6})
    other = {"step_time_s": tl.step_time_s, "num_stages": tl.num_stages, "streams": streams}
    if metadata:
        other.update(metadata)
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def gantt_figure(tl: Timeline, title: str = "", group: int | None = None, max_stages: int = 64,
                 min_comm_width: float = 0.0015):
    """A matplotlib Figure with one row per (stage, stream), bars coloured by op kind and communication.

    `group` picks the replica group to draw (default: the first); at most `max_stages` stages are drawn.
    Communication bars are drawn at least `min_comm_width` of the step wide so that short sends stay visible.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    groups = sorted({sp.group for sp in tl.spans}) or [0]
    g = groups[0] if group is None else group
    stages = list(range(min(tl.num_stages, max_stages)))
    used = {(sp.stage, sp.stream) for sp in tl.spans if sp.group == g}
    rows = []
    for r in stages:
        for stream in tl.streams:
            if stream == "compute" or (r, stream) in used:
                rows.append((r, stream))
    height = max(2.5, 0.32 * len(rows) + 1.4)
    fig = Figure(figsize=(13, height), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    index = {row: i for i, row in enumerate(rows)}
    bars: dict = {}
    min_w = min_comm_width * tl.step_time_s
    for sp in tl.spans:
        if sp.group != g or (sp.stage, sp.stream) not in index:
            continue
        width = sp.end_s - sp.start_s
        if sp.stream != "compute":
            width = max(width, min_w)
        bars.setdefault((index[(sp.stage, sp.stream)], sp.category), []).append((sp.start_s, width))
    for (i, cat), xr in bars.items():
        thin = rows[i][1] != "compute"
        h = 0.45 if thin else 0.8
        ax.broken_barh(xr, (i - h / 2, h), facecolors=CATEGORY_COLORS.get(cat, "#999999"),
                       edgecolors="white" if not thin else "none", linewidth=0.3)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"stage {r}" if s == "compute" else f"  {s}" for r, s in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, tl.step_time_s if tl.step_time_s > 0 else None)
    ax.set_xlabel("time in step (s)")
    ax.grid(axis="x", alpha=0.3)
    present = sorted({cat for (_, cat) in bars}, key=list(CATEGORY_COLORS).index)
    ax.legend(handles=[Patch(color=CATEGORY_COLORS[c], label=CATEGORY_LABELS[c]) for c in present],
              loc="upper center", bbox_to_anchor=(0.5, -0.08 if len(rows) > 6 else -0.25), ncol=len(present),
              fontsize=8, frameon=False)
    ax.set_title(title or f"one training step, {tl.num_stages} pipeline stages ({tl.step_time_s:,.3f} s)", fontsize=10)
    fig.tight_layout()
    return fig
