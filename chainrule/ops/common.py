"""Helpers shared by the op families: registering NumPy handlers, dtypes, axes,
and the inverse of broadcasting that reverse mode needs everywhere."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..core.errors import NonDifferentiableError, ShapeError
from ..core.ir import aval_of
from ..core.trace import Tracer, handlers


def implements(*keys):
    """Registers the decorated function as what the given NumPy functions, ufuncs or
    method names ("getitem", "setitem", "astype") mean on tracers."""
    def register(fn):
        for k in keys:
            handlers[k] = fn
        return fn
    return register



def as_operand(x, dtype=None):
    """Arrays and tracers pass through; Python scalars and lists become typed arrays."""
    if isinstance(x, (Tracer, np.ndarray, np.generic)):
        return x
    if isinstance(x, (list, tuple)) and any(isinstance(e, Tracer) for e in _flat(x)):
        raise ShapeError("a list containing traced arrays was used as an array; "
                         "combine them with np.stack or np.concatenate first")
    return np.asarray(x, dtype=dtype)


def _flat(xs):
    for e in xs:
        if isinstance(e, (list, tuple)):
            yield from _flat(e)
        else:
            yield e


def result_dtype(*xs) -> np.dtype:
    """NumPy 2 promotion: Python scalars are weak (they take the array's type)."""
    return np.result_type(*[x.dtype if isinstance(x, Tracer) else x for x in xs])


def promote(*xs):
    """Python scalars to arrays of the promoted dtype, so every graph input is typed."""
    for x in xs:
        if not isinstance(x, (Tracer, np.ndarray)):
            break
    else:
        return xs
    kinds = []
    for x in xs:
        if isinstance(x, (Tracer, np.ndarray, np.generic)):
            kinds.append(x.dtype)
        elif type(x) in _WEAK_SCALARS:
            kinds.append(type(x))
        else:
            kinds = None
            break
    dtype = _promoted_dtype(*kinds) if kinds is not None else result_dtype(*xs)
    return [x if isinstance(x, (Tracer, np.ndarray)) else dtype.type(x)
            if isinstance(x, (bool, int, float, complex)) else as_operand(x) for x in xs]


# Python scalars take part in promotion by kind only (NumPy 2's weak scalars).
_WEAK_SCALARS = {bool: False, int: 0, float: 0.0, complex: 0j}


@lru_cache(maxsize=None)
def _promoted_dtype(*kinds) -> np.dtype:
    """result_dtype for operands given as dtypes or Python scalar types."""
    return np.result_type(*[_WEAK_SCALARS[k] if k in _WEAK_SCALARS else k for k in kinds])


@lru_cache(maxsize=None)
def ufunc_dtype(ufunc, *dtypes) -> np.dtype:
    with np.errstate(all="ignore"):
        return ufunc(*[np.ones((), d) for d in dtypes]).dtype


@lru_cache(maxsize=None)
def broadcast_shapes(*shapes) -> tuple:
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ShapeError(f"shapes {' and '.join(map(str, shapes))} cannot be broadcast "
                         f"together") from None


def normalize_axis(axis, ndim) -> int:
    if not -ndim <= axis < max(ndim, 1):
        raise ShapeError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim if ndim else 0


def normalize_axes(axis, ndim) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    return tuple(sorted(normalize_axis(int(a), ndim) for a in axis))


def sum_to_shape(x, shape):
    """Reverse of broadcasting: sums x down to `shape` (the transpose of broadcast_to)."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1)
    if axes:
        x = np.sum(x, axis=axes)
    return np.reshape(x, shape) if x.shape != shape else x


def check_float_dtype(x, what):
    if not np.issubdtype(aval_of(x).dtype, np.inexact):
        raise NonDifferentiableError(f"{what} needs a floating-point array, "
                                     f"got {aval_of(x).dtype}")

