"""Forward gradients: an unbiased estimate of the gradient from forward mode alone.

For a random direction v with E[v vᵀ] = I, the estimate (∇f · v) v has expectation ∇f.
One JVP gives ∇f · v, so no reverse pass and no stored intermediates are needed
(Baydin et al., "Gradients without backpropagation", 2022). Per coordinate, with n
directions averaged, the variance is

    Gaussian v:    (‖∇f‖² + (∂ᵢf)²) / n
    Rademacher v:  (‖∇f‖² - (∂ᵢf)²) / n

(`estimator_variance` computes it), so the estimate is noisy in high dimension: it is a
tool for memory-bound training and for checking gradients, not a drop-in for `grad`.
"""
from __future__ import annotations

import functools

import numpy as np

from .api import _argnums_tuple, jvp
from .core.errors import NonDifferentiableError, ShapeError
from .core.pytree import tree_flatten, tree_unflatten

__all__ = ["forward_grad", "estimator_variance"]

DISTRIBUTIONS = ("gaussian", "rademacher")


def _direction(rng, shape, distribution):
    if distribution == "gaussian":
        return rng.standard_normal(shape)
    return rng.choice(np.array([-1.0, 1.0]), size=shape)


def forward_grad(fun, rng, argnums=0, num_directions=1, distribution="gaussian"):
    """Returns a function giving an unbiased estimate of grad(fun)(*args): the average
    over `num_directions` random directions v of (∇f · v) v, each from one JVP.

    rng: a numpy.random.Generator (or a seed), advanced at every call.
    distribution: "gaussian" (v ~ N(0, I)) or "rademacher" (v uniform in {-1, 1}ⁿ).
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"forward_grad distribution must be one of {DISTRIBUTIONS}, got "
                         f"{distribution!r}")
    if not isinstance(num_directions, (int, np.integer)) or num_directions < 1:
        raise ValueError(f"forward_grad num_directions must be a positive integer, got "
                         f"{num_directions!r}")
    rng = np.random.default_rng(rng)

    @functools.wraps(fun)
    def estimate(*args, **kwargs):
        nums = _argnums_tuple(argnums, len(args))
        leaves, tree = tree_flatten(tuple(args[i] for i in nums))
        for leaf in leaves:
            if not np.issubdtype(np.asarray(leaf).dtype, np.inexact):
                raise NonDifferentiableError(
                    f"forward_grad with respect to an input of dtype "
                    f"{np.asarray(leaf).dtype}: pass floating-point arrays")

        def restricted(*diff_args):
            full = list(args)
            for i, a in zip(nums, diff_args):
                full[i] = a
            return fun(*full, **kwargs)

        total = [np.zeros(np.shape(x)) for x in leaves]
        for _ in range(num_directions):
            v = [_direction(rng, np.shape(x), distribution) for x in leaves]
            primals = tuple(args[i] for i in nums)
            out, slope = jvp(restricted, primals, tuple(tree_unflatten(tree, v)))
            if np.shape(out) != ():
                raise ShapeError(f"forward_grad needs a function with a scalar output, "
                                 f"got shape {np.shape(out)}")
            total = [t + slope * vi for t, vi in zip(total, v)]
        grads = tree_unflatten(tree, [t / num_directions for t in total])
        return grads[0] if isinstance(argnums, int) else grads
    return estimate


def estimator_variance(gradient, num_directions=1, distribution="gaussian"):
    """Per-coordinate variance of `forward_grad`'s estimate for a true gradient array."""
    g = np.asarray(gradient, float)
    norm2 = np.sum(g * g)
    sign = 1.0 if distribution == "gaussian" else -1.0
    return (norm2 + sign * g * g) / num_directions
