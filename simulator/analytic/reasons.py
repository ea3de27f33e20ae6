"""Moved to simulator.feasibility (one table of rules: bit, name, check, message); re-exported here."""
from ..feasibility import describe  # noqa: F401
