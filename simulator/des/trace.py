"""Timelines of the discrete-event engine as a Chrome trace (Perfetto, chrome://tracing).

Built, never written: `chrome_trace()` returns the JSON-ready dict and the CLI writes it (the Gantt chart of
the same timeline is `reports.plots.gantt_figure`; the engine never imports matplotlib). One trace process per
pipeline stage (per stage and replica group when stragglers split the replicas), one thread per stream (compute, pp, dp,
gather); spans that overlap within one stream go to extra threads named "<stream> (2)", ... so that every
thread holds properly nested slices. Trace Event Format: https://docs.google.com/document/d/
1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU (complete events "X", metadata "M", microseconds).
"""
from __future__ import annotations

from .engine import Span, Timeline

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
