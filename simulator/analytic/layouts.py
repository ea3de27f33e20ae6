"""Moved to simulator.specs.layout_table (the cost functions of both engines take it); re-exported here."""
from ..specs.layout_table import BOOL_COLUMNS, INT_COLUMNS, LayoutTable  # noqa: F401
