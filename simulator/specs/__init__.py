"""Validated input specs."""
