"""Every shipped profile and preset loads, names are stable, figures are sourced and plausible."""
import pytest

from simulator.costs.flops import model_costs
from simulator.specs.loading import available_models, available_profiles, load_hardware, load_model

STABLE_PROFILES = ["v100-sxm2-32gb", "a100-sxm4-40gb", "a100-sxm4-80gb", "a800-sxm4-80gb", "h100-sxm5-80gb",
                   "h800-sxm5-80gb", "h200-sxm-141gb", "b200", "gb200-nvl72", "gb300-nvl72", "mi250x", "mi300x",
                   "tpu-v3", "tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e", "ascend-910", "ascend-910b", "gaudi2",
                   "gaudi3"]
REQUIRED_MODELS = ["gpt3-175b", "megatron-1.7b", "megatron-1008b", "megatron-22b", "megatron-530b", "megatron-1t",
                   "llama2-7b", "llama2-13b", "llama2-70b", "llama3-8b", "llama3-70b", "llama3-405b",
                   "mixtral-8x7b", "mixtral-8x22b", "deepseek-v3", "palm-540b", "gopher-280b", "mt-nlg-530b",
                   "bloom-176b", "opt-175b", "glm-130b"]


@pytest.mark.parametrize("name", STABLE_PROFILES)
def test_stable_profile_loads_with_sources(name):
    hw = load_hardware(name)
    assert hw.name == name
    assert hw.device.source and hw.device.peak_tflops.source and hw.efficiency.source
    assert all(t.source for t in hw.tiers)
    assert 10e12 < hw.peak_flops_per_s("bf16") < 10e15
    assert hw.tiers[-1].domain_size is None


def test_all_profiles_listed():
    assert set(STABLE_PROFILES) <= set(available_profiles())


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_required_model_loads(name):
    m = load_model(name)
    assert m.name == name and m.source


@pytest.mark.parametrize("name,params_b", [("gpt3-175b", 175), ("llama3-405b", 405), ("llama2-70b", 69),
                                           ("mixtral-8x7b", 46.7), ("deepseek-v2", 236), ("deepseek-v3", 671),
                                           ("palm-540b", 540),
                                           ("bloom-176b", 176), ("megatron-1t", 1008)])
def test_published_parameter_counts(name, params_b):
    """Within 2% of the published size (biases and position embeddings are not modelled)."""
    m = load_model(name)
    assert model_costs(m, 2048).total_params(m.tied_embeddings) / 1e9 == pytest.approx(params_b, rel=0.02)


def test_every_model_preset_loads():
    for name in available_models():
        load_model(name)
