"""The user's entry points: minimize, root, fixed_point, douglas_rachford, admm.

Each flattens the unknown (any pytree) into one vector, builds the method's `Solver`,
and lets `differentiate` apply the `diff` mode:

    w = minimize(f, w0, theta, method="newton", diff="onestep")
    x = fixed_point(T, x0, theta, diff="implicit", anderson=5)
    x = root(F, x0, theta, solve="gmres")

Common options: `diff` ("unroll" | "implicit" | "onestep"), `maxiter`, `tol` (on the
method's own residual), `on_nonconvergence` ("warn" | "raise" | "ignore"),
`return_info` (also return a SolverInfo), `checkpoint` (with diff="unroll": the solver
runs once untraced, recording its step sizes, then its iterations are replayed traced
in about sqrt(k) checkpointed segments, so reverse mode stores about 2 sqrt(k) iterates
instead of k, for one more forward run; L-BFGS and Anderson acceleration, whose
iterations depend on a history, rematerialize each iteration's gradient or map
instead. The iteration must be traceable without values, i.e. without Python control
flow on array values), and for implicit derivatives and Newton steps
the linear solver `solve` ("direct", "cholesky", "cg", "minres", "gmres", "bicgstab",
"neumann"; default: "direct" up to 200 unknowns, else CG for minimization and GMRES
otherwise) with `linear_tol`, `linear_maxiter` and the Neumann step `alpha`.
"""
from __future__ import annotations

import numpy as np

from .common import SolverOptionError, check_choice, ravel_tree
from .first_order import gradient_descent, momentum_method, proximal_gradient
from .fixed_point import fixed_point_iteration
from .implicit import differentiate, linear_options
from .newton import lbfgs, newton, newton_root
from .splitting import admm_map, douglas_rachford_map

MINIMIZE_METHODS = ("gd", "heavy_ball", "nesterov", "newton", "lbfgs", "prox_grad",
                    "fista")
DIRECT_SOLVE_UP_TO = 200


def _linear(solve, n, symmetric, linear_tol, linear_maxiter, alpha, on_nonconvergence):
    if solve is None:
        solve = "direct" if n <= DIRECT_SOLVE_UP_TO else "cg" if symmetric else "gmres"
    return linear_options(solve, symmetric, linear_tol, linear_maxiter, alpha,
                          on_nonconvergence)


def _run(name, build, user_fn, x0, theta, *, diff, tol, on_nonconvergence, return_info,
         symmetric, solve, linear_tol, linear_maxiter, alpha, wrap_fn, checkpoint):
    """Flattens x0, builds the solver on the flat problem, differentiates, unflattens.
    build(flat_fn, linear) -> Solver; wrap_fn(user_fn, unravel) is the flat user_fn."""
    if checkpoint and diff != "unroll":
        raise SolverOptionError(f"checkpoint=True applies to diff='unroll' only (diff="
                                f"{diff!r} stores nothing per iteration)")
    flat0, unravel = ravel_tree(x0)
    linear = _linear(solve, flat0.shape[0], symmetric, linear_tol, linear_maxiter, alpha,
                     on_nonconvergence)
    flat_fn = wrap_fn(user_fn, unravel)
    solver = build(flat_fn, linear)
    x, info = differentiate(name, solver, flat0, theta, diff=diff, tol=tol,
                            on_nonconvergence=on_nonconvergence, linear=linear,
                            user_fn=flat_fn, checkpoint=checkpoint)
    x = unravel(x)
    return (x, info) if return_info else x


def _scalar_fn(fun, unravel):
    return lambda v, theta: fun(unravel(v), theta)


def _vector_fn(fun, unravel):
    return lambda v, theta: ravel_tree(fun(unravel(v), theta))[0]


def minimize(fun, w0, theta=(), method="gd", *, diff="implicit", step_size=None,
             line_search=True, momentum_weight=0.9, prox=None, prox_theta=None, memory=10,
             maxiter=None, tol=1e-8, solve=None, linear_tol=1e-8, linear_maxiter=1000,
             alpha=1.0, on_nonconvergence="warn", return_info=False, checkpoint=False):
    """argmin_w fun(w, theta), differentiable in theta (and in prox_theta).

    method: "gd" (fixed step_size, or backtracking when step_size is None), "heavy_ball"
    and "nesterov" (fixed step_size, momentum_weight), "newton" (line_search on/off, or a
    fixed damping step_size),
    "lbfgs" (memory), "prox_grad" / "fista" (minimize fun + g with prox the proximal
    operator of g, e.g. chainrule.solvers.prox.l1, and prox_theta its parameter)."""
    check_choice(method, MINIMIZE_METHODS, "method")
    proximal = method in ("prox_grad", "fista")
    if proximal != (prox is not None):
        raise SolverOptionError(
            f"method={method!r} " + ("needs prox=, the proximal operator of the "
                                     "nonsmooth term (see chainrule.solvers.prox)"
                                     if proximal else "takes no prox; use method="
                                     "'prox_grad' or 'fista' for a nonsmooth term"))
    budget = dict(tol=tol)
    if maxiter is not None:
        budget["maxiter"] = maxiter

    def build(flat_fun, linear):
        if method == "gd":
            return gradient_descent(flat_fun, step_size=step_size, **budget)
        if method in ("heavy_ball", "nesterov"):
            return momentum_method(flat_fun, step_size=step_size, weight=momentum_weight,
                                   nesterov=method == "nesterov", **budget)
        if method == "newton":
            return newton(flat_fun, line_search=line_search, step_size=step_size,
                          linear=linear, **budget)
        if method == "lbfgs":
            return lbfgs(flat_fun, linear=linear, memory=memory, checkpoint=checkpoint,
                         **budget)
        return proximal_gradient(flat_fun, prox, step_size=step_size,
                                 accelerated=method == "fista", **budget)

    if proximal:
        user_fn = lambda w, th: fun(w, th[0])
        theta = (theta, prox_theta)
    else:
        user_fn = fun
    return _run(f"minimize(method={method!r})", build, user_fn, w0, theta, diff=diff,
                tol=tol, on_nonconvergence=on_nonconvergence, return_info=return_info,
                symmetric=not proximal, solve=solve, linear_tol=linear_tol,
                linear_maxiter=linear_maxiter, alpha=alpha, wrap_fn=_scalar_fn,
                checkpoint=checkpoint)


def fixed_point(T, x0, theta=(), *, diff="implicit", anderson=0, maxiter=1000, tol=1e-8,
                solve=None, linear_tol=1e-8, linear_maxiter=1000, alpha=1.0,
                on_nonconvergence="warn", return_info=False, checkpoint=False):
    """x with x = T(x, theta), by iteration (with Anderson acceleration of memory
    `anderson` when > 0); differentiable in theta."""
    return _run("fixed_point", lambda flat_T, linear: fixed_point_iteration(
        flat_T, anderson=anderson, maxiter=maxiter, tol=tol, checkpoint=checkpoint), T, x0,
        theta, diff=diff, tol=tol, on_nonconvergence=on_nonconvergence,
        return_info=return_info, symmetric=False, solve=solve, linear_tol=linear_tol,
        linear_maxiter=linear_maxiter, alpha=alpha, wrap_fn=_vector_fn,
        checkpoint=checkpoint)


def root(F, x0, theta=(), *, diff="implicit", maxiter=50, tol=1e-8, solve=None,
         linear_tol=1e-8, linear_maxiter=1000, alpha=1.0, on_nonconvergence="warn",
         return_info=False, checkpoint=False):
    """x with F(x, theta) = 0 by Newton's method (directions by `solve`); differentiable
    in theta."""
    return _run("root", lambda flat_F, linear: newton_root(
        flat_F, linear=linear, maxiter=maxiter, tol=tol), F, x0,
        theta, diff=diff, tol=tol, on_nonconvergence=on_nonconvergence,
        return_info=return_info, symmetric=False, solve=solve, linear_tol=linear_tol,
        linear_maxiter=linear_maxiter, alpha=alpha, wrap_fn=_vector_fn,
        checkpoint=checkpoint)


def _splitting(make_map, prox_f, prox_g, theta_f, theta_g, step_size, state0, **options):
    T, solution = make_map(prox_f, prox_g, step_size)
    x = fixed_point(T, state0, (theta_f, theta_g), **options)
    x, info = x if options.get("return_info") else (x, None)
    x = solution(x, (theta_f, theta_g))
    return (x, info) if options.get("return_info") else x


def douglas_rachford(prox_f, prox_g, x0, theta_f=None, theta_g=None, *, step_size=1.0,
                     **options):
    """argmin_x f(x; theta_f) + g(x; theta_g) by Douglas-Rachford splitting from the
    proximal operators of f and g (x an array of any shape); options as for
    fixed_point."""
    return _splitting(douglas_rachford_map, prox_f, prox_g, theta_f, theta_g, step_size,
                      x0, **options)


def admm(prox_f, prox_g, x0, theta_f=None, theta_g=None, *, step_size=1.0, **options):
    """argmin_x f(x; theta_f) + g(x; theta_g) by ADMM on x = y (step_size = 1/rho) from
    the proximal operators of f and g (x an array of any shape); options as for
    fixed_point."""
    return _splitting(admm_map, prox_f, prox_g, theta_f, theta_g, step_size,
                      (x0, np.zeros_like(x0)), **options)
