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
