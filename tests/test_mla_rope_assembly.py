"""MLA's RoPE and query/key/value assembly (Megatron-Core's fused MLA RoPE kernels) as memory-bound passes
(costs.layer.mla_rope_assembly_elements / mla_rope_assembly_s)."""
from types import SimpleNamespace

import numpy as np
import pytest

from simulator.costs.layer import mla_rope_assembly_elements, mla_rope_assembly_s


def _model(heads=128, nope=128, rope=64, v=128):
    return SimpleNamespace(num_heads=heads, mla=SimpleNamespace(qk_nope_head_dim=nope, qk_rope_head_dim=rope,
                                                                v_head_dim=v))


def test_deepseek_v2_by_hand():
    # KV kernel: read kv 128 x (128 + 128) + k_pe 64, write key 128 x (128 + 64) and value 128 x 128;
    # Q kernel: read and write the 64-wide rope slice of 128 heads in place.
    kv = 128 * 256 + 64 + 128 * 192 + 128 * 128
    q = 2 * 128 * 64
    assert kv + q == 90176
    assert mla_rope_assembly_elements(_model()) == 90176.0


def test_heads_split_by_tp_rotary_key_not():
    # tp 8: 16 heads per rank x (2 x 128 + 2 x 128 + 3 x 64) + the shared 64-wide rotary key
    assert mla_rope_assembly_elements(_model(), 8) == 16 * 704 + 64


def test_other_attention_zero():
    assert mla_rope_assembly_elements(SimpleNamespace(mla=None, num_heads=64)) == 0.0
    sz = SimpleNamespace(model=SimpleNamespace(mla=None))
    assert mla_rope_assembly_s(sz) == (0.0, 0.0)


def test_time_forward_equals_backward_bytes_over_stream():
    # 4096 tokens x 90176 elements x 2 bytes, the same bytes each way
    sz = SimpleNamespace(model=_model(), tp=1.0, tokens=4096.0, act_bytes=2.0,
                         kernel=SimpleNamespace(stream_s=lambda b: b))
    f, b = mla_rope_assembly_s(sz)
    assert f == b == pytest.approx(2.0 * 4096 * 90176)


def test_layer_costs_add_it_to_both_passes(monkeypatch):
    """The layer's GPU forward and backward carry exactly the assembly time: layer_costs with the function
    replaced by zero is shorter by mla_rope_assembly_s each way (DeepSeek-V2, the SimuMax B200 EP8 row)."""
    import simulator.costs.layer as L
    sz = _deepseek_sizes()
    f, b = L.mla_rope_assembly_s(sz)
    assert float(np.asarray(f).reshape(-1)[0]) > 0.0
    with_it = L.layer_costs(sz)
    monkeypatch.setattr(L, "mla_rope_assembly_s", lambda s: (0.0, 0.0))
    without = L.layer_costs(sz)
    np.testing.assert_allclose(np.asarray(with_it.gpu_fwd_s) - np.asarray(without.gpu_fwd_s), f, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(with_it.gpu_bwd_s) - np.asarray(without.gpu_bwd_s), b, rtol=1e-9)


def _deepseek_sizes():
    from pathlib import Path
    from simulator.analytic.compose import Job, _rows
    from simulator.costs.sizes import sizes
    from simulator.validation.predict import candidate_table, load_cases
    csv = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "published_runs.csv"
    _, items = load_cases(csv)
    c = next(it for it in items if getattr(it, "id", "") == "simumax-b200-deepseekv2-tp1-ep8-pp1-dp8-l4-mbc4")
    table, _, _ = candidate_table(c)
    job = Job(model=c.model, hardware=c.hardware, training=c.training, num_devices=c.num_devices,
              framework=c.framework)
    return sizes(job, _rows(table, np.array([0])))
