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
"""
from __future__ import annotations

import numpy as np

from .core.errors import ShapeError
from .core.ir import Aval, aval_of
from .core.primitive import primitive
from .ops.common import as_operand, check_float_dtype

__all__ = ["tria", "qr_tria", "pinv"]

# Singular values below PINV_RTOL times the largest count as zero in `pinv`.
PINV_RTOL = 1e-10


def _check_matrix(a, name):
    if np.ndim(a) != 2:
        raise ShapeError(f"chainrule.linalg.{name} needs a matrix (2-D array), got shape "
                         f"{np.shape(a)}; apply it to each matrix of a stack separately")
    check_float_dtype(a, f"chainrule.linalg.{name}")


# --------------------------------------------------------------------------- pinv

def _pinv_jvp(primals, tangents, outs):
    """Derivative of the pseudo-inverse at constant rank (Golub & Pereyra, 1973)."""
    a, da, p = primals[0], tangents[0], outs[0]
    daT = da.T
    left = np.eye(a.shape[1], dtype=p.dtype) - p @ a      # I - A⁺A
    right = np.eye(a.shape[0], dtype=p.dtype) - a @ p     # I - AA⁺
    return [-(p @ da @ p) + (p @ p.T) @ daT @ right + left @ daT @ (p.T @ p)]


pinv_p = primitive("pinv", lambda a: np.linalg.pinv(a, rtol=PINV_RTOL),
                   lambda a: Aval(a.shape[::-1], a.dtype), jvp=_pinv_jvp)


def pinv(a):
    """Moore-Penrose pseudo-inverse (singular values below PINV_RTOL times the largest are
    dropped); differentiable where the rank does not change."""
    a = as_operand(a)
    _check_matrix(a, "pinv")
    return pinv_p.bind(a)


# --------------------------------------------------------------------------- tria

def _tria_impl(a):
    """(R, Q) with A = R Qᵀ, R (n, n) lower-triangular with nonnegative diagonal, Q (m, n)
    with orthonormal columns (zero columns past m when m < n)."""
    n, m = a.shape
    q, r = np.linalg.qr(a.T)                       # Aᵀ = q r, q (m, k), r (k, n), k = min
    signs = np.where(np.diagonal(r) < 0, -1.0, 1.0).astype(r.dtype)
    q, r = q * signs, r * signs[:, None]
    k = r.shape[0]
    return (np.pad(r.T, ((0, 0), (0, n - k))), np.pad(q, ((0, 0), (0, n - k))))


def _tria_shape(a):
    n, m = a.shape
    return [Aval((n, n), a.dtype), Aval((m, n), a.dtype)]


def _tria_jvp(primals, tangents, outs):
    """The rule through the Gramian (module docstring) for R, and for Q the derivative of
    Qᵀ = R⁺ A, exact where R has full column rank (what second order needs)."""
    da = tangents[0]
    r, q = outs
    r_pinv = pinv_p.bind(r)
    da_q = da @ q
    k = r_pinv @ da_q
    eye = np.eye(r.shape[0], dtype=aval_of(r).dtype)
    phi = np.tril(k + k.T) - k * eye
    dr = r @ phi + (da_q - r @ (r_pinv @ da_q))
    dq = (r_pinv @ (da - dr @ q.T)).T
    return [dr, dq]


tria_p = primitive("tria", _tria_impl, _tria_shape, multiple_results=True, jvp=_tria_jvp)


def tria(a):
    """Lower-triangular R (n, n) with R Rᵀ = A Aᵀ for A of shape (n, m), any m and any
    rank. Differentiable through the Gramian: finite where QR's derivative is not."""
    a = as_operand(a)
    _check_matrix(a, "tria")
    return tria_p.bind(a)[0]


# --------------------------------------------------------------------------- the textbook QR rule

def _upper_triangular_inverse(r):
    """R⁻¹ by back substitution, like the triangular solves of QR rules in AD systems: a
    zero on the diagonal gives inf, and inf meets zero as NaN."""
    n = r.shape[0]
    eye = np.eye(n, dtype=aval_of(r).dtype)
    rows = [None] * n
    for i in reversed(range(n)):
        acc = eye[i]
        for j in range(i + 1, n):
            acc = acc - r[i, j] * rows[j]
        rows[i] = acc / r[i, i]
    return np.stack(rows)


def _qr_tria_jvp(primals, tangents, outs):
    """Textbook QR derivative of Aᵀ = Q U (U = Rᵀ upper): M = Qᵀ dAᵀ U⁻¹,
    dU = (M - Ω) U with Ω the skew part built from the strict lower triangle of M."""
    da = tangents[0]
    r, q = outs
    u = r.T
    u_inv = _upper_triangular_inverse(u)
    m = q.T @ da.T @ u_inv
    low = np.tril(m, -1)
    core = m - (low - low.T)
    du = core @ u
    dq = da.T @ u_inv - q @ core
    return [du.T, dq]


qr_tria_p = primitive("qr_tria", _tria_impl, _tria_shape, multiple_results=True,
                      jvp=_qr_tria_jvp)


def qr_tria(a):
    """The same R as `tria`, differentiated by the textbook QR rule (divides by the
    diagonal of R: NaN for rank-deficient A). For comparison only; use `tria`."""
    a = as_operand(a)
    _check_matrix(a, "qr_tria")
    n, m = np.shape(a)
    if m < n:
        raise ShapeError(f"qr_tria: the textbook QR derivative does not exist for a wide "
                         f"Aᵀ (A of shape {(n, m)} has fewer columns than rows); use "
                         f"chainrule.linalg.tria")
    return qr_tria_p.bind(a)[0]
