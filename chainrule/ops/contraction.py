"""Tensor contraction: one bilinear primitive, `contract`, an einsum of two operands.

`contract[spec=("ij", "jk", "ik")] a b` sums products over the indices missing from
the output. Each index appears at most once per operand, and every index of an operand
also appears in the other operand or in the output. Under that invariant the transpose
with respect to either operand is again a `contract` (swap the roles of that operand and
the output), so matmul, dot, inner, outer, tensordot and einsum all share one JVP and
one transpose rule. The implementation maps every spec to one (batched) matrix product.
"""
from __future__ import annotations

import string
from functools import lru_cache

import numpy as np

from ..core.errors import ShapeError
from ..core.ir import Aval
from ..core.primitive import (DiagonalBatch, Zero, batch_rules, diagonal_rules, is_undefined,
                              primitive)
from ..core.batch_axes import batch_to_front
from .common import as_operand, broadcast_shapes, implements, promote
from .shape import broadcast_to, reshape


@lru_cache(maxsize=4096)
def _plan(spec, a_shape, b_shape):
    """How to run a spec as one (batched) matrix product. Specs of at most 2-D operands
    with one summed index and no batch index (matmul, matvec, dot, inner) become a
    single `@` of transposed views; specs that sum nothing (outer and elementwise
    products) a broadcast multiplication of views."""
    a_idx, b_idx, out_idx = spec
    size = dict(zip(a_idx, a_shape)) | dict(zip(b_idx, b_shape))
    if set(a_idx) | set(b_idx) == set(out_idx):
        views = []
        for idx, shape in ((a_idx, a_shape), (b_idx, b_shape)):
            views += [tuple(idx.index(i) for i in out_idx if i in idx),
                      tuple(size[i] if i in idx else 1 for i in out_idx)]
        return ("product", *views)
    batch = [i for i in out_idx if i in a_idx and i in b_idx]
    free_a = [i for i in out_idx if i in a_idx and i not in b_idx]
    free_b = [i for i in out_idx if i in b_idx and i not in a_idx]
    summed = [i for i in a_idx if i in b_idx and i not in out_idx]
    if not batch and len(summed) == 1 and len(free_a) <= 1 and len(free_b) <= 1:
        perm_a = tuple(a_idx.index(i) for i in free_a + summed)
        perm_b = tuple(b_idx.index(i) for i in summed + free_b)
        return ("matmul", _unless_identity(perm_a), _unless_identity(perm_b),
                list(out_idx) != free_a + free_b)
    perm_a = tuple(a_idx.index(i) for i in batch + free_a + summed)
    perm_b = tuple(b_idx.index(i) for i in batch + summed + free_b)
    n = lambda idx: int(np.prod([size[i] for i in idx], dtype=np.int64))
    shape_a = (n(batch), n(free_a), n(summed))
    shape_b = (n(batch), n(summed), n(free_b))
    mid = batch + free_a + free_b
    perm_out = tuple(mid.index(i) for i in out_idx)
    out_shape = tuple(size[i] for i in out_idx)
    return ("batched", perm_a, shape_a, perm_b, shape_b, tuple(size[i] for i in mid),
            perm_out, out_shape)


def _unless_identity(perm):
    """perm, or None when it leaves the axes in place (no transpose to call)."""
    return None if perm == tuple(range(len(perm))) else perm


def _contract_impl(a, b, spec):
    plan = _plan(spec, a.shape, b.shape)
    if plan[0] == "matmul":
        _, perm_a, perm_b, swap = plan
        out = (a if perm_a is None else a.transpose(perm_a)) @ \
            (b if perm_b is None else b.transpose(perm_b))
        return out.T if swap else out
    if plan[0] == "product":
        _, perm_a, view_a, perm_b, view_b = plan
        return np.transpose(a, perm_a).reshape(view_a) * np.transpose(b, perm_b).reshape(view_b)
    _, perm_a, shape_a, perm_b, shape_b, mid_shape, perm_out, out_shape = plan
    am = np.transpose(a, perm_a).reshape(shape_a)
    bm = np.transpose(b, perm_b).reshape(shape_b)
    out = (am[0] @ bm[0])[None] if shape_a[0] == 1 else am @ bm
    return np.transpose(out.reshape(mid_shape), perm_out).reshape(out_shape)


def _contract_shape(a, b, spec):
    a_idx, b_idx, out_idx = spec
    size = {}
    for idx, shape in ((a_idx, a.shape), (b_idx, b.shape)):
        if len(idx) != len(shape):
            raise ShapeError(f"contract: spec {idx!r} does not fit shape {shape}")
        for i, d in zip(idx, shape):
            if size.setdefault(i, d) != d:
                raise ShapeError(f"contract: index {i!r} has sizes {size[i]} and {d} "
                                 f"(operands {a.shape} and {b.shape})")
    return Aval(tuple(size[i] for i in out_idx), np.result_type(a.dtype, b.dtype))


def _contract_jvp(primals, tangents, outs, spec):
    (a, b), (ta, tb) = primals, tangents
    parts = []
    if not isinstance(ta, Zero):
        parts.append(contract_p.bind(ta, b, spec=spec))
    if not isinstance(tb, Zero):
        parts.append(contract_p.bind(a, tb, spec=spec))
    return [parts[0] if len(parts) == 1 else parts[0] + parts[1]]


def _contract_transpose(cts, a, b, spec):
    a_idx, b_idx, out_idx = spec
    ct = cts[0]
    return [contract_p.bind(ct, b, spec=(out_idx, b_idx, a_idx)) if is_undefined(a) else None,
            contract_p.bind(a, ct, spec=(a_idx, out_idx, b_idx)) if is_undefined(b) else None]


contract_p = primitive("contract", _contract_impl, _contract_shape, jvp=_contract_jvp,
                       transpose=_contract_transpose)


def _contract_batch(args, dims, spec):
    """The batch axis is one more index, kept in the output (a batched einsum). A lone
    batched operand goes first, so that the product comes out batch-major (C order)."""
    b = next(c for c in string.ascii_letters if c not in "".join(spec))
    operands = [x if d is None else batch_to_front(x, d) for x, d in zip(args, dims)]
    idx = [i if d is None else b + i for i, d in zip(spec[:2], dims)]
    if dims[0] is None:
        operands, idx = operands[::-1], idx[::-1]
    return contract_p.bind(*operands, spec=(idx[0], idx[1], b + spec[2])), 0


batch_rules[contract_p] = _contract_batch


def _contract_diagonal(args, dims, spec):
    """A contraction of an unbatched operand with the identity basis (times d) is that
    operand rearranged and scaled, no product: the basis operand's indices become the
    batch indices. Not when they also appear in the output (that result is diagonal)."""
    k = 0 if type(args[0]) is DiagonalBatch else 1
    basis, other, other_dim = args[k], args[1 - k], dims[1 - k]
    basis_idx, other_idx, out_idx = spec[k], spec[1 - k], spec[2]
    if other_dim is not None or set(basis_idx) & set(out_idx):
        return None
    out = contract_p.bind(other, basis.d, spec=(other_idx, basis_idx, basis_idx + out_idx))
    return reshape(out, (basis.d.size,) + out.shape[len(basis_idx):]), 0


diagonal_rules[contract_p] = _contract_diagonal


def contract(a, b, a_idx, b_idx, out_idx):
    """einsum of two operands; indices of one operand found nowhere else are summed
    first so that the primitive's invariant holds."""
    a, b = promote(a, b)
    keep_a = "".join(i for i in a_idx if i in b_idx or i in out_idx)
    keep_b = "".join(i for i in b_idx if i in a_idx or i in out_idx)
    if keep_a != a_idx:
        a = _unary_einsum(a, a_idx, keep_a)
    if keep_b != b_idx:
        b = _unary_einsum(b, b_idx, keep_b)
    return contract_p.bind(a, b, spec=(keep_a, keep_b, out_idx))


def _unary_einsum(x, idx, out_idx):
    """Diagonals for repeated indices, sums for dropped ones, then a transpose."""
    while len(set(idx)) < len(idx):
        i = next(c for c in idx if idx.count(c) > 1)
        p, q = idx.index(i), idx.index(i, idx.index(i) + 1)
        x = np.diagonal(x, 0, p, q)
        idx = idx[:p] + idx[p + 1:q] + idx[q + 1:] + i
    dropped = tuple(k for k, i in enumerate(idx) if i not in out_idx)
    if dropped:
        x = np.sum(x, axis=dropped)
        idx = "".join(i for i in idx if i in out_idx)
    return np.transpose(x, [idx.index(i) for i in out_idx])


# --------------------------------------------------------------------------- NumPy front-ends

@implements(np.einsum)
def einsum(subscripts, *operands, out=None, optimize=False, **kw):
    operands = [as_operand(o) for o in operands]
    inputs, output = _parse_einsum(subscripts, [np.ndim(o) for o in operands])
    _check_einsum_sizes(subscripts, inputs, operands)
    if len(operands) == 1:
        return _unary_einsum(operands[0], inputs[0], output)
    x, idx = operands[0], inputs[0]
    for k in range(1, len(operands)):
        later = set(output).union(*inputs[k + 1:])
        keep = "".join(dict.fromkeys(i for i in idx + inputs[k] if i in later))
        x, idx = contract(x, operands[k], idx, inputs[k], keep), keep
    return _unary_einsum(x, idx, output)


def _check_einsum_sizes(subscripts, inputs, operands):
    sizes = {}
    for idx, operand in zip(inputs, operands):
        for i, d in zip(idx, np.shape(operand)):
            if sizes.setdefault(i, d) != d:
                raise ShapeError(
                    f"einsum {subscripts!r}: an index has sizes {sizes[i]} and {d} in "
                    f"operands of shapes {[np.shape(o) for o in operands]} (size-1 "
                    f"dimensions are not broadcast: use np.broadcast_to first)")


def _parse_einsum(subscripts, ndims):
    subscripts = subscripts.replace(" ", "")
    lhs, _, rhs = subscripts.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(ndims):
        raise ShapeError(f"einsum: {subscripts!r} names {len(inputs)} operands, "
                         f"got {len(ndims)}")
    unused = [c for c in string.ascii_letters if c not in subscripts]
    ell_ndim = max([n - len(s.replace("...", "")) for s, n in zip(inputs, ndims)
                    if "..." in s] or [0])
    ell = "".join(unused[:ell_ndim])
    inputs = [s.replace("...", ell[ell_ndim - (n - len(s.replace("...", ""))):])
              for s, n in zip(inputs, ndims)]
    if "->" not in subscripts:
        counts = "".join(inputs)
        rhs = ell + "".join(sorted(c for c in set(counts) if counts.count(c) == 1
                                   and c not in ell))
    return inputs, rhs.replace("...", ell)


def _letters(n, skip=""):
    return "".join(c for c in string.ascii_lowercase if c not in skip)[:n]


_MATMUL_2D = {(2, 2): ("ij", "jk", "ik"), (2, 1): ("ij", "j", "i"),
              (1, 2): ("j", "jk", "k"), (1, 1): ("j", "j", "")}


@implements(np.matmul)
def matmul(a, b):
    a, b = promote(a, b)
    spec = _MATMUL_2D.get((a.ndim, b.ndim))
    if spec is not None:
        if a.shape[-1] != b.shape[0]:
            raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} do not align")
        return contract_p.bind(a, b, spec=spec)
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        raise ShapeError("matmul: operands must not be scalars (use *)")
    if np.shape(a)[-1] != np.shape(b)[-2 if np.ndim(b) > 1 else 0]:
        raise ShapeError(f"matmul: shapes {np.shape(a)} and {np.shape(b)} do not align")
    batch = broadcast_shapes(np.shape(a)[:-2], np.shape(b)[:-2])
    if np.ndim(a) > 2 and np.shape(a)[:-2] != batch:
        a = broadcast_to(a, batch + np.shape(a)[-2:])
    if np.ndim(b) > 2 and np.shape(b)[:-2] != batch:
        b = broadcast_to(b, batch + np.shape(b)[-2:])
    bl = _letters(len(batch), "ijk")
    a_idx = (bl[len(bl) - np.ndim(a) + 2:] + "ij") if np.ndim(a) > 1 else "j"
    b_idx = (bl[len(bl) - np.ndim(b) + 2:] + "jk") if np.ndim(b) > 1 else "j"
    out_idx = bl + ("i" if np.ndim(a) > 1 else "") + ("k" if np.ndim(b) > 1 else "")
    return contract(a, b, a_idx, b_idx, out_idx)


@implements(np.dot)
def dot(a, b, out=None):
    a, b = promote(a, b)
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return a * b
    if np.ndim(b) == 1:
        return tensordot(a, b, ([np.ndim(a) - 1], [0]))
    return tensordot(a, b, ([np.ndim(a) - 1], [np.ndim(b) - 2]))


@implements(np.vdot)
def vdot(a, b):
    return dot(reshape(a, (-1,)), reshape(b, (-1,)))


@implements(np.inner)
def inner(a, b):
    a, b = promote(a, b)
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return a * b
    return tensordot(a, b, ([np.ndim(a) - 1], [np.ndim(b) - 1]))


@implements(np.outer)
def outer(a, b, out=None):
    return contract(reshape(a, (-1,)), reshape(b, (-1,)), "i", "j", "ij")


@implements(np.tensordot)
def tensordot(a, b, axes=2):
    a, b = promote(a, b)
    if isinstance(axes, (int, np.integer)):
        axes = (list(range(np.ndim(a) - axes, np.ndim(a))), list(range(axes)))
    ax_a, ax_b = ([axes[0]] if isinstance(axes[0], (int, np.integer)) else list(axes[0]),
                  [axes[1]] if isinstance(axes[1], (int, np.integer)) else list(axes[1]))
    ax_a = [x % np.ndim(a) for x in ax_a]
    ax_b = [x % np.ndim(b) for x in ax_b]
    letters = iter(string.ascii_letters)
    a_idx = [next(letters) for _ in range(np.ndim(a))]
    b_idx = [next(letters) for _ in range(np.ndim(b))]
    for i, j in zip(ax_a, ax_b):
        if np.shape(a)[i] != np.shape(b)[j]:
            raise ShapeError(f"tensordot: axis {i} of {np.shape(a)} and axis {j} of "
                             f"{np.shape(b)} differ in length")
        b_idx[j] = a_idx[i]
    out = [c for k, c in enumerate(a_idx) if k not in ax_a] + \
          [c for k, c in enumerate(b_idx) if k not in ax_b]
    return contract(a, b, "".join(a_idx), "".join(b_idx), "".join(out))
