"""One switch for the derivative of a solver's output: unroll, implicit or onestep.

A solver (`common.Solver`) is described by functions of the parameters `theta` (any
pytree):

- run(init, theta) -> (x, SolverInfo, last): the iterations, written with NumPy calls;
  `last` is what the last iteration started from (the previous iterate, and for some
  methods the constants of that iteration: a direction, L-BFGS's curvature pairs);
- optimality(x, theta): zero at a solution (a gradient, x - T(x), a root function);
- step(last, theta, info): the last iteration again, from `last` (for "onestep").

and `differentiate` picks how x depends on theta:

- "unroll": run on the traced theta; every iteration is recorded and differentiated
  (forward and reverse; memory grows with the iterations).
- "implicit": run on plain values inside the primitive `implicit_root`; its JVP is the
  implicit function theorem, dx = -(∂ₓF)⁻¹ ∂θF dθ, solved matrix-free by `linear_solve`
  with products from JVPs of F. Reverse mode and higher orders follow from the rules.
- "onestep": run on plain values (`implicit_root` with a zero derivative), which also
  returns `last`; then the solver's last iteration is done again, traced, from `last`
  (Bolte, Pauwels & Vaiter 2023; Jacobian-free backpropagation): its value is the
  solver's, and only that iteration is differentiated, with `last` held constant.
  Newton-type steps reuse the direction the solver found as the starting guess of
  their Krylov solve, so the traced step costs little more than a gradient. Exact in
  the limit when ∂ₓ step = 0 at the solution (Newton), biased otherwise (gradient
  descent: -step ∂θ∇f).

`custom_root` and `custom_fixed_point` put any user solver behind the implicit rule.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import api
from ..core.batch_axes import batch_size, batch_to_front, move_batch_axis
from ..core.errors import ShapeError
from ..core.ir import Aval, aval_of
from ..core.primitive import Zero, primitive
from ..core.pytree import tree_flatten, tree_unflatten
from ..core.trace import Tracer, concrete
from ..transforms.batching import vmap
from ..transforms.jvp import jvp_flat
from .common import (DIFF_MODES, ON_NONCONVERGENCE, ClosedOverTracerError, SolverInfo,
                     check_choice, check_converged, check_no_closed_over_tracers,
                     ravel_tree, replay_in_segments)
from .linear import solve_flat, solve_options

INFO_AVALS = [Aval((), np.int64), Aval((), np.float64), Aval((), np.bool_),
              Aval((), np.float64)]


class RootProblem:
    """The static part of an `implicit_root` equation: how to solve and what F is."""

    def __init__(self, name, run, optimality, init_tree, theta_tree, init_avals,
                 last_avals, linear, tol, on_nonconvergence, differentiable):
        self.name, self.run, self.optimality = name, run, optimality
        self.init_tree, self.theta_tree, self.init_avals = init_tree, theta_tree, init_avals
        self.last_avals = last_avals
        self.linear, self.tol, self.on_nonconvergence = linear, tol, on_nonconvergence
        self.num_unknowns, self.differentiable = len(init_avals), differentiable

    def __repr__(self):
        return self.name

    def out_avals(self):
        return list(self.init_avals) + INFO_AVALS + list(self.last_avals)

    def split(self, leaves):
        n = len(self.init_avals)
        return (tree_unflatten(self.init_tree, leaves[:n]),
                tree_unflatten(self.theta_tree, leaves[n:]))

    def matvec(self, operands, v):
        """∂ₓF(x, theta) v, with x and theta the leaves in `operands`."""
        x, theta = self.split(operands)
        _, unravel = ravel_tree(x)
        _, out = api.jvp(lambda z: self.optimality(z, theta), (x,), (unravel(v),))
        return ravel_tree(out)[0]

    def solve(self, leaves):
        """Runs the solver on arrays: (*solution leaves, *info fields, *leaves of
        `last`). A user's solver gives no info: it is filled in from the norm of the
        optimality function."""
        init, theta = self.split(list(leaves))
        x, info, last = self.run(init, theta)
        x_leaves, x_tree = tree_flatten(x)
        if any(isinstance(leaf, Tracer) for leaf in x_leaves):
            raise ClosedOverTracerError(
                f"{self.name} computes with a differentiated value that it closes over "
                f"instead of receiving it through theta; pass it in theta.")
        if x_tree != self.init_tree or [aval_of(np.asarray(v)) for v in x_leaves] != \
                self.init_avals:
            raise ShapeError(f"{self.name} returned a solution shaped "
                             f"{[np.shape(v) for v in x_leaves]}, unlike its initial value "
                             f"{[a.shape for a in self.init_avals]}; they must match")
        if info is None:
            residual = float(np.linalg.norm(ravel_tree(self.optimality(x, theta))[0]))
            info = SolverInfo(0, residual, residual <= self.tol)
        check_converged(self.name, info, self.tol, self.on_nonconvergence)
        return tuple(np.asarray(v, a.dtype) for v, a in zip(x_leaves, self.init_avals)) + (
            np.int64(info.iterations), np.float64(info.residual), np.bool_(info.converged),
            np.float64(info.step)) + tuple(
            np.asarray(v, a.dtype) for v, a in zip(tree_flatten(last)[0], self.last_avals))

    def tangent(self, x_leaves, theta_leaves, dtheta_leaves):
        """Leaves of dx = -(∂ₓF)⁻¹ ∂θF dθ at the solution x (implicit function theorem);
        dtheta_leaves holds None for the parameters without a tangent (data, often the
        largest arrays: their zero tangents are neither made nor multiplied)."""
        x = tree_unflatten(self.init_tree, x_leaves)
        _, (dF,) = jvp_flat(lambda *th: [ravel_tree(self.optimality(
            x, tree_unflatten(self.theta_tree, th)))[0]],
            [leaf if hasattr(leaf, "shape") else np.asarray(leaf) for leaf in theta_leaves],
            dtheta_leaves)
        flat_x, unravel = ravel_tree(x)
        if dF is None:                     # F does not depend on the moving parameters
            return tree_flatten(unravel(np.zeros(aval_of(flat_x).shape)))[0]
        dx = solve_flat(self.matvec, -dF, list(x_leaves) + list(theta_leaves), self.linear)
        return tree_flatten(unravel(dx))[0]


class BatchedRootProblem:
    """A stack of `size` problems (vmap of `implicit_root`): the initial values are
    stacked on axis 0, each parameter leaf too or shared (`theta_dims` 0 or None). The
    solver, a Python function, runs once per example; the implicit derivative is the
    inner one vmapped, so its linear systems are solved as one batched `linear_solve`."""

    def __init__(self, inner, size, theta_dims):
        self.inner, self.size, self.theta_dims = inner, size, theta_dims
        self.name, self.num_unknowns = inner.name, inner.num_unknowns
        self.differentiable = inner.differentiable

    def __repr__(self):
        return f"{self.inner!r} x{self.size}"

    def out_avals(self):
        return [Aval((self.size,) + a.shape, a.dtype) for a in self.inner.out_avals()]

    def solve(self, leaves):
        n = self.num_unknowns
        dims = [0] * n + self.theta_dims
        examples = [self.inner.solve([a if d is None else a[i] for a, d in zip(leaves, dims)])
                    for i in range(self.size)]
        return tuple(np.stack(outs) for outs in zip(*examples)) if examples else tuple(
            np.zeros(a.shape, a.dtype) for a in self.out_avals())

    def tangent(self, x_leaves, theta_leaves, dtheta_leaves):
        moving = [t is not None for t in dtheta_leaves]

        def example(x_leaves, theta_leaves, moving_tangents):
            tangents = iter(moving_tangents)
            return self.inner.tangent(x_leaves, theta_leaves,
                                      [next(tangents) if m else None for m in moving])
        dims = [d for d, m in zip(self.theta_dims, moving) if m]
        return vmap(example, in_axes=(0, self.theta_dims, dims))(
            list(x_leaves), list(theta_leaves), [t for t in dtheta_leaves if t is not None])


def _root_jvp(primals, tangents, outs, problem):
    n = problem.num_unknowns
    zeros = [Zero(aval_of(o)) for o in outs]
    if not problem.differentiable or all(isinstance(t, Zero) for t in tangents[n:]):
        return zeros
    dx = problem.tangent(list(outs[:n]), list(primals[n:]),
                         [None if isinstance(t, Zero) else t for t in tangents[n:]])
    return list(dx) + zeros[n:]


def _root_batch(args, dims, problem):
    n, size = problem.num_unknowns, batch_size(args, dims)
    init = [move_batch_axis(a, d, 0, size) for a, d in zip(args[:n], dims[:n])]
    theta = [a if d is None else batch_to_front(a, d) for a, d in zip(args[n:], dims[n:])]
    batched = BatchedRootProblem(problem, size, [None if d is None else 0 for d in dims[n:]])
    outs = implicit_root_p.bind(*init, *theta, problem=batched)
    return outs, [0] * len(outs)


implicit_root_p = primitive("implicit_root", lambda *leaves, problem: problem.solve(leaves),
                            lambda *avals, problem: problem.out_avals(),
                            multiple_results=True, jvp=_root_jvp, batch=_root_batch)
# The implicit_root_p primitive, for code generators:
# implicit_root[problem] *init_leaves *theta_leaves -> *solution_leaves, iterations,
# residual, converged, step, *last_leaves (one per example when batched):
# problem.solve(leaves).


def _info_of(values) -> SolverInfo:
    """Python scalars when the values are known; else the traced arrays themselves
    (inside jit, or under vmap, where they hold one entry per example)."""
    plain = [concrete(v) for v in values]
    if any(p is None for p in plain):
        return SolverInfo(*values)
    it, res, conv, step = plain
    return SolverInfo(int(it), float(res), bool(conv), float(step))


def _check_square(optimality, init, theta, name):
    out = optimality(init, theta)
    n_out, n_in = np.size(ravel_tree(out)[0]), np.size(ravel_tree(init)[0])
    if n_out != n_in:
        raise ShapeError(f"the optimality function of {name} returns {n_out} values "
                         f"for {n_in} unknowns; implicit differentiation needs as many "
                         f"equations as unknowns")


def solve_root(name, run, optimality, init, theta, linear, tol, on_nonconvergence,
               differentiable=True, start=lambda init: ()):
    """(x, info, last): run(init, theta) as one `implicit_root` equation, info's fields
    and last (shaped like start(init)) as (possibly traced) arrays without derivatives.
    With differentiable False, x carries no derivative either (its JVP rule is zero) and
    the parameters are passed by value where values exist, so that eager
    transformations record nothing that depends on the solution."""
    init_leaves, init_tree = tree_flatten(init)
    theta_leaves, theta_tree = tree_flatten(theta if differentiable else _plain(theta))
    init_leaves = [api.stop_gradient(leaf) for leaf in init_leaves]
    init_avals = [aval_of(leaf) for leaf in init_leaves]
    last_leaves, last_tree = tree_flatten(start(init))
    problem = RootProblem(name, run, optimality, init_tree, theta_tree, init_avals,
                          [aval_of(leaf) for leaf in last_leaves], linear, tol,
                          on_nonconvergence, differentiable)
    outs = implicit_root_p.bind(*init_leaves, *theta_leaves, problem=problem)
    n = len(init_leaves)
    return (tree_unflatten(init_tree, outs[:n]), SolverInfo(*outs[n:n + 4]),
            tree_unflatten(last_tree, outs[n + 4:]))


def _plain(tree):
    """The tree with each leaf's value in place of its tracers, where values exist."""
    leaves, treedef = tree_flatten(tree)
    return tree_unflatten(treedef, [leaf if concrete(leaf) is None else concrete(leaf)
                                    for leaf in leaves])


def differentiate(name, solver, init, theta, *, diff, tol, on_nonconvergence, linear,
                  user_fn, checkpoint=False):
    """(x, SolverInfo) of a `Solver`, with the derivative `diff` asks for; `user_fn` is
    the user's function (checked for closed-over tracers where that matters). With
    checkpoint (diff="unroll"), a method with a `Replay` runs once untraced, recording
    its iterations' constants, and is then replayed traced in checkpointed segments."""
    check_choice(diff, DIFF_MODES, "diff")
    check_choice(on_nonconvergence, ON_NONCONVERGENCE, "on_nonconvergence")
    if diff == "unroll":
        if checkpoint and solver.replay is not None:
            trail = []
            _, info, _ = solver.run(_plain(init), _plain(theta), trail)
            x = replay_in_segments(solver.replay, init, theta, trail)
        else:
            x, info, _ = solver.run(init, theta)
        info = _info_of(info)
        check_converged(name, info, tol, on_nonconvergence)
        return x, info
    check_no_closed_over_tracers(user_fn, (init, theta), f"the function given to {name}")
    x, info, last = solve_root(name, solver.run, solver.optimality, init, theta, linear,
                               tol, on_nonconvergence, differentiable=diff == "implicit",
                               start=solver.start)
    if diff == "onestep":
        x = solver.step(last, theta, info)
    return x, _info_of(info)


def linear_options(solve="direct", symmetric=False, linear_tol=1e-8, linear_maxiter=1000,
                   alpha=1.0, on_nonconvergence="warn"):
    return solve_options(solve, symmetric, linear_tol, linear_maxiter, alpha,
                         on_nonconvergence)


def custom_root(optimality_fn, solve="gmres", symmetric=False, tol=None, linear_tol=1e-8,
                linear_maxiter=1000, alpha=1.0, on_nonconvergence="warn"):
    """Decorator: `solver(init, theta) -> x` gets implicit derivatives from the root of
    `optimality_fn(x, theta) = 0` at the x it returns. With `tol`, a solution whose
    optimality residual |F(x, theta)| exceeds tol is reported (warn/raise/ignore).
    The wrapped solver runs on plain arrays; every differentiated value must reach it
    and optimality_fn through theta (closures over them raise)."""
    linear = linear_options(solve, symmetric, linear_tol, linear_maxiter, alpha,
                            on_nonconvergence)

    def decorate(solver):
        name = getattr(solver, "__name__", "the solver")

        @functools.wraps(solver)
        def solve(init, theta):
            check_no_closed_over_tracers(optimality_fn, (init, theta),
                                         f"the optimality function of {name}")
            _check_square(optimality_fn, init, theta, name)
            return solve_root(name, lambda init, theta: (solver(init, theta), None, ()),
                              optimality_fn, init, theta, linear,
                              np.inf if tol is None else tol, on_nonconvergence)[0]
        return solve
    return decorate


def custom_fixed_point(fixed_point_fn, solve="gmres", **options):
    """Decorator: `solver(init, theta) -> x` with x = fixed_point_fn(x, theta) gets
    implicit derivatives (the root of F(x) = x - T(x)); options as for custom_root."""
    def optimality(x, theta):
        return _tree_sub(x, fixed_point_fn(x, theta))
    return custom_root(optimality, solve=solve, **options)


def _tree_sub(a, b):
    al, tree = tree_flatten(a)
    return tree_unflatten(tree, [p - q for p, q in zip(al, tree_flatten(b)[0])])
