"""Reports: rich tables and matplotlib figures built from results (no printing here)."""
