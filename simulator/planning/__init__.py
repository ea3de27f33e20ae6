"""Planning on top of the engines: layout search, hardware comparison, design-space sweeps."""
