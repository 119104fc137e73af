"""Transformations of graphs: forward mode and linearization, transposition."""
