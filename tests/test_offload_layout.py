"""Offload as layout fields: the Layout spec, the LayoutTable codes, scenario keys and CLI flags."""
import json

import numpy as np
import pytest

from simulator.cli import main
from simulator.errors import SpecError
from simulator.specs.layout import OFFLOAD_CODES, Layout
from simulator.specs.layout_table import LayoutTable
from simulator.specs.scenario import Scenario

JOB = ["--model", "llama2-7b", "--hardware", "h100-sxm5-80gb", "--devices", "8", "--global-batch", "16",
       "--seq-len", "4096"]


def test_offload_fields_default_to_nothing_offloaded():
    lay = Layout()
    assert (lay.offload_optimizer, lay.offload_params, lay.offload_activations, lay.offload_delayed_update) == \
        ("none", "none", "none", False)


def test_layout_table_holds_the_tier_codes():
    t = LayoutTable.from_layouts([Layout(dp=1), Layout(dp=1, zero=3, offload_optimizer="nvme", offload_params="cpu",
                                                      offload_activations="cpu", offload_delayed_update=True)])
    assert t.offload_optimizer.tolist() == [0, 2] and t.offload_params.tolist() == [0, 1]
    assert t.offload_activations.tolist() == [0, 1] and t.offload_delayed_update.tolist() == [False, True]
    cols = LayoutTable.from_columns(dp=np.array([1, 2]), offload_optimizer=np.array(["cpu", "none"]))
    assert cols.offload_optimizer.tolist() == [OFFLOAD_CODES["cpu"], 0] and cols.offload_params.tolist() == [0, 0]


def test_activation_checkpoints_go_to_cpu_only_and_the_delayed_update_needs_optimizer_offload():
    with pytest.raises(ValueError, match="offload_activations"):
        Layout(offload_activations="nvme")
    with pytest.raises(ValueError, match="offload_delayed_update needs offload_optimizer"):
        Layout(offload_delayed_update=True)


def test_scenario_keys_reach_the_layout(tmp_path):
    sc = Scenario.build("llama2-7b", "h100-sxm5-80gb", 8, 16, seq_len=4096, zero=3, offload_params="nvme",
                        offload_optimizer="cpu")
    assert (sc.layout.offload_params, sc.layout.offload_optimizer) == ("nvme", "cpu")
    f = tmp_path / "s.yaml"
    f.write_text("offload_optimizer: gpu\n")
    with pytest.raises(SpecError, match="offload_optimizer"):
        from simulator.specs.scenario import read_scenario_file
        read_scenario_file(str(f))


def test_cli_flags_and_scenario_file_set_the_offload_fields(capsys, tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("offload_activations: cpu\nzero: 2\n")
    code = main(["estimate", *JOB, "--scenario", str(f), "--offload-optimizer", "cpu", "--offload-delayed-update",
                 "on", "--format", "json"])
    lay = json.loads(capsys.readouterr().out)["layout"]
    assert code == 0
    assert (lay["offload_optimizer"], lay["offload_params"], lay["offload_activations"],
            lay["offload_delayed_update"]) == ("cpu", "none", "cpu", True)


def test_bad_offload_flag_exits_2(capsys):
    assert main(["estimate", *JOB, "--offload-params", "gpu"]) == 2
    assert "--offload-params" in capsys.readouterr().err
    assert main(["estimate", *JOB, "--offload-delayed-update", "on"]) == 2
    assert "offload_delayed_update needs offload_optimizer" in capsys.readouterr().err
