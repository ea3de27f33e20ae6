"""Shared fixtures: small hand-workable specs."""
from __future__ import annotations

import pytest

from simulator.specs.hardware import HardwareProfile
from simulator.specs.model import ModelSpec


def gpt(name="gpt-test", layers=4, hidden=512, heads=8, vocab=1000, ffn=None, **kw) -> ModelSpec:
    return ModelSpec(name=name, source="test", num_layers=layers, hidden_size=hidden, num_heads=heads,
                     ffn_hidden_size=ffn or 4 * hidden, vocab_size=vocab, **kw)


def toy_hardware(**eff) -> HardwareProfile:
    """A made-up device with round numbers: 100 TFLOP/s, 10 GB, 1 TB/s; 4-device nodes, 100 / 10 GB/s tiers."""
    e = dict(kernel_model="ideal", layer_overhead_us=0.0,
             framework_reserved_gb=0.0, source="test")
    e.update(eff)
    return HardwareProfile.model_validate({
        "name": "toy", "description": "toy", "vendor": "other", "family": "toy",
        "device": {"name": "toy", "peak_tflops": {"bf16": 100.0, "source": "test"}, "memory_gb": 10.0,
                   "memory_bandwidth_tb_per_s": 1.0, "source": "test"},
        "devices_per_node": 4,
        "efficiency": e,
        "tiers": [
            {"name": "fast", "domain_size": 4, "bandwidth_gb_per_s": 100.0, "latency_us": 0.0, "efficiency": 1.0,
             "source": "test"},
            {"name": "slow", "bandwidth_gb_per_s": 10.0, "latency_us": 0.0, "efficiency": 1.0, "source": "test"},
        ],
    })


@pytest.fixture
def toy_hw() -> HardwareProfile:
    return toy_hardware()


def floor_only_framework():
    """The default preset (megatron-core) without its kernel-count host model (host.kernel_host_us null): a layer
    pass's host time is the profile's layer_overhead_us floor alone, so by-hand toy timings see no launches."""
    from simulator.specs.stack import framework_named
    fw = framework_named()
    return fw.model_copy(update={"host": fw.host.model_copy(update={"kernel_host_us": None})})
