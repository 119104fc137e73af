"""Jacobians by cross-country elimination (see `structure` for the cost model)."""
