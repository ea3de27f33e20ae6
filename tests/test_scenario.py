"""Scenario: every construction path runs the cross-field checks (issue 9 bug b: `Scenario(...)` built directly
skipped them, and a 32-layer model with stage_layers [1, 2, 3] on pp 1 returned MFU 0.81 and no reason)."""
import pytest

from simulator.errors import SpecError
from simulator.specs.layout import Layout
from simulator.specs.loading import load_hardware, load_model
from simulator.specs.scenario import Scenario
from simulator.specs.training import TrainingSpec


def fields(**layout) -> dict:
    return dict(model=load_model("llama2-7b"), hardware=load_hardware("a100-sxm4-80gb"), num_devices=8,
                training=TrainingSpec(seq_len=4096, global_batch=64), layout=Layout(**layout))


@pytest.mark.parametrize("construct", [lambda f: Scenario(**f), Scenario.model_validate],
                         ids=["constructor", "model_validate"])
@pytest.mark.parametrize("layout, needle", [
    (dict(stage_layers=[1, 2, 3]), r"stage_layers has 3 entries; it needs pp\(1\) \* vpp\(1\) = 1"),
    (dict(tp=2, pp=4, stage_layers=[8, 8, 8, 9]), r"sums to 33; model 'llama2-7b' has 32 layers"),
])
def test_a_scenario_built_directly_runs_the_cross_field_checks(construct, layout, needle):
    assert load_model("llama2-7b").num_layers == 32
    with pytest.raises(ValueError, match=needle):
        construct(fields(**layout))


def test_build_reports_the_same_rule_as_a_spec_error():
    with pytest.raises(SpecError, match=r"^scenario: stage_layers has 3 entries"):
        Scenario.build("llama2-7b", "a100-sxm4-80gb", devices=8, global_batch=64, stage_layers=[1, 2, 3])


def test_a_scenario_built_directly_derives_dp_from_the_devices():
    assert Scenario(**fields(tp=2)).layout.dp == 4                    # 8 devices / tp 2
    assert Scenario(**fields(tp=2, dp=2)).layout.dp == 2               # a stated dp is kept (the engine judges it)
    ok = Scenario(**fields(tp=2, pp=4, stage_layers=[7, 8, 8, 9]))
    assert ok.layout.stage_layers == [7, 8, 8, 9] and ok.layout.dp == 1
