"""Linear algebra (`np.linalg`): solve is the primitive most others are built on.

solve(A, B) is linear in B (transpose: solve with A^T); its JVP is
solve(A, dB - dA X). inv is solve against the identity. slogdet has its own rule;
det = sign * exp(logabsdet). norm has a primitive for the Euclidean/Frobenius norm whose
derivative at 0 is 0 (an element of the Clarke subdifferential, never NaN).
"""
from __future__ import annotations

import numpy as np

from ..core.errors import ShapeError
from ..core.ir import Aval, aval_of
from ..core.primitive import Zero, is_undefined, primitive
from .common import as_operand, implements, normalize_axes, promote
from .shape import broadcast_to, reshape


def _mT(x):
    return np.swapaxes(x, -1, -2)


def _check_square(a, name):
    if np.ndim(a) < 2 or np.shape(a)[-1] != np.shape(a)[-2]:
        raise ShapeError(f"np.linalg.{name} needs square matrices (..., n, n), "
                         f"got shape {np.shape(a)}")


# --------------------------------------------------------------------------- solve

def _solve_shape(a, b):
    if b.shape[-2] != a.shape[-1]:
        raise ShapeError(f"np.linalg.solve: {a.shape} and {b.shape} do not align")
    return Aval(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + b.shape[-2:],
                np.result_type(a.dtype, b.dtype))


def _solve_jvp(primals, tangents, outs):
    (a, b), (ta, tb), x = primals, tangents, outs[0]
    rhs = None if isinstance(tb, Zero) else tb
    if not isinstance(ta, Zero):
        rhs = -(ta @ x) if rhs is None else rhs - ta @ x
    return [solve_p.bind(a, rhs)]


def _solve_transpose(cts, a, b):
    ct_b = solve_p.bind(_mT(a), cts[0])
    return [None, ct_b if aval_of(ct_b).shape == b.aval.shape else
            np.sum(ct_b, axis=tuple(range(ct_b.ndim - b.aval.ndim)))]


solve_p = primitive("solve", np.linalg.solve, _solve_shape, jvp=_solve_jvp,
                    transpose=_solve_transpose)


@implements(np.linalg.solve)
def solve(a, b):
    a, b = promote(a, b)
    _check_square(a, "solve")
    if np.ndim(b) == 1:
        return reshape(solve_p.bind(a, reshape(b, (-1, 1))), a.shape[:-2] + (-1,))
    return solve_p.bind(a, b)


@implements(np.linalg.inv)
def inv(a):
    a = as_operand(a)
    _check_square(a, "inv")
    eye = np.eye(a.shape[-1], dtype=a.dtype)
    return solve_p.bind(a, broadcast_to(eye, a.shape) if a.ndim > 2 else eye)


# --------------------------------------------------------------------------- determinants

def _slogdet_jvp(primals, tangents, outs):
    a, ta = primals[0], tangents[0]
    sign, logdet = outs
    trace = np.trace(solve(a, ta), axis1=-2, axis2=-1)
    return [Zero(aval_of(sign)), trace]


slogdet_p = primitive("slogdet", lambda a: tuple(np.linalg.slogdet(a)),
                      lambda a: [Aval(a.shape[:-2], a.dtype)] * 2,
                      multiple_results=True, jvp=_slogdet_jvp)


@implements(np.linalg.slogdet)
def slogdet(a):
    a = as_operand(a)
    _check_square(a, "slogdet")
    return tuple(slogdet_p.bind(a))


@implements(np.linalg.det)
def det(a):
    sign, logdet = slogdet(a)
    return sign * np.exp(logdet)


# --------------------------------------------------------------------------- norms

def _norm2_jvp(primals, tangents, outs, axes):
    x, t, n = primals[0], tangents[0], outs[0]
    safe = np.where(n == 0, 1.0, n)
    return [np.sum(x * t, axis=axes) / safe]


norm2_p = primitive("norm2", lambda x, axes: np.sqrt(np.sum(x * x, axis=axes)),
                    lambda x, axes: Aval(tuple(d for i, d in enumerate(x.shape)
                                               if i not in axes), x.dtype),
                    jvp=_norm2_jvp)


@implements(np.linalg.norm)
def norm(x, ord=None, axis=None, keepdims=False):
    x = as_operand(x)
    if axis is None and ord is not None:
        axis = tuple(range(x.ndim))
    axes = normalize_axes(axis, x.ndim)
    if ord is None or (ord == 2 and len(axes) == 1) or (ord == "fro"):
        out = norm2_p.bind(x, axes=axes)
    elif len(axes) == 1:
        a = np.abs(x)
        if ord == np.inf:
            out = np.max(a, axis=axes)
        elif ord == -np.inf:
            out = np.min(a, axis=axes)
        elif ord == 1:
            out = np.sum(a, axis=axes)
        elif ord == 0:
            out = np.sum(np.not_equal(x, 0), axis=axes).astype(x.dtype)
        else:
            out = np.sum(a ** ord, axis=axes) ** (1.0 / ord)
    else:
        r, c = axes
        a = np.abs(x)
        if ord == 1:
            out = np.max(np.sum(a, axis=r, keepdims=True), axis=axes)
        elif ord == np.inf:
            out = np.max(np.sum(a, axis=c, keepdims=True), axis=axes)
        elif ord in (2, -2, "nuc"):
            s = np.linalg.svd(np.moveaxis(x, axes, (-2, -1)), compute_uv=False)
            out = {2: np.max, -2: np.min, "nuc": np.sum}[ord](s, axis=-1)
        else:
            raise ShapeError(f"np.linalg.norm: ord={ord!r} is not supported for matrices")
    if keepdims:
        out = reshape(out, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    return out
