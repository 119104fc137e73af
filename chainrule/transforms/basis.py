"""Jacobians on a structured identity basis.

`jacfwd` evaluates the linear graph on all basis vectors of an input at once, and
`jacrev` runs the backward pass on all basis cotangents at once (the tape's templates,
or the adjoint graph, under vmap's interpreter). Stored densely,
that batch is an identity matrix, and the first operation it meets costs as if it were
any matrix: for `A @ x` a full matrix product A @ I. Here the batch starts as a
`DiagonalBatch` and keeps that form through the primitives whose `diagonal` rule knows
it (elementwise scaling, negation, sums, reshapes, contractions, full reductions), so
that, for example, A @ I costs a copy of A; any other primitive gets the dense batch.
"""
from __future__ import annotations

import numpy as np

from ..core.ir import aval_of
from ..core.primitive import DiagonalBatch, diagonal_rules
from .batching import apply_batched


def identity_basis(x) -> DiagonalBatch:
    """The standard basis of x's space, batched along a leading axis."""
    aval = aval_of(x)
    return DiagonalBatch(np.ones(aval.shape, aval.dtype))


def apply_structured(prim, vals, dims, size, params):
    """apply_batched, with a primitive's diagonal rule first when it meets a DiagonalBatch."""
    if any(type(v) is DiagonalBatch for v in vals):
        rule = diagonal_rules.get(prim)
        out = None if rule is None else rule(vals, dims, **params)
        if out is not None:
            return (out, 0) if type(out) is DiagonalBatch else out
        vals = [v.dense() if type(v) is DiagonalBatch else v for v in vals]
    return apply_batched(prim, vals, dims, size, params)
