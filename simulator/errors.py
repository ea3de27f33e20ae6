"""The two kinds of failure a user can meet.

`SpecError` is bad input (a wrong value, an unknown name, a malformed file): the CLI prints its message and
exits 2. `InfeasibleLayoutError` is valid input that cannot run (tp does not divide the heads, the memory does
not fit, ...): it carries every reason and the CLI exits 3.
"""
from __future__ import annotations


class SpecError(ValueError):
    """Bad user input; the message names the field, the value and the rule."""


class InfeasibleLayoutError(RuntimeError):
    """A valid layout that cannot run. `reasons` lists every reason, `result` the estimate if one was made."""

    def __init__(self, reasons: list[str], result=None):
        self.reasons = list(reasons)
        self.result = result
        super().__init__("infeasible layout:\n" + "\n".join(f"  - {r}" for r in self.reasons))
