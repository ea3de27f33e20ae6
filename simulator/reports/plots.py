"""Figures from result DataFrames (matplotlib, Agg; no pyplot, so no global figure state).

Every function takes a DataFrame (a SearchResult.frame or a compare frame) and returns a matplotlib Figure;
the caller saves it (`save(fig, path)`). Nothing here runs an engine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from ..feasibility import R_MEMORY
from ..units import GIGA
from .labels import layout_label
from .search_tables import token_text

#: Step-time breakdown columns, their labels and colours (compute first, overheads last).
BREAKDOWN = (
    ("time_compute_s", "compute", "#4C72B0"),
    ("time_elementwise_s", "elementwise", "#64B5CD"),
    ("time_fp8_cast_s", "FP8 casts / int8 quantisation", "#CCB974"),
    ("time_host_s", "host-bound", "#8C8C8C"),
    ("time_recompute_s", "recompute", "#8DA0CB"),
    ("time_tp_comm_s", "TP comm", "#DD8452"),
    ("time_cp_comm_s", "CP comm", "#E5C494"),
    ("time_ep_comm_s", "EP all-to-all", "#B3B3B3"),
    ("time_pp_comm_s", "PP send/recv", "#937860"),
    ("time_bubble_s", "pipeline bubble", "#C44E52"),
    ("time_dp_comm_s", "DP/ZeRO comm", "#55A868"),
    ("time_offload_s", "offload", "#2CA02C"),
    ("time_optimizer_s", "optimizer", "#8172B3"),
    ("time_overhead_s", "fixed overhead", "#DA8BC3"),
)
VENDOR_COLOURS = {"nvidia": "#76B900", "amd": "#ED1C24", "google": "#4285F4", "huawei": "#8C564B",
                  "intel": "#17BECF", "other": "#7F7F7F"}



def save(fig: Figure, path) -> Path:
    """Write a figure as PNG (folders created); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=130, bbox_inches="tight")
    return p


def _title(meta: dict | None, what: str) -> str:
    if not meta:
        return what
    return (f"{what}\n{meta.get('model', '')} on {meta.get('devices', 0):,} x {meta.get('hardware', '')}, "
            f"batch {meta.get('global_batch', 0):,} x seq {meta.get('seq_len', 0):,}")


def tp_pp_heatmap(frame: pd.DataFrame, meta: dict | None = None, value: str = "tokens_per_s") -> Figure:
    """Best `value` over feasible candidates for each (tp, pp); cells with candidates but none feasible are
    marked 'x', combinations never enumerated are blank."""
    tps = np.sort(frame["tp"].unique())
    pps = np.sort(frame["pp"].unique())
    feas = frame[frame["feasible"]]
    best = feas.groupby(["tp", "pp"], observed=True)[value].max()
    grid = np.full((len(pps), len(tps)), np.nan)
    exists = np.zeros_like(grid, dtype=bool)
    ti = {t: i for i, t in enumerate(tps)}
    pi = {p: i for i, p in enumerate(pps)}
    for (t, p), v in best.items():
        grid[pi[p], ti[t]] = v
    for t, p in frame[["tp", "pp"]].drop_duplicates().itertuples(index=False):
        exists[pi[p], ti[t]] = True
    scale, unit = (1e3, "k tokens/s") if value == "tokens_per_s" else (1.0, value)
    fig = Figure(figsize=(1.1 * len(tps) + 2.5, 0.6 * len(pps) + 2.0))
    ax = fig.subplots()
    cmap = LinearSegmentedColormap.from_list("tput", ["#f7fbff", "#6baed6", "#08306b"]).with_extremes(bad="#eeeeee")
    im = ax.imshow(np.ma.masked_invalid(grid / scale), cmap=cmap, aspect="auto", origin="lower")
    vmax = np.nanmax(grid) if np.isfinite(grid).any() else 1.0
    for i in range(len(pps)):
        for j in range(len(tps)):
            v = grid[i, j]
            if np.isfinite(v):
                dark = v / vmax > 0.6
                ax.text(j, i, f"{v / scale:,.0f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black", fontweight="bold" if v == vmax else "normal")
            elif exists[i, j]:
                ax.text(j, i, "x", ha="center", va="center", fontsize=9, color="#999999")
    if np.isfinite(grid).any():
        bi, bj = np.unravel_index(np.nanargmax(grid), grid.shape)
        ax.add_patch(_rect(bj, bi))
    ax.set_xticks(range(len(tps)), [str(t) for t in tps])
    ax.set_yticks(range(len(pps)), [str(p) for p in pps])
    ax.set_xlabel("tensor parallel (tp)")
    ax.set_ylabel("pipeline parallel (pp)")
    ax.set_title(_title(meta, f"best throughput per tp x pp ({unit}; x = nothing fits)"), fontsize=10)
    fig.colorbar(im, ax=ax, label=unit, shrink=0.85)
    return fig


def _rect(j, i):
    from matplotlib.patches import Rectangle
    return Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#e6550d", linewidth=2.0)


def memory_throughput_scatter(frame: pd.DataFrame, meta: dict | None = None, max_points: int = 20000,
                              seed: int = 0) -> Figure:
    """Per-device memory vs throughput of every candidate (a sample when there are many), the device capacity,
    and the Pareto front of the feasible ones."""
    from ..planning.search import pareto_front

    rng = np.random.default_rng(seed)

    def sample(df):
        return df if len(df) <= max_points else df.iloc[np.sort(rng.choice(len(df), max_points, replace=False))]

    fig = Figure(figsize=(8, 5.2))
    ax = fig.subplots()
    feas = frame[frame["feasible"]]
    # layouts that can be formed but do not fit (memory the only reason); those that cannot be formed have no
    # throughput (search blanks it) and are not drawn
    mem_only = frame[frame["reasons"].to_numpy() == R_MEMORY] if "reasons" in frame else frame.iloc[:0]
    if len(mem_only):
        s = sample(mem_only)
        ax.scatter(s["mem_total_bytes"] / GIGA, s["tokens_per_s"] / 1e3, s=4, c="#cccccc", alpha=0.5,
                   label=f"does not fit ({len(mem_only):,})", rasterized=True, linewidths=0)
    if len(feas):
        s = sample(feas)
        ax.scatter(s["mem_total_bytes"] / GIGA, s["tokens_per_s"] / 1e3, s=5, c="#6baed6", alpha=0.6,
                   label=f"feasible ({len(feas):,})", rasterized=True, linewidths=0)
        front = pareto_front(frame)
        ax.plot(front["mem_total_bytes"] / GIGA, front["tokens_per_s"] / 1e3, "-o", color="#e6550d", ms=4, lw=1.5,
                drawstyle="steps-post", label=f"Pareto front ({len(front)})")
        b = feas.iloc[0]
        ax.annotate(f"best: {layout_label(b)}", (b["mem_total_bytes"] / GIGA, b["tokens_per_s"] / 1e3),
                    xytext=(25, 25), textcoords="offset points", ha="left", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="#999999", lw=0.5),
                    arrowprops=dict(arrowstyle="-", color="#555555", lw=0.8))
    if "mem_capacity_bytes" in frame and len(frame):
        cap = float(frame["mem_capacity_bytes"].iloc[0]) / GIGA
        ax.axvline(cap, color="#444444", ls="--", lw=1)
        ax.text(cap, 0.02, f" {cap:,.0f} GB capacity", transform=ax.get_xaxis_transform(), fontsize=8,
                color="#444444")
    if len(frame):
        # show up to 2.5x the capacity: the feasible region and the near misses (farther points are clipped)
        hi = float(np.nanpercentile(frame["mem_total_bytes"], 95)) / GIGA
        cap = float(frame["mem_capacity_bytes"].iloc[0]) / GIGA if "mem_capacity_bytes" in frame else hi
        right = min(hi * 1.1, 2.5 * cap) if hi > cap else cap * 1.15
        ax.set_xlim(0, right)
        beyond = int((frame["mem_total_bytes"] / GIGA > right).sum())
        if beyond:
            ax.text(0.99, 0.98, f"{beyond:,} candidates beyond {right:,.0f} GB not shown", ha="right", va="top",
                    transform=ax.transAxes, fontsize=7, color="#777777")
    ax.set_xlabel("memory per device (GB)")
    ax.set_ylabel("throughput (k tokens/s)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8, markerscale=2, frameon=False)
    ax.set_title(_title(meta, "memory vs throughput"), fontsize=10)
    return fig


def breakdown_bars(frame: pd.DataFrame, n: int = 8, meta: dict | None = None) -> Figure:
    """Step-time breakdown (stacked, seconds) of the best n feasible candidates, best on top."""
    top = frame[frame["feasible"]].head(n)
    fig = Figure(figsize=(9, 0.45 * max(len(top), 1) + 1.8))
    ax = fig.subplots()
    y = np.arange(len(top))[::-1]
    left = np.zeros(len(top))
    for col, label, colour in BREAKDOWN:
        if col not in top:
            continue
        v = top[col].to_numpy(dtype=float)
        if not (v > 0).any():
            continue
        ax.barh(y, v, left=left, color=colour, label=label, height=0.7, edgecolor="white", linewidth=0.5)
        left += v
    for yi, (_, r) in zip(y, top.iterrows()):
        ax.text(r["step_time_s"], yi, f" {r['step_time_s']:.2f} s  MFU {r['mfu'] * 100:.1f}%", va="center",
                fontsize=8)
    ax.set_yticks(y, [f"#{int(r['rank'])} {layout_label(r)}" for _, r in top.iterrows()], fontsize=8)
    ax.set_xlabel("step time (s)")
    if len(top):
        ax.set_xlim(0, float(top["step_time_s"].max()) * 1.3)
    if len(top):
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.25 / max(len(top), 1)), ncol=5, fontsize=8,
                  frameon=False)
    ax.set_title(_title(meta, f"step-time breakdown of the top {len(top)} layouts"), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


COMPARE_METRICS = (
    ("mfu", "MFU (%)", 100.0),
    ("tokens_per_s", "throughput (M tokens/s)", 1e-6),
    ("time_to_train_s", "time to train (days)", 1.0 / 86400.0),
    ("cost_usd", "cost to train (M USD)", 1e-6),
    ("energy_kwh", "energy to train (MWh)", 1e-3),
)


def compare_bars(frame: pd.DataFrame, meta: dict | None = None) -> Figure:
    """Grouped bars: one panel per metric, one bar per hardware profile (coloured by vendor); 'n/a' where a
    profile lacks the price or power figure, 'no fit' where no layout fits."""
    metrics = [m for m in COMPARE_METRICS if m[0] in frame]
    fig = Figure(figsize=(3.0 * len(metrics) + 1.0, 4.6))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    names = frame["hardware"].tolist()
    if meta and meta.get("budget_per_hour") and "devices" in frame:       # budget mode: each bar's device count
        names = [f"{h} ({int(d):,})" for h, d in zip(names, frame["devices"])]
    colours = [VENDOR_COLOURS.get(v, "#7f7f7f") for v in frame.get("vendor", ["other"] * len(frame))]
    x = np.arange(len(frame))
    for ax, (col, label, scale) in zip(axes, metrics):
        vals = frame[col].to_numpy(dtype=float) * scale
        ok = np.isfinite(vals) & frame["feasible"].to_numpy()
        # error bars: the expected relative error of each profile's grounding (uncertainty.py); every panel is
        # proportional (or inversely proportional) to the step time, so the same fraction applies
        rel = (frame["uncertainty_pct"].to_numpy(dtype=float) / 100.0 if "uncertainty_pct" in frame
               else np.zeros(len(frame)))
        yerr = np.where(np.isfinite(rel), rel, 0.0) * np.where(np.isfinite(vals), vals, 0.0)
        upper = np.minimum(yerr, 100.0 - vals) if col == "mfu" else yerr        # MFU cannot pass 100%
        ax.bar(x[ok], vals[ok], color=[c for c, o in zip(colours, ok) if o], edgecolor="#333333", linewidth=0.5,
               yerr=np.vstack([np.minimum(yerr, vals), upper])[:, ok], ecolor="#444444", capsize=3,
               error_kw={"elinewidth": 0.8})
        if col == "mfu" and "best_measured_mfu" in frame:
            bm = frame["best_measured_mfu"].to_numpy(dtype=float) * scale
            for xi, b in zip(x, bm):
                if np.isfinite(b):
                    ax.plot([xi - 0.4, xi + 0.4], [b, b], color="#d62728", linewidth=1.2)
        top = np.nanmax((vals + upper)[ok]) if ok.any() else 1.0
        for xi, v, o, feas in zip(x, vals, ok, frame["feasible"]):
            if o:
                ax.text(xi, v + top * 0.01, f"{v:,.3g}", ha="center", va="bottom", fontsize=7)
            else:
                ax.text(xi, top * 0.02, "no fit" if not feas else "n/a", ha="center", va="bottom", fontsize=7,
                        color="#777777")
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.set_ylim(0, top * 1.15)
        ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch
    vendors = list(dict.fromkeys(frame.get("vendor", ["other"] * len(frame))))
    fig.legend(handles=[Patch(facecolor=VENDOR_COLOURS.get(v, "#7f7f7f"), edgecolor="#333333", label=v)
                        for v in vendors], loc="upper right", ncol=len(vendors), fontsize=8, frameon=False)
    if meta:
        devs = frame["devices"].unique() if "devices" in frame else []
        dev_text = f"{int(devs[0]):,} devices" if len(devs) == 1 else "devices per budget"
        if meta.get("budget_per_hour"):
            dev_text = f"budget ${meta['budget_per_hour']:,.0f}/h (devices in brackets)"
        fig.suptitle(f"{meta.get('model', '')}: {dev_text}, batch {meta.get('global_batch', 0):,} x seq "
                     f"{meta.get('seq_len', 0):,}, {token_text(meta.get('tokens', 0))} tokens "
                     f"(best layout per profile)", fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


#: Colours of the hardware families in the validation plot (others cycle through the default palette).
FAMILY_COLOURS = {"nvidia-ampere": "#76B900", "nvidia-hopper": "#1A7F37", "nvidia-volta": "#A3C57A",
                  "nvidia-blackwell": "#0B4F2C", "tpu": "#4285F4", "ascend": "#C7000B", "amd-cdna2": "#ED1C24",
                  "amd-cdna3": "#8B0000", "gaudi": "#0071C5"}


def validation_figure(report):
    """Predicted vs measured of the predicted rows, log axes, y = x and +/-10% bands, coloured by family.

    Each metric is normalised by its own measured median so that step times, rates and utilisations share one
    pair of axes; the ratio predicted/measured (what the bands show) is unchanged by that scaling."""
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.add_subplot(1, 1, 1)
    ok = [r for r in report.ok_rows if r.predicted and r.measured and r.predicted > 0 and r.measured > 0]
    med = {}
    for m in {r.metric for r in ok}:
        med[m] = float(np.median([r.measured for r in ok if r.metric == m]))
    fams = sorted({r.family or r.hardware for r in ok})
    palette = iter(["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"])
    markers = {"step_time_s": "o", "tokens_per_s_per_device": "s", "mfu": "^", "hfu": "v",
               "tflops_per_device": "D", "memory_gb": "x"}
    lo, hi = np.inf, 0.0
    for fam in fams:
        colour = FAMILY_COLOURS.get(fam) or next(palette, "#333333")
        for metric, mk in markers.items():
            pts = [(r.measured / med[r.metric], r.predicted / med[r.metric]) for r in ok
                   if (r.family or r.hardware) == fam and r.metric == metric]
            if not pts:
                continue
            x, y = np.array(pts).T
            lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
            ax.scatter(x, y, s=22, marker=mk, color=colour, alpha=0.75, linewidths=0.8,
                       label=f"{fam} / {metric}")
    if not ok:
        lo, hi = 0.1, 10.0
    lo, hi = lo / 1.3, hi * 1.3
    xs = np.geomspace(lo, hi, 50)
    ax.plot(xs, xs, color="black", lw=1, label="y = x")
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="grey", alpha=0.2, label="+/-10%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured / median measured of the metric")
    ax.set_ylabel("predicted / median measured of the metric")
    s = report.summary
    if s["n"]:
        ax.set_title(f"trainsim validate: {s['n']} rows, MAPE {s['mape_pct']:.1f}%, median {s['median_ape_pct']:.1f}%, "
                     f"max {s['max_ape_pct']:.1f}%", fontsize=10)
    ax.legend(fontsize=6, loc="upper left", ncol=1, frameon=False)
    ax.grid(True, which="both", alpha=0.2)
    return fig


#: Colours of span categories (op kinds and communication) in the Gantt chart.
CATEGORY_COLORS = {"F": "#4C72B0", "B": "#DD8452", "W": "#55A868", "optimizer": "#8172B3", "pp": "#937860",
                   "dp": "#C44E52", "offload": "#2CA02C"}
CATEGORY_LABELS = {"F": "forward", "B": "backward", "W": "weight gradient (ZB)", "optimizer": "optimizer step",
                   "pp": "pipeline send", "dp": "DP / ZeRO collective", "offload": "host link / CPU optimizer"}


def gantt_figure(tl, title: str = "", group: int | None = None, max_stages: int = 64,
                 min_comm_width: float = 0.0015):
    """Gantt chart of a discrete-event timeline (des.engine.Timeline): one row per (stage, stream), bars coloured by op kind and communication.

    `group` picks the replica group to draw (default: the first); at most `max_stages` stages are drawn.
    Communication bars are drawn at least `min_comm_width` of the step wide so that short sends stay visible.
    """
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
