"""Reductions: sum, max, min and cumsum are primitives; mean, var, std, prod, cumprod,
average are composed from them (prod and cumprod by balanced trees of multiplications,
so their derivatives are exact even where elements are zero).

Ties in max/min share the derivative equally among the tied elements (an element of
the Clarke Jacobian); argmax/argmin/argsort are integer-valued and not differentiated.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.errors import ShapeError, UnsupportedOperationError
from ..core.ir import Aval
from ..core.primitive import batch_rules, diagonal_rules, primitive
from ..core.batch_axes import axis_param_rule
from .common import as_operand, implements, normalize_axes, normalize_axis
from .shape import broadcast_to, concatenate, linear_primitive, reshape


def _reduced_shape(shape, axes):
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def expand_reduced(y, shape, axes):
    """Broadcasts a reduced result back over the reduced axes."""
    return broadcast_to(reshape(y, _keepdims_shape(shape, axes)), shape)


def _sum_dtype(dtype):
    return np.dtype(np.int64) if dtype.kind in "biu" else dtype


reduce_sum_p = linear_primitive(
    "reduce_sum", lambda x, axes: np.add.reduce(x, axis=axes),
    lambda x, axes: Aval(_reduced_shape(x.shape, axes), _sum_dtype(x.dtype)),
    transpose=lambda cts, x, axes: [expand_reduced(cts[0], x.aval.shape, axes)])


def _extremum_jvp(primals, tangents, outs, axes):
    x, t, y = primals[0], tangents[0], outs[0]
    hits = np.equal(x, expand_reduced(y, np.shape(x), axes))
    weights = hits / expand_reduced(np.sum(hits, axis=axes), np.shape(x), axes)
    return [np.sum(t * weights, axis=axes)]


def _extremum(name, fn):
    return primitive(name, lambda x, axes: fn(x, axis=axes),
                     lambda x, axes: Aval(_reduced_shape(x.shape, axes), x.dtype),
                     jvp=_extremum_jvp)


reduce_max_p = _extremum("reduce_max", np.maximum.reduce)
reduce_min_p = _extremum("reduce_min", np.minimum.reduce)
for _prim in (reduce_sum_p, reduce_max_p, reduce_min_p):
    batch_rules[_prim] = axis_param_rule(_prim, "axes")
# Summing the whole of each basis array e_k * d gives d[k].
diagonal_rules[reduce_sum_p] = lambda args, dims, axes: (
    (reshape(args[0].d, (args[0].d.size,)), 0) if len(axes) == args[0].d.ndim else None)


def _reduce(prim, x, axis, keepdims):
    x = as_operand(x)
    axes = normalize_axes(axis, x.ndim)
    if prim is not reduce_sum_p and any(x.shape[a] == 0 for a in axes):
        raise ShapeError(f"{prim.name} of an empty array has no identity")
    y = prim.bind(x, axes=axes) if axes else x
    return reshape(y, _keepdims_shape(x.shape, axes)) if keepdims else y


def _masked(a, where, fill):
    """a with the elements outside a reduction's `where` mask replaced by `fill`."""
    a = as_operand(a)
    return a if where is True else np.where(where, a, fill)


@implements(np.sum)
def sum_(a, axis=None, dtype=None, out=None, keepdims=False, initial=0, where=True):
    y = _reduce(reduce_sum_p, _masked(a, where, 0), axis, keepdims)
    y = y.astype(dtype) if dtype else y
    return y + initial if initial is not None and initial != 0 else y


def _extremum_handler(prim, combine, name):
    def handler(a, axis=None, out=None, keepdims=False, initial=None, where=True):
        if where is not True and initial is None:
            raise ValueError(f"np.{name} with a `where` mask needs `initial` (the result "
                             f"where every element is masked), as in NumPy")
        y = _reduce(prim, _masked(a, where, initial), axis, keepdims)
        return y if initial is None else combine(y, initial)
    return handler


max_ = implements(np.max, np.amax)(_extremum_handler(reduce_max_p, np.maximum, "max"))
min_ = implements(np.min, np.amin)(_extremum_handler(reduce_min_p, np.minimum, "min"))


@implements(np.mean)
def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=True):
    a = as_operand(a)
    if where is not True:
        mask = broadcast_to(where, a.shape).astype(a.dtype)
        return sum_(a, axis, keepdims=keepdims, where=where) / sum_(mask, axis,
                                                                    keepdims=keepdims)
    count = math.prod(a.shape[i] for i in normalize_axes(axis, a.ndim))
    total = sum_(a, axis, keepdims=keepdims)
    return total / (count if np.issubdtype(total.dtype, np.inexact) else float(count))


@implements(np.average)
def average(a, axis=None, weights=None, returned=False, keepdims=False):
    """np.average; with `returned`, also the sum of the weights (shaped like the
    average), as NumPy gives it."""
    a = as_operand(a)
    if weights is None:
        avg = mean(a, axis, keepdims=keepdims)
        total = math.prod(a.shape[i] for i in normalize_axes(axis, a.ndim))
        return (avg, np.full(np.shape(avg), total, np.result_type(avg.dtype, float))) \
            if returned else avg
    if np.shape(weights) != a.shape:
        shape = [1] * a.ndim
        shape[normalize_axis(axis, a.ndim)] = -1
        weights = reshape(weights, shape)
    total = sum_(broadcast_to(weights, a.shape), axis, keepdims=keepdims)
    avg = sum_(a * weights, axis, keepdims=keepdims) / total
    return (avg, broadcast_to(total, np.shape(avg))) if returned else avg


_mean = mean  # var and std take a parameter named `mean`


def _moment_options(name, where, correction, ddof):
    if where is not True:
        raise UnsupportedOperationError(
            f"np.{name}(..., where=mask) is not supported; select the elements first "
            f"(e.g. x[mask]) or compute it from np.mean(..., where=mask)")
    return ddof if correction is None else correction


@implements(np.var)
def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=True,
        mean=None, correction=None):
    ddof = _moment_options("var", where, correction, ddof)
    a = as_operand(a)
    count = math.prod(a.shape[i] for i in normalize_axes(axis, a.ndim))
    centered = a - (_mean(a, axis, keepdims=True) if mean is None else mean)
    return sum_(centered * centered, axis, keepdims=keepdims) / (count - ddof)


@implements(np.std)
def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=True,
        mean=None, correction=None):
    """sqrt(var) through the Euclidean norm, whose derivative at 0 is 0 (not NaN)."""
    from .linalg import norm
    ddof = _moment_options("std", where, correction, ddof)
    a = as_operand(a)
    axes = normalize_axes(axis, a.ndim)
    count = math.prod(a.shape[i] for i in axes)
    centered = a - (_mean(a, axes, keepdims=True) if mean is None else mean)
    moved = np.moveaxis(centered, axes, range(-len(axes), 0))
    flat = reshape(moved, moved.shape[:a.ndim - len(axes)] + (-1,))
    out = norm(flat, axis=-1) / np.sqrt(count - ddof)
    return reshape(out, _keepdims_shape(a.shape, axes)) if keepdims else out


def _product_tree(x):
    """Product over the last axis by a balanced tree of multiplications."""
    while x.shape[-1] > 1:
        if x.shape[-1] % 2:
            x = concatenate([x, np.ones(x.shape[:-1] + (1,), x.dtype)], -1)
        x = x[..., 0::2] * x[..., 1::2]
    return reshape(x, x.shape[:-1])


@implements(np.prod)
def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    if initial is not None:
        return prod(a, axis, keepdims=keepdims, where=where) * initial
    a = _masked(a, where, 1)
    a = a.astype(_sum_dtype(a.dtype))
    axes = normalize_axes(axis, a.ndim)
    moved = np.moveaxis(a, axes, range(-len(axes), 0)) if axes else a
    flat = reshape(moved, moved.shape[:a.ndim - len(axes)] + (-1,))
    if flat.shape[-1] == 0:
        y = np.ones(flat.shape[:-1], a.dtype)
    else:
        y = _product_tree(flat)
    return reshape(y, _keepdims_shape(a.shape, axes)) if keepdims else y


cumsum_p = linear_primitive(
    "cumsum", lambda x, axis: np.cumsum(x, axis=axis),
    lambda x, axis: Aval(x.shape, _sum_dtype(x.dtype)),
    transpose=lambda cts, x, axis: [
        np.flip(cumsum_p.bind(np.flip(cts[0], axis), axis=axis), axis)])
batch_rules[cumsum_p] = axis_param_rule(cumsum_p, "axis")


@implements(np.cumsum)
def cumsum(a, axis=None, dtype=None, out=None):
    a = as_operand(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    return cumsum_p.bind(a, axis=normalize_axis(axis, a.ndim))


@implements(np.cumprod)
def cumprod(a, axis=None, dtype=None, out=None):
    """Inclusive scan by doubling (Hillis-Steele): log2(n) multiplications."""
    a = as_operand(a)
    a = a.astype(_sum_dtype(a.dtype))
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    x = np.moveaxis(a, axis, -1)
    n, step = x.shape[-1], 1
    while step < n:
        shifted = concatenate([np.ones(x.shape[:-1] + (step,), x.dtype), x[..., :n - step]], -1)
        x = x * shifted
        step *= 2
    return np.moveaxis(x, -1, axis)


def _arg(fn, name):
    prim = primitive(name, lambda x, axis: fn(x, axis=axis),
                     lambda x, axis: Aval(x.shape[:axis] + x.shape[axis + 1:]
                                          if axis is not None else (), np.intp))

    def handler(a, axis=None, out=None, keepdims=False):
        a = as_operand(a)
        if axis is None:
            a, axis = reshape(a, (-1,)), 0
        y = prim.bind(a, axis=normalize_axis(axis, a.ndim))
        return np.expand_dims(y, axis) if keepdims else y
    implements(fn)(handler)
    return prim


argmax_p = _arg(np.argmax, "argmax")
argmin_p = _arg(np.argmin, "argmin")

argsort_p = primitive("argsort", lambda x, axis: np.argsort(x, axis=axis, kind="stable"),
                      lambda x, axis: Aval(x.shape, np.intp))
for _prim in (argmax_p, argmin_p, argsort_p):
    batch_rules[_prim] = axis_param_rule(_prim, "axis")


@implements(np.argsort)
def argsort(a, axis=-1, kind=None, order=None, stable=None):
    a = as_operand(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    return argsort_p.bind(a, axis=normalize_axis(axis, a.ndim))


@implements(np.sort)
def sort(a, axis=-1, kind=None, order=None, stable=None):
    """A gather by the stable argsort: ties keep their order (a Clarke element)."""
    a = as_operand(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    return np.take_along_axis(a, argsort(a, axis), axis)


@implements(np.all)
def all_(a, axis=None, out=None, keepdims=False, **kw):
    return _reduce(reduce_min_p, as_operand(a).astype(bool), axis, keepdims)


@implements(np.any)
def any_(a, axis=None, out=None, keepdims=False, **kw):
    return _reduce(reduce_max_p, as_operand(a).astype(bool), axis, keepdims)


@implements(np.count_nonzero)
def count_nonzero(a, axis=None, keepdims=False):
    return sum_(np.not_equal(a, 0), axis, keepdims=keepdims)


# --------------------------------------------------------------------------- ufunc methods

def _logsumexp(a, axis=0, keepdims=False):
    m = np.max(a, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


for _ufunc, _reducer in ((np.add, sum_), (np.multiply, prod), (np.maximum, max_),
                         (np.minimum, min_), (np.logaddexp, _logsumexp),
                         (np.logical_and, all_), (np.logical_or, any_)):
    implements((_ufunc, "reduce"))(
        lambda a, axis=0, dtype=None, keepdims=False, _fn=_reducer:
        _fn(a, axis=axis, keepdims=keepdims))
implements((np.add, "accumulate"))(lambda a, axis=0, dtype=None: cumsum(a, axis))
implements((np.multiply, "accumulate"))(lambda a, axis=0, dtype=None: cumprod(a, axis))
