"""Structural primitives: reshape, transpose, broadcast, concatenate, pad, indexing
(`x[i]`, and `x[i] = v` recorded as a functional update) and a gather with traced
indices. All are linear; their JVP applies the same primitive to the tangent.

Many NumPy functions only rearrange elements (flip, roll, tile, repeat, diag, rot90,
triu's zeros, np.pad's modes, ...). They are composed, not primitives: the same function
applied to an array of element numbers gives the source of every output element, and one
gather does the rest (`rearrange`).
"""
from __future__ import annotations

import math

import numpy as np

from ..core.errors import ConcretizationError, ShapeError, UnsupportedOperationError
from ..core.ir import Aval, aval_of
from ..core.primitive import (DiagonalBatch, Zero, batch_rules, diagonal_rules, is_undefined,
                              primitive)
from ..core.batch_axes import all_to_front, batch_size, batch_to_front, move_batch_axis
from ..core.trace import Tracer, concrete
from .common import (as_operand, broadcast_shapes, implements, normalize_axis, promote,
                     sum_to_shape)


def linear_primitive(name, impl, shape, transpose):
    """A primitive linear in its first argument (the others are integer indices):
    its JVP applies the primitive itself to the tangent."""
    def jvp(primals, tangents, outs, **params):
        if isinstance(tangents[0], Zero):
            return [Zero(aval_of(outs[0]))]
        return [prim.bind(tangents[0], *primals[1:], **params)]
    prim = primitive(name, impl, shape, jvp=jvp, transpose=transpose)
    return prim


# --------------------------------------------------------------------------- reshape

reshape_p = linear_primitive(
    "reshape", lambda x, shape: np.reshape(x, shape), lambda x, shape: Aval(shape, x.dtype),
    transpose=lambda cts, x, shape: [reshape_p.bind(cts[0], shape=x.aval.shape)])


def _reshape_batch(args, dims, shape):
    x = batch_to_front(args[0], dims[0])
    return reshape_p.bind(x, shape=np.shape(x)[:1] + tuple(shape)), 0


batch_rules[reshape_p] = _reshape_batch
# Reshaping keeps flat (C-order) indices, so the identity basis stays diagonal.
diagonal_rules[reshape_p] = lambda args, dims, shape: DiagonalBatch(
    reshape_p.bind(args[0].d, shape=shape))


@implements(np.reshape)
def reshape(x, shape=None, order="C", *, newshape=None, copy=None):
    x = as_operand(x)
    shape = newshape if shape is None else shape
    if order != "C":
        raise ShapeError("only order='C' reshapes are supported")
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape = tuple(x.size // max(known, 1) if d == -1 else d for d in shape)
    if math.prod(shape) != x.size:
        raise ShapeError(f"cannot reshape an array of shape {x.shape} into {shape}")
    return x if shape == x.shape else reshape_p.bind(x, shape=shape)


@implements(np.ravel)
def ravel(x, order="C"):
    return reshape(x, (-1,), order)


@implements(np.expand_dims)
def expand_dims(x, axis):
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    ndim = np.ndim(x) + len(axes)
    axes = {normalize_axis(a, ndim) for a in axes}
    it = iter(np.shape(x))
    return reshape(x, tuple(1 if i in axes else next(it) for i in range(ndim)))


@implements(np.squeeze)
def squeeze(x, axis=None):
    shape = np.shape(x)
    axes = [i for i, d in enumerate(shape) if d == 1] if axis is None else \
        [normalize_axis(a, len(shape)) for a in ((axis,) if isinstance(axis, int) else axis)]
    for a in axes:
        if shape[a] != 1:
            raise ShapeError(f"cannot squeeze axis {a} of size {shape[a]}")
    return reshape(x, tuple(d for i, d in enumerate(shape) if i not in axes))


@implements(np.atleast_1d)
def atleast_1d(*xs):
    out = [reshape(x, (1,)) if np.ndim(x) == 0 else x for x in xs]
    return out[0] if len(out) == 1 else out


@implements(np.atleast_2d)
def atleast_2d(*xs):
    out = [reshape(x, (1,) * (2 - np.ndim(x)) + np.shape(x)) if np.ndim(x) < 2 else x
           for x in xs]
    return out[0] if len(out) == 1 else out


# --------------------------------------------------------------------------- transpose

transpose_p = linear_primitive(
    "transpose", lambda x, perm: np.transpose(x, perm),
    lambda x, perm: Aval(tuple(x.shape[p] for p in perm), x.dtype),
    transpose=lambda cts, x, perm: [
        transpose_p.bind(cts[0], perm=tuple(int(i) for i in np.argsort(perm)))])
batch_rules[transpose_p] = lambda args, dims, perm: (transpose_p.bind(
    batch_to_front(args[0], dims[0]), perm=(0,) + tuple(p + 1 for p in perm)), 0)


@implements(np.transpose)
def transpose(x, axes=None):
    x = as_operand(x)
    perm = tuple(reversed(range(x.ndim))) if axes is None else \
        tuple(normalize_axis(a, x.ndim) for a in axes)
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"np.transpose: axes {tuple(axes)} are not a permutation of the "
                         f"{x.ndim} axes of an array of shape {x.shape}")
    return x if perm == tuple(range(x.ndim)) else transpose_p.bind(x, perm=perm)


@implements(np.swapaxes)
def swapaxes(x, axis1, axis2):
    perm = list(range(np.ndim(x)))
    a, b = normalize_axis(axis1, len(perm)), normalize_axis(axis2, len(perm))
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


@implements(np.moveaxis)
def moveaxis(x, source, destination):
    ndim = np.ndim(x)
    src = [normalize_axis(a, ndim) for a in np.atleast_1d(source)]
    dst = [normalize_axis(a, ndim) for a in np.atleast_1d(destination)]
    order = [i for i in range(ndim) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(x, order)


# --------------------------------------------------------------------------- broadcast

broadcast_p = linear_primitive(
    "broadcast_to", lambda x, shape: np.broadcast_to(x, shape),
    lambda x, shape: Aval(shape, x.dtype),
    transpose=lambda cts, x, shape: [sum_to_shape(cts[0], x.aval.shape)])


def _broadcast_batch(args, dims, shape):
    x = batch_to_front(args[0], dims[0], len(shape))
    return broadcast_p.bind(x, shape=np.shape(x)[:1] + tuple(shape)), 0


batch_rules[broadcast_p] = _broadcast_batch


@implements(np.broadcast_to)
def broadcast_to(x, shape, subok=False):
    x = as_operand(x)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if broadcast_shapes(x.shape, shape) != shape:
        raise ShapeError(f"np.broadcast_to: an array of shape {x.shape} cannot be "
                         f"broadcast to {shape}")
    return x if x.shape == shape else broadcast_p.bind(x, shape=shape)


@implements(np.broadcast_arrays)
def broadcast_arrays(*xs):
    shape = np.broadcast_shapes(*[np.shape(x) for x in xs])
    return [broadcast_to(x, shape) for x in xs]


# --------------------------------------------------------------------------- concatenate

def _concat_shape(*xs, axis):
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return Aval(shape, np.result_type(*[x.dtype for x in xs]))


def _concat_jvp(primals, tangents, outs, axis):
    if all(isinstance(t, Zero) for t in tangents):
        return [Zero(aval_of(outs[0]))]
    ts = [np.zeros(np.shape(p), aval_of(outs[0]).dtype) if isinstance(t, Zero) else t
          for p, t in zip(primals, tangents)]
    return [concatenate_p.bind(*ts, axis=axis)]


def _concat_transpose(cts, *xs, axis):
    ct = cts[0]
    bounds = np.cumsum([0] + [aval_of(x).shape[axis] for x in xs])
    index = lambda lo, hi: (slice(None),) * axis + (slice(int(lo), int(hi)),)
    return [ct[index(lo, hi)] if is_undefined(x) else None
            for x, lo, hi in zip(xs, bounds[:-1], bounds[1:])]


concatenate_p = primitive("concatenate", lambda *xs, axis: np.concatenate(xs, axis),
                          _concat_shape, jvp=_concat_jvp, transpose=_concat_transpose)
batch_rules[concatenate_p] = lambda args, dims, axis: (
    concatenate_p.bind(*all_to_front(args, dims), axis=axis + 1), 0)


@implements(np.concatenate)
def concatenate(arrays, axis=0, out=None, dtype=None):
    arrays = promote(*arrays)
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    ndim = np.ndim(arrays[0])
    axis = normalize_axis(axis, ndim)
    for a in arrays:
        if np.ndim(a) != ndim or any(np.shape(a)[i] != np.shape(arrays[0])[i]
                                     for i in range(ndim) if i != axis):
            raise ShapeError(f"np.concatenate: shapes {[np.shape(a) for a in arrays]} "
                             f"differ outside axis {axis}")
    return arrays[0] if len(arrays) == 1 else concatenate_p.bind(*arrays, axis=axis)


@implements(np.stack)
def stack(arrays, axis=0, out=None, dtype=None):
    arrays = promote(*arrays)
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ShapeError(f"np.stack needs arrays of one shape, got {sorted(shapes)}")
    axis = normalize_axis(axis, np.ndim(arrays[0]) + 1)
    return concatenate([expand_dims(a, axis) for a in arrays], axis)


@implements(np.hstack)
def hstack(arrays, dtype=None):
    arrays = atleast_1d(*arrays) if len(arrays) > 1 else [atleast_1d(arrays[0])]
    return concatenate(arrays, 0 if np.ndim(arrays[0]) == 1 else 1)


@implements(np.vstack)
def vstack(arrays, dtype=None):
    arrays = [atleast_2d(a) for a in arrays]
    return concatenate(arrays, 0)


@implements(np.column_stack)
def column_stack(arrays):
    return concatenate([reshape(a, (-1, 1)) if np.ndim(a) < 2 else a for a in arrays], 1)


@implements(np.array_split)
def array_split(x, indices_or_sections, axis=0):
    n = np.shape(x)[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        sizes = [n // indices_or_sections + (i < n % indices_or_sections)
                 for i in range(indices_or_sections)]
        bounds = np.cumsum([0] + sizes)
    else:
        bounds = [0] + list(indices_or_sections) + [n]
    axis = normalize_axis(axis, np.ndim(x))
    return [x[(slice(None),) * axis + (slice(int(lo), int(hi)),)]
            for lo, hi in zip(bounds[:-1], bounds[1:])]


@implements(np.split)
def split(x, indices_or_sections, axis=0):
    """array_split restricted, as in NumPy, to sections of equal length."""
    n = np.shape(x)[axis]
    if isinstance(indices_or_sections, (int, np.integer)) and n % indices_or_sections:
        raise ShapeError(f"np.split: {indices_or_sections} sections do not divide an axis "
                         f"of length {n} equally; use np.array_split")
    return array_split(x, indices_or_sections, axis)


# --------------------------------------------------------------------------- indexing

class Index:
    """A static NumPy index (slices, ints, None, Ellipsis, integer arrays), hashable so
    that graphs holding it can be compared and cached."""
    __slots__ = ("value", "key", "basic")

    def __init__(self, value: tuple):
        self.value = value
        self.basic = not any(isinstance(i, np.ndarray) for i in value)
        self.key = tuple((i.shape, i.tobytes()) if isinstance(i, np.ndarray) else
                         (i.start, i.stop, i.step) if isinstance(i, slice) else repr(i)
                         for i in value)

    def __eq__(self, other):
        return isinstance(other, Index) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def format(self, show_array) -> str:
        """The index as written inside x[...]; show_array renders an index array."""
        def one(i):
            if isinstance(i, slice):
                bound = lambda v: "" if v is None else str(v)
                step = "" if i.step is None else f":{i.step}"
                return f"{bound(i.start)}:{bound(i.stop)}{step}"
            if isinstance(i, np.ndarray):
                return show_array(i)
            return "..." if i is Ellipsis else repr(i)
        return ", ".join(one(i) for i in self.value)

    def __repr__(self):
        return "[" + self.format(lambda a: f"int{list(a.shape)}") + "]"


def _static_index(index, shape) -> Index:
    """Normalizes an index to an Index; boolean masks and traced integer indices are
    made concrete (they are never differentiated)."""
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for i in index:
        if isinstance(i, Tracer):
            v = concrete(i)
            if v is None:
                raise ConcretizationError(
                    "indexing with a traced index inside jit needs a gather: use "
                    "np.take(x, i, axis) or np.take_along_axis instead of x[i]")
            i = v
        if isinstance(i, (list, np.ndarray)) or (isinstance(i, np.generic) and i.dtype == bool):
            arr = np.asarray(i)
            if arr.dtype == bool:
                out.extend(np.nonzero(arr))
                continue
            if not np.issubdtype(arr.dtype, np.integer):
                raise ShapeError(f"arrays used as indices must be integer or boolean, "
                                 f"got {arr.dtype}")
            out.append(arr.astype(np.intp))
        elif isinstance(i, (np.integer,)):
            out.append(int(i))
        else:
            out.append(i)
    return Index(tuple(out))


def _indexed_shape(shape, index: Index):
    probe = np.lib.stride_tricks.as_strided(np.zeros((), bool), shape, (0,) * len(shape))
    try:
        return probe[index.value].shape
    except IndexError as e:
        raise ShapeError(f"index {index} does not fit shape {shape}: {e}") from None


def _scatter_add_impl(ct, index, shape):
    out = np.zeros(shape, ct.dtype)
    if index.basic:
        out[index.value] = ct
    else:
        np.add.at(out, index.value, ct)
    return out


getitem_p = linear_primitive(
    "getitem", lambda x, index: x[index.value],
    lambda x, index: Aval(_indexed_shape(x.shape, index), x.dtype),
    transpose=lambda cts, x, index: [
        scatter_add_p.bind(cts[0], index=index, shape=x.aval.shape)])
scatter_add_p = linear_primitive(
    "scatter_add", _scatter_add_impl, lambda ct, index, shape: Aval(shape, ct.dtype),
    transpose=lambda cts, ct, index, shape: [getitem_p.bind(cts[0], index=index)])


def _batched_index(index: Index):
    """The index with a leading full slice for the batch axis, and where NumPy puts
    the batch axis in the result: first, unless advanced indices (arrays, and ints
    among them) are separated, in which case their dimensions come first."""
    batched = Index((slice(None),) + index.value)
    if index.basic:
        return batched, 0
    advanced = [k for k, i in enumerate(index.value)
                if isinstance(i, (np.ndarray, int, np.integer))]
    if advanced == list(range(advanced[0], advanced[-1] + 1)):
        return batched, 0
    arrays = [np.shape(index.value[k]) for k in advanced]
    return batched, len(np.broadcast_shapes(*arrays))


def _getitem_batch(args, dims, index):
    batched, out_dim = _batched_index(index)
    return getitem_p.bind(batch_to_front(args[0], dims[0]), index=batched), out_dim


def _scatter_add_batch(args, dims, index, shape):
    batched, ct_dim = _batched_index(index)
    ct = move_batch_axis(args[0], dims[0], ct_dim, None)
    return scatter_add_p.bind(ct, index=batched, shape=np.shape(ct)[ct_dim:ct_dim + 1]
                              + tuple(shape)), 0


batch_rules[getitem_p] = _getitem_batch
batch_rules[scatter_add_p] = _scatter_add_batch


@implements("getitem")
def getitem(x, index):
    if isinstance(index, Tracer) and concrete(index) is None and index.dtype.kind in "iu":
        return take(x, index, axis=0)          # known only at run time (jit, vmap): a gather
    index = _static_index(index, np.shape(x))
    if index.key in ((), ("Ellipsis",)):
        return x
    return getitem_p.bind(x, index=index)


def _last_writes(shape, index: Index):
    """For `x[index] = v` with repeated positions: a mask of the elements of v that
    NumPy keeps (the last write), or None when no position repeats."""
    if index.basic:
        return None
    pos = np.arange(int(np.prod(shape))).reshape(shape)[index.value].ravel()
    if len(np.unique(pos)) == pos.size:
        return None
    keep = np.zeros(pos.size, bool)
    _, last = np.unique(pos[::-1], return_index=True)
    keep[pos.size - 1 - last] = True
    return keep.reshape(_indexed_shape(shape, index))


def _scatter_impl(x, v, index, keep):
    out = np.array(x, copy=True)
    out[index.value] = v
    return out


def _scatter_jvp(primals, tangents, outs, index, keep):
    tx, tv = tangents
    if isinstance(tx, Zero) and isinstance(tv, Zero):
        return [Zero(aval_of(outs[0]))]
    dtype = aval_of(outs[0]).dtype
    tx = np.zeros(np.shape(primals[0]), dtype) if isinstance(tx, Zero) else tx
    tv = np.zeros((), dtype) if isinstance(tv, Zero) else tv
    return [scatter_p.bind(tx, tv, index=index, keep=keep)]


def _scatter_transpose(cts, x, v, index, keep):
    ct = cts[0]
    ct_x = scatter_p.bind(ct, np.zeros((), ct.dtype), index=index, keep=keep) \
        if is_undefined(x) else None
    ct_v = None
    if is_undefined(v):
        ct_v = getitem_p.bind(ct, index=index)
        if keep is not None:
            ct_v = keep * ct_v
        ct_v = sum_to_shape(ct_v, v.aval.shape)
    return [ct_x, ct_v]


class _Mask:
    """A hashable wrapper of a constant boolean mask kept as a parameter."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __mul__(self, other):
        return other * self.value

    __rmul__ = __mul__

    def __eq__(self, other):
        return isinstance(other, _Mask) and np.array_equal(self.value, other.value)

    def __hash__(self):
        return hash(self.value.tobytes())

    def __repr__(self):
        return f"mask{list(self.value.shape)}"


scatter_p = primitive("scatter", _scatter_impl,
                      lambda x, v, index, keep: Aval(x.shape, x.dtype),
                      jvp=_scatter_jvp, transpose=_scatter_transpose)


def _scatter_batch(args, dims, index, keep):
    """x with the batch axis first; v and the mask shaped like the batched x[index]."""
    size = batch_size(args, dims)
    x = move_batch_axis(args[0], dims[0], 0, size)
    batched, v_dim = _batched_index(index)
    target = _indexed_shape(np.shape(x), batched)
    example = target[:v_dim] + target[v_dim + 1:]
    v, dv = args[1], dims[1]
    if dv is None:
        v = move_batch_axis(np.broadcast_to(v, example), None, v_dim, size)
    else:
        v = np.moveaxis(np.broadcast_to(batch_to_front(v, dv, len(example)),
                                        (size,) + example), 0, v_dim)
    if keep is not None:
        keep = _Mask(np.broadcast_to(np.expand_dims(keep.value, v_dim), target))
    return scatter_p.bind(x, v, index=batched, keep=keep), 0


batch_rules[scatter_p] = _scatter_batch


@implements("setitem")
def setitem(x, index, value):
    """`x[index] = value` as a new array (the tracer is then rebound to it)."""
    index = _static_index(index, x.shape)
    value = as_operand(value)
    target = _indexed_shape(x.shape, index)
    np.broadcast_shapes(np.shape(value), target)
    keep = _last_writes(x.shape, index)
    if not isinstance(value, Tracer):
        value = np.asarray(value, x.dtype)
    return scatter_p.bind(x, value, index=index, keep=None if keep is None else _Mask(keep))


# --------------------------------------------------------------------------- gather with traced indices

def _take_along_impl(x, idx, axis):
    return np.take_along_axis(x, idx, axis)


def _put_along_add_impl(ct, idx, axis, shape):
    out = np.zeros(shape, ct.dtype)
    grids = list(np.ix_(*[np.arange(n) for n in idx.shape]))
    grids[axis] = idx
    np.add.at(out, tuple(grids), ct)
    return out


take_along_p = linear_primitive(
    "take_along_axis", _take_along_impl, lambda x, idx, axis: Aval(idx.shape, x.dtype),
    transpose=lambda cts, x, idx, axis: [
        put_along_add_p.bind(cts[0], idx, axis=axis, shape=x.aval.shape), None])
put_along_add_p = linear_primitive(
    "put_along_axis_add", _put_along_add_impl,
    lambda ct, idx, axis, shape: Aval(shape, ct.dtype),
    transpose=lambda cts, ct, idx, axis, shape: [take_along_p.bind(cts[0], idx, axis=axis), None])
batch_rules[take_along_p] = lambda args, dims, axis: (
    take_along_p.bind(*all_to_front(args, dims), axis=axis + 1), 0)
batch_rules[put_along_add_p] = lambda args, dims, axis, shape: (put_along_add_p.bind(
    *all_to_front(args, dims), axis=axis + 1, shape=(batch_size(args, dims),) + shape), 0)


@implements(np.take_along_axis)
def take_along_axis(arr, indices, axis):
    arr = as_operand(arr)
    if axis is None:
        arr, axis = ravel(arr), 0
    axis = normalize_axis(axis, arr.ndim)
    indices = as_operand(indices)
    if indices.ndim != arr.ndim:
        raise ShapeError("np.take_along_axis: indices and array need the same ndim")
    shape = list(np.broadcast_shapes(
        tuple(1 if i == axis else d for i, d in enumerate(arr.shape)),
        tuple(1 if i == axis else d for i, d in enumerate(indices.shape))))
    idx_shape = tuple(indices.shape[axis] if i == axis else d for i, d in enumerate(shape))
    arr_shape = tuple(arr.shape[axis] if i == axis else d for i, d in enumerate(shape))
    arr = broadcast_to(arr, arr_shape)
    indices = broadcast_to(indices, idx_shape)
    indices = np.where(indices < 0, indices + arr.shape[axis], indices)
    return take_along_p.bind(arr, indices, axis=axis)


@implements(np.take)
def take(a, indices, axis=None, out=None, mode="raise"):
    a = as_operand(a)
    if axis is None:
        a, axis = ravel(a), 0
    axis = normalize_axis(axis, a.ndim)
    if not isinstance(indices, Tracer):
        return getitem(a, (slice(None),) * axis + (np.asarray(indices),))
    idx_shape = indices.shape
    flat = reshape(indices, (-1,))
    shape = [1] * a.ndim
    shape[axis] = flat.shape[0]
    full = list(a.shape)
    full[axis] = flat.shape[0]
    picked = take_along_axis(a, broadcast_to(reshape(flat, shape), tuple(full)), axis)
    return reshape(picked, a.shape[:axis] + idx_shape + a.shape[axis + 1:])


# --------------------------------------------------------------------------- rearrangements

def rearrange(x, numpy_fn):
    """Applies an element-rearranging NumPy function through one gather: numpy_fn is
    run on the element numbers of x (with -1 meaning 'a zero')."""
    x = as_operand(x)
    ids = numpy_fn(np.arange(1, x.size + 1).reshape(x.shape)) - 1
    if ids.size and ids.min() < 0:
        flat = concatenate([ravel(x), np.zeros(1, x.dtype)])
        ids = np.where(ids < 0, x.size, ids)
    else:
        flat = ravel(x)
    return getitem(flat, ids)


implements(np.flip)(lambda m, axis=None: rearrange(m, lambda i: np.flip(i, axis)))
implements(np.fliplr)(lambda m: rearrange(m, np.fliplr))
implements(np.flipud)(lambda m: rearrange(m, np.flipud))
implements(np.roll)(lambda a, shift, axis=None: rearrange(a, lambda i: np.roll(i, shift, axis)))
implements(np.rot90)(lambda m, k=1, axes=(0, 1): rearrange(m, lambda i: np.rot90(i, k, axes)))
implements(np.tile)(lambda a, reps: rearrange(a, lambda i: np.tile(i, reps)))
implements(np.repeat)(lambda a, repeats, axis=None:
                      rearrange(a, lambda i: np.repeat(i, repeats, axis)))
implements(np.diag)(lambda v, k=0: rearrange(v, lambda i: np.diag(i, k)))
implements(np.diagonal)(lambda a, offset=0, axis1=0, axis2=1:
                        rearrange(a, lambda i: np.diagonal(i, offset, axis1, axis2).copy()))
implements(np.diagflat)(lambda v, k=0: rearrange(v, lambda i: np.diagflat(i, k)))
implements(np.triu)(lambda m, k=0: rearrange(m, lambda i: np.triu(i, k)))
implements(np.tril)(lambda m, k=0: rearrange(m, lambda i: np.tril(i, k)))


@implements(np.trace)
def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    return np.sum(np.diagonal(a, offset, axis1, axis2), axis=-1)


@implements(np.pad)
def pad(array, pad_width, mode="constant", **kwargs):
    if mode == "constant":
        value = kwargs.get("constant_values", 0)
        if np.ndim(value) != 0:
            raise ShapeError("np.pad: only a scalar constant_values is supported")
        padded = rearrange(array, lambda i: np.pad(i, pad_width, mode="constant"))
        if isinstance(value, Tracer) or value != 0:
            mask = np.pad(np.zeros(np.shape(array), bool), pad_width, constant_values=True)
            padded = np.where(mask, value, padded)
        return padded
    if mode not in ("edge", "reflect", "symmetric", "wrap"):
        raise UnsupportedOperationError(
            f"np.pad(mode={mode!r}) is not supported (it computes new values rather than "
            f"rearranging elements); supported modes: 'constant', 'edge', 'reflect', "
            f"'symmetric', 'wrap'")
    return rearrange(array, lambda i: np.pad(i, pad_width, mode=mode, **kwargs))


# --------------------------------------------------------------------------- constants

def _zeros_like_jvp(primals, tangents, outs, shape, dtype):
    return [Zero(aval_of(outs[0]))]


zeros_like_p = primitive(
    "zeros_like", lambda x, shape, dtype: np.zeros(shape, dtype),
    lambda x, shape, dtype: Aval(shape, dtype), jvp=_zeros_like_jvp)
batch_rules[zeros_like_p] = lambda args, dims, shape, dtype: (   # the same for every example
    zeros_like_p.bind(args[0], shape=shape, dtype=dtype), None)


@implements(np.zeros_like, np.empty_like)
def zeros_like(a, dtype=None, order="K", subok=True, shape=None):
    """A traced array of zeros (so that `z[i] = traced_value` records an update)."""
    shape = np.shape(a) if shape is None else (
        (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape))
    return zeros_like_p.bind(a, shape=shape, dtype=np.dtype(dtype or aval_of(a).dtype))


@implements(np.full_like)
def full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None):
    z = zeros_like(a, dtype, shape=shape)
    fill = fill_value.astype(z.dtype) if isinstance(fill_value, Tracer) else \
        np.asarray(fill_value, z.dtype)
    return z + fill


implements(np.ones_like)(lambda a, dtype=None, order="K", subok=True, shape=None:
                         full_like(a, 1, dtype, shape=shape))
implements(np.shape)(lambda a: a.shape)
implements(np.ndim)(lambda a: a.ndim)
implements(np.size)(lambda a, axis=None: a.size if axis is None else a.shape[axis])
implements(np.result_type)(lambda *xs: np.result_type(*[aval_of(x).dtype for x in xs]))
implements(np.copy)(lambda a, order="K", subok=False: a._snapshot())  # a new, unaliased tracer
implements(np.iscomplexobj)(lambda x: False)
implements(np.isscalar)(lambda x: False)
