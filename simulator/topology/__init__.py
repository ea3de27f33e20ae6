"""Cluster topology: rank placement, collective algorithms, networkx graph."""
