"""First-order methods on a flat vector x: gradient descent (fixed step or backtracking),
heavy ball, Nesterov, and proximal gradient / FISTA.

Each builder returns a `Solver`. The iterations are plain NumPy on x and theta, so
diff="unroll" differentiates through them; line searches and stopping tests look at
values only (their decisions are piecewise constant in theta). For diff="onestep" the
last iteration, a gradient (or proximal gradient) step with the last step size from the
previous iterate (plus the momentum term, held constant), is differentiated; its
derivative is -step * ∂θ∇f instead of -H⁻¹ ∂θ∇f, a bias that does not vanish with more
iterations (Bolte, Pauwels & Vaiter 2023).
"""
from __future__ import annotations

import numpy as np

from .. import api
from .common import Replay, Solver, SolverInfo, SolverOptionError, record, value_of

ROUNDING = 1e-13   # relative slack of sufficient-decrease tests for rounding errors


def _concrete_fun(fun, theta):
    plain = api.concrete(theta)
    return lambda x: value_of(fun(api.concrete(x), plain))


def backtracking(fun, x, theta, value, g, step, shrink=0.5, armijo=1e-4, max_halvings=60):
    """Largest step in {2 step, step, step/2, ...} with sufficient decrease along -g (up
    to the rounding error of the objective). Once the decrease a step can make is below
    that rounding error, values cannot tell steps apart: the step is kept (testing
    would accept ever larger ones by chance and stall the iteration)."""
    value, slope = value_of(value), value_of(np.sum(g * g))
    if step * slope <= ROUNDING * abs(value):
        return step
    f = _concrete_fun(fun, theta)
    step = 2 * step
    for _ in range(max_halvings):
        if f(x - step * g) <= value - armijo * step * slope + ROUNDING * abs(value):
            return step
        step *= shrink
    return step


def gradient_descent(fun, *, step_size=None, maxiter=500, tol=1e-8):
    """x <- x - step ∇f(x): fixed step_size, or backtracking (Armijo) when None."""
    value_and_grad = api.value_and_grad(fun)

    def run(x, theta, trail=None):
        step = 1.0 if step_size is None else step_size
        previous = x
        for k in range(maxiter + 1):
            value, g = value_and_grad(x, theta)
            residual = value_of(np.linalg.norm(g))
            if residual <= tol or k == maxiter:
                break
            if step_size is None:
                step = backtracking(fun, x, theta, value, g, step)
            record(trail, step)
            previous, x = x, x - step * g
        return x, SolverInfo(k, residual, residual <= tol, step), previous

    gradient_step = _gradient_step(fun)
    replay = Replay(lambda x0: x0, lambda x, theta, c: gradient_step(x, theta, c[0]),
                    lambda x: x)
    return Solver(run, api.grad(fun), lambda last, theta, info: gradient_step(
        last, theta, info.step), symmetric=True, replay=replay)


def _gradient_step(fun):
    grad = api.grad(fun)
    return lambda x, theta, step: x - step * grad(x, theta)


def momentum_method(fun, *, step_size, weight=0.9, nesterov=False, maxiter=1000,
                    tol=1e-8):
    """Heavy ball, x+ = x - step ∇f(x) + weight (x - x_prev), or Nesterov's method,
    y = x + weight (x - x_prev), x+ = y - step ∇f(y). Both need a fixed step_size;
    on a quadratic, heavy ball converges for weight in [0, 1) and step < 2(1+weight)/L
    although its iteration matrix can have 2-norm > 1 (the error may grow at first)."""
    if step_size is None:
        raise SolverOptionError(
            f"{'nesterov' if nesterov else 'heavy_ball'} needs a fixed step_size, e.g. "
            f"1/L for an L-smooth objective (or use method='gd' with a line search)")
    grad = api.grad(fun)
    gradient_step = _gradient_step(fun)
    scale = 1 + weight if nesterov else 1.0

    def run(x, theta, trail=None):
        previous, last = x, start(x)
        for k in range(maxiter + 1):
            y = x + weight * (x - previous) if nesterov else x
            g = grad(y, theta)
            residual = value_of(np.linalg.norm(g))
            if residual <= tol or k == maxiter:
                break
            # The next y is scale (y - step g) + offset (Nesterov: y+ = x+ + w (x+ - x)).
            offset = -weight * x if nesterov else weight * (x - previous)
            last = (y, offset)
            record(trail)
            previous, x = x, y - step_size * g + (0.0 if nesterov else offset)
        return y, SolverInfo(k, residual, residual <= tol, step_size), last

    def start(x0):
        return x0, np.zeros_like(x0)

    def momentum_step(last, theta, info):
        point, offset = last
        return scale * gradient_step(point, theta, info.step) + offset

    def advance(state, theta, _):
        """(x, x_prev) -> (x+, x), the iteration of `run` on its state."""
        x, previous = state
        y = x + weight * (x - previous) if nesterov else x
        return gradient_step(y, theta, step_size) + (
            0.0 if nesterov else weight * (x - previous)), x

    def output(state):
        x, previous = state
        return x + weight * (x - previous) if nesterov else x

    return Solver(run, grad, momentum_step, symmetric=True, start=start,
                  replay=Replay(lambda x0: (x0, x0), advance, output))


def proximal_gradient(fun, prox, *, step_size=None, accelerated=False, maxiter=1000,
                      tol=1e-8):
    """min f(x; theta) + g(x; theta[1]), where fun(x, theta) is the smooth part and prox
    the proximal operator of g, whose parameter is theta[1]:
    x+ = prox(x - step ∇f(x), theta[1], step). FISTA when accelerated; backtracking on
    the quadratic upper bound when step_size is None. The residual is the norm of the
    gradient mapping, |x+ - x| / step; the optimality condition for implicit
    derivatives is the fixed point x = prox(x - s ∇f(x), s) with s = step_size (1 when
    backtracking: the fixed points do not depend on s)."""
    grad = api.grad(fun)

    def prox_step(x, theta, step):
        return prox(x - step * grad(x, theta), theta[1], step)

    value_and_grad = api.value_and_grad(fun)

    def next_point(y, theta, step):
        if step_size is not None:
            return prox_step(y, theta, step), step
        value, g = value_and_grad(y, theta)
        f = _concrete_fun(fun, theta)
        value, step = value_of(value), 2 * step
        for _ in range(60):
            x = prox(y - step * g, theta[1], step)
            d = x - y
            bound = value + value_of(np.sum(g * d)) + value_of(np.sum(d * d)) / (2 * step)
            if f(x) <= bound + ROUNDING * abs(value):
                break
            step *= 0.5
        return x, step

    def run(x, theta, trail=None):
        step = 1.0 if step_size is None else step_size
        y, t = x, 1.0
        for k in range(1, maxiter + 1):
            last = y
            x_new, step = next_point(y, theta, step)
            residual = value_of(np.linalg.norm(x_new - y)) / step
            if accelerated:
                t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
                record(trail, step, (t - 1) / t_new)
                y, t = x_new + ((t - 1) / t_new) * (x_new - x), t_new
            else:
                record(trail, step, 0.0)
                y = x_new
            x = x_new
            if residual <= tol:
                break
        return x, SolverInfo(k, residual, residual <= tol, step), last

    def advance(state, theta, c):
        """(x, y) -> (x+, y+) with the step and momentum coefficient in c."""
        x, y = state
        x_new = prox_step(y, theta, c[0])
        return x_new, x_new + c[1] * (x_new - x)

    fixed_step = 1.0 if step_size is None else step_size
    return Solver(run, lambda x, theta: x - prox_step(x, theta, fixed_step),
                  lambda last, theta, info: prox_step(last, theta, info.step),
                  symmetric=False,
                  replay=Replay(lambda x0: (x0, x0), advance, lambda state: state[0]))
