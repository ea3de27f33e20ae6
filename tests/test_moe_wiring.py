"""Issue 15 phase 2: the MoE / network inputs wired into specs, both engines, the CLI and search. Numbers derived
by hand in the comments (toy specs of tests/conftest.py) or taken from the cited figures."""
from __future__ import annotations

import json

import pytest

from simulator.analytic.estimate import estimate
from simulator.cli import main
from simulator.errors import SpecError
from simulator.specs.layout import Layout
from simulator.specs.routing import RoutingSpec
from simulator.specs.scenario import Scenario

MOE = ["estimate", "--model", "mixtral-8x7b", "--hardware", "h100-sxm5-80gb", "--devices", "64", "--tp", "2",
       "--ep", "8", "--global-batch", "256", "--seq-len", "4096", "--format", "json"]


def run(args, capsys):
    try:
        code = main(args)
    except SystemExit as e:                  # argparse's own errors (exit 2)
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- step 1: inputs ----------------------------------------------------------------------------------------------

def test_defaults_are_todays_behaviour_and_explicit_defaults_change_nothing(capsys):
    code, out, _ = run(MOE, capsys)
    base = json.loads(out)
    assert code == 0 and base["layout"]["moe_dispatch"] == "flat" and base["training"]["moe_routing"] is None
    code, out, _ = run(MOE + ["--moe-dispatch", "flat", "--dp-compression", "none", "--local-sgd-tau", "1",
                              "--background-occupancy", "0", "--all-to-all-latency", "per-tier"], capsys)
    assert code == 0 and json.loads(out)["step_time_s"] == base["step_time_s"]


def test_routing_flags_build_one_routing_spec(capsys):
    from simulator.cli.common import scenario_keys
    from simulator.cli import build_parser
    p = build_parser()
    args = p.parse_args(MOE[:-2] + ["--moe-routing", "zipf:1.2", "--moe-capacity-factor", "1.25"])
    assert scenario_keys(args)["moe_routing"] == RoutingSpec(model="zipf", skew=1.2, capacity_factor=1.25)
    args = p.parse_args(MOE[:-2] + ["--moe-imbalance", "1.8"])
    assert scenario_keys(args)["moe_routing"] == RoutingSpec(max_over_mean=1.8)


@pytest.mark.parametrize("flags,message", [
    (["--zero", "1", "--dp-compression", "onebit"], "dp_compression 'onebit' needs zero 0"),
    (["--zero", "0", "--local-sgd-tau", "4", "--dp-compression", "onebit"], "choose one"),
    (["--pp", "3", "--schedule", "dualpipe"], "needs an even pp"),
    (["--moe-routing", "pareto:2"], "balanced, zipf:SKEW or dirichlet"),
    (["--moe-imbalance", "0.5"], "must be >= 1"),
])
def test_bad_moe_and_network_inputs_name_the_rule(capsys, flags, message):
    code, _, err = run(MOE + flags, capsys)
    assert code == 2 and message in " ".join(err.split())


def test_scenario_file_keys_reach_the_specs(tmp_path):
    cluster = tmp_path / "two_sites.yaml"
    cluster.write_text("name: two-sites\nsource: test\ngroups: [{name: a, num_devices: 32}, {name: b, "
                       "num_devices: 32}]\nlinks: [{a: a, b: b, latency_ms: 10, bandwidth_gb_per_s: 1}]\n"
                       "default_link: {latency_ms: 0.01, bandwidth_gb_per_s: 50}\n")
    sc_file = tmp_path / "sc.yaml"
    sc_file.write_text("model: mixtral-8x7b\nhardware: h100-sxm5-80gb\ndevices: 64\nglobal_batch: 256\n"
                       "seq_len: 4096\nep: 8\npp: 2\nmoe_dispatch: node-limited\nmoe_max_nodes: 2\n"
                       "moe_routing: {model: dirichlet, skew: 0.5}\nbackground_occupancy: 0.25\n"
                       "cluster: two_sites.yaml\n")
    from simulator.specs.scenario import read_scenario_file
    sc = Scenario.build(**read_scenario_file(str(sc_file)))
    assert sc.layout.moe_dispatch == "node-limited" and sc.layout.moe_max_nodes == 2
    assert sc.training.moe_routing == RoutingSpec(model="dirichlet", skew=0.5)
    assert sc.network.background_occupancy == 0.25 and sc.network.cluster.name == "two-sites"
    # 2 stages of 32 devices fill the groups in order
    assert sc.network.pipeline_groups(2, 32) == ["a", "b"]


def test_layout_rejects_compression_with_zero():
    with pytest.raises(ValueError, match="needs zero 0"):
        Layout(zero=2, local_sgd_tau=8)
    assert Layout(zero=0, dp_compression="onebit").onebit_warmup_fraction == 0.15
