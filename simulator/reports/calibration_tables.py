"""Rich renderable of a calibration result (trainsim calibrate). Build, never print: the CLI prints it."""
from __future__ import annotations


def calibration_renderable(results: dict):
    """Per family: fitted parameters (start, fitted), errors per source before and after (and leave-one-source-out),
    warnings (values on a bound) and the overlay file written; then the notes about the given files."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts = []
    for fam, e in results["families"].items():
        parts.append(Text(f"{fam}: {e['rows']} rows, cost {e['cost_start']:.4f} -> {e['cost']:.4f}", style="bold"))
        pt = Table(show_edge=False, pad_edge=False)
        for c in ("parameter", "start", "fitted"):
            pt.add_column(c, justify="left" if c == "parameter" else "right")
        for k, v in e["params"].items():
            pt.add_row(k, f"{e['start'][k]:.4g}", f"{v:.4g}")
        parts.append(pt)
        st = Table(show_edge=False, pad_edge=False)
        st.add_column("source", overflow="ellipsis", no_wrap=True, max_width=48)
        for c in ("n", "MAPE before %", "MAPE after %", "signed after %", "LOSO MAPE %"):
            st.add_column(c, justify="right")
        lo = e.get("leave_one_source_out", {})
        for s, a in e["after"].items():
            b = e["before"][s]
            l = lo.get(s)
            st.add_row(s, str(a["n"]), f"{b['mape_pct']:.1f}", f"{a['mape_pct']:.1f}", f"{a['mean_signed_pct']:+.1f}",
                       f"{l['mape_pct']:.1f}" if l else "")
        parts.append(st)
        for w in e.get("warnings", []):
            parts.append(Text(f"warning: {w}", style="yellow"))
        if e.get("written"):
            parts.append(Text(f"wrote {e['written']}"))
        parts.append(Text(""))
    for n in results.get("notes", []):
        parts.append(Text(f"note: {n}"))
    return Group(*parts)
