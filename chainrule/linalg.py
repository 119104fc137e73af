"""Robust linear algebra for differentiable algorithms: `tria`, the triangularization that
square-root filters are made of, with a derivative that stays finite where the plain QR
derivative does not exist.

tria(A), for A of shape (n, m), returns the lower-triangular R (n, n) with R Rᵀ = A Aᵀ:
the transposed R factor of the QR decomposition of Aᵀ, signs fixed so that the diagonal
is nonnegative, padded with zero columns when m < n. The textbook QR derivative divides
by the diagonal of R (undefined for rank-deficient A) and does not exist for a wide Aᵀ.
tria's JVP goes through the Gramian instead (Corenflos, 2026): with A = R Qᵀ,

    K = R⁺ dA Q,   Φ(K) = tril(K + Kᵀ) - diag(K),   dR = R Φ(K) + (I - R R⁺) dA Q,

which gives d(R Rᵀ) = dA Aᵀ + A dAᵀ exactly for every shape and rank. The rule is written
with traceable operations (R⁺ is the `pinv` primitive below, differentiable where the
rank is locally constant), so reverse mode and higher orders follow. Second derivatives
are exact where R has full column rank (A of full row rank, or tall A of full column
rank); at a rank-deficient A, where R itself is not differentiable, first derivatives of
functions of R Rᵀ are exact but second derivatives are not guaranteed.

`qr_tria` is the same factorization differentiated by the textbook QR rule; it is kept
so that examples and tests can show where that rule breaks (NaN on rank-deficient input).

All three functions take stacks of matrices (..., n, m), like np.linalg's, which is
also how vmap batches them (one call on the stack, the batch axis first).
"""
from __future__ import annotations

import numpy as np

from .core.errors import ShapeError
from .core.ir import Aval, aval_of
from .core.primitive import batch_rules, primitive
from .ops.common import as_operand, check_float_dtype
from .core.batch_axes import broadcasting_rule

__all__ = ["tria", "qr_tria", "pinv"]

# Singular values below PINV_RTOL times the largest count as zero in `pinv`.
PINV_RTOL = 1e-10


def _check_matrix(a, name):
    if np.ndim(a) < 2:
        raise ShapeError(f"chainrule.linalg.{name} needs a matrix or a stack of matrices "
                         f"(..., n, m), got shape {np.shape(a)}; make a vector a matrix "
                         f"with x[None, :] (one row) or x[:, None] (one column)")
    check_float_dtype(a, f"chainrule.linalg.{name}")


def _mT(x):
    """The transpose of each matrix of a stack."""
    return np.swapaxes(x, -1, -2)


# --------------------------------------------------------------------------- pinv

def _pinv_jvp(primals, tangents, outs):
    """Derivative of the pseudo-inverse at constant rank (Golub & Pereyra, 1973)."""
    a, da, p = primals[0], tangents[0], outs[0]
    daT = _mT(da)
    left = np.eye(a.shape[-1], dtype=p.dtype) - p @ a      # I - A⁺A
    right = np.eye(a.shape[-2], dtype=p.dtype) - a @ p     # I - AA⁺
    return [-(p @ da @ p) + (p @ _mT(p)) @ daT @ right + left @ daT @ (_mT(p) @ p)]


pinv_p = primitive("pinv", lambda a: np.linalg.pinv(a, rtol=PINV_RTOL),
                   lambda a: Aval(a.shape[:-2] + a.shape[:-3:-1], a.dtype), jvp=_pinv_jvp)
batch_rules[pinv_p] = broadcasting_rule(pinv_p)


def pinv(a):
    """Moore-Penrose pseudo-inverse of a matrix or of each matrix of a stack (singular
    values below PINV_RTOL times the largest are dropped); differentiable where the rank
    does not change."""
    a = as_operand(a)
    _check_matrix(a, "pinv")
    return pinv_p.bind(a)


# --------------------------------------------------------------------------- tria

def _tria_impl(a):
    """(R, Q) with A = R Qᵀ, R (n, n) lower-triangular with nonnegative diagonal, Q (m, n)
    with orthonormal columns (zero columns past m when m < n); for each matrix of a
    stack."""
    n = a.shape[-2]
    q, r = np.linalg.qr(_mT(a))                    # Aᵀ = q r, q (m, k), r (k, n), k = min
    signs = np.where(np.diagonal(r, 0, -2, -1) < 0, -1.0, 1.0).astype(r.dtype)
    q, r = q * signs[..., None, :], r * signs[..., :, None]
    pad = [(0, 0)] * (a.ndim - 1) + [(0, n - r.shape[-2])]
    return np.pad(_mT(r), pad), np.pad(q, pad)


def _tria_shape(a):
    *stack, n, m = a.shape
    return [Aval((*stack, n, n), a.dtype), Aval((*stack, m, n), a.dtype)]


def _tria_jvp(primals, tangents, outs):
    """The rule through the Gramian (module docstring) for R, and for Q the derivative of
    Qᵀ = R⁺ A, exact where R has full column rank (what second order needs)."""
    da = tangents[0]
    r, q = outs
    r_pinv = pinv_p.bind(r)
    da_q = da @ q
    k = r_pinv @ da_q
    eye = np.eye(r.shape[-1], dtype=aval_of(r).dtype)
    phi = np.tril(k + _mT(k)) - k * eye
    dr = r @ phi + (da_q - r @ (r_pinv @ da_q))
    dq = _mT(r_pinv @ (da - dr @ _mT(q)))
    return [dr, dq]


tria_p = primitive("tria", _tria_impl, _tria_shape, multiple_results=True, jvp=_tria_jvp)
batch_rules[tria_p] = broadcasting_rule(tria_p)


def tria(a):
    """Lower-triangular R (n, n) with R Rᵀ = A Aᵀ for A of shape (n, m), any m and any
    rank (or for each matrix of a stack (..., n, m)). Differentiable through the
    Gramian: finite where QR's derivative is not."""
    a = as_operand(a)
    _check_matrix(a, "tria")
    return tria_p.bind(a)[0]


# --------------------------------------------------------------------------- the textbook QR rule

def _upper_triangular_inverse(r):
    """R⁻¹ by back substitution, like the triangular solves of QR rules in AD systems: a
    zero on the diagonal gives inf, and inf meets zero as NaN. Stacks: row i of each."""
    n = r.shape[-1]
    eye = np.eye(n, dtype=aval_of(r).dtype)
    rows = [None] * n
    for i in reversed(range(n)):
        acc = eye[i]
        for j in range(i + 1, n):
            acc = acc - r[..., i, j, None] * rows[j]
        rows[i] = acc / r[..., i, i, None]
    return np.stack(rows, axis=-2)


def _qr_tria_jvp(primals, tangents, outs):
    """Textbook QR derivative of Aᵀ = Q U (U = Rᵀ upper): M = Qᵀ dAᵀ U⁻¹,
    dU = (M - Ω) U with Ω the skew part built from the strict lower triangle of M."""
    da = tangents[0]
    r, q = outs
    u = _mT(r)
    u_inv = _upper_triangular_inverse(u)
    m = _mT(q) @ _mT(da) @ u_inv
    low = np.tril(m, -1)
    core = m - (low - _mT(low))
    du = core @ u
    dq = _mT(da) @ u_inv - q @ core
    return [_mT(du), dq]


qr_tria_p = primitive("qr_tria", _tria_impl, _tria_shape, multiple_results=True,
                      jvp=_qr_tria_jvp)
batch_rules[qr_tria_p] = broadcasting_rule(qr_tria_p)


def qr_tria(a):
    """The same R as `tria`, differentiated by the textbook QR rule (divides by the
    diagonal of R: NaN for rank-deficient A). For comparison only; use `tria`."""
    a = as_operand(a)
    _check_matrix(a, "qr_tria")
    n, m = np.shape(a)[-2:]
    if m < n:
        raise ShapeError(f"qr_tria: the textbook QR derivative does not exist for a wide "
                         f"Aᵀ (A of shape {(n, m)} has fewer columns than rows); use "
                         f"chainrule.linalg.tria")
    return qr_tria_p.bind(a)[0]
