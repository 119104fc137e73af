"""NumPy functions composed from the primitives of the other families. They need no
rules of their own: their derivatives (of any order) follow from the primitives they are
made of, and so do their nonsmooth conventions (copysign and heaviside inherit abs's and
sign's, ptp and the nan-reductions max's and min's, median and quantile sort's).

Indices that depend on values (np.nonzero, the brackets of interp and quantile) are
taken from the concrete values, so these functions need values (not only shapes).
"""
from __future__ import annotations

import numpy as np

from ..core.errors import ConcretizationError, ShapeError
from ..core.trace import concrete
from .common import as_operand, implements, normalize_axes, normalize_axis, promote
from .shape import concatenate, reshape


def _value_of(x, what):
    """The concrete value of x, for a computation that needs it (an index)."""
    value = concrete(x)
    if value is None:
        raise ConcretizationError(
            f"{what} needs the values of its argument to choose indices, but only shapes "
            f"are known here (inside jit); compute it outside jit or with a fixed mask")
    return np.asarray(value)


def _take(a, indices, axis):
    """a at integer positions `indices` along axis (a plain-index gather)."""
    return a[(slice(None),) * axis + (np.asarray(indices, dtype=np.intp),)]


# --------------------------------------------------------------------------- elementwise

implements(np.fabs)(lambda x: np.abs(x))
implements(np.float_power)(lambda x, y: np.power(*[v.astype(np.float64)
                                                   for v in promote(x, y)]))
implements(np.copysign)(lambda x, y: np.abs(x) * np.where(np.signbit(y), -1.0, 1.0))


@implements(np.heaviside)
def heaviside(x, h):
    """0 for x < 0, h at 0, 1 for x > 0: piecewise constant in x."""
    x, h = promote(x, h)
    return np.where(x < 0, 0.0, np.where(x > 0, 1.0, h))


@implements(np.sinc)
def sinc(x):
    """sin(pi x)/(pi x); a Taylor polynomial near 0 keeps every derivative exact there."""
    z = np.pi * as_operand(x)
    near_zero = np.abs(z) < 1e-3
    safe = np.where(near_zero, 1.0, z)
    z2 = z * z
    return np.where(near_zero, 1 - z2 / 6 + z2 * z2 / 120, np.sin(safe) / safe)


@implements(np.nan_to_num)
def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    x = as_operand(x)
    if not np.issubdtype(x.dtype, np.inexact):
        return x
    big = np.finfo(x.dtype).max
    x = np.where(np.isnan(x), nan, x)
    x = np.where(np.isposinf(x), big if posinf is None else posinf, x)
    return np.where(np.isneginf(x), -big if neginf is None else neginf, x)


implements(np.isposinf)(lambda x, out=None: np.isinf(x) & ~np.signbit(x))
implements(np.isneginf)(lambda x, out=None: np.isinf(x) & np.signbit(x))


@implements(np.select)
def select(condlist, choicelist, default=0):
    if len(condlist) != len(choicelist):
        raise ShapeError(f"np.select: {len(condlist)} conditions but {len(choicelist)} "
                         f"choices")
    out = default
    for cond, choice in reversed(list(zip(condlist, choicelist))):
        out = np.where(cond, choice, out)
    return out


# --------------------------------------------------------------------------- differences, products

@implements(np.diff)
def diff(a, n=1, axis=-1, prepend=np._NoValue, append=np._NoValue):
    a = as_operand(a)
    axis = normalize_axis(axis, a.ndim)
    edges = []
    for extra in (prepend, append):
        if extra is np._NoValue:
            edges.append([])
            continue
        extra = as_operand(extra)
        if extra.ndim == 0:
            shape = list(a.shape)
            shape[axis] = 1
            extra = np.broadcast_to(extra, tuple(shape))
        edges.append([extra])
    a = concatenate(edges[0] + [a] + edges[1], axis) if edges[0] or edges[1] else a
    for _ in range(n):
        a = _take(a, range(1, a.shape[axis]), axis) - _take(a, range(a.shape[axis] - 1), axis)
    return a


@implements(np.ptp)
def ptp(a, axis=None, out=None, keepdims=False):
    return np.max(a, axis=axis, keepdims=keepdims) - np.min(a, axis=axis, keepdims=keepdims)


@implements(np.cross)
def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """Cross product of 3-vectors (or the z-component for 2-vectors), broadcasting."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = np.moveaxis(as_operand(a), axisa, -1), np.moveaxis(as_operand(b), axisb, -1)
    if a.shape[-1] not in (2, 3) or b.shape[-1] not in (2, 3):
        raise ShapeError(f"np.cross needs vectors of length 2 or 3, got shapes {a.shape} "
                         f"and {b.shape} along the vector axis")
    ax, ay = a[..., 0], a[..., 1]
    bx, by = b[..., 0], b[..., 1]
    z = ax * by - ay * bx
    if a.shape[-1] == 2 and b.shape[-1] == 2:
        return z
    az = a[..., 2] if a.shape[-1] == 3 else np.zeros_like(ax)
    bz = b[..., 2] if b.shape[-1] == 3 else np.zeros_like(bx)
    out = np.stack([ay * bz - az * by, az * bx - ax * bz, z], -1)
    return np.moveaxis(out, -1, axisc)


@implements(np.kron)
def kron(a, b):
    a, b = promote(a, b)
    ndim = max(np.ndim(a), np.ndim(b))
    sa = (1,) * (ndim - np.ndim(a)) + np.shape(a)
    sb = (1,) * (ndim - np.ndim(b)) + np.shape(b)
    spread_a = reshape(a, tuple(d for n in sa for d in (n, 1)))
    spread_b = reshape(b, tuple(d for n in sb for d in (1, n)))
    return reshape(spread_a * spread_b, tuple(x * y for x, y in zip(sa, sb)))


@implements(np.trapezoid)
def trapezoid(y, x=None, dx=1.0, axis=-1):
    y = as_operand(y)
    axis = normalize_axis(axis, y.ndim)
    n = y.shape[axis]
    widths = dx if x is None else diff(x, axis=axis if np.ndim(x) == y.ndim else -1)
    if x is not None and np.ndim(x) == 1 and y.ndim > 1:
        widths = reshape(widths, (-1,) + (1,) * (y.ndim - 1 - axis))
    heights = (_take(y, range(1, n), axis) + _take(y, range(n - 1), axis)) / 2
    return np.sum(heights * widths, axis=axis)


# --------------------------------------------------------------------------- order statistics

def _sorted_along_last(a, axis):
    """a sorted along the given axes, which are flattened into the last one (integers
    and booleans as float64, the dtype of NumPy's interpolated statistics)."""
    a = as_operand(a)
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    axes = normalize_axes(axis, a.ndim)
    moved = np.moveaxis(a, axes, range(-len(axes), 0))
    flat = reshape(moved, moved.shape[:a.ndim - len(axes)] + (-1,))
    return np.sort(flat, axis=-1), axes


def _keep(y, shape, axes, keepdims, lead=()):
    if not keepdims:
        return y
    return reshape(y, lead + tuple(1 if i in axes else d for i, d in enumerate(shape)))


@implements(np.quantile)
def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
             keepdims=False, *, weights=None):
    """The 'linear' method: interpolation between the two order statistics around
    (n - 1) q; differentiable in a (through sort) and in q."""
    if method != "linear" or weights is not None:
        raise ShapeError(f"np.quantile: only method='linear' without weights is "
                         f"supported, got method={method!r}")
    s, axes = _sorted_along_last(a, axis)
    n = s.shape[-1]
    position = (n - 1) * as_operand(q)
    below = np.clip(np.floor(_value_of(position, "np.quantile")).astype(np.intp), 0, n - 1)
    above = np.minimum(below + 1, n - 1)
    frac = position - below
    lo, hi = np.take(s, below, axis=-1), np.take(s, above, axis=-1)
    y = lo + (hi - lo) * frac
    y = np.moveaxis(y, range(s.ndim - 1, y.ndim), range(np.ndim(q)))
    return _keep(y, np.shape(a), axes, keepdims, np.shape(q))


@implements(np.percentile)
def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
               keepdims=False, *, weights=None):
    return quantile(a, np.true_divide(q, 100), axis, method=method, keepdims=keepdims,
                    weights=weights)


@implements(np.median)
def median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    s, axes = _sorted_along_last(a, axis)
    n = s.shape[-1]
    mid = s[..., n // 2] if n % 2 else (s[..., n // 2 - 1] + s[..., n // 2]) / 2
    return _keep(mid, np.shape(a), axes, keepdims)


# --------------------------------------------------------------------------- nan-reductions

@implements(np.nansum)
def nansum(a, axis=None, dtype=None, out=None, keepdims=False, initial=0, where=True):
    a = as_operand(a)
    return np.sum(np.where(np.isnan(a), 0, a), axis=axis, keepdims=keepdims,
                  initial=initial, where=where)


@implements(np.nanprod)
def nanprod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    a = as_operand(a)
    return np.prod(np.where(np.isnan(a), 1, a), axis=axis, keepdims=keepdims,
                   initial=initial, where=where)


@implements(np.nanmean)
def nanmean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=True):
    a = as_operand(a)
    return np.mean(a, axis=axis, keepdims=keepdims, where=~np.isnan(a) & where)


def _nan_extremum(reduce, fill):
    def handler(a, axis=None, out=None, keepdims=False, initial=None, where=True):
        a = as_operand(a)
        valid = ~np.isnan(a) & where
        y = reduce(a, axis=axis, keepdims=keepdims, where=valid,
                   initial=fill if initial is None else initial)
        if initial is not None:
            return y
        return np.where(np.any(valid, axis=axis, keepdims=keepdims), y, np.nan)
    return handler


implements(np.nanmax)(_nan_extremum(np.max, -np.inf))
implements(np.nanmin)(_nan_extremum(np.min, np.inf))


# --------------------------------------------------------------------------- value-dependent indices

implements(np.nonzero)(lambda a: np.nonzero(_value_of(a, "np.nonzero")))
implements(np.flatnonzero)(lambda a: np.flatnonzero(_value_of(a, "np.flatnonzero")))
implements(np.argwhere)(lambda a: np.argwhere(_value_of(a, "np.argwhere")))


@implements(np.interp)
def interp(x, xp, fp, left=None, right=None, period=None):
    """Piecewise-linear interpolation, differentiable in x, xp and fp; the interval of
    each x is found from the values (at a knot, the interval to its right)."""
    if period is not None:
        raise ShapeError("np.interp with period= is not supported")
    x, xp, fp = as_operand(x), as_operand(xp), as_operand(fp)
    n = xp.shape[0]
    i = np.clip(np.searchsorted(_value_of(xp, "np.interp"), _value_of(x, "np.interp"),
                                side="right") - 1, 0, max(n - 2, 0))
    j = np.minimum(i + 1, n - 1)
    x0, x1, f0, f1 = xp[i], xp[j], fp[i], fp[j]
    width = np.where(x1 == x0, 1.0, x1 - x0)
    y = f0 + (x - x0) * ((f1 - f0) / width)
    y = np.where(x < xp[0], fp[0] if left is None else left, y)
    return np.where(x > xp[n - 1], fp[n - 1] if right is None else right, y)
