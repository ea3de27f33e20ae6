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


def test_a_recipe_layout_fills_only_the_blank_cells():
    from simulator.validation.rows import recipe_layout
    notes = "Recipe (run_table_1.sh): MBS=2. Recipe layout: vpp 3, micro_batch 2."
    said: list = []
    filled = recipe_layout(notes, {"vpp": None, "micro_batch": None, "tp": 8}, said)
    assert filled == {"vpp": 3, "micro_batch": 2, "tp": 8} and len(said) == 2
    kept = recipe_layout(notes, {"vpp": 5, "micro_batch": None}, [])
    assert kept == {"vpp": 5, "micro_batch": 2}                # a stated cell is never changed
    assert recipe_layout("no recipe here", {"vpp": None}, []) == {"vpp": None}


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
