"""Batch axes: moving them, and making the batch rules of primitives in a line.

A batch rule (`batch` in `primitive.py`) receives each operand with the position of its
batch axis, or None when the operand does not vary over the batch. These helpers are
what the op modules write their rules with; the interpreter that runs the rules is
`transforms/batching.py` (vmap).
"""
from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------- moving batch axes

def move_batch_axis(x, dim, to, size):
    """x with its batch axis at position `to`; an unbatched x (dim None) is broadcast."""
    if dim is None:
        x = np.expand_dims(x, to)
        shape = list(np.shape(x))
        shape[to] = size
        return np.broadcast_to(x, tuple(shape))
    return x if dim == to else np.moveaxis(x, dim, to)


def batch_to_front(x, dim, rank=None):
    """Batch axis first, then size-1 axes so that the example part has `rank` axes
    (what NumPy broadcasting against unbatched operands of that rank needs)."""
    x = np.moveaxis(x, dim, 0) if dim != 0 else x
    pad = 0 if rank is None else rank - (x.ndim - 1)
    return np.reshape(x, x.shape[:1] + (1,) * pad + x.shape[1:]) if pad > 0 else x


def example_rank(args, dims):
    """The largest rank of the operands without their batch axes."""
    return max((a.ndim if d is None else a.ndim - 1) if hasattr(a, "ndim") else 0
               for a, d in zip(args, dims))


def batch_size(args, dims):
    """The length of the batch axis (from the first batched operand)."""
    return next(np.shape(a)[d] for a, d in zip(args, dims) if d is not None)


# --------------------------------------------------------------------------- rule makers

def broadcasting_rule(prim):
    """Batch rule of a primitive whose operands broadcast like NumPy's: elementwise
    operations, and np.linalg's functions on stacks of matrices (..., m, n)."""
    def rule(args, dims, **params):
        rank = example_rank(args, dims)
        moved = [a if d is None else batch_to_front(a, d, rank) for a, d in zip(args, dims)]
        out = prim.bind(*moved, **params)
        return out, [0] * len(out) if prim.multiple_results else 0
    return rule


def axis_param_rule(prim, name):
    """Batch rule of a one-operand primitive with an axis (int) or axes (tuple) param:
    the batch axis goes first and the parameter shifts by one."""
    def rule(args, dims, **params):
        x = batch_to_front(args[0], dims[0])
        axis = params[name]
        params[name] = axis + 1 if isinstance(axis, int) else tuple(a + 1 for a in axis)
        return prim.bind(x, *args[1:], **params), 0
    return rule


def all_to_front(args, dims):
    """Every operand with the batch axis first (unbatched ones are broadcast)."""
    size = batch_size(args, dims)
    return [move_batch_axis(a, d, 0, size) for a, d in zip(args, dims)]
