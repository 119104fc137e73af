"""Newton-type methods on a flat vector x: Newton for minimization (with or without
line search), L-BFGS, and Newton for roots of F(x, theta) = 0.

Newton directions are `linear_solve` equations whose matrix is applied matrix-free
(Hessian-vector products, or JVPs of F), so an unrolled Newton iteration is
differentiable too, and the last Newton step is the natural "onestep" map: at the
solution ∂ₓ(step) = 0, so its derivative is exact up to O(|x_prev - x*|). A damped step
(line search with step < 1) loses this: ∂ₓ(step) = (1 - step) I. The traced last step
starts its Krylov solve from the direction the solver found, which already meets the
tolerance: the forward pass of one-step costs a gradient and a product, not a solve.
L-BFGS's onestep map is its own last update, with the curvature pairs held constant.
"""
from __future__ import annotations

import numpy as np

from .. import api
from ..core.pytree import tree_flatten, tree_unflatten
from .common import Replay, Solver, SolverInfo, per_iteration, record, value_of
from .first_order import ROUNDING, _concrete_fun
from .linear import solve_flat


class _Operator:
    """matvec(operands, v) for linear_solve: operands = [x, *theta leaves]; `apply`
    gives the product from (x, theta, v)."""

    def __init__(self, apply, theta):
        self.apply = apply
        self.theta_tree = tree_flatten(theta)[1]

    def operands(self, x, theta):
        return [x] + tree_flatten(theta)[0]

    def __call__(self, operands, v):
        return self.apply(operands[0], tree_unflatten(self.theta_tree, operands[1:]), v)


def hessian_vector_product(fun):
    grad = api.grad(fun)

    def hvp(x, theta, v):
        return api.jvp(lambda z: grad(z, theta), (x,), (v,))[1]
    return hvp


def _newton_direction(apply, x, theta, rhs, linear, guess=None):
    op = _Operator(apply, theta)
    return solve_flat(op, rhs, op.operands(x, theta), linear, guess)


def _with_direction(x0):
    """`last` of the Newton methods before any step: (x, direction)."""
    return x0, np.zeros_like(x0)


def _line_search(f, x, value, slope, direction, shrink=0.5, armijo=1e-4):
    step = 1.0
    for _ in range(60):
        if f(x + step * direction) <= value + armijo * step * slope + ROUNDING * abs(value):
            break
        step *= shrink
    return step


def newton(fun, *, line_search=True, step_size=None, linear, maxiter=50, tol=1e-8):
    """x <- x - step H⁻¹ ∇f: step = step_size when given (damped Newton), else 1 or from
    Armijo backtracking (line_search)."""
    hvp = hessian_vector_product(fun)
    value_and_grad, grad = api.value_and_grad(fun), api.grad(fun)

    def run(x, theta, trail=None):
        step = 1.0 if step_size is None else step_size
        last = _with_direction(x)
        for k in range(maxiter + 1):
            value, g = value_and_grad(x, theta)
            residual = value_of(np.linalg.norm(g))
            if residual <= tol or k == maxiter:
                break
            direction = _newton_direction(hvp, x, theta, g, linear)     # H⁻¹ ∇f
            if line_search and step_size is None:
                step = _line_search(_concrete_fun(fun, theta), api.concrete(x),
                                    value_of(value), -value_of(np.sum(g * direction)),
                                    -api.concrete(direction))
            record(trail, step)
            last = (x, direction)
            x = x - step * direction
        return x, SolverInfo(k, residual, residual <= tol, step), last

    def newton_step(last, theta, info):
        x, direction = last
        return x - info.step * _newton_direction(hvp, x, theta, grad(x, theta), linear,
                                                 guess=direction)

    def advance(x, theta, c):
        return x - c[0] * _newton_direction(hvp, x, theta, grad(x, theta), linear)

    return Solver(run, grad, newton_step, symmetric=True, start=_with_direction,
                  replay=Replay(lambda x0: x0, advance, lambda x: x))


def lbfgs(fun, *, linear, memory=10, maxiter=500, tol=1e-8, checkpoint=False):
    """Limited-memory BFGS with Armijo backtracking. Its onestep map is its own last
    update, x - step H_k ∇f(x), with H_k (the two-loop recursion on the curvature pairs
    and the initial scaling gamma of that update) held constant: its derivative is
    -step H_k ∂θ∇f, which approximates the implicit -H⁻¹ ∂θ∇f only as far as H_k
    approximates the inverse Hessian."""
    value_and_grad = per_iteration(api.value_and_grad(fun), checkpoint)

    def run(x, theta, trail=None):
        pairs, last = [], None
        step = 1.0
        value, g = value_and_grad(x, theta)
        f = _concrete_fun(fun, theta)
        for k in range(maxiter + 1):
            residual = value_of(np.linalg.norm(g))
            if residual <= tol or k == maxiter:
                break
            s, y, _ = pairs[-1] if pairs else (None, None, None)
            gamma = np.sum(s * y) / np.sum(y * y) if pairs else 1.0 / max(residual, 1.0)
            direction = -_two_loop(g, pairs, gamma)
            step = _line_search(f, api.concrete(x), value_of(value),
                                value_of(np.sum(g * direction)), api.concrete(direction))
            last = (x, pairs, gamma)
            x_new = x + step * direction
            value_new, g_new = value_and_grad(x_new, theta)
            s, y = x_new - x, g_new - g
            if value_of(np.sum(s * y)) > 1e-12:
                pairs = (pairs + [(s, y, 1.0 / np.sum(s * y))])[-memory:]
            x, value, g = x_new, value_new, g_new
        return x, SolverInfo(k, residual, residual <= tol, step), \
            start(x) if last is None else _padded(*last, memory)

    def start(x0):
        return _padded(x0, [], 1.0, memory)

    def lbfgs_step(last, theta, info):
        x, S, Y, rho, gamma = last
        return x - info.step * _two_loop(api.grad(fun)(x, theta), list(zip(S, Y, rho)), gamma)

    return Solver(run, api.grad(fun), lbfgs_step, symmetric=True, start=start)


def _padded(x, pairs, gamma, memory):
    """(x, S, Y, rho, gamma): the pairs as arrays of `memory` rows, zero rows first
    (a zero row changes nothing in the two-loop recursion)."""
    zero = (np.zeros_like(x), np.zeros_like(x), np.zeros(()))
    rows = [zero] * (memory - len(pairs)) + list(pairs)
    return (x, np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]),
            np.stack([r[2] for r in rows]), gamma)


def _two_loop(g, pairs, gamma):
    """The L-BFGS approximation of H⁻¹ g from the curvature pairs (s, y, 1/<s, y>),
    starting from gamma I."""
    q, alphas = g, []
    for s, y, rho in reversed(pairs):
        alpha = rho * np.sum(s * q)
        alphas.append(alpha)
        q = q - alpha * y
    q = q * gamma
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        q = q + s * (alpha - rho * np.sum(y * q))
    return q


def newton_root(fun, *, linear, maxiter=50, tol=1e-8):
    """Newton's method for F(x, theta) = 0: x <- x - J⁻¹ F, J applied by JVPs of F."""
    def jacobian_vector_product(x, theta, v):
        return api.jvp(lambda z: fun(z, theta), (x,), (v,))[1]

    def run(x, theta, trail=None):
        last = _with_direction(x)
        for k in range(maxiter + 1):
            residual_vector = fun(x, theta)
            residual = value_of(np.linalg.norm(residual_vector))
            if residual <= tol or k == maxiter:
                break
            direction = _newton_direction(jacobian_vector_product, x, theta,
                                          residual_vector, linear)          # J⁻¹ F
            record(trail)
            last = (x, direction)
            x = x - direction
        return x, SolverInfo(k, residual, residual <= tol), last

    def newton_step(last, theta, info):
        x, direction = last
        return x - _newton_direction(jacobian_vector_product, x, theta, fun(x, theta),
                                     linear, guess=direction)

    def advance(x, theta, _):
        return x - _newton_direction(jacobian_vector_product, x, theta, fun(x, theta),
                                     linear)

    return Solver(run, fun, newton_step, symmetric=False, start=_with_direction,
                  replay=Replay(lambda x0: x0, advance, lambda x: x))
