"""`check_grads`: the one derivative checker every rule is tested with.

It compares, along random directions, forward mode (JVP) and reverse mode (VJP)
against central finite differences, and then recursively checks the derivative
functions themselves, up to the requested order:

    order 1, "fwd":  jvp(f, x, v)            ~  (f(x + eps v) - f(x - eps v)) / 2 eps
    order 1, "rev":  <vjp(f, x)(u), v>       ~  <u, finite-difference J v>
    order k:         the same checks applied to x -> jvp(f, x, v)[1] and to
                     x -> vjp(f, x)(u), which are functions with derivatives of order k-1.

Use float64 inputs. Points where f is not differentiable must be avoided by the caller.
"""
from __future__ import annotations

import numpy as np

from .api import jvp, vjp
from .core.pytree import tree_flatten, tree_unflatten

__all__ = ["check_grads", "numerical_jvp"]


def _random_like(tree, rng):
    leaves, td = tree_flatten(tree)
    return tree_unflatten(td, [rng.standard_normal(np.shape(x)) for x in leaves])


def _axpy(a, x, y):
    """y + a*x over pytrees."""
    xl, td = tree_flatten(x)
    yl, _ = tree_flatten(y)
    return tree_unflatten(td, [np.asarray(yi) + a * np.asarray(xi) for xi, yi in zip(xl, yl)])


def _vdot(x, y) -> float:
    return float(sum(np.vdot(np.asarray(a, float), np.asarray(b, float))
                     for a, b in zip(tree_flatten(x)[0], tree_flatten(y)[0])))


def numerical_jvp(f, args, tangents, eps):
    """Central finite difference of f along tangents (pytrees of arrays)."""
    plus = f(*_axpy(eps, tangents, args))
    minus = f(*_axpy(-eps, tangents, args))
    pl, td = tree_flatten(plus)
    ml, _ = tree_flatten(minus)
    return tree_unflatten(td, [(np.asarray(p) - np.asarray(m)) / (2 * eps)
                               for p, m in zip(pl, ml)])


def _assert_close(what, got, want, atol, rtol):
    gl, _ = tree_flatten(got)
    wl, _ = tree_flatten(want)
    for g, w in zip(gl, wl):
        g, w = np.asarray(g, float), np.asarray(w, float)
        if g.shape != w.shape or not np.allclose(g, w, atol=atol, rtol=rtol):
            err = np.max(np.abs(g - w)) if g.shape == w.shape else "shape mismatch"
            raise AssertionError(f"{what}: derivative does not match finite differences "
                                 f"(max abs error {err})\n got: {g}\nwant: {w}")


def check_grads(f, args, order=2, modes=("fwd", "rev"), eps=None, atol=None, rtol=None,
                rng=None):
    """Raises AssertionError if f's derivatives at args (a tuple of pytrees of float64
    arrays) disagree with finite differences, in each mode, up to `order`."""
    args = tuple(args)
    rng = np.random.default_rng(0) if rng is None else rng
    eps = 1e-6 if eps is None else eps
    atol = 1e-5 if atol is None else atol
    rtol = 1e-5 if rtol is None else rtol
    tangents = _random_like(args, rng)
    fd = numerical_jvp(f, args, tangents, eps)
    if "fwd" in modes:
        _, out_t = jvp(f, args, tangents)
        _assert_close(f"forward mode, order {order}", out_t, fd, atol, rtol)
    if "rev" in modes:
        out, pullback = vjp(f, *args)
        u = _random_like(out, rng)
        _assert_close(f"reverse mode, order {order}", _vdot(pullback(u), tangents),
                      _vdot(u, fd), atol, rtol)
    if order > 1:
        scale = dict(eps=eps * 10, atol=atol * 10, rtol=rtol * 10, rng=rng)
        if "fwd" in modes:
            check_grads(lambda *a: jvp(f, a, tangents)[1], args, order - 1, modes, **scale)
        if "rev" in modes:
            out = f(*args)
            u = _random_like(out, rng)
            check_grads(lambda *a: vjp(f, *a)[1](u), args, order - 1, modes, **scale)
