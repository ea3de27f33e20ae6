"""One label per layout (reports.labels): the same text from a search row, a Layout spec and its dump; the
estimate header and compare's `layout` column show it."""
from simulator.reports.labels import layout_label
from simulator.reports.tables import estimate_renderable
from simulator.specs.layout import Layout

from .test_search import toy_search


def test_label_names_the_axes_above_one_and_the_schedule():
    lay = Layout(tp=8, pp=8, dp=16, vpp=2, micro_batch=1, zero=1, recompute="selective")
    assert layout_label(lay) == "tp 8 pp 8 dp 16 vpp 2 mb 1 zero 1 selective interleaved"   # schedule None: default
    assert layout_label(lay.model_dump()) == layout_label(lay)
    moe = Layout(tp=2, pp=1, dp=8, ep=4, cp=2, zero=3, recompute="full", schedule="1f1b")
    assert layout_label(moe) == "tp 2 pp 1 dp 8 cp 2 ep 4 mb 1 zero 3 full 1f1b"


def test_a_search_row_and_its_scenario_have_the_same_label():
    r = toy_search(devices=8, global_batch=16)
    for i in (0, 5):
        row = r.frame.iloc[i]
        assert layout_label(row) == layout_label(r.scenario(row).layout)


def test_the_estimate_header_shows_the_label():
    from rich.console import Console
    from simulator.analytic.estimate import estimate
    r = toy_search(devices=8, global_batch=16)
    est = estimate(r.scenario(r.frame.iloc[0]))
    con = Console(width=300, record=True)
    con.print(estimate_renderable(est.to_dict()))
    assert layout_label(est.scenario.layout) in con.export_text()
