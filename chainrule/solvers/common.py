"""What every solver shares: the result record, non-convergence handling, the errors of
this package, flattening pytrees into one vector, and the check for closed-over tracers.
"""
from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import numpy as np

from ..core.errors import ChainruleError, ConcretizationError
from ..core.ir import aval_of
from ..core.pytree import tree_flatten, tree_unflatten
from ..control import checkpoint as remat, scan
from ..core.trace import Tracer, concrete, trace_flat

DIFF_MODES = ("unroll", "implicit", "onestep")
ON_NONCONVERGENCE = ("warn", "raise", "ignore")


class NonConvergenceError(ChainruleError, RuntimeError):
    """A solver (or the linear solve of an implicit derivative) did not converge."""


class NonConvergenceWarning(UserWarning):
    """A solver did not converge; its output and derivative may be meaningless."""


class ClosedOverTracerError(ChainruleError, ValueError):
    """A solver's function uses a differentiated value it was not given as an argument."""


class SingularSystemError(ChainruleError, ArithmeticError):
    """The implicit linear system is singular: no implicit derivative at this point."""


class SolverOptionError(ChainruleError, ValueError):
    """An unknown method, diff mode or linear solver, or options that do not fit."""


class SolverInfo(NamedTuple):
    """How a solver ended: iterations run, final residual (the solver's own stopping
    quantity), whether it met its tolerance, and the last step size it used."""
    iterations: int
    residual: float
    converged: bool
    step: float = 1.0


class Replay(NamedTuple):
    """A method's iteration as a pure map, for checkpointed unrolling: start(x0) ->
    state, advance(state, theta, c) -> the next state, output(state) -> x, where c
    holds the iteration's constants (step size, momentum coefficient: the decisions
    of line searches), which the untraced run records."""
    start: Callable
    advance: Callable
    output: Callable


class Solver(NamedTuple):
    """An iterative method as `differentiate` needs it: run(x0, theta, trail=None) ->
    (x, info, last) with traceable NumPy calls, where `last` is what the last iteration
    started from (arrays whose shapes do not depend on the run, e.g. the previous
    iterate) and `trail`, when a list, receives each iteration's constants for
    `replay`; step(last, theta, info), that last iteration again (for diff="onestep",
    which differentiates it); start(x0), `last` before any iteration; optimality(x,
    theta), zero at a solution; whether the Jacobian of optimality in x is symmetric
    (a Hessian), which allows CG; and the iteration as a `Replay` (None for methods
    whose iteration depends on a history: L-BFGS, Anderson)."""
    run: Callable
    optimality: Callable
    step: Callable
    symmetric: bool
    start: Callable = lambda x0: x0
    replay: Replay | None = None


def per_iteration(fn, checkpoint):
    """fn, rematerialized when checkpoint is set: what methods without a `Replay` do
    for checkpoint=True (each iteration stores only the inputs of fn's call)."""
    return remat(fn) if checkpoint else fn


def record(trail, *constants):
    """Appends an iteration's constants to the trail, when one is kept."""
    if trail is not None:
        trail.append(constants)


def replay_in_segments(replay, init, theta, trail):
    """x after the len(trail) iterations of `replay` from init, traced in about
    sqrt(n) segments, each a checkpointed scan over its iterations' constants: reverse
    mode stores the states at segment boundaries and recomputes one segment at a time,
    so its memory grows like sqrt(n) states instead of n."""
    state, n = replay.start(init), len(trail)
    if n == 0:
        return replay.output(state)
    length = int(np.ceil(np.sqrt(n)))
    columns = [np.asarray(column, np.float64) for column in zip(*trail)]
    for lo in range(0, n, length):
        size = min(length, n - lo)

        def segment(state, theta, constants):   # length: a trail may hold no constants
            return scan(lambda s, c: (replay.advance(s, theta, c), None), state, constants,
                        length=size)[0]
        state = remat(segment)(state, theta, [column[lo:lo + size] for column in columns])
    return replay.output(state)


def value_of(x) -> float:
    """A traced or plain scalar as a Python float (for stopping tests and line
    searches, whose decisions are piecewise constant in the parameters)."""
    value = concrete(x)
    if value is None:
        raise ConcretizationError(
            "the solver's iterations (stopping tests, line searches) need values, but "
            "they are traced with shapes only here (inside vmap or jit): diff='unroll' "
            "cannot run there. Use diff='implicit' or 'onestep' (whose solver runs on "
            "values and has batch and jit rules), or unroll outside vmap/jit.")
    return float(value)


def check_choice(value, allowed, what):
    if value not in allowed:
        raise SolverOptionError(f"{what}={value!r} is not one of "
                                f"{', '.join(map(repr, allowed))}")


def report_nonconvergence(message, on_nonconvergence):
    """Applies the user's policy ("warn" | "raise" | "ignore") to a failure message."""
    if on_nonconvergence == "raise":
        raise NonConvergenceError(message)
    if on_nonconvergence == "warn":
        warnings.warn(message, NonConvergenceWarning, stacklevel=3)


def check_converged(name, info, tol, on_nonconvergence):
    if not bool(info.converged):
        report_nonconvergence(
            f"{name} did not converge: residual {float(info.residual):.3g} > tol {tol:g} "
            f"after {int(info.iterations)} iterations. Raise maxiter, change the step "
            f"size, or pass on_nonconvergence='ignore' to accept the result.",
            on_nonconvergence)


def ravel_tree(tree):
    """(1-D vector of all leaves, unravel) — unravel maps such a vector back to the tree.
    Works on arrays and tracers alike."""
    leaves, treedef = tree_flatten(tree)
    shapes = [np.shape(leaf) for leaf in leaves]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    flat = np.ravel(leaves[0]) if len(leaves) == 1 else \
        np.concatenate([np.ravel(leaf) for leaf in leaves])

    def unravel(vector):
        parts, start = [], 0
        for shape, size in zip(shapes, sizes):
            parts.append(np.reshape(vector[start:start + size], shape))
            start += size
        return tree_unflatten(treedef, parts)
    return flat, unravel


def closed_over_tracers(fn, args) -> list:
    """The traced values (of transformations in progress) that fn(*args) reads without
    receiving them as arguments. fn is traced with shapes only (no arithmetic on the
    data), or with values when it branches on them."""
    leaves, treedef = tree_flatten(tuple(args))
    flat = lambda *ls: tree_flatten(fn(*tree_unflatten(treedef, ls)))[0]
    try:
        graph, _, _ = trace_flat(flat, [aval_of(leaf) for leaf in leaves], abstract=True)
    except ConcretizationError:
        graph, _, _ = trace_flat(flat, leaves)
    return [c for c in graph.consts if isinstance(c, Tracer)]


def check_no_closed_over_tracers(fn, args, what):
    """Raises if fn(*args) closes over traced values: their derivative would be
    silently lost (jaxopt #31, #285)."""
    traced = closed_over_tracers(fn, args)
    if traced:
        shapes = ", ".join(str(c.aval) for c in traced)
        raise ClosedOverTracerError(
            f"{what} uses {len(traced)} differentiated value(s) ({shapes}) that it "
            f"closes over instead of receiving as arguments; their derivative would be "
            f"lost. Pass them through `theta` (e.g. theta=(lam, X)) and read them from "
            f"the function's theta argument, or use diff='unroll'.")
