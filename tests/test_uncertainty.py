"""Every prediction carries how it is grounded: calibrated (overlay fit record) or transferred (kernel model)."""
import json

import simulator as ts
from simulator.cli import main
from simulator.planning.compare import best_measured_mfu, mfu_warnings
from simulator.specs.loading import load_hardware, profiles_dir
from simulator.specs.overlay import calibration_disabled, family_overlay
from simulator.uncertainty import Uncertainty, uncertainty_for


def test_a_calibrated_profile_reports_its_fit_record():
    u = uncertainty_for(load_hardware("h100-sxm5-80gb"))
    fit = family_overlay(profiles_dir(), "nvidia-hopper").fit
    assert isinstance(u, Uncertainty) and u.kind == "calibrated"
    from simulator.uncertainty import family_errors
    cv = fit.loso_mape_pct if fit.loso_mape_pct is not None else family_errors()["nvidia-hopper"]["loso_mape_pct"]
    assert u.expected_error_pct == cv and "cross-validated" in u.basis
    assert f"calibrated on {fit.rows} runs from {len(fit.sources)} sources" in u.basis
    assert set(u.sources) == set(fit.sources)
    assert set(u.to_dict()) == {"kind", "basis", "expected_error_pct", "sources"}


def test_an_uncalibrated_profile_reports_its_kernel_basis():
    from simulator.costs.kernels import kernel_model_for
    hw = load_hardware("mi300x")
    u = uncertainty_for(hw)
    assert u.kind == "transferred" and kernel_model_for(hw).basis in u.basis
    assert u.expected_error_pct > 0
    with calibration_disabled():                    # --no-calibration: nothing is calibrated
        assert uncertainty_for(load_hardware("h100-sxm5-80gb")).kind == "transferred"


def test_estimate_json_has_the_uncertainty_field(capsys):
    assert main(["estimate", "--model", "llama3-8b", "--hardware", "h100", "--devices", "8", "--global-batch", "8",
                 "--seq-len", "4096", "--tp", "8", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["uncertainty"]["kind"] == "calibrated" and d["uncertainty"]["expected_error_pct"] > 0
    sc = ts.Scenario.build("llama3-8b", "mi300x", devices=8, global_batch=8, seq_len=4096, tp=8)
    assert ts.uncertainty_of(sc).kind == "transferred"


def test_compare_warns_above_the_best_measured_mfu():
    best = best_measured_mfu()
    assert 0 < best["tpu"][0] <= 1                        # the shipped runs hold TPU MFU rows
    rows = [{"hardware": "tpu-v5p", "family": "tpu", "feasible": True, "mfu": best["tpu"][0] + 0.01},
            {"hardware": "tpu-v4", "family": "tpu", "feasible": True, "mfu": best["tpu"][0] - 0.01},
            {"hardware": "x", "family": "no-such-family", "feasible": True, "mfu": 0.3}]
    w = mfu_warnings(rows)
    assert len(w) == 2 and "tpu-v5p" in w[0] and "exceeds the best measured" in w[0] and "unchecked" in w[1]


def test_an_uncalibrated_family_band_is_its_error_on_the_shipped_runs(monkeypatch):
    import simulator.uncertainty as U
    monkeypatch.setattr(U, "family_errors", lambda: {"gaudi": {"rows": 5, "lofo_mape_pct": 154.0}})
    u = U.uncertainty_for(load_hardware("gaudi2"))
    assert u.expected_error_pct == 154.0
    assert "5 shipped runs of gaudi show 154% MAPE" in u.basis


def test_a_family_without_runs_gets_the_worst_leave_one_family_out_error(monkeypatch):
    import simulator.uncertainty as U
    errs = {"tpu": {"rows": 41, "lofo_mape_pct": 21.7}, "gaudi": {"rows": 5, "lofo_mape_pct": 20.7},
            "amd-cdna2": {"rows": 1, "lofo_mape_pct": 67.7},           # one row: too few to stand as a band
            "nvidia-volta": {"rows": 9, "lofo_mape_pct": 23.1}}
    monkeypatch.setattr(U, "family_errors", lambda: errs)
    assert U.unseen_family_error_pct(errs) == 23.1
    u = U.uncertainty_for(load_hardware("mi300x"))                  # amd-cdna3: no shipped runs
    assert u.expected_error_pct == 23.1 and "no shipped runs of amd-cdna3" in u.basis
    u = U.uncertainty_for(load_hardware("mi250x"))                  # amd-cdna2: one run at 67.7%
    assert u.expected_error_pct == 67.7 and "1 shipped run of amd-cdna2" in u.basis
