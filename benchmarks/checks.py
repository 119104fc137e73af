"""Correctness gates.

* ``verify_reference``: the hand-written derivative of a workload is checked against
  central finite differences of the NumPy function along random directions. Everything
  else is compared with it, so a failure here aborts the whole run.
* ``compare``: a variant's result against the hand-written one, leaf by leaf; a
  relative error above ``RTOL`` makes the variant WRONG.
"""

import numpy as np

from .tree import tree_items, tree_map

RTOL = 1e-8  # a variant's result against the hand-written one
FD_RTOL = 1e-7  # the hand-written derivative against finite differences


class ReferenceError(Exception):
    """The hand-written derivative disagrees with finite differences."""


def relative_error(got, expected):
    scale = max(np.linalg.norm(expected), np.finfo(np.float64).tiny)
    return float(np.linalg.norm(got - expected) / scale)


def compare(got, expected):
    """None if ``got`` matches ``expected`` to RTOL, else a one-line description."""
    got_items, expected_items = tree_items(got), tree_items(expected)
    got_paths = [path for path, _ in got_items]
    expected_paths = [path for path, _ in expected_items]
    if got_paths != expected_paths:
        return f"structure {got_paths} instead of {expected_paths}"
    worst = 0.0
    for path, expected_leaf in expected_items:
        got_leaf = np.asarray(dict(got_items)[path], dtype=np.float64)
        where = f" at {path}" if path else ""
        if got_leaf.shape != expected_leaf.shape:
            return f"shape {got_leaf.shape} instead of {expected_leaf.shape}{where}"
        if not np.all(np.isfinite(got_leaf)):
            return f"non-finite values{where}"
        error = relative_error(got_leaf, expected_leaf)
        if error > RTOL:
            return f"relative error {error:.1e}{where} (tolerance {RTOL:.0e})"
        worst = max(worst, error)
    return None


def _shifted(args, direction, step):
    return (tree_map(lambda a, d: a + step * d, args[0], direction),) + tuple(args[1:])


def _vdot(a, b):
    return sum(float(np.vdot(x, y)) for (_, x), (_, y) in zip(tree_items(a), tree_items(b)))


def verify_reference(workload, args, reference, rng):
    """Check the hand-written derivative against central differences; raise ReferenceError."""
    f = workload.make(np)
    norm = np.sqrt(_vdot(args[0], args[0]))

    def direction():  # random, with the norm of the point (at least 1)
        d = tree_map(lambda a: rng.standard_normal(np.shape(a)), args[0])
        return tree_map(lambda a: a * max(norm, 1.0) / np.sqrt(_vdot(d, d)), d)

    u = direction()
    # relative steps near the optimum of truncation against rounding error:
    # eps^(1/3) for a first difference, eps^(1/4) for a second difference
    h = 1e-5 if workload.kind != "hessian" else 1e-4

    def f_at(*shifts):  # f at args[0] + sum of step * direction
        shifted = args
        for direction, step in shifts:
            shifted = _shifted(shifted, direction, step)
        return f(*shifted)

    # Errors are measured against the size of the terms summed (|v|^T |H| |u| rather than
    # v^T H u), so that cancellation in a random direction cannot fail a correct reference.
    absolute = tree_map(np.abs, u)
    if workload.kind == "grad":  # <g, u> = (f(x + hu) - f(x - hu)) / 2h
        expected = (f_at((u, h)) - f_at((u, -h))) / (2 * h)
        got, scale = _vdot(reference, u), _vdot(tree_map(np.abs, reference), absolute)
    elif workload.kind == "jacobian":  # J u, the same way
        expected = (f_at((u, h)) - f_at((u, -h))) / (2 * h)
        got, scale = reference @ u, np.linalg.norm(np.abs(reference) @ absolute)
    elif workload.kind == "hessian":  # v^T H u by a mixed central second difference
        v = direction()
        expected = (
            f_at((u, h), (v, h)) - f_at((u, h), (v, -h)) - f_at((u, -h), (v, h)) + f_at((u, -h), (v, -h))
        ) / (4 * h * h)
        got, scale = v @ reference @ u, np.abs(v) @ np.abs(reference) @ absolute
        if relative_error(reference, reference.T) > RTOL:
            raise ReferenceError(f"{workload.key}: hand-written Hessian is not symmetric")
    else:
        raise ValueError(f"unknown workload kind {workload.kind!r}")
    error = float(np.linalg.norm(np.asarray(got) - np.asarray(expected)) / scale)
    if error > FD_RTOL:
        raise ReferenceError(
            f"{workload.key}: hand-written {workload.kind} disagrees with finite differences "
            f"(relative error {error:.1e})"
        )
    return error
