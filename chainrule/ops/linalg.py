"""Linear algebra (`np.linalg`), on stacks of matrices (..., m, n) as in NumPy.

Primitives: solve, slogdet, det, cholesky, qr, eigh, svd and the Euclidean norm. Their
JVP rules are written with the handlers of this module and of the other op families,
so every rule can be differentiated again; solve is linear in its right-hand side and
is the only one with a transpose rule (reverse mode of the others goes through the
linearized graph of their JVP). inv, eigvalsh, svdvals, matrix norms and the
remaining modes are composed from the primitives.

Conventions where the derivative is delicate:

- cholesky and eigh read one triangle of a matrix that is meant to be symmetric. Their
  derivatives are taken with respect to the symmetric part: the tangent dA is replaced
  by (dA + dAᵀ)/2, so gradients come back symmetric.
- eigh and svd: the derivatives of eigenvectors / singular vectors need distinct
  eigenvalues / singular values (they divide by the gaps). At an exact tie the coupling
  between the tied pair is set to zero instead of inf/NaN. The eigenvalue (singular
  value) tangents are then still exact for any function that is symmetric in the tied
  values (their sum is right); the vectors of a repeated value are not unique, so
  functions of those vectors have no derivative there and the value returned is only a
  finite stand-in. svd of a non-square matrix also divides by the singular values
  (zero singular values get the same zero-coupling convention).
- qr: reduced QR of tall and square matrices needs full column rank. A wide matrix
  [X | Y] (m < n) is factored as Q R1 = X, R = [R1 | QᵀY] (exactly what Householder QR
  computes), which is differentiable when its leading square block X is invertible.
  mode="complete" of a tall matrix has a non-unique Q and is refused.
- det is a primitive whose derivative is the adjugate, computed through an SVD, so it
  is exact also at singular matrices (where sign * exp(logabsdet) would give NaN). Its
  second derivative needs distinct singular values.
- norm: the Euclidean / Frobenius norm has derivative 0 at 0 (a Clarke element, not NaN).
"""
from __future__ import annotations

import numpy as np

from ..core.errors import ShapeError, SingularMatrixError, UnsupportedOperationError
from ..core.ir import Aval, aval_of
from ..core.primitive import Zero, batch_rules, primitive
from ..core.batch_axes import axis_param_rule, broadcasting_rule
from .common import as_operand, broadcast_shapes, implements, normalize_axes, promote, sum_to_shape
from .elementwise import stop_gradient_p
from .shape import broadcast_to, concatenate, reshape


def _result_class(numpy_fn):
    """NumPy's named result tuple of a linalg function (QRResult, EighResult, ...)."""
    return type(numpy_fn(np.eye(2)))


QRResult = _result_class(np.linalg.qr)
EighResult = _result_class(np.linalg.eigh)
SVDResult = _result_class(np.linalg.svd)
SlogdetResult = _result_class(np.linalg.slogdet)


def _mT(x):
    return np.swapaxes(x, -1, -2)


def _sym(x):
    return (x + _mT(x)) / 2


def _safe_reciprocal(x):
    """1/x, and 0 where x == 0 (the zero-coupling convention for ties)."""
    zero = x == 0
    return np.where(zero, 0.0, 1 / np.where(zero, 1.0, x))


def _matrix_operand(a, name, square=True):
    """A float stack of matrices, or a ShapeError that says what shape was needed."""
    a = as_operand(a)
    if not np.issubdtype(a.dtype, np.inexact):
        a = a.astype(np.float64)
    if a.ndim < 2 or (square and a.shape[-1] != a.shape[-2]):
        need = "square matrices (..., n, n)" if square else "matrices (..., m, n)"
        raise ShapeError(f"np.linalg.{name} needs {need}, got shape {a.shape}")
    return a


def _float_aval(shape, dtype):
    return Aval(shape, np.result_type(dtype, np.float64) if dtype.kind in "biu" else dtype)


# --------------------------------------------------------------------------- solve

def _solve_shape(a, b):
    return Aval(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + b.shape[-2:],
                np.result_type(a.dtype, b.dtype))


def _solve_jvp(primals, tangents, outs):
    """X = A⁻¹B: dX = A⁻¹(dB - dA X)."""
    a, (ta, tb), x = primals[0], tangents, outs[0]
    rhs = None if isinstance(tb, Zero) else tb
    if not isinstance(ta, Zero):
        rhs = -(ta @ x) if rhs is None else rhs - ta @ x
    return [solve_p.bind(a, rhs)]


def _solve_transpose(cts, a, b):
    return [None, sum_to_shape(solve_p.bind(_mT(a), cts[0]), b.aval.shape)]


def _solve_impl(a, b):
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError as e:
        raise SingularMatrixError(
            f"a linear solve met a singular matrix ({e}); this happens in "
            f"np.linalg.solve/inv of a singular input and in derivative rules that solve "
            f"with a factor, e.g. qr or cholesky at a rank-deficient input (there the "
            f"derivative does not exist: chainrule.linalg.tria has one at any rank)") from e


solve_p = primitive("solve", _solve_impl, _solve_shape, jvp=_solve_jvp,
                    transpose=_solve_transpose)
batch_rules[solve_p] = broadcasting_rule(solve_p)


@implements(np.linalg.solve)
def solve(a, b):
    """NumPy 2 semantics: b is a vector only when it is 1-d, else a stack of matrices."""
    a, b = promote(a, b)
    a = _matrix_operand(a, "solve")
    vector = np.ndim(b) == 1
    rows = np.shape(b)[0] if vector else np.shape(b)[-2] if np.ndim(b) >= 2 else None
    if rows != a.shape[-1]:
        raise ShapeError(
            f"np.linalg.solve: a of shape {a.shape} needs b of shape ({a.shape[-1]},) or "
            f"(..., {a.shape[-1]}, k), got {np.shape(b)}")
    if vector:
        return reshape(solve_p.bind(a, reshape(b, (-1, 1))), a.shape[:-2] + (-1,))
    broadcast_shapes(a.shape[:-2], np.shape(b)[:-2])
    return solve_p.bind(a, b)


@implements(np.linalg.inv)
def inv(a):
    a = _matrix_operand(a, "inv")
    eye = np.eye(a.shape[-1], dtype=a.dtype)
    return solve_p.bind(a, broadcast_to(eye, a.shape) if a.ndim > 2 else eye)


# --------------------------------------------------------------------------- determinants

def _slogdet_jvp(primals, tangents, outs):
    """d log|det A| = tr(A⁻¹ dA); the sign is piecewise constant."""
    a, ta = primals[0], tangents[0]
    return [Zero(aval_of(outs[0])),
            np.trace(solve(a, ta), axis1=-2, axis2=-1)]


slogdet_p = primitive("slogdet", lambda a: tuple(np.linalg.slogdet(a)),
                      lambda a: [_float_aval(a.shape[:-2], a.dtype)] * 2,
                      multiple_results=True, jvp=_slogdet_jvp)
batch_rules[slogdet_p] = broadcasting_rule(slogdet_p)


@implements(np.linalg.slogdet)
def slogdet(a):
    return SlogdetResult(*slogdet_p.bind(_matrix_operand(a, "slogdet")))


def _products_of_the_others(s):
    """p[..., i] = prod over j != i of s[..., j], without dividing (exact at zeros)."""
    ones = np.ones(s.shape[:-1] + (1,), s.dtype)
    before = np.cumprod(concatenate([ones, s[..., :-1]], -1), axis=-1)
    after = np.flip(np.cumprod(np.flip(concatenate([s[..., 1:], ones], -1), -1),
                               axis=-1), -1)
    return before * after


def adjugate(a):
    """adj(A) = det(A) A⁻¹, through A = U S Vᵀ: adj(A) = det(U Vᵀ) V diag(p) Uᵀ with
    p_i the product of the other singular values; finite and exact for singular A."""
    u, s, vh = svd(a)
    sign = slogdet(stop_gradient_p.bind(u @ vh))[0]
    return sign[..., None, None] * ((_mT(vh) * _products_of_the_others(s)[..., None, :])
                                     @ _mT(u))


def _det_jvp(primals, tangents, outs):
    """d det A = tr(adj(A) dA) = sum(adj(A)ᵀ * dA)."""
    return [np.sum(_mT(adjugate(primals[0])) * tangents[0], axis=(-2, -1))]


det_p = primitive("det", np.linalg.det,
                  lambda a: _float_aval(a.shape[:-2], a.dtype), jvp=_det_jvp)
batch_rules[det_p] = broadcasting_rule(det_p)


@implements(np.linalg.det)
def det(a):
    return det_p.bind(_matrix_operand(a, "det"))


# --------------------------------------------------------------------------- cholesky

def _lower_with_half_diagonal(n, dtype):
    return np.tril(np.ones((n, n), dtype)) - 0.5 * np.eye(n, dtype=dtype)


def _cholesky_jvp(primals, tangents, outs):
    """A = L Lᵀ: dL = L Φ(L⁻¹ dA L⁻ᵀ), Φ = lower triangle with half the diagonal."""
    l, da = outs[0], _sym(tangents[0])
    inner = solve(l, _mT(solve(l, da)))
    return [l @ (inner * _lower_with_half_diagonal(l.shape[-1], l.dtype))]


cholesky_p = primitive("cholesky", np.linalg.cholesky, lambda a: a, jvp=_cholesky_jvp)
batch_rules[cholesky_p] = broadcasting_rule(cholesky_p)


@implements(np.linalg.cholesky)
def cholesky(a, /, *, upper=False):
    l = cholesky_p.bind(_matrix_operand(a, "cholesky"))
    return _mT(l) if upper else l


# --------------------------------------------------------------------------- qr

def _qr_shape(a):
    k = min(a.shape[-2:])
    return [Aval(a.shape[:-1] + (k,), a.dtype), Aval(a.shape[:-2] + (k, a.shape[-1]), a.dtype)]


def _qr_jvp(primals, tangents, outs):
    """A = QR (m >= n): with C = Qᵀ dA R⁻¹ and Ω = tril(C, -1) - tril(C, -1)ᵀ (skew),
    dQ = Q(Ω - C) + dA R⁻¹ and dR = (C - Ω) R (upper triangular)."""
    q, r = outs
    da_rinv = _mT(solve(_mT(r), _mT(tangents[0])))
    c = _mT(q) @ da_rinv
    lower = c * np.tril(np.ones(c.shape[-2:], c.dtype), -1)
    omega = lower - _mT(lower)
    return [q @ (omega - c) + da_rinv, (c - omega) @ r]


qr_p = primitive("qr", lambda a: tuple(np.linalg.qr(a)), _qr_shape,
                 multiple_results=True, jvp=_qr_jvp)
batch_rules[qr_p] = broadcasting_rule(qr_p)


@implements(np.linalg.qr)
def qr(a, mode="reduced"):
    a = _matrix_operand(a, "qr", square=False)
    m, n = a.shape[-2:]
    if mode not in ("reduced", "complete", "r"):
        raise UnsupportedOperationError(
            f"np.linalg.qr mode={mode!r} is not supported; use mode='reduced'")
    if mode == "complete" and m > n:
        raise UnsupportedOperationError(
            f"np.linalg.qr(mode='complete') of a tall {m}x{n} matrix has a non-unique Q "
            f"(its last {m - n} columns), so it has no derivative; use mode='reduced'")
    if m >= n:
        q, r = qr_p.bind(a)
    else:
        q, r_square = qr_p.bind(a[..., :m])
        r = concatenate([r_square, _mT(q) @ a[..., m:]], -1)
    return r if mode == "r" else QRResult(q, r)


# --------------------------------------------------------------------------- eigh

def _eigh_jvp(primals, tangents, outs, UPLO):
    """A = V diag(w) Vᵀ: with S = Vᵀ sym(dA) V, dw = diag(S) and dV = V (F * S),
    F_ij = 1/(w_j - w_i) off the diagonal (0 on it and at exact ties)."""
    w, v = outs
    s = _mT(v) @ _sym(tangents[0]) @ v
    gaps = _safe_reciprocal(w[..., None, :] - w[..., :, None])
    return [np.diagonal(s, 0, -2, -1), v @ (gaps * s)]


eigh_p = primitive(
    "eigh", lambda a, UPLO: tuple(np.linalg.eigh(a, UPLO)),
    lambda a, UPLO: [Aval(a.shape[:-1], a.dtype), a], multiple_results=True, jvp=_eigh_jvp)
batch_rules[eigh_p] = broadcasting_rule(eigh_p)


@implements(np.linalg.eigh)
def eigh(a, UPLO="L"):
    return EighResult(*eigh_p.bind(_matrix_operand(a, "eigh"), UPLO=UPLO.upper()))


@implements(np.linalg.eigvalsh)
def eigvalsh(a, UPLO="L"):
    return eigh(a, UPLO)[0]


# --------------------------------------------------------------------------- svd

def _svd_shape(a, hermitian):
    m, n = a.shape[-2:]
    k, batch = min(m, n), a.shape[:-2]
    return [Aval(batch + (m, k), a.dtype), Aval(batch + (k,), a.dtype),
            Aval(batch + (k, n), a.dtype)]


def _svd_jvp(primals, tangents, outs, hermitian):
    """Reduced A = U diag(s) Vᵀ. With dS = Uᵀ dA V and F_ij = 1/(s_j² - s_i²):
    ds = diag(dS), dU = U (F * (dS S + S dSᵀ)) + (I - UUᵀ) dA V S⁻¹ (tall),
    dV = V (F * (S dS + dSᵀ S)) + (I - VVᵀ) dAᵀ U S⁻¹ (wide)."""
    u, s, vh = outs
    da, v = tangents[0], _mT(vh)
    ds = _mT(u) @ da @ v
    s_row, s_col = s[..., None, :], s[..., :, None]
    f = _safe_reciprocal(s_row * s_row - s_col * s_col)
    ds_s, s_ds = ds * s_row, s_col * ds
    du = u @ (f * (ds_s + _mT(ds_s)))
    dv = v @ (f * (s_ds + _mT(s_ds)))
    m, n = u.shape[-2], vh.shape[-1]
    if m > n:
        da_v = da @ v
        du = du + (da_v - u @ (_mT(u) @ da_v)) * _safe_reciprocal(s_row)
    if n > m:
        dat_u = _mT(da) @ u
        dv = dv + (dat_u - v @ (_mT(v) @ dat_u)) * _safe_reciprocal(s_row)
    return [du, np.diagonal(ds, 0, -2, -1), _mT(dv)]


svd_p = primitive(
    "svd", lambda a, hermitian: tuple(np.linalg.svd(a, False, True, hermitian)),
    _svd_shape, multiple_results=True, jvp=_svd_jvp)
batch_rules[svd_p] = broadcasting_rule(svd_p)


@implements(np.linalg.svd)
def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    a = _matrix_operand(a, "svd", square=False)
    m, n = a.shape[-2:]
    if compute_uv and full_matrices and m != n:
        raise UnsupportedOperationError(
            f"np.linalg.svd(full_matrices=True) of a {m}x{n} matrix has non-unique "
            f"singular vectors beyond the first {min(m, n)}, so it has no derivative; "
            f"pass full_matrices=False")
    u, s, vh = svd_p.bind(a, hermitian=bool(hermitian))
    return SVDResult(u, s, vh) if compute_uv else s


@implements(np.linalg.svdvals)
def svdvals(x, /):
    return svd(x, compute_uv=False)


# --------------------------------------------------------------------------- norms

def _norm2_jvp(primals, tangents, outs, axes):
    x, t, n = primals[0], tangents[0], outs[0]
    safe = np.where(n == 0, 1.0, n)
    return [np.sum(x * t, axis=axes) / safe]


norm2_p = primitive("norm2", lambda x, axes: np.sqrt(np.sum(x * x, axis=axes)),
                    lambda x, axes: Aval(tuple(d for i, d in enumerate(x.shape)
                                               if i not in axes), x.dtype),
                    jvp=_norm2_jvp)
batch_rules[norm2_p] = axis_param_rule(norm2_p, "axes")


def _vector_norm(x, ord, axes):
    a = np.abs(x)
    if ord == np.inf:
        return np.max(a, axis=axes)
    if ord == -np.inf:
        return np.min(a, axis=axes)
    if ord == 1:
        return np.sum(a, axis=axes)
    if ord == 0:
        return np.sum(np.not_equal(x, 0), axis=axes).astype(x.dtype)
    return np.sum(a ** ord, axis=axes) ** (1.0 / ord)


def _matrix_norm(x, ord, axes):
    rows, cols = axes
    a = np.abs(x)
    sums = {1: (rows, np.max), -1: (rows, np.min), np.inf: (cols, np.max),
            -np.inf: (cols, np.min)}
    if ord in sums:
        axis, pick = sums[ord]
        return pick(np.sum(a, axis=axis, keepdims=True), axis=axes)
    if ord in (2, -2, "nuc"):
        s = svd(np.moveaxis(x, axes, (-2, -1)), compute_uv=False)
        return {2: np.max, -2: np.min, "nuc": np.sum}[ord](s, axis=-1)
    raise ShapeError(f"np.linalg.norm: ord={ord!r} is not a matrix norm; use one of "
                     f"None, 'fro', 'nuc', 1, -1, 2, -2, inf, -inf")


@implements(np.linalg.norm)
def norm(x, ord=None, axis=None, keepdims=False):
    x = as_operand(x)
    if not np.issubdtype(x.dtype, np.inexact):
        x = x.astype(np.float64)
    if axis is None and ord is not None:
        axis = tuple(range(x.ndim))
    axes = normalize_axes(axis, x.ndim)
    if len(axes) not in (1, 2) and ord is not None:
        raise ShapeError(f"np.linalg.norm: ord={ord!r} needs 1 or 2 axes, got {axis}")
    if ord is None or (ord == 2 and len(axes) == 1) or ord == "fro":
        out = norm2_p.bind(x, axes=axes)
    elif len(axes) == 1:
        out = _vector_norm(x, ord, axes)
    else:
        out = _matrix_norm(x, ord, tuple(normalize_axes(a, x.ndim)[0] for a in axis))
    if keepdims:
        out = reshape(out, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    return out


@implements(np.linalg.vector_norm)
def vector_norm(x, /, *, axis=None, keepdims=False, ord=2):
    """The norm of the elements over `axis` (default: all) taken as one vector."""
    x = as_operand(x)
    axes = normalize_axes(axis, x.ndim)
    moved = np.moveaxis(x, axes, range(-len(axes), 0))
    out = norm(reshape(moved, moved.shape[:x.ndim - len(axes)] + (-1,)), ord, -1)
    if keepdims:
        out = reshape(out, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    return out


@implements(np.linalg.matrix_norm)
def matrix_norm(x, /, *, keepdims=False, ord="fro"):
    return norm(x, ord, (-2, -1), keepdims)


# --------------------------------------------------------------------------- products

@implements(np.linalg.matrix_power)
def matrix_power(a, n):
    """By repeated squaring; negative powers of the inverse."""
    a = _matrix_operand(a, "matrix_power")
    if n < 0:
        a, n = inv(a), -n
    result = None
    while n:
        if n & 1:
            result = a if result is None else result @ a
        n >>= 1
        if n:
            a = a @ a
    return broadcast_to(np.eye(a.shape[-1], dtype=a.dtype), a.shape) if result is None \
        else result


@implements(np.linalg.multi_dot)
def multi_dot(arrays, *, out=None):
    result = arrays[0]
    for a in arrays[1:]:
        result = result @ a
    return result


implements(np.linalg.matmul)(lambda x1, x2, /: np.matmul(x1, x2))
implements(np.linalg.outer)(lambda x1, x2, /: np.outer(x1, x2))
implements(np.linalg.tensordot)(lambda x1, x2, /, *, axes=2: np.tensordot(x1, x2, axes))
implements(np.linalg.cross)(lambda x1, x2, /, *, axis=-1: np.cross(x1, x2, axis=axis))
implements(np.linalg.matrix_transpose)(lambda x, /: _mT(x))
implements(np.linalg.trace)(lambda x, /, *, offset=0, dtype=None:
                            np.trace(x, offset, axis1=-2, axis2=-1))
implements(np.linalg.diagonal)(lambda x, /, *, offset=0: np.diagonal(x, offset, -2, -1))
implements(np.linalg.vecdot, np.vecdot)(lambda x1, x2, /, *, axis=-1:
                                        np.sum(x1 * x2, axis=axis))
