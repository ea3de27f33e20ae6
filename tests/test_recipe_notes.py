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
