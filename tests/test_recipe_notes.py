"""Recipe facts live beside the runs file (simulator/validation/recipe_notes.yaml), never edited into it."""
from simulator.validation.rows import recipe_notes, with_recipe_notes


def test_recipe_facts_are_appended_once_and_name_their_file():
    facts = recipe_notes()
    assert "mbridge2509-dsv3-671b-1024" in facts and "commit" in facts["mbridge2509-dsv3-671b-1024"]
    row = {"id": "mbridge2509-dsv3-671b-1024", "notes": "Measured on DGX H100."}
    once = with_recipe_notes(row)
    assert once["notes"].startswith("Measured on DGX H100. Recipe")
    assert once["notes"].endswith("[recipe facts: simulator/validation/recipe_notes.yaml]")
    assert with_recipe_notes(once) == once                     # idempotent
    assert row["notes"] == "Measured on DGX H100."             # the caller's row is not changed


def test_rows_without_recipe_facts_are_returned_unchanged():
    row = {"id": "no-such-row", "notes": "x"}
    assert with_recipe_notes(row) is row


def test_a_script_without_use_flash_attn_turns_a_fused_preset_unfused():
    # MindSpeed's preset runs npu_fusion_attention; BLOOM-176B's script does not pass --use-flash-attn
    # (recipe_notes.yaml), so the row is predicted with unfused attention and reports the override
    from simulator.specs.frameworks_loading import framework_for_run
    from simulator.validation.rows import framework_facts
    fw = framework_for_run("mindspeed", 2024)
    on, _ = framework_facts({"notes": "Flash attention, fused RMSNorm."}, fw, "ascend")
    assert on["flash_attention"] is True
    row = with_recipe_notes({"id": "mindspeed24-bloom-176b-96", "notes": "ALiBi positions."})
    off, applied = framework_facts(row, fw, "ascend")
    assert off["flash_attention"] is False
    assert [a[:2] for a in applied] == [("flash_attention", False)]


def test_ascend_mc2_fusion_in_effect_is_tp_comm_overlap_and_a_forced_off_flag_is_not():
    from simulator.specs.frameworks_loading import framework_for_run
    from simulator.validation.rows import framework_facts
    fw = framework_for_run("mindspeed", 2025)
    pangu, applied = framework_facts({"notes": "MC2 compute-communication fusion, NPU Fusion Attention."}, fw, "ascend")
    assert pangu["tp_comm_overlap"] is True and applied[0][:2] == ("tp_comm_overlap", True)
    off, _ = framework_facts(with_recipe_notes({"id": "mindspeed24-llama2-13b-8", "notes": ""}), fw, "ascend")
    assert off["tp_comm_overlap"] is False          # --use-mc2 passed but forced off at that commit


def test_a_recipe_layout_fills_only_the_blank_cells():
    from simulator.validation.rows import recipe_layout
    notes = "Recipe (run_table_1.sh): MBS=2. Recipe layout: vpp 3, micro_batch 2."
    said: list = []
    filled = recipe_layout(notes, {"vpp": None, "micro_batch": None, "tp": 8}, said)
    assert filled == {"vpp": 3, "micro_batch": 2, "tp": 8} and len(said) == 2
    kept = recipe_layout(notes, {"vpp": 5, "micro_batch": None}, [])
    assert kept == {"vpp": 5, "micro_batch": 2}                # a stated cell is never changed
    assert recipe_layout("no recipe here", {"vpp": None}, []) == {"vpp": None}


def test_a_recipe_layout_replaces_cells_the_row_marks_inferred_and_rederives_an_inferred_dp():
    """DeepSpeed-MoE's dense baseline: the runs file inferred tp 1 / ZeRO 1 from a later script version; the script
    as published with the blog (Megatron-DeepSpeed 3c666e85) sets MP_SIZE 8 and ZeRO stage 0: 128 / (8 x 1 x 1) =
    16-way data parallelism."""
    from simulator.validation.rows import recipe_layout
    notes = "Recipe (ds_pretrain_gpt_6.7B_dense.sh). recipe layout: tp 8, zero_stage 0, micro_batch 4."
    known = {"tp": 1, "pp": 1, "dp": 128, "cp": 1, "zero_stage": 1, "micro_batch": None, "sequence_parallel": 0}
    said: list = []
    out = recipe_layout(notes, known, said, frozenset({"tp", "dp", "zero_stage"}), 128)
    assert (out["tp"], out["dp"], out["zero_stage"], out["micro_batch"]) == (8, 16, 0, 4) and len(said) == 3
    stated = recipe_layout(notes, known, [], frozenset({"dp"}), 128)      # tp and ZeRO stated by the source: kept
    assert (stated["tp"], stated["dp"], stated["zero_stage"]) == (1, 128, 1)


def test_narayanan_table_1_rows_run_the_authors_reproduction_layouts():
    """Narayanan et al. 2021 Table 1 as examples/sc21/run_table_1.sh runs it (Megatron-LM de7dc40f88): the 76B row
    interleaves 3 chunks of 5 layers with micro-batch 2, the 1T row does not interleave; the 1.7B-18B rows run
    PyTorch DDP (gradient all-reduce under the backward), the larger ones Megatron's local DDP."""
    from pathlib import Path

    from simulator.validation.rows import load_cases
    runs = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "published_runs.csv"
    cases = {c.id: c for c in load_cases(runs)[1] if hasattr(c, "known")}
    big, small, t1 = cases["narayanan21-t1-76p1b"], cases["narayanan21-t1-1p7b"], cases["narayanan21-t1-1008b"]
    assert (big.known["vpp"], big.known["micro_batch"]) == (3, 2) and not big.overlap_grad_reduce
    assert (t1.known["vpp"], t1.known["micro_batch"]) == (1, 1)
    assert small.known["micro_batch"] == 16 and small.overlap_grad_reduce
